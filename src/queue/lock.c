/*
 * lock.c - taking one of the queue's two locks, and the repairs after an
 * owner that died holding one.
 *
 * Crash safety (see shm/journal.h for the journal): the next process to
 * take a side's lock after its owner died rolls a pending journal forward
 * and checks the side's words and the records they cover. A record
 * half-written beyond tail is not part of the queue until a commit moves
 * tail over it. A payload half-copied out by a dying receiver was never
 * committed as taken, so the message is delivered again (at-least-once).
 * A receive journal's mark is rolled forward only while head has not
 * passed its record: once head moved, the mark was applied (marks go
 * first) and the bytes may already hold a newer record. A receive that
 * finds nothing (and join, empty, peek) rolls forward a send journal whose
 * writer died (mproc__queue_send_poll), so a message committed by a dying
 * sender does not wait for the next sender.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>

#include "queue/queue.h"

static const struct mproc__deadline queue_try_only = { .expired = true,
	                                               .armed = true };

int mproc__queue_walk_check(struct queue_conn *q, uint64_t head,
                            uint64_t tail, int locked, uint64_t *queued,
                            uint64_t *leased)
{
	struct mproc__rec r;
	uint64_t off;

	/* Bounded: each step moves at least one header. Without the receive
	 * lock (locked == 0) receivers mark records and move head meanwhile:
	 * only the records' shape is checked, not that the one at head is
	 * live. */
	*queued = *leased = 0;
	for (off = head; off < tail; off += r.len) {
		if (queue_rec_read(q, off, tail, &r) < 0)
			return -EPROTO;
		if (r.flags & MPROC__REC_LEASED)
			(*leased)++;
		else if (!(r.flags & MPROC__REC_CONSUMED))
			(*queued)++;
		else if (off == head && locked && !(r.flags & MPROC__REC_PAD))
			return -EPROTO; /* consumed records never stay at the head */
	}
	return 0;
}

/* Roll the send side's journal forward after its writer died. Send lock
 * held. */
static int queue_repair_send(struct queue_conn *q)
{
	struct mproc__side *sd = &q->s->send;
	uint64_t nw[MPROC__SIDE_WORDS], head, queued, leased;

	head = ACQUIRE(&q->s->recv.w[QC_HEAD]);
	if (mproc__journal_pending(sd)) {
		if (mproc__journal_overlay(sd, QP_WORDS, nw) < 0 ||
		    sd->journal.mark.off != UINT64_MAX ||
		    !queue_send_words_valid(q, nw, head))
			return -EPROTO;
		mproc__words_store(sd, nw, QP_WORDS);
		mproc__journal_close(sd);
	}
	mproc__words_load(sd, nw, QP_WORDS);
	/* Receivers move head and mark records meanwhile; records in
	 * [head, tail) keep their shape (only senders write those bytes,
	 * and they wait for this lock). */
	if (!queue_send_words_valid(q, nw, head) ||
	    mproc__queue_walk_check(q, head, nw[QP_TAIL], 0, &queued,
	                            &leased) < 0)
		return -EPROTO;
	STORE(&sd->recoveries, LOAD(&sd->recoveries) + 1);
	return 0;
}

int mproc__queue_repair_recv(struct queue_conn *q)
{
	struct mproc__side *sd = &q->s->recv;
	struct mproc__journal *j = &sd->journal;
	struct queue_view v;
	uint64_t queued, leased;

	queue_view_load(q->s, &v);
	if (mproc__journal_pending(sd)) {
		uint64_t live_head = v.w[QC_HEAD];

		if (mproc__journal_overlay(sd, QC_WORDS, v.w) < 0 ||
		    !queue_view_valid(q, &v))
			return -EPROTO;
		/* A head past the mark means the mark went first, and its
		 * bytes may hold a newer record by now (senders do not wait
		 * for this lock): leave them alone. Else the record is still
		 * between head and tail. */
		if (j->mark.off != UINT64_MAX && j->mark.off >= live_head) {
			if (j->mark.off >= v.tail || j->mark.off % 8 != 0 ||
			    (j->mark.flags & ~MPROC__REC_KNOWN) != 0)
				return -EPROTO;
			mproc__mark_apply(&q->ring, &j->mark);
		}
		mproc__words_store(sd, v.w, QC_WORDS);
		mproc__journal_close(sd);
	}
	queue_view_load(q->s, &v);
	if (!queue_view_valid(q, &v) ||
	    mproc__queue_walk_check(q, v.w[QC_HEAD], v.tail, 1, &queued,
	                            &leased) < 0 ||
	    leased != v.w[QC_LEASED])
		return -EPROTO;
	STORE(&sd->recoveries, LOAD(&sd->recoveries) + 1);
	return 0;
}

struct queue_repair_arg {
	struct queue_conn *q;
	int send; /* which side */
};

static int queue_repair(void *arg)
{
	struct queue_repair_arg *ra = arg;

	return ra->send ? queue_repair_send(ra->q)
	                : mproc__queue_repair_recv(ra->q);
}

int mproc__queue_lock_slow(struct queue_conn *q, struct mproc__side *sd,
                           const struct mproc__deadline *d, int rc)
{
	struct queue_repair_arg ra = { q, sd == &q->s->send };

	return mproc__side_lock(sd, d, rc, queue_repair, &ra);
}

int mproc__queue_send_poll(struct queue_conn *q)
{
	struct mproc__side *sd = &q->s->send;
	int rc;

	/* A sender that died holding the send lock with its journal pending
	 * committed a message nobody will publish until the next sender
	 * comes. Roll it forward now if the lock is free (never waits).
	 * Returns 1 when it repaired the send side, else 0. */
	if (!mproc__journal_pending(sd) ||
	    mproc__lock_kind_of(&sd->lock) != q->lock_kind)
		return 0;
	rc = mproc__lock(&sd->lock, &queue_try_only);
	if (rc < 0)
		return 0; /* busy: its holder publishes and wakes */
	if (rc == 1) {
		/* A corrupt queue says so to the next caller. */
		rc = queue_repair_send(q) == 0;
		mproc__lock_consistent(&sd->lock);
	}
	mproc__unlock(&sd->lock);
	return rc;
}
