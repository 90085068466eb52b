/*
 * pool.c - a parent and W forked workers on two queues.
 *
 * The pool is a user of the queue transport plus its internal lease API:
 *
 * - The task queue carries DO records ({struct pool_thdr} + the caller's
 *   payload) and DIE pills. A worker takes a record with
 *   mproc__queue_recv_lease: it stays in the ring, leased to the worker's
 *   pid, until the worker has sent the result and calls
 *   mproc__queue_lease_done. If the worker dies first, the parent calls
 *   mproc__queue_lease_release for its pid, which makes the task visible
 *   again (attempts + 1) or, at max_attempts, hands it back to be reported
 *   as MPROC_TASK_WORKER_DIED.
 * - The result queue carries FINISHED records ({struct pool_rhdr} + the
 *   result payload) from the workers to the parent.
 * - Deaths are noticed without signal handlers or threads: every pool call
 *   in the parent sweeps its workers with waitpid(pid, WNOHANG), and no
 *   queue wait in the parent lasts longer than POOL_SLICE_MS, so a death is
 *   seen within that while the caller waits. A dead worker's leases are
 *   released at once (its pid cannot be reused before we reaped it) and a
 *   replacement is forked, up to max_restarts. Those sweeps are paced by
 *   the coarse clock (see pool_sweep).
 * - Workers _exit(POOL_EXIT_ORPHAN) once getppid() no longer names the
 *   parent. A worker asks when a queue wait runs out (an idle worker within
 *   POOL_WORKER_WAIT_MS) and, when busy, after a task once
 *   POOL_PARENT_CHECK_NS have passed: not after every task.
 * - The pool adds no system call to the per-task path, and no precise
 *   clock read while there is work and room: the first try of a send, and
 *   of a receive while such tries keep finding messages (pool_try_first),
 *   is MPROC_NOWAIT (no deadline to set), and a call's deadline is set only
 *   when it has to wait.
 * - A worker that dies after sending its result but before lease_done gets
 *   its task run again, so a result can arrive twice. Task ids run from 1,
 *   and a bitmap in the parent records the ids that have a result; later
 *   copies are dropped. Every submitted task gets exactly one result: from
 *   a worker, or a "worker died" record made by the parent.
 * - Everything but the two queues is private to the parent (workers get a
 *   copy at fork and use only the buffers and fn/arg). Workers end with
 *   _exit and never return into the caller's code.
 * - No thread, no signal handler: the pool only moves when the parent calls
 *   it, from one thread at a time.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Longest single queue wait in the parent: bounds how late a death is seen. */
#define POOL_SLICE_MS 20
/* Unforced waitpid sweeps run at most this often. */
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
#define POOL_NAP_MS 2           /* stop's wait between sweeps */
#define POOL_MAX_WORKERS 4096
#define POOL_DEFAULT_ATTEMPTS 3
#define POOL_RESTARTS_PER_WORKER 16
#define POOL_KNOWN_FLAGS MPROC_POOL_FAIL_ON_DEATH
#define POOL_BITMAP_MIN_WORDS 64

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
	POOL_STOPPING, /* pills sent; crashed workers are still replaced */
	POOL_KILLING,  /* signals sent; nobody will run a task again */
	POOL_STOPPED,
};

struct pool_worker {
	pid_t pid;   /* 0: slot empty */
	int sig;     /* the last signal stop sent it */
	bool want;   /* empty because it crashed: fork a replacement */
};

/* A result the parent makes for a task whose worker died. */
struct pool_failed {
	uint64_t id;
	pid_t worker;
	uint32_t attempts;
};

struct mproc_pool {
	mproc_conn *tasks;
	mproc_conn *results;
	mproc_task_fn fn;
	void *arg;
	pid_t parent;
	enum pool_state state;
	uint32_t flags;
	uint32_t max_payload;
	uint32_t max_attempts;
	long restarts_left;

	struct pool_worker *w;
	int nworkers;
	int alive;

	mproc_worker_exit *exits; /* every worker that ended, in order */
	size_t nexits, cap_exits;

	uint64_t next_id;   /* last id handed out */
	uint64_t ndone;     /* ids whose result the parent has taken */
	uint64_t collected; /* results handed to the caller */
	uint64_t *done;     /* bit per id: result taken by the parent */
	uint64_t *seen;     /* scratch bits for join's scan */
	size_t nwords;

