/*
 * check_crash_hooks.c - the queue's crash points: a process killed by a
 * test hook half way through copying a payload in or out, with its
 * commit journalled but not applied, applied but still journalled, or
 * just after taking a lock (shm/crash.h). After each death the survivors
 * neither hang nor see a torn message, every message whose send returned
 * 0 is delivered (the one a receiver died taking: again, unless its take
 * was journalled), the next call that needs the dead owner's lock repairs
 * it at once, and the queue keeps working.
 *
 * Every payload carries its producer, a sequence number and a checksum of
 * all its bytes (struct pay), so a torn or stale copy is always noticed.
 */
#include <stdint.h>

#include "check_common.h"
#include "check_pay.h"
#include "check_rng.h"
#include "internal.h"

#define HOOK_ROUNDS 60
#define HOOK_MAX 64  /* messages one round may involve */
#define HOOK_CAP 512 /* max_payload */

struct hook_shared {
	uint64_t nok;            /* the child's sends that returned 0 */
	uint64_t ntaken;         /* the child's receives that returned 0 */
	uint64_t taken[HOOK_MAX]; /* what it took, in order */
	uint64_t okseq[HOOK_MAX]; /* what it sent, in order */
};

static void hook_child_send(mproc_conn *q, struct hook_shared *sh,
                            uint64_t base, int round)
{
	for (uint64_t i = 0; i < HOOK_MAX; i++) {
		int rc = send_pay(q, rng_range(sizeof(struct pay), HOOK_CAP), 1,
		                  (uint32_t)round, base + i, 5000);

		if (rc != 0)
			child_fail("send: %s", mproc_strerror(rc));
		sh->okseq[i] = base + i;
		__atomic_store_n(&sh->nok, i + 1, __ATOMIC_SEQ_CST);
	}
}

static void hook_child_recv(mproc_conn *q, struct hook_shared *sh)
{
	for (uint64_t i = 0; i < HOOK_MAX; i++) {
		struct pay p;
		int torn, rc = recv_pay(q, HOOK_CAP, 5000, &p, &torn);

		if (rc != 0)
			child_fail("recv: %s", mproc_strerror(rc));
		if (torn)
			child_fail("torn message");
		sh->taken[i] = p.seq;
		__atomic_store_n(&sh->ntaken, i + 1, __ATOMIC_SEQ_CST);
	}
}

/* LOCKED: sends, receives and stats mixed; nothing changes in the dying
 * call. */
static void hook_child_mixed(mproc_conn *q, struct hook_shared *sh,
                             uint64_t base, int round)
{
	uint64_t ns = 0, nt = 0;

	for (int i = 0; i < HOOK_MAX && ns < HOOK_MAX && nt < HOOK_MAX; i++) {
		struct pay p;
		int torn, rc;

		switch (rng_range(0, 3)) {
		case 0:
		case 1:
			rc = send_pay(q,
			              rng_range(sizeof(struct pay), HOOK_CAP),
			              1, (uint32_t)round, base + ns, 5000);
			if (rc != 0)
				child_fail("send: %s", mproc_strerror(rc));
			sh->okseq[ns] = base + ns;
			__atomic_store_n(&sh->nok, ++ns, __ATOMIC_SEQ_CST);
			break;
		case 2:
			rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p, &torn);
			if (rc == -EAGAIN)
				break;
			if (rc != 0 || torn)
				child_fail("recv: %s%s", mproc_strerror(rc),
				           torn ? " (torn)" : "");
			sh->taken[nt] = p.seq;
			__atomic_store_n(&sh->ntaken, ++nt, __ATOMIC_SEQ_CST);
			break;
		default: {
			mproc_stats st;

			/* A lock-free read: LOCKED never fires in it. */
			if ((rc = mproc_queue_stats(q, &st)) != 0)
				child_fail("stats: %s", mproc_strerror(rc));
			break;
		}
		}
	}
}

static int point_sends(int point)
{
	return point == MPROC__CRASH_SEND_COPY ||
	       point == MPROC__CRASH_SEND_COMMIT ||
	       point == MPROC__CRASH_SEND_APPLIED;
}

