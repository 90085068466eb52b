/*
 * tasks.c - the pool's task table, in the parent: the task ids still
 * without their one result, the "worker died" results waiting to be
 * handed out, and the result the parent holds. A second result for an id
 * (a task run again after its worker died having sent it) is dropped
 * here.
 *
 * The table is a hash set of the ids in flight (submitted, no result
 * taken yet), open addressing with linear probing, slot id % tcap. Ids are
 * handed out consecutively, so the ids in flight fall into distinct slots
 * and a lookup is one probe. A taken id leaves a tombstone (moving later
 * slots back would walk the whole run of ids in flight on every result);
 * a new id's home is usually the tombstone of the id tcap before it, so
 * tombstones seldom pile up, and a rebuild clears them when they do. The
 * table grows past a quarter live and shrinks below an eighth (never
 * under POOL_TASKS_MIN_SLOTS), so a pool that ran a billion tasks holds
 * what the ones in flight need, and a join's scan marks ids in place
 * (join_gen) instead of clearing a bitmap of every id ever used.
 */
#include <errno.h>
#include <string.h>

#include "pool.h"

#define TASKS_TOMB UINT64_MAX /* a taken id's slot (ids never get there) */

static size_t tasks_home(const struct mproc_pool *p, uint64_t id)
{
	return (size_t)id & (p->tcap - 1);
}

static struct pool_slot *tasks_find(const struct mproc_pool *p, uint64_t id)
{
	size_t i;

	if (id == 0)
		return NULL;
	/* Ends: at most half the slots are used, so an empty one comes. */
	for (i = tasks_home(p, id);; i = (i + 1) & (p->tcap - 1)) {
		if (p->slots[i].id == id)
			return &p->slots[i];
		if (p->slots[i].id == 0)
			return NULL;
	}
}

/* Put s (an id not in the table) in the first free or dead slot from its
 * home. */
static void tasks_put(struct mproc_pool *p, const struct pool_slot *s)
{
	size_t i = tasks_home(p, s->id);

	while (p->slots[i].id != 0 && p->slots[i].id != TASKS_TOMB)
		i = (i + 1) & (p->tcap - 1);
	if (p->slots[i].id == 0)
		p->tused++;
	p->slots[i] = *s;
}

/* Move the table to cap slots, without tombstones; false (table
 * unchanged) without memory. */
static bool tasks_resize(struct mproc_pool *p, size_t cap)
{
	struct pool_slot *old = p->slots, *n;
	size_t i, oldcap = p->tcap;

	n = calloc(cap, sizeof(*n));
	if (n == NULL)
		return false;
	p->slots = n;
	p->tcap = cap;
	p->tused = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i].id != 0 && old[i].id != TASKS_TOMB)
			tasks_put(p, &old[i]);
	free(old);
	return true;
}

int mproc__pool_tasks_init(struct mproc_pool *p)
{
	p->slots = calloc(POOL_TASKS_MIN_SLOTS, sizeof(*p->slots));
	if (p->slots == NULL)
		return -ENOMEM;
	p->tcap = POOL_TASKS_MIN_SLOTS;
	p->tcount = 0;
	p->tused = 0;
	p->join_gen = 0;
	return 0;
}

void mproc__pool_tasks_free(struct mproc_pool *p)
{
	free(p->slots);
	free(p->failed);
	p->slots = NULL;
	p->failed = NULL;
}

int mproc__pool_tasks_reserve(struct mproc_pool *p)
{
	if ((p->tused + 1) * 2 <= p->tcap)
		return 0;
	/* Half used: grow if a quarter is live, else sweep the tombstones
	 * out at the same size. */
	return tasks_resize(p, (p->tcount + 1) * 4 > p->tcap ? p->tcap * 2
	                                                    : p->tcap)
	       ? 0 : -ENOMEM;
}

void mproc__pool_tasks_add(struct mproc_pool *p, uint64_t id)
{
	struct pool_slot s = { id, 0, 0 };

	tasks_put(p, &s);
	p->tcount++;
}

bool mproc__pool_task_wanted(const struct mproc_pool *p, uint64_t id)
{
	return tasks_find(p, id) != NULL;
}

/* Remove id, leaving a tombstone; false if id is not in the table. */
static bool tasks_take(struct mproc_pool *p, uint64_t id)
{
	struct pool_slot *s = tasks_find(p, id);

	if (s == NULL)
		return false;
	s->id = TASKS_TOMB;
	s->seen = 0;
	p->tcount--;
	/* Give back what a burst took; failing to is harmless. */
	if (p->tcap > POOL_TASKS_MIN_SLOTS && p->tcount * 8 < p->tcap)
		tasks_resize(p, p->tcap / 2);
	return true;
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
 * The look waits for the lock (only the parent takes the result queue's
 * receive lock, so it is not held for long): a busy lock is no answer. If
 * the queue cannot be read at all, say "not there": the task then gets a
 * "worker died" result, and exactly one result is what matters most.
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

void mproc__pool_fail(struct mproc_pool *p, uint64_t id, pid_t worker,
                      uint32_t attempts)
{
	struct pool_failed *f;

	if (!mproc__pool_task_wanted(p, id))
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
	tasks_take(p, id);
	p->c.failed++;
}

void mproc__pool_accept(struct mproc_pool *p, uint32_t size)
{
	struct pool_rhdr rh;

	if (size < sizeof(rh))
		return;
	memcpy(&rh, p->rbuf, sizeof(rh));
	if (!tasks_take(p, rh.id))
		return; /* a second run of a redelivered task */
	p->c.finished++;
	p->held = true;
	p->held_size = size;
}

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

void mproc__pool_join_begin(struct mproc_pool *p)
{
	size_t i;

	if (++p->join_gen == 0) {
		/* Wrapped: old marks could match again. */
		for (i = 0; i < p->tcap; i++)
			p->slots[i].seen = 0;
		p->join_gen = 1;
	}
}

bool mproc__pool_join_count(struct mproc_pool *p, uint64_t id)
{
	struct pool_slot *s = tasks_find(p, id);

	if (s == NULL || s->seen == p->join_gen)
		return false;
	s->seen = p->join_gen;
	return true;
}
