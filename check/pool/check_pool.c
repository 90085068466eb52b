/*
 * check_pool.c - the worker pool: every submitted task gets exactly one
 * result, DIE pills and stop's escalation, crash recovery (redelivery,
 * bounded restarts, poison tasks), bad input.
 *
 * Tasks carry a struct task_hdr saying what the worker should do (echo,
 * sleep, die once, die always, hang). "Once" is remembered in a MAP_SHARED
 * array made before the pool starts, so a redelivered task succeeds.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_common.h"
#include "internal.h"  /* mproc__pid_gone, the queue's lock */
#include "pool/pool.h" /* the pool's task queue, for a test holding its lock */

enum action {
	ACT_ECHO,         /* result: idx + payload ^ 0x5a; status idx % 7 */
	ACT_SLEEP,        /* sleep arg ms, then echo */
	ACT_SPIN,         /* busy for arg us, then echo */
	ACT_KILL_ONCE,    /* SIGKILL the worker the first time */
	ACT_SEGV_ONCE,    /* segfault the first time */
	ACT_EXIT_ONCE,    /* _exit(7) in fn the first time */
	ACT_KILL_ALWAYS,  /* kill every worker that touches it */
	ACT_DIE_AFTER_SEND, /* first time: die in the result's send, after
	                       it is committed (the queue's crash hook) */
	ACT_HANG,         /* never return */
	ACT_HANG_NOTERM,  /* never return, ignoring SIGTERM */
	ACT_HANG_ONCE,    /* first time: note the worker's pid, never return */
	ACT_POOL_CALL,    /* call mproc_pool_stats on the pool named in the
	                     payload (a pointer), status: what it returned */
};

struct task_hdr {
	uint32_t idx;
	uint32_t action;
	uint32_t arg;
	uint32_t len; /* pattern bytes that follow */
};

#define MAX_TASKS 8192
#define PAYLOAD_MAX 4096

/* Shared with the workers: set once a "once" task has killed a worker;
 * after the MAX_TASKS flags, the pid of the worker hanging in
 * ACT_HANG_ONCE. */
static uint32_t *shared_once;
#define SHARED_WORDS (MAX_TASKS + 16)
#define hang_pid (shared_once[MAX_TASKS])

static void *shared_map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert(p != MAP_FAILED);
	return p;
}

static uint8_t pattern(uint32_t idx, uint32_t j)
{
	return (uint8_t)(idx * 31u + j * 7u + 1u);
}

static bool first_time(uint32_t idx)
{
	return __atomic_exchange_n(&shared_once[idx], 1, __ATOMIC_SEQ_CST) == 0;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void spin_us(uint32_t us)
{
	long long end = now_us() + us;

	while (now_us() < end)
		;
}

static int task_fn(const mproc_msg *task, mproc_msg *result, void *arg)
{
	const unsigned char *in = task->data;
	unsigned char *out = result->data;
	struct task_hdr h;
	uint32_t j;

	(void)arg;
	if (task->size < sizeof(h))
		return -1;
	memcpy(&h, in, sizeof(h));
	switch (h.action) {
	case ACT_SLEEP:
		usleep(h.arg * 1000u);
		break;
	case ACT_SPIN:
		spin_us(h.arg);
		break;
	case ACT_KILL_ONCE:
		if (first_time(h.idx))
			raise(SIGKILL);
		break;
	case ACT_SEGV_ONCE:
		if (first_time(h.idx)) {
			signal(SIGSEGV, SIG_DFL);
			raise(SIGSEGV);
		}
		break;
	case ACT_EXIT_ONCE:
		if (first_time(h.idx))
			_exit(7);
		break;
	case ACT_KILL_ALWAYS:
		raise(SIGKILL);
		break;
	case ACT_DIE_AFTER_SEND:
		/* The result gets delivered, but lease_done never runs. */
		if (first_time(h.idx)) {
			mproc__crash_point = MPROC__CRASH_SEND_COMMIT;
			mproc__crash_countdown = 1;
		}
		break;
	case ACT_HANG_ONCE:
		if (!first_time(h.idx))
			break;
		__atomic_store_n(&hang_pid, (uint32_t)getpid(),
		                 __ATOMIC_SEQ_CST);
		for (;;)
			pause();
	case ACT_POOL_CALL: {
		mproc_pool_counts c;
		mproc_pool *other;

		if (task->size < sizeof(h) + sizeof(other))
			return -2;
		memcpy(&other, in + sizeof(h), sizeof(other));
		result->size = 0;
		return mproc_pool_stats(other, &c);
	}
	case ACT_HANG_NOTERM:
		signal(SIGTERM, SIG_IGN);
		/* fallthrough */
	case ACT_HANG:
		for (;;)
			pause();
	default:
		break;
	}
	if (task->size != sizeof(h) + h.len || result->capacity < 4 + h.len)
		return -2;
	memcpy(out, &h.idx, 4);
	for (j = 0; j < h.len; j++)
		out[4 + j] = in[sizeof(h) + j] ^ 0x5a;
	result->size = 4 + h.len;
	return (int)(h.idx % 7);
}

static size_t make_task(unsigned char *buf, uint32_t idx, uint32_t action,
                        uint32_t arg, uint32_t len)
{
	struct task_hdr h = { idx, action, arg, len };
	uint32_t j;

	memcpy(buf, &h, sizeof(h));
	for (j = 0; j < len; j++)
		buf[sizeof(h) + j] = pattern(idx, j);
	return sizeof(h) + len;
}

/* What a run collected, indexed by task index. */
struct outcome {
	uint32_t n;
	uint32_t got;
	uint8_t seen[MAX_TASKS];
	int32_t status[MAX_TASKS];
	uint32_t attempts[MAX_TASKS];
	pid_t worker[MAX_TASKS];
};

/*
 * Check records a checkpoint for every ck_assert (a write to its pipe), so
 * hot loops test plainly and call ck_abort_msg only on a mismatch.
 */
#define check_that(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond))                                                  \
			ck_abort_msg(__VA_ARGS__);                            \
	} while (0)

static void check_result(const mproc_result *r, uint32_t idx, uint32_t len)
{
	const unsigned char *d = r->data;
	uint32_t j, got = UINT32_MAX;

	check_that(r->request == MPROC_FINISHED, "task %u: request %d", idx,
	           r->request);
	check_that(r->status == (int)(idx % 7), "task %u: status %d", idx,
	           r->status);
	check_that(r->size == 4 + len, "task %u: size %u, want %u", idx,
	           r->size, 4 + len);
	memcpy(&got, d, 4);
	check_that(got == idx, "task %u: result names task %u", idx, got);
	for (j = 0; j < len; j++)
		check_that(d[4 + j] == (pattern(idx, j) ^ 0x5a),
		           "task %u: payload byte %u differs", idx, j);
	check_that(r->attempts >= 1, "task %u: attempts 0", idx);
}

typedef uint32_t (*action_fn)(uint32_t idx, uint32_t *arg);

static uint32_t len_of(uint32_t idx)
{
	return idx % 97 == 0 ? 0 : (idx * 13) % 300;
}

/*
 * run_tasks submits n tasks (action chosen per index), collecting results
 * as it goes so neither queue fills for good, until every task has its one
 * result or deadline_ms passes (ten times that under valgrind). every_ms > 0
 * calls tick that often.
 */
