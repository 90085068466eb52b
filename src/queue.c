/*
 * queue.c - the shared-memory joinable queue (1:M, M:1, M:M).
 *
 * Layout of the MAP_SHARED mapping (offsets, never pointers):
 *
 *   struct queue_shared      identity (magic, layout version, sizes: written
 *                            once by mproc_queue_open, read-only after),
 *                            the send side and the receive side (each a
 *                            robust lock, the state words it guards and a
 *                            journal), the futex words
 *   ring[capacity]           records, 8-byte aligned, may wrap at the end
 *
 * A record is a struct queue_rec header followed by its payload, padded to
 * a multiple of 8. Records live between head and tail, free-running byte
 * counts (position = offset % capacity). capacity is a multiple of 8, so
 * no header field (4 or 8 bytes, naturally aligned) straddles the end of
 * the ring; a whole header or payload may.
 *
 * Two locks. Senders serialise on the send lock, which guards tail and
 * sent; receivers (and every other call that takes or marks records)
 * serialise on the receive lock, which guards head and the counts of what
 * left the queue. A sender writes its record beyond tail, where no
 * receiver looks, and publishes it by moving tail; a receiver copies a
 * record out and frees its bytes by moving head. So a sender and a
 * receiver never wait for each other, and a 1:1 stream keeps each lock in
 * its own process's cache. Who reads what of the other side:
 *   receivers read tail and sent (acquire loads: a record is whole once
 *   tail covers it); senders read head (for room; each handle caches it,
 *   head only grows) and gone (for max_messages).
 * Counts: queued = sent - gone - leased, unfinished = sent - gone + taken.
 * sent is applied before tail, so a receiver never sees a record sent
 * does not count.
 *
 * Invariants (checked on every locked entry, and on every record read):
 *   head <= tail, tail - head <= capacity, both 8-aligned
 *   every record in [head, tail) has the record magic, len ==
 *   ALIGN8(header + size), size <= max_payload, and ends at or before tail
 *   the record at head is not consumed (consumed records at the head are
 *   reclaimed by the commit that consumes them)
 *   taken <= gone, gone + leased <= sent
 *
 * Crash safety: a process may die at any instruction. Every change to a
 * side's words (and to a record's flags) goes through queue_commit: the
 * words it changes (four at most) and at most one record mark are written
 * to that side's journal, the journal is marked valid, then applied, then
 * marked invalid. The next process to take that side's lock gets
 * EOWNERDEAD and rolls a valid journal forward; an invalid one means the
 * words were never touched. A record half-written beyond tail is not part
 * of the queue until a commit moves tail over it. A payload half-copied
 * out by a dying receiver was never committed as taken, so the message is
 * delivered again (at-least-once). A mark is rolled forward only while
 * head has not passed its record: once head moved, the mark was applied
 * (marks go first) and the bytes may already hold a newer record.
 * A receive that finds nothing (and join, empty, peek) rolls forward a
 * send journal whose writer died (queue_send_poll), so a message
 * committed by a dying sender does not wait for the next sender.
 *
 * Sleeping: a waiter first spins briefly on the word it waits for
 * (yielding now and then, for when its peer shares its CPU), then sleeps
 * on a futex sequence word (data_seq for receivers, space_seq for
 * senders, done_seq for join) after setting its bits in that word's
 * waiting mask and checking the word it waits for once more; a waker
 * changes that word, fences, and makes the system call only when bits it
 * can help are set (either the waiter sees the change or the waker sees
 * the bits). Receivers that use mproc_for_me wait on their pid's bit (and
 * the "anyone" bit), so mail addressed to one worker wakes that worker,
 * not all of them. Sleeps are cut into QUEUE_SLICE_MS slices, so a waker
 * killed between its change and its wake costs a sleeper one slice. A
 * waiter killed while asleep leaves at most one spurious wake behind.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "sync.h"

#define QUEUE_MAGIC 0x6d70726f63517565ull /* "mprocQue" */
#define QUEUE_LAYOUT 3u
#define QUEUE_REC_MAGIC 0x5245434du       /* "MCER" */

/* Record flags. */
#define REC_CONSUMED (1u << 0) /* taken: skipped, reclaimed at the head */
#define REC_LEASED (1u << 1)   /* held by lease_pid (pool), not visible */
#define REC_KNOWN_FLAGS (REC_CONSUMED | REC_LEASED)

/* How long calls without a timeout wait for the lock (a stopped holder). */
#define QUEUE_LOCK_MS 1000
/* Tries at a busy lock before waiting on it. */
#define QUEUE_LOCK_TRIES 256
/* Longest MPROC_NOWAIT waits for a busy lock before -EAGAIN. */
#define QUEUE_NOWAIT_LOCK_MS 20
/* Spin this long for a change before sleeping. */
#define QUEUE_SPIN_NS 20000
/* Most pause instructions between two reads of a spun-on word. */
#ifndef QUEUE_SPIN_MAX_PAUSES
#define QUEUE_SPIN_MAX_PAUSES 8
#endif
/* A yield that kept us off the CPU this long means the CPU is wanted. */
#define QUEUE_YIELD_BUSY_NS 20000
/* A join purges orphans this often while it waits. */
#define QUEUE_JOIN_SLICE_MS 100
/* Sleepers look again this often (a waker may have died). */
#define QUEUE_SLICE_MS 100

int mproc__crash_point;
int mproc__crash_countdown;

static inline void queue_crash(int point)
{
	if (mproc__unlikely(mproc__crash_point == point) &&
	    point != MPROC__CRASH_NONE && --mproc__crash_countdown <= 0)
		raise(SIGKILL);
}

struct queue_rec {
	uint32_t magic;
	uint32_t len;      /* whole record, header included, 8-aligned */
	uint32_t flags;    /* REC_* */
	uint32_t attempts; /* leases taken on it so far */
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;     /* payload bytes */
	int32_t lease_pid; /* holder while REC_LEASED */
	uint32_t reserved;
	uint64_t sent_ns;  /* CLOCK_BOOTTIME at send, for directed messages */
	uint64_t id;       /* sent when it was sent */
};
#define REC_HDR ((uint32_t)sizeof(struct queue_rec))
_Static_assert(sizeof(struct queue_rec) == 56, "record header is 56 bytes");

/* The send side's words, in the order a commit applies them (sent before
 * tail: a receiver that sees a record sees it counted). */
enum { P_SENT, P_TAIL, P_WORDS };
/* The receive side's words. */
enum {
	C_HEAD,
	C_GONE,     /* records consumed for good (taken, purged, done) */
	C_LEASED,   /* records leased (pool), not visible */
	C_TAKEN,    /* MANUAL_DONE: taken, task_done not yet called */
	C_RECEIVED, /* receives, leases included */
	C_PURGED,
	C_GEN,      /* bumped when an old record becomes visible again */
	C_WORDS
};
#define SIDE_WORDS 8

struct queue_mark {
	uint64_t off; /* record to change; UINT64_MAX: none */
	uint32_t flags;
	uint32_t attempts;
	int32_t lease_pid;
	uint32_t reserved;
};

/*
 * The journal holds only what a commit changes: at most JOURNAL_WORDS
 * words (every commit changes four or fewer) and one record mark, so it
 * fits one cache line.
 */
#define JOURNAL_WORDS 4
struct queue_journal {
	uint32_t valid;
	uint32_t changed; /* bit i: word i has a new value in val[] */
	struct queue_mark mark;
	uint64_t val[JOURNAL_WORDS]; /* new values, in word order */
};
_Static_assert(sizeof(struct queue_journal) == 64, "journal is one line");

