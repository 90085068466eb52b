/*
 * internal.h - what every source shares: macros, the base toolkit
 * (clock, process identity), the handle and its ops table, and the queue
 * calls the pool uses. Nothing here is installed.
 *
 * The house, top down: include/mproc.h (the API) -> src/api.c and
 * src/errors.c (entry points, argument checks, the error table) ->
 * src/conn.h (the ops table each kind implements) -> src/pipe/,
 * src/queue/, src/pool/ (one kind each) -> src/shm/ (shared mappings:
 * region header, ring, records, journal) -> src/base/ (clock and
 * deadlines, futex waits, the robust lock, process identity).
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mproc.h"
#include "conn.h"

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

#include "base/clock.h"
#include "base/proc.h"

/* Queue internals used by the pool (src/queue/lease.c). */
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
/* The same, waiting at most timeout_ms for the receive lock (MPROC_NOWAIT:
 * the short try of every NOWAIT call, then -EAGAIN): -ETIMEDOUT/-EAGAIN
 * mean nothing was released, try again later. */
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
/* The same, waiting at most timeout_ms for the lock. */
int mproc__queue_peek_timed(mproc_conn *q, mproc_match_fn match, void *arg,
                             int timeout_ms);
/*
 * mproc__queue_inspect: the figures of a queue mapping the caller may
 * only read (the inspector), with no lock taken and nothing written.
 * Returns 0 or -EPROTO (not a valid queue of this layout).
 */
struct mproc__queue_figures {
	mproc_stats st;
	uint32_t max_messages;
	uint32_t flags;
	int consistent; /* the counts are one state of the queue */
	int pending;    /* a side's journal is pending (an owner died or
	                   stopped mid-commit; the next locker repairs) */
	int shutdown;
	int pollers;    /* handles with a descriptor */
};
int mproc__queue_inspect(const void *map, size_t len,
                         struct mproc__queue_figures *out);
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
/* The crash points (test hooks) of every commit. */
#include "shm/crash.h"

#endif /* MPROC_INTERNAL_H */
