/*
 * queue.c - the shared-memory joinable queue (1:M, M:1, M:M).
 *
 * Layout of the MAP_SHARED mapping (offsets, never pointers):
 *
 *   struct queue_shared      identity (magic, layout version, sizes: written
 *                            once by mproc_queue_open, read-only after),
 *                            the robust lock and the ring state it guards,
 *                            the futex words, the journal
 *   ring[capacity]           records, 8-byte aligned, may wrap at the end
 *
 * A record is a struct queue_rec header followed by its payload, padded to
 * a multiple of 8. Records live between st.head and st.tail, which are
 * free-running byte counts (position = offset % capacity). capacity is a
 * multiple of 8, so no header field (4 or 8 bytes, naturally aligned)
 * straddles the end of the ring; a whole header or payload may.
 *
 * Invariants (checked on every locked entry, and on every record read):
 *   head <= tail, tail - head <= capacity
 *   every record in [head, tail) has the record magic, len ==
 *   ALIGN8(header + size), size <= max_payload, and ends at or before tail
 *   the record at head is not consumed (consumed records at the head are
 *   reclaimed by the commit that consumes them)
 *
 * Who writes what: everything in st, the records' flags and the journal is
 * written under the lock. A sender writes a new record into free space
 * (beyond tail) under the lock, where nobody reads it until tail moves.
 *
 * Crash safety: a process may die at any instruction. Every change to st
 * and to a record's flags goes through queue_commit: the state words it
 * changes (four at most) and at most one record mark are written to the
 * journal, the journal is marked valid, then applied, then marked
 * invalid. The next process to take the
 * lock gets EOWNERDEAD and rolls a valid journal forward; an invalid one
 * means st was never touched. A record half-written beyond tail is not
 * part of the queue until a commit moves tail over it, so it is never seen.
 * A payload half-copied out by a dying receiver was never committed as
 * taken, so the message is delivered again (at-least-once).
 *
 * Sleeping: a waiter first spins briefly on the state (yielding now and
 * then, for when its peer shares its CPU), then sleeps on a futex
 * sequence word (data_seq for receivers, space_seq for senders, done_seq
 * for join) after setting its bits in that word's waiting mask; wakers
 * touch the word and make the system call only when bits they can help
 * are set. Receivers that use mproc_for_me wait on their pid's bit (and
 * the "anyone" bit), so mail addressed to one worker wakes that worker,
 * not all of them. A waiter reads the sequence word before it sets its
 * bits, so a waker that clears them always moves the word past the value
 * the waiter sleeps on. A waiter killed while asleep leaves at most one
 * spurious wake behind.
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
#define QUEUE_LAYOUT 2u
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
/* A yield that kept us off the CPU this long means the CPU is wanted. */
#define QUEUE_YIELD_BUSY_NS 20000
/* A join purges orphans this often while it waits. */
#define QUEUE_JOIN_SLICE_MS 100

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
	uint64_t id;       /* st.sent when it was sent: a lease's cookie */
};
#define REC_HDR ((uint32_t)sizeof(struct queue_rec))
_Static_assert(sizeof(struct queue_rec) == 56, "record header is 56 bytes");

/* The ring state: every field is written only by queue_commit. */
struct queue_state {
	uint64_t head;
	uint64_t tail;
	uint64_t queued;     /* records neither consumed nor leased */
	uint64_t leased;
	uint64_t taken;      /* MANUAL_DONE: taken, task_done not yet called */
	uint64_t unfinished; /* queued + leased + taken */
	uint64_t sent;
	uint64_t received;
	uint64_t purged;
	uint64_t gen;        /* bumped when an old record becomes visible again */
};
#define STATE_WORDS (sizeof(struct queue_state) / sizeof(uint64_t))

struct queue_mark {
	uint64_t off; /* record to change; UINT64_MAX: none */
	uint32_t flags;
	uint32_t attempts;
	int32_t lease_pid;
	uint32_t reserved;
};

/*
 * The journal holds only what a commit changes: at most JOURNAL_WORDS
 * state words (every commit changes four or fewer) and one record mark,
 * so it fits one cache line.
 */