static void run_tasks(mproc_pool *pool, struct outcome *o, uint32_t n,
                      action_fn act, int deadline_ms,
                      void (*tick)(mproc_pool *), int every_ms)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	int limit_ms = check_scale_ms(deadline_ms);
	long long last_tick = check_now_ms(), end = last_tick + limit_ms;
	uint32_t next = 0, idx, a, arg;
	mproc_result r;
	uint64_t id;
	size_t sz;
	int rc;

	ck_assert_uint_le(n, MAX_TASKS);
	memset(o, 0, sizeof(*o));
	o->n = n;
	while (o->got < n) {
		check_that(check_now_ms() < end,
		           "only %u of %u results in %d ms", o->got, n,
		           limit_ms);
		while (next < n) {
			arg = 0;
			a = act ? act(next, &arg) : ACT_ECHO;
			sz = make_task(buf, next, a, arg, len_of(next));
			rc = mproc_pool_submit(pool, buf, sz, &id,
			                       MPROC_NOWAIT);
			if (rc == -EAGAIN)
				break;
			check_that(rc == 0, "submit: %s", mproc_strerror(rc));
			/* Ids run from 1 in submission order. */
			check_that(id == (uint64_t)next + 1,
			           "id %llu for task %u",
			           (unsigned long long)id, next);
			next++;
		}
		if (tick != NULL && check_now_ms() - last_tick >= every_ms) {
			tick(pool);
			last_tick = check_now_ms();
		}
		memset(&r, 0, sizeof(r));
		r.data = rbuf;
		r.capacity = sizeof(rbuf);
		rc = mproc_pool_result(pool, &r, 20);
		if (rc == -ETIMEDOUT)
			continue;
		/* Every result of what was submitted so far is in: a submit
		 * above may have found the task queue's lock busy (-EAGAIN
		 * after 20 ms) and added nothing this time round. */
		if (rc == -ENOENT && o->got == next && next < n)
			continue;
		check_that(rc == 0, "result: %s", mproc_strerror(rc));
		check_that(r.task_id >= 1 && r.task_id <= next,
		           "result for unknown task %llu",
		           (unsigned long long)r.task_id);
		idx = (uint32_t)(r.task_id - 1);
		check_that(!o->seen[idx], "task %u got two results", idx);
		o->seen[idx] = 1;
		o->status[idx] = r.status;
		o->attempts[idx] = r.attempts;
		o->worker[idx] = r.worker;
		o->got++;
		if (r.status != MPROC_TASK_WORKER_DIED)
			check_result(&r, idx, len_of(idx));
		else
			check_that(r.size == 0, "task %u: died with a payload",
			           idx);
	}
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, MPROC_NOWAIT), -ENOENT);
}

static void assert_no_zombies(void)
{
	int st;
	pid_t r = waitpid(-1, &st, WNOHANG);

	ck_assert_msg(r == 0 || (r == -1 && errno == ECHILD),
	              "waitpid(-1) found child %d", (int)r);
}

static mproc_pool *start_pool(int workers, const mproc_pool_opts *base)
{
	mproc_pool_opts o;
	mproc_pool *pool = NULL;
	int rc;

	if (base != NULL)
		o = *base;
	else
		memset(&o, 0, sizeof(o));
	o.workers = workers;
	if (o.max_payload == 0)
		o.max_payload = PAYLOAD_MAX;
	rc = mproc_pool_start(&pool, task_fn, NULL, &o);
	ck_assert_msg(rc == 0, "start: %s", mproc_strerror(rc));
	return pool;
}

/* Stop, check every worker ended with `how` (0: don't check), free. */
static void stop_pool(mproc_pool *pool, int expect_how)
{
	mproc_worker_exit ex[256];
	int n, i;

	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 256);
	ck_assert_int_ge(n, 0);
	for (i = 0; expect_how != 0 && i < n && i < 256; i++)
		ck_assert_msg(ex[i].how == expect_how,
		              "worker %d ended %d, status 0x%x", (int)ex[i].pid,
		              ex[i].how, ex[i].status);
	ck_assert_int_eq(mproc_pool_stop(pool, 5000, ex, 256), 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}

static void setup_shared(void)
{
	shared_once = shared_map(SHARED_WORDS * sizeof(*shared_once));
}

static void teardown_shared(void)
{
	munmap(shared_once, SHARED_WORDS * sizeof(*shared_once));
	shared_once = NULL;
}

/* ------------------------------------------------------------------ */

static const int loop_workers[] = { 1, 4, 16 };
#define N_LOOP_WORKERS (sizeof(loop_workers) / sizeof(loop_workers[0]))

START_TEST(test_pool_many_tasks)
{
	static struct outcome o;
	int w = loop_workers[_i];
	mproc_pool_counts c;
	mproc_pool *pool = start_pool(w, NULL);
	uint32_t i;

	ck_assert_int_eq(mproc_pool_worker_pids(pool, NULL, 0), w);
	run_tasks(pool, &o, 4000, NULL, 20000, NULL, 0);
	for (i = 0; i < o.n; i++)
		check_that(o.attempts[i] == 1, "task %u: %u attempts", i,
		           o.attempts[i]);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.submitted, 4000);
	ck_assert_uint_eq(c.finished, 4000);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_uint_eq(c.redelivered, 0);
	ck_assert_uint_eq(c.restarts, 0);
	ck_assert_uint_eq(c.pending, 0);
	ck_assert_int_eq(c.workers_alive, w);
	ck_assert_int_eq(mproc_pool_stop(pool, 5000, NULL, 0), w);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

START_TEST(test_pool_join)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(4, NULL);
	mproc_result r;
	uint32_t i, got = 0;
	size_t sz;

	ck_assert_int_eq(mproc_pool_join(pool, MPROC_NOWAIT), 0);
	for (i = 0; i < 300; i++) {
		sz = make_task(buf, i, ACT_ECHO, 0, len_of(i));
		ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 5000),
		                 0);
	}
	ck_assert_int_eq(mproc_pool_join(pool, 10000), 0);
	/* Everything is ready: no waiting needed. */
	for (;;) {
		memset(&r, 0, sizeof(r));
		r.data = rbuf;
		r.capacity = sizeof(rbuf);
		if (mproc_pool_result(pool, &r, MPROC_NOWAIT) != 0)
			break;
		check_result(&r, (uint32_t)(r.task_id - 1),
		             len_of((uint32_t)(r.task_id - 1)));
		got++;
	}
	ck_assert_uint_eq(got, 300);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 100), -ENOENT);
	ck_assert_int_eq(mproc_pool_join(pool, MPROC_NOWAIT), 0);
	stop_pool(pool, MPROC_EXIT_DIE);
}
END_TEST

START_TEST(test_pool_max_payload_round_trip)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(2, NULL);
	uint32_t len = PAYLOAD_MAX - 16; /* task header + pattern = max */
	mproc_result r;
	size_t sz;

	sz = make_task(buf, 0, ACT_ECHO, 0, len);
	ck_assert_uint_eq(sz, PAYLOAD_MAX);
	/* The result is 4 + len = PAYLOAD_MAX - 12 bytes: it fits too. */
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	memset(&r, 0, sizeof(r));
	r.data = rbuf;
	r.capacity = 10; /* too small: the result stays */
	ck_assert_int_eq(mproc_pool_result(pool, &r, 5000), -EMSGSIZE);
	ck_assert_uint_eq(r.size, 4 + len);
	r.capacity = sizeof(rbuf);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 5000), 0);
	ck_assert_uint_eq(r.task_id, 1);
	{
		uint32_t j, idx;

		memcpy(&idx, rbuf, 4);
		ck_assert_uint_eq(idx, 0);
		for (j = 0; j < len; j++)
			ck_assert_uint_eq(rbuf[4 + j], pattern(0, j) ^ 0x5a);
	}
	stop_pool(pool, MPROC_EXIT_DIE);
}
END_TEST

/* ------------------------------------------------------------------ */

START_TEST(test_pool_stop_idle)
{
	mproc_worker_exit ex[8];
	pid_t pids[8];
	mproc_pool *pool = start_pool(4, NULL);
	int n, i, j;

	ck_assert_int_eq(mproc_pool_worker_pids(pool, pids, 8), 4);
	n = mproc_pool_stop(pool, check_scale_ms(2000), ex, 8);
	ck_assert_int_eq(n, 4);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(ex[i].how, MPROC_EXIT_DIE);
		ck_assert(WIFEXITED(ex[i].status));
		ck_assert_int_eq(WEXITSTATUS(ex[i].status), 0);
		for (j = 0; j < 4 && pids[j] != ex[i].pid; j++)
			;
		ck_assert_int_lt(j, 4);
	}
	ck_assert_int_eq(mproc_pool_worker_pids(pool, pids, 8), 0);
	assert_no_zombies();
	/* Stop twice: nothing the second time. */
	ck_assert_int_eq(mproc_pool_stop(pool, 2000, ex, 8), 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

static uint32_t act_sleep20(uint32_t idx, uint32_t *arg)
{
	(void)idx;
	*arg = 20;
	return ACT_SLEEP;
}

START_TEST(test_pool_stop_busy)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_worker_exit ex[8];
	mproc_pool_counts c;
	mproc_pool *pool = start_pool(4, NULL);
	mproc_result r;
	uint32_t i, a, arg, got = 0;
	size_t sz;
	int n;

	for (i = 0; i < 24; i++) {
		a = act_sleep20(i, &arg);
		sz = make_task(buf, i, a, arg, len_of(i));
		ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000),
		                 0);
	}
	/* Workers are busy: the pills queue behind the tasks. */
	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 8);
	ck_assert_int_eq(n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(ex[i].how, MPROC_EXIT_DIE);
	assert_no_zombies();
	/* Every task ran, and its result is still collectable. */
	for (;;) {
		memset(&r, 0, sizeof(r));
		r.data = rbuf;
		r.capacity = sizeof(rbuf);
		if (mproc_pool_result(pool, &r, 1000) != 0)
			break;
		check_result(&r, (uint32_t)(r.task_id - 1),
		             len_of((uint32_t)(r.task_id - 1)));
		got++;
	}
	ck_assert_uint_eq(got, 24);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.finished, 24);
	ck_assert_int_eq(c.workers_alive, 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
}
END_TEST

