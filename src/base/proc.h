/*
 * proc.h - process identity and liveness (src/base/proc.c): who the
 * caller is (its pid, cached across fork, and its start time) and whether
 * a pid still names the process a message was sent to.
 */
#ifndef MPROC_BASE_PROC_H
#define MPROC_BASE_PROC_H

#include <stdint.h>
#include <sys/types.h>

/*
 * mproc__self_pid is getpid() cached per process (refreshed after fork by
 * a pthread_atfork child handler registered once).
 */
pid_t mproc__self_pid(void);
/* Start time of this process on CLOCK_BOOTTIME, in ns (from /proc). */
uint64_t mproc__self_start_ns(void);
/*
 * mproc__pid_gone: 1 when pid does not name a live process started at or
 * before born_before_ns (CLOCK_BOOTTIME ns): it exited (zombie included)
 * or the pid was reused by a later process. 0 otherwise.
 */
int mproc__pid_gone(pid_t pid, uint64_t born_before_ns);

/*
 * mproc__proc_reserve keeps one descriptor in reserve (once per process)
 * so that liveness can still be read from /proc when the process has no
 * descriptor left. Called where liveness will be needed: directed sends
 * and the scans.
 */
void mproc__proc_reserve(void);

/*
 * A liveness cache for one scan over many messages: each distinct pid is
 * looked up once (its start time and state), then every message addressed
 * to it is judged against that. Lives on the caller's stack; starts
 * zeroed (mproc__live_init).
 */
#define MPROC__LIVE_SLOTS 64
struct mproc__live {
	struct {
		pid_t pid;      /* 0: empty */
		int gone;       /* no such process, or a zombie */
		uint64_t start; /* its start time (CLOCK_BOOTTIME ns) */
	} slot[MPROC__LIVE_SLOTS];
	unsigned lookups; /* /proc reads made (tests) */
};
void mproc__live_init(struct mproc__live *lc);
/* mproc__live_gone is mproc__pid_gone through the cache. */
int mproc__live_gone(struct mproc__live *lc, pid_t pid,
                     uint64_t born_before_ns);

#endif /* MPROC_BASE_PROC_H */
