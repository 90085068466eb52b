/*
 * tasks.c - the pool's task table, in the parent: which task ids already
 * have their one result (taken from the queue or made by the parent), the
 * "worker died" results waiting to be handed out, and the result the
 * parent holds. A second result for an id (a task run again after its
 * worker died having sent it) is dropped here.
 */
#include <errno.h>
#include <string.h>

#include "pool.h"

static bool tasks_bit(const uint64_t *bits, uint64_t id)
{
	return (bits[id / 64] >> (id % 64)) & 1u;
}

static void tasks_set_bit(uint64_t *bits, uint64_t id)
{
	bits[id / 64] |= (uint64_t)1 << (id % 64);
}

/* Make room in the bitmaps for id, doubling so growth is amortized. */
int mproc__pool_tasks_reserve(struct mproc_pool *p, uint64_t id)
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

int mproc__pool_tasks_init(struct mproc_pool *p)
{
	return mproc__pool_tasks_reserve(p, 64 * POOL_BITMAP_MIN_WORDS - 1);
}

void mproc__pool_tasks_free(struct mproc_pool *p)
{
	free(p->done);
	free(p->seen);
	free(p->failed);
}

bool mproc__pool_task_done(const struct mproc_pool *p, uint64_t id)
{
	return id == 0 || id > p->next_id || tasks_bit(p->done, id);
}

static int tasks_match_id(const mproc_msg *m, void *arg)
{
	uint64_t id;

	if (m->size < sizeof(struct pool_rhdr) || m->data == NULL)
		return 0;
	memcpy(&id, m->data, sizeof(id));
	return id == *(const uint64_t *)arg;
}

/*
 * tasks_result_queued: a worker may have sent the result and died before
 * lease_done. Its result is in the queue then; look without taking it.
 * The look waits for the lock: a busy lock is no answer. If the queue
 * cannot be read at all, say "not there": the task then gets a "worker
 * died" result, and exactly one result is what matters most.
 */
static bool tasks_result_queued(struct mproc_pool *p, uint64_t id)
{
	int rc, tries;

	for (tries = 0; tries < 5; tries++) {
		rc = mproc__queue_peek(p->results, tasks_match_id, &id);
		if (rc >= 0)
			return rc == 1;
		if (rc != -ETIMEDOUT)
			break;
	}
	return false;
}

/* Record a "worker died" result for id unless it has one already. */
void mproc__pool_fail(struct mproc_pool *p, uint64_t id, pid_t worker,
                      uint32_t attempts)
{
	struct pool_failed *f;

	if (id == 0 || id > p->next_id || tasks_bit(p->done, id))
		return;
	if (tasks_result_queued(p, id))
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
	tasks_set_bit(p->done, id);
	p->ndone++;
	p->c.failed++;
}

/* A result just taken from the queue into rbuf: keep it unless it's a copy. */
void mproc__pool_accept(struct mproc_pool *p, uint32_t size)
{
	struct pool_rhdr rh;

	if (size < sizeof(rh))
		return;
	memcpy(&rh, p->rbuf, sizeof(rh));
	if (rh.id == 0 || rh.id > p->next_id || tasks_bit(p->done, rh.id))
		return; /* a second run of a redelivered task */
	tasks_set_bit(p->done, rh.id);
	p->ndone++;
	p->c.finished++;
	p->held = true;
	p->held_size = size;
}

/* Hand out a result the parent holds. 1: none held. */
int mproc__pool_hand_out(struct mproc_pool *p, mproc_result *r)
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

/* A join starts counting: no id is seen yet. */
void mproc__pool_join_begin(struct mproc_pool *p)
{
	memset(p->seen, 0, (size_t)(p->next_id / 64 + 1) * sizeof(*p->seen));
}

/* Join found a result for id in the queue: true if it counts (no result
 * taken for id yet, and not seen before in this join). */
bool mproc__pool_join_count(struct mproc_pool *p, uint64_t id)
{
	if (mproc__pool_task_done(p, id) || tasks_bit(p->seen, id))
		return false;
	tasks_set_bit(p->seen, id);
	return true;
}