/*
 * One side: its lock and journal in lines only its own callers touch,
 * its words in a line the other side reads.
 */
struct queue_side {
	pthread_mutex_t lock __attribute__((aligned(MPROC__CACHELINE)));
	uint64_t recoveries;
	struct queue_journal journal __attribute__((aligned(MPROC__CACHELINE)));
	uint64_t w[SIDE_WORDS] __attribute__((aligned(MPROC__CACHELINE)));
};

struct queue_shared {
	/* Identity: written once before any other process can see it. */
	uint64_t magic;
	uint32_t layout;
	uint32_t header_size; /* sizeof(struct queue_shared) = ring offset */
	uint64_t capacity;
	uint32_t max_payload;
	uint32_t max_messages;
	uint32_t flags;
	uint32_t reserved0;

	struct queue_side send; /* tail, sent */
	struct queue_side recv; /* head and the counts of what left */

	/* Futex words: read on every operation, written only by sleepers
	 * and the wakes they ask for. */
	uint32_t data_seq __attribute__((aligned(MPROC__CACHELINE)));
	uint32_t space_seq;
	uint32_t done_seq;
	uint32_t shutdown;
	uint32_t recv_waiting;
	uint32_t send_waiting;
	uint32_t join_waiting;
} __attribute__((aligned(MPROC__CACHELINE)));

struct queue_conn {
	struct mproc_conn base;
	struct queue_shared *s;
	uint8_t *ring;
	size_t map_len;
	/* Trusted copies of the geometry: the shared ones are checked
	 * against these, never used to size a copy. */
	uint64_t cap;
	uint64_t cap_mask; /* cap - 1 when cap is a power of two, else 0 */
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
};

/* What the receive side sees under its lock: its words and the send
 * side's published tail and count. */
struct queue_view {
	uint64_t w[SIDE_WORDS];
	uint64_t tail;
	uint64_t sent;
};

/* What a locked operation leaves for the wake after unlock. */
enum {
	WAKE_DATA = 1 << 0,
	WAKE_SPACE = 1 << 1,
	WAKE_DONE = 1 << 2,
};

/* The queue whose predicate (or dead_fn) this thread is running: a call
 * back into it is -EDEADLK (the receive lock says so by itself; a send
 * takes only the send lock and asks this). */
static __thread const struct queue_shared *queue_in_callback;

