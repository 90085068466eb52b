/*
 * check_pay.h - payloads that prove themselves whole, for the crash,
 * stress and threads suites: a header (producer, a tag, a sequence number)
 * and a body that depends on them, with an FNV-1a sum over all of it. A
 * torn, stale or mixed-up copy fails pay_check.
 */
#ifndef MPROC_CHECK_PAY_H
#define MPROC_CHECK_PAY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PAY_MAGIC 0x31594150u /* "PAY1" */

struct pay {
	uint32_t magic;
	uint32_t size; /* whole payload, header included */
	uint32_t src;  /* producer (or the thread or child it comes from) */
	union {
		uint32_t round; /* crash and stress suites: the round */
		uint32_t dst;   /* threads suite: who it is for, or UINT32_MAX */
	};
	uint64_t seq;
	uint64_t sum; /* FNV-1a of the payload with this field zeroed */
};

static inline uint8_t pay_fill(uint64_t seq, uint32_t src, uint32_t i)
{
	return (uint8_t)(seq * 131u + i * 7u + src * 17u + (i >> 8));
}

static inline uint64_t pay_sum(const uint8_t *p, uint32_t size)
{
	const uint32_t lo = offsetof(struct pay, sum), hi = lo + 8;
	uint64_t h = 1469598103934665603ull;

	for (uint32_t i = 0; i < size; i++)
		h = (h ^ (i >= lo && i < hi ? 0 : p[i])) * 1099511628211ull;
	return h;
}

static inline void pay_make(void *buf, uint32_t size, uint32_t src,
                            uint32_t tag, uint64_t seq)
{
	struct pay h = { PAY_MAGIC, size, src, { tag }, seq, 0 };
	uint8_t *p = buf;

	for (uint32_t i = sizeof(h); i < size; i++)
		p[i] = pay_fill(seq, src, i);
	memcpy(p, &h, sizeof(h));
	h.sum = pay_sum(p, size);
	memcpy(p + offsetof(struct pay, sum), &h.sum, sizeof(h.sum));
}

/* 0 when buf (size bytes) is a whole payload made by pay_make. */
static inline int pay_check(const void *buf, uint32_t size, struct pay *out)
{
	const uint8_t *p = buf;
	struct pay h;

	if (size < sizeof(h))
		return -1;
	memcpy(&h, p, sizeof(h));
	if (h.magic != PAY_MAGIC || h.size != size || h.sum != pay_sum(p, size))
		return -1;
	for (uint32_t i = sizeof(h); i < size; i++)
		if (p[i] != pay_fill(h.seq, h.src, i))
			return -1;
	*out = h;
	return 0;
}

#endif /* MPROC_CHECK_PAY_H */
