/*
 * sync.c - clocks, deadlines, futex waits on shared words, and the robust
 * process-shared lock.
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
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "sync.h"

uint64_t mproc__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mproc__boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mproc__deadline_set(struct mproc__deadline *d, int timeout_ms)
{
	/* No clock read: the send and receive fast paths call this once
	 * per message and usually never wait. */
	d->forever = timeout_ms < 0;
	d->expired = timeout_ms == 0;
	d->armed = timeout_ms <= 0;
	d->ms = timeout_ms;
	d->at.tv_sec = 0;
	d->at.tv_nsec = 0;
}

void mproc__deadline_arm(const struct mproc__deadline *cd)
{
	struct mproc__deadline *d = (struct mproc__deadline *)cd;

	if (d->armed || d->forever || d->expired)
		return;
	clock_gettime(CLOCK_MONOTONIC, &d->at);
	d->at.tv_sec += d->ms / 1000;
	d->at.tv_nsec += (long)(d->ms % 1000) * 1000000L;
	if (d->at.tv_nsec >= 1000000000L) {
		d->at.tv_sec++;
		d->at.tv_nsec -= 1000000000L;
	}
	d->armed = true;
}

int64_t mproc__deadline_ns(const struct mproc__deadline *d)
{
	struct timespec now;
	int64_t left;

	if (d->forever)
		return INT64_MAX;
	if (d->expired)
		return 0;
	mproc__deadline_arm(d);
	clock_gettime(CLOCK_MONOTONIC, &now);
	left = (int64_t)(d->at.tv_sec - now.tv_sec) * 1000000000LL +
	       (d->at.tv_nsec - now.tv_nsec);
	return left > 0 ? left : 0;
}

int mproc__deadline_ms(const struct mproc__deadline *d)
{
	int64_t ns;

	if (d->forever)
		return -1;
	ns = mproc__deadline_ns(d);
	if (ns <= 0)
		return 0;
	ns = (ns + 999999) / 1000000;
	return ns > INT_MAX ? INT_MAX : (int)ns;
}

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

#if defined(__SANITIZE_THREAD__)
#define SYNC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SYNC_TSAN 1
#endif
#endif

int mproc__mutex_clocklock(pthread_mutex_t *mu, const struct timespec *at)
{
#ifdef SYNC_TSAN
	struct timespec mono, real, rt;
	int64_t left;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	left = (int64_t)(at->tv_sec - mono.tv_sec) * 1000000000LL +
	       (at->tv_nsec - mono.tv_nsec);
	if (left < 0)
		left = 0;
	rt.tv_sec = real.tv_sec + (time_t)(left / 1000000000LL);
	rt.tv_nsec = real.tv_nsec + (long)(left % 1000000000LL);
	if (rt.tv_nsec >= 1000000000L) {
		rt.tv_sec++;
		rt.tv_nsec -= 1000000000L;
	}
	return pthread_mutex_timedlock(mu, &rt);
#else
	return pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, at);
#endif
}

int mproc__lock_init(pthread_mutex_t *mu)
{
	pthread_mutexattr_t a;
	int rc;

	if ((rc = pthread_mutexattr_init(&a)) != 0)
		return -rc;
	rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	/* ERRORCHECK: a predicate that calls back into its own queue gets
	 * EDEADLK from the lock instead of deadlocking. */
	if (rc == 0)
		rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	if (rc == 0)
		rc = pthread_mutex_init(mu, &a);
	pthread_mutexattr_destroy(&a);
	return -rc;
}

int mproc__lock(pthread_mutex_t *mu, const struct mproc__deadline *d)
{
	int rc;

	rc = pthread_mutex_trylock(mu);
	if (rc == EBUSY && d->expired)
		rc = ETIMEDOUT;
	else if (rc == EBUSY) {
		if (d->forever)
			rc = pthread_mutex_lock(mu);
		else {
			mproc__deadline_arm(d);
			rc = mproc__mutex_clocklock(mu, &d->at);
		}
	}
	switch (rc) {
	case 0:
		return 0;
	case EOWNERDEAD:
		return 1;
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case EDEADLK:
		return -EDEADLK;
	case ENOTRECOVERABLE:
		return -EPROTO;
	default:
		return -rc;
	}
}

void mproc__unlock(pthread_mutex_t *mu)
{
	pthread_mutex_unlock(mu);
}

void mproc__lock_consistent(pthread_mutex_t *mu)
{
	pthread_mutex_consistent(mu);
}