	struct pool_failed *failed; /* FIFO of "worker died" results */
	size_t fhead, fcount, fcap;
	struct pool_failed *dead;   /* filled by pool_dead_fn */
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
static void *pool_grow(void *arr, size_t *cap, size_t need, size_t elem)
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
 * pool_try_first: should a receive try MPROC_NOWAIT before its timed wait?
 * A timed receive reads the clock to set its deadline even when a message
 * is waiting; a non-blocking one does not, but costs a lock round trip
 * when the queue is empty. So try while tries find messages, and after one
 * came back empty (pool_try_missed) wait at once for the next
 * POOL_TRY_SKIP receives.
 */
static bool pool_try_first(struct mproc_pool *p)
{
	if (p->try_skip == 0)
		return true;
	p->try_skip--;
	return false;
}

static void pool_try_missed(struct mproc_pool *p)
{
	p->try_skip = POOL_TRY_SKIP;
}

static bool pool_bit(const uint64_t *bits, uint64_t id)
{
	return (bits[id / 64] >> (id % 64)) & 1u;
}

static void pool_set_bit(uint64_t *bits, uint64_t id)
{
	bits[id / 64] |= (uint64_t)1 << (id % 64);
}

/* Make room in the bitmaps for id, doubling so growth is amortized. */
static int pool_bits_reserve(struct mproc_pool *p, uint64_t id)
{
	size_t need = (size_t)(id / 64) + 1, n;
	uint64_t *d, *s;

	if (need <= p->nwords)
		return 0;
	n = p->nwords * 2 > need ? p->nwords * 2 : need;
	d = realloc(p->done, n * sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	p->done = d;
	s = realloc(p->seen, n * sizeof(*s));
	if (s == NULL)
		return -ENOMEM; /* done grew, but nwords still holds */
	p->seen = s;
	memset(p->done + p->nwords, 0, (n - p->nwords) * sizeof(*d));
	memset(p->seen + p->nwords, 0, (n - p->nwords) * sizeof(*s));
	p->nwords = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Worker side                                                         */
/* ------------------------------------------------------------------ */

static void pool_check_parent(const struct mproc_pool *p)
{
	if (getppid() != p->parent)
		_exit(POOL_EXIT_ORPHAN);
}

/*
 * pool_coarse_ns: CLOCK_MONOTONIC_COARSE, a few ns without a system call.
 * It ticks once per jiffy, which is plenty to pace a check every
 * POOL_PARENT_CHECK_NS.
 */
static uint64_t pool_coarse_ns(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Run one DO task (in tbuf) and send its result; the lease is still held. */
static void pool_run(struct mproc_pool *p, const mproc_msg *m,
                     const struct mproc__lease *lease)
{
	struct pool_thdr th;
	struct pool_rhdr rh;
	mproc_msg task = *m, res, out;
	int status, rc;

	memcpy(&th, p->tbuf, sizeof(th));
	task.data = p->tbuf + sizeof(th);
	task.size = m->size - (uint32_t)sizeof(th);
	task.capacity = task.size;

	memset(&res, 0, sizeof(res));
	res.request = MPROC_FINISHED;
	res.sender = mproc__self_pid();
	res.data = p->rbuf + sizeof(rh);
	res.capacity = p->max_payload;
	status = p->fn(&task, &res, p->arg);
	if (res.size > p->max_payload) {
		/* fn broke its contract: send nothing past the buffer. */
		res.size = 0;
		status = -EMSGSIZE;
	}

	rh.id = th.id;
	rh.worker = (int32_t)mproc__self_pid();
	rh.status = status;
	rh.request = res.request;
	rh.attempts = lease->attempts;
	memcpy(p->rbuf, &rh, sizeof(rh));

	memset(&out, 0, sizeof(out));
	out.request = MPROC_FINISHED;
	out.recipient = MPROC_ANYONE;
	out.data = p->rbuf;
	out.size = (uint32_t)sizeof(rh) + res.size;
	/* Usually there is room: try without a deadline (no clock read),
	 * then wait in bounded slices. */
	rc = mproc_send_msg(p->results, &out, MPROC_NOWAIT);
	for (;;) {
		if (rc == 0)
			return;
		if (rc == -ESHUTDOWN)
			_exit(POOL_EXIT_OK);
		if (rc != -ETIMEDOUT && rc != -EAGAIN && rc != -EINTR)
			_exit(POOL_EXIT_QUEUE);
		/* Nobody may be left to collect results. */
		pool_check_parent(p);
		rc = mproc_send_msg(p->results, &out, POOL_WORKER_WAIT_MS);
	}
}

static _Noreturn void pool_worker(struct mproc_pool *p)
{
	struct mproc__lease lease;
	struct sigaction sa;
	uint64_t next_check, now;
	sigset_t set;
	mproc_msg m;
	int rc;

	/* stop ends stragglers with SIGTERM: a handler or mask inherited from
	 * the caller's process must not defeat it. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &set, NULL);

	next_check = pool_coarse_ns() + POOL_PARENT_CHECK_NS;
	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = p->tbuf;
		m.capacity = p->tsize;
		rc = -EAGAIN;
		if (pool_try_first(p)) {
			rc = mproc__queue_recv_lease(p->tasks, &m, NULL, NULL,
			                             MPROC_NOWAIT, &lease);
			if (rc == -EAGAIN)
				pool_try_missed(p);
		}
		/* A finite wait: a worker whose parent died must not linger. */
		if (rc == -EAGAIN)
			rc = mproc__queue_recv_lease(p->tasks, &m, NULL, NULL,
			                             POOL_WORKER_WAIT_MS,
			                             &lease);
		if (rc == -ETIMEDOUT || rc == -EAGAIN || rc == -EINTR) {
			pool_check_parent(p);
			next_check = pool_coarse_ns() + POOL_PARENT_CHECK_NS;
			continue;
		}
		if (rc == -ESHUTDOWN)
			_exit(POOL_EXIT_OK);
		if (rc < 0)
			_exit(POOL_EXIT_QUEUE);
		if (m.request == MPROC_DIE) {
			mproc__queue_lease_done(p->tasks, &lease);
			_exit(POOL_EXIT_OK);
		}
		if (m.request == MPROC_DO && m.size >= sizeof(struct pool_thdr))
			pool_run(p, &m, &lease);
		/* Only now, with the result sent, may the task leave. */
		rc = mproc__queue_lease_done(p->tasks, &lease);
		if (rc < 0 && rc != -ESHUTDOWN)
			_exit(POOL_EXIT_QUEUE);
		/* A parent that died may leave tasks queued: a busy worker
		 * notices within POOL_PARENT_CHECK_NS, plus one task. */
		now = pool_coarse_ns();
		if (now >= next_check) {
			pool_check_parent(p);
			next_check = now + POOL_PARENT_CHECK_NS;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Parent side: deaths, releases, restarts                             */
/* ------------------------------------------------------------------ */

static int pool_spawn(struct mproc_pool *p, int i)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		pool_worker(p);
	p->w[i].pid = pid;
	p->w[i].sig = 0;
	p->w[i].want = false;
	p->alive++;
	return 0;
}

/* Called by the queue under its lock: copy only. */
static void pool_dead_fn(const mproc_msg *m, uint32_t attempts, void *arg)
{
	struct mproc_pool *p = arg;
	struct pool_failed *d;
	struct pool_thdr th;

	if (m->request != MPROC_DO || m->size < sizeof(th) || m->data == NULL) {
		p->dead_other++;
		return;
	}
	memcpy(&th, m->data, sizeof(th));
	/* Room for one record per worker was reserved before the release; a
	 * worker holds one lease at a time, so this rarely grows. */
	d = pool_grow(p->dead, &p->cap_dead, p->ndead + 1, sizeof(*d));
	if (d == NULL) {
		p->dead_other++;
		return;
	}
	p->dead = d;
	p->dead[p->ndead].id = th.id;
	p->dead[p->ndead].worker = 0;
	p->dead[p->ndead].attempts = attempts;
	p->ndead++;
}

static int pool_match_id(const mproc_msg *m, void *arg)
{
	uint64_t id;

	if (m->size < sizeof(struct pool_rhdr) || m->data == NULL)
		return 0;
	memcpy(&id, m->data, sizeof(id));
	return id == *(const uint64_t *)arg;
}

/*
 * pool_result_queued: a worker may have sent the result and died before
 * lease_done. Its result is in the queue then; look without taking it.
 * The look waits for the lock: a busy lock is no answer. If the queue
 * cannot be read at all, say "not there": the task then gets a "worker
 * died" result, and exactly one result is what matters most.
 */
static bool pool_result_queued(struct mproc_pool *p, uint64_t id)
{
	int rc, tries;

	for (tries = 0; tries < 5; tries++) {
		rc = mproc__queue_peek(p->results, pool_match_id, &id);
		if (rc >= 0)
			return rc == 1;
		if (rc != -ETIMEDOUT)
			break;
	}
	return false;
}

/* Record a "worker died" result for id unless it has one already. */
static void pool_fail(struct mproc_pool *p, uint64_t id, pid_t worker,
                      uint32_t attempts)
{
	struct pool_failed *f;

	if (id == 0 || id > p->next_id || pool_bit(p->done, id))
		return;
	if (pool_result_queued(p, id))
		return;
	if (p->fhead > 0 && p->fhead + p->fcount == p->fcap) {
		memmove(p->failed, p->failed + p->fhead,
		        p->fcount * sizeof(*p->failed));
		p->fhead = 0;
	}
	f = pool_grow(p->failed, &p->fcap, p->fhead + p->fcount + 1,
	              sizeof(*f));
	if (f == NULL)
		return; /* out of memory: the task stays without a result */
	p->failed = f;
	f = &p->failed[p->fhead + p->fcount++];
	f->id = id;
	f->worker = worker;
	f->attempts = attempts;
	pool_set_bit(p->done, id);
	p->ndone++;
	p->c.failed++;
}

static bool pool_can_restart(const struct mproc_pool *p)
{
	return p->state <= POOL_STOPPING && p->restarts_left > 0;
}

/* Dispatches a task may have: 1 when nobody could run it again. */
static uint32_t pool_attempts_for_release(const struct mproc_pool *p)
{
	if ((p->flags & MPROC_POOL_FAIL_ON_DEATH) || p->state >= POOL_KILLING)
		return 1;
	if (p->alive == 0 && !pool_can_restart(p))
		return 1;
	return p->max_attempts;
}

static void pool_release(struct mproc_pool *p, pid_t pid)
{
	struct pool_failed *d;
	uint64_t removed;
	size_t i;
	int rc;

	p->ndead = 0;
	p->dead_other = 0;
	/* Reserve outside the queue's lock what pool_dead_fn may need. */
	d = pool_grow(p->dead, &p->cap_dead, (size_t)p->nworkers + 4,
	              sizeof(*d));
	if (d != NULL)
		p->dead = d;
	rc = mproc__queue_lease_release(p->tasks, pid,
	                                pool_attempts_for_release(p),
	                                pool_dead_fn, p);
	if (rc < 0)
		return;
	removed = p->ndead + p->dead_other;
	if ((uint64_t)rc > removed)
		p->c.redelivered += (uint64_t)rc - removed;
	/* Sends and lookups happen here, after the queue's lock is dropped. */
	for (i = 0; i < p->ndead; i++)
		pool_fail(p, p->dead[i].id, pid, p->dead[i].attempts);
	p->ndead = 0;
}

/* Fail every task still queued: no worker is left to run it. */
static void pool_drain_tasks(struct mproc_pool *p)
{
	struct mproc__lease lease;
	struct pool_thdr th;
	mproc_msg m;
	int rc, busy = 0;

	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = p->tbuf;
		m.capacity = p->tsize;
		rc = mproc__queue_recv_lease(p->tasks, &m, NULL, NULL,
		                             MPROC_NOWAIT, &lease);
		/* -EAGAIN may only mean a busy lock: ask again, waiting
		 * for the lock, whether anything is left. */
		if (rc == -EAGAIN && ++busy < 50 &&
		    mproc__queue_peek(p->tasks, NULL, NULL) == 1)
			continue;
		if (rc != 0)
			return;
		if (m.request == MPROC_DO && m.size >= sizeof(th)) {
			memcpy(&th, p->tbuf, sizeof(th));
			/* This lease was ours, not a dispatch to a worker. */
			pool_fail(p, th.id, 0,
			          lease.attempts > 0 ? lease.attempts - 1 : 0);
		}
		mproc__queue_lease_done(p->tasks, &lease);
	}
}

static int pool_how(const struct mproc_pool *p, const struct pool_worker *w,
                    int st)
{
	if (p->state == POOL_RUNNING)
		return MPROC_EXIT_CRASHED;
	if (WIFEXITED(st) && WEXITSTATUS(st) == POOL_EXIT_OK)
		return MPROC_EXIT_DIE;
	if (WIFSIGNALED(st) && w->sig == SIGKILL && WTERMSIG(st) == SIGKILL)
		return MPROC_EXIT_KILL;
	if (WIFSIGNALED(st) && w->sig != 0 && WTERMSIG(st) == SIGTERM)
		return MPROC_EXIT_TERM;
	return MPROC_EXIT_CRASHED;
}

/* Worker i was reaped with status st. */
static void pool_worker_ended(struct mproc_pool *p, int i, int st)
{
	struct pool_worker *w = &p->w[i];
	pid_t pid = w->pid;
	int how = pool_how(p, w, st);
	mproc_worker_exit *e;

	e = pool_grow(p->exits, &p->cap_exits, p->nexits + 1, sizeof(*e));
	if (e != NULL) {
		p->exits = e;
		p->exits[p->nexits].pid = pid;
		p->exits[p->nexits].status = st;
		p->exits[p->nexits].how = how;
		p->nexits++;
	}
	w->pid = 0;
	w->want = how == MPROC_EXIT_CRASHED && p->state <= POOL_STOPPING;
	p->alive--;
	pool_release(p, pid);
}

/* waitpid without blocking (or blocking); returns the pid, 0, or -1. */
static pid_t pool_waitpid(pid_t pid, int *st, int flags)
{
	pid_t r;

	do
		r = waitpid(pid, st, flags);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == ECHILD) {
		/* Reaped behind our back (SIGCHLD ignored, or waitpid(-1)). */
		*st = 0;
		return pid;
	}
	return r;
}

/*
 * pool_sweep reaps dead workers, releases their tasks and forks
 * replacements. Unforced sweeps (force false) run at most every
 * POOL_SWEEP_NS so a busy caller does not pay W waitpid calls per result;
 * the coarse clock paces them for a few ns a call.
 */
static void pool_sweep(struct mproc_pool *p, bool force)
{
	uint64_t now = pool_coarse_ns();
	int i, st;

	if (!force && now - p->last_sweep < POOL_SWEEP_NS)
		return;
	p->last_sweep = now;
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0 &&
		    pool_waitpid(p->w[i].pid, &st, WNOHANG) == p->w[i].pid)
			pool_worker_ended(p, i, st);
	}
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid == 0 && p->w[i].want && pool_can_restart(p) &&
		    pool_spawn(p, i) == 0) {
			p->restarts_left--;
			p->c.restarts++;
		}
	}
	if (p->alive == 0 && p->state <= POOL_STOPPING && !pool_can_restart(p))
		pool_drain_tasks(p);
}

