/*
 * open.c - making a bus (anonymous before fork(), or named), attaching a
 * named one, closing a handle; subscriptions (one per process, by pid and
 * start time, so a forked child is not its parent's subscriber); waiting
 * for readers; stats; the descriptor.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"

#define BUS_FLAGS (MPROC_BUS_OVERWRITE | MPROC_UNLINK_ON_LAST_CLOSE)

int mproc__bus_me(struct bus_conn *b)
{
	pid_t me = mproc__self_pid();
	uint64_t start = 0;

	for (uint32_t i = 0; i < b->max_readers; i++) {
		if (__atomic_load_n(&b->readers[i].pid, __ATOMIC_ACQUIRE) != me)
			continue;
		if (start == 0)
			start = mproc__self_start_ns();
		if (__atomic_load_n(&b->readers[i].start_ns, __ATOMIC_RELAXED) ==
		    start)
			return (int)i;
	}
	return -ENOTCONN;
}

static void bus_leave(struct bus_conn *b)
{
	int me = mproc__bus_me(b);

	if (me < 0)
		return;
	__atomic_store_n(&b->readers[me].pid, 0, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mproc__wake_bits(&b->s->send_waiting, &b->s->space_seq,
	                 MPROC__FUTEX_ALL);
}

static void bus_close(mproc_conn *c)
{
	struct bus_conn *b = bus_of(c);

	if (b->s != NULL) {
		if (bus_check_identity(b) == 0)
			bus_leave(b);
		mproc__poller_close(&b->s->poll, &b->poll);
	}
	if (b->named != NULL) {
		mproc__named_close(b->named);
		free(b->named);
		b->named = NULL;
	} else if (b->s != NULL) {
		mproc__region_unmap(b->s, b->map_len);
	}
	b->s = NULL;
	free(b->scratch);
	b->scratch = NULL;
	pthread_mutex_destroy(&b->mu);
}

static int bus_opts(const mproc_bus_opts *opts, mproc_bus_opts *o,
                    uint64_t *cap, size_t *len)
{
	if (opts != NULL)
		*o = *opts;
	else
		memset(o, 0, sizeof(*o));
	if (o->flags & ~(uint32_t)BUS_FLAGS)
		return -EINVAL;
	if (o->capacity == 0)
		o->capacity = MPROC_BUS_DEFAULT_CAPACITY;
	if (o->max_payload == 0)
		o->max_payload = MPROC_BUS_DEFAULT_MAX_PAYLOAD;
	if (o->max_readers == 0)
		o->max_readers = MPROC_BUS_DEFAULT_MAX_READERS;
	if (o->capacity > MPROC_BUS_MAX_CAPACITY ||
	    o->max_readers > MPROC__BUS_MAX_READERS)
		return -EINVAL;
	*cap = o->capacity & ~(uint64_t)7;
	if (*cap < mproc__rec_len(o->max_payload))
		return -EINVAL; /* not even one message of max_payload fits */
	*len = mproc__bus_ring_off(o->max_readers) + *cap;
	return 0;
}

static int bus_layout_init(void *map, size_t len, void *arg)
{
	const mproc_bus_opts *o = arg;
	struct mproc__bus_shared *s = map;
	int rc;

	s->ring_off = mproc__bus_ring_off(o->max_readers);
	s->capacity = len - s->ring_off;
	s->max_payload = o->max_payload;
	s->max_readers = o->max_readers;
	s->flags = o->flags;
	s->send.journal.mark.off = UINT64_MAX;
	mproc__poll_init(&s->poll.table, map);
	if ((rc = mproc__lock_init(&s->send.lock)) < 0)
		return rc;
	mproc__region_init(&s->hdr, MPROC__KIND_BUS, MPROC__BUS_LAYOUT,
	                   MPROC__BUS_HDR, len);
	return 0;
}

static struct bus_conn *bus_conn_new(uint32_t max_payload)
{
	struct bus_conn *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	if ((b->scratch = malloc(max_payload ? max_payload : 1)) == NULL ||
	    pthread_mutex_init(&b->mu, NULL) != 0) {
		free(b->scratch);
		free(b);
		return NULL;
	}
	return b;
}

static void bus_conn_free(struct bus_conn *b)
{
	pthread_mutex_destroy(&b->mu);
	free(b->named);
	free(b->scratch);
	free(b);
}

static void bus_conn_init(struct bus_conn *b, void *map, size_t len,
                          uint64_t cap, uint32_t max_payload,
                          uint32_t max_readers, uint32_t flags)
{
	b->base.tr = &mproc__bus_transport;
	b->s = map;
	b->readers = (struct mproc__bus_reader *)((uint8_t *)map +
	                                          MPROC__BUS_HDR);
	mproc__ring_init(&b->ring,
	                 (uint8_t *)map + mproc__bus_ring_off(max_readers), cap);
	b->map_len = len;
	b->max_payload = max_payload;
	b->max_readers = max_readers;
	b->flags = flags;
	mproc__poller_init(&b->poll);
}

