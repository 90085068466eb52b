/*
 * region.c - shared mappings and their common header.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "shm/region.h"

int mproc__region_anon(size_t len, void **out)
{
	void *map;

	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	           -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	*out = map;
	return 0;
}

void mproc__region_unmap(void *base, size_t len)
{
	if (base != NULL)
		munmap(base, len);
}

void mproc__region_init(struct mproc__shm_hdr *h, enum mproc__kind kind,
                        uint32_t layout, uint32_t header_size, uint64_t size)
{
	h->kind = (uint32_t)kind;
	h->layout = layout;
	h->header_size = header_size;
	h->size = size;
	/* The magic last: a reader that sees it sees the rest. */
	__atomic_store_n(&h->magic, MPROC__SHM_MAGIC, __ATOMIC_RELEASE);
}

const char *mproc__kind_name(uint32_t kind)
{
	switch (kind) {
	case MPROC__KIND_QUEUE:
		return "queue";
	case MPROC__KIND_BUS:
		return "bus";
	case MPROC__KIND_SLOT:
		return "slot";
	default:
		return "unknown";
	}
}
