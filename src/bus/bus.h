/*
 * bus.h - what the bus's sources share: the process-local handle and the
 * helpers. The shared layout and the protocol are in bus/layout.h.
 *
 * Files: open.c (open, create, attach, close, subscribe, unsubscribe,
 * wait_readers, stats, the descriptor), send.c (the send lock, repair,
 * room, append), recv.c (a reader's receive).
 */
#ifndef MPROC_BUS_BUS_H
#define MPROC_BUS_BUS_H

#include <pthread.h>
#include <stdint.h>

#include "base/futex.h"
#include "base/lock.h"
#include "bus/layout.h"
#include "internal.h"
#include "shm/name.h"
#include "shm/poll.h"

#define BUS_LOCK_MS 1000
#define BUS_SLICE_MS 100

struct bus_conn {
	struct mproc_conn base;
	struct mproc__bus_shared *s;
	struct mproc__bus_reader *readers;
	struct mproc__ring ring;
	size_t map_len;
	uint32_t max_payload;
	uint32_t max_readers;
	uint32_t flags;
	uint8_t *scratch;   /* max_payload bytes: a copy to check or screen */
	pthread_mutex_t mu; /* threads of one process receive in turn */
	struct mproc__poller poll;
	struct mproc__named *named;
};

static inline struct bus_conn *bus_of(mproc_conn *c)
{
	return (struct bus_conn *)c;
}

static inline int bus_check_identity(const struct bus_conn *b)
{
	const struct mproc__bus_shared *s = b->s;

	if (mproc__region_check(&s->hdr, b->map_len, MPROC__KIND_BUS,
	                        MPROC__BUS_LAYOUT, MPROC__BUS_HDR) < 0 ||
	    __atomic_load_n(&s->capacity, __ATOMIC_RELAXED) != b->ring.cap ||
	    __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED) != b->max_payload ||
	    __atomic_load_n(&s->max_readers, __ATOMIC_RELAXED) != b->max_readers ||
	    __atomic_load_n(&s->flags, __ATOMIC_RELAXED) != b->flags)
		return -EPROTO;
	return 0;
}

static inline int bus_words_valid(const struct bus_conn *b, const uint64_t *p)
{
	return p[BP_HEAD] % 8 == 0 && p[BP_TAIL] % 8 == 0 &&
	       p[BP_HEAD] <= p[BP_TAIL] && p[BP_TAIL] - p[BP_HEAD] <= b->ring.cap &&
	       p[BP_HEAD_ID] <= p[BP_SENT];
}

/* This process's entry, or -ENOTCONN (a forked child is not its parent). */
int mproc__bus_me(struct bus_conn *b);
/* The send lock, repaired after a dead owner; -ETIMEDOUT, -EAGAIN,
 * -EPROTO. */
int mproc__bus_lock(struct bus_conn *b, const struct mproc__deadline *d);
/* The words, consistent, without the lock. */
int mproc__bus_words(struct bus_conn *b, uint64_t *p);

extern __thread const struct mproc__bus_shared *mproc__bus_in_callback;

int mproc__bus_send(mproc_conn *c, const mproc_msg *m, int timeout_ms);
int mproc__bus_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                    void *arg, int timeout_ms);

#endif /* MPROC_BUS_BUS_H */
