/*
 * journal.h - a side: a robust lock, the words it guards, and the journal
 * that makes every change to them crash-consistent (src/shm/journal.c;
 * the commit is inline, it runs once a message).
 *
 * A process may die at any instruction. Every change to a side's words
 * (and to at most one record's flags) goes through mproc__side_commit:
 * the words it changes (MPROC__JOURNAL_WORDS at most) and the record mark
 * are written to the journal, the journal's seq is made odd (a commit is
 * pending), the change is applied, and seq is made even again. The next
 * process to take the side's lock gets EOWNERDEAD and rolls a pending
 * journal forward (mproc__journal_overlay gives the words it leaves); an
 * even seq means the words were never touched.
 *
 * seq doubles as a sequence lock for readers that take no lock (stats,
 * the inspector): words read between two equal even values of seq are a
 * state the side was in (mproc__side_snapshot).
 *
 * Layout: the lock and the journal each in a line only the side's own
 * callers touch, the words in a line the other side reads.
 */
#ifndef MPROC_SHM_JOURNAL_H
#define MPROC_SHM_JOURNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "shm/crash.h"
#include "shm/record.h"

#define MPROC__SIDE_WORDS 8
#define MPROC__JOURNAL_WORDS 4

/* A change to one record's header: flags, attempts and lease_pid. */
struct mproc__mark {
	uint64_t off; /* the record; UINT64_MAX: none */
	uint32_t flags;
	uint32_t attempts;
	int32_t lease_pid;
	uint32_t reserved;
};

struct mproc__journal {
	uint32_t seq;     /* odd: a commit is pending (not yet whole) */
	uint32_t changed; /* bit i: word i has a new value in val[] */
	struct mproc__mark mark;
	uint64_t val[MPROC__JOURNAL_WORDS]; /* new values, in word order */
};
_Static_assert(sizeof(struct mproc__journal) == 64, "journal is one line");

struct mproc__side {
	pthread_mutex_t lock __attribute__((aligned(MPROC__CACHELINE)));
	uint64_t recoveries; /* dead owners repaired after */
	struct mproc__journal journal __attribute__((aligned(MPROC__CACHELINE)));
	uint64_t w[MPROC__SIDE_WORDS] __attribute__((aligned(MPROC__CACHELINE)));
};

static inline void mproc__words_load(const struct mproc__side *sd,
                                     uint64_t *out, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out[i] = __atomic_load_n(&sd->w[i], __ATOMIC_ACQUIRE);
}

static inline void mproc__words_store(struct mproc__side *sd,
                                      const uint64_t *in, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		__atomic_store_n(&sd->w[i], in[i], __ATOMIC_RELEASE);
}

static inline int mproc__journal_pending(const struct mproc__side *sd)
{
	return __atomic_load_n(&sd->journal.seq, __ATOMIC_ACQUIRE) & 1u;
}

/* A pending journal was rolled forward (or found void): close it. */
static inline void mproc__journal_close(struct mproc__side *sd)
{
	uint32_t s = __atomic_load_n(&sd->journal.seq, __ATOMIC_RELAXED);

	__atomic_store_n(&sd->journal.seq, (s | 1u) + 1u, __ATOMIC_RELEASE);
}

static inline void mproc__mark_apply(const struct mproc__ring *ring,
                                     const struct mproc__mark *mk)
{
	if (mk->off == UINT64_MAX)
		return;
	__atomic_store_n(
	        (int32_t *)mproc__ring_at(
	                ring, mk->off + offsetof(struct mproc__rec, lease_pid)),
	        mk->lease_pid, __ATOMIC_RELAXED);
	/* flags and attempts are neighbours: one 8-byte store, never split
	 * by the ring's end (both 8-aligned). */
	__atomic_store_n(
	        (uint64_t *)mproc__ring_at(
	                ring, mk->off + offsetof(struct mproc__rec, flags)),
	        (uint64_t)mk->flags | (uint64_t)mk->attempts << 32,
	        __ATOMIC_RELAXED);
}

/*
 * mproc__side_commit makes nw (and mark mk, if not NULL) side sd's words
 * in a way a crash cannot tear: journal, seq odd, apply, seq even. Called
 * with sd's lock held; old is what the caller validated (not a re-read of
 * the mapping, which a peer could scribble on). Words are applied in
 * order with release stores. crash_point names the test hook reached
 * between journal and apply.
 * Returns 0, or -E2BIG when more than MPROC__JOURNAL_WORDS words change:
 * then nothing is applied and the journal is not pending (a change the
 * journal cannot hold is refused, never applied in part).
 */
