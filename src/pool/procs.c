/*
 * procs.c - the pool's workers as processes, seen from the parent: fork,
 * pidfds, reaping, restarts, signals, and giving a dead worker's tasks
 * back (see pool.h for how deaths are noticed and why a release may have
 * to wait).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* ---- pidfds --------------------------------------------------------- */

static int procs_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

static int procs_signal(const struct pool_worker *w, int sig)
{
#ifdef SYS_pidfd_send_signal
	if (w->pidfd >= 0)
		return (int)syscall(SYS_pidfd_send_signal, w->pidfd, sig,
		                    NULL, 0);
#endif
	return kill(w->pid, sig);
}

/* A wait status (as waitpid gives) from waitid's siginfo. */
static int procs_status(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (si->si_status & 0xff) << 8;
	case CLD_KILLED:
		return si->si_status & 0x7f;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default:
		return -1;
	}
}

/*
 * procs_wait: reap worker w if it ended (block: wait until it does).
 * Returns 1 with *st its status, 0 when it still runs, or -1 when it ended
 * but was reaped by someone else (*st -1: no status to tell).
 */
static int procs_wait(struct mproc_pool *p, struct pool_worker *w, int *st,
                      bool block)
{
	int flags = WEXITED | (block ? 0 : WNOHANG);
	struct pollfd pf;
	siginfo_t si;
	pid_t r;

	*st = -1;
	while (w->pidfd >= 0 && !p->no_pidfd_wait) {
		memset(&si, 0, sizeof(si));
		if (waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si, flags) == 0) {
			if (si.si_pid == 0)
				return 0;
			*st = procs_status(&si);
			return 1;
		}
		if (errno == EINTR)
			continue;
		if (errno == ECHILD)
			return -1;
		if (errno == EINVAL) {
			p->no_pidfd_wait = true; /* Linux 5.3: no P_PIDFD */
		} else {
			/* Not ours any more (closed by the program?):
			 * track the pid. */
			w->pidfd = -1;
			p->pfd_stale = true;
		}
	}
	if (block && w->pidfd >= 0) {
		/* Wait on the pidfd, not the pid, which may be another's. */
		pf.fd = w->pidfd;
		pf.events = POLLIN;
		while (poll(&pf, 1, -1) < 0 && errno == EINTR)
			;
	}
	do
		r = waitpid(w->pid, st, w->pidfd >= 0 || !block ? WNOHANG : 0);
	while (r < 0 && errno == EINTR);
	if (r == w->pid)
		return 1;
	*st = -1;
	if (r == 0 && w->pidfd >= 0)
		return -1; /* the pidfd says it ended: that pid is another's */
	return r == 0 ? 0 : -1;
}

/* The pidfds of the live workers, for poll. */
static void procs_pfd_rebuild(struct mproc_pool *p)
{
	int i;

	p->npfd = 0;
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0 && p->w[i].pidfd >= 0) {
			p->pfd[p->npfd].fd = p->w[i].pidfd;
			p->pfd[p->npfd].events = POLLIN;
			p->pfd[p->npfd].revents = 0;
			p->pfd_slot[p->npfd] = i;
			p->npfd++;
		}
	}
	p->pfd_stale = false;
}

void mproc__pool_procs_init(struct mproc_pool *p)
{
	int i;

	for (i = 0; i < p->nworkers; i++)
		p->w[i].pidfd = -1;
}

void mproc__pool_procs_free(struct mproc_pool *p)
{
	int i;

	for (i = 0; p->w != NULL && i < p->nworkers; i++)
		if (p->w[i].pid > 0 && p->w[i].pidfd >= 0)
			close(p->w[i].pidfd);
	free(p->w);
	free(p->pfd);
	free(p->pfd_slot);
	free(p->unreleased);
	free(p->exits);
	free(p->dead);
}

/* ---- releases ------------------------------------------------------- */

