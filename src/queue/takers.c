/*
 * takers.c - MANUAL_DONE queues: the slots that count each taker's tasks
 * taken and not yet done (queue/layout.h), so that a taker that dies
 * before mproc_task_done stops holding join instead of holding it for
 * ever. Its tasks are not delivered again: they were delivered once.
 */
#include <errno.h>
#include <stdint.h>

#include "queue/queue.h"

int mproc__queue_taker_claim(struct queue_conn *q)
{
	struct mproc__queue_taker *t = q->s->takers;
	pid_t me = mproc__self_pid();
	uint64_t start = mproc__self_start_ns();
	struct mproc__live lc;
	int i, free_slot = -1;

	if (q->taker_pid == me && q->taker >= 0 &&
	    q->taker < MPROC__QUEUE_TAKERS && LOAD(&t[q->taker].pid) == me &&
	    LOAD(&t[q->taker].start_ns) == start)
		return q->taker;
	for (i = 0; i < MPROC__QUEUE_TAKERS; i++) {
		pid_t p = LOAD(&t[i].pid);

		if (p == me && LOAD(&t[i].start_ns) == start)
			goto mine;
		if (p == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0) {
		/* Full: take over a slot whose process is gone and whose
		 * count therefore no longer counts. Rare (a /proc look-up
		 * per slot, at most once per process and queue). */
		mproc__live_init(&lc);
		for (i = 0; i < MPROC__QUEUE_TAKERS && free_slot < 0; i++)
			if (mproc__live_gone(&lc, LOAD(&t[i].pid),
			                     LOAD(&t[i].start_ns)))
				free_slot = i;
		if (free_slot < 0)
			return -1;
	}
	i = free_slot;
	STORE(&t[i].taken, 0);
	STORE(&t[i].start_ns, start);
	RELEASE(&t[i].pid, me);
mine:
	q->taker_pid = me;
	q->taker = i;
	return i;
}

uint64_t mproc__queue_takers_sum(const struct queue_conn *q,
                                 struct queue_dead_takers *dead)
{
	const struct mproc__queue_taker *t = q->s->takers;
	struct mproc__live lc;
	uint64_t sum = 0, n, start;
	pid_t pid;
	int i;

	if (dead != NULL) {
		mproc__live_init(&lc);
		dead->n = 0;
	}
	for (i = 0; i < MPROC__QUEUE_TAKERS; i++) {
		n = ACQUIRE(&t[i].taken);
		pid = LOAD(&t[i].pid);
		if (n == 0 || pid <= 0)
			continue; /* a free slot counts nothing, whatever it holds */
		start = LOAD(&t[i].start_ns);
		if (dead != NULL && mproc__live_gone(&lc, pid, start)) {
			dead->d[dead->n].slot = i;
			dead->d[dead->n].pid = pid;
			dead->d[dead->n].start_ns = start;
			dead->n++;
			continue;
		}
		/* Shared memory is untrusted: a sum past what any count
		 * could be is UINT64_MAX, which callers refuse. */
		if (n > UINT64_MAX / 2 - sum)
			return UINT64_MAX;
		sum += n;
	}
	return sum;
}

uint64_t mproc__queue_takers_reclaim(struct queue_conn *q,
                                     const struct queue_dead_takers *dead)
{
	struct mproc__queue_taker *t = q->s->takers;
	uint64_t n = 0;
	int i, k;

	/* A gone process stays gone: the verdict found without the lock
	 * holds now, for the slot it was about (same pid, same start). */
	for (i = 0; i < dead->n; i++) {
		k = dead->d[i].slot;
		if (LOAD(&t[k].pid) != dead->d[i].pid ||
		    LOAD(&t[k].start_ns) != dead->d[i].start_ns)
			continue;
		n += LOAD(&t[k].taken);
		RELEASE(&t[k].taken, 0);
	}
	return n;
}

int mproc__queue_taker_done(struct queue_conn *q)
{
	struct mproc__queue_taker *t = q->s->takers;
	pid_t me = mproc__self_pid();
	uint64_t n;
	int i;

	/* The caller's own task first, else one taken by another process
	 * (JoinableQueue allows task_done anywhere). */
	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < MPROC__QUEUE_TAKERS; i++) {
			n = LOAD(&t[i].taken);
			if (n == 0 || (pass == 0 && LOAD(&t[i].pid) != me))
				continue;
			RELEASE(&t[i].taken, n - 1);
			return 0;
		}
	}
	return -ENOENT;
}
