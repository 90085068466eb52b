/*
 * journal.c - the parts of the side journal that are off the message
 * path: rolling a dead writer's journal forward, and lock-free reads.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>

#include "base/futex.h"
#include "base/lock.h"
#include "shm/journal.h"

int mproc__crash_point;
int mproc__crash_countdown;

int mproc__journal_overlay(const struct mproc__side *sd, unsigned n,
                           uint64_t *nw)
{
	uint32_t changed = __atomic_load_n(&sd->journal.changed,
	                                   __ATOMIC_RELAXED);
	unsigned i, k = 0;

	if (n > MPROC__SIDE_WORDS || (changed >> n) != 0 ||
	    __builtin_popcount(changed) > MPROC__JOURNAL_WORDS)
		return -EPROTO;
	mproc__words_load(sd, nw, n);
	for (i = 0; i < n; i++)
		if (changed & (1u << i))
			nw[i] = __atomic_load_n(&sd->journal.val[k++],
			                        __ATOMIC_RELAXED);
	return 0;
}

int mproc__side_snapshot(const struct mproc__side *sd, unsigned n,
                         uint64_t *out, uint32_t *seq_out)
{
	uint32_t s1, s2;

	s1 = __atomic_load_n(&sd->journal.seq, __ATOMIC_ACQUIRE);
	if (s1 & 1u)
		return -EAGAIN;
	mproc__words_load(sd, out, n);
	/* The words' loads before the second look at seq. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&sd->journal.seq, __ATOMIC_RELAXED);
	if (s1 != s2)
		return -EAGAIN;
	if (seq_out != NULL)
		*seq_out = s1;
	return 0;
}

int mproc__side_pending_snapshot(const struct mproc__side *sd, unsigned n,
                                 uint64_t *out, uint32_t *seq_out)
{
	uint32_t s1, s2;

	s1 = __atomic_load_n(&sd->journal.seq, __ATOMIC_ACQUIRE);
	if (!(s1 & 1u))
		return -EAGAIN;
	if (mproc__journal_overlay(sd, n, out) < 0)
		return -EPROTO;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&sd->journal.seq, __ATOMIC_RELAXED);
	if (s1 != s2)
		return -EAGAIN;
	if (seq_out != NULL)
		*seq_out = s1;
	return 0;
}

int mproc__side_lock(struct mproc__side *sd, const struct mproc__deadline *d,
                     int first_rc, int (*repair)(void *arg), void *arg)
{
	static const struct mproc__deadline try_only = { .expired = true,
	                                                  .armed = true };
	int rc = mproc__lock_result(first_rc);
	unsigned i;

	if (first_rc == 0)
		goto locked; /* a journal left pending by a live process */
	for (i = 0; rc == -ETIMEDOUT && i < MPROC__SIDE_LOCK_TRIES; i++) {
		mproc__pause();
		if ((i & 15) == 15)
			sched_yield();
		rc = mproc__lock(&sd->lock, &try_only);
	}
	if (rc == -ETIMEDOUT && d->expired) {
		/* A holder that is not running (preempted, under a debugger
		 * or valgrind) gets a little longer before a non-blocking
		 * call gives up; a stopped one makes it -EAGAIN. */
		struct mproc__deadline nd;

		mproc__deadline_set(&nd, MPROC__SIDE_NOWAIT_LOCK_MS);
		rc = mproc__lock(&sd->lock, &nd);
		if (rc == -ETIMEDOUT)
			return -EAGAIN;
	} else if (rc == -ETIMEDOUT) {
		rc = mproc__lock(&sd->lock, d);
	}
	if (rc < 0)
		return rc;
	if (rc == 1) {
		rc = repair(arg);
		mproc__lock_consistent(&sd->lock);
		if (rc < 0) {
			mproc__unlock(&sd->lock);
			return rc;
		}
	}
locked:
	if (mproc__journal_pending(sd)) {
		mproc__unlock(&sd->lock);
		return -EPROTO;
	}
	mproc__crash(MPROC__CRASH_LOCKED);
	return 0;
}