static inline int mproc__side_commit(const struct mproc__ring *ring,
                                     struct mproc__side *sd, unsigned n,
                                     const uint64_t *old, const uint64_t *nw,
                                     const struct mproc__mark *mk,
                                     int crash_point)
{
	struct mproc__journal *j = &sd->journal;
	uint32_t changed = 0, seq;
	unsigned i, k = 0;

	for (i = 0; i < n; i++) {
		if (old[i] == nw[i])
			continue;
		if (mproc__unlikely(k == MPROC__JOURNAL_WORDS))
			return -E2BIG;
		j->val[k++] = nw[i];
		changed |= 1u << i;
	}
	j->changed = changed;
	if (mk != NULL)
		j->mark = *mk;
	else
		j->mark.off = UINT64_MAX;
	/* The journal must be whole before seq says it is pending, and
	 * pending before anything is applied: a process dies in program
	 * order, so compiler fences are what this needs (x86 keeps stores in
	 * order; the release stores keep other CPUs, and the readers of
	 * mproc__side_snapshot, right). */
	seq = __atomic_load_n(&j->seq, __ATOMIC_RELAXED) | 1u;
	__atomic_store_n(&j->seq, seq, __ATOMIC_RELEASE);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	mproc__crash(crash_point);
	mproc__mark_apply(ring, &j->mark);
	for (i = 0, k = 0; i < n; i++)
		if (changed & (1u << i))
			__atomic_store_n(&sd->w[i], j->val[k++],
			                 __ATOMIC_RELEASE);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (mproc__unlikely(mproc__crash_point != MPROC__CRASH_NONE))
		mproc__crash(mproc__crash_applied(crash_point));
	/* Applied: the journal may go. */
	__atomic_store_n(&j->seq, seq + 1u, __ATOMIC_RELEASE);
	return 0;
}

/*
 * mproc__journal_overlay: the words a pending journal leaves: the live
 * ones with the journal's over them (whichever were already applied).
 * Returns 0, or -EPROTO for a journal no commit could have written.
 */
int mproc__journal_overlay(const struct mproc__side *sd, unsigned n,
                           uint64_t *nw);

/*
 * mproc__side_snapshot reads side sd's first n words without its lock.
 * Returns 0 when they are one state the side was in, -EAGAIN when a
 * commit was pending or ran meanwhile (try again, or take the lock).
 */
int mproc__side_snapshot(const struct mproc__side *sd, unsigned n,
                         uint64_t *out, uint32_t *seq_out);

/*
 * mproc__side_pending_snapshot: while a commit stays pending (its writer
 * stopped or dead in the middle of it), the words that commit leaves: a
 * journal is whole before seq goes odd and stays so until seq moves, so
 * they are a state the side is about to be in. 0 with *out (and *seq_out,
 * odd) set; -EAGAIN when no commit is pending or seq moved meanwhile;
 * -EPROTO for a journal no commit could have written.
 */
int mproc__side_pending_snapshot(const struct mproc__side *sd, unsigned n,
                                 uint64_t *out, uint32_t *seq_out);

/* Tries at a busy side lock before waiting on it. */
#define MPROC__SIDE_LOCK_TRIES 256
/* Longest an MPROC_NOWAIT call waits for a busy side lock (-EAGAIN). */
#define MPROC__SIDE_NOWAIT_LOCK_MS 20

/*
 * mproc__side_lock takes side sd's lock by the deadline d, after a first
 * try that gave first_rc (pthread_mutex_trylock's result): a busy lock is
 * tried a while without sleeping (a holder keeps it a microsecond or so),
 * then waited on until d (MPROC_NOWAIT: at most
 * MPROC__SIDE_NOWAIT_LOCK_MS, then -EAGAIN; the unlock wakes the waiter,
 * no timer does). After a dead owner, repair(arg) rolls its journal
 * forward and the lock is made consistent either way (a corrupt side
 * keeps answering -EPROTO rather than becoming unrecoverable). A journal
 * still pending afterwards is -EPROTO. Returns 0 with the lock held, or a
 * negative errno with it released.
 */
int mproc__side_lock(struct mproc__side *sd, const struct mproc__deadline *d,
                     int first_rc, int (*repair)(void *arg), void *arg);

#endif /* MPROC_SHM_JOURNAL_H */