/* A stuck task: stop's timeout sends SIGTERM (how TERM), or SIGKILL a
 * second later if the task ignores SIGTERM (how KILL). */
static void stop_stuck(uint32_t action, int expect_how)
{
	static unsigned char buf[PAYLOAD_MAX];
	mproc_worker_exit ex[8];
	mproc_pool *pool = start_pool(3, NULL);
	mproc_result r;
	long long t0;
	size_t sz;
	int n, i, stuck = 0, die = 0;

	sz = make_task(buf, 0, action, 0, 0);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	usleep(100 * 1000); /* let a worker take it */
	t0 = check_now_ms();
	n = mproc_pool_stop(pool, check_scale_ms(200), ex, 8);
	ck_assert_int_eq(n, 3);
	ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(3000));
	for (i = 0; i < n; i++) {
		if (ex[i].how == expect_how)
			stuck++;
		else if (ex[i].how == MPROC_EXIT_DIE)
			die++;
	}
	ck_assert_int_eq(stuck, 1);
	ck_assert_int_eq(die, 2);
	assert_no_zombies();
	/* Its task is reported as died with its worker. */
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, 1000), 0);
	ck_assert_uint_eq(r.task_id, 1);
	ck_assert_int_eq(r.status, MPROC_TASK_WORKER_DIED);
	ck_assert_uint_eq(r.attempts, 1);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 100), -ENOENT);
	ck_assert_int_eq(mproc_pool_stop(pool, 100, NULL, 0), 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
}

START_TEST(test_pool_stop_stuck_term)
{
	stop_stuck(ACT_HANG, MPROC_EXIT_TERM);
}
END_TEST

START_TEST(test_pool_stop_stuck_kill)
{
	stop_stuck(ACT_HANG_NOTERM, MPROC_EXIT_KILL);
}
END_TEST

START_TEST(test_pool_free_running)
{
	static unsigned char buf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(2, NULL);
	size_t sz = make_task(buf, 0, ACT_ECHO, 0, 10);

	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	/* free stops a running pool and reaps its workers. */
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

/* The pool's parent dies without stopping: its workers leave too. */
START_TEST(test_pool_parent_dies)
{
	pid_t pids[3], child;
	int fds[2], i;
	long long end;

	ck_assert_int_eq(pipe(fds), 0);
	child = check_fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		mproc_pool *pool = NULL;
		mproc_pool_opts o;

		close(fds[0]);
		memset(&o, 0, sizeof(o));
		o.workers = 3;
		child_assert(mproc_pool_start(&pool, task_fn, NULL, &o) == 0);
		child_assert(mproc_pool_worker_pids(pool, pids, 3) == 3);
		child_assert(write(fds[1], pids, sizeof(pids)) ==
		             (ssize_t)sizeof(pids));
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], pids, sizeof(pids)),
	                 (ssize_t)sizeof(pids));
	close(fds[0]);
	check_reap_ok(child, 5000);
	end = check_now_ms() + check_scale_ms(3000);
	for (i = 0; i < 3; i++) {
		while (!mproc__pid_gone(pids[i], 0) && check_now_ms() < end)
			usleep(10 * 1000);
		ck_assert_msg(mproc__pid_gone(pids[i], 0),
		              "orphaned worker %d still runs", (int)pids[i]);
	}
}
END_TEST

/* ------------------------------------------------------------------ */

static uint32_t act_every_50(uint32_t idx, uint32_t *arg, uint32_t action)
{
	(void)arg;
	return idx % 50 == 7 ? action : ACT_ECHO;
}

static uint32_t act_kill_once(uint32_t idx, uint32_t *arg)
{
	return act_every_50(idx, arg, ACT_KILL_ONCE);
}

static uint32_t act_segv_once(uint32_t idx, uint32_t *arg)
{
	return act_every_50(idx, arg, ACT_SEGV_ONCE);
}

static uint32_t act_exit_once(uint32_t idx, uint32_t *arg)
{
	return act_every_50(idx, arg, ACT_EXIT_ONCE);
}

static const action_fn crash_acts[] = { act_kill_once, act_segv_once,
	                                act_exit_once };

/* Workers die on every 50th task, once each: all results still come,
 * the killers were run twice, and each death cost one restart. */
START_TEST(test_pool_worker_crashes)
{
	static struct outcome o;
	mproc_worker_exit ex[64];
	mproc_pool_counts c;
	mproc_pool *pool = start_pool(4, NULL);
	uint32_t i, killers = 0;
	int n, crashed = 0;

	run_tasks(pool, &o, 1000, crash_acts[_i], 20000, NULL, 0);
	for (i = 0; i < o.n; i++) {
		check_that(o.status[i] == (int)(i % 7), "task %u: status %d", i,
		           o.status[i]);
		/* The killers ran twice, the others once. */
		check_that(o.attempts[i] == (i % 50 == 7 ? 2u : 1u),
		           "task %u: %u attempts", i, o.attempts[i]);
		killers += i % 50 == 7;
	}
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.finished, 1000);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_uint_eq(c.redelivered, killers);
	ck_assert_uint_eq(c.restarts, killers);
	ck_assert_int_eq(c.workers_alive, 4);
	n = mproc_pool_stop(pool, 5000, ex, 64);
	ck_assert_int_eq(n, (int)(4 + killers));
	for (i = 0; i < (uint32_t)n; i++)
		crashed += ex[i].how == MPROC_EXIT_CRASHED;
	ck_assert_int_eq(crashed, (int)killers);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

static int kills;

static void kill_random_worker(mproc_pool *pool)
{
	pid_t pids[16];
	int n = mproc_pool_worker_pids(pool, pids, 16);

	if (n > 0 && kill(pids[rand() % (n < 16 ? n : 16)], SIGKILL) == 0)
		kills++;
}

static uint32_t act_spin(uint32_t idx, uint32_t *arg)
{
	(void)idx;
	*arg = 300;
	return ACT_SPIN;
}

/* Workers SIGKILLed from outside at random: still one result per task. */
START_TEST(test_pool_random_kills)
{
	static struct outcome o;
	mproc_pool_opts opts;
	mproc_pool_counts c;
	mproc_pool *pool;
	uint32_t i, died = 0;

	memset(&opts, 0, sizeof(opts));
	opts.max_restarts = 1000;
	pool = start_pool(4, &opts);
	kills = 0;
	srand((unsigned)getpid());
	run_tasks(pool, &o, 2000, act_spin, 25000, kill_random_worker, 10);
	for (i = 0; i < o.n; i++) {
		if (o.status[i] == MPROC_TASK_WORKER_DIED)
			died++;
		else
			check_that(o.status[i] == (int)(i % 7),
			           "task %u: status %d", i, o.status[i]);
	}
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.finished + c.failed, 2000);
	ck_assert_uint_eq(c.failed, died);
	ck_assert_uint_eq(c.pending, 0);
	ck_assert_int_gt(kills, 0);
	ck_assert_uint_ge(c.restarts, 1);
	ck_assert_uint_le(c.restarts, (uint64_t)kills);
	if (kills >= 10)
		ck_assert_uint_ge(c.redelivered, 1);
	stop_pool(pool, 0);
}
END_TEST

static uint32_t act_poison_13(uint32_t idx, uint32_t *arg)
{
	(void)arg;
	return idx == 13 ? ACT_KILL_ALWAYS : ACT_ECHO;
}

/* A task that kills every worker it touches is failed after max_attempts
 * dispatches instead of looping for ever. */
START_TEST(test_pool_poison_task)
{
	static struct outcome o;
	mproc_pool_counts c;
	mproc_pool *pool = start_pool(2, NULL);
	uint32_t i;

	run_tasks(pool, &o, 200, act_poison_13, 20000, NULL, 0);
	for (i = 0; i < o.n; i++) {
		if (i == 13) {
			ck_assert_int_eq(o.status[i], MPROC_TASK_WORKER_DIED);
			ck_assert_uint_eq(o.attempts[i], 3);
			ck_assert_int_gt(o.worker[i], 0);
		} else {
			check_that(o.status[i] == (int)(i % 7),
			           "task %u: status %d", i, o.status[i]);
		}
	}
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.finished, 199);
	ck_assert_uint_eq(c.failed, 1);
	ck_assert_uint_eq(c.redelivered, 2);
	ck_assert_uint_eq(c.restarts, 3);
	ck_assert_int_eq(c.workers_alive, 2);
	stop_pool(pool, 0);
}
END_TEST

