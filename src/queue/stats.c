/*
 * stats.c - the scans that read the whole queue: stats, and orphans
 * (directed mail whose recipient is gone) for stats, purge and join.
 *
 * None of them holds a lock while it scans. The counts come from a
 * lock-free snapshot of the two sides' words (each side's journal seq is
 * its sequence lock, shm/journal.h); the records are read between head
 * and tail without the receive lock, and a record is trusted only if head
 * had not passed it when its bytes were read (until head passes a record,
 * no sender can reuse its bytes). Liveness is looked up once per
 * recipient process per scan (base/proc.h), never under a lock. A purge
 * then takes the receive lock only to consume the orphans it found,
 * QUEUE_PURGE_BATCH at a time, each checked again under the lock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

/* Orphans consumed per hold of the receive lock. */
#define QUEUE_PURGE_BATCH 64
/* Lock-free tries at a snapshot before taking the locks for a copy. */
#define QUEUE_SNAPSHOT_TRIES 64

/*
 * queue_snapshot reads both sides' words without a lock: the receive side
 * first, then the send side. That pair is a state the queue could be in
 * (receivers paused while senders went on) as long as the room it leaves
 * is real; if it is not, or a side stays mid-commit, the words are copied
 * under the locks instead (held for the copy only). Returns 0 or a
 * negative errno.
 */
static int queue_side_read(const struct mproc__side *sd, unsigned n,
                           uint64_t *out, uint32_t *seq, unsigned try)
{
	if (mproc__side_snapshot(sd, n, out, seq) == 0)
		return 0;
	/* A commit that stays pending under a live holder (stopped in the
	 * middle of it): what it will leave. A dead holder's or an
	 * ownerless pending journal goes to the lock, which repairs or
	 * refuses it. */
	if (try >= QUEUE_SNAPSHOT_TRIES / 2 && mproc__lock_held_live(&sd->lock) &&
	    mproc__side_pending_snapshot(sd, n, out, seq) == 0)
		return 0;
	return -EAGAIN;
}

static int queue_snapshot(struct queue_conn *q, struct queue_view *v,
                          uint32_t *seq)
{
	struct mproc__queue_shared *s = q->s;
	struct mproc__deadline d;
	uint64_t p[QP_WORDS], queued, leased;
	unsigned i;
	int rc;

	if (mproc__queue_check_identity(q) < 0)
		return -EPROTO;
	memset(v, 0, sizeof(*v));
	for (i = 0; i < QUEUE_SNAPSHOT_TRIES; i++) {
		if (i > 0)
			mproc__pause();
		/* After a few tries, a side that stays mid-commit (its writer
		 * stopped or dead there) is read as that commit leaves it. */
		if (queue_side_read(&s->recv, QC_WORDS, v->w, &seq[0], i) < 0 ||
		    queue_side_read(&s->send, QP_WORDS, p, &seq[1], i) < 0)
			continue;
		v->sent = p[QP_SENT];
		v->tail = p[QP_TAIL];
		v->dtail = p[QP_DTAIL];
		if (!queue_view_valid(q, v) || !queue_view_whole(v))
			continue;
		if (q->max_messages != 0 &&
		    v->sent - v->w[QC_GONE] > q->max_messages)
			continue;
		return 0;
	}
	/* Busy, or a dead owner's journal waits for repair: the locks. */
	mproc__deadline_set(&d, QUEUE_LOCK_MS);
	if ((rc = queue_lock(q, &s->send, &d)) < 0)
		return rc;
	if ((rc = queue_lock_recv(q, &d, v)) < 0) {
		mproc__unlock(&s->send.lock);
		return rc;
	}
	/* With both locks held the ring stands still: check the records
	 * against the counts while we are here. */
	if (mproc__queue_walk_check(q, v->w[QC_HEAD], v->tail, 1, &queued,
	                            &leased) < 0 ||
	    queued != queue_queued(v) || leased != v->w[QC_LEASED])
		rc = -EPROTO;
	seq[0] = seq[1] = 1; /* checked already */
	mproc__unlock(&s->recv.lock);
	mproc__unlock(&s->send.lock);
	return rc;
}

/* An orphan found by a scan, to be checked again under the lock. */
struct queue_orphan {
	uint64_t off;
	uint64_t id;
	pid_t borrower; /* a dead borrow's: the pid it is leased to */
};

/* What a scan looks for: orphans (directed mail whose recipient is gone),
 * or dead borrows (a borrowed record whose borrower is gone). */
enum { SCAN_ORPHANS, SCAN_BORROWS };