static int point_receives(int point)
{
	return point == MPROC__CRASH_RECV_COPY ||
	       point == MPROC__CRASH_RECV_COMMIT ||
	       point == MPROC__CRASH_RECV_APPLIED;
}

/*
 * One round: a child sets the crash point with a countdown of k and works
 * until it SIGKILLs itself; the parent checks the aftermath. base numbers
 * the child's messages, pbase the parent's.
 */
static void hook_round(mproc_conn *q, struct hook_shared *sh, int point,
                       int round, uint64_t *recoveries)
{
	uint64_t base = (uint64_t)round * 1000, pbase = base + 500;
	/* Deliveries: [0, HOOK_MAX) the child's, then the parent's. */
	int count[2 * HOOK_MAX];
	int k = (int)rng_range(1, 8), npre = 0, rc;
	uint64_t inflight_send, inflight_take = UINT64_MAX;
	uint32_t child_seed;
	long long t0;
	mproc_stats st;
	pid_t pid;

	memset(sh, 0, sizeof(*sh));
	memset(count, 0, sizeof(count));
	/* Receivers need mail; LOCKED gets some to mix with its sends. */
	if (point_receives(point))
		npre = k + (int)rng_range(0, 4);
	else if (point == MPROC__CRASH_LOCKED)
		npre = (int)rng_range(0, 6);
	for (int i = 0; i < npre; i++) {
		rc = send_pay(q, rng_range(sizeof(struct pay), HOOK_CAP), 2,
		              (uint32_t)round, pbase + (uint64_t)i, 1000);
		expect_msg(rc == 0, "prefill: %s", mproc_strerror(rc));
	}
	child_seed = rng_next();
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		rng_seed(child_seed);
		mproc__crash_point = point;
		mproc__crash_countdown = k;
		if (point_sends(point))
			hook_child_send(q, sh, base, round);
		else if (point == MPROC__CRASH_LOCKED)
			hook_child_mixed(q, sh, base, round);
		else
			hook_child_recv(q, sh);
		_exit(3); /* the hook never fired */
	}
	check_reap_killed(pid);

	/*
	 * The child died holding one lock. stats answers at once without it
	 * (a journal left pending sends it to the locks, which repairs);
	 * then the first call that takes each lock repairs a dead owner at
	 * once: empty takes the receive lock (and rolls a dead sender's
	 * journal forward), a send of the parent's the send lock. One death,
	 * one recovery.
	 */
	t0 = check_now_ms();
	st = stats_of(q);
	expect_msg(check_now_ms() - t0 < check_scale_ms(500),
	           "stats after a death took %lld ms", check_now_ms() - t0);
	rc = mproc_queue_empty(q);
	expect_msg(rc == 0 || rc == 1, "empty after a death: %s",
	           mproc_strerror(rc));
	/* Smallest payload: the ring may hold the child's sends too. */
	rc = send_pay(q, sizeof(struct pay), 2, (uint32_t)round,
	              pbase + (uint64_t)npre++, 1000);
	expect_msg(rc == 0, "send after a death: %s", mproc_strerror(rc));
	expect_msg(check_now_ms() - t0 < check_scale_ms(500),
	           "repair took %lld ms", check_now_ms() - t0);
	st = stats_of(q);
	expect_msg(st.recoveries == ++*recoveries,
	           "point %d: recoveries %llu, expected %llu", point,
	           (unsigned long long)st.recoveries,
	           (unsigned long long)*recoveries);

	/* What the child took before it died, oldest first (FIFO). */
	for (uint64_t i = 0; i < sh->ntaken; i++) {
		uint64_t s = sh->taken[i];

		if (s >= pbase && s < pbase + HOOK_MAX)
			count[HOOK_MAX + (s - pbase)]++;
		else if (s >= base && s < base + HOOK_MAX)
			count[s - base]++;
		else
			ck_abort_msg("child took unknown seq %llu",
			             (unsigned long long)s);
	}
	if (point_receives(point)) {
		for (uint64_t i = 0; i < sh->ntaken; i++)
			expect_msg(sh->taken[i] == pbase + i,
			           "receive %llu out of order",
			           (unsigned long long)i);
		inflight_take = pbase + sh->ntaken;
	}
	inflight_send = base + sh->nok;

	/* Drain: everything left must be whole. */
	for (;;) {
		struct pay p;
		int torn;

		rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p, &torn);
		if (rc == -EAGAIN)
			break;
		expect_msg(rc == 0, "drain: %s", mproc_strerror(rc));
		expect_msg(!torn, "torn message after crash point %d", point);
		expect_msg(p.round == (uint32_t)round,
		           "message of round %u in round %d", p.round, round);
		if (p.seq >= pbase && p.seq < pbase + HOOK_MAX)
			count[HOOK_MAX + (p.seq - pbase)]++;
		else if (p.seq >= base && p.seq < base + HOOK_MAX)
			count[p.seq - base]++;
		else
			ck_abort_msg("unknown seq %llu",
			             (unsigned long long)p.seq);
	}

	/* The parent's messages: once each, but the one a receiver died
	 * taking: again after a copy (never committed), at most once after
	 * its commit was journalled (or applied). */
	for (int i = 0; i < npre; i++) {
		uint64_t s = pbase + (uint64_t)i;
		int c = count[HOOK_MAX + i];

		if (s == inflight_take && point != MPROC__CRASH_RECV_COPY)
			expect_msg(c <= 1, "seq %llu delivered %d times",
			           (unsigned long long)s, c);
		else
			expect_msg(c == 1, "point %d: seq %llu delivered %d "
			           "times (k %d)", point,
			           (unsigned long long)s, c, k);
	}
	for (int i = npre; i < HOOK_MAX; i++)
		expect_msg(count[HOOK_MAX + i] == 0,
		           "unsent parent seq delivered");
	/* The child's: once each for sends that returned 0; the send it died
	 * in: never if it died copying, once if its commit was journalled or
	 * applied, never if it died on taking the lock. */
	for (uint64_t s = base; s < base + HOOK_MAX; s++) {
		int c = count[s - base];

		if (s < inflight_send)
			expect_msg(c == 1, "point %d: sent seq %llu delivered "
			           "%d times (k %d)", point,
			           (unsigned long long)s, c, k);
		else if (s == inflight_send &&
		         (point == MPROC__CRASH_SEND_COMMIT ||
		          point == MPROC__CRASH_SEND_APPLIED))
			expect_msg(c == 1, "journalled send %llu delivered "
			           "%d times", (unsigned long long)s, c);
		else
			expect_msg(c == 0, "point %d: unsent seq %llu "
			           "delivered %d times", point,
			           (unsigned long long)s, c);
	}

	check_drained(q);
	check_round_trip(q, HOOK_CAP);
}

