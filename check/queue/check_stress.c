/*
 * check_stress.c - the queue under load: M:M integrity, lost wake-ups
 * (with a watchdog on progress) and directed traffic at scale.
 *
 * Each test runs for about MPROC_STRESS_SECONDS (make check sets 3) and
 * asserts invariants: every message delivered exactly once and whole, each
 * consumer sees each producer's messages in order, every child reaped, the
 * queue drained and joinable at the end. A watchdog in the parent fails a
 * test whose progress counter stalls for STALL_MS: a lost wake-up shows up
 * as a stall, not as a slow pass.
 *
 * Under valgrind (check_slow()) the time bounds are ten times longer and
 * the ping-pong's minimum of round trips ten times smaller; the
 * invariants checked are the same.
 */
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

#include "check_common.h"
#include "check_pay.h"
#include "check_rng.h"

/* A test fails if nothing moves for this long. */
#define STALL_MS check_scale_ms(500)

/* Every blocking call: far longer than any wait should take. */
#define T check_scale_ms(5000)

/* Round trips the ping-pong must make at least. */
#define PP_MIN_TRIPS (check_slow() ? 100 : 1000)

/* ---- helpers ---------------------------------------------------------- */

/*
 * watch_children reaps pids[0..n) (each must exit 0) while watching
 * *progress: if it stays put for STALL_MS, or the whole wait passes
 * limit_ms, every child in all[0..nall) is killed and the test fails.
 */
static void watch_children(mproc_conn *q, const pid_t *pids, int n,
                           const pid_t *all, int nall,
                           const uint64_t *progress, int limit_ms,
                           const char *what)
{
	long long start = check_now_ms(), moved = start;
	uint64_t last = __atomic_load_n(progress, __ATOMIC_SEQ_CST);
	int left = n, done[64] = { 0 };

	ck_assert_int_le(n, 64);
	while (left > 0) {
		long long now = check_now_ms();
		uint64_t cur = __atomic_load_n(progress, __ATOMIC_SEQ_CST);

		for (int i = 0; i < n; i++) {
			int st;

			if (done[i] ||
			    waitpid(pids[i], &st, WNOHANG) != pids[i])
				continue;
			done[i] = 1;
			left--;
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			              "%s: child %d ended badly: status 0x%x",
			              what, (int)pids[i], st);
		}
		if (cur != last) {
			last = cur;
			moved = now;
		}
		if (left > 0 && (now - moved > STALL_MS ||
		                 now - start > limit_ms)) {
			mproc_stats st;
			char states[130];
			int k = 0;

			for (int i = 0; i < nall && k < 128; i++)
				states[k++] = check_proc_state(all[i]);
			states[k] = '\0';
			memset(&st, 0, sizeof(st));
			mproc_queue_stats(q, &st);
			for (int i = 0; i < nall; i++)
				kill(all[i], SIGKILL);
			for (int i = 0; i < nall; i++)
				check_wait_child(all[i], 5000);
			ck_abort_msg("%s: %s after %llu steps (children %s; "
			             "queued %llu unfinished %llu)", what,
			             now - moved > STALL_MS ? "progress stalled"
			                                    : "took too long",
			             (unsigned long long)cur, states,
			             (unsigned long long)st.queued,
			             (unsigned long long)st.unfinished);
		}
		usleep(2000);
	}
}

/* Sometimes step aside, so the other side runs (and sleeps) first. */
static void maybe_yield(void)
{
	uint32_t r = rng_next() & 63;

	if (r < 8)
		sched_yield();
	else if (r == 8)
		usleep(rng_range(1, 200));
}

/* ---- M:M integrity ------------------------------------------------------ */

#define MM_PROD 4
#define MM_CONS 4
#define MM_MAXSEQ (1u << 20)

struct mm_shared {
	uint64_t nsent[MM_PROD];
	uint64_t progress;   /* messages received, all consumers together */
	uint32_t stop;       /* producers: stop sending */
	uint8_t seen[MM_PROD][MM_MAXSEQ / 8]; /* bitmap of deliveries */
};

static void mm_producer(mproc_conn *q, struct mm_shared *sh, int idx,
                        uint64_t limit, uint32_t maxsize)
{
	rng_seed_child((uint32_t)idx);
	for (uint64_t seq = 0; seq < limit; seq++) {
		int rc;

		if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED))
			break;
		rc = send_pay_to(q, MPROC_USER, MPROC_ANYONE,
		                 rng_range(sizeof(struct pay), maxsize),
		                 (uint32_t)idx, 0, seq, T);
		if (rc != 0)
			child_fail("send: %s", mproc_strerror(rc));
		__atomic_store_n(&sh->nsent[idx], seq + 1, __ATOMIC_RELAXED);
		maybe_yield();
	}
	mproc_close(q);
	_exit(0);
}