static uint32_t act_kill_once_13(uint32_t idx, uint32_t *arg)
{
	(void)arg;
	return idx == 13 ? ACT_KILL_ONCE : ACT_ECHO;
}

/* MPROC_POOL_FAIL_ON_DEATH: a task whose worker dies is reported, never
 * run again. */
START_TEST(test_pool_fail_on_death)
{
	static struct outcome o;
	mproc_pool_opts opts;
	mproc_pool_counts c;
	mproc_pool *pool;
	uint32_t i;

	memset(&opts, 0, sizeof(opts));
	opts.flags = MPROC_POOL_FAIL_ON_DEATH;
	pool = start_pool(3, &opts);
	run_tasks(pool, &o, 300, act_kill_once_13, 20000, NULL, 0);
	for (i = 0; i < o.n; i++) {
		if (i == 13) {
			ck_assert_int_eq(o.status[i], MPROC_TASK_WORKER_DIED);
			ck_assert_uint_eq(o.attempts[i], 1);
		} else {
			check_that(o.status[i] == (int)(i % 7) &&
			           o.attempts[i] == 1,
			           "task %u: status %d, %u attempts", i,
			           o.status[i], o.attempts[i]);
		}
	}
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.failed, 1);
	ck_assert_uint_eq(c.redelivered, 0);
	ck_assert_uint_eq(c.restarts, 1);
	stop_pool(pool, 0);
}
END_TEST

static uint32_t act_die_after_send(uint32_t idx, uint32_t *arg)
{
	(void)arg;
	return idx % 10 == 3 ? ACT_DIE_AFTER_SEND : ACT_ECHO;
}

/*
 * A worker that dies after its result is in the queue but before it
 * finished the task: the task is run again (or, with FAIL_ON_DEATH, found
 * to have its result already), and the caller still sees exactly one
 * result per task, the real one.
 */
START_TEST(test_pool_died_after_result)
{
	static struct outcome o;
	mproc_worker_exit ex[64];
	mproc_pool_opts opts;
	mproc_pool_counts c;
	mproc_pool *pool;
	uint32_t i;
	int n, crashed = 0;

	memset(&opts, 0, sizeof(opts));
	opts.flags = _i ? MPROC_POOL_FAIL_ON_DEATH : 0;
	pool = start_pool(3, &opts);
	run_tasks(pool, &o, 200, act_die_after_send, 20000, NULL, 0);
	for (i = 0; i < o.n; i++)
		check_that(o.status[i] == (int)(i % 7) && o.attempts[i] == 1,
		           "task %u: status %d, %u attempts", i, o.status[i],
		           o.attempts[i]);
	/* Every result may be in before the deaths are noticed: stop first,
	 * it reaps (and so counts) everything. */
	n = mproc_pool_stop(pool, 5000, ex, 64);
	for (i = 0; i < (uint32_t)n && i < 64; i++)
		crashed += ex[i].how == MPROC_EXIT_CRASHED;
	ck_assert_int_eq(crashed, 20);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.finished, 200);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_uint_eq(c.redelivered, _i ? 0 : 20);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

static uint32_t act_kill_always(uint32_t idx, uint32_t *arg)
{
	(void)idx;
	(void)arg;
	return ACT_KILL_ALWAYS;
}

/* Restarts are bounded: once they run out and no worker is left, every
 * task still queued is failed rather than waiting for ever. */
START_TEST(test_pool_restarts_bounded)
{
	static struct outcome o;
	static unsigned char buf[PAYLOAD_MAX];
	mproc_worker_exit ex[8];
	mproc_pool_opts opts;
	mproc_pool_counts c;
	mproc_pool *pool;
	mproc_result r;
	uint64_t id;
	uint32_t i;
	size_t sz;
	int n;

	memset(&opts, 0, sizeof(opts));
	opts.max_restarts = 2;
	pool = start_pool(1, &opts);
	run_tasks(pool, &o, 5, act_kill_always, 10000, NULL, 0);
	for (i = 0; i < o.n; i++)
		ck_assert_int_eq(o.status[i], MPROC_TASK_WORKER_DIED);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.restarts, 2);
	ck_assert_uint_eq(c.failed, 5);
	ck_assert_int_eq(c.workers_alive, 0);
	/* Nobody can run a task now: submit refuses it. */
	sz = make_task(buf, 5, ACT_ECHO, 0, 0);
	id = 0;
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, 1000), -ECHILD);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, MPROC_NOWAIT),
	                 -ECHILD);
	ck_assert_uint_eq(id, 0);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.submitted, 5);
	ck_assert_uint_eq(c.pending, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, 1000), -ENOENT);
	ck_assert_int_eq(mproc_pool_join(pool, MPROC_FOREVER), 0);
	n = mproc_pool_stop(pool, 1000, ex, 8);
	ck_assert_int_eq(n, 3);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ex[i].how, MPROC_EXIT_CRASHED);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

/* ------------------------------------------------------------------ */

static int dummy_fn(const mproc_msg *task, mproc_msg *result, void *arg)
{
	(void)task;
	(void)result;
	(void)arg;
	return 0;
}

START_TEST(test_pool_bad_options)
{
	mproc_pool_opts o;
	mproc_pool *pool = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	ck_assert_int_eq(mproc_pool_start(NULL, dummy_fn, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mproc_pool_start(&pool, NULL, NULL, NULL), -EINVAL);
	memset(&o, 0, sizeof(o));
	o.workers = -1;
	ck_assert_int_eq(mproc_pool_start(&pool, dummy_fn, NULL, &o), -EINVAL);
	o.workers = 1;
	o.flags = 1u << 7;
	ck_assert_int_eq(mproc_pool_start(&pool, dummy_fn, NULL, &o), -EINVAL);
	o.flags = 0;
	o.max_attempts = -1;
	ck_assert_int_eq(mproc_pool_start(&pool, dummy_fn, NULL, &o), -EINVAL);
	ck_assert_ptr_null(pool);
	assert_no_zombies();

	/* 0 workers: one per online CPU. */
	ck_assert_int_eq(mproc_pool_start(&pool, dummy_fn, NULL, NULL), 0);
	ck_assert_int_eq(mproc_pool_worker_pids(pool, NULL, 0),
	                 ncpu > 0 ? (int)ncpu : 1);
	ck_assert_int_eq(mproc_pool_stop(pool, 2000, NULL, 0),
	                 ncpu > 0 ? (int)ncpu : 1);
	ck_assert_int_eq(mproc_pool_free(pool), 0);

	ck_assert_int_eq(mproc_pool_submit(NULL, "x", 1, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_result(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_join(NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_stop(NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_stats(NULL, NULL), -EINVAL);
	ck_assert_int_eq(mproc_pool_worker_pids(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_free(NULL), -EINVAL);
	assert_no_zombies();
}
END_TEST

START_TEST(test_pool_bad_input)
{
	static unsigned char buf[PAYLOAD_MAX + 1], rbuf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(2, NULL);
	mproc_result r;
	uint64_t id = 0;
	size_t sz;

	/* Over the limit, a NULL payload, a bad timeout: errors, no id used. */
	ck_assert_int_eq(mproc_pool_submit(pool, buf, PAYLOAD_MAX + 1, &id, 0),
	                 -EMSGSIZE);
	ck_assert_int_eq(mproc_pool_submit(pool, NULL, 5, &id, 0), -EINVAL);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, 5, &id, -7), -EINVAL);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, NULL, 0), -EINVAL);
	r.capacity = 10; /* NULL data with room claimed */
	ck_assert_int_eq(mproc_pool_result(pool, &r, 0), -EINVAL);
	r.capacity = 0;
	ck_assert_int_eq(mproc_pool_result(pool, &r, 0), -ENOENT);
	ck_assert_uint_eq(id, 0);

	/* The pool is still usable: the first task gets id 1. */
	sz = make_task(buf, 0, ACT_ECHO, 0, 20);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, 1000), 0);
	ck_assert_uint_eq(id, 1);
	r.data = rbuf;
	r.capacity = sizeof(rbuf);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 5000), 0);
	check_result(&r, 0, 20);

	/* Submit after stop. */
	ck_assert_int_eq(mproc_pool_stop(pool, 2000, NULL, 0), 2);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, 0), -ESHUTDOWN);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 0), -ENOENT);
	ck_assert_int_eq(mproc_pool_join(pool, 0), 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

START_TEST(test_pool_result_timeout)
{
	static unsigned char buf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(1, NULL);
	mproc_result r;
	long long t0, el;
	size_t sz;

	/* Busy long enough for both timed waits below to run out. */
	sz = make_task(buf, 0, ACT_SLEEP, (uint32_t)check_scale_ms(400), 0);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_pool_join(pool, MPROC_NOWAIT), -EAGAIN);
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_pool_result(pool, &r, 100), -ETIMEDOUT);
	el = check_now_ms() - t0;
	ck_assert_int_ge(el, 90);
	ck_assert_int_lt(el, check_scale_ms(300));
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_pool_join(pool, 50), -ETIMEDOUT);
	el = check_now_ms() - t0;
	ck_assert_int_ge(el, 45);
	ck_assert_int_lt(el, check_scale_ms(250));
	ck_assert_int_eq(mproc_pool_join(pool, check_scale_ms(5000)), 0);
	ck_assert_int_eq(mproc_pool_result(pool, &r, MPROC_NOWAIT), -EMSGSIZE);
	stop_pool(pool, MPROC_EXIT_DIE);
}
END_TEST

