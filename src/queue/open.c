/*
 * open.c - making a queue (an anonymous mapping before fork()), a handle
 * on a mapping that exists (tests and fuzzers), and closing a handle.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"

static void queue_close(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);

	if (q->s != NULL && !q->borrowed)
		mproc__region_unmap(q->s, q->map_len);
	q->s = NULL;
	free(q->scratch);
	q->scratch = NULL;
	/* The struct itself is mproc_close's to free. */
}

static int queue_fd(mproc_conn *c)
{
	MPROC__UNUSED(c);
	return -EINVAL; /* a queue has no descriptor */
}

/* The handle's trusted copy of what it maps. */
static void queue_conn_init(struct queue_conn *q, void *map, size_t len,
                            uint64_t cap, uint32_t max_payload,
                            uint32_t max_messages, uint32_t flags)
{
	q->base.tr = &mproc__queue_transport;
	q->s = map;
	mproc__ring_init(&q->ring, (uint8_t *)map + MPROC__QUEUE_HDR, cap);
	q->map_len = len;
	q->max_payload = max_payload;
	q->max_messages = max_messages;
	q->flags = flags;
	q->taker = -1;
}

int mproc__queue_open(mproc_conn **out, const mproc_queue_opts *opts)
{
	mproc_queue_opts o;
	struct queue_conn *q;
	struct mproc__queue_shared *s;
	uint64_t cap;
	size_t len;
	void *map;
	int rc;

	if (opts != NULL)
		o = *opts;
	else
		memset(&o, 0, sizeof(o));
	if (o.flags & ~(uint32_t)MPROC_QUEUE_MANUAL_DONE)
		return -EINVAL;
	if (o.capacity == 0)
		o.capacity = MPROC_QUEUE_DEFAULT_CAPACITY;
	if (o.max_payload == 0)
		o.max_payload = MPROC_QUEUE_DEFAULT_MAX_PAYLOAD;
	if (o.capacity > MPROC_QUEUE_MAX_CAPACITY)
		return -EINVAL;
	cap = o.capacity & ~(uint64_t)7; /* records are 8-byte aligned */
	if (cap < mproc__rec_len(o.max_payload))
		return -EINVAL; /* not even one message of max_payload fits */

	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->scratch = malloc(o.max_payload);
	if (q->scratch == NULL) {
		free(q);
		return -ENOMEM;
	}
	len = MPROC__QUEUE_HDR + (size_t)cap;
	if ((rc = mproc__region_anon(len, &map)) < 0) {
		free(q->scratch);
		free(q);
		return rc;
	}
	s = map;
	/* The mapping is zeroed: only what is not zero is written. */
	s->capacity = cap;
	s->max_payload = o.max_payload;
	s->max_messages = o.max_messages;
	s->flags = o.flags;
	s->send.journal.mark.off = UINT64_MAX;
	s->recv.journal.mark.off = UINT64_MAX;
	if ((rc = mproc__lock_init(&s->send.lock)) < 0 ||
	    (rc = mproc__lock_init(&s->recv.lock)) < 0) {
		mproc__region_unmap(map, len);
		free(q->scratch);
		free(q);
		return rc;
	}
	mproc__region_init(&s->hdr, MPROC__KIND_QUEUE, MPROC__QUEUE_LAYOUT,
	                   MPROC__QUEUE_HDR, len);
	queue_conn_init(q, map, len, cap, o.max_payload, o.max_messages,
	                o.flags);
	*out = &q->base;
	return 0;
}

void *mproc__queue_mapping(mproc_conn *c, size_t *len)
{
	struct queue_conn *q = queue_of(c);

	if (len != NULL)
		*len = q->map_len;
	return q->s;
}

int mproc__queue_lock_span(int which, size_t *off, size_t *len)
{
	if (which == 0)
		*off = offsetof(struct mproc__queue_shared, send.lock);
	else if (which == 1)
		*off = offsetof(struct mproc__queue_shared, recv.lock);
	else
		return -1;
	*len = sizeof(pthread_mutex_t);
	return 0;
}

int mproc__queue_attach(mproc_conn **out, void *base, size_t len)
{
	struct mproc__queue_shared *s = base;
	struct queue_conn *q;
	uint32_t max_payload, max_messages, flags;
	uint64_t cap;

	if (out == NULL || base == NULL || len < MPROC__QUEUE_HDR)
		return -EINVAL;
	if (mproc__region_check(&s->hdr, len, MPROC__KIND_QUEUE,
	                        MPROC__QUEUE_LAYOUT, MPROC__QUEUE_HDR) < 0)
		return -EPROTO;
	/* Read each field once: the mapping may change under us. */
	cap = LOAD(&s->capacity);
	max_payload = LOAD(&s->max_payload);
	max_messages = LOAD(&s->max_messages);
	flags = LOAD(&s->flags);
	if (cap == 0 || cap % 8 != 0 || cap > MPROC_QUEUE_MAX_CAPACITY ||
	    cap != len - MPROC__QUEUE_HDR || cap < mproc__rec_len(max_payload) ||
	    (flags & ~(uint32_t)MPROC_QUEUE_MANUAL_DONE) != 0 ||
	    mproc__lock_check(&s->send.lock) < 0 ||
	    mproc__lock_check(&s->recv.lock) < 0)
		return -EPROTO;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->scratch = malloc(max_payload ? max_payload : 1);
	if (q->scratch == NULL) {
		free(q);
		return -ENOMEM;
	}
	queue_conn_init(q, base, len, cap, max_payload, max_messages, flags);
	q->borrowed = 1;
	*out = &q->base;
	return 0;
}

const struct mproc__transport mproc__queue_transport = {
	.name = "queue",
	.send = mproc__queue_send,
	.recv = mproc__queue_recv,
	.close = queue_close,
	.fd = queue_fd,
};
