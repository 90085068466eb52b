/*
 * layout.h - the queue's shared mapping, for the queue's sources and for
 * the tests, fuzzers and tools that read or scribble on it. Offsets, never
 * pointers.
 *
 *   struct mproc__queue_shared   the common header (shm/region.h) and the
 *                                queue's geometry (written once by open,
 *                                read-only after), the send side and the
 *                                receive side (shm/journal.h: each a
 *                                robust lock, its words and a journal),
 *                                the futex words
 *   ring[capacity]               records (shm/record.h), 8-byte aligned,
 *                                may wrap at the end
 *
 * Two locks. Senders serialise on the send lock, which guards the send
 * words; receivers (and every other call that takes or marks records)
 * serialise on the receive lock, which guards head and the counts of what
 * left the queue. A sender writes its record beyond tail, where no
 * receiver looks, and publishes it by moving tail; a receiver copies a
 * record out and frees its bytes by moving head. Who reads what of the
 * other side: receivers read tail and sent (acquire loads: a record is
 * whole once tail covers it); senders read head (for room; each handle
 * caches it, head only grows) and gone (for max_messages).
 *
 * Counts: queued = sent - gone - leased, unfinished = sent - gone + taken.
 * sent is applied before tail, so a receiver never sees a record sent
 * does not count.
 *
 * Invariants (checked on every locked entry, and on every record read):
 *   head <= tail, tail - head <= capacity, both 8-aligned
 *   every record in [head, tail) is valid (shm/record.h) and ends at or
 *   before tail; the record at head is not consumed (consumed records at
 *   the head are reclaimed by the commit that consumes them)
 *   taken <= gone, gone + leased <= sent
 *   dtail <= tail: no directed record starts at or after dtail
 */
#ifndef MPROC_QUEUE_LAYOUT_H
#define MPROC_QUEUE_LAYOUT_H

#include <stdint.h>

#include "shm/journal.h"
#include "shm/poll.h"
#include "shm/record.h"
#include "shm/region.h"

#define MPROC__QUEUE_LAYOUT 4u

/*
 * MANUAL_DONE queues: who holds the tasks taken and not yet done. A taker
 * claims a slot (under the receive lock) and counts its tasks there; a
 * slot whose process is gone (exited, killed, its pid reused) no longer
 * counts, so a dead taker's tasks stop holding join. Every write to a
 * slot is made under the receive lock. Takers that find no free slot
 * count in the receive word QC_TAKEN instead (and are not forgiven).
 */
#define MPROC__QUEUE_TAKERS 64
/* Handles that have a descriptor (mproc_fd), at once. */
#define MPROC__QUEUE_POLLERS MPROC__POLLERS
struct mproc__queue_taker {
	int32_t pid;       /* 0: free */
	uint32_t reserved;
	uint64_t start_ns; /* the taker's start (CLOCK_BOOTTIME ns, /proc) */
	uint64_t taken;    /* tasks it took and has not marked done */
};

/* The send side's words, in the order a commit applies them (sent before
 * tail: a receiver that sees a record sees it counted). */
enum {
	QP_SENT,  /* messages ever sent */
	QP_TAIL,  /* end of the last record */
	QP_DTAIL, /* end of the last record addressed to a pid: scans for
	             orphans stop at head when head has passed it */
	QP_WORDS
};
/* The receive side's words. */
enum {
	QC_HEAD,     /* start of the oldest record not consumed */
	QC_GONE,     /* records consumed for good (taken, purged, done) */
	QC_LEASED,   /* records leased (pool), not visible */
	QC_TAKEN,    /* MANUAL_DONE: taken, task_done not yet called, by
	                takers without a slot (takers[] counts the rest) */
	QC_RECEIVED, /* receives, leases included */
	QC_PURGED,
	QC_GEN,      /* bumped when an old record becomes visible again */
	QC_WORDS
};
_Static_assert(QC_WORDS <= MPROC__SIDE_WORDS, "receive words fit a side");

struct mproc__queue_shared {
	/* Identity: written once before any other process can see it. */
	struct mproc__shm_hdr hdr; /* kind MPROC__KIND_QUEUE */
	uint64_t capacity;         /* ring bytes, a multiple of 8 */
	uint32_t max_payload;
	uint32_t max_messages;
	uint32_t flags;            /* MPROC_QUEUE_* */
	uint32_t reserved0;

	struct mproc__side send; /* QP_* */
	struct mproc__side recv; /* QC_* */

	/* Futex words: read on every operation, written only by sleepers
	 * and the wakes they ask for. */
	uint32_t data_seq __attribute__((aligned(MPROC__CACHELINE)));
	uint32_t space_seq;
	uint32_t done_seq;
	uint32_t shutdown;
	uint32_t recv_waiting;
	uint32_t send_waiting;
	uint32_t join_waiting;
	uint32_t reserved1;
	uint64_t poll_armed; /* bit i: poller slot i waits for a wake; in
	                        this line, which senders read anyway */

	/* The pollers (mproc_fd, shm/poll.h): each a socket named after id,
	 * its slot and the slot's generation, that a sender wakes once per
	 * idle period. */
	struct mproc__poll_table poll __attribute__((aligned(MPROC__CACHELINE)));

	/* MANUAL_DONE takers (see above); zero on other queues. */
	struct mproc__queue_taker takers[MPROC__QUEUE_TAKERS]
	        __attribute__((aligned(MPROC__CACHELINE)));
} __attribute__((aligned(MPROC__CACHELINE)));

#define MPROC__QUEUE_HDR ((uint32_t)sizeof(struct mproc__queue_shared))

#endif /* MPROC_QUEUE_LAYOUT_H */