static void mm_consumer(mproc_conn *q, struct mm_shared *sh, int idx,
                        uint32_t maxsize)
{
	uint8_t *buf = malloc(maxsize);
	int64_t last[MM_PROD];

	rng_seed_child((uint32_t)idx + 100);
	if (buf == NULL)
		child_fail("malloc");
	for (int i = 0; i < MM_PROD; i++)
		last[i] = -1;
	for (;;) {
		mproc_msg m = { .data = buf, .capacity = maxsize };
		struct pay p;
		uint8_t bit, old;
		int rc = mproc_recv(q, &m, NULL, NULL, T);

		if (rc != 0)
			child_fail("recv: %s", mproc_strerror(rc));
		if (m.request == MPROC_DIE)
			break;
		if (m.request != MPROC_USER || pay_check(buf, m.size, &p) < 0 ||
		    p.src >= MM_PROD || p.seq >= MM_MAXSEQ)
			child_fail("torn or foreign message");
		if ((int64_t)p.seq <= last[p.src])
			child_fail("producer %u: seq %llu after %lld", p.src,
			           (unsigned long long)p.seq,
			           (long long)last[p.src]);
		last[p.src] = (int64_t)p.seq;
		bit = (uint8_t)(1u << (p.seq % 8));
		old = __atomic_fetch_or(&sh->seen[p.src][p.seq / 8], bit,
		                        __ATOMIC_RELAXED);
		if (old & bit)
			child_fail("producer %u seq %llu delivered twice",
			           p.src, (unsigned long long)p.seq);
		__atomic_add_fetch(&sh->progress, 1, __ATOMIC_RELAXED);
		maybe_yield();
	}
	free(buf);
	mproc_close(q);
	_exit(0);
}

/*
 * mm_run: MM_PROD producers and MM_CONS consumers on q for about secs
 * seconds (or limit messages per producer), then one DIE per consumer.
 * Checks every message was delivered exactly once.
 */
static void mm_run(mproc_conn *q, uint64_t limit, uint32_t maxsize, int secs,
                   const char *what)
{
	struct mm_shared *sh = shm_alloc(sizeof(*sh));
	pid_t prod[MM_PROD], cons[MM_CONS], all[MM_PROD + MM_CONS];
	long long end;
	uint64_t total = 0;

	for (int i = 0; i < MM_CONS; i++) {
		cons[i] = check_fork();
		ck_assert_int_ge(cons[i], 0);
		if (cons[i] == 0)
			mm_consumer(q, sh, i, maxsize);
		all[MM_PROD + i] = cons[i];
	}
	for (int i = 0; i < MM_PROD; i++) {
		prod[i] = check_fork();
		ck_assert_int_ge(prod[i], 0);
		if (prod[i] == 0)
			mm_producer(q, sh, i, limit, maxsize);
		all[i] = prod[i];
	}
	/* Stop the producers after secs; the watchdog runs meanwhile. */
	end = check_now_ms() + 1000LL * secs;
	{
		pid_t stopper = check_fork();

		ck_assert_int_ge(stopper, 0);
		if (stopper == 0) {
			while (check_now_ms() < end &&
			       !__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST))
				usleep(5000);
			__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
			mproc_close(q);
			_exit(0);
		}
		watch_children(q, prod, MM_PROD, all, MM_PROD + MM_CONS,
		               &sh->progress,
		               1000 * secs + check_scale_ms(20000), what);
		__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
		check_reap_ok(stopper, 10000);
	}
	for (int i = 0; i < MM_CONS; i++)
		ck_assert_int_eq(
		        send_t(q, MPROC_DIE, MPROC_ANYONE, NULL, 0, T), 0);
	watch_children(q, cons, MM_CONS, all, MM_PROD + MM_CONS,
	               &sh->progress, check_scale_ms(20000), what);

	for (int p = 0; p < MM_PROD; p++) {
		uint64_t n = sh->nsent[p];

		total += n;
		for (uint64_t s = 0; s < MM_MAXSEQ; s++) {
			int got = (sh->seen[p][s / 8] >> (s % 8)) & 1;

			expect_msg(got == (s < n), "%s: producer %d seq %llu "
			           "%s", what, p, (unsigned long long)s,
			           got ? "delivered but never sent"
			               : "sent but never delivered");
		}
	}
	ck_assert_int_eq(sh->progress, total);
	check_drained_no_repair(q);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr, "%s: %llu messages\n", what,
		        (unsigned long long)total);
	munmap(sh, sizeof(*sh));
}

/* 4 producers, 4 consumers, tens of thousands of messages. */
START_TEST(test_stress_mm_integrity)
{
	mproc_conn *q = queue_new(64 << 10, 512, 0, 0);

	mm_run(q, 12500, 512, check_stress_seconds() * 2, "M:M");
	mproc_close(q);
}
END_TEST