/* Milliseconds for the next queue wait: at most POOL_SLICE_MS. */
static int pool_slice(const struct mproc__deadline *d, int slice)
{
	int ms = mproc__deadline_ms(d);

	return ms < 0 || ms > slice ? slice : ms;
}

/* The first wait after the deadline was set: no clock read. */
static int pool_first_slice(int timeout_ms, int slice)
{
	return timeout_ms < 0 || timeout_ms > slice ? slice : timeout_ms;
}

static bool pool_expired(const struct mproc__deadline *d)
{
	return !d->forever && mproc__deadline_ns(d) == 0;
}

/* What a wait that ran out returns: -EAGAIN for a poll. */
static int pool_timed_out(int timeout_ms)
{
	return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
}

static void pool_nap(const struct mproc__deadline *d, int ms)
{
	struct timespec ts;
	int left = pool_slice(d, ms);

	if (left <= 0)
		return;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)left * 1000000L;
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* Parent side: results                                                */
/* ------------------------------------------------------------------ */

/* A result just taken from the queue into rbuf: keep it unless it's a copy. */
static void pool_accept(struct mproc_pool *p, uint32_t size)
{
	struct pool_rhdr rh;

	if (size < sizeof(rh))
		return;
	memcpy(&rh, p->rbuf, sizeof(rh));
	if (rh.id == 0 || rh.id > p->next_id || pool_bit(p->done, rh.id))
		return; /* a second run of a redelivered task */
	pool_set_bit(p->done, rh.id);
	p->ndone++;
	p->c.finished++;
	p->held = true;
	p->held_size = size;
}