static inline struct queue_conn *queue_of(mproc_conn *c)
{
	return (struct queue_conn *)c;
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* ---- ring access ---------------------------------------------------- */

static inline uint64_t queue_pos(const struct queue_conn *q, uint64_t off)
{
	/* A division costs tens of cycles and runs several times a message:
	 * mask when the capacity is a power of two (the default). */
	return mproc__likely(q->cap_mask != 0) ? off & q->cap_mask
	                                       : off % q->cap;
}

static void ring_copy_in(struct queue_conn *q, uint64_t off, const void *src,
                         size_t n)
{
	uint64_t pos = queue_pos(q, off);
	size_t first = n;

	if (pos + n > q->cap)
		first = (size_t)(q->cap - pos);
	memcpy(q->ring + pos, src, first);
	if (first < n)
		memcpy(q->ring, (const uint8_t *)src + first, n - first);
}

static void ring_copy_out(const struct queue_conn *q, uint64_t off, void *dst,
                          size_t n)
{
	uint64_t pos = queue_pos(q, off);
	size_t first = n;

	if (pos + n > q->cap)
		first = (size_t)(q->cap - pos);
	memcpy(dst, q->ring + pos, first);
	if (first < n)
		memcpy((uint8_t *)dst + first, q->ring, n - first);
}

/* A naturally aligned header field never straddles the ring's end. */
static inline void *rec_field(struct queue_conn *q, uint64_t off, size_t field)
{
	return q->ring + queue_pos(q, off + field);
}

/*
 * queue_rec_read copies the header at off and checks it against the
 * bounds it must keep. Returns 0 or -EPROTO.
 */
static int queue_rec_read(const struct queue_conn *q, uint64_t off,
                          uint64_t tail, struct queue_rec *r)
{
	ring_copy_out(q, off, r, REC_HDR);
	if (r->magic != QUEUE_REC_MAGIC || r->size > q->max_payload ||
	    r->len != MPROC__ALIGN8((uint64_t)REC_HDR + r->size) ||
	    (r->flags & ~REC_KNOWN_FLAGS) != 0 || tail - off < r->len)
		return -EPROTO;
	return 0;
}

/* The payload of the record at off, contiguous: in the ring, or copied to
 * the scratch buffer when it wraps. */
static const void *queue_payload(struct queue_conn *q, uint64_t off,
                                 uint32_t size)
{
	uint64_t pos = queue_pos(q, off + REC_HDR);

	if (pos + size <= q->cap)
		return q->ring + pos;
	ring_copy_out(q, off + REC_HDR, q->scratch, size);
	return q->scratch;
}

/* ---- words, journal, repair ------------------------------------------ */

static void words_load(const struct queue_side *sd, uint64_t *out, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out[i] = ACQUIRE(&sd->w[i]);
}

static void words_store(struct queue_side *sd, const uint64_t *in, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		RELEASE(&sd->w[i], in[i]);
}

/* The send side's words against the head: whole records only. */
static int send_words_valid(const struct queue_conn *q, const uint64_t *p,
                            uint64_t head)
{
	return p[P_TAIL] % 8 == 0 && head % 8 == 0 && head <= p[P_TAIL] &&
	       p[P_TAIL] - head <= q->cap;
}

/* The receive side's words against the send side's tail and sent. */
static int view_valid(const struct queue_conn *q, const struct queue_view *v)
{
	const uint64_t *w = v->w;
	uint64_t head = w[C_HEAD];

	return head % 8 == 0 && v->tail % 8 == 0 && head <= v->tail &&
	       v->tail - head <= q->cap &&
	       w[C_LEASED] <= (v->tail - head) / REC_HDR &&
	       w[C_TAKEN] <= w[C_GONE] && w[C_GONE] <= v->sent &&
	       w[C_LEASED] <= v->sent - w[C_GONE];
}

static void view_load(const struct queue_shared *s, struct queue_view *v)
{
	words_load(&s->recv, v->w, C_WORDS);
	/* tail before sent: sent is applied first, so it covers every
	 * record this tail shows. */
	v->tail = ACQUIRE(&s->send.w[P_TAIL]);
	v->sent = ACQUIRE(&s->send.w[P_SENT]);
}

static void mark_apply(struct queue_conn *q, const struct queue_mark *mk)
{
	if (mk->off == UINT64_MAX)
		return;
	STORE((int32_t *)rec_field(q, mk->off,
	                           offsetof(struct queue_rec, lease_pid)),
	      mk->lease_pid);
	/* flags and attempts are neighbours: one 8-byte store, never split
	 * by the ring's end (both 8-aligned). */
	STORE((uint64_t *)rec_field(q, mk->off,
	                            offsetof(struct queue_rec, flags)),
	      (uint64_t)mk->flags | (uint64_t)mk->attempts << 32);
}

/*
 * queue_commit makes nw (and mark, if any) side sd's words in a way a
 * crash cannot tear: journal, valid, apply, invalid. Called with sd's
 * lock; old is what the caller validated (not a re-read of the mapping,
 * which a peer could scribble on). Words are applied in order with
 * release stores.
 */
static void queue_commit(struct queue_conn *q, struct queue_side *sd,
                         unsigned n, const uint64_t *old, const uint64_t *nw,
                         const struct queue_mark *mk, int crash_point)
{
	struct queue_journal *j = &sd->journal;
	uint32_t changed = 0;
	unsigned i, k = 0;

	/* At most JOURNAL_WORDS by construction of every caller. */
	for (i = 0; i < n && k < JOURNAL_WORDS; i++) {
		if (old[i] == nw[i])
			continue;
		j->val[k++] = nw[i];
		changed |= 1u << i;
	}
	j->changed = changed;
	if (mk != NULL)
		j->mark = *mk;
	else
		j->mark.off = UINT64_MAX;
	/* The journal must be whole before it is marked valid, and marked
	 * valid before anything is applied: a process dies in program order,
	 * so compiler fences are what this needs (x86 keeps stores in order;
	 * the release stores keep other CPUs right). */
	__atomic_store_n(&j->valid, 1, __ATOMIC_RELEASE);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	queue_crash(crash_point);
	mark_apply(q, &j->mark);
	for (i = 0, k = 0; i < n; i++)
		if (changed & (1u << i))
			RELEASE(&sd->w[i], j->val[k++]);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (mproc__unlikely(mproc__crash_point != MPROC__CRASH_NONE))
		queue_crash(crash_point == MPROC__CRASH_SEND_COMMIT
		                    ? MPROC__CRASH_SEND_APPLIED
		                    : crash_point == MPROC__CRASH_RECV_COMMIT
		                              ? MPROC__CRASH_RECV_APPLIED
		                              : MPROC__CRASH_NONE);
	/* Applied: the journal may go. */
	__atomic_store_n(&j->valid, 0, __ATOMIC_RELEASE);
}

/* The identity fields still say what this handle was opened with. */
static int queue_check_identity(const struct queue_conn *q)
{
	const struct queue_shared *s = q->s;

	if (s->magic != QUEUE_MAGIC || s->layout != QUEUE_LAYOUT ||
	    s->header_size != sizeof(struct queue_shared) ||
	    s->capacity != q->cap || s->max_payload != q->max_payload ||
	    s->max_messages != q->max_messages || s->flags != q->flags)
		return -EPROTO;
	return 0;
}

/*
 * queue_walk_check walks every record from head to tail. Bounded: each
 * step moves at least one header. Counts the leased and the visible
 * records. Returns 0 or -EPROTO. Without the receive lock (locked == 0)
 * receivers mark records and move head meanwhile: only the records'
 * shape is checked, not that the one at head is live.
 */
static int queue_walk_check(struct queue_conn *q, uint64_t head, uint64_t tail,
                            int locked, uint64_t *queued, uint64_t *leased)
{
	struct queue_rec r;
	uint64_t off;

	*queued = *leased = 0;
	for (off = head; off < tail; off += r.len) {
		if (queue_rec_read(q, off, tail, &r) < 0)
			return -EPROTO;
		if (r.flags & REC_LEASED)
			(*leased)++;
		else if (!(r.flags & REC_CONSUMED))
			(*queued)++;
		else if (off == head && locked)
			return -EPROTO; /* consumed records never stay at the head */
	}
	return 0;
}

/*
 * journal_overlay: the words a valid journal leaves: the live ones with
 * the journal's over them (whichever were already applied).
 */
static int journal_overlay(const struct queue_side *sd, unsigned n,
                           uint64_t *nw)
{
	uint32_t changed = sd->journal.changed;
	unsigned i, k = 0;

	if ((changed >> n) != 0 || __builtin_popcount(changed) > JOURNAL_WORDS)
		return -EPROTO;
	words_load(sd, nw, n);
	for (i = 0; i < n; i++)
		if (changed & (1u << i))
			nw[i] = sd->journal.val[k++];
	return 0;
}

/* Roll the send side's journal forward after its writer died. Send lock
 * held. */
static int queue_repair_send(struct queue_conn *q)
{
	struct queue_side *sd = &q->s->send;
	uint64_t nw[SIDE_WORDS], head, queued, leased;

	head = ACQUIRE(&q->s->recv.w[C_HEAD]);
	if (__atomic_load_n(&sd->journal.valid, __ATOMIC_ACQUIRE)) {
		if (journal_overlay(sd, P_WORDS, nw) < 0 ||
		    sd->journal.mark.off != UINT64_MAX ||
		    !send_words_valid(q, nw, head))
			return -EPROTO;
		words_store(sd, nw, P_WORDS);
		__atomic_store_n(&sd->journal.valid, 0, __ATOMIC_RELEASE);
	}
	words_load(sd, nw, P_WORDS);
	/* Receivers move head and mark records meanwhile; records in
	 * [head, tail) keep their shape (only senders write those bytes,
	 * and they wait for this lock). */
	if (!send_words_valid(q, nw, head) ||
	    queue_walk_check(q, head, nw[P_TAIL], 0, &queued, &leased) < 0)
		return -EPROTO;
	STORE(&sd->recoveries, LOAD(&sd->recoveries) + 1);
	return 0;
}

/* Roll the receive side's journal forward after its writer died.
 * Receive lock held. */
static int queue_repair_recv(struct queue_conn *q)
{
	struct queue_side *sd = &q->s->recv;
	struct queue_journal *j = &sd->journal;
	struct queue_view v;
	uint64_t queued, leased;

	view_load(q->s, &v);
	if (__atomic_load_n(&j->valid, __ATOMIC_ACQUIRE)) {
		uint64_t live_head = v.w[C_HEAD];

		if (journal_overlay(sd, C_WORDS, v.w) < 0 || !view_valid(q, &v))
			return -EPROTO;
		/* A head past the mark means the mark went first, and its
		 * bytes may hold a newer record by now (senders do not wait
		 * for this lock): leave them alone. Else the record is still
		 * between head and tail. */
		if (j->mark.off != UINT64_MAX && j->mark.off >= live_head) {
			if (j->mark.off >= v.tail || j->mark.off % 8 != 0 ||
			    (j->mark.flags & ~REC_KNOWN_FLAGS) != 0)
				return -EPROTO;
			mark_apply(q, &j->mark);
		}
		words_store(sd, v.w, C_WORDS);
		__atomic_store_n(&j->valid, 0, __ATOMIC_RELEASE);
	}
	view_load(q->s, &v);
	if (!view_valid(q, &v) ||
	    queue_walk_check(q, v.w[C_HEAD], v.tail, 1, &queued, &leased) < 0 ||
	    leased != v.w[C_LEASED])
		return -EPROTO;
	STORE(&sd->recoveries, LOAD(&sd->recoveries) + 1);
	return 0;
}

/*
 * queue_lock takes side sd's lock by the deadline d (MPROC_NOWAIT: at
 * most QUEUE_NOWAIT_LOCK_MS, then -EAGAIN), repairs after a dead owner,
 * and checks the identity and that no journal is pending. Returns 0 with
 * the lock held, or a negative errno with it released.
 */
static int queue_lock(struct queue_conn *q, struct queue_side *sd,
                      const struct mproc__deadline *d)
{
	static const struct mproc__deadline try_only = { .expired = true,
	                                                    .armed = true };
	unsigned i;
	int rc;

	if (queue_check_identity(q) < 0)
		return -EPROTO;
	rc = mproc__lock(&sd->lock, &try_only);
	/* Busy: a holder keeps the lock for a microsecond or so, so try a
	 * while without sleeping (all MPROC_NOWAIT ever does), then wait
	 * on the lock until the caller's deadline. */
	for (i = 0; rc == -ETIMEDOUT && i < QUEUE_LOCK_TRIES; i++) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		if ((i & 15) == 15)
			sched_yield();
		rc = mproc__lock(&sd->lock, &try_only);
	}
	if (rc == -ETIMEDOUT && d->expired) {
		/* A holder that is not running (preempted, under a debugger
		 * or valgrind) gets a little longer before a non-blocking
		 * call gives up; a stopped one makes it -EAGAIN. */
		struct mproc__deadline nd;

		mproc__deadline_set(&nd, QUEUE_NOWAIT_LOCK_MS);
		rc = mproc__lock(&sd->lock, &nd);
		if (rc == -ETIMEDOUT)
			return -EAGAIN;
	} else if (rc == -ETIMEDOUT) {
		rc = mproc__lock(&sd->lock, d);
	}
	if (rc < 0)
		return rc;
	if (rc == 1) {
		rc = sd == &q->s->send ? queue_repair_send(q)
		                       : queue_repair_recv(q);
		/* Consistent either way: a corrupt queue keeps answering
		 * -EPROTO instead of becoming unrecoverable for everyone. */
		mproc__lock_consistent(&sd->lock);
		if (rc < 0) {
			mproc__unlock(&sd->lock);
			return rc;
		}
	}
	if (__atomic_load_n(&sd->journal.valid, __ATOMIC_ACQUIRE)) {
		mproc__unlock(&sd->lock);
		return -EPROTO;
	}
	queue_crash(MPROC__CRASH_LOCKED);
	return 0;
}