#define JOURNAL_WORDS 4
struct queue_journal {
	uint32_t valid;
	uint32_t changed; /* bit i: state word i has a new value in val[] */
	struct queue_mark mark;
	uint64_t val[JOURNAL_WORDS]; /* new values, in word order */
};
_Static_assert(sizeof(struct queue_journal) == 64, "journal is one line");
_Static_assert(sizeof(struct queue_state) / 8 < 32, "changed is 32 bits");

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

	/* The lock, the state it guards and the journal, in three lines a
	 * send or receive touches together. */
	pthread_mutex_t lock __attribute__((aligned(MPROC__CACHELINE)));
	struct queue_state st;
	uint64_t recoveries;
	struct queue_journal journal;

	/* Futex words, apart from the state so sleepers polling them do not
	 * steal the state's line from the lock holder. */
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
	                     predicate; used only under the lock */
	int borrowed;     /* attached mapping: close does not unmap it */
	/* Where mproc_for_me scans from: every visible record before
	 * fm_from was addressed to someone else when this process (fm_pid)
	 * looked, and stays so unless gen moves. Read and written only
	 * under the lock, so threads sharing the handle agree. */
	pid_t fm_pid;
	uint64_t fm_gen;
	uint64_t fm_from;
};

/* What a locked operation leaves for the wake after unlock. */
enum {
	WAKE_DATA = 1 << 0,
	WAKE_SPACE = 1 << 1,
	WAKE_DONE = 1 << 2,
};

static inline struct queue_conn *queue_of(mproc_conn *c)
{
	return (struct queue_conn *)c;
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

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

/* ---- state, journal, repair ----------------------------------------- */

static void state_load(const struct queue_shared *s, struct queue_state *out)
{
	const uint64_t *src = (const uint64_t *)&s->st;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < STATE_WORDS; i++)
		dst[i] = LOAD(&src[i]);
}

/* Relaxed atomic stores: spinners read tail and head without the lock. */
static void state_store(struct queue_shared *s, const struct queue_state *in)
{
	uint64_t *dst = (uint64_t *)&s->st;
	const uint64_t *src = (const uint64_t *)in;

	for (size_t i = 0; i < STATE_WORDS; i++)
		STORE(&dst[i], src[i]);
}

