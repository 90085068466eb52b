/*
 * futex.c - waits on 32-bit words in shared memory, and the waiter-bit
 * protocol every shared kind sleeps with.
 *
 * Futex words live in MAP_SHARED memory and are waited on by several
 * processes, so they never use FUTEX_PRIVATE_FLAG. Waits take an absolute
 * CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), so a signal that interrupts
 * one does not restart its clock: the caller re-checks its condition and
 * waits again until the same deadline.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/futex.h"

int mproc__futex_wait(uint32_t *word, uint32_t val,
                      const struct mproc__deadline *d, uint32_t bits)
{
	long rc;

	if (!d->forever && mproc__deadline_ns(d) == 0)
		return -ETIMEDOUT;
	/* Absolute CLOCK_MONOTONIC deadline: FUTEX_WAIT_BITSET without
	 * FUTEX_CLOCK_REALTIME measures against the monotonic clock. */
	rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val,
	             d->forever ? NULL : &d->at, NULL, bits);
	if (rc == 0)
		return 0;
	switch (errno) {
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case EAGAIN: /* the word moved before we slept */
	case EINTR:  /* a signal: the caller re-checks, same deadline */
		return 0;
	default:
		return -errno;
	}
}

void mproc__futex_wake(uint32_t *word, int n, uint32_t bits)
{
	syscall(SYS_futex, word, FUTEX_WAKE_BITSET, n, NULL, NULL, bits);
}


uint32_t mproc__sleep_prepare(uint32_t *mask, uint32_t *seq, uint32_t bits)
{
	uint32_t v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);

	/* seq first, then the bits: a waker that changes the watched word
	 * after our last look sees the bits, bumps seq and wakes; one that
	 * changed it before, we see when we look again (the caller does). */
	__atomic_fetch_or(mask, bits, __ATOMIC_SEQ_CST);
	return v;
}

int mproc__sleep(uint32_t *seq, uint32_t v, const struct mproc__deadline *d,
                 int slice_ms, uint32_t bits)
{
	struct mproc__deadline sl;
	int rc;

	mproc__deadline_arm(d);
	sl = *d;
	if (slice_ms > 0 && (d->forever || mproc__deadline_ms(d) > slice_ms))
		mproc__deadline_set(&sl, slice_ms);
	rc = mproc__futex_wait(seq, v, &sl, bits);
	if (rc == -ETIMEDOUT && (d->forever || mproc__deadline_ns(d) > 0))
		return 0; /* only the slice ended */
	return rc < 0 && rc != -ETIMEDOUT ? 0 : rc;
}

int mproc__spin(const uint64_t *word, uint64_t v, const uint32_t *stop)
{
	uint64_t end = 0;
	unsigned i, k, pauses = 1;

	for (i = 0;;) {
		if (__atomic_load_n(word, __ATOMIC_RELAXED) != v ||
		    __atomic_load_n(stop, __ATOMIC_RELAXED))
			return 1;
		/* Back off: each read pulls the line the peer writes next
		 * out of its cache, and a 1:1 stream pays for that on every
		 * message when the reader keeps up. */
		for (k = 0; k < pauses; k++)
			mproc__pause();
		i += pauses;
		if (pauses < MPROC__SPIN_MAX_PAUSES)
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
			if (now - t0 > MPROC__YIELD_BUSY_NS)
				return 0;
			if (end == 0)
				end = t0 + MPROC__SPIN_NS;
			else if (now > end)
				return 0;
		}
	}
}