int mproc__bus_open(mproc_conn **out, const mproc_bus_opts *opts)
{
	mproc_bus_opts o;
	struct bus_conn *b;
	uint64_t cap;
	size_t len;
	void *map;
	int rc;

	if ((rc = bus_opts(opts, &o, &cap, &len)) < 0)
		return rc;
	if (o.flags & MPROC_UNLINK_ON_LAST_CLOSE)
		return -EINVAL; /* no name to unlink */
	if ((b = bus_conn_new(o.max_payload)) == NULL)
		return -ENOMEM;
	if ((rc = mproc__region_anon(len, &map)) < 0) {
		bus_conn_free(b);
		return rc;
	}
	if ((rc = bus_layout_init(map, len, &o)) < 0) {
		mproc__region_unmap(map, len);
		bus_conn_free(b);
		return rc;
	}
	bus_conn_init(b, map, len, cap, o.max_payload, o.max_readers, o.flags);
	*out = &b->base;
	return 0;
}

int mproc__bus_create(mproc_conn **out, const char *name,
                      const mproc_bus_opts *opts)
{
	mproc_bus_opts o;
	struct bus_conn *b;
	uint64_t cap;
	size_t len;
	int rc;

	if ((rc = bus_opts(opts, &o, &cap, &len)) < 0)
		return rc;
	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((b = bus_conn_new(o.max_payload)) == NULL)
		return -ENOMEM;
	if ((b->named = malloc(sizeof(*b->named))) == NULL) {
		bus_conn_free(b);
		return -ENOMEM;
	}
	if ((rc = mproc__named_create(b->named, name, o.mode, len,
	                              bus_layout_init, &o)) < 0) {
		bus_conn_free(b);
		return rc;
	}
	b->named->unlink_on_last_close =
	        (o.flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	bus_conn_init(b, b->named->map, b->named->len, cap, o.max_payload,
	              o.max_readers, o.flags);
	*out = &b->base;
	return 0;
}

/* A mapping's bus fields, read once each, checked against its length. */
static int bus_geometry(const struct mproc__bus_shared *s, size_t len,
                        uint64_t *cap, uint32_t *max_payload,
                        uint32_t *max_readers, uint32_t *flags)
{
	if (len < MPROC__BUS_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_BUS, MPROC__BUS_LAYOUT,
	                        MPROC__BUS_HDR) < 0)
		return -EPROTO;
	*cap = __atomic_load_n(&s->capacity, __ATOMIC_RELAXED);
	*max_payload = __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED);
	*max_readers = __atomic_load_n(&s->max_readers, __ATOMIC_RELAXED);
	*flags = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);
	if (*max_readers == 0 || *max_readers > MPROC__BUS_MAX_READERS ||
	    *cap == 0 || *cap % 8 != 0 || *cap > MPROC_BUS_MAX_CAPACITY ||
	    mproc__bus_ring_off(*max_readers) + *cap != len ||
	    *cap < mproc__rec_len(*max_payload) ||
	    (*flags & ~(uint32_t)BUS_FLAGS) != 0)
		return -EPROTO;
	return 0;
}