/* The same on a queue of a few records: senders and receivers keep
 * putting each other to sleep; a lost wake-up stalls it. */
START_TEST(test_stress_small_queue)
{
	mproc_conn *q = queue_new(2048, 256, 0, 0);

	mm_run(q, MM_MAXSEQ, 256, check_stress_seconds(), "small queue");
	mproc_close(q);
}
END_TEST

/* And bounded by a message count: max_messages 2. */
START_TEST(test_stress_max_messages)
{
	mproc_conn *q = queue_new(64 << 10, 256, 2, 0);

	mm_run(q, MM_MAXSEQ, 256, check_stress_seconds(), "max_messages 2");
	mproc_close(q);
}
END_TEST

/* ---- ping-pong through a one-message queue ---------------------------- */

struct pp_shared {
	uint64_t progress; /* round trips */
};

static void pp_pong(mproc_conn *q)
{
	uint8_t buf[256];
	uint64_t next = 0;

	rng_seed_child(2);
	for (;;) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay p;
		int rc;

		maybe_yield();
		rc = mproc_recv(q, &m, mproc_for_me, NULL, T);
		if (rc != 0)
			child_fail("pong recv: %s", mproc_strerror(rc));
		if (m.request == MPROC_DIE) {
			mproc_close(q);
			_exit(0);
		}
		if (m.request != MPROC_DO || m.recipient != getpid() ||
		    pay_check(buf, m.size, &p) < 0 || p.seq != next)
			child_fail("pong: bad ping (seq %llu)",
			           (unsigned long long)next);
		next++;
		maybe_yield();
		rc = send_pay_to(q, MPROC_FINISHED, m.sender, m.size, 2, 0,
		                 p.seq, T);
		if (rc != 0)
			child_fail("pong send: %s", mproc_strerror(rc));
	}
}

static void pp_ping(mproc_conn *q, struct pp_shared *sh, pid_t pong,
                    long long end)
{
	uint8_t buf[256];
	uint64_t seq;

	rng_seed_child(1);
	for (seq = 0; check_now_ms() < end; seq++) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay p;
		int rc;

		rc = send_pay_to(q, MPROC_DO, pong,
		                 rng_range(sizeof(struct pay), sizeof(buf)), 1,
		                 0, seq, T);
		if (rc != 0)
			child_fail("ping send: %s", mproc_strerror(rc));
		maybe_yield();
		rc = mproc_recv(q, &m, mproc_for_me, NULL, T);
		if (rc != 0)
			child_fail("ping recv: %s", mproc_strerror(rc));
		if (m.request != MPROC_FINISHED || m.sender != pong ||
		    pay_check(buf, m.size, &p) < 0 || p.seq != seq)
			child_fail("ping: bad pong");
		__atomic_store_n(&sh->progress, seq + 1, __ATOMIC_RELAXED);
	}
	if (send_t(q, MPROC_DIE, pong, NULL, 0, T) != 0)
		child_fail("ping: DIE");
	mproc_close(q);
	_exit(0);
}

START_TEST(test_stress_pingpong)
{
	struct pp_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(4096, 256, 1, 0);
	long long end = check_now_ms() + 1000LL * check_stress_seconds();
	pid_t pids[2];

	pids[0] = check_fork();
	ck_assert_int_ge(pids[0], 0);
	if (pids[0] == 0)
		pp_pong(q);
	pids[1] = check_fork();
	ck_assert_int_ge(pids[1], 0);
	if (pids[1] == 0)
		pp_ping(q, sh, pids[0], end);
	watch_children(q, pids, 2, pids, 2, &sh->progress,
	               1000 * check_stress_seconds() + check_scale_ms(20000),
	               "ping-pong");
	ck_assert_msg(sh->progress > PP_MIN_TRIPS, "only %llu round trips",
	              (unsigned long long)sh->progress);
	check_drained_no_repair(q);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr, "ping-pong: %llu round trips\n",
		        (unsigned long long)sh->progress);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- directed: 1:M out, M:1 back --------------------------------------- */

#define DIR_KIDS 4
#define DIR_BURST 48

struct dir_shared {
	uint64_t progress; /* replies the parent collected */
	uint64_t taken[DIR_KIDS];
};

