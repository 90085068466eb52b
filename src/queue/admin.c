/*
 * admin.c - the calls about the queue rather than a message: join, empty,
 * task_done, shutdown.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

int mproc__queue_join(mproc_conn *c, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__queue_shared *s = q->s;
	struct mproc__deadline d;
	struct queue_view v;
	struct queue_dead_takers dead;
	uint64_t last_purge = 0, now, held;
	int rc, manual = (q->flags & MPROC_QUEUE_MANUAL_DONE) != 0;

	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		mproc__queue_send_poll(q);
		/* Takers that died before task_done: found without the lock
		 * (a /proc look-up each), forgotten under it. */
		if (manual)
			mproc__queue_takers_sum(q, &dead);
		if ((rc = queue_lock_recv(q, &d, &v)) < 0)
			return rc;
		if (manual && dead.n > 0)
			mproc__queue_takers_reclaim(q, &dead);
		held = manual ? mproc__queue_takers_sum(q, NULL) : 0;
		if (held > v.w[QC_GONE]) {
			mproc__unlock(&s->recv.lock);
			return -EPROTO; /* more held than ever taken */
		}
		if (v.w[QC_LEASED] != 0 &&
		    mproc__now_ns() - q->brw_scan_ns >=
		            QUEUE_BORROW_SCAN_MS * 1000000ull) {
			mproc__unlock(&s->recv.lock);
			if ((rc = mproc__queue_dead_borrows(q)) < 0)
				return rc;
			continue;
		}
		if (queue_unfinished(&v) + held == 0) {
			mproc__unlock(&s->recv.lock);
			return 0;
		}
		now = mproc__now_ns();
		if (queue_queued(&v) > 0 && v.dtail > v.w[QC_HEAD] &&
		    (last_purge == 0 ||
		     now - last_purge >= QUEUE_JOIN_SLICE_MS * 1000000ull)) {
			/* Dead recipients' mail would hold the join for ever.
			 * The scan takes no lock: let go of it first. */
			mproc__unlock(&s->recv.lock);
			last_purge = now;
			if ((rc = mproc__queue_orphans(q, 1)) < 0)
				return rc;
			continue;
		}
		if ((rc = queue_expired(&d, timeout_ms)) < 0) {
			mproc__unlock(&s->recv.lock);
			return rc;
		}
		/* Done when sent - gone + taken reaches 0. gone and taken
		 * move under the lock held until the bits are set, and sent
		 * only grows: the wake after the last finish cannot be
		 * missed, and the slice re-checks for a dead waker. */
		if ((rc = mproc__queue_sleep(q, &s->recv, &s->join_waiting,
		                             &s->done_seq, &d,
		                             QUEUE_JOIN_SLICE_MS,
		                             MPROC__FUTEX_ALL, NULL)) < 0)
			return rc;
	}
}

int mproc__queue_empty(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_view v;
	int rc;

	mproc__queue_send_poll(q);
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	mproc__unlock(&q->s->recv.lock);
	return queue_queued(&v) == 0;
}

int mproc__queue_task_done(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	uint64_t nw[MPROC__SIDE_WORDS];
	struct queue_view v;
	int rc;

	if (!(q->flags & MPROC_QUEUE_MANUAL_DONE))
		return -EINVAL;
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	if (mproc__queue_taker_done(q) == 0) {
		queue_unlock_wake(q, &q->s->recv, WAKE_DONE, MPROC__FUTEX_ALL,
		                  v.w);
		return 0;
	}
	if (v.w[QC_TAKEN] == 0) {
		mproc__unlock(&q->s->recv.lock);
		return -EINVAL;
	}
	memcpy(nw, v.w, sizeof(nw));
	nw[QC_TAKEN]--;
	if ((rc = queue_commit(q, &q->s->recv, QC_WORDS, v.w, nw, NULL,
	                       MPROC__CRASH_NONE)) < 0) {
		mproc__unlock(&q->s->recv.lock);
		return rc;
	}
	queue_unlock_wake(q, &q->s->recv, WAKE_DONE, MPROC__FUTEX_ALL, nw);
	return 0;
}

int mproc__queue_shutdown(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__queue_shared *s = q->s;

	if (mproc__queue_check_identity(q) < 0)
		return -EPROTO;
	/* No lock: shutdown must work even while a stopped process holds it.
	 * Move every word so no sleeper can miss the flag. */
	__atomic_store_n(&s->shutdown, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->data_seq, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->space_seq, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->done_seq, 1, __ATOMIC_SEQ_CST);
	mproc__futex_wake(&s->data_seq, INT_MAX, MPROC__FUTEX_ALL);
	mproc__futex_wake(&s->space_seq, INT_MAX, MPROC__FUTEX_ALL);
	mproc__futex_wake(&s->done_seq, INT_MAX, MPROC__FUTEX_ALL);
	mproc__queue_poll_wake(q);
	return 0;
}
