/*
 * lease.c - the pool's leases: a task taken but left in the ring, hidden
 * and marked with its worker's pid, until the worker finishes it (done) or
 * is found dead (release: visible again in its old place, or failed after
 * too many attempts).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

static int queue_is(mproc_conn *c)
{
	return c != NULL && c->tr == &mproc__queue_transport;
}

int mproc__queue_recv_lease(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                            void *arg, int timeout_ms,
                            struct mproc__lease *lease)
{
	if (!queue_is(c) || m == NULL || lease == NULL ||
	    !mproc__timeout_ok(timeout_ms) ||
	    (m->data == NULL && m->capacity > 0))
		return -EINVAL;
	return mproc__queue_recv_common(queue_of(c), m, match, arg,
	                                timeout_ms, lease, 0);
}

int mproc__queue_lease_done(mproc_conn *c, const struct mproc__lease *lease)
{
	struct queue_conn *q;
	struct queue_view v;
	struct mproc__rec r;
	uint64_t off;
	int rc, wake = 0;

	if (!queue_is(c) || lease == NULL)
		return -EINVAL;
	q = queue_of(c);
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	off = lease->cookie;
	if (off < v.w[QC_HEAD] || off >= v.tail || off % 8 != 0 ||
	    queue_rec_read(q, off, v.tail, &r) < 0 ||
	    !(r.flags & MPROC__REC_LEASED) || r.lease_pid != mproc__self_pid()) {
		/* Not ours any more (released after we were thought dead). */
		mproc__unlock(&q->s->recv.lock);
		return -ENOENT;
	}
	rc = mproc__queue_consume_locked(q, &v, off, &r, &wake, 0);
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	return rc;
}

int mproc__queue_lease_release_timed(mproc_conn *c, pid_t dead,
                                      uint32_t max_attempts,
                                      mproc__dead_fn dead_fn, void *arg,
                                      int timeout_ms)
{
	struct queue_conn *q;
	struct queue_view v;
	struct mproc__deadline d;
	uint64_t nw[MPROC__SIDE_WORDS];
	struct mproc__mark mk;
	struct mproc__rec r;
	mproc_msg view;
	uint64_t off;
	int rc, n = 0, wake = 0;

	if (!queue_is(c) || dead <= 0 || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	q = queue_of(c);
	mproc__deadline_set(&d, timeout_ms);
	if ((rc = queue_lock_recv(q, &d, &v)) < 0)
		return rc;
	for (off = v.w[QC_HEAD]; off < v.tail; off += r.len) {
		if (queue_rec_read(q, off, v.tail, &r) < 0) {
			rc = -EPROTO;
			break;
		}
		if (!(r.flags & MPROC__REC_LEASED) || r.lease_pid != dead)
			continue;
		n++;
		if (max_attempts != 0 && r.attempts >= max_attempts) {
			if (dead_fn != NULL) {
				mproc__queue_view_msg(q, off, &r, &view);
				mproc__queue_in_callback = q->s;
				dead_fn(&view, r.attempts, arg);
				mproc__queue_in_callback = NULL;
			}
			if ((rc = mproc__queue_consume_locked(q, &v, off, &r,
			                                      &wake, 0)) < 0)
				break;
			continue;
		}
		/* Visible again, in its old place: it is still the oldest. */
		memcpy(nw, v.w, sizeof(nw));
		nw[QC_LEASED]--;
		nw[QC_GEN]++;
		mk.off = off;
		mk.flags = 0;
		mk.attempts = r.attempts;
		mk.lease_pid = 0;
		mk.reserved = 0;
		if ((rc = queue_commit(q, &q->s->recv, QC_WORDS, v.w, nw, &mk,
		                       MPROC__CRASH_NONE)) < 0)
			break;
		memcpy(v.w, nw, sizeof(nw));
		wake |= WAKE_DATA;
	}
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	return rc < 0 ? rc : n;
}

int mproc__queue_lease_release(mproc_conn *c, pid_t dead, uint32_t max_attempts,
                               mproc__dead_fn dead_fn, void *arg)
{
	return mproc__queue_lease_release_timed(c, dead, max_attempts, dead_fn,
	                                         arg, QUEUE_LOCK_MS);
}

int mproc__queue_peek_timed(mproc_conn *c, mproc_match_fn match, void *arg,
                             int timeout_ms)
{
	struct queue_scan sc = { 0, 0, 0 };
	struct mproc__deadline d;
	struct queue_conn *q;
	struct queue_view v;
	struct mproc__rec r;
	uint64_t off;
	int rc;

	if (!queue_is(c) || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	q = queue_of(c);
	mproc__deadline_set(&d, timeout_ms);
	/* A send journal pending may be a dead sender's committed message
	 * that another sender is rolling forward right now: a peek that
	 * says "nothing" must not be earlier than that message, so wait for
	 * the send lock (within the timeout; it repairs if its owner died). */
	if (!mproc__queue_send_poll(q) && mproc__journal_pending(&q->s->send)) {
		rc = queue_lock(q, &q->s->send, &d);
		if (rc == 0)
			mproc__unlock(&q->s->send.lock);
		else if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
	}
	if ((rc = queue_lock_recv(q, &d, &v)) < 0)
		return rc;
	rc = mproc__queue_find(q, &v, &sc, match, arg, &off, &r);
	mproc__unlock(&q->s->recv.lock);
	return rc;
}

int mproc__queue_peek(mproc_conn *c, mproc_match_fn match, void *arg)
{
	return mproc__queue_peek_timed(c, match, arg, QUEUE_LOCK_MS);
}
