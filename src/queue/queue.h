/*
 * queue.h - what the queue's sources share: the process-local handle and
 * the helpers every operation runs (inline: they run once a message or
 * more). The shared layout is in queue/layout.h.
 *
 * Files: open.c (open, attach, close), lock.c (taking a side's lock and
 * repairing after a dead owner), wait.c (spin, sleep, wake), send.c,
 * recv.c (receive and the scan predicates run in), lease.c (the pool's
 * leases), admin.c (join, empty, task_done, shutdown), stats.c (stats,
 * orphans and purge: the scans that take no lock or only briefly).
 */
#ifndef MPROC_QUEUE_QUEUE_H
#define MPROC_QUEUE_QUEUE_H

#include <stdint.h>
#include <string.h>

#include "base/futex.h"
#include "base/lock.h"
#include "internal.h"
#include "queue/layout.h"
#include "shm/name.h"
#include "shm/poll.h"

/* How long calls without a timeout wait for the lock (a stopped holder). */
#define QUEUE_LOCK_MS 1000
/* A handle looks for dead borrowers' messages at most this often. */
#define QUEUE_BORROW_SCAN_MS 100
/* A join purges orphans this often while it waits. */
#define QUEUE_JOIN_SLICE_MS 100
/* Sleepers look again this often (a waker may have died). */
#define QUEUE_SLICE_MS 100

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

struct queue_conn {
	struct mproc_conn base;
	struct mproc__queue_shared *s;
	struct mproc__ring ring; /* trusted geometry: the shared copy is
	                            checked against it, never used to size
	                            a copy */
	size_t map_len;
	uint32_t max_payload;
	uint32_t max_messages;
	uint32_t flags;
	uint8_t *scratch; /* max_payload bytes: a wrapped payload for a
	                     predicate; used only under the receive lock */
	int borrowed;     /* attached mapping: close does not unmap it */
	/* The head as a sender last read it: head only grows, so an old
	 * value only underestimates the room. Under the send lock. */
	uint64_t head_seen;
	/* Where mproc_for_me scans from: every visible record before
	 * fm_from was addressed to someone else when this process (fm_pid)
	 * looked, and stays so unless gen moves. Read and written only
	 * under the receive lock, so threads sharing the handle agree. */
	pid_t fm_pid;
	uint64_t fm_gen;
	uint64_t fm_from;
	/* This process's slot in takers[] (MANUAL_DONE), valid while
	 * taker_pid is the caller's pid. Under the receive lock. */
	pid_t taker_pid;
	int taker;
	/* mproc_fd: this handle's poller (shm/poll.h). */
	struct mproc__poller poll;
	int lock_kind; /* what both locks' type word must say */
	/* Zero-copy. The open reservation (rsv_pid's; it holds the send
	 * lock meanwhile): 0 none, 1 being made, 2 open. The open borrow:
	 * 0 none, 1 being made, 2 open (brw_pid's, the record at brw_off,
	 * lent at brw_data). lend: a borrow's copy of a wrapped payload. */
	int rsv_state;
	pid_t rsv_pid;
	pthread_t rsv_thread; /* the send lock's owner while open */
	uint64_t rsv_words[QP_WORDS];
	uint64_t rsv_pad;
	uint32_t rsv_size;
	int brw_state;
	pid_t brw_pid;
	uint64_t brw_off;
	const void *brw_data;
	uint8_t *lend;
	uint64_t brw_scan_ns; /* the last dead-borrow search */
	struct mproc__named *named; /* a named queue's file; NULL: anonymous */
};

/* What the receive side sees under its lock: its words and the send
 * side's published tail, count and directed tail. */
struct queue_view {
	uint64_t w[MPROC__SIDE_WORDS];
	uint64_t tail;
	uint64_t sent;
	uint64_t dtail;
};

/* takers.c (MANUAL_DONE). */
/* The caller's slot, claimed if it has none; -1 when none is free.
 * Receive lock held. */
int mproc__queue_taker_claim(struct queue_conn *q);
/* Slots found gone by mproc__queue_takers_sum. */
struct queue_dead_takers {
	int n;
	struct {
		int slot;
		pid_t pid;
		uint64_t start_ns;
	} d[MPROC__QUEUE_TAKERS];
};
/* Tasks counted in the slots: all of them (dead NULL), or only those of
 * takers still alive, the others listed in *dead (/proc look-ups: call it
 * without a lock). */
