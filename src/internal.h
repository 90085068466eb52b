/*
 * internal.h - macros and mproc__ declarations shared by the sources.
 * Nothing here is installed.
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mproc.h"
#include "transport.h"

#define MPROC__UNUSED(x) ((void)(x))
#define MPROC__ALIGN8(n) (((n) + 7u) & ~(uint64_t)7u)
#define MPROC__CACHELINE 64

#if defined(__GNUC__)
#define mproc__likely(x) __builtin_expect(!!(x), 1)
#define mproc__unlikely(x) __builtin_expect(!!(x), 0)
#else
#define mproc__likely(x) (x)
#define mproc__unlikely(x) (x)
#endif

/*
 * Deadlines on CLOCK_MONOTONIC. A deadline made from MPROC_FOREVER is
 * "infinite" (forever set); from MPROC_NOWAIT it has already passed.
 */
struct mproc__deadline {
	struct timespec at;
	bool forever; /* MPROC_FOREVER: at is unused */
	bool expired; /* MPROC_NOWAIT: passed from the start, at unused */
	bool armed;   /* at is set (see mproc__deadline_arm) */
	int ms;       /* the timeout, until armed */
};

/* mproc__timeout_ok: MPROC_FOREVER, MPROC_NOWAIT or a positive count. */
static inline bool mproc__timeout_ok(int timeout_ms)
{
	return timeout_ms >= MPROC_FOREVER;
}

/*
 * mproc__deadline_set starts a deadline without reading the clock: a
 * positive timeout is turned into an instant by mproc__deadline_arm, which
 * every function below that needs the instant calls, so the clock is read
 * when a call first has to wait, not on every message. The few
 * microseconds of work before that first wait are not counted.
 */
void mproc__deadline_set(struct mproc__deadline *d, int timeout_ms);
/* Fix the instant of a deadline made by mproc__deadline_set (the caller's
 * object is written: deadlines are never const objects). */
void mproc__deadline_arm(const struct mproc__deadline *d);
/* Milliseconds left (rounded up), 0 if passed, -1 if forever. */
int mproc__deadline_ms(const struct mproc__deadline *d);
/* Nanoseconds left, 0 if passed, INT64_MAX if forever. */
int64_t mproc__deadline_ns(const struct mproc__deadline *d);
uint64_t mproc__now_ns(void);        /* CLOCK_MONOTONIC */
uint64_t mproc__boottime_ns(void);   /* CLOCK_BOOTTIME */

/*
 * mproc__self_pid is getpid() cached per process (refreshed after fork by
 * a pthread_atfork child handler registered once).
 */
pid_t mproc__self_pid(void);
/* Start time of this process on CLOCK_BOOTTIME, in ns (from /proc). */
uint64_t mproc__self_start_ns(void);
/*
 * mproc__pid_gone: 1 when pid does not name a live process started at or
 * before born_before_ns (CLOCK_BOOTTIME ns): it exited (zombie included)
 * or the pid was reused by a later process. 0 otherwise.
 */
int mproc__pid_gone(pid_t pid, uint64_t born_before_ns);

/* Queue internals used by the pool (src/queue.c). */
struct mproc__lease {
	uint64_t cookie; /* identifies the leased record while it is held */
	uint32_t attempts;
};
/*
 * mproc__queue_recv_lease takes the oldest message like mproc_recv but
 * leaves it in the ring leased to the caller's pid: nobody else sees it
 * until mproc__queue_lease_done removes it or mproc__queue_lease_release
 * (called for a pid that died) makes it visible again.
 */
int mproc__queue_recv_lease(mproc_conn *q, mproc_msg *m, mproc_match_fn match,
                            void *arg, int timeout_ms,
                            struct mproc__lease *lease);
int mproc__queue_lease_done(mproc_conn *q, const struct mproc__lease *lease);
/*
 * mproc__queue_lease_release makes every record leased by the dead pid
 * visible again (attempts + 1). Records whose attempts reached
 * max_attempts are removed instead and handed, one call of dead_fn each,
 * to the caller (under the lock: dead_fn must only copy). Returns the
 * number of records released or removed, or a negative errno.
 */
typedef void (*mproc__dead_fn)(const mproc_msg *m, uint32_t attempts,
                               void *arg);
int mproc__queue_lease_release(mproc_conn *q, pid_t dead, uint32_t max_attempts,
                               mproc__dead_fn dead_fn, void *arg);
/*
 * The same, waiting for the receive lock up to timeout_ms only (a stopped
 * holder can keep it for ever): -ETIMEDOUT, or -EAGAIN for MPROC_NOWAIT,
 * when it stays busy, with nothing released. The call above waits 1 s.
 */
int mproc__queue_lease_release_timed(mproc_conn *q, pid_t dead,
                                     uint32_t max_attempts,
                                     mproc__dead_fn dead_fn, void *arg,
                                     int timeout_ms);
/*
 * mproc__queue_peek: is a visible message there that match accepts (NULL:
 * any)? Waits for the lock (a busy lock is not an answer, unlike
 * MPROC_NOWAIT), at most 1 s. Returns 1, 0, or a negative errno.
 */
int mproc__queue_peek(mproc_conn *q, mproc_match_fn match, void *arg);
/* The same, waiting for the lock up to timeout_ms (-ETIMEDOUT, or -EAGAIN
 * for MPROC_NOWAIT). */
int mproc__queue_peek_timed(mproc_conn *q, mproc_match_fn match, void *arg,
                            int timeout_ms);
/* The shared mapping behind queue q and its length (tests, fuzzers). */
void *mproc__queue_mapping(mproc_conn *q, size_t *len);
/*
 * mproc__queue_attach makes a handle for a queue mapping that already
 * exists at base (len bytes), trusting nothing in it: the identity is
 * checked and a bad one gives -EPROTO. The handle does not unmap base on
 * close. For fuzzers and tests.
 */
int mproc__queue_attach(mproc_conn **q, void *base, size_t len);
/* Where lock `which` (0: the send lock, 1: the receive lock) sits in the
 * mapping; -1 for any other which. Fuzzers leave them alone: a scribbled
 * mutex word cannot be told from a held one. */
int mproc__queue_lock_span(int which, size_t *off, size_t *len);
/* Test hooks: kill the calling process at a named point (see queue.c). */
enum mproc__crash_point {
	MPROC__CRASH_NONE = 0,
	MPROC__CRASH_SEND_COPY,     /* half way through copying a payload in */
	MPROC__CRASH_SEND_COMMIT,   /* journal written, state not applied */
	MPROC__CRASH_RECV_COPY,     /* half way through copying a payload out */
	MPROC__CRASH_RECV_COMMIT,   /* journal written, state not applied */
	MPROC__CRASH_LOCKED,        /* holding the lock, nothing changed */
	MPROC__CRASH_SEND_APPLIED,  /* state applied, journal still valid */
	MPROC__CRASH_RECV_APPLIED,  /* state applied, journal still valid */
};
/* The process raises SIGKILL when it reaches mproc__crash_point for the
 * mproc__crash_countdown-th time (tests only; 0 = never). */
extern int mproc__crash_point;
extern int mproc__crash_countdown;

#endif /* MPROC_INTERNAL_H */
