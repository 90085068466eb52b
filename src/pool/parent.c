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
	int ms = mproc__deadline_ms(d);

	return ms < 0 || ms > slice ? slice : ms;
}

/* The first wait after the deadline was set: no clock read. */
static int parent_first_slice(int timeout_ms, int slice)
{
	return timeout_ms < 0 || timeout_ms > slice ? slice : timeout_ms;
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

static void parent_nap(const struct mproc__deadline *d, int ms)
{
	struct timespec ts;
	int left = parent_slice(d, ms);

	if (left <= 0)
		return;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)left * 1000000L;
	nanosleep(&ts, NULL);
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
	free(p->w);
	free(p->exits);
	mproc__pool_tasks_free(p);
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
	    mproc__pool_tasks_init(p) < 0)
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
	for (i = 0; i < o.workers; i++) {
		int st;

		if (p->w[i].pid > 0) {
			kill(p->w[i].pid, SIGKILL);
			mproc__pool_waitpid(p->w[i].pid, &st, 0);
		}
	}
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
	    !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	if (p->state != POOL_RUNNING)
		return -ESHUTDOWN;
	if (size > p->max_payload)
		return -EMSGSIZE;
	th.id = p->next_id + 1;
	rc = mproc__pool_tasks_reserve(p);
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

	mproc__pool_sweep(p, false);
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
			                    parent_slice(&d, POOL_SLICE_MS));
			if (rc != -ETIMEDOUT && rc != -EAGAIN)
				break;
			if (parent_expired(&d)) {
				rc = parent_timed_out(timeout_ms);
				break;
			}
			mproc__pool_sweep(p, true);
		}
	}
	if (rc < 0)
		return rc;
	mproc__pool_tasks_add(p, th.id);
	p->next_id = th.id;
	p->c.submitted++;
	if (task_id != NULL)
		*task_id = th.id;
	/* With no worker left to run it, it fails at once. */
	if (p->alive == 0 && !mproc__pool_can_restart(p))
		mproc__pool_drain_tasks(p);
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
	mproc__pool_sweep(p, false);
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
	/* The deadline starts at the first wait (the try above waits only
	 * for a busy lock, briefly). */
	mproc__deadline_set(&d, timeout_ms);
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
		mproc__pool_sweep(p, true);
		if (parent_expired(&d)) {
			/* A sweep may just have failed a task: hand it out. */
			rc = mproc__pool_hand_out(p, r);
			if (rc <= 0)
				return rc;
			return parent_timed_out(timeout_ms);
		}
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
 * a task whose result is queued is never failed (pool_fail looks first),
 * so nothing counted leaves the queue or gets done behind the count.
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

	if (p == NULL || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	mproc__deadline_set(&d, timeout_ms);
	mproc__pool_sweep(p, false);
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
			rc = parent_recv_result(p, parent_join_match, &j, slice);
		} else {
			/* rbuf is busy: a zero-byte buffer makes the match
			 * completing the set return -EMSGSIZE at once and
			 * leaves the result queued. */
			memset(&peek, 0, sizeof(peek));
			rc = mproc_recv(p->results, &peek, parent_join_match, &j,
			                slice);
			if (rc == -EMSGSIZE)
				rc = 0;
		}
		if (rc == 0 || j.found >= j.need)
			return 0;
		if (rc != -ETIMEDOUT && rc != -EAGAIN)
			return rc;
		mproc__pool_sweep(p, true);
		if (parent_expired(&d))
			return p->tcount == 0 ? 0 :
			       parent_timed_out(timeout_ms);
	}
}

/* Send one DIE pill per live worker, behind every queued task. */
static void parent_send_pills(struct mproc_pool *p,
                            const struct mproc__deadline *d)
{
	mproc_msg m;
	int sent = 0, want = p->alive, rc;

	memset(&m, 0, sizeof(m));
	m.request = MPROC_DIE;
	m.recipient = MPROC_ANYONE;
	while (sent < want) {
		rc = mproc_send_msg(p->tasks, &m, parent_slice(d, POOL_SLICE_MS));
		if (rc == 0) {
			sent++;
			continue;
		}
		if ((rc != -ETIMEDOUT && rc != -EAGAIN) || parent_expired(d))
			return;
		mproc__pool_sweep(p, true);
	}
}

/* Wait until every worker has been reaped, or the deadline. */
static void parent_wait_workers(struct mproc_pool *p,
                              const struct mproc__deadline *d)
{
	for (;;) {
		mproc__pool_sweep(p, true);
		if (p->alive == 0 || parent_expired(d))
			return;
		parent_nap(d, POOL_NAP_MS);
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
	mproc__pool_sweep(p, true);
	p->state = POOL_STOPPING;
	parent_send_pills(p, &d);
	parent_wait_workers(p, &d);

	p->state = POOL_KILLING;
	if (p->alive > 0) {
		mproc__pool_signal_all(p, SIGTERM);
		mproc__deadline_set(&d, POOL_KILL_GRACE_MS);
		parent_wait_workers(p, &d);
	}
	if (p->alive > 0) {
		mproc__pool_signal_all(p, SIGKILL);
		for (i = 0; i < (size_t)p->nworkers; i++) {
			if (p->w[i].pid > 0 &&
			    mproc__pool_waitpid(p->w[i].pid, &st, 0) == p->w[i].pid)
				mproc__pool_worker_ended(p, (int)i, st);
		}
	}
	/* Nobody is left to run what is still queued. */
	mproc__pool_drain_tasks(p);
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
		mproc__pool_sweep(p, false);
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
		mproc__pool_sweep(p, false);
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
	parent_destroy(p);
	return 0;
}
