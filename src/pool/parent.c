/*
 * parent.c - the pool's public calls, run in the parent that started it:
 * start, submit, result, join, stop, stats. Each call moves the pool a
 * step (sweeps for dead workers, see procs.c) and waits in slices of at
 * most POOL_SLICE_MS so deaths are seen while it waits.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

/* Milliseconds for the next queue wait: at most POOL_SLICE_MS. */
static int parent_slice(const struct mproc__deadline *d, int slice)
{
	return pool_ms(d, slice);
}

/* The first wait after the deadline was set: no clock read. */
static int parent_first_slice(int timeout_ms, int slice)
{
	return timeout_ms < 0 || timeout_ms > slice ? slice : timeout_ms;
}

/* A first wait of ms ran out before d was armed: count it, so the call
 * does not overrun its timeout by a slice. */
static void parent_spent(struct mproc__deadline *d, int ms)
{
	if (d->armed || d->forever || d->expired)
		return;
	d->ms = d->ms > ms ? d->ms - ms : 0;
	if (d->ms == 0)
		d->expired = true;
}

static bool parent_expired(const struct mproc__deadline *d)
{
	return !d->forever && mproc__deadline_ns(d) == 0;
}

/* What a wait that ran out returns: -EAGAIN for a poll. */
static int parent_timed_out(int timeout_ms)
{
	return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
}

/*
 * parent_stalled: nobody can run a task now. 0: some worker lives, or one
 * may still be started; -ECHILD: none lives and none may be started
 * (restarts used up, or stopping); -EAGAIN: none lives and the last fork
 * failed (a later call tries again).
 */
static int parent_stalled(const struct mproc_pool *p)
{
	if (p->alive > 0 || p->state > POOL_STOPPING)
		return 0;
	if (!mproc__pool_can_restart(p))
		return -ECHILD;
	return p->fork_failed ? -EAGAIN : 0;
}

/* Calls from any process but the one that started the pool do nothing. */
static bool parent_ours(const struct mproc_pool *p)
{
	return mproc__self_pid() == p->parent;
}

static int parent_recv_result(struct mproc_pool *p, mproc_match_fn match,
                              void *arg, int timeout_ms)
{
	mproc_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.data = p->rbuf;
	m.capacity = p->rsize;
	rc = mproc_recv(p->results, &m, match, arg, timeout_ms);
	if (rc == 0)
		mproc__pool_accept(p, m.size);
	return rc;
}

static void parent_destroy(struct mproc_pool *p)
{
	if (p->tasks != NULL)
		mproc_close(p->tasks);
	if (p->results != NULL)
		mproc_close(p->results);
	mproc__pool_procs_free(p);
	mproc__pool_tasks_free(p);
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
	p->parent = mproc__self_pid();
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
	if (p->w != NULL)
		mproc__pool_procs_init(p);
	p->pfd = calloc((size_t)o.workers, sizeof(*p->pfd));
	p->pfd_slot = calloc((size_t)o.workers, sizeof(*p->pfd_slot));
	p->sbuf = malloc(p->tsize);
	p->tbuf = malloc(p->tsize);
	p->rbuf = malloc(p->rsize);
	p->dead = pool_grow(NULL, &p->cap_dead, (size_t)o.workers + 4,
	                    sizeof(*p->dead));
	if (p->w == NULL || p->pfd == NULL || p->pfd_slot == NULL ||
	    p->sbuf == NULL || p->tbuf == NULL || p->rbuf == NULL ||
	    p->dead == NULL || mproc__pool_tasks_init(p) < 0)
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
		rc = mproc__pool_spawn(p, i);
		if (rc < 0)
			goto fail_workers;
	}
	*pool = p;
	return 0;

fail_workers:
	mproc__pool_signal_all(p, SIGKILL);
	mproc__pool_reap_all(p);
	rc = rc == -ENOMEM ? -ENOMEM : -EAGAIN;
fail:
	parent_destroy(p);
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
	    !mproc__timeout_ok(timeout_ms) || !parent_ours(p))
		return -EINVAL;
	if (p->state != POOL_RUNNING)
		return -ESHUTDOWN;
	if (size > p->max_payload)
		return -EMSGSIZE;
	rc = mproc__pool_tasks_reserve(p);
	if (rc < 0)
		return rc;
	/* Set, not armed: the clock is read only if a step has to wait. */
	mproc__deadline_set(&d, timeout_ms);
	mproc__pool_sweep(p, false, &d);
	/* A task nobody can run is refused, not accepted and then failed. */
	rc = parent_stalled(p);
	if (rc < 0)
		return rc;
	th.id = p->next_id + 1;
	memcpy(p->sbuf, &th, sizeof(th));
	if (size > 0)
		memcpy(p->sbuf + sizeof(th), data, size);
	memset(&m, 0, sizeof(m));
	m.request = MPROC_DO;
	m.recipient = MPROC_ANYONE;
	m.data = p->sbuf;
	m.size = (uint32_t)(sizeof(th) + size);

	/* Usually there is room: a try without a deadline reads no clock. */
	rc = mproc_send_msg(p->tasks, &m, MPROC_NOWAIT);
	if (rc == -EAGAIN && timeout_ms != MPROC_NOWAIT) {
		for (;;) {
			/* Backpressure: wait in slices so dead workers are
			 * replaced (and the queue drained) while the caller
			 * waits for room. */
			rc = mproc_send_msg(p->tasks, &m,
			                    parent_slice(&d, POOL_SLICE_MS));
			if (rc != -ETIMEDOUT && rc != -EAGAIN)
				break;
			mproc__pool_sweep(p, true, &d);
			rc = parent_stalled(p);
			if (rc < 0)
				break;
			if (parent_expired(&d)) {
				rc = parent_timed_out(timeout_ms);
				break;
			}
		}
	}
	if (rc < 0)
		return rc;
	mproc__pool_tasks_add(p, th.id);
	p->next_id = th.id;
	p->c.submitted++;
	if (task_id != NULL)
		*task_id = th.id;
	return 0;
}

