/*
 * region.h - a shared mapping and the header every shared kind starts
 * with (src/shm/region.c).
 *
 * Every mproc mapping (queue, and the kinds to come) begins with struct
 * mproc__shm_hdr: a magic, the kind, the kind's layout version, where the
 * kind's data starts and how long the whole mapping is. It is written once,
 * before any other process can see the mapping, and never again; a reader
 * checks it against what it expects and against the length it mapped
 * before trusting anything else.
 */
#ifndef MPROC_SHM_REGION_H
#define MPROC_SHM_REGION_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define MPROC__SHM_MAGIC 0x314d48536370726dull /* "mprcSHM1" */

/* Kinds (mproc__shm_hdr.kind). */
enum mproc__kind {
	MPROC__KIND_QUEUE = 1,
	MPROC__KIND_BUS = 2,
	MPROC__KIND_SLOT = 3,
};

struct mproc__shm_hdr {
	uint64_t magic;       /* MPROC__SHM_MAGIC */
	uint32_t kind;        /* enum mproc__kind */
	uint32_t layout;      /* the kind's layout version */
	uint32_t header_size; /* bytes before the kind's data (its ring) */
	uint32_t reserved;
	uint64_t size;        /* bytes of the whole mapping */
};
_Static_assert(sizeof(struct mproc__shm_hdr) == 32, "shm header is 32 bytes");

/* mproc__region_anon maps len zeroed bytes MAP_SHARED | MAP_ANONYMOUS.
 * Returns 0 with *out set, or a negative errno. */
int mproc__region_anon(size_t len, void **out);
void mproc__region_unmap(void *base, size_t len);

/* mproc__region_init writes the header of a fresh (zeroed) mapping. */
void mproc__region_init(struct mproc__shm_hdr *h, enum mproc__kind kind,
                        uint32_t layout, uint32_t header_size, uint64_t size);
/*
 * mproc__region_check: is the mapping at h (map_len bytes, at least a
 * header's worth) an mproc object of this kind and layout whose header is
 * header_size bytes? Each field is read once (another process may scribble
 * on it meanwhile). Returns 0 or -EPROTO.
 */
static inline int mproc__region_check(const struct mproc__shm_hdr *h,
                                      size_t map_len, enum mproc__kind kind,
                                      uint32_t layout, uint32_t header_size)
{
	if (h == NULL || map_len < sizeof(*h) || map_len < header_size)
		return -EPROTO;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MPROC__SHM_MAGIC ||
	    __atomic_load_n(&h->kind, __ATOMIC_RELAXED) != (uint32_t)kind ||
	    __atomic_load_n(&h->layout, __ATOMIC_RELAXED) != layout ||
	    __atomic_load_n(&h->header_size, __ATOMIC_RELAXED) != header_size ||
	    __atomic_load_n(&h->size, __ATOMIC_RELAXED) != (uint64_t)map_len)
		return -EPROTO;
	return 0;
}

/* The name of a kind ("queue", "bus", "slot"; "unknown"). */
const char *mproc__kind_name(uint32_t kind);

#endif /* MPROC_SHM_REGION_H */