static int state_valid(const struct queue_conn *q, const struct queue_state *st)
{
	return st->head <= st->tail && st->tail - st->head <= q->cap &&
	       st->head % 8 == 0 && st->tail % 8 == 0 &&
	       st->queued <= (st->tail - st->head) / REC_HDR &&
	       st->leased <= (st->tail - st->head) / REC_HDR &&
	       st->unfinished == st->queued + st->leased + st->taken;
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
 * queue_commit makes ns (and mark, if any) the queue's state in a way a
 * crash cannot tear: journal, valid, apply, invalid. Called with the lock.
 */
static void queue_commit(struct queue_conn *q, const struct queue_state *old,
                         const struct queue_state *ns,
                         const struct queue_mark *mk, int crash_point)
{
	struct queue_shared *s = q->s;
	struct queue_journal *j = &s->journal;
	uint64_t *cur = (uint64_t *)&s->st;
	const uint64_t *ow = (const uint64_t *)old, *nw = (const uint64_t *)ns;
	uint32_t changed = 0;
	unsigned i, k = 0;

	/* The words this operation changes, against the state it validated
	 * (not a re-read of the mapping, which a peer could scribble on):
	 * at most JOURNAL_WORDS by construction of every caller. */
	for (i = 0; i < STATE_WORDS && k < JOURNAL_WORDS; i++) {
		if (ow[i] == nw[i])
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
	for (i = 0, k = 0; i < STATE_WORDS; i++)
		if (changed & (1u << i))
			STORE(&cur[i], j->val[k++]);
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
 * step moves at least one header. Returns 0 or -EPROTO.
 */
static int queue_walk_check(struct queue_conn *q, const struct queue_state *st)
{
	struct queue_rec r;
	uint64_t off, queued = 0, leased = 0;

	for (off = st->head; off < st->tail; off += r.len) {
		if (queue_rec_read(q, off, st->tail, &r) < 0)
			return -EPROTO;
		if (r.flags & REC_LEASED)
			leased++;
		else if (!(r.flags & REC_CONSUMED))
			queued++;
		else if (off == st->head)
			return -EPROTO; /* consumed records never stay at the head */
	}
	if (queued != st->queued || leased != st->leased)
		return -EPROTO;
	return 0;
}

/* Roll a valid journal forward after its writer died. Lock held. */
static int queue_repair(struct queue_conn *q)
{
	struct queue_shared *s = q->s;
	struct queue_journal *j = &s->journal;
	struct queue_state st, ns;
	uint64_t *nw = (uint64_t *)&ns;
	uint32_t changed;
	unsigned i, k = 0;

	if (__atomic_load_n(&j->valid, __ATOMIC_ACQUIRE)) {
		/* The new state: the live words with the journal's over them
		 * (whichever of them were already applied). */
		changed = j->changed;
		if ((changed >> STATE_WORDS) != 0 ||
		    __builtin_popcount(changed) > JOURNAL_WORDS)
			return -EPROTO;
		state_load(s, &ns);
		for (i = 0; i < STATE_WORDS; i++)
			if (changed & (1u << i))
				nw[i] = j->val[k++];
		if (!state_valid(q, &ns))
			return -EPROTO;
		/* The live state may be half way to the journal's: check the
		 * mark against the new tail (the head may have passed the
		 * marked record already). */
		if (j->mark.off != UINT64_MAX &&
		    (j->mark.off >= ns.tail || ns.tail - j->mark.off > q->cap ||
		     j->mark.off % 8 != 0 ||
		     (j->mark.flags & ~REC_KNOWN_FLAGS) != 0))
			return -EPROTO;
		mark_apply(q, &j->mark);
		state_store(s, &ns);
		__atomic_store_n(&j->valid, 0, __ATOMIC_RELEASE);
	}
	state_load(s, &st);
	if (!state_valid(q, &st) || queue_walk_check(q, &st) < 0)
		return -EPROTO;
	STORE(&s->recoveries, LOAD(&s->recoveries) + 1);
	return 0;
}

/*
 * queue_lock takes the lock by the deadline d (MPROC_NOWAIT: at most
 * QUEUE_NOWAIT_LOCK_MS, then -EAGAIN), repairs after a dead
 * owner, and checks the identity and the state. On success *st holds the
 * state. Returns 0 with the lock held, or a negative errno with the lock
 * released.
 */
static int queue_lock(struct queue_conn *q, const struct mproc__deadline *d,
                      struct queue_state *st)
{
	struct queue_shared *s = q->s;
	int rc;

	static const struct mproc__deadline try_only = { .expired = true };
	unsigned i;

	if (queue_check_identity(q) < 0)
		return -EPROTO;
	rc = mproc__lock(&s->lock, &try_only);
	/* Busy: a holder keeps the lock for a microsecond or so, so try a
	 * while without sleeping (all MPROC_NOWAIT ever does), then wait
	 * on the lock until the caller's deadline. */
	for (i = 0; rc == -ETIMEDOUT && i < QUEUE_LOCK_TRIES; i++) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		if ((i & 15) == 15)
			sched_yield();
		rc = mproc__lock(&s->lock, &try_only);
	}
	if (rc == -ETIMEDOUT && d->expired) {
		/* A holder that is not running (preempted, under a debugger
		 * or valgrind) gets a little longer before a non-blocking
		 * call gives up; a stopped one makes it -EAGAIN. */
		struct mproc__deadline nd;

		mproc__deadline_set(&nd, QUEUE_NOWAIT_LOCK_MS);
		rc = mproc__lock(&s->lock, &nd);
		if (rc == -ETIMEDOUT)
			return -EAGAIN;
	} else if (rc == -ETIMEDOUT) {
		rc = mproc__lock(&s->lock, d);
	}
	if (rc < 0)
		return rc;
	if (rc == 1) {
		rc = queue_repair(q);
		/* Consistent either way: a corrupt queue keeps answering
		 * -EPROTO instead of becoming unrecoverable for everyone. */
		mproc__lock_consistent(&s->lock);
		if (rc < 0) {
			mproc__unlock(&s->lock);
			return rc;
		}
	}
	state_load(s, st);
	if (!state_valid(q, st) || __atomic_load_n(&s->journal.valid,
	                                           __ATOMIC_ACQUIRE)) {
		mproc__unlock(&s->lock);
		return -EPROTO;
	}
	queue_crash(MPROC__CRASH_LOCKED);
	return 0;
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

static void queue_wake_bits(uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	if ((__atomic_load_n(mask, __ATOMIC_SEQ_CST) & bits) &&
	    (__atomic_fetch_and(mask, ~bits, __ATOMIC_SEQ_CST) & bits)) {
		__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
		mproc__futex_wake(seq, INT_MAX, bits);
	}
}

/* Unlock, then wake whoever the change can help (data_bits: which
 * receivers, for WAKE_DATA). */
static void queue_unlock_wake(struct queue_conn *q, int wake,
                              uint32_t data_bits)
{
	struct queue_shared *s = q->s;

	mproc__unlock(&s->lock);
	if (wake & WAKE_DATA)
		queue_wake_bits(&s->recv_waiting, &s->data_seq, data_bits);
	if (wake & WAKE_SPACE)
		queue_wake_bits(&s->send_waiting, &s->space_seq,
		                MPROC__FUTEX_ALL);
	if (wake & WAKE_DONE)
		queue_wake_bits(&s->join_waiting, &s->done_seq,
		                MPROC__FUTEX_ALL);
}

/*
 * queue_sleep: called with the lock held after a failed attempt. Reads
 * the sequence word, then sets its bits in the waiting mask (that order:
 * see the top of the file), unlocks and sleeps until woken, the deadline,
 * or (slice_ms > 0) the slice ends. Returns 0 or -ETIMEDOUT (the caller's
 * deadline).
 */
static int queue_sleep(struct queue_conn *q, uint32_t *mask, uint32_t *seq,
                       const struct mproc__deadline *d, int slice_ms,
                       uint32_t bits)
{
	struct mproc__deadline sd = *d;
	uint32_t v;
	int rc;

	v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
	__atomic_fetch_or(mask, bits, __ATOMIC_SEQ_CST);
	mproc__unlock(&q->s->lock);
	if (slice_ms > 0 && (d->forever || mproc__deadline_ms(d) > slice_ms))
		mproc__deadline_set(&sd, slice_ms);
	rc = mproc__futex_wait(seq, v, &sd, bits);
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
	unsigned i;

	for (i = 1;; i++) {
		if (LOAD(word) != v || LOAD(stop))
			return 1;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		/* The peer may be waiting for this very CPU (more processes
		 * than cores): give it the CPU now and then. If the yield
		 * took long, others were waiting for the CPU: spinning only
		 * steals from them, so sleep instead. */
		if ((i & 63) == 0) {
			uint64_t t0 = mproc__now_ns(), now;

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
 * queue_wait: called with the lock held after an attempt that could not
 * proceed; always releases the lock. The deadline passed: -EAGAIN or
 * -ETIMEDOUT. First time round (*spun clear): spin on *watch without the
 * lock, then 0 to try again. Else: sleep on seq with bits (queue_sleep),
 * then 0 to try again, or -ETIMEDOUT.
 */
static int queue_wait(struct queue_conn *q, const struct mproc__deadline *d,
                      int timeout_ms, int *spun, const uint64_t *watch,
                      uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	struct queue_shared *s = q->s;
	uint64_t v;
	int rc;

	if ((rc = queue_expired(d, timeout_ms)) < 0) {
		mproc__unlock(&s->lock);
		return rc;
	}
	if (!*spun) {
		v = LOAD(watch);
		mproc__unlock(&s->lock);
		queue_spin(watch, v, &s->shutdown);
		*spun = 1;
		return 0;
	}
	*spun = 0;
	return queue_sleep(q, mask, seq, d, 0, bits);
}

/* ---- send ------------------------------------------------------------ */

static int queue_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;
	struct mproc__deadline d;
	struct queue_state st, ns;
	struct queue_rec r;
	uint64_t len;
	int rc, spun = 0;

	if (m->size > q->max_payload)
		return -EMSGSIZE;
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
		if ((rc = queue_lock(q, &d, &st)) < 0)
			return rc;
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&s->lock);
			return -ESHUTDOWN;
		}
		if (st.tail - st.head + len <= q->cap &&
		    (q->max_messages == 0 || st.queued < q->max_messages))
			break;
		/* Full: wait for a receiver to move the head. */
		if ((rc = queue_wait(q, &d, timeout_ms, &spun, &s->st.head,
		                     &s->send_waiting, &s->space_seq,
		                     MPROC__FUTEX_ALL)) < 0)
			return rc;
	}

	/* Room at tail: write the record where nobody reads, then commit. */
	r.id = st.sent;
	ring_copy_in(q, st.tail, &r, REC_HDR);
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			ring_copy_in(q, st.tail + REC_HDR, m->data, m->size / 2);
			queue_crash(MPROC__CRASH_SEND_COPY);
		}
		ring_copy_in(q, st.tail + REC_HDR, m->data, m->size);
	}
	ns = st;
	ns.tail += len;
	ns.queued++;
	ns.unfinished++;
	ns.sent++;
	queue_commit(q, &st, &ns, NULL, MPROC__CRASH_SEND_COMMIT);
	queue_unlock_wake(q, WAKE_DATA, queue_data_bits(r.recipient));
	return 0;
}

