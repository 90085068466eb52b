/*
 * pool.h - the worker pool's internals, shared by its files (not
 * installed):
 *
 *   parent.c   the public calls: start, submit, result, join, stop, stats
 *   procs.c    the workers as processes, seen from the parent: fork,
 *              pidfds, reaping, signals, restarts, and giving a dead
 *              worker's tasks back (now or, when the lock is busy, later)
 *   tasks.c    the task table: which ids still want a result, the results
 *              the parent holds or made ("worker died"), the duplicates
 *   worker.c   the worker's side: take a task, run it, send its result
 *
 * How it works:
 *
 * - The task queue carries DO records ({struct pool_thdr} + the caller's
 *   payload) and DIE pills. A worker takes a record with
 *   mproc__queue_recv_lease: it stays in the ring, leased to the worker's
 *   pid, until the worker has sent the result and calls
 *   mproc__queue_lease_done. If the worker dies first, the parent releases
 *   the leases of its pid, which makes the task visible again (attempts +
 *   1) or, at max_attempts, hands it back to be reported as
 *   MPROC_TASK_WORKER_DIED.
 * - A release needs the task queue's receive lock, which a live worker may
 *   hold for long (stopped by SIGSTOP inside a receive, or copying out a
 *   huge task). A release that cannot get it within the calling call's
 *   time keeps the dead pid on a to-release list, retried by every later
 *   sweep, however long it takes; no call waits past its own timeout for
 *   it. While a pid is on that list no new worker may carry it (a fork
 *   that gets it is undone), so a release never takes a live worker's
 *   task.
 * - The result queue carries FINISHED records ({struct pool_rhdr} + the
 *   result payload) from the workers to the parent.
 * - Workers are tracked by pidfd (pidfd_open, Linux >= 5.3): a pidfd
 *   names one process, never a later one with the same pid, and becomes
 *   readable when it exits, even when someone else reaps it (SIGCHLD
 *   ignored, a wait for any child). Statuses come from waitid(P_PIDFD)
 *   (>= 5.4; waitpid before that); a worker reaped elsewhere is reported
 *   with status -1, MPROC_EXIT_UNKNOWN. Signals go through
 *   pidfd_send_signal. Where pidfd_open fails (older kernels, no
 *   descriptor left) that worker is tracked by pid with waitpid(pid,
 *   WNOHANG), as before: correct unless the pid was reaped elsewhere and
 *   reused before the pool looked.
 * - Deaths are noticed without signal handlers or threads: pool calls in
 *   the parent sweep the workers (one poll() over all pidfds), and no
 *   queue wait in the parent lasts longer than POOL_SLICE_MS, so a death
 *   is seen within that while the caller waits. A call that does not wait
 *   sweeps only when POOL_SWEEP_NS have passed on the coarse clock (a vDSO
 *   read, no system call): at most one poll a call, and none for most.
 *   A dead worker is replaced at once, up to max_restarts; a fork that
 *   fails is counted (fork_failures) and tried again by later sweeps.
 * - Workers _exit(POOL_EXIT_ORPHAN) once getppid() no longer names the
 *   parent. A worker asks when a queue wait runs out (an idle worker within
 *   POOL_WORKER_WAIT_MS) and, when busy, after a task once
 *   POOL_PARENT_CHECK_NS have passed: not after every task.
 * - The pool adds no system call to the per-task path, and no precise
 *   clock read while there is work and room: the first try of a send, and
 *   of a receive while such tries keep finding messages (pool_try_first),
 *   is MPROC_NOWAIT (no deadline to arm), and a call's deadline is armed
 *   only when it has to wait.
 * - A worker that dies after sending its result but before lease_done gets
 *   its task run again, so a result can arrive twice. Task ids run from 1;
 *   the task table holds the ids still without a result (a hash set, so
 *   memory and work follow the tasks in flight, not every task ever run)
 *   and a result whose id is not there is a copy, dropped. Every submitted
 *   task gets exactly one result: from a worker, or a "worker died" record
 *   made by the parent.
 * - stop sends one DIE pill per live worker, and one more for every worker
 *   it forks while stopping (a crashed one's replacement), so each worker
 *   it may start gets one; it returns as soon as every worker is reaped.
 * - Only the process that started the pool drives it: a call from any
 *   other (a worker, a forked helper) is -EINVAL and touches nothing.
 *   Everything but the two queues is private to the parent (workers get a
 *   copy at fork and use only the buffers and fn/arg). Workers end with
 *   _exit and never return into the caller's code.
 * - No thread, no signal handler: the pool only moves when the parent calls
 *   it, from one thread at a time.
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#include "internal.h"

/* Longest single queue wait in the parent: bounds how late a death is seen. */
#define POOL_SLICE_MS 20
/* Unforced sweeps (a poll of the pidfds) run at most this often. */
#define POOL_SWEEP_NS (5 * 1000000ull)
/* Longest queue wait in a worker: an idle worker re-checks that its parent
 * lives this often. */