/* A full task queue: submit waits for room, up to its timeout. */
START_TEST(test_pool_backpressure)
{
	static unsigned char buf[PAYLOAD_MAX];
	static struct outcome o;
	mproc_pool_opts opts;
	mproc_pool *pool;
	mproc_result r;
	long long t0, el;
	int i, rc = 0;
	size_t sz;

	memset(&opts, 0, sizeof(opts));
	opts.queue_capacity = 16384;
	opts.max_payload = 512;
	pool = start_pool(1, &opts);
	/* The worker sleeps while the queue fills and a submit times out. */
	sz = make_task(buf, 0, ACT_SLEEP, (uint32_t)check_scale_ms(300), 0);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	for (i = 1; i < 10000; i++) {
		sz = make_task(buf, (uint32_t)i, ACT_ECHO, 0, 200);
		rc = mproc_pool_submit(pool, buf, sz, NULL, MPROC_NOWAIT);
		if (rc != 0)
			break;
	}
	ck_assert_int_eq(rc, -EAGAIN);
	ck_assert_int_lt(i, 10000);
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 50),
	                 -ETIMEDOUT);
	el = check_now_ms() - t0;
	ck_assert_int_ge(el, 45);
	ck_assert_int_lt(el, check_scale_ms(250));
	/* Collect what was queued; room comes back. */
	memset(&o, 0, sizeof(o));
	for (;;) {
		memset(&r, 0, sizeof(r));
		r.data = o.status; /* any buffer of 512+ bytes */
		r.capacity = 512;
		rc = mproc_pool_result(pool, &r, check_scale_ms(5000));
		if (rc != 0)
			break;
		o.got++;
	}
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_uint_eq(o.got, (uint32_t)i);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	stop_pool(pool, MPROC_EXIT_DIE);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Workers gone, not coming back, or not ours                          */
/* ------------------------------------------------------------------ */

/* SIGKILL every live worker of pool and wait until each is a zombie (or,
 * with SIGCHLD ignored, gone). Returns how many there were. */
static int kill_all_workers(mproc_pool *pool)
{
	pid_t pids[16];
	int n = mproc_pool_worker_pids(pool, pids, 16), i;
	long long end = check_now_ms() + check_scale_ms(3000);

	ck_assert_int_ge(n, 0);
	ck_assert_int_le(n, 16);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(kill(pids[i], SIGKILL), 0);
	for (i = 0; i < n; i++) {
		while (check_proc_state(pids[i]) != 'Z' &&
		       !(kill(pids[i], 0) < 0 && errno == ESRCH)) {
			ck_assert_msg(check_now_ms() < end, "worker %d lives",
			              (int)pids[i]);
			usleep(1000);
		}
	}
	return n;
}

/* With no worker left and no restart allowed, submit says -ECHILD and
 * takes nothing (it used to take the task and fail it at once). */
START_TEST(test_pool_submit_no_workers)
{
	static unsigned char buf[PAYLOAD_MAX];
	mproc_pool_opts opts;
	mproc_pool_counts c;
	mproc_pool *pool;
	mproc_result r;
	uint64_t id = 0;
	size_t sz;

	memset(&opts, 0, sizeof(opts));
	opts.max_restarts = -1;
	pool = start_pool(2, &opts);
	ck_assert_int_eq(kill_all_workers(pool), 2);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_int_eq(c.workers_alive, 0);
	ck_assert_uint_eq(c.restarts, 0);
	sz = make_task(buf, 0, ACT_ECHO, 0, 8);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, 1000), -ECHILD);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, MPROC_FOREVER),
	                 -ECHILD);
	ck_assert_uint_eq(id, 0);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.submitted, 0);
	ck_assert_uint_eq(c.pending, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, 100), -ENOENT);
	ck_assert_int_eq(mproc_pool_join(pool, 100), 0);
	ck_assert_int_eq(mproc_pool_stop(pool, 1000, NULL, 0), 2);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

/* Wait (bounded) until a worker hangs in the ACT_HANG_ONCE task. */
static pid_t wait_hanging_worker(void)
{
	long long end = check_now_ms() + check_scale_ms(5000);
	pid_t pid;

	while ((pid = (pid_t)__atomic_load_n(&hang_pid, __ATOMIC_SEQ_CST)) ==
	       0) {
		ck_assert_msg(check_now_ms() < end, "no worker took the task");
		usleep(1000);
	}
	return pid;
}

/* The receive lock of pool's task queue, in the shared mapping. */
static pthread_mutex_t *task_recv_lock(mproc_pool *pool)
{
	size_t off, len, map_len;
	uint8_t *base = mproc__queue_mapping(pool->tasks, &map_len);

	ck_assert_int_eq(mproc__queue_lock_span(1, &off, &len), 0);
	ck_assert(len == sizeof(pthread_mutex_t) && off + len <= map_len);
	return (pthread_mutex_t *)(base + off);
}

/* Elapsed ms of a call, with its return value checked. */
#define timed_call(call, want, ms_out)                                        \
	do {                                                                  \
		long long t0_ = check_now_ms();                               \
		int rc_ = (call);                                             \
		*(ms_out) = check_now_ms() - t0_;                             \
		ck_assert_msg(rc_ == (want), "%s: %s (%d), want %d", #call,   \
		              mproc_strerror(rc_), rc_, (want));              \
	} while (0)

/*
 * A worker dies holding a task while another process keeps the task
 * queue's receive lock for seconds (stopped inside it): the release of the
 * dead worker's lease must wait, and happen once the lock is free. No call
 * overruns its timeout meanwhile; then the task is run again.
 */