/* The receive lock, and the view under it, checked. */
static int queue_lock_recv(struct queue_conn *q,
                           const struct mproc__deadline *d,
                           struct queue_view *v)
{
	int rc;

	if ((rc = queue_lock(q, &q->s->recv, d)) < 0)
		return rc;
	view_load(q->s, v);
	if (!view_valid(q, v)) {
		mproc__unlock(&q->s->recv.lock);
		return -EPROTO;
	}
	return 0;
}

/*
 * queue_send_poll: a sender that died holding the send lock with its
 * journal valid committed a message nobody will publish until the next
 * sender comes. Roll it forward now if the lock is free (never waits).
 * Returns 1 when it repaired the send side, else 0.
 */
static int queue_send_poll(struct queue_conn *q)
{
	static const struct mproc__deadline try_only = { .expired = true,
	                                                    .armed = true };
	struct queue_side *sd = &q->s->send;
	int rc;

	if (!__atomic_load_n(&sd->journal.valid, __ATOMIC_ACQUIRE))
		return 0;
	rc = mproc__lock(&sd->lock, &try_only);
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

/* ---- sleeping and waking --------------------------------------------- */

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

/* Called after the change was stored and fenced. */
static void queue_wake_bits(uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	if ((__atomic_load_n(mask, __ATOMIC_SEQ_CST) & bits) &&
	    (__atomic_fetch_and(mask, ~bits, __ATOMIC_SEQ_CST) & bits)) {
		__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
		mproc__futex_wake(seq, INT_MAX, bits);
	}
}

/*
 * Unlock sd, then wake whoever the change can help (data_bits: which
 * receivers, for WAKE_DATA). WAKE_DONE wakes joins only if the receive
 * side's words cw (as just committed) leave no task unfinished.
 */
static void queue_unlock_wake(struct queue_conn *q, struct queue_side *sd,
                              int wake, uint32_t data_bits,
                              const uint64_t *cw)
{
	struct queue_shared *s = q->s;

	mproc__unlock(&sd->lock);
	if (wake == 0)
		return;
	/* The change against the waiter's bits: see the top of the file. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (wake & WAKE_DATA)
		queue_wake_bits(&s->recv_waiting, &s->data_seq, data_bits);
	if (wake & WAKE_SPACE)
		queue_wake_bits(&s->send_waiting, &s->space_seq,
		                MPROC__FUTEX_ALL);
	/* sent read after the fence: a send since the commit means a task
	 * is still open, and its receiver will wake the join. */
	if ((wake & WAKE_DONE) && LOAD(&s->join_waiting) &&
	    (cw == NULL || ACQUIRE(&s->send.w[P_SENT]) - cw[C_GONE] +
	                               cw[C_TAKEN] == 0))
		queue_wake_bits(&s->join_waiting, &s->done_seq,
		                MPROC__FUTEX_ALL);
}

/* What a waiter waits to see move: up to two words and their values. */
struct queue_watch {
	const uint64_t *w[2];
	uint64_t v[2];
};

static int queue_watch_moved(const struct queue_shared *s,
                             const struct queue_watch *wt)
{
	for (int i = 0; i < 2; i++)
		if (wt->w[i] != NULL &&
		    __atomic_load_n(wt->w[i], __ATOMIC_SEQ_CST) != wt->v[i])
			return 1;
	return __atomic_load_n(&s->shutdown, __ATOMIC_SEQ_CST) != 0;
}

/*
 * queue_sleep: called with sd's lock held after a failed attempt. Reads
 * the sequence word, sets its bits in the waiting mask, and checks the
 * watched words once more (that order: see the top of the file); unlocks
 * and, unless they moved, sleeps until woken, the deadline, or the slice
 * ends. Returns 0 (look again) or -ETIMEDOUT (the caller's deadline).
 */
static int queue_sleep(struct queue_conn *q, struct queue_side *sd,
                       uint32_t *mask, uint32_t *seq,
                       const struct mproc__deadline *d, int slice_ms,
                       uint32_t bits, const struct queue_watch *wt)
{
	struct mproc__deadline sd_dl;
	uint32_t v;
	int rc;

	mproc__deadline_arm(d); /* before the copy: one instant for both */
	sd_dl = *d;

	v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
	__atomic_fetch_or(mask, bits, __ATOMIC_SEQ_CST);
	if (wt != NULL && queue_watch_moved(q->s, wt)) {
		mproc__unlock(&sd->lock);
		return 0;
	}
	mproc__unlock(&sd->lock);
	if (slice_ms > 0 && (d->forever || mproc__deadline_ms(d) > slice_ms))
		mproc__deadline_set(&sd_dl, slice_ms);
	rc = mproc__futex_wait(seq, v, &sd_dl, bits);
	if (rc == -ETIMEDOUT && (d->forever || mproc__deadline_ns(d) > 0))
		return 0; /* only the slice ended */
	return rc < 0 && rc != -ETIMEDOUT ? 0 : rc;
}

/*
 * queue_spin watches *word (read without the lock) for a change from v,
 * for a short while. Returns 1 when it changed.
 */
static int queue_spin(const uint64_t *word, uint64_t v, const uint32_t *stop)
{
	uint64_t end = 0;
	unsigned i, k, pauses = 1;

	for (i = 0;;) {
		if (LOAD(word) != v || LOAD(stop))
			return 1;
		/* Back off: each read pulls the line the peer writes next
		 * out of its cache, and a 1:1 stream pays for that on every
		 * message when the reader keeps up. */
		for (k = 0; k < pauses; k++) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
		}
		i += pauses;
		if (pauses < QUEUE_SPIN_MAX_PAUSES)
			pauses <<= 1;
		/* The peer may be waiting for this very CPU (more processes
		 * than cores): give it the CPU now and then. If the yield
		 * took long, others were waiting for the CPU: spinning only
		 * steals from them, so sleep instead. */
		if (i >= 64) {
			uint64_t t0 = mproc__now_ns(), now;

			i = 0;
			sched_yield();
			now = mproc__now_ns();
			if (now - t0 > QUEUE_YIELD_BUSY_NS)
				return 0;
			if (end == 0)
				end = t0 + QUEUE_SPIN_NS;
			else if (now > end)
				return 0;
		}
	}
}

