/*
 * zerocopy.c - a payload built in the ring (reserve, commit, cancel) and
 * read where it lies (borrow, release).
 *
 * A reservation takes the send lock and keeps it until commit or cancel:
 * the record is written past tail, where no receiver looks, and commit
 * publishes it with the one commit a send makes. So a process killed
 * holding a reservation leaves the lock to the next sender, who finds no
 * journal pending: nothing partial is delivered. A reserved record never
 * crosses the ring's end: when it would, a pad record (consumed from the
 * start, no message) fills the ring's end first and both are published
 * together.
 *
 * A borrow is a lease (as the pool's) marked BORROWED: the record stays
 * in the ring, hidden, until release consumes it. A borrower that dies
 * leaves its record leased to a dead pid; receivers that find nothing
 * and joins look for such records now and then (without a lock, as the
 * orphan scans do) and make them visible again: the message is delivered
 * again, whole.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"

/* Claim the handle's reservation (or borrow) state: -EBUSY if this
 * process has one open. A copy inherited by fork() is not this
 * process's: it is forgotten. */
static int zc_claim(int *state, pid_t *owner)
{
	int none = 0;

	if (__atomic_load_n(state, __ATOMIC_ACQUIRE) != 0 &&
	    *owner != mproc__self_pid())
		__atomic_store_n(state, 0, __ATOMIC_RELEASE);
	if (!__atomic_compare_exchange_n(state, &none, 1, 0, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE))
		return -EBUSY;
	return 0;
}

static int zc_mine(const int *state, const pid_t *owner)
{
	return __atomic_load_n(state, __ATOMIC_ACQUIRE) == 2 &&
	       *owner == mproc__self_pid();
}

int mproc__queue_reserve(mproc_conn *c, size_t size, void **buf,
                         int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__queue_shared *s = q->s;
	struct mproc__deadline d;
	uint64_t p[QP_WORDS], len, pad = 0;
	struct mproc__rec r;
	int rc;

	if (size > q->max_payload)
		return -EMSGSIZE;
	len = mproc__rec_len(size);
	if (2 * len > q->ring.cap)
		return -EMSGSIZE; /* could not be made contiguous */
	if (mproc__unlikely(mproc__queue_in_callback == s))
		return -EDEADLK;
	if ((rc = zc_claim(&q->rsv_state, &q->rsv_pid)) < 0)
		return rc;
	mproc__deadline_set(&d, timeout_ms);
	if ((rc = queue_take_room(q, &d, timeout_ms, len, 1, p, &pad)) < 0)
		goto fail;
	if (pad != 0) {
		/* Past tail, where nobody reads: published with the record. */
		memset(&r, 0, sizeof(r));
		r.magic = MPROC__REC_MAGIC;
		r.len = (uint32_t)pad;
		r.flags = MPROC__REC_CONSUMED | MPROC__REC_PAD;
		r.size = (uint32_t)(pad - MPROC__REC_HDR);
		mproc__ring_copy_in(&q->ring, p[QP_TAIL], &r, MPROC__REC_HDR);
	}
	memcpy(q->rsv_words, p, sizeof(p));
	q->rsv_pad = pad;
	q->rsv_size = (uint32_t)size;
	q->rsv_pid = mproc__self_pid();
	q->rsv_thread = pthread_self();
	*buf = mproc__ring_at(&q->ring, p[QP_TAIL] + pad + MPROC__REC_HDR);
	__atomic_store_n(&q->rsv_state, 2, __ATOMIC_RELEASE);
	return 0; /* the send lock stays held until commit or cancel */
fail:
	__atomic_store_n(&q->rsv_state, 0, __ATOMIC_RELEASE);
	return rc;
}

