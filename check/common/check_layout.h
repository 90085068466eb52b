/*
 * check_layout.h - a queue's shared mapping, for the tests that hold its
 * locks, kill their holders or scribble on it. The layout is the
 * library's own (queue/layout.h: struct mproc__queue_shared, the QP_ and
 * QC_ word indices; shm/journal.h, shm/record.h, shm/region.h), never a
 * copy, so a change of layout cannot leave a test aiming at the wrong
 * bytes.
 */
#ifndef MPROC_CHECK_LAYOUT_H
#define MPROC_CHECK_LAYOUT_H

#include <pthread.h>
#include <stddef.h>

#include "check_common.h"
#include "internal.h"
#include "queue/layout.h"

/* The queue's two sides: a sender takes only the send lock, every other
 * call that takes a lock the receive lock. */
enum { SIDE_SEND, SIDE_RECV, SIDES };

/* q's mapping (and its length, if len is not NULL), checked to be one. */
static inline struct mproc__queue_shared *check_queue_shared(mproc_conn *q,
                                                             size_t *len)
{
	size_t n = 0;
	struct mproc__queue_shared *s = mproc__queue_mapping(q, &n);

	ck_assert_msg(s != NULL &&
	                      mproc__region_check(&s->hdr, n, MPROC__KIND_QUEUE,
	                                          MPROC__QUEUE_LAYOUT,
	                                          MPROC__QUEUE_HDR) == 0,
	              "not a queue mapping of layout %u", MPROC__QUEUE_LAYOUT);
	if (len != NULL)
		*len = n;
	return s;
}

static inline struct mproc__side *check_queue_side(mproc_conn *q, int side)
{
	struct mproc__queue_shared *s = check_queue_shared(q, NULL);

	return side == SIDE_SEND ? &s->send : &s->recv;
}

/* The lock of side `side`, in the mapping. */
static inline pthread_mutex_t *check_queue_lock(mproc_conn *q, int side)
{
	return &check_queue_side(q, side)->lock;
}

/* How many words side `side` uses. */
static inline unsigned check_side_words(int side)
{
	return side == SIDE_SEND ? QP_WORDS : QC_WORDS;
}

#endif /* MPROC_CHECK_LAYOUT_H */
