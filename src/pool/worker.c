/*
 * worker.c - the worker's side of the pool: take a DO task with a lease,
 * run the caller's fn, send the result, and only then finish the lease
 * (see pool.h). A worker ends with _exit, never returning into the
 * caller's code.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

static void worker_check_parent(const struct mproc_pool *p)
{
	if (getppid() != p->parent)
		_exit(POOL_EXIT_ORPHAN);
}

/* Run one DO task (in tbuf) and send its result; the lease is still held. */
static void worker_run(struct mproc_pool *p, const mproc_msg *m,
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
		worker_check_parent(p);
		rc = mproc_send_msg(p->results, &out, POOL_WORKER_WAIT_MS);
	}
}

_Noreturn void mproc__pool_worker(struct mproc_pool *p)
{
	struct mproc__lease lease;
	struct sigaction sa;
	uint64_t next_check, now;
	sigset_t set;
	mproc_msg m;
	int rc, i;

	/* stop ends stragglers with SIGTERM: a handler or mask inherited from
	 * the caller's process must not defeat it. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	/* The parent's pidfds of the other workers are not ours to hold. */
	for (i = 0; i < p->nworkers; i++)
		if (p->w[i].pidfd >= 0)
			close(p->w[i].pidfd);

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
			worker_check_parent(p);
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
			worker_run(p, &m, &lease);
		/* Only now, with the result sent, may the task leave. */
		rc = mproc__queue_lease_done(p->tasks, &lease);
		if (rc < 0 && rc != -ESHUTDOWN)
			_exit(POOL_EXIT_QUEUE);
		/* A parent that died may leave tasks queued: a busy worker
		 * notices within POOL_PARENT_CHECK_NS, plus one task. */
		now = pool_coarse_ns();
		if (now >= next_check) {
			worker_check_parent(p);
			next_check = now + POOL_PARENT_CHECK_NS;
		}
	}
}
