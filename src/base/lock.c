/*
 * lock.c - the robust, process-shared lock every shared kind uses.
 *
 * A holder may die at any instruction: the next locker gets EOWNERDEAD
 * (mproc__lock returns 1), repairs what the dead holder left, and marks
 * the lock consistent. Timed waits use CLOCK_MONOTONIC and are woken by
 * the unlock itself (glibc's robust mutexes wake a waiter on release),
 * never by a slice timer.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "base/lock.h"

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

static int lock_attr_init(pthread_mutexattr_t *a);

int mproc__lock_kind(void)
{
	static int want = -1;
	pthread_mutexattr_t a;
	pthread_mutex_t ref;
	int kind = __atomic_load_n(&want, __ATOMIC_RELAXED);

	if (kind >= 0)
		return kind;
	kind = 0;
	if (lock_attr_init(&a) == 0) {
		if (pthread_mutex_init(&ref, &a) == 0) {
			kind = mproc__lock_kind_of(&ref);
			pthread_mutex_destroy(&ref);
		}
		pthread_mutexattr_destroy(&a);
	}
	__atomic_store_n(&want, kind, __ATOMIC_RELAXED);
	return kind;
}

int mproc__lock_check(const pthread_mutex_t *mu)
{
	return mproc__lock_kind_of(mu) == mproc__lock_kind() ? 0 : -EPROTO;
}

int mproc__lock_held_live(const pthread_mutex_t *mu)
{
#if defined(__GLIBC__)
	/* The futex word of a robust mutex: the owner's tid, with
	 * FUTEX_OWNER_DIED set by the kernel when that owner died. */
	unsigned w = (unsigned)__atomic_load_n(&mu->__data.__lock,
	                                       __ATOMIC_ACQUIRE);

	return (w & FUTEX_TID_MASK) != 0 && !(w & FUTEX_OWNER_DIED);
#else
	(void)mu;
	return 1;
#endif
}

static int lock_attr_init(pthread_mutexattr_t *a)
{
	int rc;

	if ((rc = pthread_mutexattr_init(a)) != 0)
		return rc;
	rc = pthread_mutexattr_setpshared(a, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(a, PTHREAD_MUTEX_ROBUST);
	/* ERRORCHECK: a predicate that calls back into its own queue gets
	 * EDEADLK from the lock instead of deadlocking. */
	if (rc == 0)
		rc = pthread_mutexattr_settype(a, PTHREAD_MUTEX_ERRORCHECK);
	if (rc != 0)
		pthread_mutexattr_destroy(a);
	return rc;
}

int mproc__lock_init(pthread_mutex_t *mu)
{
	pthread_mutexattr_t a;
	int rc;

	if ((rc = lock_attr_init(&a)) != 0)
		return -rc;
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
	return mproc__lock_result(rc);
}

int mproc__lock_result(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case EOWNERDEAD:
		return 1;
	case EBUSY:
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
