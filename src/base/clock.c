/*
 * clock.c - CLOCK_MONOTONIC deadlines and the two clocks mproc reads.
 *
 * A deadline is made without reading the clock (mproc__deadline_set) and
 * fixed the first time a call has to wait (mproc__deadline_arm), so the
 * fast paths that never wait never read the clock.
 */
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "base/clock.h"

uint64_t mproc__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mproc__boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mproc__deadline_set(struct mproc__deadline *d, int timeout_ms)
{
	/* No clock read: the send and receive fast paths call this once
	 * per message and usually never wait. */
	d->forever = timeout_ms < 0;
	d->expired = timeout_ms == 0;
	d->armed = timeout_ms <= 0;
	d->ms = timeout_ms;
	d->at.tv_sec = 0;
	d->at.tv_nsec = 0;
}

void mproc__deadline_arm(const struct mproc__deadline *cd)
{
	struct mproc__deadline *d = (struct mproc__deadline *)cd;

	if (d->armed || d->forever || d->expired)
		return;
	clock_gettime(CLOCK_MONOTONIC, &d->at);
	d->at.tv_sec += d->ms / 1000;
	d->at.tv_nsec += (long)(d->ms % 1000) * 1000000L;
	if (d->at.tv_nsec >= 1000000000L) {
		d->at.tv_sec++;
		d->at.tv_nsec -= 1000000000L;
	}
	d->armed = true;
}

int64_t mproc__deadline_ns(const struct mproc__deadline *d)
{
	struct timespec now;
	int64_t left;

	if (d->forever)
		return INT64_MAX;
	if (d->expired)
		return 0;
	mproc__deadline_arm(d);
	clock_gettime(CLOCK_MONOTONIC, &now);
	left = (int64_t)(d->at.tv_sec - now.tv_sec) * 1000000000LL +
	       (d->at.tv_nsec - now.tv_nsec);
	return left > 0 ? left : 0;
}

int mproc__deadline_ms(const struct mproc__deadline *d)
{
	int64_t ns;

	if (d->forever)
		return -1;
	ns = mproc__deadline_ns(d);
	if (ns <= 0)
		return 0;
	ns = (ns + 999999) / 1000000;
	return ns > INT_MAX ? INT_MAX : (int)ns;
}