START_TEST(test_pool_release_waits_for_lock)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(2, NULL);
	pthread_mutex_t *lock = task_recv_lock(pool);
	mproc_pool_counts c;
	mproc_result r;
	pid_t hanger, holder;
	int to_holder[2], from_holder[2], ws, i;
	long long ms;
	size_t sz;
	char ch;

	sz = make_task(buf, 0, ACT_HANG_ONCE, 0, 16);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	hanger = wait_hanging_worker();

	ck_assert_int_eq(pipe(to_holder), 0);
	ck_assert_int_eq(pipe(from_holder), 0);
	holder = check_fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		int rc = pthread_mutex_lock(lock);

		if (rc == EOWNERDEAD)
			pthread_mutex_consistent(lock);
		else if (rc != 0)
			_exit(2);
		ch = 'L';
		if (write(from_holder[1], &ch, 1) != 1 ||
		    read(to_holder[0], &ch, 1) != 1)
			_exit(3);
		pthread_mutex_unlock(lock);
		_exit(0);
	}
	ck_assert_int_eq(read(from_holder[0], &ch, 1), 1);
	ck_assert_int_eq(kill(holder, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(holder, &ws, WUNTRACED), holder);
	ck_assert(WIFSTOPPED(ws));

	ck_assert_int_eq(kill(hanger, SIGKILL), 0);
	ck_assert(check_wait_zombie(hanger, check_scale_ms(3000)));

	memset(&r, 0, sizeof(r));
	r.data = rbuf;
	r.capacity = sizeof(rbuf);
	/* Bounds: the timeout plus 600 ms of a loaded 2-core machine's
	 * scheduling; the fault these guard against overran by a second
	 * (the lock wait). */
	timed_call(mproc_pool_result(pool, &r, 1500), -ETIMEDOUT, &ms);
	ck_assert_msg(ms >= 1400 && ms < 1500 + check_scale_ms(600),
	              "result(1500) took %lld ms", ms);
	for (i = 0; i < 3; i++) {
		timed_call(mproc_pool_result(pool, &r, 100), -ETIMEDOUT, &ms);
		ck_assert_msg(ms < 100 + check_scale_ms(600),
		              "result(100) took %lld ms", ms);
		timed_call(mproc_pool_join(pool, 50), -ETIMEDOUT, &ms);
		ck_assert_msg(ms < 50 + check_scale_ms(600),
		              "join(50) took %lld ms", ms);
		timed_call(mproc_pool_result(pool, &r, MPROC_NOWAIT), -EAGAIN,
		           &ms);
		ck_assert_msg(ms < check_scale_ms(600),
		              "result(NOWAIT) took %lld ms", ms);
		timed_call(mproc_pool_stats(pool, &c), 0, &ms);
		ck_assert_msg(ms < check_scale_ms(600), "stats took %lld ms",
		              ms);
		ck_assert_uint_eq(c.pending, 1);
	}

	/* The lock comes free: the task runs again and its result comes. */
	ck_assert_int_eq(kill(holder, SIGCONT), 0);
	ch = 'U';
	ck_assert_int_eq(write(to_holder[1], &ch, 1), 1);
	check_reap_ok(holder, 5000);
	close(to_holder[0]);
	close(to_holder[1]);
	close(from_holder[0]);
	close(from_holder[1]);
	ck_assert_int_eq(mproc_pool_result(pool, &r, check_scale_ms(5000)), 0);
	ck_assert_uint_eq(r.task_id, 1);
	ck_assert_uint_eq(r.attempts, 2);
	check_result(&r, 0, 16);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.redelivered, 1);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_uint_eq(c.pending, 0);
	ck_assert_int_eq(mproc_pool_result(pool, &r, 100), -ENOENT);
	stop_pool(pool, 0);
}
END_TEST

/* Every exit in ex[0..n) was reaped elsewhere: unknown, status -1. */
static void assert_all_unknown(const mproc_worker_exit *ex, int n)
{
	int i;

	for (i = 0; i < n; i++)
		ck_assert_msg(ex[i].how == MPROC_EXIT_UNKNOWN &&
		              ex[i].status == -1,
		              "worker %d: how %d, status 0x%x with SIGCHLD "
		              "ignored", (int)ex[i].pid, ex[i].how,
		              ex[i].status);
}

/* SIGCHLD ignored: the kernel reaps the workers. Deaths are still seen
 * (the killed worker's task runs again) and no status is made up. */
START_TEST(test_pool_sigchld_ignored)
{
	static struct outcome o;
	mproc_worker_exit ex[16];
	mproc_pool_counts c;
	mproc_pool *pool;
	int n;

	ck_assert(signal(SIGCHLD, SIG_IGN) != SIG_ERR);
	pool = start_pool(2, NULL);
	run_tasks(pool, &o, 200, act_kill_once_13, 20000, NULL, 0);
	ck_assert_uint_eq(o.attempts[13], 2);
	ck_assert_int_eq(o.status[13], 13 % 7);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.redelivered, 1);
	ck_assert_uint_eq(c.restarts, 1);
	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 16);
	ck_assert_int_eq(n, 3);
	assert_all_unknown(ex, n);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	signal(SIGCHLD, SIG_DFL);
}
END_TEST

/* Fork a child that gets pid `want` (through ns_last_pid); 0 if that
 * cannot be arranged. The child pauses until killed. */
static pid_t fork_with_pid(pid_t want)
{
	int tries;

	for (tries = 0; tries < 20; tries++) {
		FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "we");
		pid_t c;

		if (f == NULL)
			return 0;
		if (fprintf(f, "%d", (int)want - 1) < 0 || fclose(f) != 0)
			return 0;
		c = check_fork();
		ck_assert_int_ge(c, 0);
		if (c == 0) {
			for (;;)
				pause();
		}
		if (c == want)
			return c;
		kill(c, SIGKILL); /* another process took the pid: again */
	}
	return 0;
}

/*
 * A worker reaped behind the pool's back (SIGCHLD ignored) whose pid then
 * names another child of the program: the pool must not take that child
 * for its worker. The task is run again, and stop neither signals the
 * child nor says the worker took its pill.
 */
START_TEST(test_pool_pid_reused)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_worker_exit ex[16];
	mproc_pool *pool;
	mproc_result r;
	pid_t hanger, other;
	long long end, t0;
	int n, i, found = 0;
	size_t sz;

	ck_assert(signal(SIGCHLD, SIG_IGN) != SIG_ERR);
	pool = start_pool(2, NULL);
	if (pool->w[0].pidfd < 0) {
		/* Tracked by pid (documented): a reused pid fools it. */
		fprintf(stderr, "test_pool_pid_reused: skipped, no pidfds "
		        "here (Linux < 5.3, or valgrind)\n");
		stop_pool(pool, 0);
		signal(SIGCHLD, SIG_DFL);
		return;
	}
	sz = make_task(buf, 0, ACT_HANG_ONCE, 0, 16);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, NULL, 1000), 0);
	hanger = wait_hanging_worker();
	ck_assert_int_eq(kill(hanger, SIGKILL), 0);
	end = check_now_ms() + check_scale_ms(3000);
	while (!(kill(hanger, 0) < 0 && errno == ESRCH)) {
		ck_assert_msg(check_now_ms() < end, "worker not reaped");
		usleep(1000);
	}
	other = fork_with_pid(hanger);
	if (other == 0) {
		fprintf(stderr, "test_pool_pid_reused: skipped, cannot choose "
		        "a child's pid (/proc/sys/kernel/ns_last_pid)\n");
		stop_pool(pool, 0);
		signal(SIGCHLD, SIG_DFL);
		return;
	}

	memset(&r, 0, sizeof(r));
	r.data = rbuf;
	r.capacity = sizeof(rbuf);
	ck_assert_int_eq(mproc_pool_result(pool, &r, check_scale_ms(5000)), 0);
	ck_assert_uint_eq(r.task_id, 1);
	ck_assert_uint_eq(r.attempts, 2);
	check_result(&r, 0, 16);

	t0 = check_now_ms();
	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 16);
	ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(2000));
	ck_assert_int_eq(n, 3);
	assert_all_unknown(ex, n);
	for (i = 0; i < n; i++)
		found += ex[i].pid == hanger;
	ck_assert_int_eq(found, 1);
	/* The other child was left alone. */
	ck_assert_int_eq(kill(other, 0), 0);
	ck_assert_int_ne(check_proc_state(other), 'Z');
	ck_assert_int_eq(kill(other, SIGKILL), 0);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	signal(SIGCHLD, SIG_DFL);
}
END_TEST

/* Only the process that started the pool may drive it: a forked helper
 * and a worker get -EINVAL from every call, and the pool is untouched. */
START_TEST(test_pool_other_process)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_pool *pool = start_pool(2, NULL);
	struct task_hdr h = { 0, ACT_POOL_CALL, 0, 0 };
	mproc_worker_exit ex[4];
	mproc_pool_counts c;
	pid_t pids[4], now[4], helper;
	mproc_result r;
	uint64_t id;

	ck_assert_int_eq(mproc_pool_worker_pids(pool, pids, 4), 2);
	helper = check_fork();
	ck_assert_int_ge(helper, 0);
	if (helper == 0) {
		memset(&r, 0, sizeof(r));
		child_assert(mproc_pool_stats(pool, &c) == -EINVAL);
		child_assert(mproc_pool_worker_pids(pool, now, 4) == -EINVAL);
		child_assert(mproc_pool_submit(pool, "x", 1, &id, 0) ==
		             -EINVAL);
		child_assert(mproc_pool_result(pool, &r, 0) == -EINVAL);
		child_assert(mproc_pool_join(pool, 0) == -EINVAL);
		child_assert(mproc_pool_stop(pool, 0, ex, 4) == -EINVAL);
		child_assert(mproc_pool_free(pool) == -EINVAL);
		_exit(0);
	}
	check_reap_ok(helper, 5000);

	/* A worker asks about the pool (its own copy of it). */
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &pool, sizeof(pool));
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sizeof(h) + sizeof(pool),
	                                   NULL, 1000), 0);
	memset(&r, 0, sizeof(r));
	r.data = rbuf;
	r.capacity = sizeof(rbuf);
	ck_assert_int_eq(mproc_pool_result(pool, &r, check_scale_ms(5000)), 0);
	ck_assert_int_eq(r.status, -EINVAL);

	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.restarts, 0);
	ck_assert_int_eq(c.workers_alive, 2);
	ck_assert_int_eq(mproc_pool_worker_pids(pool, now, 4), 2);
	ck_assert(now[0] == pids[0] && now[1] == pids[1]);
	stop_pool(pool, MPROC_EXIT_DIE);
}
END_TEST