static int queue_expired(const struct mproc__deadline *d, int timeout_ms)
{
	if (d->forever || mproc__deadline_ns(d) > 0)
		return 0;
	return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
}

/*
 * queue_wait: called with sd's lock held after an attempt that could not
 * proceed; always releases the lock. The deadline passed: -EAGAIN or
 * -ETIMEDOUT. First time round (*spun clear): spin on the first watched
 * word without the lock, then 0 to try again. Else: sleep on seq with
 * bits (queue_sleep), then 0 to try again, or -ETIMEDOUT.
 */
static int queue_wait(struct queue_conn *q, struct queue_side *sd,
                      const struct mproc__deadline *d, int timeout_ms,
                      int *spun, const struct queue_watch *wt,
                      uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	struct queue_shared *s = q->s;
	int rc;

	if ((rc = queue_expired(d, timeout_ms)) < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}
	if (!*spun) {
		mproc__unlock(&sd->lock);
		queue_spin(wt->w[0], wt->v[0], &s->shutdown);
		*spun = 1;
		return 0;
	}
	*spun = 0;
	return queue_sleep(q, sd, mask, seq, d, QUEUE_SLICE_MS, bits, wt);
}

/* ---- send ------------------------------------------------------------ */

/*
 * queue_room: does a record of len bytes fit after the send side's words
 * p (send lock held)? Reads head only when the handle's last view of it
 * says no. Returns 1, 0, or -EPROTO.
 */
static int queue_room(struct queue_conn *q, const uint64_t *p, uint64_t len)
{
	struct queue_shared *s = q->s;
	uint64_t tail = p[P_TAIL], head = q->head_seen, gone;

	if (head > tail || tail - head + len > q->cap) {
		head = ACQUIRE(&s->recv.w[C_HEAD]);
		if (!send_words_valid(q, p, head))
			return -EPROTO;
		q->head_seen = head;
		if (tail - head + len > q->cap)
			return 0;
	}
	if (q->max_messages != 0) {
		/* Leased records count against the limit too (they may come
		 * back), so the count only falls as receivers move gone. */
		gone = ACQUIRE(&s->recv.w[C_GONE]);
		if (gone > p[P_SENT])
			return -EPROTO;
		if (p[P_SENT] - gone >= q->max_messages)
			return 0;
	}
	return 1;
}

static int queue_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;
	struct queue_side *sd = &s->send;
	struct mproc__deadline d;
	struct queue_watch wt;
	uint64_t p[P_WORDS], np[P_WORDS];
	struct queue_rec r;
	uint64_t len;
	int rc, spun = 0;

	if (m->size > q->max_payload)
		return -EMSGSIZE;
	if (mproc__unlikely(queue_in_callback == s))
		return -EDEADLK;
	len = MPROC__ALIGN8((uint64_t)REC_HDR + m->size);
	memset(&r, 0, sizeof(r));
	r.magic = QUEUE_REC_MAGIC;
	r.len = (uint32_t)len;
	r.request = m->request;
	r.sender = m->sender != 0 ? m->sender : mproc__self_pid();
	r.recipient = m->recipient;
	r.size = m->size;
	/* Directed mail carries its send time, so a later process that
	 * reuses the recipient's pid can tell it was not meant for it. */
	r.sent_ns = m->recipient > 0 ? mproc__boottime_ns() : 0;
	mproc__deadline_set(&d, timeout_ms);

	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		if ((rc = queue_lock(q, sd, &d)) < 0)
			return rc;
		words_load(sd, p, P_WORDS);
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&sd->lock);
			return -ESHUTDOWN;
		}
		if ((rc = queue_room(q, p, len)) != 0)
			break;
		/* Full: wait for a receiver to move the head (or gone). */
		wt.w[0] = &s->recv.w[C_HEAD];
		wt.v[0] = q->head_seen = ACQUIRE(wt.w[0]);
		wt.w[1] = q->max_messages != 0 ? &s->recv.w[C_GONE] : NULL;
		wt.v[1] = wt.w[1] != NULL ? ACQUIRE(wt.w[1]) : 0;
		if ((rc = queue_wait(q, sd, &d, timeout_ms, &spun, &wt,
		                     &s->send_waiting, &s->space_seq,
		                     MPROC__FUTEX_ALL)) < 0)
			return rc;
	}
	if (rc < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}

	/* Room at tail: write the record where nobody reads, then commit. */
	r.id = p[P_SENT];
	ring_copy_in(q, p[P_TAIL], &r, REC_HDR);
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			ring_copy_in(q, p[P_TAIL] + REC_HDR, m->data,
			             m->size / 2);
			queue_crash(MPROC__CRASH_SEND_COPY);
		}
		ring_copy_in(q, p[P_TAIL] + REC_HDR, m->data, m->size);
	}
	np[P_SENT] = p[P_SENT] + 1;
	np[P_TAIL] = p[P_TAIL] + len;
	queue_commit(q, sd, P_WORDS, p, np, NULL, MPROC__CRASH_SEND_COMMIT);
	queue_unlock_wake(q, sd, WAKE_DATA, queue_data_bits(r.recipient), NULL);
	return 0;
}

/* ---- receive --------------------------------------------------------- */

/*
 * queue_advance_head: the new head after the record at taken becomes
 * consumed (taken == UINT64_MAX: none). Skips consumed records.
 */
static int queue_advance_head(struct queue_conn *q, uint64_t *w,
                              uint64_t tail, uint64_t taken)
{
	struct queue_rec r;

	while (w[C_HEAD] < tail) {
		if (queue_rec_read(q, w[C_HEAD], tail, &r) < 0)
			return -EPROTO;
		if (w[C_HEAD] != taken && !(r.flags & REC_CONSUMED))
			break;
		w[C_HEAD] += r.len;
	}
	return 0;
}

/* Is the record addressed to this process but sent before it started (to
 * an earlier owner of its pid)? Such mail is an orphan, not ours. */
static int queue_not_mine(const struct queue_rec *r)
{
	return r->recipient == mproc__self_pid() && r->sent_ns != 0 &&
	       r->sent_ns < mproc__self_start_ns();
}

static void queue_for_me_upto(struct queue_conn *q, const struct queue_view *v,
                              mproc_match_fn match, uint64_t upto)
{
	if (match == mproc_for_me) {
		q->fm_pid = mproc__self_pid();
		q->fm_gen = v->w[C_GEN];
		q->fm_from = upto;
	}
}

struct queue_scan {
	uint64_t from; /* resume point for the same call */
	uint64_t gen;
	int valid;
};

/* The message view of the record at off, for a predicate or dead_fn. */
static void queue_view_msg(struct queue_conn *q, uint64_t off,
                           const struct queue_rec *r, mproc_msg *view)
{
	memset(view, 0, sizeof(*view));
	view->request = r->request;
	view->sender = r->sender;
	view->recipient = r->recipient;
	view->size = r->size;
	view->capacity = r->size;
	view->data = (void *)queue_payload(q, off, r->size);
}

/*
 * queue_find: the oldest visible record at or after the scan's resume
 * point that match accepts. Returns 1 (found: *off, *r), 0 (none), or a
 * negative errno.
 */