/* What a result or join wait returns when it gives up: -EAGAIN when no
 * worker can run anything now, else 0 (go on waiting). A pool with no
 * worker for good has failed its queued tasks instead (sweep), so only
 * a fork that fails stops the wait here. */
static int parent_wait_hopeless(const struct mproc_pool *p)
{
	return parent_stalled(p) == -EAGAIN ? -EAGAIN : 0;
}

int mproc_pool_result(mproc_pool *p, mproc_result *r, int timeout_ms)
{
	struct mproc__deadline d;
	bool first;
	int rc;

	if (p == NULL || r == NULL || (r->data == NULL && r->capacity > 0) ||
	    !mproc__timeout_ok(timeout_ms) || !parent_ours(p))
		return -EINVAL;
	mproc__deadline_set(&d, timeout_ms);
	mproc__pool_sweep(p, false, &d);
	rc = mproc__pool_hand_out(p, r);
	if (rc <= 0)
		return rc;
	if (p->collected == p->c.submitted)
		return -ENOENT;
	/* A result is often waiting: a try without a deadline reads no
	 * clock. (MPROC_NOWAIT goes straight to the loop, which tries.) */
	if (timeout_ms != MPROC_NOWAIT && pool_try_first(p)) {
		rc = parent_recv_result(p, NULL, NULL, MPROC_NOWAIT);
		if (rc == 0) {
			rc = mproc__pool_hand_out(p, r);
			if (rc <= 0)
				return rc;
			/* A second copy, dropped: wait for another. */
		} else if (rc == -EAGAIN) {
			pool_try_missed(p);
		} else {
			return rc;
		}
	}
	for (first = true;; first = false) {
		rc = mproc__pool_hand_out(p, r);
		if (rc <= 0)
			return rc;
		if (p->collected == p->c.submitted)
			return -ENOENT;
		rc = parent_recv_result(p, NULL, NULL,
		                        first ? parent_first_slice(timeout_ms,
		                                                  POOL_SLICE_MS) :
		                                parent_slice(&d, POOL_SLICE_MS));
		if (rc == 0)
			continue;
		if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
		if (first)
			parent_spent(&d, parent_first_slice(timeout_ms,
			                                    POOL_SLICE_MS));
		mproc__pool_sweep(p, true, &d);
		/* A sweep may just have failed a task: hand it out. */
		rc = mproc__pool_hand_out(p, r);
		if (rc <= 0)
			return rc;
		rc = parent_wait_hopeless(p);
		if (rc < 0)
			return rc;
		if (parent_expired(&d))
			return parent_timed_out(timeout_ms);
	}
}

struct parent_join {
	struct mproc_pool *p;
	uint64_t need;  /* results the parent has not taken yet */
	uint64_t found; /* distinct new ids seen in the queue */
};

/*
 * Counts distinct results in the queue and accepts the one completing the
 * set. Counts last for the whole join: only the parent takes results, and
 * a task whose result is queued is never failed (mproc__pool_fail looks
 * first), so nothing counted leaves the queue or gets done behind the
 * count.
 */
static int parent_join_match(const mproc_msg *m, void *arg)
{
	struct parent_join *j = arg;
	struct mproc_pool *p = j->p;
	uint64_t id;

	if (m->size < sizeof(struct pool_rhdr) || m->data == NULL)
		return 0;
	memcpy(&id, m->data, sizeof(id));
	/* Seen ids make a rescan of the same messages count nothing twice. */
	if (!mproc__pool_join_count(p, id))
		return 0;
	j->found++;
	return j->found >= j->need;
}