/*
 * The fallbacks, forced through the pool's internals: 1, a kernel with
 * pidfds but no waitid(P_PIDFD) (Linux 5.3); 2, no pidfds at all (every
 * worker tracked by pid). Deaths are still seen and reported as before.
 */
START_TEST(test_pool_without_pidfd)
{
	static struct outcome o;
	mproc_worker_exit ex[64];
	mproc_pool_counts c;
	mproc_pool *pool = start_pool(3, NULL);
	bool pidfds = pool->w[0].pidfd >= 0; /* the kernel has them */
	uint32_t i, killers = 0;
	int n, k, crashed = 0, die = 0;

	if (_i == 1) {
		pool->no_pidfd_wait = true;
	} else if (_i == 2) {
		pool->no_pidfd = true;
		for (k = 0; k < pool->nworkers; k++) {
			if (pool->w[k].pidfd >= 0)
				close(pool->w[k].pidfd);
			pool->w[k].pidfd = -1;
		}
		pool->pfd_stale = true;
	}
	run_tasks(pool, &o, 500, act_kill_once, 20000, NULL, 0);
	for (i = 0; i < o.n; i++) {
		check_that(o.status[i] == (int)(i % 7) &&
		           o.attempts[i] == (i % 50 == 7 ? 2u : 1u),
		           "task %u: status %d, %u attempts", i, o.status[i],
		           o.attempts[i]);
		killers += i % 50 == 7;
	}
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.redelivered, killers);
	ck_assert_uint_eq(c.restarts, killers);
	ck_assert_int_eq(c.workers_alive, 3);
	for (k = 0; k < pool->nworkers; k++)
		ck_assert_int_eq(pool->w[k].pidfd >= 0, pidfds && _i != 2);
	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 64);
	ck_assert_int_eq(n, (int)(3 + killers));
	for (k = 0; k < n; k++) {
		crashed += ex[k].how == MPROC_EXIT_CRASHED &&
		           WIFSIGNALED(ex[k].status) &&
		           WTERMSIG(ex[k].status) == SIGKILL;
		die += ex[k].how == MPROC_EXIT_DIE &&
		       WIFEXITED(ex[k].status) && WEXITSTATUS(ex[k].status) == 0;
	}
	ck_assert_int_eq(crashed, (int)killers);
	ck_assert_int_eq(die, 3);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
	assert_no_zombies();
}
END_TEST

/* ------------------------------------------------------------------ */
/* fork() failing                                                      */
/* ------------------------------------------------------------------ */

/* In a child that is not root (or made not root): lower RLIMIT_NPROC so
 * fork fails, or raise it back. */
static void nproc_soft(rlim_t soft)
{
	struct rlimit rl;

	child_assert(getrlimit(RLIMIT_NPROC, &rl) == 0);
	rl.rlim_cur = soft == RLIM_INFINITY ? rl.rlim_max : soft;
	child_assert(setrlimit(RLIMIT_NPROC, &rl) == 0);
}

/* Can fork fail here? 1 yes (limit low), 0 no (fork still works). */
static int nproc_forces_failure(void)
{
	pid_t c;

	nproc_soft(1);
	c = fork();
	if (c == 0)
		_exit(0);
	if (c > 0) {
		waitpid(c, NULL, 0);
		return 0;
	}
	return 1;
}

/* A thread (made while fork still works: threads count against the limit
 * too) that raises the limit 150 ms after a byte arrives on its pipe. */
static void *raise_nproc_later(void *arg)
{
	int fd = *(const int *)arg;
	char ch;

	if (read(fd, &ch, 1) == 1) {
		usleep(150 * 1000);
		nproc_soft(RLIM_INFINITY);
	}
	return NULL;
}

/*
 * The body of test_pool_fork_fails, in a child that fork can fail for.
 * Exits 0 when all holds, 77 when fork cannot be made to fail.
 */
static void fork_fails_child(void)
{
	static unsigned char buf[PAYLOAD_MAX], rbuf[PAYLOAD_MAX];
	mproc_worker_exit ex[16];
	mproc_pool_counts c;
	mproc_pool *pool = NULL;
	mproc_pool_opts o;
	mproc_result r;
	pthread_t th;
	long long t0;
	pid_t pids[2];
	uint64_t id;
	size_t sz;
	int n, i, die = 0, crashed = 0, go[2];

	if (!nproc_forces_failure())
		_exit(77);
	nproc_soft(RLIM_INFINITY);
	memset(&o, 0, sizeof(o));
	o.workers = 2;
	o.max_payload = PAYLOAD_MAX;
	child_assert(mproc_pool_start(&pool, task_fn, NULL, &o) == 0);
	sz = make_task(buf, 0, ACT_HANG_ONCE, 0, 16);
	child_assert(mproc_pool_submit(pool, buf, sz, &id, 1000) == 0);
	(void)wait_hanging_worker();

	/* No worker, and none can be started: calls say so at once. */
	nproc_soft(1);
	child_assert(kill_all_workers(pool) == 2);
	child_assert(mproc_pool_stats(pool, &c) == 0);
	child_assert(c.workers_alive == 0);
	child_assert(c.fork_failures >= 1);
	child_assert(c.pending == 1);
	t0 = check_now_ms();
	child_assert(mproc_pool_submit(pool, buf, sz, &id, MPROC_FOREVER) ==
	             -EAGAIN);
	memset(&r, 0, sizeof(r));
	r.data = rbuf;
	r.capacity = sizeof(rbuf);
	child_assert(mproc_pool_result(pool, &r, MPROC_FOREVER) == -EAGAIN);
	child_assert(mproc_pool_join(pool, MPROC_FOREVER) == -EAGAIN);
	child_assert(check_now_ms() - t0 < check_scale_ms(1000));
	child_assert(mproc_pool_stats(pool, &c) == 0);
	child_assert(c.submitted == 1 && c.pending == 1);

	/* fork works again: the task runs (again), the pool goes on. */
	nproc_soft(RLIM_INFINITY);
	child_assert(mproc_pool_result(pool, &r, check_scale_ms(5000)) == 0);
	child_assert(r.task_id == 1 && r.attempts == 2 && r.status == 0);
	child_assert(mproc_pool_stats(pool, &c) == 0);
	child_assert(c.workers_alive == 2 && c.restarts == 2);

	/* A worker dies and cannot be replaced until stop is under way: the
	 * replacement stop starts gets its pill too, and stop ends as soon
	 * as every worker has. */
	child_assert(pipe(go) == 0);
	child_assert(pthread_create(&th, NULL, raise_nproc_later, &go[0]) ==
	             0);
	nproc_soft(1);
	sz = make_task(buf, 1, ACT_SLEEP, 400, 0); /* stop still waits */
	child_assert(mproc_pool_submit(pool, buf, sz, &id, 1000) == 0);
	child_assert(mproc_pool_worker_pids(pool, pids, 2) == 2);
	child_assert(kill(pids[0], SIGKILL) == 0);
	child_assert(check_wait_zombie(pids[0], check_scale_ms(3000)));
	child_assert(mproc_pool_stats(pool, &c) == 0);
	child_assert(c.workers_alive == 1);
	child_assert(write(go[1], "g", 1) == 1);
	t0 = check_now_ms();
	n = mproc_pool_stop(pool, check_scale_ms(5000), ex, 16);
	child_assert(check_now_ms() - t0 < check_scale_ms(2000));
	child_assert(pthread_join(th, NULL) == 0);
	for (i = 0; i < n && i < 16; i++) {
		die += ex[i].how == MPROC_EXIT_DIE;
		crashed += ex[i].how == MPROC_EXIT_CRASHED;
	}
	/* 2 started and killed, 2 restarted, one of those killed: 3
	 * crashed; the other and the replacement stop started took their
	 * pills. */
	child_assert(n == 5);
	child_assert(crashed == 3 && die == 2);
	child_assert(mproc_pool_free(pool) == 0);
	_exit(0);
}