static int queue_find(struct queue_conn *q, const struct queue_view *v,
                      struct queue_scan *sc, mproc_match_fn match, void *arg,
                      uint64_t *off_out, struct queue_rec *r)
{
	uint64_t off = v->w[C_HEAD], gen = v->w[C_GEN];
	mproc_msg view;
	int ok;

	/* Records this call already rejected stay rejected: start after them
	 * unless one may have become visible again (gen). */
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
		if (r->flags & (REC_CONSUMED | REC_LEASED))
			continue;
		if (r->recipient > 0 && queue_not_mine(r))
			continue;
		if (match != NULL) {
			queue_view_msg(q, off, r, &view);
			queue_in_callback = q->s;
			ok = match(&view, arg);
			queue_in_callback = NULL;
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
                           const struct queue_rec *r)
{
	m->request = r->request;
	m->sender = r->sender;
	m->recipient = r->recipient;
	m->size = r->size;
	if (r->size == 0)
		return;
	if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_RECV_COPY)) {
		ring_copy_out(q, off + REC_HDR, m->data, r->size / 2);
		queue_crash(MPROC__CRASH_RECV_COPY);
	}
	ring_copy_out(q, off + REC_HDR, m->data, r->size);
}

static int queue_recv_common(struct queue_conn *q, mproc_msg *m,
                             mproc_match_fn match, void *arg, int timeout_ms,
                             struct mproc__lease *lease)
{
	struct queue_shared *s = q->s;
	struct queue_side *sd = &s->recv;
	struct mproc__deadline d;
	struct queue_scan sc = { 0, 0, 0 };
	struct queue_view v;
	struct queue_watch wt;
	uint64_t nw[SIDE_WORDS];
	struct queue_mark mk;
	struct queue_rec r;
	uint64_t off = 0;
	int rc, spun = 0, wake;

	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		/* An empty queue is seen without the lock: a blocking receive
		 * goes straight to its spin and leaves the lock to others.
		 * (A stale read only costs the spin; the scan below decides.) */
		if (!spun && !d.expired) {
			uint64_t t = ACQUIRE(&s->send.w[P_TAIL]);

			if (t == ACQUIRE(&sd->w[C_HEAD])) {
				queue_spin(&s->send.w[P_TAIL], t, &s->shutdown);
				spun = 1;
			}
		}
		if ((rc = queue_lock_recv(q, &d, &v)) < 0)
			return rc;
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&sd->lock);
			return -ESHUTDOWN;
		}
		rc = queue_find(q, &v, &sc, match, arg, &off, &r);
		if (rc != 0)
			break;
		/* Nothing for us. A sender that died with its commit
		 * journalled is rolled forward (and its message looked at)
		 * before we answer -EAGAIN or wait; the journal's flag is
		 * read only here, off the path that finds mail. */
		if (queue_send_poll(q)) {
			mproc__unlock(&sd->lock);
			continue;
		}
		/* Wait for a sender to move the tail. */
		wt.w[0] = &s->send.w[P_TAIL];
		wt.v[0] = v.tail;
		wt.w[1] = NULL;
		wt.v[1] = 0;
		if ((rc = queue_wait(q, sd, &d, timeout_ms, &spun, &wt,
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
	if (r.size > m->capacity) {
		/* Leave it where it is; say what it needs. */
		m->size = r.size;
		mproc__unlock(&sd->lock);
		return -EMSGSIZE;
	}
	queue_fill_msg(q, m, off, &r);

	memcpy(nw, v.w, sizeof(nw));
	nw[C_RECEIVED]++;
	mk.off = off;
	mk.attempts = r.attempts;
	mk.reserved = 0;
	wake = 0;
	if (lease != NULL) {
		mk.flags = REC_LEASED;
		mk.attempts = r.attempts + 1;
		mk.lease_pid = mproc__self_pid();
		nw[C_LEASED]++;
		lease->cookie = off;
		lease->attempts = mk.attempts;
	} else {
		mk.flags = REC_CONSUMED;
		mk.lease_pid = 0;
		nw[C_GONE]++;
		if (q->flags & MPROC_QUEUE_MANUAL_DONE)
			nw[C_TAKEN]++;
		else
			wake |= WAKE_DONE; /* if it finished the last task */
		if (queue_advance_head(q, nw, v.tail, off) < 0) {
			mproc__unlock(&sd->lock);
			return -EPROTO;
		}
		if (nw[C_HEAD] != v.w[C_HEAD])
			wake |= WAKE_SPACE;
		/* A queued-count limit frees room even when the head stays. */
		if (q->max_messages != 0)
			wake |= WAKE_SPACE;
	}
	queue_commit(q, sd, C_WORDS, v.w, nw, &mk, MPROC__CRASH_RECV_COMMIT);
	queue_unlock_wake(q, sd, wake, MPROC__FUTEX_ALL, nw);
	return 0;
}

static int queue_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                      void *arg, int timeout_ms)
{
	return queue_recv_common(queue_of(c), m, match, arg, timeout_ms, NULL);
}

/* ---- leases (the pool) ----------------------------------------------- */

int mproc__queue_recv_lease(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                            void *arg, int timeout_ms,
                            struct mproc__lease *lease)
{
	if (c == NULL || c->tr != &mproc__queue_transport || m == NULL ||
	    lease == NULL || !mproc__timeout_ok(timeout_ms) ||
	    (m->data == NULL && m->capacity > 0))
		return -EINVAL;
	return queue_recv_common(queue_of(c), m, match, arg, timeout_ms, lease);
}

/* The receive lock with the default bound, for calls that take no
 * timeout. */
static int queue_lock_recv_default(struct queue_conn *q, struct queue_view *v)
{
	struct mproc__deadline d;

	mproc__deadline_set(&d, QUEUE_LOCK_MS);
	return queue_lock_recv(q, &d, v);
}

/* Consume the record at off (found valid), finishing its task. Receive
 * lock held; v follows the commit. */
static int queue_consume_locked(struct queue_conn *q, struct queue_view *v,
                                uint64_t off, const struct queue_rec *r,
                                int *wake, int purge)
{
	uint64_t nw[SIDE_WORDS];
	struct queue_view nv;
	struct queue_mark mk;

	memcpy(nw, v->w, sizeof(nw));
	if (r->flags & REC_LEASED)
		nw[C_LEASED]--;
	nw[C_GONE]++;
	if (purge)
		nw[C_PURGED]++;
	*wake |= WAKE_DONE | WAKE_SPACE;
	if (queue_advance_head(q, nw, v->tail, off) < 0)
		return -EPROTO;
	nv = *v;
	memcpy(nv.w, nw, sizeof(nw));
	if (!view_valid(q, &nv))
		return -EPROTO;
	mk.off = off;
	mk.flags = REC_CONSUMED;
	mk.attempts = r->attempts;
	mk.lease_pid = 0;
	mk.reserved = 0;
	queue_commit(q, &q->s->recv, C_WORDS, v->w, nw, &mk, MPROC__CRASH_NONE);
	*v = nv;
	return 0;
}

int mproc__queue_lease_done(mproc_conn *c, const struct mproc__lease *lease)
{
	struct queue_conn *q;
	struct queue_view v;
	struct queue_rec r;
	uint64_t off;
	int rc, wake = 0;

	if (c == NULL || c->tr != &mproc__queue_transport || lease == NULL)
		return -EINVAL;
	q = queue_of(c);
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	off = lease->cookie;
	if (off < v.w[C_HEAD] || off >= v.tail || off % 8 != 0 ||
	    queue_rec_read(q, off, v.tail, &r) < 0 ||
	    !(r.flags & REC_LEASED) || r.lease_pid != mproc__self_pid()) {
		/* Not ours any more (released after we were thought dead). */
		mproc__unlock(&q->s->recv.lock);
		return -ENOENT;
	}
	rc = queue_consume_locked(q, &v, off, &r, &wake, 0);
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	return rc;
}

int mproc__queue_lease_release(mproc_conn *c, pid_t dead, uint32_t max_attempts,
                               mproc__dead_fn dead_fn, void *arg)
{
	return mproc__queue_lease_release_timed(c, dead, max_attempts, dead_fn,
	                                        arg, QUEUE_LOCK_MS);
}

int mproc__queue_lease_release_timed(mproc_conn *c, pid_t dead,
                                     uint32_t max_attempts,
                                     mproc__dead_fn dead_fn, void *arg,
                                     int timeout_ms)
{
	struct mproc__deadline d;
	struct queue_conn *q;
	struct queue_view v;
	uint64_t nw[SIDE_WORDS];
	struct queue_mark mk;
	struct queue_rec r;
	mproc_msg view;
	uint64_t off;
	int rc, n = 0, wake = 0;

	if (c == NULL || c->tr != &mproc__queue_transport || dead <= 0 ||
	    !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	q = queue_of(c);
	mproc__deadline_set(&d, timeout_ms);
	if ((rc = queue_lock_recv(q, &d, &v)) < 0)
		return rc;
	for (off = v.w[C_HEAD]; off < v.tail; off += r.len) {
		if (queue_rec_read(q, off, v.tail, &r) < 0) {
			rc = -EPROTO;
			break;
		}
		if (!(r.flags & REC_LEASED) || r.lease_pid != dead)
			continue;
		n++;
		if (max_attempts != 0 && r.attempts >= max_attempts) {
			if (dead_fn != NULL) {
				queue_view_msg(q, off, &r, &view);
				queue_in_callback = q->s;
				dead_fn(&view, r.attempts, arg);
				queue_in_callback = NULL;
			}
			if ((rc = queue_consume_locked(q, &v, off, &r, &wake,
			                               0)) < 0)
				break;
			continue;
		}
		/* Visible again, in its old place: it is still the oldest. */
		memcpy(nw, v.w, sizeof(nw));
		nw[C_LEASED]--;
		nw[C_GEN]++;
		mk.off = off;
		mk.flags = 0;
		mk.attempts = r.attempts;
		mk.lease_pid = 0;
		mk.reserved = 0;
		queue_commit(q, &q->s->recv, C_WORDS, v.w, nw, &mk,
		             MPROC__CRASH_NONE);
		memcpy(v.w, nw, sizeof(nw));
		wake |= WAKE_DATA;
	}
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	return rc < 0 ? rc : n;
}

int mproc__queue_peek(mproc_conn *c, mproc_match_fn match, void *arg)
{
	return mproc__queue_peek_timed(c, match, arg, QUEUE_LOCK_MS);
}

int mproc__queue_peek_timed(mproc_conn *c, mproc_match_fn match, void *arg,
                            int timeout_ms)
{
	struct queue_scan sc = { 0, 0, 0 };
	struct mproc__deadline d;
	struct queue_conn *q;
	struct queue_view v;
	struct queue_rec r;
	uint64_t off;
	int rc;

	if (c == NULL || c->tr != &mproc__queue_transport ||
	    !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	q = queue_of(c);
	queue_send_poll(q);
	mproc__deadline_set(&d, timeout_ms);
	if ((rc = queue_lock_recv(q, &d, &v)) < 0)
		return rc;
	rc = queue_find(q, &v, &sc, match, arg, &off, &r);
	mproc__unlock(&q->s->recv.lock);
	return rc;
}

/* ---- join, stats, orphans -------------------------------------------- */

/* Cache of the last pid looked up while scanning for orphans. */
struct queue_pidcache {
	pid_t pid;
	uint64_t start_ns;
	int gone;
};

static int queue_is_orphan(const struct queue_rec *r, struct queue_pidcache *pc)
{
	if (r->recipient <= 0 || r->sent_ns == 0 ||
	    (r->flags & (REC_CONSUMED | REC_LEASED)))
		return 0;
	if (pc->pid != r->recipient || pc->start_ns != r->sent_ns) {
		pc->pid = r->recipient;
		pc->start_ns = r->sent_ns;
		pc->gone = mproc__pid_gone(r->recipient, r->sent_ns);
	}
	return pc->gone;
}

/* Drop orphans (purge) or count them. Receive lock held. */
static int queue_orphans_locked(struct queue_conn *q, struct queue_view *v,
                                int purge, int *wake)
{
	struct queue_pidcache pc = { 0, 0, 0 };
	struct queue_rec r;
	uint64_t off, next;
	int n = 0, rc;

	for (off = v->w[C_HEAD]; off < v->tail; off = next) {
		if (queue_rec_read(q, off, v->tail, &r) < 0)
			return -EPROTO;
		next = off + r.len;
		if (!queue_is_orphan(&r, &pc))
			continue;
		n++;
		if (purge && (rc = queue_consume_locked(q, v, off, &r, wake,
		                                        1)) < 0)
			return rc;
	}
	return n;
}

int mproc__queue_purge(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_view v;
	int rc, wake = 0;

	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	rc = queue_orphans_locked(q, &v, 1, &wake);
	queue_unlock_wake(q, &q->s->recv, wake, MPROC__FUTEX_ALL, v.w);
	return rc;
}

static uint64_t queue_unfinished(const struct queue_view *v)
{
	return v->sent - v->w[C_GONE] + v->w[C_TAKEN];
}

static uint64_t queue_queued(const struct queue_view *v)
{
	return v->sent - v->w[C_GONE] - v->w[C_LEASED];
}

int mproc__queue_join(mproc_conn *c, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;
	struct mproc__deadline d;
	struct queue_view v;
	uint64_t last_purge = 0, now;
	int rc, wake;

	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		queue_send_poll(q);
		if ((rc = queue_lock_recv(q, &d, &v)) < 0)
			return rc;
		if (queue_unfinished(&v) == 0) {
			mproc__unlock(&s->recv.lock);
			return 0;
		}
		now = mproc__now_ns();
		if (queue_queued(&v) > 0 &&
		    now - last_purge >= QUEUE_JOIN_SLICE_MS * 1000000ull) {
			/* Dead recipients' mail would hold the join for ever. */
			last_purge = now;
			wake = 0;
			rc = queue_orphans_locked(q, &v, 1, &wake);
			if (rc < 0 || queue_unfinished(&v) == 0) {
				queue_unlock_wake(q, &s->recv, wake,
				                  MPROC__FUTEX_ALL, v.w);
				return rc < 0 ? rc : 0;
			}
			if (wake) {
				queue_unlock_wake(q, &s->recv, wake,
				                  MPROC__FUTEX_ALL, v.w);
				continue;
			}
		}
		if ((rc = queue_expired(&d, timeout_ms)) < 0) {
			mproc__unlock(&s->recv.lock);
			return rc;
		}
		/* Done when sent - gone + taken reaches 0. gone and taken
		 * move under the lock held until the bits are set, and sent
		 * only grows: the wake after the last finish cannot be
		 * missed, and the slice re-checks for a dead waker. */
		if ((rc = queue_sleep(q, &s->recv, &s->join_waiting,
		                      &s->done_seq, &d, QUEUE_JOIN_SLICE_MS,
		                      MPROC__FUTEX_ALL, NULL)) < 0)
			return rc;
	}
}

int mproc__queue_stats(mproc_conn *c, mproc_stats *out)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;
	struct mproc__deadline d;
	struct queue_view v;
	uint64_t queued, leased;
	int rc;

	/* Both locks (send first: the only order anyone takes both in), so
	 * the counts of the two sides agree with the ring. */
	mproc__deadline_set(&d, QUEUE_LOCK_MS);
	if ((rc = queue_lock(q, &s->send, &d)) < 0)
		return rc;
	if ((rc = queue_lock_recv(q, &d, &v)) < 0) {
		mproc__unlock(&s->send.lock);
		return rc;
	}
	if (queue_walk_check(q, v.w[C_HEAD], v.tail, 1, &queued, &leased) < 0 ||
	    queued != queue_queued(&v) || leased != v.w[C_LEASED])
		rc = -EPROTO;
	else
		rc = queue_orphans_locked(q, &v, 0, NULL);
	if (rc >= 0) {
		memset(out, 0, sizeof(*out));
		out->queued = queued;
		out->bytes = v.tail - v.w[C_HEAD];
		out->unfinished = queue_unfinished(&v);
		out->sent = v.sent;
		out->received = v.w[C_RECEIVED];
		out->recoveries = LOAD(&s->send.recoveries) +
		                  LOAD(&s->recv.recoveries);
		out->orphans = (uint64_t)rc;
		out->purged = v.w[C_PURGED];
		out->capacity = q->cap;
		out->max_payload = q->max_payload;
		rc = 0;
	}
	mproc__unlock(&s->recv.lock);
	mproc__unlock(&s->send.lock);
	return rc;
}

int mproc__queue_empty(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_view v;
	int rc;

	queue_send_poll(q);
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	mproc__unlock(&q->s->recv.lock);
	return queue_queued(&v) == 0;
}

int mproc__queue_task_done(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	uint64_t nw[SIDE_WORDS];
	struct queue_view v;
	int rc;

	if (!(q->flags & MPROC_QUEUE_MANUAL_DONE))
		return -EINVAL;
	if ((rc = queue_lock_recv_default(q, &v)) < 0)
		return rc;
	if (v.w[C_TAKEN] == 0) {
		mproc__unlock(&q->s->recv.lock);
		return -EINVAL;
	}
	memcpy(nw, v.w, sizeof(nw));
	nw[C_TAKEN]--;
	queue_commit(q, &q->s->recv, C_WORDS, v.w, nw, NULL, MPROC__CRASH_NONE);
	queue_unlock_wake(q, &q->s->recv, WAKE_DONE, MPROC__FUTEX_ALL, nw);
	return 0;
}

int mproc__queue_shutdown(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;

	if (queue_check_identity(q) < 0)
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
	return 0;
}

/* ---- open and close -------------------------------------------------- */

static void queue_close(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);

	if (q->s != NULL && !q->borrowed)
		munmap(q->s, q->map_len);
	q->s = NULL;
	free(q->scratch);
	q->scratch = NULL;
	/* The struct itself is mproc_close's to free. */
}

