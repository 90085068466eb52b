/*
 * wait.c - how queue calls wait and wake (the protocol is base/futex.h's).
 *
 * A waiter first spins briefly on the word it waits for (yielding now and
 * then, for when its peer shares its CPU), then sleeps on a futex sequence
 * word (data_seq for receivers, space_seq for senders, done_seq for join)
 * after setting its bits in that word's waiting mask and checking the word
 * it waits for once more. Receivers that use mproc_for_me wait on their
 * pid's bit (and the "anyone" bit), so mail addressed to one worker wakes
 * that worker, not all of them. Sleeps are cut into QUEUE_SLICE_MS slices,
 * so a waker killed between its change and its wake costs a sleeper one
 * slice. A waiter killed while asleep leaves at most one spurious wake.
 */
#include <errno.h>
#include <stdint.h>

#include "queue/queue.h"

static int queue_watch_moved(const struct mproc__queue_shared *s,
                             const struct queue_watch *wt)
{
	for (int i = 0; i < 2; i++)
		if (wt->w[i] != NULL &&
		    __atomic_load_n(wt->w[i], __ATOMIC_SEQ_CST) != wt->v[i])
			return 1;
	return __atomic_load_n(&s->shutdown, __ATOMIC_SEQ_CST) != 0;
}

int mproc__queue_sleep(struct queue_conn *q, struct mproc__side *sd,
                       uint32_t *mask, uint32_t *seq,
                       const struct mproc__deadline *d, int slice_ms,
                       uint32_t bits, const struct queue_watch *wt)
{
	uint32_t v;

	/* Called with sd's lock held after a failed attempt: the bits, one
	 * more look at the watched words, then unlock and sleep unless they
	 * moved. Returns 0 (look again) or -ETIMEDOUT. */
	mproc__deadline_arm(d);
	v = mproc__sleep_prepare(mask, seq, bits);
	if (wt != NULL && queue_watch_moved(q->s, wt)) {
		mproc__unlock(&sd->lock);
		return 0;
	}
	mproc__unlock(&sd->lock);
	return mproc__sleep(seq, v, d, slice_ms, bits);
}

int mproc__queue_wait(struct queue_conn *q, struct mproc__side *sd,
                      const struct mproc__deadline *d, int timeout_ms,
                      int *spun, const struct queue_watch *wt,
                      uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	int rc;

	/* Called with sd's lock held after an attempt that could not
	 * proceed; always releases the lock. First time round (*spun clear):
	 * spin on the first watched word without the lock, then 0 to try
	 * again. Else: sleep, then 0 to try again, or -ETIMEDOUT. */
	if ((rc = queue_expired(d, timeout_ms)) < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}
	if (!*spun) {
		mproc__unlock(&sd->lock);
		mproc__spin(wt->w[0], wt->v[0], &q->s->shutdown);
		*spun = 1;
		return 0;
	}
	*spun = 0;
	return mproc__queue_sleep(q, sd, mask, seq, d, QUEUE_SLICE_MS, bits,
	                          wt);
}
