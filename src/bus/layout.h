/*
 * layout.h - the bus's shared mapping, for the bus's sources and for the
 * tests and tools that read it. Offsets, never pointers.
 *
 *   struct mproc__bus_shared  the common header (shm/region.h), the
 *                             geometry (written once), the send side
 *                             (shm/journal.h: robust lock, words,
 *                             journal), the futex words, the pollers
 *   readers[max_readers]      one entry per subscribed process
 *   ring[capacity]            records (shm/record.h), 8-byte aligned
 *
 * One lock, the send lock: writers serialise on it (one total order),
 * and subscribe takes it so that a new reader's cursor is the tail at
 * that moment. Readers take no lock: each moves only its own cursor. The
 * send words are changed only by journaled commits, so a writer killed
 * anywhere leaves them whole. The writer frees room by moving head: to
 * the slowest live reader's cursor (default: it waits while that is not
 * far enough, taking back the entry of a reader found dead), or over the
 * oldest records whatever the readers (MPROC_BUS_OVERWRITE). Head is
 * committed before the freed bytes are written, and a reader checks head
 * again after each copy: a record it was overrun on meanwhile is thrown
 * away (-EOVERFLOW), never returned torn.
 *
 * Invariants: head <= tail, tail - head <= capacity, both 8-aligned; the
 * records in [head, tail) are whole; head_id is the id of the record at
 * head (sent when head == tail); every live reader's cursor is a record
 * boundary in [head, tail] (default mode).
 */
#ifndef MPROC_BUS_LAYOUT_H
#define MPROC_BUS_LAYOUT_H

#include <stdint.h>

#include "shm/journal.h"
#include "shm/poll.h"
#include "shm/record.h"
#include "shm/region.h"

#define MPROC__BUS_LAYOUT 1u
#define MPROC__BUS_MAX_READERS 4096

/* The send side's words, in the order a commit applies them. */
enum {
	BP_HEAD,    /* start of the oldest record still in the ring */
	BP_HEAD_ID, /* its id (messages sent before it) */
	BP_SENT,    /* messages ever sent */
	BP_TAIL,    /* end of the last record */
	BP_WORDS
};

/* One subscriber: written by its own process (cursor, seen, counts), and
 * by subscribe/unsubscribe and a writer reclaiming it under the lock. */
struct mproc__bus_reader {
	int32_t pid;       /* 0: free */
	uint32_t reserved0;
	uint64_t start_ns; /* its start (CLOCK_BOOTTIME ns) */
	uint64_t cursor;   /* the next record it reads */
	uint64_t seen;     /* the id of that record */
	uint64_t received;
	uint64_t lost;     /* overwritten before it read them */
	uint64_t reserved[2];
};
_Static_assert(sizeof(struct mproc__bus_reader) == 64, "reader: a line");

struct mproc__bus_shared {
	struct mproc__shm_hdr hdr; /* kind MPROC__KIND_BUS */
	uint64_t capacity;         /* ring bytes, a multiple of 8 */
	uint32_t max_payload;
	uint32_t max_readers;
	uint32_t flags;            /* MPROC_BUS_OVERWRITE, UNLINK_ON_LAST_CLOSE */
	uint32_t reserved0;
	uint64_t ring_off;         /* where the ring starts */
	uint64_t reclaimed;        /* dead readers' entries taken back */

	struct mproc__side send; /* BP_* */

	uint32_t data_seq __attribute__((aligned(MPROC__CACHELINE)));
	uint32_t space_seq;
	uint32_t readers_seq;
	uint32_t recv_waiting;
	uint32_t send_waiting;
	uint32_t readers_waiting;

	struct mproc__poll_shared poll __attribute__((aligned(MPROC__CACHELINE)));
} __attribute__((aligned(MPROC__CACHELINE)));

#define MPROC__BUS_HDR ((uint32_t)sizeof(struct mproc__bus_shared))

static inline uint64_t mproc__bus_ring_off(uint32_t max_readers)
{
	return MPROC__BUS_HDR +
	       (uint64_t)max_readers * sizeof(struct mproc__bus_reader);
}

#endif /* MPROC_BUS_LAYOUT_H */