static int queue_fd(mproc_conn *c)
{
	MPROC__UNUSED(c);
	return -EINVAL; /* a queue has no descriptor */
}

int mproc__queue_open(mproc_conn **out, const mproc_queue_opts *opts)
{
	mproc_queue_opts o;
	struct queue_conn *q;
	struct queue_shared *s;
	uint64_t cap;
	size_t len;
	void *map;
	int rc;

	if (opts != NULL)
		o = *opts;
	else
		memset(&o, 0, sizeof(o));
	if (o.flags & ~(uint32_t)MPROC_QUEUE_MANUAL_DONE)
		return -EINVAL;
	if (o.capacity == 0)
		o.capacity = MPROC_QUEUE_DEFAULT_CAPACITY;
	if (o.max_payload == 0)
		o.max_payload = MPROC_QUEUE_DEFAULT_MAX_PAYLOAD;
	if (o.capacity > MPROC_QUEUE_MAX_CAPACITY)
		return -EINVAL;
	cap = o.capacity & ~(uint64_t)7; /* records are 8-byte aligned */
	if (cap < MPROC__ALIGN8((uint64_t)REC_HDR + o.max_payload))
		return -EINVAL; /* not even one message of max_payload fits */

	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->scratch = malloc(o.max_payload);
	if (q->scratch == NULL) {
		free(q);
		return -ENOMEM;
	}
	len = sizeof(struct queue_shared) + (size_t)cap;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	           -1, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		free(q->scratch);
		free(q);
		return rc;
	}
	s = map;
	/* The mapping is zeroed: only what is not zero is written. */
	s->magic = QUEUE_MAGIC;
	s->layout = QUEUE_LAYOUT;
	s->header_size = sizeof(struct queue_shared);
	s->capacity = cap;
	s->max_payload = o.max_payload;
	s->max_messages = o.max_messages;
	s->flags = o.flags;
	s->send.journal.mark.off = UINT64_MAX;
	s->recv.journal.mark.off = UINT64_MAX;
	if ((rc = mproc__lock_init(&s->send.lock)) < 0 ||
	    (rc = mproc__lock_init(&s->recv.lock)) < 0) {
		munmap(map, len);
		free(q->scratch);
		free(q);
		return rc;
	}

	q->base.tr = &mproc__queue_transport;
	q->s = s;
	q->ring = (uint8_t *)map + sizeof(struct queue_shared);
	q->map_len = len;
	q->cap = cap;
	q->cap_mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
	q->max_payload = o.max_payload;
	q->max_messages = o.max_messages;
	q->flags = o.flags;
	*out = &q->base;
	return 0;
}