static void dir_child(mproc_conn *q, struct dir_shared *sh, int idx)
{
	uint8_t buf[512];
	uint64_t next = 0;

	rng_seed_child((uint32_t)idx + 10);
	for (;;) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay p;
		int rc = mproc_recv(q, &m, mproc_for_me, NULL, T);

		if (rc != 0)
			child_fail("child %d recv: %s", idx,
			           mproc_strerror(rc));
		if (m.recipient != getpid())
			child_fail("child %d took mail for %d", idx,
			           (int)m.recipient);
		if (m.request == MPROC_DIE)
			break;
		if (m.request != MPROC_DO || pay_check(buf, m.size, &p) < 0 ||
		    p.src != (uint32_t)idx || p.seq != next)
			child_fail("child %d: bad task (want seq %llu)", idx,
			           (unsigned long long)next);
		next++;
		__atomic_store_n(&sh->taken[idx], next, __ATOMIC_RELAXED);
		maybe_yield();
		/* The answer: the same payload, back to whoever asked. */
		rc = send_pay_to(q, MPROC_FINISHED, m.sender, m.size, p.src,
		                 p.round, p.seq, T);
		if (rc != 0)
			child_fail("child %d send: %s", idx,
			           mproc_strerror(rc));
	}
	mproc_close(q);
	_exit(0);
}

/* The parent's receive: answers addressed to it. */
static int dir_for_parent(const mproc_msg *m, void *arg)
{
	return m->request == MPROC_FINISHED && m->recipient == *(pid_t *)arg;
}

START_TEST(test_stress_directed)
{
	struct dir_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(64 << 10, 512, 0, 0);
	long long end = check_now_ms() + 1000LL * check_stress_seconds();
	uint64_t sent[DIR_KIDS] = { 0 }, answered[DIR_KIDS] = { 0 };
	pid_t kids[DIR_KIDS], me = getpid();
	uint8_t *buf;
	uint32_t round;

	rng_seed_child(0);
	for (int i = 0; i < DIR_KIDS; i++) {
		kids[i] = check_fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0)
			dir_child(q, sh, i);
	}
	/* After the forks: a child that _exits with a copy of it would be
	 * reported as a leak under valgrind. */
	buf = malloc(512);
	ck_assert_ptr_nonnull(buf);
	for (round = 0; check_now_ms() < end || round < 20; round++) {
		int burst = (int)rng_range(1, DIR_BURST);
		/* Sometimes only one child gets mail: the rest sleep. */
		int only =
		    rng_range(0, 3) == 0 ? (int)rng_range(0, DIR_KIDS - 1) : -1;

		for (int b = 0; b < burst; b++) {
			int k =
			    only >= 0 ? only : (int)rng_range(0, DIR_KIDS - 1);
			int rc = send_pay_to(q, MPROC_DO, kids[k],
			                     rng_range(sizeof(struct pay), 512),
			                     (uint32_t)k, round, sent[k], T);

			ck_assert_msg(rc == 0, "send: %s", mproc_strerror(rc));
			sent[k]++;
		}
		for (int b = 0; b < burst; b++) {
			mproc_msg m = { .data = buf, .capacity = 512 };
			struct pay p;
			int rc = mproc_recv(q, &m, dir_for_parent, &me, T);

			if (rc != 0) {
				for (int i = 0; i < DIR_KIDS; i++)
					kill(kids[i], SIGKILL);
				ck_abort_msg("round %u: answer %d of %d: %s",
				             round, b, burst,
				             mproc_strerror(rc));
			}
			expect_msg(pay_check(buf, m.size, &p) == 0 &&
			               p.src < DIR_KIDS && p.round == round &&
			               m.sender == kids[p.src] &&
			               p.seq == answered[p.src],
			           "round %u: bad or out-of-order answer",
			           round);
			answered[p.src]++;
			__atomic_add_fetch(&sh->progress, 1, __ATOMIC_RELAXED);
		}
	}
	for (int i = 0; i < DIR_KIDS; i++) {
		ck_assert_int_eq(answered[i], sent[i]);
		ck_assert_int_eq(send_t(q, MPROC_DIE, kids[i], NULL, 0, T), 0);
	}
	watch_children(q, kids, DIR_KIDS, kids, DIR_KIDS, &sh->progress,
	               check_scale_ms(20000), "directed");
	for (int i = 0; i < DIR_KIDS; i++)
		ck_assert_int_eq(sh->taken[i], sent[i]);
	check_drained_no_repair(q);
	ck_assert_int_eq(stats_of(q).orphans, 0);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr, "directed: %u rounds, %llu answers\n", round,
		        (unsigned long long)sh->progress);
	free(buf);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

Suite *stress_suite(void);

Suite *stress_suite(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = check_tcase(s, "stress");

	tcase_set_tags(tc, "stress");
	tcase_add_test(tc, test_stress_mm_integrity);
	tcase_add_test(tc, test_stress_small_queue);
	tcase_add_test(tc, test_stress_max_messages);
	tcase_add_test(tc, test_stress_pingpong);
	tcase_add_test(tc, test_stress_directed);
	return s;
}

int main(void)
{
	return check_run_suite(stress_suite());
}
