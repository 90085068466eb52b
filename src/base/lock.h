/* lock.h - the robust, process-shared lock (src/base/lock.c). */
#ifndef MPROC_BASE_LOCK_H
#define MPROC_BASE_LOCK_H

#include <pthread.h>
#include <time.h>

#include "base/clock.h"

/*
 * mproc__mutex_clocklock: pthread_mutex_clocklock on CLOCK_MONOTONIC.
 * Under ThreadSanitizer (which does not intercept clocklock) it is
 * pthread_mutex_timedlock on the same instant in CLOCK_REALTIME.
 */
int mproc__mutex_clocklock(pthread_mutex_t *mu, const struct timespec *at);

/* Robust, process-shared, error-checking mutex. */
int mproc__lock_init(pthread_mutex_t *mu);
/* The type word glibc keeps in a mutex (0 elsewhere): a scribbled one
 * sends glibc down paths that crash, so shared locks are checked against
 * mproc__lock_kind() before each use. */
static inline int mproc__lock_kind_of(const pthread_mutex_t *mu)
{
#if defined(__GLIBC__)
	return __atomic_load_n(&mu->__data.__kind, __ATOMIC_RELAXED);
#else
	(void)mu;
	return 0;
#endif
}
/* The type word mproc__lock_init gives (computed once). */
int mproc__lock_kind(void);
/* mproc__lock_held_live: is mu held by a live owner right now (a look,
 * not a lock: for readers that must not wait)? */
int mproc__lock_held_live(const pthread_mutex_t *mu);
/* mproc__lock_check: does mu (in a mapping another process made) have the
 * kind mproc__lock_init gives? 0 or -EPROTO (glibc; 0 elsewhere). */
int mproc__lock_check(const pthread_mutex_t *mu);
/*
 * mproc__lock takes mu by the deadline. Returns 0, 1 (taken, but the owner
 * died: repair, then mproc__lock_consistent), -ETIMEDOUT, -EDEADLK (this
 * thread holds it already) or -EPROTO (unrecoverable).
 */
int mproc__lock(pthread_mutex_t *mu, const struct mproc__deadline *d);
/* mproc__lock_result maps a pthread lock result as mproc__lock returns it
 * (EBUSY, a busy trylock, is -ETIMEDOUT). */
int mproc__lock_result(int rc);
void mproc__unlock(pthread_mutex_t *mu);
void mproc__lock_consistent(pthread_mutex_t *mu);

#endif /* MPROC_BASE_LOCK_H */