void *mproc__queue_mapping(mproc_conn *c, size_t *len)
{
	struct queue_conn *q = queue_of(c);

	if (len != NULL)
		*len = q->map_len;
	return q->s;
}

int mproc__queue_lock_span(int which, size_t *off, size_t *len)
{
	if (which == 0)
		*off = offsetof(struct queue_shared, send.lock);
	else if (which == 1)
		*off = offsetof(struct queue_shared, recv.lock);
	else
		return -1;
	*len = sizeof(pthread_mutex_t);
	return 0;
}

int mproc__queue_attach(mproc_conn **out, void *base, size_t len)
{
	struct queue_shared *s = base;
	struct queue_conn *q;
	uint64_t cap;

	if (out == NULL || base == NULL || len < sizeof(struct queue_shared))
		return -EINVAL;
	/* Read each field once: the mapping may change under us. */
	cap = LOAD(&s->capacity);
	if (LOAD(&s->magic) != QUEUE_MAGIC || LOAD(&s->layout) != QUEUE_LAYOUT ||
	    LOAD(&s->header_size) != sizeof(struct queue_shared) ||
	    cap == 0 || cap % 8 != 0 || cap > MPROC_QUEUE_MAX_CAPACITY ||
	    cap > len - sizeof(struct queue_shared))
		return -EPROTO;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->base.tr = &mproc__queue_transport;
	q->s = s;
	q->ring = (uint8_t *)base + sizeof(struct queue_shared);
	q->map_len = len;
	q->cap = cap;
	q->cap_mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
	q->max_payload = LOAD(&s->max_payload);
	q->max_messages = LOAD(&s->max_messages);
	q->flags = LOAD(&s->flags);
	q->borrowed = 1;
	if (cap < MPROC__ALIGN8((uint64_t)REC_HDR + q->max_payload) ||
	    (q->flags & ~(uint32_t)MPROC_QUEUE_MANUAL_DONE) != 0) {
		free(q);
		return -EPROTO;
	}
	q->scratch = malloc(q->max_payload ? q->max_payload : 1);
	if (q->scratch == NULL) {
		free(q);
		return -ENOMEM;
	}
	*out = &q->base;
	return 0;
}

const struct mproc__transport mproc__queue_transport = {
	.name = "queue",
	.send = queue_send,
	.recv = queue_recv,
	.close = queue_close,
	.fd = queue_fd,
};