uint64_t mproc__queue_takers_sum(const struct queue_conn *q,
                                 struct queue_dead_takers *dead);
/* Forget the tasks of the slots in *dead (receive lock held). Returns how
 * many tasks stopped counting. */
uint64_t mproc__queue_takers_reclaim(struct queue_conn *q,
                                     const struct queue_dead_takers *dead);
/* Mark one task done in the caller's slot, else in any slot: 0, or
 * -ENOENT when no slot holds one. Receive lock held. */
int mproc__queue_taker_done(struct queue_conn *q);

/* What a locked operation leaves for the wake after unlock. */
enum {
	WAKE_DATA = 1 << 0,
	WAKE_SPACE = 1 << 1,
	WAKE_DONE = 1 << 2,
};

/* The queue whose predicate (or dead_fn) this thread is running: a call
 * back into it is -EDEADLK (the receive lock says so by itself; a send
 * takes only the send lock and asks this). */
extern __thread const struct mproc__queue_shared *mproc__queue_in_callback;

static inline struct queue_conn *queue_of(mproc_conn *c)
{
	return (struct queue_conn *)c;
}

static inline int queue_rec_read(const struct queue_conn *q, uint64_t off,
                                 uint64_t tail, struct mproc__rec *r)
{
	return mproc__rec_read(&q->ring, off, tail, q->max_payload, r);
}

/* Commit on side sd of q (shm/journal.h). */
static inline int queue_commit(struct queue_conn *q, struct mproc__side *sd,
                               unsigned n, const uint64_t *old,
                               const uint64_t *nw, const struct mproc__mark *mk,
                               int crash_point)
{
	return mproc__side_commit(&q->ring, sd, n, old, nw, mk, crash_point);
}

/* The send side's words against the head: whole records only. */
static inline int queue_send_words_valid(const struct queue_conn *q,
                                         const uint64_t *p, uint64_t head)
{
	return p[QP_TAIL] % 8 == 0 && head % 8 == 0 && head <= p[QP_TAIL] &&
	       p[QP_TAIL] - head <= q->ring.cap && p[QP_DTAIL] <= p[QP_TAIL];
}

/* The receive side's words against the send side's tail and sent. */
static inline int queue_view_valid(const struct queue_conn *q,
                                   const struct queue_view *v)
{
	const uint64_t *w = v->w;
	uint64_t head = w[QC_HEAD];

	return head % 8 == 0 && v->tail % 8 == 0 && head <= v->tail &&
	       v->tail - head <= q->ring.cap && v->dtail <= v->tail &&
	       w[QC_LEASED] <= (v->tail - head) / MPROC__REC_HDR &&
	       w[QC_TAKEN] <= w[QC_GONE] && w[QC_GONE] <= v->sent &&
	       w[QC_LEASED] <= v->sent - w[QC_GONE];
}

/*
 * queue_view_whole: for a view whose send words are one state of the send
 * side (a snapshot; not queue_view_load, which reads tail before sent
 * without the send lock): every record not gone lies whole between head
 * and tail.
 */
static inline int queue_view_whole(const struct queue_view *v)
{
	return v->sent - v->w[QC_GONE] <=
	       (v->tail - v->w[QC_HEAD]) / MPROC__REC_HDR;
}

static inline void queue_view_load(const struct mproc__queue_shared *s,
                                   struct queue_view *v)
{
	mproc__words_load(&s->recv, v->w, QC_WORDS);
	/* tail before sent: sent is applied first, so it covers every
	 * record this tail shows; dtail is applied after tail. */
	v->dtail = ACQUIRE(&s->send.w[QP_DTAIL]);
	v->tail = ACQUIRE(&s->send.w[QP_TAIL]);
	v->sent = ACQUIRE(&s->send.w[QP_SENT]);
	if (v->dtail > v->tail)
		v->dtail = v->tail; /* a send between the two loads */
}

static inline uint64_t queue_unfinished(const struct queue_view *v)
{
	return v->sent - v->w[QC_GONE] + v->w[QC_TAKEN];
}

static inline uint64_t queue_queued(const struct queue_view *v)
{
	return v->sent - v->w[QC_GONE] - v->w[QC_LEASED];
}