/* Loop index: the crash point. */
static void test_crash_hook(int point)
{
	struct hook_shared *sh = shm_alloc(sizeof(*sh));
	uint64_t seed = rng_seed_auto(), recoveries = 0;
	mproc_conn *q;
	mproc_stats st;

	/* A small ring, so records wrap and reuse bytes the dying copies
	 * leave half-overwritten. */
	q = queue_new(8192, HOOK_CAP, 0, 0);
	for (int round = 1; round <= HOOK_ROUNDS; round++) {
		hook_round(q, sh, point, round, &recoveries);
		if (round == 1 && getenv("MPROC_TEST_VERBOSE"))
			fprintf(stderr, "crash point %d seed %llu\n", point,
			        (unsigned long long)seed);
	}
	/* One death a round, each repaired once. */
	st = stats_of(q);
	ck_assert_uint_eq(st.recoveries, recoveries);
	ck_assert_uint_eq(st.recoveries, HOOK_ROUNDS);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr,
		        "crash point %d: %llu recoveries in %d rounds\n",
		        point, (unsigned long long)st.recoveries, HOOK_ROUNDS);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}

START_TEST(test_crash_hook_point)
{
	test_crash_hook(_i);
}
END_TEST

/*
 * A sender killed after its commit was journalled (SEND_COMMIT: nothing
 * applied) sent its message, and only the send lock's next taker would
 * roll it forward. Receivers do not take that lock, so they must roll it
 * forward themselves: whatever receiving call comes first after the
 * death (or stats, whose lock-free read gives way to the locks while a
 * journal is pending) must see the message at once, and agree with the
 * others.
 */
