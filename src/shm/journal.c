/*
 * journal.c - the parts of the side journal that are off the message
 * path: rolling a dead writer's journal forward, and lock-free reads.
 */
#include <errno.h>
#include <stdint.h>

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