/* The identity fields still say what this handle was opened with. */
static inline int mproc__queue_check_identity(const struct queue_conn *q)
{
	const struct mproc__queue_shared *s = q->s;

	if (mproc__region_check(&s->hdr, q->map_len, MPROC__KIND_QUEUE,
	                        MPROC__QUEUE_LAYOUT, MPROC__QUEUE_HDR) < 0 ||
	    LOAD(&s->capacity) != q->ring.cap ||
	    LOAD(&s->max_payload) != q->max_payload ||
	    LOAD(&s->max_messages) != q->max_messages ||
	    LOAD(&s->flags) != q->flags)
		return -EPROTO;
	return 0;
}

/* lock.c */
int mproc__queue_lock_slow(struct queue_conn *q, struct mproc__side *sd,
                           const struct mproc__deadline *d, int rc);
int mproc__queue_send_poll(struct queue_conn *q);
int mproc__queue_repair_recv(struct queue_conn *q);
int mproc__queue_walk_check(struct queue_conn *q, uint64_t head,
                            uint64_t tail, int locked, uint64_t *queued,
                            uint64_t *leased);

/*
 * queue_lock takes side sd's lock by the deadline d (MPROC_NOWAIT: at
 * most MPROC__SIDE_NOWAIT_LOCK_MS, then -EAGAIN), repairs after a dead owner,
 * and checks the identity and that no journal is pending. Returns 0 with
 * the lock held, or a negative errno with it released. The uncontended
 * case is inline; everything else is mproc__queue_lock_slow.
 */
static inline int queue_lock(struct queue_conn *q, struct mproc__side *sd,
                             const struct mproc__deadline *d)
{
	int rc;

	if (mproc__unlikely(mproc__queue_check_identity(q) < 0) ||
	    mproc__unlikely(mproc__lock_kind_of(&sd->lock) != q->lock_kind))
		return -EPROTO;
	rc = pthread_mutex_trylock(&sd->lock);
	if (mproc__likely(rc == 0) && mproc__likely(!mproc__journal_pending(sd))) {
		mproc__crash(MPROC__CRASH_LOCKED);
		return 0;
	}
	return mproc__queue_lock_slow(q, sd, d, rc);
}

/* The receive lock, and the view under it, checked. */
static inline int queue_lock_recv(struct queue_conn *q,
                                  const struct mproc__deadline *d,
                                  struct queue_view *v)
{
	int rc;

	if ((rc = queue_lock(q, &q->s->recv, d)) < 0)
		return rc;
	queue_view_load(q->s, v);
	if (!queue_view_valid(q, v)) {
		mproc__unlock(&q->s->recv.lock);
		return -EPROTO;
	}
	return 0;
}

/* The receive lock with the default bound, for calls that take no
 * timeout. */
static inline int queue_lock_recv_default(struct queue_conn *q,
                                          struct queue_view *v)
{
	struct mproc__deadline d;

	mproc__deadline_set(&d, QUEUE_LOCK_MS);
	return queue_lock_recv(q, &d, v);
}

/* wait.c */
/* What a waiter waits to see move: up to two words and their values. */
struct queue_watch {
	const uint64_t *w[2];
	uint64_t v[2];
};
int mproc__queue_sleep(struct queue_conn *q, struct mproc__side *sd,
                       uint32_t *mask, uint32_t *seq,
                       const struct mproc__deadline *d, int slice_ms,
                       uint32_t bits, const struct queue_watch *wt);
int mproc__queue_wait(struct queue_conn *q, struct mproc__side *sd,
                      const struct mproc__deadline *d, int timeout_ms,
                      int *spun, const struct queue_watch *wt,
                      uint32_t *mask, uint32_t *seq, uint32_t bits);

static inline int queue_expired(const struct mproc__deadline *d,
                                int timeout_ms)
{
	if (d->forever || mproc__deadline_ns(d) > 0)
		return 0;
	return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
}

static inline void mproc__queue_wake(struct queue_conn *q, int wake,
                                     uint32_t data_bits, const uint64_t *cw)
{
	struct mproc__queue_shared *s = q->s;

	/* The change against the waiter's bits: see base/futex.h. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (wake & WAKE_DATA)
		mproc__wake_bits(&s->recv_waiting, &s->data_seq, data_bits);
	if (wake & WAKE_SPACE)
		mproc__wake_bits(&s->send_waiting, &s->space_seq,
		                 MPROC__FUTEX_ALL);
	/* sent read after the fence: a send since the commit means a task
	 * is still open, and its receiver will wake the join. */
	if ((wake & WAKE_DONE) && LOAD(&s->join_waiting) &&
	    (cw == NULL ||
	     ACQUIRE(&s->send.w[QP_SENT]) - cw[QC_GONE] + cw[QC_TAKEN] +
	                     ((q->flags & MPROC_QUEUE_MANUAL_DONE)
	                              ? mproc__queue_takers_sum(q, NULL)
	                              : 0) ==
	             0))
		mproc__wake_bits(&s->join_waiting, &s->done_seq,
		                 MPROC__FUTEX_ALL);
}

