/*
 * clock.h - deadlines on CLOCK_MONOTONIC (src/base/clock.c).
 *
 * A deadline made from MPROC_FOREVER is infinite (forever set); from
 * MPROC_NOWAIT it has already passed (expired set). A positive timeout is
 * turned into an instant only when a call first has to wait.
 */
#ifndef MPROC_BASE_CLOCK_H
#define MPROC_BASE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mproc.h"

struct mproc__deadline {
	struct timespec at;
	bool forever; /* MPROC_FOREVER: at is unused */
	bool expired; /* MPROC_NOWAIT: passed from the start, at unused */
	bool armed;   /* at is set (see mproc__deadline_arm) */
	int ms;       /* the timeout, until armed */
};

/* mproc__timeout_ok: MPROC_FOREVER, MPROC_NOWAIT or a positive count. */
static inline bool mproc__timeout_ok(int timeout_ms)
{
	return timeout_ms >= MPROC_FOREVER;
}

/*
 * mproc__deadline_set starts a deadline without reading the clock: a
 * positive timeout is turned into an instant by mproc__deadline_arm, which
 * every function below that needs the instant calls, so the clock is read
 * when a call first has to wait, not on every message. The few
 * microseconds of work before that first wait are not counted.
 */
void mproc__deadline_set(struct mproc__deadline *d, int timeout_ms);
/* Fix the instant of a deadline made by mproc__deadline_set (the caller's
 * object is written: deadlines are never const objects). */
void mproc__deadline_arm(const struct mproc__deadline *d);
/* Milliseconds left (rounded up), 0 if passed, -1 if forever. */
int mproc__deadline_ms(const struct mproc__deadline *d);
/* Nanoseconds left, 0 if passed, INT64_MAX if forever. */
int64_t mproc__deadline_ns(const struct mproc__deadline *d);
uint64_t mproc__now_ns(void);      /* CLOCK_MONOTONIC */
uint64_t mproc__boottime_ns(void); /* CLOCK_BOOTTIME */

#endif /* MPROC_BASE_CLOCK_H */
