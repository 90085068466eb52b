/*
 * recv.c - taking a message: the scan predicates run in, the copy out,
 * and the commit that consumes (or, for the pool, leases) the record.
 *
 * A receiver takes the receive lock, scans from head for the oldest
 * visible record the predicate accepts, copies it out, and commits: the
 * record's mark and the receive words (head moves over consumed records
 * at the front). A record the predicate rejects keeps its place.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"

__thread const struct mproc__queue_shared *mproc__queue_in_callback;

int mproc__queue_advance_head(struct queue_conn *q, uint64_t *w,
                              uint64_t tail, uint64_t taken)
{
	struct mproc__rec r;

	/* The new head after the record at taken becomes consumed (taken ==
	 * UINT64_MAX: none). Skips consumed records. */
	while (w[QC_HEAD] < tail) {
		if (queue_rec_read(q, w[QC_HEAD], tail, &r) < 0)
			return -EPROTO;
		if (w[QC_HEAD] != taken && !(r.flags & MPROC__REC_CONSUMED))
			break;
		w[QC_HEAD] += r.len;
	}
	return 0;
}

/* Is the record addressed to this process but sent before it started (to
 * an earlier owner of its pid)? Such mail is an orphan, not ours. */
static int queue_not_mine(const struct mproc__rec *r)
{
	return r->recipient == mproc__self_pid() && r->sent_ns != 0 &&
	       r->sent_ns < mproc__self_start_ns();
}

static void queue_for_me_upto(struct queue_conn *q, const struct queue_view *v,
                              mproc_match_fn match, uint64_t upto)
{
	if (match == mproc_for_me) {
		q->fm_pid = mproc__self_pid();
		q->fm_gen = v->w[QC_GEN];
		q->fm_from = upto;
	}
}

/* The payload of the record at off, contiguous: in the ring, or copied to
 * the scratch buffer when it wraps. */
static const void *queue_payload(struct queue_conn *q, uint64_t off,
                                 uint32_t size)
{
	if (mproc__ring_contiguous(&q->ring, off + MPROC__REC_HDR, size))
		return mproc__ring_at(&q->ring, off + MPROC__REC_HDR);
	mproc__ring_copy_out(&q->ring, off + MPROC__REC_HDR, q->scratch, size);
	return q->scratch;
}

void mproc__queue_view_msg(struct queue_conn *q, uint64_t off,
                           const struct mproc__rec *r, mproc_msg *view)
{
	memset(view, 0, sizeof(*view));
	view->request = r->request;
	view->sender = r->sender;
	view->recipient = r->recipient;
	view->size = r->size;
	view->capacity = r->size;
	view->data = (void *)queue_payload(q, off, r->size);
}

int mproc__queue_find(struct queue_conn *q, const struct queue_view *v,
                      struct queue_scan *sc, mproc_match_fn match, void *arg,
                      uint64_t *off_out, struct mproc__rec *r)
{
	uint64_t off = v->w[QC_HEAD], gen = v->w[QC_GEN];
	mproc_msg view;
	int ok;

	/* The oldest visible record at or after the scan's resume point
	 * that match accepts: 1 (found: *off_out, *r), 0 (none), or a
	 * negative errno. Records this call already rejected stay rejected:
	 * start after them unless one may have become visible again (gen). */
	if (sc->valid && sc->gen == gen && sc->from >= off &&
	    sc->from <= v->tail)
		off = sc->from;
	else if (match == mproc_for_me && q->fm_pid == mproc__self_pid() &&
	         q->fm_gen == gen && q->fm_from >= off &&
	         q->fm_from <= v->tail)
		off = q->fm_from; /* the same holds across calls for for_me */
	for (; off < v->tail; off += r->len) {
		if (queue_rec_read(q, off, v->tail, r) < 0)
			return -EPROTO;
		if (r->flags & (MPROC__REC_CONSUMED | MPROC__REC_LEASED))
			continue;
		if (r->recipient > 0 && queue_not_mine(r))
			continue;
		if (match != NULL) {
			mproc__queue_view_msg(q, off, r, &view);
			mproc__queue_in_callback = q->s;
			ok = match(&view, arg);
			mproc__queue_in_callback = NULL;
			if (!ok)
				continue;
		}
		*off_out = off;
		queue_for_me_upto(q, v, match, off);
		return 1;
	}
	sc->from = v->tail;
	sc->gen = gen;
	sc->valid = 1;
	queue_for_me_upto(q, v, match, v->tail);
	return 0;
}

static void queue_fill_msg(struct queue_conn *q, mproc_msg *m, uint64_t off,
                           const struct mproc__rec *r)
{
	m->request = r->request;
	m->sender = r->sender;
	m->recipient = r->recipient;
	m->size = r->size;
	if (r->size == 0)
		return;
	if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_RECV_COPY)) {
		mproc__ring_copy_out(&q->ring, off + MPROC__REC_HDR, m->data,
		                     r->size / 2);
		mproc__crash(MPROC__CRASH_RECV_COPY);
	}
	mproc__ring_copy_out(&q->ring, off + MPROC__REC_HDR, m->data, r->size);
}

