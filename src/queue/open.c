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

	if (q->s != NULL)
		mproc__queue_zc_close(q);
	mproc__queue_poll_close(q);
	if (q->named != NULL) {
		mproc__named_close(q->named);
		free(q->named);
		q->named = NULL;
	} else if (q->s != NULL && !q->borrowed) {
		mproc__region_unmap(q->s, q->map_len);
	}
	q->s = NULL;
	free(q->scratch);
	q->scratch = NULL;
	/* The struct itself is mproc_close's to free. */
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
	mproc__poller_init(&q->poll);
	q->lock_kind = mproc__lock_kind();
}

#define QUEUE_FLAGS (MPROC_QUEUE_MANUAL_DONE | MPROC_UNLINK_ON_LAST_CLOSE)

/* The options, checked and defaulted; *cap the ring's bytes. */
static int queue_opts(const mproc_queue_opts *opts, mproc_queue_opts *o,
                      uint64_t *cap)
{
	if (opts != NULL)
		*o = *opts;
	else
		memset(o, 0, sizeof(*o));
	if (o->flags & ~(uint32_t)QUEUE_FLAGS)
		return -EINVAL;
	if (o->capacity == 0)
		o->capacity = MPROC_QUEUE_DEFAULT_CAPACITY;
	if (o->max_payload == 0)
		o->max_payload = MPROC_QUEUE_DEFAULT_MAX_PAYLOAD;
	if (o->capacity > MPROC_QUEUE_MAX_CAPACITY)
		return -EINVAL;
	*cap = o->capacity & ~(uint64_t)7; /* records are 8-byte aligned */
	if (*cap < mproc__rec_len(o->max_payload))
		return -EINVAL; /* not even one message of max_payload fits */
	return 0;
}

/* Lay a fresh (zeroed) mapping out as the queue o describes. */
static int queue_layout_init(void *map, size_t len, void *arg)
{
	const mproc_queue_opts *o = arg;
	struct mproc__queue_shared *s = map;
	int rc;

	/* Only what is not zero is written. */
	s->capacity = len - MPROC__QUEUE_HDR;
	s->max_payload = o->max_payload;
	s->max_messages = o->max_messages;
	s->flags = o->flags;
	s->send.journal.mark.off = UINT64_MAX;
	s->recv.journal.mark.off = UINT64_MAX;
	/* Names the pollers' sockets: unique enough per boot. */
	mproc__poll_init(&s->poll, map);
	if ((rc = mproc__lock_init(&s->send.lock)) < 0 ||
	    (rc = mproc__lock_init(&s->recv.lock)) < 0)
		return rc;
	mproc__region_init(&s->hdr, MPROC__KIND_QUEUE, MPROC__QUEUE_LAYOUT,
	                   MPROC__QUEUE_HDR, len);
	return 0;
}

static struct queue_conn *queue_conn_new(uint32_t max_payload)
{
	struct queue_conn *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->scratch = malloc(max_payload ? max_payload : 1);
	if (q->scratch == NULL) {
		free(q);
		return NULL;
	}
	return q;
}

static void queue_conn_free(struct queue_conn *q)
{
	free(q->named);
	free(q->scratch);
	free(q);
}

int mproc__queue_open(mproc_conn **out, const mproc_queue_opts *opts)
{
	mproc_queue_opts o;
	struct queue_conn *q;
	uint64_t cap;
	size_t len;
	void *map;
	int rc;

	if ((rc = queue_opts(opts, &o, &cap)) < 0)
		return rc;
	if (o.flags & MPROC_UNLINK_ON_LAST_CLOSE)
		return -EINVAL; /* no name to unlink */
	if ((q = queue_conn_new(o.max_payload)) == NULL)
		return -ENOMEM;
	len = MPROC__QUEUE_HDR + (size_t)cap;
	if ((rc = mproc__region_anon(len, &map)) < 0) {
		queue_conn_free(q);
		return rc;
	}
	if ((rc = queue_layout_init(map, len, &o)) < 0) {
		mproc__region_unmap(map, len);
		queue_conn_free(q);
		return rc;
	}
	queue_conn_init(q, map, len, cap, o.max_payload, o.max_messages,
	                o.flags);
	*out = &q->base;
	return 0;
}