int mproc__bus_attach_name(mproc_conn **out, const char *name)
{
	uint32_t max_payload, max_readers, flags;
	struct mproc__named *nm;
	struct bus_conn *b = NULL;
	uint64_t cap;
	int rc;

	if ((nm = malloc(sizeof(*nm))) == NULL)
		return -ENOMEM;
	if ((rc = mproc__named_attach(nm, name, MPROC__KIND_BUS,
	                              MPROC__BUS_LAYOUT, MPROC__BUS_HDR)) < 0) {
		free(nm);
		return rc;
	}
	rc = bus_geometry(nm->map, nm->len, &cap, &max_payload, &max_readers,
	                  &flags);
	if (rc == 0 && (b = bus_conn_new(max_payload)) == NULL)
		rc = -ENOMEM;
	if (rc < 0) {
		mproc__named_close(nm);
		free(nm);
		return rc;
	}
	b->named = nm;
	nm->unlink_on_last_close = (flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	bus_conn_init(b, nm->map, nm->len, cap, max_payload, max_readers, flags);
	*out = &b->base;
	return 0;
}

int mproc__bus_subscribe(mproc_conn *c)
{
	struct bus_conn *b = bus_of(c);
	struct mproc__bus_shared *s = b->s;
	struct mproc__deadline d;
	struct mproc__live lc;
	uint64_t p[BP_WORDS];
	int rc, free_i = -1;

	mproc__deadline_set(&d, BUS_LOCK_MS);
	if ((rc = mproc__bus_lock(b, &d)) < 0)
		return rc;
	if (mproc__bus_me(b) >= 0) {
		mproc__unlock(&s->send.lock);
		return 0; /* already: the cursor stays */
	}
	mproc__live_init(&lc);
	for (int pass = 0; pass < 2 && free_i < 0; pass++) {
		for (uint32_t i = 0; i < b->max_readers; i++) {
			int32_t pid = __atomic_load_n(&b->readers[i].pid,
			                              __ATOMIC_ACQUIRE);

			if (pid == 0 ||
			    (pass == 1 &&
			     mproc__live_gone(&lc, pid,
			                      __atomic_load_n(&b->readers[i].start_ns,
			                                      __ATOMIC_RELAXED)))) {
				free_i = (int)i;
				if (pid != 0)
					__atomic_add_fetch(&s->reclaimed, 1,
					                   __ATOMIC_RELAXED);
				break;
			}
		}
	}
	if (free_i < 0) {
		mproc__unlock(&s->send.lock);
		return -EUSERS;
	}
	mproc__words_load(&s->send, p, BP_WORDS);
	{
		struct mproc__bus_reader *e = &b->readers[free_i];

		/* Whole before pid says it is there: writers read pid first. */
		__atomic_store_n(&e->pid, 0, __ATOMIC_RELEASE);
		e->start_ns = mproc__self_start_ns();
		e->cursor = p[BP_TAIL];
		e->seen = p[BP_SENT];
		e->received = 0;
		e->lost = 0;
		__atomic_store_n(&e->pid, mproc__self_pid(), __ATOMIC_RELEASE);
	}
	mproc__unlock(&s->send.lock);
	__atomic_add_fetch(&s->readers_seq, 1, __ATOMIC_SEQ_CST);
	mproc__wake_bits(&s->readers_waiting, &s->readers_seq, MPROC__FUTEX_ALL);
	return 0;
}

int mproc__bus_unsubscribe(mproc_conn *c)
{
	struct bus_conn *b = bus_of(c);
	int rc;

	if (bus_check_identity(b) < 0)
		return -EPROTO;
	pthread_mutex_lock(&b->mu);
	rc = mproc__bus_me(b);
	if (rc >= 0) {
		bus_leave(b);
		rc = 0;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

static unsigned bus_live_readers(struct bus_conn *b)
{
	struct mproc__live lc;
	unsigned n = 0;

	mproc__live_init(&lc);
	for (uint32_t i = 0; i < b->max_readers; i++) {
		int32_t pid = __atomic_load_n(&b->readers[i].pid, __ATOMIC_ACQUIRE);

		if (pid != 0 &&
		    !mproc__live_gone(&lc, pid,
		                      __atomic_load_n(&b->readers[i].start_ns,
		                                      __ATOMIC_RELAXED)))
			n++;
	}
	return n;
}

int mproc__bus_wait_readers(mproc_conn *c, unsigned n, int timeout_ms)
{
	struct bus_conn *b = bus_of(c);
	struct mproc__bus_shared *s = b->s;
	struct mproc__deadline d;
	uint32_t v;

	if (bus_check_identity(b) < 0)
		return -EPROTO;
	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		v = mproc__sleep_prepare(&s->readers_waiting, &s->readers_seq,
		                         MPROC__FUTEX_ALL);
		if (bus_live_readers(b) >= n)
			return 0;
		if (!d.forever && mproc__deadline_ns(&d) <= 0)
			return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
		mproc__deadline_arm(&d);
		/* Slices: a reader's death wakes nobody, a look does. */
		mproc__sleep(&s->readers_seq, v, &d, 20, MPROC__FUTEX_ALL);
	}
}

int mproc__bus_stats(mproc_conn *c, mproc_bus_counts *st)
{
	struct bus_conn *b = bus_of(c);
	uint64_t p[BP_WORDS];
	int rc, me;

	if (bus_check_identity(b) < 0)
		return -EPROTO;
	if ((rc = mproc__bus_words(b, p)) < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->sent = p[BP_SENT];
	st->queued = p[BP_SENT] - p[BP_HEAD_ID];
	st->bytes = p[BP_TAIL] - p[BP_HEAD];
	st->capacity = b->ring.cap;
	st->max_payload = b->max_payload;
	st->max_readers = b->max_readers;
	st->recoveries = __atomic_load_n(&b->s->send.recoveries, __ATOMIC_RELAXED);
	st->reclaimed = __atomic_load_n(&b->s->reclaimed, __ATOMIC_RELAXED);
	st->readers = bus_live_readers(b);
	if ((me = mproc__bus_me(b)) >= 0) {
		const struct mproc__bus_reader *e = &b->readers[me];
		uint64_t seen = __atomic_load_n(&e->seen, __ATOMIC_RELAXED);

		st->subscribed = 1;
		st->lag = seen < p[BP_SENT] ? p[BP_SENT] - seen : 0;
		st->lost = __atomic_load_n(&e->lost, __ATOMIC_RELAXED);
		st->received = __atomic_load_n(&e->received, __ATOMIC_RELAXED);
	}
	return 0;
}

static int bus_fd(mproc_conn *c)
{
	struct bus_conn *b = bus_of(c);

	if (bus_check_identity(b) < 0)
		return -EPROTO;
	return mproc__poller_fd(&b->s->poll, &b->poll);
}

const struct mproc__transport mproc__bus_transport = {
	.name = "bus",
	.send = mproc__bus_send,
	.recv = mproc__bus_recv,
	.close = bus_close,
	.fd = bus_fd,
};
