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
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_common.h"
#include "internal.h" /* mproc__pid_gone */

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
};

struct task_hdr {
	uint32_t idx;
	uint32_t action;
	uint32_t arg;
	uint32_t len; /* pattern bytes that follow */
};

#define MAX_TASKS 8192
#define PAYLOAD_MAX 4096

/* Shared with the workers: set once a "once" task has killed a worker. */
static uint32_t *shared_once;

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
	shared_once = shared_map(MAX_TASKS * sizeof(*shared_once));
}

static void teardown_shared(void)
{
	munmap(shared_once, MAX_TASKS * sizeof(*shared_once));
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
	/* A task submitted now fails at once. */
	sz = make_task(buf, 5, ACT_ECHO, 0, 0);
	ck_assert_int_eq(mproc_pool_submit(pool, buf, sz, &id, 1000), 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(mproc_pool_result(pool, &r, 1000), 0);
	ck_assert_uint_eq(r.task_id, id);
	ck_assert_int_eq(r.status, MPROC_TASK_WORKER_DIED);
	ck_assert_uint_eq(r.attempts, 0);
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

static int tiny_fn(const mproc_msg *task, mproc_msg *result, void *arg)
{
	(void)task;
	(void)arg;
	result->size = 0;
	return 0;
}

/* Run n tiny tasks, up to 256 in flight, with a join every 4096. */
static void run_tiny(mproc_pool *pool, uint64_t n, long long end)
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
		if ((got & 4095) == 0) {
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
	uint64_t n = check_slow() ? 50000 : 1000000;
	long long end = check_now_ms() + check_scale_ms(20000);
	mproc_pool_opts o;
	mproc_pool *pool = NULL;
	long before, after;

	memset(&o, 0, sizeof(o));
	o.workers = 2;
	o.max_payload = 64;
	o.queue_capacity = 65536; /* both rings wrap in the first 10 k */
	ck_assert_int_eq(mproc_pool_start(&pool, tiny_fn, NULL, &o), 0);
	run_tiny(pool, 10000, end);
	before = rss_kib();
	run_tiny(pool, n, end);
	after = rss_kib();
	ck_assert_msg(after - before < 64, "private RSS grew %ld KiB over "
	              "%llu tasks (%ld -> %ld KiB)", after - before,
	              (unsigned long long)n, before, after);
	ck_assert_int_eq(mproc_pool_stop(pool, 5000, NULL, 0), 2);
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

	tc = tcase_create("long");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_pool_memory_bounded);
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