/* ---- receive --------------------------------------------------------- */

/*
 * queue_advance_head: the new head after the record at taken becomes
 * consumed (taken == UINT64_MAX: none). Skips consumed records.
 */
static int queue_advance_head(struct queue_conn *q, struct queue_state *ns,
                              uint64_t taken)
{
	struct queue_rec r;

	while (ns->head < ns->tail) {
		if (queue_rec_read(q, ns->head, ns->tail, &r) < 0)
			return -EPROTO;
		if (ns->head != taken && !(r.flags & REC_CONSUMED))
			break;
		ns->head += r.len;
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

static void queue_for_me_upto(struct queue_conn *q,
                              const struct queue_state *st,
                              mproc_match_fn match, uint64_t upto)
{
	if (match == mproc_for_me) {
		q->fm_pid = mproc__self_pid();
		q->fm_gen = st->gen;
		q->fm_from = upto;
	}
}

struct queue_scan {
	uint64_t from; /* resume point for the same call */
	uint64_t gen;
	int valid;
};

/*
 * queue_find: the oldest visible record at or after the scan's resume
 * point that match accepts. Returns 1 (found: *off, *r), 0 (none), or a
 * negative errno.
 */
static int queue_find(struct queue_conn *q, const struct queue_state *st,
                      struct queue_scan *sc, mproc_match_fn match, void *arg,
                      uint64_t *off_out, struct queue_rec *r)
{
	uint64_t off = st->head;
	mproc_msg view;

	/* Records this call already rejected stay rejected: start after them
	 * unless one may have become visible again (gen). */
	if (sc->valid && sc->gen == st->gen && sc->from >= st->head &&
	    sc->from <= st->tail)
		off = sc->from;
	else if (match == mproc_for_me && q->fm_pid == mproc__self_pid() &&
	         q->fm_gen == st->gen && q->fm_from >= st->head &&
	         q->fm_from <= st->tail)
		off = q->fm_from; /* the same holds across calls for for_me */
	for (; off < st->tail; off += r->len) {
		if (queue_rec_read(q, off, st->tail, r) < 0)
			return -EPROTO;
		if (r->flags & (REC_CONSUMED | REC_LEASED))
			continue;
		if (r->recipient > 0 && queue_not_mine(r))
			continue;
		if (match != NULL) {
			memset(&view, 0, sizeof(view));
			view.request = r->request;
			view.sender = r->sender;
			view.recipient = r->recipient;
			view.size = r->size;
			view.capacity = r->size;
			view.data = (void *)queue_payload(q, off, r->size);
			if (!match(&view, arg))
				continue;
		}
		*off_out = off;
		queue_for_me_upto(q, st, match, off);
		return 1;
	}
	sc->from = st->tail;
	sc->gen = st->gen;
	sc->valid = 1;
	queue_for_me_upto(q, st, match, st->tail);
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
	struct mproc__deadline d;
	struct queue_scan sc = { 0, 0, 0 };
	struct queue_state st, ns;
	struct queue_mark mk;
	struct queue_rec r;
	uint64_t off = 0;
	int rc, spun = 0, wake;

	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		/* An empty queue is seen without the lock: a blocking receive
		 * goes straight to its spin and leaves the lock to senders.
		 * (A stale read only costs the spin; the scan below decides.) */
		if (!spun && !d.expired && LOAD(&s->st.queued) == 0) {
			queue_spin(&s->st.tail, LOAD(&s->st.tail), &s->shutdown);
			spun = 1;
		}
		if ((rc = queue_lock(q, &d, &st)) < 0)
			return rc;
		if (LOAD(&s->shutdown)) {
			mproc__unlock(&s->lock);
			return -ESHUTDOWN;
		}
		rc = queue_find(q, &st, &sc, match, arg, &off, &r);
		if (rc != 0)
			break;
		/* Nothing for us: wait for a sender to move the tail. */
		if ((rc = queue_wait(q, &d, timeout_ms, &spun, &s->st.tail,
		                     &s->recv_waiting, &s->data_seq,
		                     match == mproc_for_me
		                             ? queue_pid_bit(mproc__self_pid()) |
		                                       WAIT_ANY_BIT
		                             : MPROC__FUTEX_ALL)) < 0)
			return rc;
	}
	if (rc < 0) {
		mproc__unlock(&s->lock);
		return rc;
	}
	if (r.size > m->capacity) {
		/* Leave it where it is; say what it needs. */
		m->size = r.size;
		mproc__unlock(&s->lock);
		return -EMSGSIZE;
	}
	queue_fill_msg(q, m, off, &r);

	ns = st;
	ns.queued--;
	ns.received++;
	mk.off = off;
	mk.attempts = r.attempts;
	mk.reserved = 0;
	wake = 0;
	if (lease != NULL) {
		mk.flags = REC_LEASED;
		mk.attempts = r.attempts + 1;
		mk.lease_pid = mproc__self_pid();
		ns.leased++;
		lease->cookie = off;
		lease->attempts = mk.attempts;
	} else {
		mk.flags = REC_CONSUMED;
		mk.lease_pid = 0;
		if (q->flags & MPROC_QUEUE_MANUAL_DONE) {
			ns.taken++;
		} else {
			ns.unfinished--;
			if (ns.unfinished == 0)
				wake |= WAKE_DONE;
		}
		if (queue_advance_head(q, &ns, off) < 0) {
			mproc__unlock(&s->lock);
			return -EPROTO;
		}
		if (ns.head != st.head)
			wake |= WAKE_SPACE;
	}
	if (!(ns.queued < st.queued) || !state_valid(q, &ns)) {
		mproc__unlock(&s->lock);
		return -EPROTO;
	}
	/* A queued-count limit frees room even when the head stays. */
	if (q->max_messages != 0)
		wake |= WAKE_SPACE;
	queue_commit(q, &st, &ns, &mk, MPROC__CRASH_RECV_COMMIT);
	queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
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

/* Lock with the default bound, for calls that take no timeout. */
static int queue_lock_default(struct queue_conn *q, struct queue_state *st)
{
	struct mproc__deadline d;

	mproc__deadline_set(&d, QUEUE_LOCK_MS);
	return queue_lock(q, &d, st);
}

/* Consume the record at off (found valid), finishing its task. */
static int queue_consume_locked(struct queue_conn *q, struct queue_state *st,
                                uint64_t off, const struct queue_rec *r,
                                int *wake, int purge)
{
	struct queue_state ns = *st;
	struct queue_mark mk;

	if (r->flags & REC_LEASED)
		ns.leased--;
	else
		ns.queued--;
	ns.unfinished--;
	if (purge)
		ns.purged++;
	if (ns.unfinished == 0)
		*wake |= WAKE_DONE;
	if (queue_advance_head(q, &ns, off) < 0 || !state_valid(q, &ns))
		return -EPROTO;
	*wake |= WAKE_SPACE;
	mk.off = off;
	mk.flags = REC_CONSUMED;
	mk.attempts = r->attempts;
	mk.lease_pid = 0;
	mk.reserved = 0;
	queue_commit(q, st, &ns, &mk, MPROC__CRASH_NONE);
	*st = ns;
	return 0;
}

int mproc__queue_lease_done(mproc_conn *c, const struct mproc__lease *lease)
{
	struct queue_conn *q;
	struct queue_state st;
	struct queue_rec r;
	uint64_t off;
	int rc, wake = 0;

	if (c == NULL || c->tr != &mproc__queue_transport || lease == NULL)
		return -EINVAL;
	q = queue_of(c);
	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	off = lease->cookie;
	if (off < st.head || off >= st.tail || off % 8 != 0 ||
	    queue_rec_read(q, off, st.tail, &r) < 0 ||
	    !(r.flags & REC_LEASED) || r.lease_pid != mproc__self_pid()) {
		/* Not ours any more (released after we were thought dead). */
		mproc__unlock(&q->s->lock);
		return -ENOENT;
	}
	rc = queue_consume_locked(q, &st, off, &r, &wake, 0);
	queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
	return rc;
}

int mproc__queue_lease_release(mproc_conn *c, pid_t dead, uint32_t max_attempts,
                               mproc__dead_fn dead_fn, void *arg)
{
	struct queue_conn *q;
	struct queue_state st, ns;
	struct queue_mark mk;
	struct queue_rec r;
	mproc_msg view;
	uint64_t off;
	int rc, n = 0, wake = 0;

	if (c == NULL || c->tr != &mproc__queue_transport || dead <= 0)
		return -EINVAL;
	q = queue_of(c);
	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	for (off = st.head; off < st.tail; off += r.len) {
		if (queue_rec_read(q, off, st.tail, &r) < 0) {
			rc = -EPROTO;
			break;
		}
		if (!(r.flags & REC_LEASED) || r.lease_pid != dead)
			continue;
		n++;
		if (max_attempts != 0 && r.attempts >= max_attempts) {
			if (dead_fn != NULL) {
				memset(&view, 0, sizeof(view));
				view.request = r.request;
				view.sender = r.sender;
				view.recipient = r.recipient;
				view.size = r.size;
				view.capacity = r.size;
				view.data = (void *)queue_payload(q, off, r.size);
				dead_fn(&view, r.attempts, arg);
			}
			if ((rc = queue_consume_locked(q, &st, off, &r, &wake,
			                               0)) < 0)
				break;
			continue;
		}
		/* Visible again, in its old place: it is still the oldest. */
		ns = st;
		ns.leased--;
		ns.queued++;
		ns.gen++;
		mk.off = off;
		mk.flags = 0;
		mk.attempts = r.attempts;
		mk.lease_pid = 0;
		mk.reserved = 0;
		queue_commit(q, &st, &ns, &mk, MPROC__CRASH_NONE);
		st = ns;
		wake |= WAKE_DATA;
	}
	queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
	return rc < 0 ? rc : n;
}

int mproc__queue_peek(mproc_conn *c, mproc_match_fn match, void *arg)
{
	struct queue_scan sc = { 0, 0, 0 };
	struct queue_conn *q;
	struct queue_state st;
	struct queue_rec r;
	uint64_t off;
	int rc;

	if (c == NULL || c->tr != &mproc__queue_transport)
		return -EINVAL;
	q = queue_of(c);
	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	rc = queue_find(q, &st, &sc, match, arg, &off, &r);
	mproc__unlock(&q->s->lock);
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

/* Drop orphans (purge) or count them. Lock held. */
static int queue_orphans_locked(struct queue_conn *q, struct queue_state *st,
                                int purge, int *wake)
{
	struct queue_pidcache pc = { 0, 0, 0 };
	struct queue_rec r;
	uint64_t off, next;
	int n = 0, rc;

	for (off = st->head; off < st->tail; off = next) {
		if (queue_rec_read(q, off, st->tail, &r) < 0)
			return -EPROTO;
		next = off + r.len;
		if (!queue_is_orphan(&r, &pc))
			continue;
		n++;
		if (purge && (rc = queue_consume_locked(q, st, off, &r, wake,
		                                        1)) < 0)
			return rc;
	}
	return n;
}

int mproc__queue_purge(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_state st;
	int rc, wake = 0;

	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	rc = queue_orphans_locked(q, &st, 1, &wake);
	queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
	return rc;
}

int mproc__queue_join(mproc_conn *c, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct queue_shared *s = q->s;
	struct mproc__deadline d;
	struct queue_state st;
	uint64_t last_purge = 0, now;
	int rc, wake;

	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (LOAD(&s->shutdown))
			return -ESHUTDOWN;
		if ((rc = queue_lock(q, &d, &st)) < 0)
			return rc;
		if (st.unfinished == 0) {
			mproc__unlock(&s->lock);
			return 0;
		}
		now = mproc__now_ns();
		if (st.queued > 0 &&
		    now - last_purge >= QUEUE_JOIN_SLICE_MS * 1000000ull) {
			/* Dead recipients' mail would hold the join for ever. */
			last_purge = now;
			wake = 0;
			rc = queue_orphans_locked(q, &st, 1, &wake);
			if (rc < 0 || st.unfinished == 0) {
				queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
				return rc < 0 ? rc : 0;
			}
			if (wake) {
				queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
				continue;
			}
		}
		if ((rc = queue_expired(&d, timeout_ms)) < 0) {
			mproc__unlock(&s->lock);
			return rc;
		}
		if ((rc = queue_sleep(q, &s->join_waiting, &s->done_seq, &d,
		                      QUEUE_JOIN_SLICE_MS, MPROC__FUTEX_ALL)) < 0)
			return rc;
	}
}

int mproc__queue_stats(mproc_conn *c, mproc_stats *out)
{
	struct queue_conn *q = queue_of(c);
	struct queue_state st;
	int rc;

	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	rc = queue_orphans_locked(q, &st, 0, NULL);
	if (rc >= 0) {
		memset(out, 0, sizeof(*out));
		out->queued = st.queued;
		out->bytes = st.tail - st.head;
		out->unfinished = st.unfinished;
		out->sent = st.sent;
		out->received = st.received;
		out->recoveries = LOAD(&q->s->recoveries);
		out->orphans = (uint64_t)rc;
		out->purged = st.purged;
		out->capacity = q->cap;
		out->max_payload = q->max_payload;
		rc = 0;
	}
	mproc__unlock(&q->s->lock);
	return rc;
}

int mproc__queue_empty(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_state st;
	int rc;

	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	mproc__unlock(&q->s->lock);
	return st.queued == 0;
}

int mproc__queue_task_done(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	struct queue_state st, ns;
	int rc, wake = 0;

	if (!(q->flags & MPROC_QUEUE_MANUAL_DONE))
		return -EINVAL;
	if ((rc = queue_lock_default(q, &st)) < 0)
		return rc;
	if (st.taken == 0) {
		mproc__unlock(&q->s->lock);
		return -EINVAL;
	}
	ns = st;
	ns.taken--;
	ns.unfinished--;
	if (ns.unfinished == 0)
		wake |= WAKE_DONE;
	queue_commit(q, &st, &ns, NULL, MPROC__CRASH_NONE);
	queue_unlock_wake(q, wake, MPROC__FUTEX_ALL);
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
	struct queue_state st;
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
	s->journal.mark.off = UINT64_MAX;
	if ((rc = mproc__lock_init(&s->lock)) < 0) {
		munmap(map, len);
		free(q->scratch);
		free(q);
		return rc;
	}
	memset(&st, 0, sizeof(st));
	state_store(s, &st);

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

void mproc__queue_lock_span(size_t *off, size_t *len)
{
	*off = offsetof(struct queue_shared, lock);
	*len = sizeof(pthread_mutex_t);
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
