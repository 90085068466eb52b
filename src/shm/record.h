/*
 * record.h - the record a ring holds: a 56-byte header and its payload,
 * padded to a multiple of 8. Header only (inlined on the message path).
 *
 * Records live between a head and a tail (free-running offsets). Every
 * record read from shared memory is checked against the bounds it must
 * keep before anything in it is used: the record magic, a size within
 * the channel's max_payload, len == ALIGN8(header + size), known flags,
 * and an end at or before tail.
 */
#ifndef MPROC_SHM_RECORD_H
#define MPROC_SHM_RECORD_H

#include <errno.h>
#include <stdint.h>

#include "shm/ring.h"

#define MPROC__REC_MAGIC 0x5245434du /* "MCER" */

/* Record flags. */
#define MPROC__REC_CONSUMED (1u << 0) /* taken: skipped, reclaimed at head */
#define MPROC__REC_LEASED (1u << 1)   /* held by lease_pid (pool), hidden */
#define MPROC__REC_BORROWED (1u << 2) /* with LEASED: lent by a borrow */
#define MPROC__REC_PAD (1u << 3)      /* with CONSUMED: padding before a
                                         record that must not wrap; no
                                         message, may stand at head */
#define MPROC__REC_KNOWN                                                      \
	(MPROC__REC_CONSUMED | MPROC__REC_LEASED | MPROC__REC_BORROWED |      \
	 MPROC__REC_PAD)

struct mproc__rec {
	uint32_t magic;    /* MPROC__REC_MAGIC */
	uint32_t len;      /* whole record, header included, 8-aligned */
	uint32_t flags;    /* MPROC__REC_* */
	uint32_t attempts; /* leases taken on it so far */
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;     /* payload bytes */
	int32_t lease_pid; /* holder while MPROC__REC_LEASED */
	uint32_t reserved;
	uint64_t sent_ns;  /* CLOCK_BOOTTIME at send, for directed messages */
	uint64_t id;       /* the channel's send count when it was sent */
};
#define MPROC__REC_HDR ((uint32_t)sizeof(struct mproc__rec))
_Static_assert(sizeof(struct mproc__rec) == 56, "record header is 56 bytes");

/* The ring bytes a record of size payload bytes takes. */
static inline uint64_t mproc__rec_len(uint64_t size)
{
	return MPROC__ALIGN8((uint64_t)MPROC__REC_HDR + size);
}

/*
 * mproc__rec_read copies the header at off and checks it against the
 * bounds it must keep (see the top of this file). Returns 0 or -EPROTO.
 */
static inline int mproc__rec_read(const struct mproc__ring *ring, uint64_t off,
                                  uint64_t tail, uint32_t max_payload,
                                  struct mproc__rec *r)
{
	mproc__ring_copy_out(ring, off, r, MPROC__REC_HDR);
	if (r->magic != MPROC__REC_MAGIC || r->size > max_payload ||
	    r->len != mproc__rec_len(r->size) ||
	    (r->flags & ~MPROC__REC_KNOWN) != 0 || off > tail ||
	    tail - off < r->len)
		return -EPROTO;
	return 0;
}

#endif /* MPROC_SHM_RECORD_H */