#define POOL_WORKER_WAIT_MS 200
/* A busy worker re-checks its parent after a task once this much time has
 * passed since the last check (not after every task: getppid is a system
 * call, and a busy worker never times out). */
#define POOL_PARENT_CHECK_NS (100 * 1000000ull)
/* Receives that go straight to a timed wait after a non-blocking try came
 * back empty (see pool_try_first). */
#define POOL_TRY_SKIP 8
#define POOL_KILL_GRACE_MS 1000 /* SIGTERM to SIGKILL in stop */
#define POOL_NAP_MS 2           /* stop's wait between sweeps without pidfds */
#define POOL_MAX_WORKERS 4096
#define POOL_DEFAULT_ATTEMPTS 3
#define POOL_RESTARTS_PER_WORKER 16
#define POOL_KNOWN_FLAGS MPROC_POOL_FAIL_ON_DEATH
#define POOL_TASKS_MIN_SLOTS 1024 /* task table: smallest size (a power of 2) */

/* Worker exit codes. */
#define POOL_EXIT_OK 0      /* took a DIE pill, or the queue was shut down */
#define POOL_EXIT_ORPHAN 70 /* the parent went away */
#define POOL_EXIT_QUEUE 71  /* the queue failed (corrupt state) */

/* Header in front of every DO payload. */
struct pool_thdr {
	uint64_t id;
};

/* Header in front of every result payload. */
struct pool_rhdr {
	uint64_t id;
	int32_t worker;
	int32_t status;
	int32_t request;
	uint32_t attempts;
};

_Static_assert(sizeof(struct pool_thdr) == 8, "task header is 8 bytes");
_Static_assert(sizeof(struct pool_rhdr) == 24, "result header is 24 bytes");

enum pool_state {
	POOL_RUNNING,  /* taking tasks */
	POOL_STOPPING, /* pills sent; crashed workers are still replaced (and
	                  each replacement gets a pill) */
	POOL_KILLING,  /* signals sent; nobody will run a task again */
	POOL_STOPPED,
};

struct pool_worker {
	pid_t pid;   /* 0: slot empty */
	int pidfd;   /* -1: tracked by pid */
	int sig;     /* the last signal stop sent it */
	bool want;   /* empty because it died: fork a replacement */
};

/* A result the parent makes for a task whose worker died. */
struct pool_failed {
	uint64_t id;
	pid_t worker;
	uint32_t attempts;
};

/* A task id still without its result, in the task table. */
struct pool_slot {
	uint64_t id;   /* 0: free; UINT64_MAX: free, but probes go on */
	uint32_t seen; /* the join (p->join_gen) that counted its result */
	uint32_t unused;
};

struct mproc_pool {
	mproc_conn *tasks;
	mproc_conn *results;
	mproc_task_fn fn;
	void *arg;
	pid_t parent;          /* the process that started it: the only one
	                          whose calls do anything */
	enum pool_state state;
	uint32_t flags;
	uint32_t max_payload;
	uint32_t max_attempts;
	long restarts_left;

	struct pool_worker *w;
	int nworkers;
	int alive;
	bool fork_failed;      /* the last fork of a worker failed */
	bool no_pidfd;         /* pidfd_open is not there (ENOSYS) */
	bool no_pidfd_wait;    /* waitid(P_PIDFD) is not there (EINVAL) */
	int pills_owed;        /* stop: DIE pills still to send */
	bool drain_pending;    /* queued tasks to fail, the lock was busy */

	struct pollfd *pfd;    /* the live workers' pidfds, for poll */
	int *pfd_slot;         /* pfd[k] is worker pfd_slot[k] */
	int npfd;
	bool pfd_stale;        /* rebuild pfd before the next poll */

	pid_t *unreleased;     /* dead workers whose tasks are still leased */
	size_t nunreleased, cap_unreleased;

	mproc_worker_exit *exits; /* every worker that ended, in order */
	size_t nexits, cap_exits;

	uint64_t next_id;   /* last id handed out */
	uint64_t collected; /* results handed to the caller */
	struct pool_slot *slots; /* task table: ids without a result, by
	                            id % tcap, linear probing */
	size_t tcap, tcount, tused; /* slots, live ids, live + tombstones */
	uint32_t join_gen;

	struct pool_failed *failed; /* FIFO of "worker died" results */
	size_t fhead, fcount, fcap;
	struct pool_failed *dead;   /* filled by procs_dead_fn */
	size_t ndead, cap_dead;
	uint64_t dead_other;        /* non-DO records removed by a release */

	/* sbuf stages a submit; tbuf takes a task (worker) or a drained task
	 * (parent); rbuf takes a result (parent) or builds one (worker). */
	unsigned char *sbuf, *tbuf, *rbuf;
	uint32_t tsize, rsize;      /* bytes in each: header + max_payload */
	bool held;                  /* rbuf holds a result not yet handed out */
	uint32_t held_size;