int mproc__queue_create(mproc_conn **out, const char *name,
                        const mproc_queue_opts *opts)
{
	mproc_queue_opts o;
	struct queue_conn *q = NULL;
	uint64_t cap;
	int rc;

	if ((rc = queue_opts(opts, &o, &cap)) < 0)
		return rc;
	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((q = queue_conn_new(o.max_payload)) == NULL ||
	    (q->named = malloc(sizeof(*q->named))) == NULL) {
		if (q != NULL)
			queue_conn_free(q);
		return -ENOMEM;
	}
	rc = mproc__named_create(q->named, name, o.mode,
	                         MPROC__QUEUE_HDR + (size_t)cap,
	                         queue_layout_init, &o);
	if (rc < 0) {
		queue_conn_free(q);
		return rc;
	}
	q->named->unlink_on_last_close =
	        (o.flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	queue_conn_init(q, q->named->map, q->named->len, cap, o.max_payload,
	                o.max_messages, o.flags);
	*out = &q->base;
	return 0;
}

/*
 * queue_geometry reads a mapping's queue fields once each (it may change
 * under us) and checks them against its length. 0 or -EPROTO.
 */
static int queue_geometry(const struct mproc__queue_shared *s, size_t len,
                          uint64_t *cap, uint32_t *max_payload,
                          uint32_t *max_messages, uint32_t *flags)
{
	if (len < MPROC__QUEUE_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_QUEUE,
	                        MPROC__QUEUE_LAYOUT, MPROC__QUEUE_HDR) < 0)
		return -EPROTO;
	*cap = LOAD(&s->capacity);
	*max_payload = LOAD(&s->max_payload);
	*max_messages = LOAD(&s->max_messages);
	*flags = LOAD(&s->flags);
	if (*cap == 0 || *cap % 8 != 0 || *cap > MPROC_QUEUE_MAX_CAPACITY ||
	    *cap != len - MPROC__QUEUE_HDR || *cap < mproc__rec_len(*max_payload) ||
	    (*flags & ~(uint32_t)QUEUE_FLAGS) != 0 ||
	    mproc__lock_check(&s->send.lock) < 0 ||
	    mproc__lock_check(&s->recv.lock) < 0)
		return -EPROTO;
	return 0;
}

int mproc__queue_attach_name(mproc_conn **out, const char *name)
{
	uint32_t max_payload, max_messages, flags;
	struct mproc__named *nm;
	struct queue_conn *q = NULL;
	uint64_t cap;
	int rc;

	if ((nm = malloc(sizeof(*nm))) == NULL)
		return -ENOMEM;
	if ((rc = mproc__named_attach(nm, name, MPROC__KIND_QUEUE,
	                              MPROC__QUEUE_LAYOUT,
	                              MPROC__QUEUE_HDR)) < 0) {
		free(nm);
		return rc;
	}
	rc = queue_geometry(nm->map, nm->len, &cap, &max_payload,
	                    &max_messages, &flags);
	if (rc == 0 && (q = queue_conn_new(max_payload)) == NULL)
		rc = -ENOMEM;
	if (rc < 0) {
		mproc__named_close(nm);
		free(nm);
		return rc;
	}
	q->named = nm;
	nm->unlink_on_last_close = (flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	queue_conn_init(q, nm->map, nm->len, cap, max_payload, max_messages,
	                flags);
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
	uint32_t max_payload, max_messages, flags;
	struct queue_conn *q;
	uint64_t cap;

	if (out == NULL || base == NULL || len < MPROC__QUEUE_HDR)
		return -EINVAL;
	if (queue_geometry(base, len, &cap, &max_payload, &max_messages,
	                   &flags) < 0)
		return -EPROTO;
	if ((q = queue_conn_new(max_payload)) == NULL)
		return -ENOMEM;
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
	.fd = mproc__queue_fd,
	.reserve = mproc__queue_reserve,
	.commit = mproc__queue_commit,
	.cancel = mproc__queue_cancel,
	.borrow = mproc__queue_borrow,
	.release = mproc__queue_release,
};