static int queue_scan_pick(const struct mproc__rec *r, struct mproc__live *lc,
                           int what)
{
	if (what == SCAN_BORROWS)
		return (r->flags & (MPROC__REC_LEASED | MPROC__REC_BORROWED)) ==
		               (MPROC__REC_LEASED | MPROC__REC_BORROWED) &&
		       mproc__live_gone(lc, r->lease_pid, 0);
	return r->recipient > 0 && r->sent_ns != 0 &&
	       !(r->flags & (MPROC__REC_CONSUMED | MPROC__REC_LEASED)) &&
	       mproc__live_gone(lc, r->recipient, r->sent_ns);
}

/*
 * queue_scan_orphans walks [from, end) without a lock, checking every
 * record's shape and counting the
 * visible directed records whose recipient is gone; up to max of them go
 * to out (their offsets and ids). Returns the count, or -EPROTO. *next is
 * where a further scan should resume.
 */
static int64_t queue_scan_orphans(struct queue_conn *q,
                                  const struct queue_view *v, uint64_t from,
                                  uint64_t end, struct mproc__live *lc,
                                  struct queue_orphan *out, unsigned max,
                                  unsigned *n_out, uint64_t *next,
                                  uint64_t *counts, int what)
{
	const uint64_t *headp = &q->s->recv.w[QC_HEAD];
	uint64_t off = from, head;
	struct mproc__rec r;
	int64_t count = 0;
	int rc;

	*n_out = 0;
	while (off < end) {
		rc = queue_rec_read(q, off, v->tail, &r);
		/* The header's bytes before the look at head. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		head = ACQUIRE(headp);
		if (head > off) {
			/* Consumed meanwhile and its bytes maybe reused: go on
			 * from the head, always a record's start. */
			if (head % 8 != 0)
				return -EPROTO;
			off = head;
			continue;
		}
		if (rc < 0)
			return -EPROTO;
		if (counts != NULL) {
			/* visible, leased, consumed at the head */
			if (r.flags & MPROC__REC_LEASED)
				counts[1]++;
			else if (!(r.flags & MPROC__REC_CONSUMED))
				counts[0]++;
			else if (off == v->w[QC_HEAD] &&
			         !(r.flags & MPROC__REC_PAD))
				counts[2]++;
		}
		if (queue_scan_pick(&r, lc, what)) {
			count++;
			if (*n_out < max) {
				out[*n_out].off = off;
				out[*n_out].id = r.id;
				out[*n_out].borrower = r.lease_pid;
				(*n_out)++;
				if (*n_out == max) {
					off += r.len;
					break;
				}
			}
		}
		off += r.len;
	}
	*next = off;
	return count;
}

/* Consume the orphans of out that are still there. Returns how many. */
static int queue_purge_batch(struct queue_conn *q,
                             const struct queue_orphan *out, unsigned n,
                             int *wake, int what)
{
	struct queue_view v;
	struct mproc__rec r;
	unsigned i;
	int rc, done = 0;

	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		uint64_t off = out[i].off;

		if (off < v.w[QC_HEAD] || off >= v.tail || off % 8 != 0 ||
		    queue_rec_read(q, off, v.tail, &r) < 0 ||
		    r.id != out[i].id)
			continue; /* taken meanwhile */
		if (what == SCAN_BORROWS) {
			if (!(r.flags & MPROC__REC_BORROWED) ||
			    r.lease_pid != out[i].borrower)
				continue;
			rc = mproc__queue_unlease_locked(q, &v, off, &r, wake);
		} else {
			if (r.flags & (MPROC__REC_CONSUMED | MPROC__REC_LEASED))
				continue;
			rc = mproc__queue_consume_locked(q, &v, off, &r, wake, 1);
		}
		if (rc < 0)
			break;
		done++;
	}
	queue_unlock_wake(q, &q->s->recv, *wake, MPROC__FUTEX_ALL, v.w);
	*wake = 0;
	return rc < 0 ? rc : done;
}

/*
 * queue_orphans counts (purge 0) or drops (purge 1) the orphans at or
 * after v's head. A count walks to tail, checking every record (stats
 * answers -EPROTO for a corrupt ring); a purge walks only as far as the
 * last directed record.
 */
