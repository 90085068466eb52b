/* sync.h - futex waits and the robust lock (src/sync.c). */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include <pthread.h>
#include <stdint.h>

#include "internal.h"

/*
 * mproc__futex_wait sleeps while *word == val, until woken or the deadline.
 * Only a wake whose bits intersect bits wakes it (MPROC__FUTEX_ALL: any).
 * Returns 0 (woken, value changed, or a signal: re-check and call again),
 * -ETIMEDOUT, or another negative errno.
 */
#define MPROC__FUTEX_ALL 0xffffffffu
int mproc__futex_wait(uint32_t *word, uint32_t val,
                      const struct mproc__deadline *d, uint32_t bits);
/* mproc__futex_wake wakes up to n sleepers on word whose bits meet bits. */
void mproc__futex_wake(uint32_t *word, int n, uint32_t bits);

/*
 * mproc__mutex_clocklock: pthread_mutex_clocklock on CLOCK_MONOTONIC.
 * Under ThreadSanitizer (which does not intercept clocklock) it is
 * pthread_mutex_timedlock on the same instant in CLOCK_REALTIME.
 */
int mproc__mutex_clocklock(pthread_mutex_t *mu, const struct timespec *at);

/* Robust, process-shared, error-checking mutex. */
int mproc__lock_init(pthread_mutex_t *mu);
/*
 * mproc__lock takes mu by the deadline. Returns 0, 1 (taken, but the owner
 * died: repair, then mproc__lock_consistent), -ETIMEDOUT, -EDEADLK (this
 * thread holds it already) or -EPROTO (unrecoverable).
 */
int mproc__lock(pthread_mutex_t *mu, const struct mproc__deadline *d);
void mproc__unlock(pthread_mutex_t *mu);
void mproc__lock_consistent(pthread_mutex_t *mu);

#endif /* MPROC_SYNC_H */