static bool procs_unreleased_has(const struct mproc_pool *p, pid_t pid)
{
	size_t i;

	for (i = 0; i < p->nunreleased; i++)
		if (p->unreleased[i] == pid)
			return true;
	return false;
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

/*
 * procs_release gives back the tasks leased to the dead pid, waiting for
 * the lock up to what d leaves (at most a slice; d NULL: not at all).
 * Returns false when the lock stayed busy: try again later.
 */
static bool procs_release(struct mproc_pool *p, pid_t pid,
                          const struct mproc__deadline *d)
{
	struct pool_failed *f;
	uint64_t removed;
	size_t i;
	int rc;

	p->ndead = 0;
	p->dead_other = 0;
	/* Reserve outside the queue's lock what procs_dead_fn may need. */
	f = pool_grow(p->dead, &p->cap_dead, (size_t)p->nworkers + 4,
	              sizeof(*f));
	if (f != NULL)
		p->dead = f;
	rc = mproc__queue_lease_release_timed(
		p->tasks, pid, procs_attempts_for_release(p), procs_dead_fn, p,
		d != NULL ? pool_ms(d, POOL_SLICE_MS) : MPROC_NOWAIT);
	if (rc == -ETIMEDOUT || rc == -EAGAIN || rc == -EINTR)
		return false;
	if (rc < 0)
		return true; /* a broken queue: nothing left to give back */
	removed = p->ndead + p->dead_other;
	if ((uint64_t)rc > removed)
		p->c.redelivered += (uint64_t)rc - removed;
	/* Sends and lookups happen here, after the queue's lock is dropped. */
	for (i = 0; i < p->ndead; i++)
		mproc__pool_fail(p, p->dead[i].id, pid, p->dead[i].attempts);
	p->ndead = 0;
	return true;
}

/* Release what the pids on the to-release list hold, oldest first, until
 * the lock is found busy. */
static void procs_release_pending(struct mproc_pool *p,
                                  const struct mproc__deadline *d)
{
	size_t done = 0;

	while (done < p->nunreleased &&
	       procs_release(p, p->unreleased[done], d))
		done++;
	if (done > 0) {
		memmove(p->unreleased, p->unreleased + done,
		        (p->nunreleased - done) * sizeof(*p->unreleased));
		p->nunreleased -= done;
	}
}

/* ---- fork and reap -------------------------------------------------- */

int mproc__pool_spawn(struct mproc_pool *p, int i)
{
	struct pool_worker *w = &p->w[i];
	int rc, st;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		rc = -errno;
		p->fork_failed = true;
		p->c.fork_failures++;
		return rc;
	}
	if (pid == 0)
		mproc__pool_worker(p);
	p->fork_failed = false;
	w->pid = pid;
	w->pidfd = -1;
	w->sig = 0;
	w->want = false;
	if (!p->no_pidfd) {
		/* Before the child could be reaped elsewhere, the pid is its
		 * own; if it already was (ESRCH), it is tracked by pid and
		 * the next sweep finds it gone. */
		w->pidfd = procs_pidfd_open(pid);
		if (w->pidfd < 0 && errno == ENOSYS)
			p->no_pidfd = true;
	}
	if (procs_unreleased_has(p, pid)) {
		/* The pid of a dead worker whose tasks are still leased to
		 * it: a release later would take this one's. Undo; anything
		 * it leased meanwhile goes back with that release. */
		procs_signal(w, SIGKILL);
		procs_wait(p, w, &st, true);
		if (w->pidfd >= 0)
			close(w->pidfd);
		w->pid = 0;
		w->pidfd = -1;
		w->want = true;
		return -EAGAIN;
	}
	p->alive++;
	p->pfd_stale = true;
	if (p->state == POOL_STOPPING)
		p->pills_owed++; /* every worker stop may start gets a pill */
	return 0;
}

static int procs_how(const struct mproc_pool *p, const struct pool_worker *w,
                     int st, bool known)
{
	if (!known)
		return MPROC_EXIT_UNKNOWN;
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

/* Worker i ended (status st, or unknown): note how, free its slot, and
 * put its pid on the to-release list. */
static void procs_ended(struct mproc_pool *p, int i, int st, bool known)
{
	struct pool_worker *w = &p->w[i];
	int how = procs_how(p, w, st, known);
	mproc_worker_exit *e;
	pid_t *u;

	e = pool_grow(p->exits, &p->cap_exits, p->nexits + 1, sizeof(*e));
	if (e != NULL) {
		p->exits = e;
		p->exits[p->nexits].pid = w->pid;
		p->exits[p->nexits].status = known ? st : -1;
		p->exits[p->nexits].how = how;
		p->nexits++;
	}
	u = pool_grow(p->unreleased, &p->cap_unreleased, p->nunreleased + 1,
	              sizeof(*u));
	if (u != NULL) {
		p->unreleased = u;
		p->unreleased[p->nunreleased++] = w->pid;
	} else {
		/* No memory for the list: release now, with the queue's
		 * own 1 s bound, rather than never. */
		mproc__queue_lease_release(p->tasks, w->pid,
		                           procs_attempts_for_release(p),
		                           NULL, NULL);
	}
	if (w->pidfd >= 0)
		close(w->pidfd);
	/* Any death while running wants a replacement; while stopping, one
	 * that did not take its pill (a crash). */
	w->want = p->state == POOL_RUNNING ||
	          (p->state == POOL_STOPPING && how == MPROC_EXIT_CRASHED);
	w->pid = 0;
	w->pidfd = -1;
	p->alive--;
	p->pfd_stale = true;
}

/* Reap the workers that ended: one poll over the pidfds, a waitpid for
 * each worker tracked by pid. */
static void procs_reap(struct mproc_pool *p)
{
	int i, k, n, st, r;

	if (p->pfd_stale)
		procs_pfd_rebuild(p);
	if (p->npfd > 0) {
		do
			n = poll(p->pfd, (nfds_t)p->npfd, 0);
		while (n < 0 && errno == EINTR);
		for (k = 0; n > 0 && k < p->npfd; k++) {
			if (p->pfd[k].revents == 0)
				continue;
			i = p->pfd_slot[k];
			r = procs_wait(p, &p->w[i], &st, false);
			if (r != 0)
				procs_ended(p, i, st, r > 0);
		}
	}
	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0 && p->w[i].pidfd < 0) {
			r = procs_wait(p, &p->w[i], &st, false);
			if (r != 0)
				procs_ended(p, i, st, r > 0);
		}
	}
}