/*
 * Unlock sd, then wake whoever the change can help (data_bits: which
 * receivers, for WAKE_DATA). WAKE_DONE wakes joins only if the receive
 * side's words cw (as just committed) leave no task unfinished.
 */
static inline void queue_unlock_wake(struct queue_conn *q,
                                     struct mproc__side *sd, int wake,
                                     uint32_t data_bits, const uint64_t *cw)
{
	mproc__unlock(&sd->lock);
	if (wake != 0)
		mproc__queue_wake(q, wake, data_bits, cw);
}

/*
 * Waiter classes. A waiter registers its bits in the waiting mask and
 * sleeps on the sequence word with the same futex bitset; a waker clears
 * the bits its change can help and wakes only sleepers with those bits.
 * Receivers using mproc_for_me wait on their pid's bit and ANY_BIT, so
 * mail addressed to another pid does not wake them; every other receiver
 * (no predicate, or one we cannot read) waits on all bits.
 */
#define WAIT_ANY_BIT (1u << 31)

static inline uint32_t queue_pid_bit(pid_t pid)
{
	return 1u << ((uint32_t)pid % 31u);
}

/* The receivers a new message addressed to recipient can help. */
static inline uint32_t queue_data_bits(pid_t recipient)
{
	return recipient > 0 ? queue_pid_bit(recipient) : MPROC__FUTEX_ALL;
}

/* recv.c: the scan the receive and the pool's peek share. */
struct queue_scan {
	uint64_t from; /* resume point for the same call */
	uint64_t gen;
	int valid;
};
int mproc__queue_find(struct queue_conn *q, const struct queue_view *v,
                      struct queue_scan *sc, mproc_match_fn match, void *arg,
                      uint64_t *off_out, struct mproc__rec *r);
void mproc__queue_view_msg(struct queue_conn *q, uint64_t off,
                           const struct mproc__rec *r, mproc_msg *view);
/* lease NULL: a receive; else a lease (the pool's), or with borrow set a
 * borrow (m->data lent, no copy). */
int mproc__queue_recv_common(struct queue_conn *q, mproc_msg *m,
                             mproc_match_fn match, void *arg, int timeout_ms,
                             struct mproc__lease *lease, int borrow);
int mproc__queue_advance_head(struct queue_conn *q, uint64_t *w,
                              uint64_t tail, uint64_t taken);
/* Consume the record at off (found valid), finishing its task (purge 1:
 * as an orphan; 2: taken, MANUAL_DONE, until task_done). Receive lock
 * held; v follows the commit. */
int mproc__queue_consume_locked(struct queue_conn *q, struct queue_view *v,
                                uint64_t off, const struct mproc__rec *r,
                                int *wake, int purge);
/* Is the open reservation this thread's (it holds the send lock)? */
static inline int mproc__queue_rsv_mine(const struct queue_conn *q)
{
	return __atomic_load_n(&q->rsv_state, __ATOMIC_ACQUIRE) == 2 &&
	       q->rsv_pid == mproc__self_pid() &&
	       pthread_equal(q->rsv_thread, pthread_self());
}

/* Make the leased record at off visible again (receive lock held; v
 * follows the commit). */
int mproc__queue_unlease_locked(struct queue_conn *q, struct queue_view *v,
                                uint64_t off, const struct mproc__rec *r,
                                int *wake);
/* send.c: do len more bytes fit after the send words p? 1, 0, -EPROTO. */
int mproc__queue_room(struct queue_conn *q, const uint64_t *p, uint64_t len);

/* The padding a record of len bytes at tail needs to be contiguous: 0,
 * the bytes left to the ring's end, or a header's worth when fewer than
 * that are left (the pad's header then wraps, and the record starts just
 * after it, at the ring's start). */
static inline uint64_t queue_pad(const struct queue_conn *q, uint64_t tail,
                                 uint64_t len)
{
	uint64_t pos = mproc__ring_pos(&q->ring, tail), left;

	if (pos + len <= q->ring.cap)
		return 0;
	left = q->ring.cap - pos;
	return left >= MPROC__REC_HDR ? left : MPROC__REC_HDR;
}