	uint64_t last_sweep;
	unsigned try_skip; /* pool_try_first: the worker's tasks, the parent's
	                      results (each process has its own copy) */
	mproc_pool_counts c;
};

/* pool_grow returns arr with room for need elements (doubling), or NULL
 * with arr left as it was. */
static inline void *pool_grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 8;
	void *a;

	if (need <= *cap)
		return arr;
	while (n < need)
		n *= 2;
	a = realloc(arr, n * elem);
	if (a != NULL)
		*cap = n;
	return a;
}

/*
 * pool_coarse_ns: CLOCK_MONOTONIC_COARSE, a few ns without a system call.
 * It ticks once per jiffy, which is plenty to pace sweeps and a worker's
 * check every POOL_PARENT_CHECK_NS.
 */
static inline uint64_t pool_coarse_ns(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * pool_try_first: should a receive try MPROC_NOWAIT before its timed wait?
 * A timed receive reads the clock to set its deadline even when a message
 * is waiting; a non-blocking one does not, but costs a lock round trip
 * when the queue is empty. So try while tries find messages, and after one
 * came back empty (pool_try_missed) wait at once for the next
 * POOL_TRY_SKIP receives.
 */
static inline bool pool_try_first(struct mproc_pool *p)
{
	if (p->try_skip == 0)
		return true;
	p->try_skip--;
	return false;
}

static inline void pool_try_missed(struct mproc_pool *p)
{
	p->try_skip = POOL_TRY_SKIP;
}

/*
 * pool_ms: how long a step inside a call may wait: what is left of the
 * call's deadline d, at most slice; MPROC_NOWAIT when d has passed.
 */
static inline int pool_ms(const struct mproc__deadline *d, int slice)
{
	int ms = mproc__deadline_ms(d);

	return ms < 0 || ms > slice ? slice : ms;
}

/* worker.c: the worker's loop, in the child fork() made. */
_Noreturn void mproc__pool_worker(struct mproc_pool *p);

/* tasks.c: the task table and the results the parent holds. */
int mproc__pool_tasks_init(struct mproc_pool *p);
void mproc__pool_tasks_free(struct mproc_pool *p);
/* Room for one more id (before a submit sends): 0 or -ENOMEM. */
int mproc__pool_tasks_reserve(struct mproc_pool *p);
/* id was sent: it now waits for its result (room was reserved). */
void mproc__pool_tasks_add(struct mproc_pool *p, uint64_t id);
/* Is id submitted and still without a result? */
bool mproc__pool_task_wanted(const struct mproc_pool *p, uint64_t id);
/* Record a "worker died" result for id unless it has one (or one is
 * queued). */
void mproc__pool_fail(struct mproc_pool *p, uint64_t id, pid_t worker,
                      uint32_t attempts);
/* A result was just received into rbuf: hold it unless it is a copy. */
void mproc__pool_accept(struct mproc_pool *p, uint32_t size);
/* Copy a held or made result to r: 0, -EMSGSIZE, or 1 when none. */
int mproc__pool_hand_out(struct mproc_pool *p, mproc_result *r);
/* A join's scan: begin counts nothing as seen; count says whether a
 * queued result for id is new to this join (and marks it). */
void mproc__pool_join_begin(struct mproc_pool *p);
bool mproc__pool_join_count(struct mproc_pool *p, uint64_t id);

/* procs.c: the worker processes. */
void mproc__pool_procs_init(struct mproc_pool *p);
void mproc__pool_procs_free(struct mproc_pool *p);
/* Fork worker i: 0, or a negative errno (counted in fork_failures). */
int mproc__pool_spawn(struct mproc_pool *p, int i);
bool mproc__pool_can_restart(const struct mproc_pool *p);
/*
 * mproc__pool_sweep: reap dead workers, release their tasks (waiting for
 * the lock no longer than d allows, at most POOL_SLICE_MS; the rest is
 * left for later sweeps), fork replacements, fail queued tasks nobody can
 * run. Unforced sweeps run at most every POOL_SWEEP_NS.
 */
void mproc__pool_sweep(struct mproc_pool *p, bool force,
                       const struct mproc__deadline *d);
/* Fail every task still queued: no worker will run it. */
void mproc__pool_drain_tasks(struct mproc_pool *p,
                             const struct mproc__deadline *d);
void mproc__pool_signal_all(struct mproc_pool *p, int sig);
/* Wait up to ms for a worker to exit (poll on the pidfds, or a nap). */
void mproc__pool_wait_exit(struct mproc_pool *p, int ms);
/* Wait for every live worker to end and reap it (stop's last step). */
void mproc__pool_reap_all(struct mproc_pool *p);

#endif /* MPROC_POOL_H */
