/*
 * layout.h - the slot's shared mapping, for the slot's sources and for
 * the tests and tools that read it. Offsets, never pointers.
 *
 *   struct mproc__slot_shared  the common header (shm/region.h), the
 *                              geometry (written once), the published
 *                              word, the futex words, the pollers, the
 *                              buffers' headers and the readers' table
 *   nbuf buffers of stride bytes, each a value's payload
 *
 * No lock. The published word cur is (version << 8 | buffer): version 0
 * means no value yet; every publish is one compare-and-swap that adds one
 * to the version, so all writers' values are in one order and a writer
 * killed at any instruction leaves cur naming a whole value.
 *
 * A writer claims a buffer that is not cur, not claimed by a live writer
 * and not pinned by a live reader (buf.writer by compare-and-swap, then a
 * fence, then cur and the pins looked at again), fills it, and publishes
 * it. A reader stores the buffer it wants in its entry's pin, fences, and
 * checks cur is still the word it read: if so no writer can take that
 * buffer until the pin goes (the writer's claim and the reader's pin are a
 * Dekker pair: one of the two sees the other). Pins and claims of dead
 * processes (pid gone, or reused by a later process) count as free, so a
 * killed reader blocks nobody and a killed writer's half-filled buffer is
 * taken back when a writer needs it. A dead one's buffer or entry is
 * taken back start first (to NO_START, by compare-and-swap), then the
 * pid: while it changes hands it is judged by the pid alone, never a live
 * taker by the dead one's older start.
 *
 * Zero-copy is the same protocol held open: a reservation is a writer's
 * claim kept from mproc_send_reserve to the commit (which publishes it as
 * send does) or the cancel; a borrow is a reader's pin kept (in its
 * entry's borrow, so a copying receive on the same handle can use pin
 * meanwhile) from mproc_recv_borrow to the release. Writers pass both by,
 * and a dead process's claim or borrow counts as free like any other.
 */
#ifndef MPROC_SLOT_LAYOUT_H
#define MPROC_SLOT_LAYOUT_H

#include <stdint.h>

#include "internal.h"
#include "shm/poll.h"
#include "shm/region.h"

#define MPROC__SLOT_LAYOUT 1u
/* Buffers: the current value, one per writer at work, one per distinct
 * older value a reader is copying. Values over MPROC__SLOT_BIG get
 * MPROC__SLOT_BUFS_BIG (memory is nbuf * max_payload, touched lazily). */
#define MPROC__SLOT_BUFS 8
#define MPROC__SLOT_BUFS_BIG 3
#define MPROC__SLOT_BIG (64u << 20)
/* Receiving handles (process, handle) at once. */
#define MPROC__SLOT_READERS 256
/* start_ns of an entry being claimed: never judged gone by its start. */
#define MPROC__SLOT_NO_START UINT64_MAX

#define SLOT_CUR_VERSION(w) ((w) >> 8)
#define SLOT_CUR_INDEX(w) ((uint32_t)((w)&0xffu))

struct mproc__slot_buf {
	int32_t writer;        /* pid filling it; 0: none */
	uint32_t reserved0;
	uint64_t writer_start; /* its start (CLOCK_BOOTTIME ns) */
	uint64_t version;      /* the version it was published as */
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;         /* payload bytes */
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct mproc__slot_buf) == 64, "a buffer header is a line");

struct mproc__slot_reader {
	int32_t pid;      /* 0: free */
	uint32_t pin;     /* buffer index + 1 being read; 0: none */
	uint64_t start_ns;
	uint32_t waiting; /* asleep for a newer value (stats) */
	uint32_t borrow;  /* buffer index + 1 lent by mproc_recv_borrow; 0:
	                     none (a pin like pin, held until the release) */
	uint64_t reserved1;
};
_Static_assert(sizeof(struct mproc__slot_reader) == 32, "reader entry");

struct mproc__slot_shared {
	struct mproc__shm_hdr hdr; /* kind MPROC__KIND_SLOT */
	uint32_t max_payload;
	uint32_t nbuf;
	uint32_t flags;            /* MPROC_UNLINK_ON_LAST_CLOSE */
	uint32_t reserved0;
	uint64_t stride;           /* bytes per buffer, 64-aligned */

	uint64_t cur __attribute__((aligned(MPROC__CACHELINE)));
	uint64_t recoveries;       /* dead writers' buffers taken back */

	uint32_t data_seq __attribute__((aligned(MPROC__CACHELINE)));
	uint32_t recv_waiting;
	uint32_t readers_hwm; /* entries ever claimed: readers[0, hwm) are
	                         all a writer scans for pins (it only grows,
	                         raised before the entry's first pin) */

	struct mproc__poll_shared poll __attribute__((aligned(MPROC__CACHELINE)));
	struct mproc__slot_buf buf[MPROC__SLOT_BUFS]
	        __attribute__((aligned(MPROC__CACHELINE)));
	struct mproc__slot_reader readers[MPROC__SLOT_READERS]
	        __attribute__((aligned(MPROC__CACHELINE)));
} __attribute__((aligned(MPROC__CACHELINE)));

#define MPROC__SLOT_HDR ((uint32_t)sizeof(struct mproc__slot_shared))

#endif /* MPROC_SLOT_LAYOUT_H */