enum {
	SJ_RECV_NOWAIT, SJ_RECV_TIMED, SJ_PEEK, SJ_EMPTY, SJ_JOIN, SJ_STATS,
	SJ_KINDS
};

#define SJ_ROUNDS 10

/* Loop index: the first call after the death (SJ_*). */
START_TEST(test_crash_send_journal_seen)
{
	static const char *const name[] = { "recv (MPROC_NOWAIT)",
		                            "recv (timed)", "peek", "empty",
		                            "join", "stats" };
	mproc_conn *q = queue_new(8192, HOOK_CAP, 0, 0);
	uint64_t rec = 0;

	rng_seed_auto();
	for (int round = 1; round <= SJ_ROUNDS; round++) {
		uint32_t size = rng_range(sizeof(struct pay), HOOK_CAP);
		long long t0;
		struct pay p;
		int torn, rc, left = 1;
		pid_t pid = check_fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			mproc__crash_point = MPROC__CRASH_SEND_COMMIT;
			mproc__crash_countdown = 1;
			send_pay(q, size, 1, (uint32_t)round, (uint64_t)round,
			         1000);
			_exit(3);
		}
		check_reap_killed(pid);

		t0 = check_now_ms();
		switch (_i) {
		case SJ_RECV_NOWAIT:
		case SJ_RECV_TIMED:
			rc = recv_pay(q, HOOK_CAP,
			              _i == SJ_RECV_NOWAIT ? MPROC_NOWAIT
			                                   : 1000,
			              &p, &torn);
			ck_assert_msg(rc == 0 && !torn &&
			                  p.seq == (uint64_t)round,
			              "%s after a sender died with its commit "
			              "journalled: %s%s", name[_i],
			              mproc_strerror(rc),
			              torn ? " (torn)" : "");
			left = 0;
			break;
		case SJ_PEEK:
			rc = mproc__queue_peek(q, NULL, NULL);
			ck_assert_msg(rc == 1, "%s: %d", name[_i], rc);
			break;
		case SJ_EMPTY:
			rc = mproc_queue_empty(q);
			ck_assert_msg(rc == 0, "%s: %d", name[_i], rc);
			break;
		case SJ_JOIN:
			/* Its task is open. */
			rc = mproc_queue_join(q, MPROC_NOWAIT);
			ck_assert_msg(rc == -EAGAIN, "%s: %s", name[_i],
			              mproc_strerror(rc));
			break;
		default: {
			mproc_stats st = stats_of(q);

			ck_assert_msg(st.queued == 1 && st.unfinished == 1,
			              "%s: queued %llu", name[_i],
			              (unsigned long long)st.queued);
			break;
		}
		}
		ck_assert_msg(check_now_ms() - t0 < check_scale_ms(300),
		              "%s took %lld ms", name[_i], check_now_ms() - t0);
		if (left) {
			rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p, &torn);
			ck_assert_msg(rc == 0 && !torn &&
			              p.seq == (uint64_t)round,
			              "recv after %s: %s", name[_i],
			              mproc_strerror(rc));
		}
		ck_assert_uint_eq(stats_of(q).recoveries, ++rec);
		check_drained(q);
	}
	mproc_close(q);
}
END_TEST

Suite *crash_hooks_suite(void);

Suite *crash_hooks_suite(void)
{
	Suite *s = suite_create("crash_hooks");
	TCase *tc = check_tcase(s, "hooks");

	tcase_add_loop_test(tc, test_crash_hook_point, MPROC__CRASH_SEND_COPY,
	                    MPROC__CRASH_RECV_APPLIED + 1);
	tcase_add_loop_test(tc, test_crash_send_journal_seen, 0, SJ_KINDS);
	return s;
}

int main(void)
{
	return check_run_suite(crash_hooks_suite());
}
