/*
 * check_rng.h - the random helpers of the suites: a small xorshift
 * generator, one stream per process (rng_*), or one per thread on a state
 * the caller keeps (rng_*_r: threads must not share one).
 *
 * A test that draws at random seeds with rng_seed_auto, which takes
 * MPROC_TEST_SEED when set, so a failure can be replayed; a child that
 * needs its own stream seeds with rng_seed_child or a seed drawn by the
 * parent before fork().
 */
#ifndef MPROC_CHECK_RNG_H
#define MPROC_CHECK_RNG_H

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check_common.h"

static inline void rng_seed_r(uint64_t *s, uint64_t seed)
{
	*s = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	if (*s == 0)
		*s = 1;
}

static inline uint32_t rng_next_r(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (uint32_t)((*s * 0x2545f4914f6cdd1dull) >> 32);
}

/* Uniform in [lo, hi]. */
static inline uint32_t rng_range_r(uint64_t *s, uint32_t lo, uint32_t hi)
{
	return lo + rng_next_r(s) % (hi - lo + 1);
}

/* The process's stream (copied by fork(): reseed a child that draws). */
static uint64_t rng_s = 1;

static inline void rng_seed(uint64_t seed)
{
	rng_seed_r(&rng_s, seed);
}

/* Seed from MPROC_TEST_SEED, or the clock and pid; returns the seed. */
static inline uint64_t rng_seed_auto(void)
{
	const char *e = getenv("MPROC_TEST_SEED");
	uint64_t seed;

	if (e != NULL)
		seed = strtoull(e, NULL, 0);
	else
		seed = (uint64_t)check_now_ms() * 1000003u ^ (uint64_t)getpid();
	rng_seed(seed);
	return seed;
}

/* A child's own stream, different in every child. */
static inline void rng_seed_child(uint32_t salt)
{
	rng_seed((uint64_t)getpid() << 20 ^ (uint64_t)check_now_ms() ^ salt);
}

static inline uint32_t rng_next(void)
{
	return rng_next_r(&rng_s);
}

/* Uniform in [lo, hi]. */
static inline uint32_t rng_range(uint32_t lo, uint32_t hi)
{
	return rng_range_r(&rng_s, lo, hi);
}

static inline uint64_t rng_next64(void)
{
	uint64_t hi = rng_next();

	return hi << 32 | rng_next();
}

#endif /* MPROC_CHECK_RNG_H */