/* A borrow's m->data: the payload in the ring, or (a copied message
 * whose payload wraps the ring's end) a copy in the handle's own lending
 * buffer, made once. */
static int queue_lend(struct queue_conn *q, mproc_msg *m, uint64_t off,
                      const struct mproc__rec *r)
{
	m->request = r->request;
	m->sender = r->sender;
	m->recipient = r->recipient;
	m->size = r->size;
	m->capacity = r->size;
	if (mproc__ring_contiguous(&q->ring, off + MPROC__REC_HDR, r->size)) {
		m->data = mproc__ring_at(&q->ring, off + MPROC__REC_HDR);
		return 0;
	}
	if (q->lend == NULL && (q->lend = malloc(q->max_payload)) == NULL)
		return -ENOMEM;
	mproc__ring_copy_out(&q->ring, off + MPROC__REC_HDR, q->lend, r->size);
	m->data = q->lend;
	return 0;
}

int mproc__queue_recv_common(struct queue_conn *q, mproc_msg *m,
                             mproc_match_fn match, void *arg, int timeout_ms,
                             struct mproc__lease *lease, int borrow)
{
	struct mproc__queue_shared *s = q->s;
	struct mproc__side *sd = &s->recv;
	struct mproc__deadline d;
	struct queue_scan sc = { 0, 0, 0 };
	struct queue_view v;
	struct queue_watch wt;
	uint64_t nw[MPROC__SIDE_WORDS];
	struct mproc__mark mk;
	struct mproc__rec r;
	uint64_t off = 0;
	int rc, spun = 0, wake, slot = -1, idled = 0;

	queue_poll_before_recv(q);
	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		/* An empty queue is seen without the lock: a blocking receive
		 * goes straight to its spin and leaves the lock to others.
		 * (A stale read only costs the spin; the scan below decides.) */
		if (!spun && !d.expired) {
			uint64_t t = ACQUIRE(&s->send.w[QP_TAIL]);

			if (t == ACQUIRE(&sd->w[QC_HEAD])) {
				mproc__spin(&s->send.w[QP_TAIL], t, &s->shutdown);
				spun = 1;
			}
		}
		if ((rc = queue_lock_recv(q, &d, &v)) < 0)
			return rc;
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&sd->lock);
			return -ESHUTDOWN;
		}
		rc = mproc__queue_find(q, &v, &sc, match, arg, &off, &r);
		if (rc != 0)
			break;
		/* Nothing for us. A sender that died with its commit
		 * journalled is rolled forward (and its message looked at)
		 * before we answer -EAGAIN or wait; the journal's flag is
		 * read only here, off the path that finds mail. */
		if (mproc__queue_send_poll(q)) {
			mproc__unlock(&sd->lock);
			continue;
		}
		/* Borrowed messages whose borrower died are delivered again
		 * (looked for now and then, without the lock). */
		if (mproc__unlikely(v.w[QC_LEASED] != 0) &&
		    mproc__now_ns() - q->brw_scan_ns >=
		            QUEUE_BORROW_SCAN_MS * 1000000ull) {
			mproc__unlock(&sd->lock);
			if (mproc__queue_dead_borrows(q) > 0)
				spun = 0;
			continue;
		}
		/* A descriptor's stale wake goes now; then one more look (a
		 * send whose wake was just drained is found by it). */
		if (mproc__unlikely(q->poll.fd >= 0) && !idled &&
		    q->poll.pid == mproc__self_pid()) {
			idled = 1; /* once a call: later looks only re-arm */
			mproc__poll_idle(&s->poll_armed, &q->poll);
			if (ACQUIRE(&s->send.w[QP_TAIL]) != v.tail) {
				mproc__unlock(&sd->lock);
				continue;
			}
		}
		/* Wait for a sender to move the tail. */
		wt.w[0] = &s->send.w[QP_TAIL];
		wt.v[0] = v.tail;
		wt.w[1] = NULL;
		wt.v[1] = 0;
		if ((rc = mproc__queue_wait(
		             q, sd, &d, timeout_ms, &spun, &wt,
		             &s->recv_waiting, &s->data_seq,
		             match == mproc_for_me
		                     ? queue_pid_bit(mproc__self_pid()) |
		                               WAIT_ANY_BIT
		                     : MPROC__FUTEX_ALL)) < 0)
			return rc;
	}
	if (rc < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}
	if (borrow) {
		if ((rc = queue_lend(q, m, off, &r)) < 0) {
			mproc__unlock(&sd->lock);
			return rc;
		}
	} else if (r.size > m->capacity) {
		/* Leave it where it is; say what it needs. */
		m->size = r.size;
		mproc__unlock(&sd->lock);
		return -EMSGSIZE;
	} else {
		queue_fill_msg(q, m, off, &r);
	}

	memcpy(nw, v.w, sizeof(nw));
	nw[QC_RECEIVED]++;
	mk.off = off;
	mk.attempts = r.attempts;
	mk.reserved = 0;
	wake = 0;
	if (lease != NULL) {
		mk.flags = borrow ? MPROC__REC_LEASED | MPROC__REC_BORROWED
		                  : MPROC__REC_LEASED;
		mk.attempts = r.attempts + 1;
		mk.lease_pid = mproc__self_pid();
		nw[QC_LEASED]++;
		lease->cookie = off;
		lease->attempts = mk.attempts;
	} else {
		mk.flags = MPROC__REC_CONSUMED;
		mk.lease_pid = 0;
		nw[QC_GONE]++;
		if (q->flags & MPROC_QUEUE_MANUAL_DONE) {
			/* Counted in the taker's slot (or, with no slot free,
			 * in QC_TAKEN) until mproc_task_done. */
			slot = mproc__queue_taker_claim(q);
			if (slot < 0)
				nw[QC_TAKEN]++;
		} else {
			wake |= WAKE_DONE; /* if it finished the last task */
		}
		if (mproc__queue_advance_head(q, nw, v.tail, off) < 0) {
			mproc__unlock(&sd->lock);
			return -EPROTO;
		}
		if (nw[QC_HEAD] != v.w[QC_HEAD])
			wake |= WAKE_SPACE;
		/* A queued-count limit frees room even when the head stays. */
		if (q->max_messages != 0)
			wake |= WAKE_SPACE;
	}
	/* The slot first: dying before the commit leaves one task too many
	 * in a slot that no longer counts (its process is gone). */
	if (slot >= 0)
		RELEASE(&s->takers[slot].taken, LOAD(&s->takers[slot].taken) + 1);
	if ((rc = queue_commit(q, sd, QC_WORDS, v.w, nw, &mk,
	                       MPROC__CRASH_RECV_COMMIT)) < 0) {
		if (slot >= 0)
			RELEASE(&s->takers[slot].taken,
			        LOAD(&s->takers[slot].taken) - 1);
		mproc__unlock(&sd->lock);
		return rc;
	}
	queue_unlock_wake(q, sd, wake, MPROC__FUTEX_ALL, nw);
	return 0;
}