/* Hand out a result the parent holds. 1: none held. */
static int pool_hand_out(struct mproc_pool *p, mproc_result *r)
{
	struct pool_rhdr rh;
	struct pool_failed *f;
	uint32_t n;

	if (p->held) {
		memcpy(&rh, p->rbuf, sizeof(rh));
		n = p->held_size - (uint32_t)sizeof(rh);
		r->size = n;
		if (n > r->capacity)
			return -EMSGSIZE;
		if (n > 0)
			memcpy(r->data, p->rbuf + sizeof(rh), n);
		r->task_id = rh.id;
		r->worker = rh.worker;
		r->status = rh.status;
		r->request = rh.request;
		r->attempts = rh.attempts;
		p->held = false;
		p->collected++;
		return 0;
	}
	if (p->fcount > 0) {
		f = &p->failed[p->fhead];
		r->task_id = f->id;
		r->worker = f->worker;
		r->status = MPROC_TASK_WORKER_DIED;
		r->request = MPROC_FINISHED;
		r->attempts = f->attempts;
		r->size = 0;
		p->fhead++;
		if (--p->fcount == 0)
			p->fhead = 0;
		p->collected++;
		return 0;
	}
	return 1;
}

static int pool_recv_result(struct mproc_pool *p, mproc_match_fn match,
                            void *arg, int timeout_ms)
{
	mproc_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.data = p->rbuf;
	m.capacity = p->rsize;
	rc = mproc_recv(p->results, &m, match, arg, timeout_ms);
	if (rc == 0)
		pool_accept(p, m.size);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

static void pool_destroy(struct mproc_pool *p)
{
	if (p->tasks != NULL)
		mproc_close(p->tasks);
	if (p->results != NULL)
		mproc_close(p->results);
	free(p->w);
	free(p->exits);
	free(p->done);
	free(p->seen);
	free(p->failed);
	free(p->dead);
	free(p->sbuf);
	free(p->tbuf);
	free(p->rbuf);
	free(p);
}

int mproc_pool_start(mproc_pool **pool, mproc_task_fn fn, void *arg,
                     const mproc_pool_opts *opts)
{
	mproc_queue_opts qo;
	mproc_pool_opts o;
	struct mproc_pool *p;
	size_t cap, rec;
	long ncpu;
	int i, rc;

	if (pool == NULL || fn == NULL)
		return -EINVAL;
	memset(&o, 0, sizeof(o));
	if (opts != NULL)
		o = *opts;
	if (o.workers < 0 || o.workers > POOL_MAX_WORKERS ||
	    o.max_attempts < 0 || (o.flags & ~(uint32_t)POOL_KNOWN_FLAGS) ||
	    o.max_payload > MPROC_QUEUE_MAX_CAPACITY)
		return -EINVAL;
	if (o.workers == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (ncpu > POOL_MAX_WORKERS)
			ncpu = POOL_MAX_WORKERS;
		o.workers = ncpu < 1 ? 1 : (int)ncpu;
	}
	if (o.max_payload == 0)
		o.max_payload = MPROC_QUEUE_DEFAULT_MAX_PAYLOAD;
	if (o.max_attempts == 0)
		o.max_attempts = POOL_DEFAULT_ATTEMPTS;
	cap = o.queue_capacity;
	if (cap == 0) {
		/* The default must fit a few of the largest records. */
		cap = MPROC_QUEUE_DEFAULT_CAPACITY;
		rec = (size_t)o.max_payload + 256;
		if (cap < 4 * rec)
			cap = 4 * rec;
		if (cap > MPROC_QUEUE_MAX_CAPACITY)
			cap = MPROC_QUEUE_MAX_CAPACITY;
	}

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	p->parent = getpid();
	p->state = POOL_RUNNING;
	p->flags = o.flags;
	p->max_payload = o.max_payload;
	p->max_attempts = (uint32_t)o.max_attempts;
	p->nworkers = o.workers;
	p->restarts_left = o.max_restarts == 0 ?
	                   (long)POOL_RESTARTS_PER_WORKER * o.workers :
	                   o.max_restarts < 0 ? 0 : o.max_restarts;
	p->tsize = o.max_payload + (uint32_t)sizeof(struct pool_thdr);
	p->rsize = o.max_payload + (uint32_t)sizeof(struct pool_rhdr);

	rc = -ENOMEM;
	p->w = calloc((size_t)o.workers, sizeof(*p->w));
	p->sbuf = malloc(p->tsize);
	p->tbuf = malloc(p->tsize);
	p->rbuf = malloc(p->rsize);
	p->dead = pool_grow(NULL, &p->cap_dead, (size_t)o.workers + 4,
	                    sizeof(*p->dead));
	if (p->w == NULL || p->sbuf == NULL || p->tbuf == NULL ||
	    p->rbuf == NULL || p->dead == NULL ||
	    pool_bits_reserve(p, 64 * POOL_BITMAP_MIN_WORDS - 1) < 0)
		goto fail;

	memset(&qo, 0, sizeof(qo));
	qo.capacity = cap;
	qo.max_payload = p->tsize;
	rc = mproc_queue_open(&p->tasks, &qo);
	if (rc < 0)
		goto fail;
	qo.max_payload = p->rsize;
	rc = mproc_queue_open(&p->results, &qo);
	if (rc < 0)
		goto fail;

	for (i = 0; i < o.workers; i++) {
		rc = pool_spawn(p, i);
		if (rc < 0)
			goto fail_workers;
	}
	*pool = p;
	return 0;

fail_workers:
	for (i = 0; i < o.workers; i++) {
		int st;

		if (p->w[i].pid > 0) {
			kill(p->w[i].pid, SIGKILL);
			pool_waitpid(p->w[i].pid, &st, 0);
		}
	}
	rc = rc == -ENOMEM ? -ENOMEM : -EAGAIN;
fail:
	pool_destroy(p);
	return rc;
}

int mproc_pool_submit(mproc_pool *p, const void *data, size_t size,
                      uint64_t *task_id, int timeout_ms)
{
	struct mproc__deadline d;
	struct pool_thdr th;
	mproc_msg m;
	int rc;

	if (p == NULL || (data == NULL && size > 0) ||
	    !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	if (p->state != POOL_RUNNING)
		return -ESHUTDOWN;
	if (size > p->max_payload)
		return -EMSGSIZE;
	th.id = p->next_id + 1;
	rc = pool_bits_reserve(p, th.id);
	if (rc < 0)
		return rc;
	memcpy(p->sbuf, &th, sizeof(th));
	if (size > 0)
		memcpy(p->sbuf + sizeof(th), data, size);
	memset(&m, 0, sizeof(m));
	m.request = MPROC_DO;
	m.recipient = MPROC_ANYONE;
	m.data = p->sbuf;
	m.size = (uint32_t)(sizeof(th) + size);

	pool_sweep(p, false);
	/* Usually there is room: a try without a deadline reads no clock. */
	rc = mproc_send_msg(p->tasks, &m, MPROC_NOWAIT);
	if (rc == -EAGAIN && timeout_ms != MPROC_NOWAIT) {
		/* The deadline starts at the first wait for room (the try
		 * above waits only for a busy lock, briefly). */
		mproc__deadline_set(&d, timeout_ms);
		for (;;) {
			/* Backpressure: wait in slices so dead workers are
			 * replaced (and the queue drained) while the caller
			 * waits for room. */
			rc = mproc_send_msg(p->tasks, &m,
			                    pool_slice(&d, POOL_SLICE_MS));
			if (rc != -ETIMEDOUT && rc != -EAGAIN)
				break;
			if (pool_expired(&d)) {
				rc = pool_timed_out(timeout_ms);
				break;
			}
			pool_sweep(p, true);
		}
	}
	if (rc < 0)
		return rc;
	p->next_id = th.id;
	p->c.submitted++;
	if (task_id != NULL)
		*task_id = th.id;
	/* With no worker left to run it, it fails at once. */
	if (p->alive == 0 && !pool_can_restart(p))
		pool_drain_tasks(p);
	return 0;
}

int mproc_pool_result(mproc_pool *p, mproc_result *r, int timeout_ms)
{
	struct mproc__deadline d;
	bool first;
	int rc;

	if (p == NULL || r == NULL || (r->data == NULL && r->capacity > 0) ||
	    !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	pool_sweep(p, false);
	rc = pool_hand_out(p, r);
	if (rc <= 0)
		return rc;
	if (p->collected == p->c.submitted)
		return -ENOENT;
	/* A result is often waiting: a try without a deadline reads no
	 * clock. (MPROC_NOWAIT goes straight to the loop, which tries.) */
	if (timeout_ms != MPROC_NOWAIT && pool_try_first(p)) {
		rc = pool_recv_result(p, NULL, NULL, MPROC_NOWAIT);
		if (rc == 0) {
			rc = pool_hand_out(p, r);
			if (rc <= 0)
				return rc;
			/* A second copy, dropped: wait for another. */
		} else if (rc == -EAGAIN) {
			pool_try_missed(p);
		} else {
			return rc;
		}
	}
	/* The deadline starts at the first wait (the try above waits only
	 * for a busy lock, briefly). */
	mproc__deadline_set(&d, timeout_ms);
	for (first = true;; first = false) {
		rc = pool_hand_out(p, r);
		if (rc <= 0)
			return rc;
		if (p->collected == p->c.submitted)
			return -ENOENT;
		rc = pool_recv_result(p, NULL, NULL,
		                      first ? pool_first_slice(timeout_ms,
		                                               POOL_SLICE_MS) :
		                              pool_slice(&d, POOL_SLICE_MS));
		if (rc == 0)
			continue;
		if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
		pool_sweep(p, true);
		if (pool_expired(&d)) {
			/* A sweep may just have failed a task: hand it out. */
			rc = pool_hand_out(p, r);
			if (rc <= 0)
				return rc;
			return pool_timed_out(timeout_ms);
		}
	}
}

struct pool_join {
	struct mproc_pool *p;
	uint64_t need;  /* results the parent does not hold yet */
	uint64_t found; /* distinct new ids seen in the queue */
};

/*
 * Counts distinct results in the queue and accepts the one completing the
 * set. Counts last for the whole join: only the parent takes results, and
 * a task whose result is queued is never failed (pool_fail looks first),
 * so nothing counted leaves the queue or gets done behind the count.
 */
static int pool_join_match(const mproc_msg *m, void *arg)
{
	struct pool_join *j = arg;
	struct mproc_pool *p = j->p;
	uint64_t id;

	if (m->size < sizeof(struct pool_rhdr) || m->data == NULL)
		return 0;
	memcpy(&id, m->data, sizeof(id));
	if (id == 0 || id > p->next_id || pool_bit(p->done, id) ||
	    pool_bit(p->seen, id))
		return 0;
	/* seen makes a rescan of the same messages count nothing twice. */
	pool_set_bit(p->seen, id);
	j->found++;
	return j->found >= j->need;
}

int mproc_pool_join(mproc_pool *p, int timeout_ms)
{
	struct mproc__deadline d;
	struct pool_join j;
	mproc_msg peek;
	int rc, slice;

	if (p == NULL || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	mproc__deadline_set(&d, timeout_ms);
	pool_sweep(p, false);
	if (p->ndone >= p->c.submitted)
		return 0;
	j.p = p;
	j.found = 0;
	memset(p->seen, 0, (size_t)(p->next_id / 64 + 1) * sizeof(*p->seen));
	for (;;) {
		if (p->ndone >= p->c.submitted)
			return 0;
		j.need = p->c.submitted - p->ndone;
		if (j.found >= j.need)
			return 0;
		slice = pool_slice(&d, POOL_SLICE_MS);
		if (!p->held) {
			/* rbuf is free: take the result completing the set. */
			rc = pool_recv_result(p, pool_join_match, &j, slice);
		} else {
			/* rbuf is busy: a zero-byte buffer makes the match
			 * completing the set return -EMSGSIZE at once and
			 * leaves the result queued. */
			memset(&peek, 0, sizeof(peek));
			rc = mproc_recv(p->results, &peek, pool_join_match, &j,
			                slice);
			if (rc == -EMSGSIZE)
				rc = 0;
		}
		if (rc == 0 || j.found >= j.need)
			return 0;
		if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
		pool_sweep(p, true);
		if (pool_expired(&d))
			return p->ndone >= p->c.submitted ? 0 :
			       pool_timed_out(timeout_ms);
	}
}

/* Send one DIE pill per live worker, behind every queued task. */
static void pool_send_pills(struct mproc_pool *p,
                            const struct mproc__deadline *d)
{
	mproc_msg m;
	int sent = 0, want = p->alive, rc;

	memset(&m, 0, sizeof(m));
	m.request = MPROC_DIE;
	m.recipient = MPROC_ANYONE;
	while (sent < want) {
		rc = mproc_send_msg(p->tasks, &m, pool_slice(d, POOL_SLICE_MS));
		if (rc == 0) {
			sent++;
			continue;
		}
		if ((rc != -ETIMEDOUT && rc != -EAGAIN) || pool_expired(d))
			return;
		pool_sweep(p, true);
	}
}

/* Wait until every worker has been reaped, or the deadline. */
static void pool_wait_workers(struct mproc_pool *p,
                              const struct mproc__deadline *d)
{
	for (;;) {
		pool_sweep(p, true);
		if (p->alive == 0 || pool_expired(d))
			return;
		pool_nap(d, POOL_NAP_MS);
	}
}

static void pool_signal_all(struct mproc_pool *p, int sig)
{
	int i;

	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0) {
			p->w[i].sig = sig;
			kill(p->w[i].pid, sig);
		}
	}
}

int mproc_pool_stop(mproc_pool *p, int timeout_ms, mproc_worker_exit *report,
                    size_t n)
{
	struct mproc__deadline d;
	size_t i;
	int st;

	if (p == NULL || !mproc__timeout_ok(timeout_ms) ||
	    (report == NULL && n > 0))
		return -EINVAL;
	if (p->state == POOL_STOPPED)
		return 0;
	mproc__deadline_set(&d, timeout_ms);
	pool_sweep(p, true);
	p->state = POOL_STOPPING;
	pool_send_pills(p, &d);
	pool_wait_workers(p, &d);

	p->state = POOL_KILLING;
	if (p->alive > 0) {
		pool_signal_all(p, SIGTERM);
		mproc__deadline_set(&d, POOL_KILL_GRACE_MS);
		pool_wait_workers(p, &d);
	}
	if (p->alive > 0) {
		pool_signal_all(p, SIGKILL);
		for (i = 0; i < (size_t)p->nworkers; i++) {
			if (p->w[i].pid > 0 &&
			    pool_waitpid(p->w[i].pid, &st, 0) == p->w[i].pid)
				pool_worker_ended(p, (int)i, st);
		}
	}
	/* Nobody is left to run what is still queued. */
	pool_drain_tasks(p);
	p->state = POOL_STOPPED;

	for (i = 0; i < n && i < p->nexits; i++)
		report[i] = p->exits[i];
	return p->nexits > INT_MAX ? INT_MAX : (int)p->nexits;
}

int mproc_pool_stats(mproc_pool *p, mproc_pool_counts *st)
{
	if (p == NULL || st == NULL)
		return -EINVAL;
	if (p->state != POOL_STOPPED)
		pool_sweep(p, false);
	*st = p->c;
	st->pending = p->c.submitted - p->collected;
	st->workers_alive = p->alive;
	return 0;
}

int mproc_pool_worker_pids(mproc_pool *p, pid_t *pids, size_t n)
{
	size_t k = 0;
	int i;

	if (p == NULL || (pids == NULL && n > 0))
		return -EINVAL;
	if (p->state != POOL_STOPPED)
		pool_sweep(p, false);
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0) {
			if (k < n)
				pids[k] = p->w[i].pid;
			k++;
		}
	}
	return (int)k;
}

int mproc_pool_free(mproc_pool *p)
{
	if (p == NULL)
		return -EINVAL;
	/* In a process forked from the parent the workers are not ours to
	 * stop: only this copy of the memory goes. */
	if (p->state != POOL_STOPPED && getpid() == p->parent)
		mproc_pool_stop(p, 1000, NULL, 0);
	pool_destroy(p);
	return 0;
}
