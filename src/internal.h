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
 * only read (the inspector), with no lock taken and nothing written
 * (every offset and index read from the mapping is checked before use).
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
/*
 * mproc__bus_inspect and mproc__slot_inspect: the same for a bus and a
 * slot (src/bus/inspect.c, src/slot/inspect.c). readers has room for max
 * entries, at least the bus's max_readers (MPROC__BUS_MAX_READERS, 4096,
 * always do): the subscribers go to its first ones, and the bus inspect
 * returns how many there are, -EPROTO, or -ENOBUFS (max too small; out
 * has the geometry).
 */
struct mproc__bus_reader_figures {
	uint32_t index;     /* its entry in the readers' table */
	int32_t pid;
	uint64_t start_ns;  /* its start (CLOCK_BOOTTIME ns) */
	int live;           /* its process is there (a dead one holds the
	                       ring until a writer takes its entry back) */
	int overrun;        /* behind head (MPROC_BUS_OVERWRITE: its next
	                       receive says -EOVERFLOW) */
	uint64_t cursor;    /* the ring offset it reads next */
	uint64_t seen;      /* the id of the message there */
	uint64_t lag;       /* messages sent that it has not passed */
	uint64_t lag_bytes; /* tail - cursor */
	uint64_t lost;
	uint64_t received;
};
struct mproc__bus_figures {
	uint64_t sent;
	uint64_t queued;    /* messages in the ring */
	uint64_t bytes;     /* ring bytes they take */
	uint64_t capacity;
	uint64_t head, tail;
	uint64_t recoveries;
	uint64_t reclaimed;
	uint64_t max_lag;   /* over the subscribers: messages, bytes */
	uint64_t max_lag_bytes;
	uint32_t max_payload;
	uint32_t max_readers;
	uint32_t flags;     /* MPROC_BUS_OVERWRITE, UNLINK_ON_LAST_CLOSE */
	uint32_t subscribers; /* entries in use */
	uint32_t readers;   /* of them, live */
	int consistent;     /* the words are one state of the bus */
	int pending;        /* a commit was cut short (the next writer
	                       repairs it) */
	int pollers;
};
int mproc__bus_inspect(const void *map, size_t len,
                       struct mproc__bus_figures *out,
                       struct mproc__bus_reader_figures *readers,
                       uint32_t max);
struct mproc__slot_figures {
	uint64_t version;    /* values published (0: none yet) */
	uint64_t recoveries;
	uint32_t size;       /* payload bytes of the current value */
	int32_t request;     /* the current value's fields */
	int32_t sender;
	int32_t recipient;
	uint32_t max_payload;
	uint32_t buffers;
	uint32_t flags;
	uint32_t readers;         /* live receiving handles */
	uint32_t readers_waiting; /* of them, asleep for a newer value */
	uint32_t pinned;     /* live readers copying a value out */
	uint32_t borrowed;   /* live readers holding one (mproc_recv_borrow) */
	uint32_t writing;    /* buffers being filled by live writers */
	int pollers;
};
int mproc__slot_inspect(const void *map, size_t len,
                        struct mproc__slot_figures *out);
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
