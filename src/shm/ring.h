/*
 * ring.h - a byte ring in shared memory, addressed by free-running
 * offsets (position = offset % capacity). Header only: these run several
 * times a message and stay inlinable.
 *
 * The capacity is a multiple of 8, so a naturally aligned field of up to
 * 8 bytes at an 8-aligned record never straddles the end; a whole header
 * or payload may, and the copies split there.
 */
#ifndef MPROC_SHM_RING_H
#define MPROC_SHM_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

struct mproc__ring {
	uint8_t *base; /* the ring's first byte (in the mapping) */
	uint64_t cap;  /* bytes; a trusted private copy, never re-read */
	uint64_t mask; /* cap - 1 when cap is a power of two, else 0 */
};

static inline void mproc__ring_init(struct mproc__ring *r, void *base,
                                    uint64_t cap)
{
	r->base = base;
	r->cap = cap;
	r->mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
}

static inline uint64_t mproc__ring_pos(const struct mproc__ring *r,
                                       uint64_t off)
{
	/* A division costs tens of cycles and runs several times a message:
	 * mask when the capacity is a power of two (the default). */
	return mproc__likely(r->mask != 0) ? off & r->mask : off % r->cap;
}

static inline void mproc__ring_copy_in(const struct mproc__ring *r,
                                       uint64_t off, const void *src,
                                       size_t n)
{
	uint64_t pos = mproc__ring_pos(r, off);
	size_t first = n;

	if (pos + n > r->cap)
		first = (size_t)(r->cap - pos);
	memcpy(r->base + pos, src, first);
	if (first < n)
		memcpy(r->base, (const uint8_t *)src + first, n - first);
}

static inline void mproc__ring_copy_out(const struct mproc__ring *r,
                                        uint64_t off, void *dst, size_t n)
{
	uint64_t pos = mproc__ring_pos(r, off);
	size_t first = n;

	if (pos + n > r->cap)
		first = (size_t)(r->cap - pos);
	memcpy(dst, r->base + pos, first);
	if (first < n)
		memcpy((uint8_t *)dst + first, r->base, n - first);
}

/* The byte at off (a naturally aligned field never straddles the end). */
static inline void *mproc__ring_at(const struct mproc__ring *r, uint64_t off)
{
	return r->base + mproc__ring_pos(r, off);
}

/* Is [off, off + n) one contiguous stretch of the ring? */
static inline int mproc__ring_contiguous(const struct mproc__ring *r,
                                         uint64_t off, uint64_t n)
{
	return mproc__ring_pos(r, off) + n <= r->cap;
}

#endif /* MPROC_SHM_RING_H */