int mproc_pool_join(mproc_pool *p, int timeout_ms)
{
	struct mproc__deadline d;
	struct parent_join j;
	mproc_msg peek;
	int rc, slice;

	if (p == NULL || !mproc__timeout_ok(timeout_ms) || !parent_ours(p))
		return -EINVAL;
	mproc__deadline_set(&d, timeout_ms);
	mproc__pool_sweep(p, false, &d);
	if (p->tcount == 0)
		return 0;
	j.p = p;
	j.found = 0;
	mproc__pool_join_begin(p);
	for (;;) {
		if (p->tcount == 0)
			return 0;
		j.need = p->tcount;
		if (j.found >= j.need)
			return 0;
		slice = parent_slice(&d, POOL_SLICE_MS);
		if (!p->held) {
			/* rbuf is free: take the result completing the set. */
			rc = parent_recv_result(p, parent_join_match, &j,
			                        slice);
		} else {
			/* rbuf is busy: a zero-byte buffer makes the match
			 * completing the set return -EMSGSIZE at once and
			 * leaves the result queued. */
			memset(&peek, 0, sizeof(peek));
			rc = mproc_recv(p->results, &peek, parent_join_match,
			                &j, slice);
			if (rc == -EMSGSIZE)
				rc = 0;
		}
		if (rc == 0 || j.found >= j.need)
			return 0;
		if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
		mproc__pool_sweep(p, true, &d);
		if (p->tcount == 0)
			return 0;
		rc = parent_wait_hopeless(p);
		if (rc < 0)
			return rc;
		if (parent_expired(&d))
			return parent_timed_out(timeout_ms);
	}
}

/*
 * parent_stopping: send the pills owed (one per live worker, and one per
 * worker forked since) behind every queued task, and wait until every
 * worker has ended or the deadline passed.
 */
static void parent_stopping(struct mproc_pool *p,
                            const struct mproc__deadline *d)
{
	mproc_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.request = MPROC_DIE;
	m.recipient = MPROC_ANYONE;
	for (;;) {
		while (p->pills_owed > 0 && p->alive > 0) {
			/* A full queue makes this the wait (in slices). */
			rc = mproc_send_msg(p->tasks, &m,
			                    parent_slice(d, POOL_SLICE_MS));
			if (rc == -ETIMEDOUT || rc == -EAGAIN)
				break;
			if (rc < 0)
				p->pills_owed = 1; /* a broken queue: no pills,
				                      the signals below */
			p->pills_owed--;
		}
		mproc__pool_sweep(p, true, d);
		if (p->alive == 0 || parent_expired(d))
			return;
		if (p->pills_owed == 0)
			mproc__pool_wait_exit(p, parent_slice(d, POOL_SLICE_MS));
	}
}

/* Wait until every worker has been reaped, or the deadline. */
static void parent_wait_workers(struct mproc_pool *p,
                                const struct mproc__deadline *d)
{
	for (;;) {
		mproc__pool_sweep(p, true, d);
		if (p->alive == 0 || parent_expired(d))
			return;
		mproc__pool_wait_exit(p, parent_slice(d, POOL_SLICE_MS));
	}
}

int mproc_pool_stop(mproc_pool *p, int timeout_ms, mproc_worker_exit *report,
                    size_t n)
{
	struct mproc__deadline d;
	size_t i;

	if (p == NULL || !mproc__timeout_ok(timeout_ms) ||
	    (report == NULL && n > 0) || !parent_ours(p))
		return -EINVAL;
	if (p->state == POOL_STOPPED)
		return 0;
	mproc__deadline_set(&d, timeout_ms);
	mproc__pool_sweep(p, true, &d);
	p->state = POOL_STOPPING;
	p->pills_owed = p->alive;
	parent_stopping(p, &d);

	p->state = POOL_KILLING;
	p->pills_owed = 0;
	if (p->alive > 0) {
		mproc__pool_signal_all(p, SIGTERM);
		mproc__deadline_set(&d, POOL_KILL_GRACE_MS);
		parent_wait_workers(p, &d);
	}
	if (p->alive > 0) {
		mproc__pool_signal_all(p, SIGKILL);
		mproc__pool_reap_all(p);
	}
	/* Nobody is left to run what is still queued: give back what the
	 * dead held and fail it all. What a busy lock keeps from us now is
	 * done by later calls (result, join, stats). */
	p->state = POOL_STOPPED;
	p->drain_pending = true;
	mproc__pool_sweep(p, true, NULL);

	for (i = 0; i < n && i < p->nexits; i++)
		report[i] = p->exits[i];
	return p->nexits > INT_MAX ? INT_MAX : (int)p->nexits;
}

int mproc_pool_stats(mproc_pool *p, mproc_pool_counts *st)
{
	if (p == NULL || st == NULL || !parent_ours(p))
		return -EINVAL;
	mproc__pool_sweep(p, true, NULL);
	*st = p->c;
	st->pending = p->c.submitted - p->collected;
	st->workers_alive = p->alive;
	return 0;
}

int mproc_pool_worker_pids(mproc_pool *p, pid_t *pids, size_t n)
{
	size_t k = 0;
	int i;

	if (p == NULL || (pids == NULL && n > 0) || !parent_ours(p))
		return -EINVAL;
	mproc__pool_sweep(p, true, NULL);
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
	if (p == NULL || !parent_ours(p))
		return -EINVAL;
	if (p->state != POOL_STOPPED)
		mproc_pool_stop(p, 1000, NULL, 0);
	parent_destroy(p);
	return 0;
}