int mproc__queue_commit(mproc_conn *c, int32_t request, pid_t recipient,
                        size_t size)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__side *sd = &q->s->send;
	uint64_t *p = q->rsv_words, np[QP_WORDS], off, len;
	struct mproc__rec r;
	int rc;

	if (!mproc__queue_rsv_mine(q) || size > q->rsv_size)
		return -EINVAL; /* the reservation, if any, stays open */
	len = mproc__rec_len(size);
	off = p[QP_TAIL] + q->rsv_pad;
	memset(&r, 0, sizeof(r));
	r.magic = MPROC__REC_MAGIC;
	r.len = (uint32_t)len;
	r.request = request;
	r.sender = mproc__self_pid();
	r.recipient = recipient;
	r.size = (uint32_t)size;
	if (recipient > 0) {
		r.sent_ns = mproc__boottime_ns();
		mproc__proc_reserve();
	}
	r.id = p[QP_SENT];
	mproc__ring_copy_in(&q->ring, off, &r, MPROC__REC_HDR);
	np[QP_SENT] = p[QP_SENT] + 1;
	np[QP_TAIL] = off + len;
	np[QP_DTAIL] = recipient > 0 ? np[QP_TAIL] : p[QP_DTAIL];
	rc = queue_commit(q, sd, QP_WORDS, p, np, NULL,
	                  MPROC__CRASH_SEND_COMMIT);
	__atomic_store_n(&q->rsv_state, 0, __ATOMIC_RELEASE);
	queue_unlock_wake(q, sd, rc == 0 ? WAKE_DATA : 0,
	                  queue_data_bits(recipient), NULL);
	queue_poll_after_send(q);
	return rc;
}

int mproc__queue_cancel(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);

	if (!mproc__queue_rsv_mine(q))
		return -EINVAL;
	__atomic_store_n(&q->rsv_state, 0, __ATOMIC_RELEASE);
	mproc__unlock(&q->s->send.lock);
	return 0;
}

int mproc__queue_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                        void *arg, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__lease lease;
	int rc;

	if ((rc = zc_claim(&q->brw_state, &q->brw_pid)) < 0)
		return rc;
	rc = mproc__queue_recv_common(q, m, match, arg, timeout_ms, &lease, 1);
	if (rc < 0) {
		__atomic_store_n(&q->brw_state, 0, __ATOMIC_RELEASE);
		return rc;
	}
	q->brw_off = lease.cookie;
	q->brw_data = m->data;
	q->brw_pid = mproc__self_pid();
	__atomic_store_n(&q->brw_state, 2, __ATOMIC_RELEASE);
	return 0;
}

int mproc__queue_release(mproc_conn *c, mproc_msg *m)
{
	struct queue_conn *q = queue_of(c);
	struct queue_view v;
	struct mproc__rec r;
	uint64_t off = q->brw_off;
	int rc, wake = 0;

	if (!zc_mine(&q->brw_state, &q->brw_pid) || m->data != q->brw_data)
		return -EINVAL;
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc; /* still borrowed: try again */
	if (off < v.w[QC_HEAD] || off >= v.tail || off % 8 != 0 ||
	    queue_rec_read(q, off, v.tail, &r) < 0 ||
	    (r.flags & (MPROC__REC_LEASED | MPROC__REC_BORROWED)) !=
	            (MPROC__REC_LEASED | MPROC__REC_BORROWED) ||
	    r.lease_pid != mproc__self_pid())
		rc = -EPROTO; /* not ours any more: the ring was scribbled on */
	else
		rc = mproc__queue_consume_locked(
		        q, &v, off, &r, &wake,
		        (q->flags & MPROC_QUEUE_MANUAL_DONE) ? 2 : 0);
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	__atomic_store_n(&q->brw_state, 0, __ATOMIC_RELEASE);
	return rc;
}

void mproc__queue_zc_close(struct queue_conn *q)
{
	struct queue_view v;
	struct mproc__rec r;
	int wake = 0;

	if (mproc__queue_rsv_mine(q))
		mproc__queue_cancel(&q->base);
	/* A borrow not released: the message goes back, visible again. */
	if (zc_mine(&q->brw_state, &q->brw_pid) &&
	    queue_lock_recv_default(q, &v) == 0) {
		if (q->brw_off >= v.w[QC_HEAD] && q->brw_off < v.tail &&
		    queue_rec_read(q, q->brw_off, v.tail, &r) == 0 &&
		    (r.flags & MPROC__REC_BORROWED) &&
		    r.lease_pid == mproc__self_pid())
			mproc__queue_unlease_locked(q, &v, q->brw_off, &r, &wake);
		queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	}
	__atomic_store_n(&q->brw_state, 0, __ATOMIC_RELEASE);
	free(q->lend);
	q->lend = NULL;
}
