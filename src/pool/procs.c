/*
 * procs.c - the pool's workers as processes, seen from the parent: fork,
 * reaping, restarts, signals, and giving a dead worker's tasks back (see
 * pool.h for how deaths are noticed).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

int mproc__pool_spawn(struct mproc_pool *p, int i)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		mproc__pool_worker(p);
	p->w[i].pid = pid;
	p->w[i].sig = 0;
	p->w[i].want = false;
	p->alive++;
	return 0;
}

/* Called by the queue under its lock: copy only. */
static void procs_dead_fn(const mproc_msg *m, uint32_t attempts, void *arg)
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

bool mproc__pool_can_restart(const struct mproc_pool *p)
{
	return p->state <= POOL_STOPPING && p->restarts_left > 0;
}

/* Dispatches a task may have: 1 when nobody could run it again. */
static uint32_t procs_attempts_for_release(const struct mproc_pool *p)
{
	if ((p->flags & MPROC_POOL_FAIL_ON_DEATH) || p->state >= POOL_KILLING)
		return 1;
	if (p->alive == 0 && !mproc__pool_can_restart(p))
		return 1;
	return p->max_attempts;
}

static void procs_release(struct mproc_pool *p, pid_t pid)
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
	                                procs_attempts_for_release(p),
	                                procs_dead_fn, p);
	if (rc < 0)
		return;
	removed = p->ndead + p->dead_other;
	if ((uint64_t)rc > removed)
		p->c.redelivered += (uint64_t)rc - removed;
	/* Sends and lookups happen here, after the queue's lock is dropped. */
	for (i = 0; i < p->ndead; i++)
		mproc__pool_fail(p, p->dead[i].id, pid, p->dead[i].attempts);
	p->ndead = 0;
}

/* Fail every task still queued: no worker is left to run it. */
void mproc__pool_drain_tasks(struct mproc_pool *p)
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
			mproc__pool_fail(p, th.id, 0,
			          lease.attempts > 0 ? lease.attempts - 1 : 0);
		}
		mproc__queue_lease_done(p->tasks, &lease);
	}
}

static int procs_how(const struct mproc_pool *p, const struct pool_worker *w,
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
void mproc__pool_worker_ended(struct mproc_pool *p, int i, int st)
{
	struct pool_worker *w = &p->w[i];
	pid_t pid = w->pid;
	int how = procs_how(p, w, st);
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
	procs_release(p, pid);
}

/* waitpid without blocking (or blocking); returns the pid, 0, or -1. */
pid_t mproc__pool_waitpid(pid_t pid, int *st, int flags)
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
 * mproc__pool_sweep reaps dead workers, releases their tasks and forks
 * replacements. Unforced sweeps (force false) run at most every
 * POOL_SWEEP_NS so a busy caller does not pay W waitpid calls per result;
 * the coarse clock paces them for a few ns a call.
 */
void mproc__pool_sweep(struct mproc_pool *p, bool force)
{
	uint64_t now = pool_coarse_ns();
	int i, st;

	if (!force && now - p->last_sweep < POOL_SWEEP_NS)
		return;
	p->last_sweep = now;
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0 &&
		    mproc__pool_waitpid(p->w[i].pid, &st, WNOHANG) == p->w[i].pid)
			mproc__pool_worker_ended(p, i, st);
	}
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid == 0 && p->w[i].want && mproc__pool_can_restart(p) &&
		    mproc__pool_spawn(p, i) == 0) {
			p->restarts_left--;
			p->c.restarts++;
		}
	}
	if (p->alive == 0 && p->state <= POOL_STOPPING && !mproc__pool_can_restart(p))
		mproc__pool_drain_tasks(p);
}

void mproc__pool_signal_all(struct mproc_pool *p, int sig)
{
	int i;

	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0) {
			p->w[i].sig = sig;
			kill(p->w[i].pid, sig);
		}
	}
}
