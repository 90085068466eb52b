/*
 * latest.c - W9, the latest value: one writer replaces a value as fast as
 * it can, N readers poll for a newer one. Each value carries its seq, the
 * writer's index, a checksum and the writer's CLOCK_MONOTONIC stamp taken
 * just before it publishes; a reader that gets a new value reads the
 * clock and keeps now - stamp (its read latency). A reader checks that
 * every value it gets is whole and newer than the one before, and stops
 * at the writer's last value.
 *
 * The slot: mproc_send, and mproc_recv with MPROC_NOWAIT in a loop. The
 * seqlock, the limit of shared memory: the writer makes seq odd, writes,
 * makes it even; a reader copies while seq is even and unchanged. Both
 * readers spin without a pause, the same way.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "bench.h"

#define LATEST_CHECK_EVERY 1024 /* empty polls between two clock reads */

static void latest_sl_write(struct seqlock *sl, const unsigned char *p,
                            uint32_t size)
{
	uint64_t s = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED), v;
	size_t nw = ((size_t)size + 7) / 8, i, n;

	__atomic_store_n(&sl->seq, s + 1, __ATOMIC_RELAXED);
	/* the odd seq before any word of the value */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (i = 0; i < nw; i++) {
		n = size - 8 * i < 8 ? size - 8 * i : 8;
		v = 0;
		memcpy(&v, p + 8 * i, n);
		__atomic_store_n(&sl->w[i], v, __ATOMIC_RELAXED);
	}
	/* the words before the even seq */
	__atomic_store_n(&sl->seq, s + 2, __ATOMIC_RELEASE);
}

/* 0 with a value newer than *last (its seq stored there), or -EAGAIN
 * (none, or the writer was writing it: try again). */
static int latest_sl_read(struct seqlock *sl, unsigned char *p,
                          uint32_t size, uint64_t *last)
{
	uint64_t s1 = __atomic_load_n(&sl->seq, __ATOMIC_ACQUIRE), s2, v;
	size_t nw = ((size_t)size + 7) / 8, i, n;

	if ((s1 & 1) || s1 == *last)
		return -EAGAIN;
	for (i = 0; i < nw; i++) {
		v = __atomic_load_n(&sl->w[i], __ATOMIC_RELAXED);
		n = size - 8 * i < 8 ? size - 8 * i : 8;
		memcpy(p + 8 * i, &v, n);
	}
	/* the words before the second look at seq */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED);
	if (s2 != s1)
		return -EAGAIN;
	*last = s1;
	return 0;
}

void role_latest_writer(const struct workload *w, const struct ep *out)
{
	unsigned char *pl = g_role.sbuf + ENV_SIZE;
	uint64_t k;

	for (k = 0; k < w->n; k++) {
		payload_fill(pl, w->size, k, 0);
		payload_set_stamp(pl, w->size, now_ns());
		if (out->t == T_SEQLOCK)
			latest_sl_write(out->sl, pl, w->size);
		else
			ep_send(out, MPROC_DO, MPROC_ANYONE, pl, w->size);
	}
	g_role.rep->count = w->n;
}

/* One poll: 0 with a new value in m, or -EAGAIN. */
static int latest_try_read(const struct workload *w, const struct ep *in,
                           struct rmsg *m, uint64_t *sl_last)
{
	int r;

	if (in->t != T_SEQLOCK)
		return ep_try_recv(in, m);
	r = latest_sl_read(in->sl, g_role.rbuf, w->size, sl_last);
	if (r == 0) {
		/* what the seqlock does not carry, as the writer sent it */
		m->request = MPROC_DO;
		m->sender = g_role.sh->pids[0];
		m->recipient = MPROC_ANYONE;
		m->size = w->size;
		m->data = g_role.rbuf;
	}
	return r;
}

void role_latest_reader(const struct workload *w, const struct ep *in)
{
	uint32_t *lat = shared_lat(g_role.sh, g_role.role - 1);
	uint64_t cap = g_role.sh->lat_cap, count = 0, prev = NONE, spins = 0;
	uint64_t sl_last = 0, seq, stamp, t, d;
	uint64_t deadline = now_ns() + (uint64_t)OP_TIMEOUT_MS * 1000000u;
	struct rmsg m;
	uint32_t src;

	for (;;) {
		if (latest_try_read(w, in, &m, &sl_last) == -EAGAIN) {
			if (++spins % LATEST_CHECK_EVERY == 0 &&
			    now_ns() > deadline)
				child_fail("no new value for %d ms after seq "
				           "%" PRIu64 ": a hang",
				           OP_TIMEOUT_MS, prev);
			continue;
		}
		t = now_ns();
		role_check_msg(&m, MPROC_DO, w->size, &seq, &src);
		role_check_sender(&m, src, 1, 0);
		if (seq >= w->n)
			child_fail("seq %" PRIu64 " out of range", seq);
		if (prev != NONE && seq <= prev)
			child_fail("seq %" PRIu64 " after %" PRIu64
			           ": not newer",
			           seq, prev);
		stamp = payload_stamp(m.data);
		if (stamp > t)
			child_fail("value stamped %" PRIu64 " ns after it was "
			           "read", stamp - t);
		d = t - stamp;
		lat[count % cap] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		count++;
		prev = seq;
		deadline = t + (uint64_t)OP_TIMEOUT_MS * 1000000u;
		if (seq == w->n - 1)
			break;
	}
	g_role.rep->count = count;
	g_role.rep->last_seq = prev;
}
