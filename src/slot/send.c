/*
 * send.c - replacing the slot's value: claim a buffer nobody reads, fill
 * it, publish it with one compare-and-swap (the protocol is in
 * slot/layout.h). Never waits for a reader, except when every spare
 * buffer is pinned by a reader in the middle of its copy (more readers
 * copying distinct older values than there are buffers), or held by open
 * reservations and borrows: then it naps until one ends, up to its
 * timeout. The zero-copy send (reserve, commit, cancel) is the same
 * claim and publish with the caller filling the buffer in between.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/futex.h"
#include "slot/slot.h"

/* Is buffer i pinned by a reader (copying it out, or lending it by a
 * borrow)? Dead readers' pins are dropped when lc is set (and count as
 * free). */
static int slot_pinned(struct slot_conn *h, uint32_t i, struct mproc__live *lc)
{
	struct mproc__slot_shared *s = h->s;
	uint32_t n = __atomic_load_n(&s->readers_hwm, __ATOMIC_SEQ_CST);
	int pinned = 0;

	/* Only the entries ever claimed (see layout.h): a pin is always in
	 * an entry below the high-water mark its claim raised first. */
	if (n > MPROC__SLOT_READERS)
		n = MPROC__SLOT_READERS; /* scribbled: scan them all */
	for (unsigned k = 0; k < n; k++) {
		struct mproc__slot_reader *e = &s->readers[k];
		uint32_t pin = __atomic_load_n(&e->pin, __ATOMIC_SEQ_CST);
		uint32_t lent = __atomic_load_n(&e->borrow, __ATOMIC_SEQ_CST);
		int32_t pid;

		if (pin != i + 1 && lent != i + 1)
			continue;
		pid = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);
		if (lc != NULL &&
		    (pid == 0 ||
		     mproc__live_gone(lc, pid,
		                      __atomic_load_n(&e->start_ns,
		                                      __ATOMIC_RELAXED)))) {
			/* A reader killed mid-copy or holding a borrow: its
			 * pins hold nothing. */
			if (pin == i + 1)
				__atomic_compare_exchange_n(&e->pin, &pin, 0, 0,
				                            __ATOMIC_SEQ_CST,
				                            __ATOMIC_RELAXED);
			if (lent == i + 1)
				__atomic_compare_exchange_n(&e->borrow, &lent, 0,
				                            0, __ATOMIC_SEQ_CST,
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

/*
 * slot_claim_wait: slot_claim, napping while every spare buffer is busy
 * (copies end by themselves; a reservation or a borrow ends when its
 * holder says so), up to timeout_ms. The index, -EAGAIN or -ETIMEDOUT.
 */
static int slot_claim_wait(struct slot_conn *h, int timeout_ms)
{
	struct mproc__deadline d;
	int i;

	mproc__deadline_set(&d, timeout_ms);
	while ((i = slot_claim(h)) < 0) {
		struct timespec nap = { 0, 50000 };

		if (!d.forever && mproc__deadline_ns(&d) <= 0)
			return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
		mproc__deadline_arm(&d);
		nanosleep(&nap, NULL);
	}
	return i;
}

/* slot_publish makes claimed buffer i, filled, the value: one
 * compare-and-swap, the version one up; then the claim goes and the
 * sleepers and pollers are woken. */
static void slot_publish(struct slot_conn *h, uint32_t i, int32_t request,
                         pid_t sender, pid_t recipient, uint32_t size)
{
	struct mproc__slot_shared *s = h->s;
	struct mproc__slot_buf *b = &s->buf[i];
	uint64_t old, nw;

	b->request = request;
	b->sender = sender;
	b->recipient = recipient;
	b->size = size;
	mproc__crash(MPROC__CRASH_SEND_COMMIT);
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
}

int mproc__slot_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct slot_conn *h = slot_of(c);
	struct mproc__slot_shared *s = h->s;
	int i;

	if (m->size > h->max_payload)
		return -EMSGSIZE;
	if (slot_in_callback(s))
		return -EDEADLK;
	if (slot_check_identity(h) < 0)
		return -EPROTO;
	if ((i = slot_claim_wait(h, timeout_ms)) < 0)
		return i;
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			memcpy(slot_buf_data(h, (uint32_t)i), m->data, m->size / 2);
			mproc__crash(MPROC__CRASH_SEND_COPY);
		}
		memcpy(slot_buf_data(h, (uint32_t)i), m->data, m->size);
	}
	slot_publish(h, (uint32_t)i, m->request,
	             m->sender != 0 ? m->sender : mproc__self_pid(),
	             m->recipient, m->size);
	return 0;
}

