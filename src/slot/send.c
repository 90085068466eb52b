/*
 * send.c - replacing the slot's value: claim a buffer nobody reads, fill
 * it, publish it with one compare-and-swap (the protocol is in
 * slot/layout.h). Never waits for a reader, except when every spare
 * buffer is pinned by a reader in the middle of its copy (more readers
 * copying distinct older values than there are buffers): then it waits
 * for one of those copies to end, up to its timeout.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/futex.h"
#include "slot/slot.h"

/* Is buffer i pinned by a reader? Dead readers' pins are dropped when
 * judge is set (and count as free). */
static int slot_pinned(struct slot_conn *h, uint32_t i, struct mproc__live *lc)
{
	struct mproc__slot_shared *s = h->s;
	int pinned = 0;

	for (unsigned k = 0; k < MPROC__SLOT_READERS; k++) {
		struct mproc__slot_reader *e = &s->readers[k];
		uint32_t pin = __atomic_load_n(&e->pin, __ATOMIC_SEQ_CST);
		int32_t pid;

		if (pin != i + 1)
			continue;
		pid = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);
		if (lc != NULL &&
		    (pid == 0 ||
		     mproc__live_gone(lc, pid,
		                      __atomic_load_n(&e->start_ns,
		                                      __ATOMIC_RELAXED)))) {
			/* A reader killed mid-copy: its pin holds nothing. */
			__atomic_compare_exchange_n(&e->pin, &pin, 0, 0,
			                            __ATOMIC_SEQ_CST,
			                            __ATOMIC_RELAXED);
			continue;
		}
		pinned = 1;
	}
	return pinned;
}

/*
 * slot_claim: a buffer for this writer, or -EAGAIN when all are busy.
 * The first pass trusts every claim and pin; the second takes back those
 * of dead processes.
 */
static int slot_claim(struct slot_conn *h)
{
	struct mproc__slot_shared *s = h->s;
	pid_t me = mproc__self_pid();
	struct mproc__live lc;
	int pass;

	mproc__live_init(&lc);
	for (pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < h->nbuf; i++) {
			struct mproc__slot_buf *b = &s->buf[i];
			uint64_t cur = __atomic_load_n(&s->cur, __ATOMIC_SEQ_CST);
			int32_t w = __atomic_load_n(&b->writer, __ATOMIC_ACQUIRE);
			uint64_t ws;
			int dead = 0;

			if (SLOT_CUR_INDEX(cur) == i)
				continue;
			if (w != 0) {
				ws = __atomic_load_n(&b->writer_start,
				                     __ATOMIC_RELAXED);
				if (pass == 0 || !mproc__live_gone(&lc, w, ws))
					continue;
				/* Its start first: while the pid changes hands
				 * the buffer is judged by the pid alone, never
				 * a live claimer by the dead one's start. */
				if (!__atomic_compare_exchange_n(
				            &b->writer_start, &ws,
				            MPROC__SLOT_NO_START, 0, __ATOMIC_SEQ_CST,
				            __ATOMIC_RELAXED))
					continue;
				dead = 1;
			}
			if (!__atomic_compare_exchange_n(&b->writer, &w, me, 0,
			                                 __ATOMIC_SEQ_CST,
			                                 __ATOMIC_RELAXED))
				continue;
			__atomic_store_n(&b->writer_start, mproc__self_start_ns(),
			                 __ATOMIC_RELAXED);
			if (dead)
				__atomic_add_fetch(&s->recoveries, 1,
				                   __ATOMIC_RELAXED);
			/* The claim against the readers' pins: see layout.h. */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (SLOT_CUR_INDEX(__atomic_load_n(&s->cur,
			                                   __ATOMIC_SEQ_CST)) == i ||
			    slot_pinned(h, i, pass == 1 ? &lc : NULL)) {
				__atomic_store_n(&b->writer_start,
				                 MPROC__SLOT_NO_START,
				                 __ATOMIC_RELAXED);
				__atomic_store_n(&b->writer, 0, __ATOMIC_RELEASE);
				continue;
			}
			return (int)i;
		}
	}
	return -EAGAIN;
}

static void slot_release(struct mproc__slot_buf *b)
{
	__atomic_store_n(&b->writer_start, MPROC__SLOT_NO_START,
	                 __ATOMIC_RELAXED);
	__atomic_store_n(&b->writer, 0, __ATOMIC_RELEASE);
}

int mproc__slot_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct slot_conn *h = slot_of(c);
	struct mproc__slot_shared *s = h->s;
	struct mproc__deadline d;
	struct mproc__slot_buf *b;
	uint64_t old, nw;
	int i;

	if (m->size > h->max_payload)
		return -EMSGSIZE;
	if (mproc__unlikely(mproc__slot_in_callback == s))
		return -EDEADLK;
	if (slot_check_identity(h) < 0)
		return -EPROTO;
	mproc__deadline_set(&d, timeout_ms);
	while ((i = slot_claim(h)) < 0) {
		/* Every spare buffer is being copied out: copies end by
		 * themselves, so a short nap is the whole wait. */
		struct timespec nap = { 0, 50000 };

		if (!d.forever && mproc__deadline_ns(&d) <= 0)
			return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
		mproc__deadline_arm(&d);
		nanosleep(&nap, NULL);
	}
	b = &s->buf[i];
	b->request = m->request;
	b->sender = m->sender != 0 ? m->sender : mproc__self_pid();
	b->recipient = m->recipient;
	b->size = m->size;
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			memcpy(slot_buf_data(h, (uint32_t)i), m->data, m->size / 2);
			mproc__crash(MPROC__CRASH_SEND_COPY);
		}
		memcpy(slot_buf_data(h, (uint32_t)i), m->data, m->size);
	}
	mproc__crash(MPROC__CRASH_SEND_COMMIT);
	/* Publish: one compare-and-swap, the version one up. */
	old = __atomic_load_n(&s->cur, __ATOMIC_ACQUIRE);
	do {
		nw = ((SLOT_CUR_VERSION(old) + 1) << 8) | (uint64_t)i;
		__atomic_store_n(&b->version, SLOT_CUR_VERSION(nw),
		                 __ATOMIC_RELEASE);
	} while (!__atomic_compare_exchange_n(&s->cur, &old, nw, 1,
	                                      __ATOMIC_SEQ_CST,
	                                      __ATOMIC_ACQUIRE));
	mproc__crash(MPROC__CRASH_SEND_APPLIED);
	slot_release(b);
	/* The change against the sleepers' bits: see base/futex.h. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mproc__wake_bits(&s->recv_waiting, &s->data_seq, MPROC__FUTEX_ALL);
	mproc__poll_after_send(&s->poll, &h->poll);
	return 0;
}
