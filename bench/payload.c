/*
 * payload.c - the payload every message carries: seq (8 bytes), the
 * sending role's index (4), a check word (4), then a body that depends on
 * seq and src. Every receiver verifies it.
 */
#include <string.h>

#include "bench.h"

#define K1 0x9E3779B97F4A7C15ull
#define K2 0xD6E8FEB86659FD93ull

static uint64_t payload_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* The checksum loops are most of the bench's own cost per 4 KiB message:
 * let GCC vectorize them even at -O2. */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define BENCH_VECTORIZE
#endif

/*
 * The body's words are seed + i*K2 (seed from seq and src), so a stale or
 * torn body gives a different sum; the sum is position-dependent (each
 * word is xored with i*K1 first). check mixes the sum with seq, src, size.
 */
BENCH_VECTORIZE
static void payload_body_fill(unsigned char *b, size_t n, uint64_t seed)
{
	size_t nw = n / 8, i;
	uint64_t w = seed;

	if ((uintptr_t)b % sizeof(uint64_t) == 0) {
		/* The usual case (a payload built in the role's own buffer):
		 * typed stores, which GCC vectorizes. */
		uint64_t *words = (uint64_t *)(void *)b;

		for (i = 0; i < nw; i++, w += K2)
			words[i] = w;
	} else {
		for (i = 0; i < nw; i++, w += K2)
			memcpy(b + 8 * i, &w, 8);
	}
	if (n % 8)
		memcpy(b + 8 * nw, &w, n % 8);
}

BENCH_VECTORIZE
static uint64_t payload_body_sum(const unsigned char *b, size_t n)
{
	size_t nw = n / 8, i;
	uint64_t sum = 0, pos = 0, w;

	for (i = 0; i < nw; i++) {
		memcpy(&w, b + 8 * i, 8);
		sum += w ^ pos;
		pos += K1;
	}
	if (n % 8) {
		w = 0;
		memcpy(&w, b + 8 * nw, n % 8);
		sum += w ^ pos;
	}
	return sum;
}

static uint32_t payload_check_word(uint64_t sum, uint64_t seq, uint32_t src,
                                   uint32_t size)
{
	return (uint32_t)payload_mix64(sum ^ payload_mix64(seq) ^
	                               ((uint64_t)src << 40) ^ size);
}

void payload_fill(unsigned char *p, uint32_t size, uint64_t seq,
                  uint32_t src)
{
	uint64_t sum;
	uint32_t check;

	payload_body_fill(p + PL_HDR, size - PL_HDR,
	                  payload_mix64(seq * K1 + src));
	sum = payload_body_sum(p + PL_HDR, size - PL_HDR);
	check = payload_check_word(sum, seq, src, size);

	memcpy(p, &seq, 8);
	memcpy(p + 8, &src, 4);
	memcpy(p + 12, &check, 4);
}

/* 0 when the checksum holds; fills seq and src. */
int payload_verify(const unsigned char *p, uint32_t size, uint64_t *seq,
                   uint32_t *src)
{
	uint32_t check;

	if (size < PL_HDR)
		return -1;
	memcpy(seq, p, 8);
	memcpy(src, p + 8, 4);
	memcpy(&check, p + 12, 4);
	return check == payload_check_word(payload_body_sum(p + PL_HDR,
	                                                    size - PL_HDR),
	                                   *seq, *src, size) ? 0 : -1;
}

/*
 * W9's values: a payload made by payload_fill, its first body word then
 * replaced by the writer's CLOCK_MONOTONIC stamp and the check word
 * computed again over that body, so the stamp is covered too. size is at
 * least PL_HDR + 8.
 */
void payload_set_stamp(unsigned char *p, uint32_t size, uint64_t stamp)
{
	uint64_t seq;
	uint32_t src, check;

	memcpy(&seq, p, 8);
	memcpy(&src, p + 8, 4);
	memcpy(p + PL_HDR, &stamp, 8);
	check = payload_check_word(payload_body_sum(p + PL_HDR, size - PL_HDR),
	                           seq, src, size);
	memcpy(p + 12, &check, 4);
}

uint64_t payload_stamp(const unsigned char *p)
{
	uint64_t stamp;

	memcpy(&stamp, p + PL_HDR, 8);
	return stamp;
}

/*
 * W7a's header-only payload: seq, src and a check word over them and the
 * size; the body is left as it is (written once, not per message).
 */
void payload_hdr_fill(unsigned char *p, uint32_t size, uint64_t seq,
                      uint32_t src)
{
	uint32_t check = payload_check_word(K2, seq, src, size);

	memcpy(p, &seq, 8);
	memcpy(p + 8, &src, 4);
	memcpy(p + 12, &check, 4);
}

int payload_hdr_verify(const unsigned char *p, uint32_t size, uint64_t *seq,
                       uint32_t *src)
{
	uint32_t check;

	if (size < PL_HDR)
		return -1;
	memcpy(seq, p, 8);
	memcpy(src, p + 8, 4);
	memcpy(&check, p + 12, 4);
	return check == payload_check_word(K2, *seq, *src, size) ? 0 : -1;
}
