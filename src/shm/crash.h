/*
 * crash.h - crash points: test hooks that kill the calling process at a
 * named instant of a commit, so the tests can check every repair. Off
 * unless a test sets mproc__crash_point (one load of a global on the
 * paths that have one).
 */
#ifndef MPROC_SHM_CRASH_H
#define MPROC_SHM_CRASH_H

#include <signal.h>

#include "internal.h"

enum mproc__crash_point {
	MPROC__CRASH_NONE = 0,
	MPROC__CRASH_SEND_COPY,     /* half way through copying a payload in */
	MPROC__CRASH_SEND_COMMIT,   /* journal written, state not applied */
	MPROC__CRASH_RECV_COPY,     /* half way through copying a payload out */
	MPROC__CRASH_RECV_COMMIT,   /* journal written, state not applied */
	MPROC__CRASH_LOCKED,        /* holding the lock, nothing changed */
	MPROC__CRASH_SEND_APPLIED,  /* state applied, journal still pending */
	MPROC__CRASH_RECV_APPLIED,  /* state applied, journal still pending */
};
/* The process raises SIGKILL when it reaches mproc__crash_point for the
 * mproc__crash_countdown-th time (tests only; 0 = never). */
extern int mproc__crash_point;
extern int mproc__crash_countdown;

static inline void mproc__crash(int point)
{
	if (mproc__unlikely(mproc__crash_point == point) &&
	    point != MPROC__CRASH_NONE && --mproc__crash_countdown <= 0)
		raise(SIGKILL);
}

/* The point just after the commit that point interrupts was applied. */
static inline int mproc__crash_applied(int point)
{
	return point == MPROC__CRASH_SEND_COMMIT   ? MPROC__CRASH_SEND_APPLIED
	       : point == MPROC__CRASH_RECV_COMMIT ? MPROC__CRASH_RECV_APPLIED
	                                           : MPROC__CRASH_NONE;
}

#endif /* MPROC_SHM_CRASH_H */