int mproc__queue_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                      void *arg, int timeout_ms)
{
	return mproc__queue_recv_common(queue_of(c), m, match, arg, timeout_ms,
	                                NULL, 0);
}

int mproc__queue_consume_locked(struct queue_conn *q, struct queue_view *v,
                                uint64_t off, const struct mproc__rec *r,
                                int *wake, int purge)
{
	uint64_t nw[MPROC__SIDE_WORDS];
	struct queue_view nv;
	struct mproc__mark mk;
	int rc, slot = -1;

	memcpy(nw, v->w, sizeof(nw));
	if (r->flags & MPROC__REC_LEASED)
		nw[QC_LEASED]--;
	nw[QC_GONE]++;
	if (purge == 1)
		nw[QC_PURGED]++;
	if (purge == 2) {
		/* Taken (a released borrow on a MANUAL_DONE queue): counted
		 * in the taker's slot, or QC_TAKEN, until task_done. */
		slot = mproc__queue_taker_claim(q);
		if (slot < 0)
			nw[QC_TAKEN]++;
		else
			RELEASE(&q->s->takers[slot].taken,
			        LOAD(&q->s->takers[slot].taken) + 1);
	}
	*wake |= WAKE_DONE | WAKE_SPACE;
	if (mproc__queue_advance_head(q, nw, v->tail, off) < 0)
		return -EPROTO;
	nv = *v;
	memcpy(nv.w, nw, sizeof(nw));
	if (!queue_view_valid(q, &nv))
		return -EPROTO;
	mk.off = off;
	mk.flags = MPROC__REC_CONSUMED;
	mk.attempts = r->attempts;
	mk.lease_pid = 0;
	mk.reserved = 0;
	if ((rc = queue_commit(q, &q->s->recv, QC_WORDS, v->w, nw, &mk,
	                       MPROC__CRASH_NONE)) < 0)
		return rc;
	*v = nv;
	return 0;
}

int mproc__queue_unlease_locked(struct queue_conn *q, struct queue_view *v,
                                uint64_t off, const struct mproc__rec *r,
                                int *wake)
{
	uint64_t nw[MPROC__SIDE_WORDS];
	struct mproc__mark mk;
	int rc;

	/* Visible again, in its old place: it is still the oldest. */
	memcpy(nw, v->w, sizeof(nw));
	nw[QC_LEASED]--;
	nw[QC_GEN]++;
	mk.off = off;
	mk.flags = 0;
	mk.attempts = r->attempts;
	mk.lease_pid = 0;
	mk.reserved = 0;
	if ((rc = queue_commit(q, &q->s->recv, QC_WORDS, v->w, nw, &mk,
	                       MPROC__CRASH_NONE)) < 0)
		return rc;
	memcpy(v->w, nw, sizeof(nw));
	*wake |= WAKE_DATA;
	return 0;
}