/*
 * fork fails (RLIMIT_NPROC, as an unprivileged user: a root test runs it
 * as nobody): failures are counted, calls that would wait for a worker
 * that cannot be started return -EAGAIN, and stop neither hangs nor
 * waits out its timeout.
 */
START_TEST(test_pool_fork_fails)
{
	pid_t child;
	int st;

	if (check_slow()) {
		/* valgrind needs processes of its own: RLIMIT_NPROC = 1
		 * makes it crash, not the pool's fork fail. */
		fprintf(stderr, "test_pool_fork_fails: skipped under valgrind\n");
		return;
	}
	child = check_fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		if (getuid() == 0 &&
		    (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(77);
		fork_fails_child();
	}
	st = check_wait_child(child, check_scale_ms(30000));
	ck_assert_msg(st >= 0 && WIFEXITED(st), "child: status 0x%x", st);
	if (WEXITSTATUS(st) == 77) {
		fprintf(stderr, "test_pool_fork_fails: skipped, RLIMIT_NPROC "
		        "cannot make fork fail here\n");
		return;
	}
	ck_assert_msg(WEXITSTATUS(st) == 0, "child exited %d",
	              WEXITSTATUS(st));
}
END_TEST

/* ------------------------------------------------------------------ */
/* A long-lived pool                                                   */
/* ------------------------------------------------------------------ */

/* Resident private memory in KiB, from /proc/self/statm: resident less
 * shared (file pages such as code faulted in late, and the queues'
 * shared rings, are not what this test is about). */
static long rss_kib(void)
{
	long size = 0, resident = 0, shared = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld %ld", &size, &resident, &shared),
	                 3);
	fclose(f);
	return (resident - shared) * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Under valgrind the process's RSS is mostly valgrind's own. */
static bool skip_rss(const char *test)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan keeps freed memory in quarantine: RSS is ASan's. */
	fprintf(stderr, "%s: skipped under AddressSanitizer\n", test);
	return true;
#endif
	if (!check_slow())
		return false;
	fprintf(stderr, "%s: skipped under valgrind (RSS is valgrind's)\n",
	        test);
	return true;
}

/* A tiny task; "s" (a straggler) takes 1.5 s. */
static int tiny_fn(const mproc_msg *task, mproc_msg *result, void *arg)
{
	(void)arg;
	if (task->size == 1 && *(const char *)task->data == 's')
		usleep(1500 * 1000);
	result->size = 0;
	return 0;
}

/* Run n tiny tasks, up to 256 in flight, with a join every 4096 unless a
 * straggler is out. */
static void run_tiny(mproc_pool *pool, uint64_t n, long long end, bool join)
{
	uint64_t sent = 0, got = 0;
	mproc_result r;
	int rc;

	while (got < n) {
		while (sent < n && sent - got < 256) {
			rc = mproc_pool_submit(pool, "t", 1, NULL, 5000);
			check_that(rc == 0, "submit: %s", mproc_strerror(rc));
			sent++;
		}
		if (join && (got & 4095) == 0) {
			rc = mproc_pool_join(pool, 5000);
			check_that(rc == 0, "join: %s", mproc_strerror(rc));
		}
		memset(&r, 0, sizeof(r));
		rc = mproc_pool_result(pool, &r, 5000);
		check_that(rc == 0, "result: %s", mproc_strerror(rc));
		got++;
		check_that((got & 1023) || check_now_ms() < end,
		           "only %llu of %llu tasks in time",
		           (unsigned long long)got, (unsigned long long)n);
	}
}

/* Memory is bounded by the tasks in flight, not by all tasks ever run. */
START_TEST(test_pool_memory_bounded)
{
	uint64_t n = 1000000;
	long long end = check_now_ms() + check_scale_ms(20000);
	mproc_pool_opts o;
	mproc_pool *pool = NULL;
	long before, after;

	if (skip_rss("test_pool_memory_bounded"))
		return;
	memset(&o, 0, sizeof(o));
	o.workers = 2;
	o.max_payload = 64;
	o.queue_capacity = 65536; /* both rings wrap in the first 10 k */
	ck_assert_int_eq(mproc_pool_start(&pool, tiny_fn, NULL, &o), 0);
	run_tiny(pool, 10000, end, true);
	before = rss_kib();
	run_tiny(pool, n, end, true);
	after = rss_kib();
	ck_assert_msg(after - before < 64, "private RSS grew %ld KiB over "
	              "%llu tasks (%ld -> %ld KiB)", after - before,
	              (unsigned long long)n, before, after);
	ck_assert_int_eq(mproc_pool_stop(pool, 5000, NULL, 0), 2);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
}
END_TEST

/* The same with one task out for 1.5 s while the others run past it: the
 * table holds the ids in flight, not the span from the oldest one. */
START_TEST(test_pool_memory_straggler)
{
	uint64_t n = 1000000;
	long long end = check_now_ms() + check_scale_ms(20000);
	mproc_pool_opts o;
	mproc_pool *pool = NULL;
	mproc_pool_counts c;
	long before, after;

	if (skip_rss("test_pool_memory_straggler"))
		return;
	memset(&o, 0, sizeof(o));
	o.workers = 3;
	o.max_payload = 64;
	o.queue_capacity = 65536;
	ck_assert_int_eq(mproc_pool_start(&pool, tiny_fn, NULL, &o), 0);
	run_tiny(pool, 10000, end, true);
	before = rss_kib();
	ck_assert_int_eq(mproc_pool_submit(pool, "s", 1, NULL, 1000), 0);
	run_tiny(pool, n, end, false);
	ck_assert_int_eq(mproc_pool_stats(pool, &c), 0);
	ck_assert_uint_eq(c.pending, 1);
	ck_assert_int_eq(mproc_pool_join(pool, check_scale_ms(5000)), 0);
	after = rss_kib();
	ck_assert_msg(after - before < 64, "private RSS grew %ld KiB over "
	              "%llu tasks (%ld -> %ld KiB)", after - before,
	              (unsigned long long)n, before, after);
	ck_assert_int_eq(mproc_pool_stop(pool, 5000, NULL, 0), 3);
	ck_assert_int_eq(mproc_pool_free(pool), 0);
}
END_TEST

Suite *pool_suite(void);

Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc;

	tc = tcase_create("tasks");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_loop_test(tc, test_pool_many_tasks, 0, (int)N_LOOP_WORKERS);
	tcase_add_test(tc, test_pool_join);
	tcase_add_test(tc, test_pool_max_payload_round_trip);
	suite_add_tcase(s, tc);

	tc = tcase_create("stop");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_pool_stop_idle);
	tcase_add_test(tc, test_pool_stop_busy);
	tcase_add_test(tc, test_pool_stop_stuck_term);
	tcase_add_test(tc, test_pool_stop_stuck_kill);
	tcase_add_test(tc, test_pool_free_running);
	tcase_add_test(tc, test_pool_parent_dies);
	suite_add_tcase(s, tc);

	tc = tcase_create("crash");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_checked_fixture(tc, setup_shared, teardown_shared);
	tcase_add_loop_test(tc, test_pool_worker_crashes, 0,
	                    (int)(sizeof(crash_acts) / sizeof(crash_acts[0])));
	tcase_add_test(tc, test_pool_random_kills);
	tcase_add_test(tc, test_pool_poison_task);
	tcase_add_test(tc, test_pool_fail_on_death);
	tcase_add_loop_test(tc, test_pool_died_after_result, 0, 2);
	tcase_add_test(tc, test_pool_restarts_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("gone");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_checked_fixture(tc, setup_shared, teardown_shared);
	tcase_add_test(tc, test_pool_submit_no_workers);
	tcase_add_test(tc, test_pool_release_waits_for_lock);
	tcase_add_test(tc, test_pool_sigchld_ignored);
	tcase_add_test(tc, test_pool_pid_reused);
	tcase_add_test(tc, test_pool_other_process);
	tcase_add_loop_test(tc, test_pool_without_pidfd, 0, 3);
	tcase_add_test(tc, test_pool_fork_fails);
	suite_add_tcase(s, tc);

	tc = tcase_create("long");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_pool_memory_bounded);
	tcase_add_test(tc, test_pool_memory_straggler);
	suite_add_tcase(s, tc);

	tc = tcase_create("input");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_pool_bad_options);
	tcase_add_test(tc, test_pool_bad_input);
	tcase_add_test(tc, test_pool_result_timeout);
	tcase_add_test(tc, test_pool_backpressure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run_suite(pool_suite());
}