static int queue_orphans(struct queue_conn *q, const struct queue_view *v,
                         int purge, uint64_t *counts)
{
	struct queue_orphan found[QUEUE_PURGE_BATCH];
	uint64_t from, next, end = purge ? v->dtail : v->tail;
	struct mproc__live lc;
	int64_t count, total = 0;
	unsigned n;
	int rc, wake = 0;

	mproc__live_init(&lc);
	for (from = v->w[QC_HEAD]; from < end; from = next) {
		count = queue_scan_orphans(q, v, from, end, &lc, found,
		                           purge ? QUEUE_PURGE_BATCH : 0, &n,
		                           &next, purge ? NULL : counts,
		                           SCAN_ORPHANS);
		if (count < 0)
			return (int)count;
		if (!purge) {
			total += count;
			break;
		}
		if (n > 0) {
			if ((rc = queue_purge_batch(q, found, n, &wake,
			                            SCAN_ORPHANS)) < 0)
				return rc;
			total += rc;
		}
		if (next <= from)
			break;
	}
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

int mproc__queue_count_orphans(struct queue_conn *q, const struct queue_view *v)
{
	return queue_orphans(q, v, 0, NULL);
}

int mproc__queue_orphans(struct queue_conn *q, int purge)
{
	struct queue_view v;
	uint32_t seq[2];
	int rc;

	if ((rc = queue_snapshot(q, &v, seq)) < 0)
		return rc;
	return queue_orphans(q, &v, purge, NULL);
}

int mproc__queue_purge(mproc_conn *c)
{
	return mproc__queue_orphans(queue_of(c), 1);
}

int mproc__queue_stats(mproc_conn *c, mproc_stats *out)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__queue_shared *s = q->s;
	struct queue_view v;
	uint64_t counts[3] = { 0, 0, 0 };
	uint32_t seq[2];
	int orphans, rc;

	if ((rc = queue_snapshot(q, &v, seq)) < 0)
		return rc;
	orphans = queue_orphans(q, &v, 0, counts);
	if (orphans < 0)
		return orphans;
	/* A ring that stood still while it was walked (both sides' seq as
	 * at the snapshot) must hold what the counts say: else corrupt. */
	if (!(seq[0] & 1) && !(seq[1] & 1) &&
	    ACQUIRE(&s->recv.journal.seq) == seq[0] &&
	    ACQUIRE(&s->send.journal.seq) == seq[1] &&
	    (counts[0] != queue_queued(&v) || counts[1] != v.w[QC_LEASED] ||
	     counts[2] != 0))
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	out->queued = queue_queued(&v);
	out->bytes = v.tail - v.w[QC_HEAD];
	out->unfinished = queue_unfinished(&v);
	if (q->flags & MPROC_QUEUE_MANUAL_DONE) {
		/* Takers that are gone no longer count (join forgets them). */
		struct queue_dead_takers dead;
		uint64_t held = mproc__queue_takers_sum(q, &dead);

		/* Every task held was taken, so counted in gone. */
		if (held > v.w[QC_GONE])
			return -EPROTO;
		out->unfinished += held;
	}
	out->sent = v.sent;
	out->received = v.w[QC_RECEIVED];
	out->recoveries = LOAD(&s->send.recoveries) + LOAD(&s->recv.recoveries);
	out->orphans = (uint64_t)orphans;
	out->purged = v.w[QC_PURGED];
	out->capacity = q->ring.cap;
	out->max_payload = q->max_payload;
	return 0;
}

int mproc__queue_dead_borrows(struct queue_conn *q)
{
	struct queue_orphan found[QUEUE_PURGE_BATCH];
	struct mproc__live lc;
	struct queue_view v;
	uint64_t from, next, now = mproc__now_ns();
	unsigned n;
	int rc, wake = 0, total = 0;
	int64_t count;

	if (now - q->brw_scan_ns < QUEUE_BORROW_SCAN_MS * 1000000ull)
		return 0;
	q->brw_scan_ns = now;
	/* The receive side's words and the published tail are all it needs
	 * (a send side mid-commit is none of its business); busy: later. */
	memset(&v, 0, sizeof(v));
	if (mproc__side_snapshot(&q->s->recv, QC_WORDS, v.w, NULL) < 0 ||
	    v.w[QC_LEASED] == 0)
		return 0;
	v.tail = ACQUIRE(&q->s->send.w[QP_TAIL]);
	if (v.w[QC_HEAD] > v.tail || v.tail - v.w[QC_HEAD] > q->ring.cap ||
	    v.tail % 8 != 0)
		return 0;
	mproc__live_init(&lc);
	for (from = v.w[QC_HEAD]; from < v.tail; from = next) {
		count = queue_scan_orphans(q, &v, from, v.tail, &lc, found,
		                           QUEUE_PURGE_BATCH, &n, &next, NULL,
		                           SCAN_BORROWS);
		if (count < 0)
			return (int)count;
		if (n > 0) {
			if ((rc = queue_purge_batch(q, found, n, &wake,
			                            SCAN_BORROWS)) < 0)
				return rc;
			total += rc;
		}
		if (next <= from)
			break;
	}
	return total;
}
