/*
 * recv.c - a subscriber's receive: the next record at its cursor that the
 * predicate accepts (those it rejects are passed for this reader only).
 * No lock: the reader moves its own cursor; the records between it and
 * tail stay until it passes them (default), or are checked against head
 * after the copy (MPROC_BUS_OVERWRITE: an overrun copy is thrown away and
 * the reader told -EOVERFLOW once, its cursor moved to head).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "bus/bus.h"

__thread const struct mproc__bus_shared *mproc__bus_in_callback;

/* The reader was overrun: count what it lost, move it to head. */
static int bus_overrun(struct bus_conn *b, struct mproc__bus_reader *e)
{
	uint64_t p[BP_WORDS], seen;
	int rc;

	if ((rc = mproc__bus_words(b, p)) < 0)
		return rc;
	seen = __atomic_load_n(&e->seen, __ATOMIC_RELAXED);
	if (p[BP_HEAD_ID] > seen)
		__atomic_add_fetch(&e->lost, p[BP_HEAD_ID] - seen,
		                   __ATOMIC_RELAXED);
	__atomic_store_n(&e->seen, p[BP_HEAD_ID], __ATOMIC_RELAXED);
	__atomic_store_n(&e->cursor, p[BP_HEAD], __ATOMIC_RELEASE);
	return -EOVERFLOW;
}

static int bus_overrun_since(struct bus_conn *b, uint64_t cur)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&b->s->send.w[BP_HEAD], __ATOMIC_ACQUIRE) > cur;
}

/*
 * bus_try: one pass from the reader's cursor to tail. Returns 0 (taken),
 * 1 (nothing left; *tail_out the tail looked at), or a negative errno.
 * Handle mutex held.
 */
static int bus_try(struct bus_conn *b, struct mproc__bus_reader *e,
                   mproc_msg *m, mproc_match_fn match, void *arg,
                   uint64_t *tail_out)
{
	int ow = (b->flags & MPROC_BUS_OVERWRITE) != 0;
	struct mproc__rec r;
	uint64_t cur, tail, head;
	mproc_msg view;
	const void *src;
	int ok;

	for (;;) {
		tail = __atomic_load_n(&b->s->send.w[BP_TAIL], __ATOMIC_ACQUIRE);
		head = __atomic_load_n(&b->s->send.w[BP_HEAD], __ATOMIC_ACQUIRE);
		cur = __atomic_load_n(&e->cursor, __ATOMIC_RELAXED);
		*tail_out = tail;
		if (cur < head)
			return ow ? bus_overrun(b, e) : -EPROTO;
		if (cur > tail || cur % 8 != 0 || tail - cur > b->ring.cap)
			return -EPROTO;
		if (cur == tail)
			return 1;
		if (mproc__rec_read(&b->ring, cur, tail, b->max_payload, &r) < 0)
			return ow && bus_overrun_since(b, cur) ? bus_overrun(b, e)
			                                       : -EPROTO;
		if (ow || !mproc__ring_contiguous(&b->ring, cur + MPROC__REC_HDR,
		                                  r.size)) {
			/* A copy to check (overwrite) or to see whole (wrapped). */
			mproc__ring_copy_out(&b->ring, cur + MPROC__REC_HDR,
			                     b->scratch, r.size);
			if (ow && bus_overrun_since(b, cur))
				return bus_overrun(b, e);
			src = b->scratch;
		} else {
			src = mproc__ring_at(&b->ring, cur + MPROC__REC_HDR);
		}
		ok = 1;
		if (match != NULL) {
			memset(&view, 0, sizeof(view));
			view.request = r.request;
			view.sender = r.sender;
			view.recipient = r.recipient;
			view.size = view.capacity = r.size;
			view.data = (void *)src;
			mproc__bus_in_callback = b->s;
			ok = match(&view, arg);
			mproc__bus_in_callback = NULL;
		}
		if (ok) {
			if (r.size > m->capacity) {
				m->size = r.size; /* stays at the cursor */
				return -EMSGSIZE;
			}
			if (r.size > 0) {
				if (mproc__unlikely(mproc__crash_point ==
				                    MPROC__CRASH_RECV_COPY)) {
					memcpy(m->data, src, r.size / 2);
					mproc__crash(MPROC__CRASH_RECV_COPY);
				}
				memcpy(m->data, src, r.size);
			}
			m->request = r.request;
			m->sender = r.sender;
			m->recipient = r.recipient;
			m->size = r.size;
			__atomic_add_fetch(&e->received, 1, __ATOMIC_RELAXED);
		}
		/* Passed, for this reader only. */
		__atomic_store_n(&e->seen, r.id + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&e->cursor, cur + r.len, __ATOMIC_SEQ_CST);
		if (!ow)
			mproc__wake_bits(&b->s->send_waiting, &b->s->space_seq,
			                 MPROC__FUTEX_ALL);
		if (ok)
			return 0;
	}
}

int mproc__bus_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                    void *arg, int timeout_ms)
{
	struct bus_conn *b = bus_of(c);
	struct mproc__bus_shared *s = b->s;
	struct mproc__deadline d;
	uint64_t tail;
	uint32_t v;
	int rc, spun = 0, me;

	if (mproc__unlikely(mproc__bus_in_callback == s))
		return -EDEADLK;
	if (bus_check_identity(b) < 0)
		return -EPROTO;
	mproc__poll_before_recv(&s->poll, &b->poll);
	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		pthread_mutex_lock(&b->mu);
		me = mproc__bus_me(b);
		rc = me < 0 ? me
		            : bus_try(b, &b->readers[me], m, match, arg, &tail);
		pthread_mutex_unlock(&b->mu);
		if (rc <= 0)
			return rc;
		if (!d.forever && mproc__deadline_ns(&d) <= 0)
			return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
		mproc__deadline_arm(&d);
		if (!spun) {
			mproc__spin(&s->send.w[BP_TAIL], tail, &s->reserved0);
			spun = 1;
			continue;
		}
		spun = 0;
		v = mproc__sleep_prepare(&s->recv_waiting, &s->data_seq,
		                         MPROC__FUTEX_ALL);
		if (__atomic_load_n(&s->send.w[BP_TAIL], __ATOMIC_SEQ_CST) != tail)
			continue;
		rc = mproc__sleep(&s->data_seq, v, &d, BUS_SLICE_MS,
		                  MPROC__FUTEX_ALL);
		if (rc < 0 &&
		    __atomic_load_n(&s->send.w[BP_TAIL], __ATOMIC_SEQ_CST) == tail)
			return rc;
	}
}