/* Fork replacements for the workers that died; stop at a failed fork
 * (the next sweep tries again). */
static void procs_restart(struct mproc_pool *p)
{
	int i, rc;

	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid != 0 || !p->w[i].want ||
		    !mproc__pool_can_restart(p))
			continue;
		rc = mproc__pool_spawn(p, i);
		if (rc == 0) {
			p->restarts_left--;
			p->c.restarts++;
		} else {
			break;
		}
	}
}

void mproc__pool_sweep(struct mproc_pool *p, bool force,
                       const struct mproc__deadline *d)
{
	uint64_t now = pool_coarse_ns();

	if (!force && now - p->last_sweep < POOL_SWEEP_NS)
		return;
	p->last_sweep = now;
	if (p->state != POOL_STOPPED)
		procs_reap(p);
	if (p->nunreleased > 0)
		procs_release_pending(p, d);
	if (p->state <= POOL_STOPPING) {
		procs_restart(p);
		if (p->alive == 0 && !mproc__pool_can_restart(p))
			p->drain_pending = true;
	}
	if (p->drain_pending)
		mproc__pool_drain_tasks(p, d);
}

void mproc__pool_drain_tasks(struct mproc_pool *p,
                             const struct mproc__deadline *d)
{
	struct mproc__lease lease;
	struct pool_thdr th;
	mproc_msg m;
	int rc, busy = 0;

	p->drain_pending = true;
	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = p->tbuf;
		m.capacity = p->tsize;
		rc = mproc__queue_recv_lease(p->tasks, &m, NULL, NULL,
		                             MPROC_NOWAIT, &lease);
		if (rc == -EAGAIN) {
			/* Empty, or only a busy lock: ask, waiting for the
			 * lock, whether anything is left. */
			rc = mproc__queue_peek_timed(
				p->tasks, NULL, NULL,
				d != NULL ? pool_ms(d, POOL_SLICE_MS)
				          : MPROC_NOWAIT);
			if (rc == 1 && ++busy < 50)
				continue;
			if (rc == 0)
				p->drain_pending = false;
			return; /* still busy: a later sweep goes on */
		}
		if (rc != 0) {
			p->drain_pending = false; /* shut down or broken */
			return;
		}
		if (m.request == MPROC_DO && m.size >= sizeof(th)) {
			memcpy(&th, p->tbuf, sizeof(th));
			/* This lease was ours, not a dispatch to a worker. */
			mproc__pool_fail(p, th.id, 0,
			                 lease.attempts > 0 ? lease.attempts - 1
			                                    : 0);
		}
		mproc__queue_lease_done(p->tasks, &lease);
	}
}

void mproc__pool_signal_all(struct mproc_pool *p, int sig)
{
	int i;

	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0) {
			p->w[i].sig = sig;
			procs_signal(&p->w[i], sig);
		}
	}
}

void mproc__pool_wait_exit(struct mproc_pool *p, int ms)
{
	struct timespec ts;
	int n;

	if (ms <= 0)
		return;
	if (p->pfd_stale)
		procs_pfd_rebuild(p);
	if (p->npfd == p->alive && p->npfd > 0) {
		/* Every live worker has a pidfd: wake as soon as one ends. */
		do
			n = poll(p->pfd, (nfds_t)p->npfd, ms);
		while (n < 0 && errno == EINTR);
		return;
	}
	if (ms > POOL_NAP_MS)
		ms = POOL_NAP_MS;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)ms * 1000000L;
	nanosleep(&ts, NULL);
}

void mproc__pool_reap_all(struct mproc_pool *p)
{
	int i, st, r;

	for (i = 0; i < p->nworkers; i++) {
		if (p->w[i].pid > 0) {
			r = procs_wait(p, &p->w[i], &st, true);
			procs_ended(p, i, st, r > 0);
		}
	}
}