/*
 * queue_take_room: the send lock, with room after tail for a record of
 * len bytes (contiguous: in one piece, a pad before it if need be, *pad
 * its bytes), waiting for receivers up to d. Returns 0 with the lock held
 * and the send words in p, or a negative errno with it released. Inline:
 * send's and reserve's copies are each specialised on contiguous.
 */
static inline int queue_take_room(struct queue_conn *q,
                                  const struct mproc__deadline *d,
                                  int timeout_ms, uint64_t len,
                                  int contiguous, uint64_t *p, uint64_t *pad)
{
	struct mproc__queue_shared *s = q->s;
	struct mproc__side *sd = &s->send;
	struct queue_watch wt;
	int rc, spun = 0;

	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		if ((rc = queue_lock(q, sd, d)) < 0)
			return rc;
		mproc__words_load(sd, p, QP_WORDS);
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&sd->lock);
			return -ESHUTDOWN;
		}
		*pad = contiguous ? queue_pad(q, p[QP_TAIL], len) : 0;
		if ((rc = mproc__queue_room(q, p, *pad + len)) != 0)
			break;
		/* Full: wait for a receiver to move the head (or gone). */
		wt.w[0] = &s->recv.w[QC_HEAD];
		wt.v[0] = q->head_seen = ACQUIRE(wt.w[0]);
		wt.w[1] = q->max_messages != 0 ? &s->recv.w[QC_GONE] : NULL;
		wt.v[1] = wt.w[1] != NULL ? ACQUIRE(wt.w[1]) : 0;
		if ((rc = mproc__queue_wait(q, sd, d, timeout_ms, &spun, &wt,
		                            &s->send_waiting, &s->space_seq,
		                            MPROC__FUTEX_ALL)) < 0)
			return rc;
	}
	if (rc < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}
	return 0;
}

/* zerocopy.c */
int mproc__queue_reserve(mproc_conn *c, size_t size, void **buf,
                         int timeout_ms);
int mproc__queue_commit(mproc_conn *c, int32_t request, pid_t recipient,
                        size_t size);
int mproc__queue_cancel(mproc_conn *c);
int mproc__queue_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                        void *arg, int timeout_ms);
int mproc__queue_release(mproc_conn *c, mproc_msg *m);
/* Close-time: drop this process's open reservation and borrow. */
void mproc__queue_zc_close(struct queue_conn *q);
/* Dead borrowers' messages made visible again (at most every
 * QUEUE_BORROW_SCAN_MS per handle); takes no lock to search. */
int mproc__queue_dead_borrows(struct queue_conn *q);

/* send.c, recv.c */
int mproc__queue_send(mproc_conn *c, const mproc_msg *m, int timeout_ms);
int mproc__queue_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                      void *arg, int timeout_ms);

/* poll.c: the descriptor (the scheme of shm/poll.h over the queue's
 * poll_armed and poll table). */
int mproc__queue_fd(mproc_conn *c);
/* Before a receive on a handle with a descriptor: clear it, wait again. */
void mproc__queue_poll_arm(struct queue_conn *q);
/* After a send or a shutdown: wake every armed poller once. */
void mproc__queue_poll_wake(struct queue_conn *q);
void mproc__queue_poll_close(struct queue_conn *q);

static inline void queue_poll_after_send(struct queue_conn *q)
{
	/* Senders pay one load while nobody polls (the line the wake reads
	 * anyway). */
	if (mproc__unlikely(__atomic_load_n(&q->s->poll_armed,
	                                    __ATOMIC_SEQ_CST) != 0))
		mproc__queue_poll_wake(q);
}

static inline void queue_poll_before_recv(struct queue_conn *q)
{
	if (mproc__unlikely(q->poll.fd >= 0))
		mproc__queue_poll_arm(q);
}

/* open.c: named queues. */
int mproc__queue_create(mproc_conn **q, const char *name,
                        const mproc_queue_opts *opts);
int mproc__queue_attach_name(mproc_conn **q, const char *name);

/* stats.c: purge (1) or count (0) the orphans; takes no lock to scan. */
int mproc__queue_orphans(struct queue_conn *q, int purge);
/* Count the orphans from v's head on; reads only. */
int mproc__queue_count_orphans(struct queue_conn *q, const struct queue_view *v);

#endif /* MPROC_QUEUE_QUEUE_H */