/*
 * Zero-copy. A reservation is a claim (as send makes) kept open: the
 * buffer is the caller's to fill until commit publishes it exactly as
 * send would, or cancel (or close, or the process's death) frees it.
 * Nobody waits for it: other writers use the other buffers.
 */
int mproc__slot_reserve(mproc_conn *c, size_t size, void **buf,
                        int timeout_ms)
{
	struct slot_conn *h = slot_of(c);
	pid_t me = mproc__self_pid();
	int i;

	if (size > h->max_payload)
		return -EMSGSIZE;
	if (slot_in_callback(h->s))
		return -EDEADLK;
	if (slot_check_identity(h) < 0)
		return -EPROTO;
	pthread_mutex_lock(&h->zmu);
	/* A forked copy of the handle holds none of its parent's. */
	if (h->res_state != SLOT_RES_NONE && h->res_pid == me) {
		pthread_mutex_unlock(&h->zmu);
		return -EBUSY;
	}
	h->res_state = SLOT_RES_WAIT;
	h->res_pid = me;
	pthread_mutex_unlock(&h->zmu);

	i = slot_claim_wait(h, timeout_ms);

	pthread_mutex_lock(&h->zmu);
	if (i < 0) {
		h->res_state = SLOT_RES_NONE;
	} else {
		h->res_state = SLOT_RES_OPEN;
		h->res_buf = (uint32_t)i;
		h->res_size = (uint32_t)size;
	}
	pthread_mutex_unlock(&h->zmu);
	if (i < 0)
		return i;
	*buf = slot_buf_data(h, (uint32_t)i);
	return 0;
}

int mproc__slot_commit(mproc_conn *c, int32_t request, pid_t recipient,
                       size_t size)
{
	struct slot_conn *h = slot_of(c);
	pid_t me = mproc__self_pid();
	uint32_t i;

	if (slot_in_callback(h->s))
		return -EDEADLK;
	pthread_mutex_lock(&h->zmu);
	if (h->res_state != SLOT_RES_OPEN || h->res_pid != me ||
	    size > h->res_size) {
		pthread_mutex_unlock(&h->zmu);
		return -EINVAL; /* the reservation, if any, stays */
	}
	if (slot_check_identity(h) < 0) {
		pthread_mutex_unlock(&h->zmu);
		return -EPROTO;
	}
	i = h->res_buf;
	h->res_state = SLOT_RES_NONE;
	pthread_mutex_unlock(&h->zmu);
	slot_publish(h, i, request, me, recipient, (uint32_t)size);
	return 0;
}

/* Frees this process's open reservation, if any. zmu held. */
static int slot_drop_locked(struct slot_conn *h)
{
	if (h->res_state != SLOT_RES_OPEN || h->res_pid != mproc__self_pid())
		return -EINVAL;
	h->res_state = SLOT_RES_NONE;
	if (h->res_buf < h->nbuf)
		slot_release(&h->s->buf[h->res_buf]);
	return 0;
}

int mproc__slot_cancel(mproc_conn *c)
{
	struct slot_conn *h = slot_of(c);
	int rc;

	if (slot_in_callback(h->s))
		return -EDEADLK;
	pthread_mutex_lock(&h->zmu);
	rc = slot_drop_locked(h);
	pthread_mutex_unlock(&h->zmu);
	return rc;
}

void mproc__slot_drop_reservation(struct slot_conn *h)
{
	pthread_mutex_lock(&h->zmu);
	slot_drop_locked(h);
	pthread_mutex_unlock(&h->zmu);
}
