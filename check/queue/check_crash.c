/*
 * check_crash.c - crash safety of the shared-memory queue.
 *
 * A process using a queue may die at any instruction. These tests kill
 * processes with the test hooks (mid-copy, mid-commit, holding a lock),
 * from outside at random moments, and while asleep in a wait; stop a lock
 * holder; and scribble over the mapping. After each they check that the
 * survivors neither hang nor see a torn message, that every message whose
 * send returned 0 is delivered, that the counts and join agree, and that
 * the queue keeps working.
 *
 * Every payload carries its producer, a sequence number and a checksum of
 * all its bytes (struct pay), so a torn or stale copy is always noticed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include "check_common.h"
#include "check_pay.h"
#include "check_rng.h"
#include "internal.h"

/* ---- the test hooks: killed mid-copy, mid-commit, holding the lock ---- */

#define HOOK_ROUNDS 60
#define HOOK_MAX 64  /* messages one round may involve */
#define HOOK_CAP 512 /* max_payload */

struct hook_shared {
	uint64_t nok;            /* the child's sends that returned 0 */
	uint64_t ntaken;         /* the child's receives that returned 0 */
	uint64_t taken[HOOK_MAX]; /* what it took, in order */
	uint64_t okseq[HOOK_MAX]; /* what it sent, in order */
	/* Set while the child is in a mproc_queue_stats that its LOCKED hook
	 * ends after stats took both locks (the send lock, then the receive
	 * lock): each lock is repaired, so its death counts two recoveries. */
	uint32_t both_locks;
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

/* LOCKED: sends and receives mixed; nothing changes in the dying call. */
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

			/* stats takes the send lock, then the receive lock,
			 * and LOCKED counts each: with 2 to go it fires on
			 * the second, so the child dies holding both. */
			if (mproc__crash_countdown == 2)
				__atomic_store_n(&sh->both_locks, 1,
				                 __ATOMIC_SEQ_CST);
			if ((rc = mproc_queue_stats(q, &st)) != 0)
				child_fail("stats: %s", mproc_strerror(rc));
			__atomic_store_n(&sh->both_locks, 0, __ATOMIC_SEQ_CST);
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

	/* The first call after the death repairs at once (stats takes both
	 * locks, so it repairs whichever the child held). One lock held, one
	 * recovery; both (only a LOCKED death inside stats, see
	 * hook_child_mixed), two. */
	t0 = check_now_ms();
	st = stats_of(q);
	expect_msg(check_now_ms() - t0 < check_scale_ms(500),
	           "repair took %lld ms", check_now_ms() - t0);
	*recoveries += sh->both_locks ? 2 : 1;
	expect_msg(st.recoveries == *recoveries,
	           "point %d: recoveries %llu, expected %llu%s", point,
	           (unsigned long long)st.recoveries,
	           (unsigned long long)*recoveries,
	           sh->both_locks ? " (died in stats holding both locks)"
	                          : "");

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
	/* One death a round, each repaired (twice for both locks). */
	st = stats_of(q);
	ck_assert_uint_eq(st.recoveries, recoveries);
	ck_assert_uint_ge(st.recoveries, HOOK_ROUNDS);
	if (point != MPROC__CRASH_LOCKED)
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
 * death (or stats, which takes both locks) must see the message at once,
 * and agree with the others.
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

/* ---- random external kills ------------------------------------------- */

#define RK_SENDERS 2
#define RK_RECEIVERS 2
#define RK_MAXSEQ 4096
#define RK_CAP 256

struct rk_shared {
	uint64_t nok[RK_SENDERS]; /* sends that returned 0 */
	uint32_t torn;
	uint32_t count[RK_SENDERS][RK_MAXSEQ]; /* deliveries recorded */
};

static void rk_sender(mproc_conn *q, struct rk_shared *sh, int idx,
                      uint32_t round)
{
	for (uint64_t seq = 0; seq < RK_MAXSEQ; seq++) {
		int rc = send_pay(q, rng_range(sizeof(struct pay), RK_CAP),
		                  (uint32_t)idx, round, seq, 5000);

		if (rc != 0)
			child_fail("send: %s", mproc_strerror(rc));
		__atomic_store_n(&sh->nok[idx], seq + 1, __ATOMIC_SEQ_CST);
	}
	_exit(0);
}

static void rk_receiver(mproc_conn *q, struct rk_shared *sh, uint32_t round)
{
	for (;;) {
		struct pay p;
		int torn, rc = recv_pay(q, RK_CAP, 5000, &p, &torn);

		if (rc != 0)
			child_fail("recv: %s", mproc_strerror(rc));
		if (torn || p.round != round || p.src >= RK_SENDERS ||
		    p.seq >= RK_MAXSEQ) {
			__atomic_add_fetch(&sh->torn, 1, __ATOMIC_SEQ_CST);
			_exit(2);
		}
		__atomic_add_fetch(&sh->count[p.src][p.seq], 1,
		                   __ATOMIC_SEQ_CST);
	}
}

static void rk_round(mproc_conn *q, struct rk_shared *sh, uint32_t round,
                     uint64_t *unaccounted_total)
{
	int ns = (int)rng_range(1, RK_SENDERS),
	    nr = (int)rng_range(1, RK_RECEIVERS);
	pid_t pids[RK_SENDERS + RK_RECEIVERS];
	mproc_stats before = stats_of(q), after;
	uint64_t counted = 0, missing = 0, unaccounted;
	int n = 0;

	memset(sh, 0, sizeof(*sh));
	for (int i = 0; i < ns + nr; i++) {
		uint32_t seed = rng_next();
		pid_t pid = check_fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			rng_seed(seed);
			if (i < ns)
				rk_sender(q, sh, i, round);
			rk_receiver(q, sh, round);
		}
		pids[n++] = pid;
	}
	usleep(rng_range(0, 2000));
	/* Kill in a random order, a little apart. */
	for (int i = n - 1; i > 0; i--) {
		int j = (int)rng_range(0, (uint32_t)i);
		pid_t t = pids[i];

		pids[i] = pids[j];
		pids[j] = t;
	}
	for (int i = 0; i < n; i++) {
		kill(pids[i], SIGKILL);
		if (rng_range(0, 1))
			usleep(rng_range(0, 300));
	}
	for (int i = 0; i < n; i++) {
		int st = check_wait_child(pids[i], 10000);

		expect_msg(st >= 0, "child did not end");
		expect_msg((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ||
		           (WIFEXITED(st) && WEXITSTATUS(st) == 0),
		           "round %u: child ended badly: status 0x%x", round,
		           st);
	}
	ck_assert_int_eq(sh->torn, 0);

	/* Drain. */
	for (;;) {
		struct pay p;
		int torn, rc = recv_pay(q, RK_CAP, MPROC_NOWAIT, &p, &torn);

		if (rc == -EAGAIN)
			break;
		expect_msg(rc == 0, "drain: %s", mproc_strerror(rc));
		expect_msg(!torn && p.round == round && p.src < RK_SENDERS &&
		               p.seq < RK_MAXSEQ,
		           "round %u: bad message", round);
		sh->count[p.src][p.seq]++;
	}
	check_drained(q);
	after = stats_of(q);

	/*
	 * Exactly once, except: a receiver killed between taking a message
	 * and recording it leaves that message unrecorded (at most one per
	 * receiver), and the send a sender died in may or may not count.
	 */
	for (int s = 0; s < ns; s++) {
		for (uint64_t seq = 0; seq < RK_MAXSEQ; seq++) {
			uint32_t c = sh->count[s][seq];

			expect_msg(c <= 1, "round %u: %d/%llu delivered %u "
			           "times", round, s,
			           (unsigned long long)seq, c);
			if (seq > sh->nok[s])
				expect_msg(c == 0, "round %u: never sent "
				           "%d/%llu delivered", round, s,
				           (unsigned long long)seq);
			if (seq < sh->nok[s] && c == 0)
				missing++;
			counted += c;
		}
	}
	expect_msg(after.received >= before.received + counted,
	           "round %u: received %llu < counted %llu", round,
	           (unsigned long long)(after.received - before.received),
	           (unsigned long long)counted);
	unaccounted = after.received - before.received - counted;
	expect_msg(unaccounted <= (uint64_t)nr && missing <= unaccounted,
	           "round %u: %llu messages lost (%llu taken unrecorded, "
	           "%d receivers)", round, (unsigned long long)missing,
	           (unsigned long long)unaccounted, nr);
	*unaccounted_total += unaccounted;
}

START_TEST(test_crash_random_kills)
{
	struct rk_shared *sh = shm_alloc(sizeof(*sh));
	long long end = check_now_ms() + 1000LL * (check_stress_seconds() + 2);
	uint64_t unaccounted = 0;
	uint32_t round;
	mproc_conn *q;

	rng_seed_auto();
	/* A ring of a few records: senders block, receivers sleep. */
	q = queue_new(4096, RK_CAP, 0, 0);
	for (round = 1; round <= 300; round++) {
		rk_round(q, sh, round, &unaccounted);
		if (round >= 100 && check_now_ms() > end)
			break;
	}
	check_round_trip(q, RK_CAP);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr,
		        "random kills: %u rounds, %llu recoveries, %llu "
		        "taken by the dying\n",
		        round - 1, (unsigned long long)stats_of(q).recoveries,
		        (unsigned long long)unaccounted);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- waiters killed while asleep -------------------------------------- */

#define WAIT_ROUNDS 150

enum { WAIT_RECV, WAIT_SEND, WAIT_JOIN, WAIT_KINDS };

struct wait_shared {
	uint32_t ready;
};

/* Wait until the child said it is about to block, then (usually) until it
 * is asleep in the kernel. */
/* Returns 1 when the waiter was seen asleep, 0 for a random moment. */
static int wait_blocked(struct wait_shared *sh, pid_t pid, int asleep)
{
	long long end = check_now_ms() + check_scale_ms(5000);

	while (!__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST)) {
		ck_assert_msg(check_now_ms() < end, "waiter never started");
		usleep(50);
	}
	if (!asleep) {
		usleep(rng_range(0, 100));
		return 0;
	}
	end = check_now_ms() + check_scale_ms(1000);
	while (check_now_ms() < end) {
		if (check_proc_sleeping(pid))
			return 1;
		usleep(50);
	}
	return 0;
}

static pid_t wait_spawn(mproc_conn *q, struct wait_shared *sh, int kind)
{
	pid_t pid;

	__atomic_store_n(&sh->ready, 0, __ATOMIC_SEQ_CST);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct pay p;
		int torn, rc;

		__atomic_store_n(&sh->ready, 1, __ATOMIC_SEQ_CST);
		switch (kind) {
		case WAIT_RECV:
			rc = recv_pay(q, HOOK_CAP, 5000, &p, &torn);
			break;
		case WAIT_SEND:
			rc = send_pay(q, 64, 7, 0, 7, 5000);
			break;
		default:
			rc = mproc_queue_join(q, 5000);
			break;
		}
		/* A recv waiter may be the survivor of the pair: it must get
		 * the parent's message. */
		_exit(rc == 0 && kind == WAIT_RECV && !torn && p.src == 8 ? 0
		                                                          : 1);
	}
	return pid;
}

/* One timed call of the parent's after a waiter died: at once. */
#define check_prompt(call, what)                                              \
	do {                                                                  \
		long long t0_ = check_now_ms();                               \
		int rc_ = (call);                                             \
		long long dt_ = check_now_ms() - t0_;                         \
		ck_assert_msg(rc_ == 0, "%s after a waiter died: %s", what,   \
		              mproc_strerror(rc_));                           \
		ck_assert_msg(dt_ < check_scale_ms(300), "%s took %lld ms "   \
		              "after a waiter died", what, dt_);              \
	} while (0)

/*
 * Dying asleep is not dying with the lock: nothing to repair. A kill at a
 * random moment (not seen asleep) may land while the waiter holds the
 * lock, and then a repair is right. Under valgrind /proc may show a
 * waiter asleep (in valgrind's own work) while its guest code holds the
 * lock, so there the rule is not checked; what each round checks besides
 * (every later call completes, nothing is lost, the queue drains) holds
 * everywhere.
 */
static void waiter_no_repair(mproc_conn *q, uint64_t rec0, int asleep)
{
	if (asleep && !check_slow())
		ck_assert_msg(stats_of(q).recoveries == rec0,
		              "a waiter killed asleep needed a repair");
}

static void waiter_round(mproc_conn *q, mproc_conn *q1, struct wait_shared *sh,
                         int kind, int round)
{
	mproc_conn *wq = kind == WAIT_SEND ? q1 : q;
	pid_t pid, other = -1;
	uint64_t rec0 = stats_of(wq).recoveries;
	struct pay p;
	int torn, asleep;

	/* A full one-message queue for the sender; mail nobody takes for
	 * the joiner. */
	if (kind == WAIT_SEND)
		ck_assert_int_eq(send_pay(q1, 64, 9, 0, (uint64_t)round, 1000),
		                 0);
	if (kind == WAIT_JOIN)
		ck_assert_int_eq(send_pay(q, 64, 9, 0, (uint64_t)round, 1000),
		                 0);

	pid = wait_spawn(wq, sh, kind);
	asleep = wait_blocked(sh, pid, rng_range(0, 3) != 0);
	/* Half the time a second receiver sleeps beside the one that dies:
	 * the next message must still wake it. */
	if (kind == WAIT_RECV && rng_range(0, 1)) {
		other = wait_spawn(q, sh, WAIT_RECV);
		wait_blocked(sh, other, 1);
	}
	kill(pid, SIGKILL);
	check_reap_killed(pid);

	if (kind == WAIT_SEND) {
		check_prompt(recv_pay(q1, HOOK_CAP, 1000, &p, &torn), "recv");
		ck_assert(!torn && p.src == 9 && p.seq == (uint64_t)round);
		check_prompt(send_pay(q1, 64, 8, 0, 1, 1000), "send");
		check_prompt(recv_pay(q1, HOOK_CAP, 1000, &p, &torn), "recv");
		ck_assert(!torn && p.src == 8);
		check_drained(q1);
		waiter_no_repair(q1, rec0, asleep);
		return;
	}
	if (kind == WAIT_JOIN) {
		check_prompt(recv_pay(q, HOOK_CAP, 1000, &p, &torn), "recv");
		ck_assert(!torn && p.src == 9 && p.seq == (uint64_t)round);
	}
	if (other > 0) {
		/* The survivor takes this one. */
		check_prompt(send_pay(q, 64, 8, 0, 1, 1000), "send");
		check_reap_ok(other, check_scale_ms(2000));
	}
	check_prompt(send_pay(q, 64, 8, 0, 2, 1000), "send");
	check_prompt(recv_pay(q, HOOK_CAP, 1000, &p, &torn), "recv");
	ck_assert(!torn && p.src == 8 && p.seq == 2);
	check_prompt(mproc_queue_join(q, 1000), "join");
	check_drained(q);
	waiter_no_repair(q, rec0, asleep);
}

/* Loop index: what the waiter waits in (WAIT_*). */
START_TEST(test_crash_waiter_killed)
{
	struct wait_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(16384, HOOK_CAP, 0, 0);
	mproc_conn *q1 = queue_new(16384, HOOK_CAP, 1, 0);

	rng_seed_auto();
	for (int round = 1; round <= WAIT_ROUNDS; round++)
		waiter_round(q, q1, sh, _i, round);
	mproc_close(q1);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- a lock holder stopped, not dead ---------------------------------- */

/* The queue's two locks: a sender takes only the send lock, everything
 * else only the receive lock, and stats both (send first). */
enum { SIDE_SEND, SIDE_RECV, SIDES };

/* Lock `side` of queue q, in its mapping (where mproc__queue_lock_span
 * says it is). */
static pthread_mutex_t *queue_lock_of(mproc_conn *q, int side)
{
	size_t off, len, map_len;
	uint8_t *base = mproc__queue_mapping(q, &map_len);

	ck_assert_int_eq(mproc__queue_lock_span(side, &off, &len), 0);
	ck_assert(len == sizeof(pthread_mutex_t) && off + len <= map_len &&
	          off % sizeof(void *) == 0);
	return (pthread_mutex_t *)(base + off);
}

struct stop_shared {
	uint32_t in_pred;
	uint32_t release;
};

/* Holds the receive lock (predicates run under it) until released. */
static int stall_pred(const mproc_msg *m, void *arg)
{
	struct stop_shared *sh = arg;
	long long end = check_now_ms() + 20000;

	MPROC__UNUSED(m);
	__atomic_store_n(&sh->in_pred, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&sh->release, __ATOMIC_SEQ_CST) &&
	       check_now_ms() < end)
		usleep(1000);
	return 1;
}

/*
 * In a child: hold the send lock as a sender does between its lock and
 * its unlock, until released, then exit 0. No call runs user code under
 * the send lock, so the child takes the mutex itself.
 */
static void stall_send_lock(pthread_mutex_t *mu, struct stop_shared *sh)
{
	long long end = check_now_ms() + 20000;
	int rc = pthread_mutex_lock(mu);

	if (rc != 0)
		child_fail("send lock: %s", strerror(rc));
	__atomic_store_n(&sh->in_pred, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&sh->release, __ATOMIC_SEQ_CST) &&
	       check_now_ms() < end)
		usleep(1000);
	pthread_mutex_unlock(mu);
	_exit(0);
}

/* A call that must time out, taking about as long as it was allowed. */
#define check_times_out(call, lo_ms, hi_ms, what)                             \
	do {                                                                  \
		long long t0_ = check_now_ms();                               \
		int rc_ = (call);                                             \
		long long dt_ = check_now_ms() - t0_;                         \
		ck_assert_msg(rc_ == -ETIMEDOUT, "%s with a stopped holder: " \
		              "%s", what, mproc_strerror(rc_));               \
		ck_assert_msg(dt_ >= (lo_ms) && dt_ < (hi_ms),                \
		              "%s timed out after %lld ms", what, dt_);       \
	} while (0)

/* A call that must not wait for the stopped holder's lock: it returns
 * want, promptly. */
#define check_not_held(call, want, what)                                      \
	do {                                                                  \
		long long t0_ = check_now_ms();                               \
		int rc_ = (call);                                             \
		long long dt_ = check_now_ms() - t0_;                         \
		ck_assert_msg(rc_ == (want), "%s with the other lock "        \
		              "stopped: %d (%s)", what, rc_,                  \
		              mproc_strerror(rc_));                           \
		ck_assert_msg(dt_ < check_scale_ms(300), "%s took %lld ms "   \
		              "with the other lock stopped", what, dt_);      \
	} while (0)

/* Loop index: which lock the stopped process holds (SIDE_*). */
START_TEST(test_crash_stopped_holder)
{
	struct stop_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(16384, HOOK_CAP, 0, 0);
	pthread_mutex_t *send_lock = queue_lock_of(q, SIDE_SEND);
	uint64_t rec0 = stats_of(q).recoveries;
	int held = _i;
	mproc_stats st;
	pid_t holder, waker;
	long long t0;
	struct pay p;
	int torn, rc, ws;

	ck_assert_int_eq(send_pay(q, 100, 1, 0, 1, 1000), 0);
	ck_assert_int_eq(send_pay(q, 100, 1, 0, 2, 1000), 0);
	holder = check_fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		uint8_t buf[HOOK_CAP];
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

		if (held == SIDE_SEND)
			stall_send_lock(send_lock, sh);
		rc = mproc_recv(q, &m, stall_pred, sh, 5000);
		_exit(rc == 0 && pay_check(buf, m.size, &p) == 0 && p.seq == 1
		              ? 0
		              : 1);
	}
	t0 = check_now_ms();
	while (!__atomic_load_n(&sh->in_pred, __ATOMIC_SEQ_CST)) {
		ck_assert_msg(check_now_ms() - t0 < check_scale_ms(5000),
		              "holder never locked");
		usleep(100);
	}
	ck_assert_int_eq(kill(holder, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(holder, &ws, WUNTRACED), holder);
	ck_assert(WIFSTOPPED(ws));

	/* Stopped is not dead: whoever needs its lock times out, nobody
	 * repairs. Whoever needs only the other lock is not held up. */
	if (held == SIDE_RECV) {
		check_not_held(send_pay(q, 100, 1, 0, 3, 200), 0, "send");
		check_times_out(recv_pay(q, HOOK_CAP, 200, &p, &torn), 150,
		                check_scale_ms(1500), "recv");
		check_times_out(mproc_queue_join(q, 200), 150,
		                check_scale_ms(1500), "join");
		check_times_out(mproc_queue_stats(q, &st), 200,
		                check_scale_ms(5000), "stats");
		check_times_out(mproc_queue_empty(q), 200,
		                check_scale_ms(5000), "empty");
		t0 = check_now_ms();
		rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p, &torn);
		ck_assert_msg(rc == -ETIMEDOUT || rc == -EAGAIN,
		              "polling recv with a stopped holder: %s",
		              mproc_strerror(rc));
		ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(1000));
	} else {
		check_times_out(send_pay(q, 100, 1, 0, 3, 200), 150,
		                check_scale_ms(1500), "send");
		check_times_out(mproc_queue_stats(q, &st), 200,
		                check_scale_ms(5000), "stats");
		t0 = check_now_ms();
		rc = send_pay(q, 100, 1, 0, 3, MPROC_NOWAIT);
		ck_assert_msg(rc == -ETIMEDOUT || rc == -EAGAIN,
		              "polling send with a stopped holder: %s",
		              mproc_strerror(rc));
		ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(1000));
		check_not_held(recv_pay(q, HOOK_CAP, 200, &p, &torn), 0,
		               "recv");
		ck_assert(!torn && p.seq == 1);
		check_not_held(mproc_queue_empty(q), 0, "empty");
		check_not_held(recv_pay(q, HOOK_CAP, 200, &p, &torn), 0,
		               "recv");
		ck_assert(!torn && p.seq == 2);
		check_not_held(mproc_queue_empty(q), 1, "empty");
		check_not_held(mproc_queue_join(q, 200), 0, "join");
	}

	/* Let it go while we wait: our call then goes through. */
	__atomic_store_n(&sh->release, 1, __ATOMIC_SEQ_CST);
	waker = check_fork();
	ck_assert_int_ge(waker, 0);
	if (waker == 0) {
		usleep(300 * 1000);
		_exit(kill(holder, SIGCONT) == 0 ? 0 : 1);
	}
	t0 = check_now_ms();
	if (held == SIDE_RECV) {
		/* The holder takes the first; our receive the second. */
		rc = recv_pay(q, HOOK_CAP, 5000, &p, &torn);
		ck_assert_msg(rc == 0, "recv after SIGCONT: %s",
		              mproc_strerror(rc));
		ck_assert(!torn && p.seq == 2);
	} else {
		rc = send_pay(q, 100, 1, 0, 3, 5000);
		ck_assert_msg(rc == 0, "send after SIGCONT: %s",
		              mproc_strerror(rc));
	}
	ck_assert_int_ge(check_now_ms() - t0, 200);
	check_reap_ok(waker, 5000);
	check_reap_ok(holder, 5000);

	st = stats_of(q);
	ck_assert_int_eq(st.recoveries, rec0);
	/* What the send of seq 3 left. */
	rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p, &torn);
	ck_assert_msg(rc == 0, "recv of seq 3: %s", mproc_strerror(rc));
	ck_assert(!torn && p.seq == 3);
	check_drained(q);
	check_round_trip(q, HOOK_CAP);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- a lock holder killed while others wait for the lock -------------- */

#define HELD_ROUNDS 100

struct held_shared {
	uint32_t in_pred;
	uint32_t ready[2];
	uint64_t got[2]; /* what each receiving waiter took */
};

/* Takes the receive lock (predicates run under it) and keeps it until
 * killed. */
static int hold_pred(const mproc_msg *m, void *arg)
{
	struct held_shared *sh = arg;
	long long end = check_now_ms() + 10000;

	MPROC__UNUSED(m);
	__atomic_store_n(&sh->in_pred, 1, __ATOMIC_SEQ_CST);
	while (check_now_ms() < end)
		usleep(1000);
	return 0;
}

/*
 * A process dies holding a lock while two others are blocked on it: one
 * in a timed wait, one in an untimed one (MPROC_FOREVER, or mproc_send,
 * which waits for ever). Even rounds: the send lock (held as a sender
 * holds it, see stall_send_lock), two senders wait. Odd rounds: the
 * receive lock (held in a predicate), two receivers wait. Both must get
 * the lock at once, one of them repairs, and nothing is lost.
 */
START_TEST(test_crash_holder_killed)
{
	struct held_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(16384, HOOK_CAP, 0, 0);
	pthread_mutex_t *send_lock = queue_lock_of(q, SIDE_SEND);
	uint64_t rec = 0;

	for (int round = 1; round <= HELD_ROUNDS; round++) {
		int side = round % 2 ? SIDE_RECV : SIDE_SEND;
		int got[4] = { 0, 0, 0, 0 };
		pid_t holder, w[2];
		long long t0;

		memset(sh, 0, sizeof(*sh));
		if (side == SIDE_RECV)
			for (uint64_t s = 1; s <= 2; s++)
				ck_assert_int_eq(send_pay(q, 100, 1,
				                          (uint32_t)round, s,
				                          1000),
				                 0);
		holder = check_fork();
		ck_assert_int_ge(holder, 0);
		if (holder == 0) {
			uint8_t buf[HOOK_CAP];
			mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

			if (side == SIDE_SEND) {
				if (pthread_mutex_lock(send_lock) != 0)
					_exit(4);
				__atomic_store_n(&sh->in_pred, 1,
				                 __ATOMIC_SEQ_CST);
				for (int i = 0; i < 10000; i++)
					usleep(1000);
			} else {
				mproc_recv(q, &m, hold_pred, sh, 5000);
			}
			_exit(3);
		}
		t0 = check_now_ms();
		while (!__atomic_load_n(&sh->in_pred, __ATOMIC_SEQ_CST)) {
			ck_assert_msg(check_now_ms() - t0 <
			                  check_scale_ms(5000),
			              "holder never locked");
			usleep(50);
		}
		for (int i = 0; i < 2; i++) {
			w[i] = check_fork();
			ck_assert_int_ge(w[i], 0);
			if (w[i] == 0) {
				struct pay p;
				uint8_t buf[64];
				int torn = 0, rc;

				__atomic_store_n(&sh->ready[i], 1,
				                 __ATOMIC_SEQ_CST);
				if (side == SIDE_RECV) {
					rc = recv_pay(q, HOOK_CAP,
					              i == 0 ? 5000
					                     : MPROC_FOREVER,
					              &p, &torn);
					rc = rc == 0 && !torn && p.src == 1 &&
					     p.round == (uint32_t)round;
					if (rc)
						sh->got[i] = p.seq;
				} else if (i == 0) {
					rc = send_pay(q, 100, 2,
					              (uint32_t)round, 2,
					              5000) == 0;
				} else {
					pay_make(buf, sizeof(buf), 2,
					         (uint32_t)round, 3);
					rc = mproc_send(q, MPROC_USER, 0, buf,
					                sizeof(buf)) == 0;
				}
				_exit(rc ? 0 : 1);
			}
		}
		for (int i = 0; i < 2; i++) {
			t0 = check_now_ms();
			while (!__atomic_load_n(&sh->ready[i],
			                        __ATOMIC_SEQ_CST) &&
			       check_now_ms() - t0 < 5000)
				usleep(50);
			t0 = check_now_ms();
			while (!check_proc_sleeping(w[i]) &&
			       check_now_ms() - t0 < 1000)
				usleep(50);
		}
		kill(holder, SIGKILL);
		check_reap_killed(holder);
		/* Woken by the kernel's robust-list walk, not by a timeout. */
		for (int i = 0; i < 2; i++)
			check_reap_ok(w[i], check_scale_ms(2000));

		/* Receivers: one took each. Senders: both are there, whole. */
		if (side == SIDE_RECV)
			for (int i = 0; i < 2; i++)
				if (sh->got[i] >= 1 && sh->got[i] <= 2)
					got[sh->got[i]]++;
		for (;;) {
			struct pay p;
			int torn, rc = recv_pay(q, HOOK_CAP, MPROC_NOWAIT, &p,
			                        &torn);

			if (rc == -EAGAIN)
				break;
			expect_msg(rc == 0 && !torn && p.src == 2 &&
			               p.seq >= 2 && p.seq <= 3 &&
			               p.round == (uint32_t)round,
			           "round %d: unexpected message", round);
			got[p.seq]++;
		}
		if (side == SIDE_RECV)
			expect_msg(got[1] == 1 && got[2] == 1 && got[3] == 0,
			           "round %d: receivers took %llu and %llu",
			           round, (unsigned long long)sh->got[0],
			           (unsigned long long)sh->got[1]);
		else
			expect_msg(got[1] == 0 && got[2] == 1 && got[3] == 1,
			           "round %d: sent 2 and 3, got %d and %d",
			           round, got[2], got[3]);
		expect_msg(stats_of(q).recoveries == ++rec,
		           "round %d: no repair", round);
		check_drained(q);
	}
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- a scribbled mapping ---------------------------------------------- */

/*
 * A mirror of the layout at the top of src/queue.c (QUEUE_LAYOUT 3), so the
 * tests can aim at named fields. corrupt_open checks it against a live
 * queue (magic, layout, sizes, both locks' places, every word after known
 * sends, receives and task_dones, both journals clear, the stats): if
 * queue.c changes its layout these tests say so instead of scribbling in
 * the wrong place.
 */
#define M_QUEUE_MAGIC 0x6d70726f63517565ull
#define M_LAYOUT 3u
#define M_REC_MAGIC 0x5245434du
#define M_REC_CONSUMED (1u << 0)
#define M_REC_LEASED (1u << 1)
#define M_NO_MARK UINT64_MAX

struct m_rec {
	uint32_t magic;
	uint32_t len;
	uint32_t flags;
	uint32_t attempts;
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;
	int32_t lease_pid;
	uint32_t reserved;
	uint64_t sent_ns;
	uint64_t id;
};

/* The send side's words, and the receive side's (queue.c's P_* and C_*).
 * queued = sent - gone - leased, unfinished = sent - gone + taken. */
enum { M_P_SENT, M_P_TAIL, M_P_WORDS };
enum {
	M_C_HEAD,
	M_C_GONE,
	M_C_LEASED,
	M_C_TAKEN,
	M_C_RECEIVED,
	M_C_PURGED,
	M_C_GEN,
	M_C_WORDS
};
#define M_SIDE_WORDS 8

struct m_mark {
	uint64_t off; /* M_NO_MARK: none */
	uint32_t flags;
	uint32_t attempts;
	int32_t lease_pid;
	uint32_t reserved;
};

#define M_JOURNAL_WORDS 4
struct m_journal {
	uint32_t valid;
	uint32_t changed; /* bit i: the side's word i is new in val[] */
	struct m_mark mark;
	uint64_t val[M_JOURNAL_WORDS]; /* new values, in word order */
};

struct m_side {
	pthread_mutex_t lock __attribute__((aligned(64)));
	uint64_t recoveries;
	struct m_journal journal __attribute__((aligned(64)));
	uint64_t w[M_SIDE_WORDS] __attribute__((aligned(64)));
};

struct m_shared {
	uint64_t magic;
	uint32_t layout;
	uint32_t header_size;
	uint64_t capacity;
	uint32_t max_payload;
	uint32_t max_messages;
	uint32_t flags;
	uint32_t reserved0;
	struct m_side send; /* tail, sent */
	struct m_side recv; /* head and the counts of what left */
	uint32_t data_seq __attribute__((aligned(64)));
	uint32_t space_seq;
	uint32_t done_seq;
	uint32_t shutdown;
	uint32_t recv_waiting;
	uint32_t send_waiting;
	uint32_t join_waiting;
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct m_rec) == 56, "record header mirror");
_Static_assert(sizeof(struct m_journal) == 64, "journal mirror");

/* Fill j's words as queue_commit does for the change from cur to ns (the
 * first n words of a side). */
static void m_journal_set(struct m_journal *j, const uint64_t *cur,
                          const uint64_t *ns, unsigned n)
{
	unsigned k = 0;

	j->changed = 0;
	for (unsigned i = 0; i < n; i++) {
		if (cur[i] == ns[i])
			continue;
		ck_assert_uint_lt(k, M_JOURNAL_WORDS);
		j->val[k++] = ns[i];
		j->changed |= 1u << i;
	}
}

#define M_HDR ((uint64_t)sizeof(struct m_rec))
#define M_LEN(size) (((M_HDR + (size)) + 7u) & ~(uint64_t)7u)

#define CQ_CAP 2048u  /* a power of two: ring positions are masked */
#define CQ_CAP_ODD 2008u /* not one: ring positions are divided */
#define CQ_PAYLOAD 200u

struct cq {
	mproc_conn *q;
	struct m_shared *s;
	uint8_t *ring;
	size_t len;
	uint64_t cap;
	int manual;
};

static struct m_side *cq_side(const struct cq *c, int side)
{
	return side == SIDE_SEND ? &c->s->send : &c->s->recv;
}

/* How many words side uses. */
static unsigned side_words(int side)
{
	return side == SIDE_SEND ? M_P_WORDS : M_C_WORDS;
}

static uint64_t cq_head(const struct cq *c)
{
	return c->s->recv.w[M_C_HEAD];
}

static uint64_t cq_tail(const struct cq *c)
{
	return c->s->send.w[M_P_TAIL];
}

/* The counts queue.c derives from the words. */
static uint64_t cq_queued(const struct cq *c)
{
	return c->s->send.w[M_P_SENT] - c->s->recv.w[M_C_GONE] -
	       c->s->recv.w[M_C_LEASED];
}

static uint64_t cq_unfinished(const struct cq *c)
{
	return c->s->send.w[M_P_SENT] - c->s->recv.w[M_C_GONE] +
	       c->s->recv.w[M_C_TAKEN];
}

static uint64_t ring_u64(const struct cq *c, uint64_t off)
{
	uint64_t v;

	memcpy(&v, c->ring + off % c->cap, sizeof(v));
	return v;
}

/* A pointer to a header field of the record at off (never straddles). */
static void *rec_at(const struct cq *c, uint64_t off, size_t field)
{
	return c->ring + (off + field) % c->cap;
}

/* Sends n whole messages of random sizes, seq first, first + 1, ...;
 * returns how many fit. */
static int cq_fill_from(struct cq *c, int first, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		uint32_t size = rng_range(sizeof(struct pay), CQ_PAYLOAD);

		if (send_pay(c->q, size, 3, 0, (uint64_t)(first + i),
		             MPROC_NOWAIT) != 0)
			break;
	}
	return i;
}

static int cq_fill(struct cq *c, int n)
{
	return cq_fill_from(c, 0, n);
}

/* Fills the ring until not even the smallest message fits; returns how
 * many it sent (seq 0, 1, ...). */
static int cq_fill_up(struct cq *c)
{
	int n = cq_fill(c, 64);
	uint64_t room;

	while ((room = c->cap - (cq_tail(c) - cq_head(c))) >=
	       M_LEN(sizeof(struct pay))) {
		uint64_t size = room - M_HDR;

		if (size > CQ_PAYLOAD)
			size = CQ_PAYLOAD;
		ck_assert_int_eq(send_pay(c->q, (uint32_t)size, 3, 0,
		                          (uint64_t)n, MPROC_NOWAIT),
		                 0);
		n++;
	}
	return n;
}

static int pred_odd_seq(const mproc_msg *m, void *arg)
{
	struct pay p;

	MPROC__UNUSED(arg);
	return m->size >= sizeof(p) && memcpy(&p, m->data, sizeof(p)) &&
	       p.seq % 2 == 1;
}

/* Records from head to tail, as the mirror sees them (stops at garbage);
 * *end (if not NULL): where the walk stopped. */
static int cq_records(const struct cq *c, uint64_t *offs, int max,
                      uint64_t *end)
{
	uint64_t off = cq_head(c);
	int n = 0;

	while (off < cq_tail(c) && n < max) {
		struct m_rec r;

		for (size_t i = 0; i < sizeof(r); i += 8) {
			uint64_t w = ring_u64(c, off + i);

			memcpy((uint8_t *)&r + i, &w, 8);
		}
		if (r.magic != M_REC_MAGIC || r.len < M_HDR)
			break;
		offs[n++] = off;
		off += r.len;
	}
	if (end != NULL)
		*end = off;
	return n;
}

#define mirror_check(cond, what)                                              \
	ck_assert_msg((cond), "the layout mirror in check_crash.c is out of " \
	              "date: %s", what)

/* The words of both sides as corrupt_open expects them. */
static void mirror_words(const struct cq *c, uint64_t sent, uint64_t gone,
                         uint64_t taken, const char *when)
{
	const struct m_shared *s = c->s;

	mirror_check(s->send.w[M_P_SENT] == sent &&
	             s->recv.w[M_C_GONE] == gone &&
	             s->recv.w[M_C_RECEIVED] == gone &&
	             s->recv.w[M_C_TAKEN] == taken &&
	             s->recv.w[M_C_LEASED] == 0 && s->recv.w[M_C_PURGED] == 0 &&
	             s->recv.w[M_C_GEN] == 0,
	             when);
	mirror_check(cq_queued(c) == sent - gone &&
	             cq_unfinished(c) == sent - gone + taken, when);
	mirror_check(cq_head(c) % 8 == 0 && cq_tail(c) % 8 == 0 &&
	             cq_head(c) <= cq_tail(c) &&
	             cq_tail(c) - cq_head(c) <= c->cap, when);
	mirror_check(s->send.journal.valid == 0 && s->recv.journal.valid == 0 &&
	             s->send.journal.mark.off == M_NO_MARK, when);
	for (unsigned i = M_P_WORDS; i < M_SIDE_WORDS; i++)
		mirror_check(s->send.w[i] == 0, "an unused send word is set");
	for (unsigned i = M_C_WORDS; i < M_SIDE_WORDS; i++)
		mirror_check(s->recv.w[i] == 0,
		             "an unused receive word is set");
}

/*
 * corrupt_open: a fresh queue holding a few messages (some taken out of
 * the middle, so consumed records and a moved head exist), its layout
 * checked against the mirror.
 */
static void corrupt_open(struct cq *c, int manual, int odd_cap)
{
	size_t lock_off[SIDES], lock_len[SIDES], o, l;
	uint8_t buf[CQ_PAYLOAD];
	uint64_t offs[64], end, head0;
	mproc_stats st;
	mproc_msg m;
	int n0, n, rc;

	memset(c, 0, sizeof(*c));
	c->manual = manual;
	c->q = queue_new(odd_cap ? CQ_CAP_ODD : CQ_CAP, CQ_PAYLOAD, 0,
	                 manual ? MPROC_QUEUE_MANUAL_DONE : 0);
	c->s = mproc__queue_mapping(c->q, &c->len);
	for (int side = 0; side < SIDES; side++)
		ck_assert_int_eq(mproc__queue_lock_span(side, &lock_off[side],
		                                        &lock_len[side]),
		                 0);
	ck_assert_int_eq(mproc__queue_lock_span(SIDES, &o, &l), -1);
	ck_assert_int_eq(mproc__queue_lock_span(-1, &o, &l), -1);
	c->cap = odd_cap ? CQ_CAP_ODD : CQ_CAP;
	c->ring = (uint8_t *)c->s + sizeof(struct m_shared);
	mirror_check(c->s != NULL && c->s->magic == M_QUEUE_MAGIC &&
	             c->s->layout == M_LAYOUT &&
	             c->s->header_size == sizeof(struct m_shared) &&
	             c->s->capacity == c->cap &&
	             c->s->max_payload == CQ_PAYLOAD &&
	             c->s->max_messages == 0 &&
	             c->s->flags == (manual ? MPROC_QUEUE_MANUAL_DONE : 0u) &&
	             c->len == sizeof(struct m_shared) + c->cap,
	             "identity and sizes");
	mirror_check(lock_off[SIDE_SEND] ==
	                     offsetof(struct m_shared, send.lock) &&
	             lock_off[SIDE_RECV] ==
	                     offsetof(struct m_shared, recv.lock) &&
	             lock_len[SIDE_SEND] == sizeof(pthread_mutex_t) &&
	             lock_len[SIDE_RECV] == sizeof(pthread_mutex_t),
	             "the locks' places");
	mirror_check(c->s->recv.journal.mark.off == M_NO_MARK &&
	             c->s->send.recoveries == 0 && c->s->recv.recoveries == 0,
	             "a fresh queue");
	mirror_words(c, 0, 0, 0, "a fresh queue");
	mirror_check(cq_head(c) == 0 && cq_tail(c) == 0, "a fresh queue");

	/* Move the head away from 0 so records wrap at the ring's end. */
	n0 = cq_fill(c, (int)rng_range(0, 6));
	mirror_words(c, (uint64_t)n0, 0, 0, "after sends");
	mirror_check(cq_records(c, offs, 64, &end) == n0 && end == cq_tail(c),
	             "the records after sends");
	for (int i = 0; i < n0; i++) {
		int torn;
		struct pay p;

		ck_assert_int_eq(recv_pay(c->q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
		                          &torn), 0);
	}
	mirror_words(c, (uint64_t)n0, (uint64_t)n0,
	             manual ? (uint64_t)n0 : 0, "after receives");
	mirror_check(cq_head(c) == cq_tail(c), "the head after receives");
	head0 = cq_head(c);
	if (manual)
		for (int i = 0; i < n0; i++)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	n = cq_fill(c, (int)rng_range(3, 12));
	mirror_words(c, (uint64_t)(n0 + n), (uint64_t)n0, 0,
	             "after more sends");
	mirror_check(cq_head(c) == head0 &&
	             cq_records(c, offs, 64, &end) == n && end == cq_tail(c),
	             "the records after more sends");
	st = stats_of(c->q);
	mirror_check(st.sent == c->s->send.w[M_P_SENT] &&
	             st.received == c->s->recv.w[M_C_RECEIVED] &&
	             st.queued == (uint64_t)n && st.unfinished == (uint64_t)n &&
	             st.bytes == cq_tail(c) - cq_head(c) &&
	             st.purged == 0 && st.recoveries == 0 &&
	             st.capacity == c->cap,
	             "the stats");
	/* Holes: take some odd ones out of the middle. */
	for (int i = (int)rng_range(0, 2); i > 0; i--) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = sizeof(buf);
		rc = mproc_recv(c->q, &m, pred_odd_seq, NULL, MPROC_NOWAIT);
		if (rc == 0 && manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
}

static void corrupt_close(struct cq *c)
{
	mproc_close(c->q);
	memset(c, 0, sizeof(*c));
}

/*
 * Kill a child while it holds lock side, so the next call that takes it
 * repairs: the LOCKED hook ends it right after the lock is taken, before
 * anything changed, in a send (the send lock) or in an empty (the receive
 * lock).
 */
static void cq_dead_owner(struct cq *c, int side)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc__crash_point = MPROC__CRASH_LOCKED;
		mproc__crash_countdown = 1;
		if (side == SIDE_SEND)
			send_pay(c->q, sizeof(struct pay), 5, 0, 0,
			         MPROC_NOWAIT);
		else
			mproc_queue_empty(c->q);
		_exit(3);
	}
	check_reap_killed(pid);
}

static volatile uint8_t pred_sink;

/* Reads every byte the queue shows it (the sanitizer checks them). */
static int pred_read_all(const mproc_msg *m, void *arg)
{
	const uint8_t *p = m->data;
	uint8_t x = 0;

	if (m->size > CQ_PAYLOAD || (m->size > 0 && p == NULL))
		ck_abort_msg("predicate shown %u bytes at %p", m->size,
		             m->data);
	for (uint32_t i = 0; i < m->size; i++)
		x ^= p[i];
	pred_sink = x;
	return arg != NULL || (rng_next() & 1);
}

static void dead_read_all(const mproc_msg *m, uint32_t attempts, void *arg)
{
	MPROC__UNUSED(attempts);
	pred_read_all(m, arg);
}

enum {
	CALL_SEND, CALL_RECV, CALL_RECV_SMALL, CALL_RECV_PRED, CALL_STATS,
	CALL_EMPTY, CALL_JOIN, CALL_PURGE, CALL_DONE, CALL_LEASE,
	CALL_LEASE_DONE, CALL_RELEASE, CALL_SHUTDOWN, CALL_KINDS
};

/*
 * corrupt_call runs one call on a possibly scribbled queue and checks it
 * returned something the contract allows, promptly. Returns its result.
 */
static int corrupt_call(struct cq *c, int kind)
{
	uint8_t *buf = malloc(CQ_PAYLOAD);
	uint32_t cap = CQ_PAYLOAD;
	struct mproc__lease lease;
	long long t0 = check_now_ms();
	mproc_stats st;
	mproc_msg m;
	int rc = 0, ok = 0;

	ck_assert_ptr_nonnull(buf);
	memset(&m, 0, sizeof(m));
	m.data = buf;
	m.capacity = CQ_PAYLOAD;
	switch (kind) {
	case CALL_SEND:
		rc = send_pay(c->q,
		              rng_range(0, 1) ? 0 : rng_range(32, CQ_PAYLOAD),
		              4, 0, 1, MPROC_NOWAIT);
		if (rc == -EINVAL) /* size 0 with a NULL-free buffer is fine */
			rc = -EPROTO - 1000;
		ok = rc == 0 || rc == -EAGAIN || rc == -EPROTO ||
		     rc == -ESHUTDOWN;
		break;
	case CALL_RECV_SMALL:
		cap = rng_range(0, 64);
		m.capacity = cap;
		/* fall through */
	case CALL_RECV:
		rc = mproc_recv(c->q, &m, NULL, NULL, MPROC_NOWAIT);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap) ||
		     (rc == -EMSGSIZE && m.size > cap && m.size <= CQ_PAYLOAD);
		break;
	case CALL_RECV_PRED:
		rc = mproc_recv(c->q, &m, pred_read_all, NULL, MPROC_NOWAIT);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap);
		break;
	case CALL_STATS:
		rc = mproc_queue_stats(c->q, &st);
		ok = rc == -EPROTO ||
		     (rc == 0 && st.bytes <= c->cap &&
		      st.queued * M_HDR <= st.bytes &&
		      st.unfinished >= st.queued && st.capacity == c->cap);
		break;
	case CALL_EMPTY:
		rc = mproc_queue_empty(c->q);
		ok = rc == 0 || rc == 1 || rc == -EPROTO;
		break;
	case CALL_JOIN:
		rc = mproc_queue_join(c->q, MPROC_NOWAIT);
		ok = rc == 0 || rc == -EAGAIN || rc == -EPROTO ||
		     rc == -ESHUTDOWN;
		break;
	case CALL_PURGE:
		rc = mproc_queue_purge(c->q);
		ok = rc >= 0 || rc == -EPROTO;
		break;
	case CALL_DONE:
		rc = mproc_task_done(c->q);
		ok = rc == -EINVAL || (c->manual && (rc == 0 || rc == -EPROTO));
		break;
	case CALL_LEASE:
		rc = mproc__queue_recv_lease(c->q, &m, NULL, NULL, MPROC_NOWAIT,
		                             &lease);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap);
		if (rc == 0 && rng_range(0, 1)) {
			rc = mproc__queue_lease_done(c->q, &lease);
			ok = rc == 0 || rc == -ENOENT || rc == -EPROTO;
		}
		break;
	case CALL_LEASE_DONE:
		lease.cookie = rng_range(0, 1)
		                   ? rng_next64()
		                   : cq_head(c) + 8 * rng_range(0, 64);
		lease.attempts = 1;
		rc = mproc__queue_lease_done(c->q, &lease);
		ok = rc == 0 || rc == -ENOENT || rc == -EPROTO;
		break;
	case CALL_RELEASE:
		rc = mproc__queue_lease_release(c->q, rng_range(0, 1) ? getpid()
		                                                      : 12345,
		                                rng_range(0, 2), dead_read_all,
		                                NULL);
		ok = rc >= 0 || rc == -EPROTO;
		break;
	case CALL_SHUTDOWN:
		rc = mproc_queue_shutdown(c->q);
		ok = rc == 0 || rc == -EPROTO;
		break;
	}
	free(buf);
	expect_msg(ok, "call %d on a scribbled queue returned %d (%s)", kind,
	           rc, mproc_strerror(rc));
	expect_msg(check_now_ms() - t0 < check_scale_ms(1000),
	           "call %d took %lld ms", kind, check_now_ms() - t0);
	return rc;
}

/* Every call but shutdown, once each; returns how many did not give
 * -EPROTO (task_done on an automatic queue, -EINVAL, does not count). */
static int corrupt_all_calls(struct cq *c)
{
	int n = 0;

	for (int k = 0; k < CALL_SHUTDOWN; k++) {
		int rc = corrupt_call(c, k);

		if (rc != -EPROTO && !(k == CALL_DONE && rc == -EINVAL))
			n++;
	}
	return n;
}

/* Which locks call kind takes (bit SIDE_SEND, bit SIDE_RECV). join, empty
 * and peek also try the send lock, never waiting, to roll a dead sender's
 * journal forward; that is not a lock they need. */
static unsigned call_locks(int kind)
{
	switch (kind) {
	case CALL_SEND:
		return 1u << SIDE_SEND;
	case CALL_STATS:
		return 1u << SIDE_SEND | 1u << SIDE_RECV;
	case CALL_SHUTDOWN:
		return 0;
	default:
		return 1u << SIDE_RECV;
	}
}

/*
 * Every call but shutdown, once each, with side's lock made unusable (its
 * journal valid, its owner alive): those that take that lock must refuse
 * (-EPROTO); those that do not must not (each side's journal guards its
 * own words). Returns how many of the first did not refuse.
 */
static int corrupt_calls_side(struct cq *c, int side)
{
	int n = 0;

	for (int k = 0; k < CALL_SHUTDOWN; k++) {
		int rc = corrupt_call(c, k);

		if (k == CALL_DONE && rc == -EINVAL)
			continue;
		if (call_locks(k) & (1u << side)) {
			if (rc != -EPROTO)
				n++;
		} else {
			expect_msg(rc != -EPROTO, "call %d refused: only the "
			           "%s journal is bad", k,
			           side == SIDE_SEND ? "send" : "receive");
		}
	}
	return n;
}

/* Undo what working calls left open: leases this process holds, and
 * (MANUAL_DONE) tasks taken and not done. */
static void cq_settle(struct cq *c)
{
	int rc = mproc__queue_lease_release(c->q, getpid(), 0, NULL, NULL);

	ck_assert_msg(rc >= 0, "lease_release: %s", mproc_strerror(rc));
	if (!c->manual)
		return;
	while ((rc = mproc_task_done(c->q)) == 0)
		;
	ck_assert_msg(rc == -EINVAL, "task_done: %s", mproc_strerror(rc));
}

/* After a repair: the queue serves its messages whole and works. */
static void corrupt_check_healthy(struct cq *c)
{
	for (;;) {
		struct pay p;
		int torn,
		    rc = recv_pay(c->q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);

		if (rc == -EAGAIN)
			break;
		ck_assert_msg(rc == 0 && !torn, "restored queue: %s%s",
		              mproc_strerror(rc), torn ? " (torn)" : "");
		if (c->manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
	check_drained(c->q);
	check_round_trip(c->q, CQ_PAYLOAD);
	if (c->manual)
		ck_assert_int_eq(mproc_task_done(c->q), 0);
}

/*
 * After calls that worked on a queue with one side's journal refusing:
 * cq_settle, then as corrupt_check_healthy, but CALL_SEND's messages may
 * be empty, and a lease released and taken again counts two receives.
 */
static void corrupt_check_settled(struct cq *c)
{
	uint8_t *buf = malloc(CQ_PAYLOAD);
	mproc_stats st;
	struct pay p;
	mproc_msg m;
	int rc;

	ck_assert_ptr_nonnull(buf);
	cq_settle(c);
	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = CQ_PAYLOAD;
		rc = mproc_recv(c->q, &m, NULL, NULL, MPROC_NOWAIT);
		if (rc == -EAGAIN)
			break;
		ck_assert_msg(rc == 0 && m.request == MPROC_USER &&
		              (m.size == 0 || pay_check(buf, m.size, &p) == 0),
		              "restored queue: %s (size %u)",
		              mproc_strerror(rc), m.size);
		if (c->manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
	free(buf);
	st = stats_of(c->q);
	ck_assert_msg(st.queued == 0 && st.bytes == 0 && st.unfinished == 0 &&
	              st.received >= st.sent,
	              "after draining: queued %llu bytes %llu unfinished "
	              "%llu sent %llu received %llu",
	              (unsigned long long)st.queued,
	              (unsigned long long)st.bytes,
	              (unsigned long long)st.unfinished,
	              (unsigned long long)st.sent,
	              (unsigned long long)st.received);
	ck_assert_int_eq(mproc_queue_empty(c->q), 1);
	ck_assert_int_eq(mproc_queue_join(c->q, MPROC_NOWAIT), 0);
	check_round_trip(c->q, CQ_PAYLOAD);
	if (c->manual)
		ck_assert_int_eq(mproc_task_done(c->q), 0);
}

/* Garbage of the kinds that slip past naive checks. */
static uint64_t garbage(uint64_t orig, uint64_t cap)
{
	switch (rng_range(0, 11)) {
	case 0: return orig + 8;
	case 1: return orig - 8;
	case 2: return orig + 1;
	case 3: return orig + cap;
	case 4: return orig + M_HDR;
	case 5: return 0;
	case 6: return UINT64_MAX;
	case 7: return UINT64_MAX - 7;
	case 8: return cap;
	case 9: return (uint64_t)1 << 63;
	case 10: return orig ^ ((uint64_t)1 << rng_range(0, 63));
	default: return rng_next64();
	}
}

static void poke64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static void poke32(void *p, uint32_t v) { memcpy(p, &v, 4); }

#define CORRUPT_ROUNDS 40

/* The identity fields: every call gives -EPROTO; put back, all is well. */
START_TEST(test_crash_corrupt_identity)
{
	static const struct { size_t off, width; } f[] = {
		{ offsetof(struct m_shared, magic), 8 },
		{ offsetof(struct m_shared, layout), 4 },
		{ offsetof(struct m_shared, header_size), 4 },
		{ offsetof(struct m_shared, capacity), 8 },
		{ offsetof(struct m_shared, max_payload), 4 },
		{ offsetof(struct m_shared, max_messages), 4 },
		{ offsetof(struct m_shared, flags), 4 },
	};

	rng_seed_auto();
	for (int round = 0; round < CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			uint8_t save[8], *field;
			uint64_t v;
			mproc_conn *view = NULL;

			corrupt_open(&c, round % 2, round % 4 == 1);
			field = (uint8_t *)c.s + f[i].off;
			memcpy(save, field, f[i].width);
			do {
				v = garbage(0, c.cap);
				if (f[i].width == 8)
					poke64(field, v);
				else
					poke32(field, (uint32_t)v);
			} while (memcmp(save, field, f[i].width) == 0);
			ck_assert_int_eq(corrupt_all_calls(&c), 0);
			ck_assert_int_eq(mproc_queue_shutdown(c.q), -EPROTO);
			/* A bad identity cannot be attached. (The geometry
			 * fields are the attacher's to believe: a mapping has
			 * no other record of them.) */
			if (i < 3)
				ck_assert_int_eq(mproc__queue_attach(&view, c.s,
				                                     c.len),
				                 -EPROTO);
			memcpy(field, save, f[i].width);
			ck_assert_int_eq(mproc__queue_attach(&view, c.s, c.len),
			                 0);
			ck_assert_int_eq(mproc_queue_empty(view), 0);
			mproc_close(view);
			ck_assert_int_eq(stats_of(c.q).recoveries, 0);
			corrupt_check_healthy(&c);
			corrupt_close(&c);
		}
	}
}
END_TEST

/*
 * The words of both sides: -EPROTO or a working call, never a crash or a
 * hang; when every call that takes the receive lock refused, putting the
 * word back makes all well. (Receivers check both sides' words against
 * each other and the ring on every call. A sender trusts its own side's
 * words and reads the head only when its room runs short, so a send is
 * not expected to refuse: it runs on the garbage half the time, and the
 * queue is then checked for health only if the send did not go through.)
 */
START_TEST(test_crash_corrupt_state)
{
	static const struct {
		int side;
		unsigned w;
		int guards; /* 0: a total or unused word, nothing refuses */
	} f[] = {
		{ SIDE_SEND, M_P_SENT, 1 },
		{ SIDE_SEND, M_P_TAIL, 1 },
		{ SIDE_SEND, M_P_WORDS, 0 },
		{ SIDE_RECV, M_C_HEAD, 1 },
		{ SIDE_RECV, M_C_GONE, 1 },
		{ SIDE_RECV, M_C_LEASED, 1 },
		{ SIDE_RECV, M_C_TAKEN, 1 },
		{ SIDE_RECV, M_C_RECEIVED, 0 },
		{ SIDE_RECV, M_C_PURGED, 0 },
		{ SIDE_RECV, M_C_GEN, 0 },
		{ SIDE_RECV, M_C_WORDS, 0 },
	};
	int refused = 0, total = 0;

	rng_seed_auto();
	for (int round = 0; round < CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			uint64_t *field, save, v;
			int worked = 0, send_rc = 1;

			corrupt_open(&c, round % 2, round % 4 == 1);
			if (round % 3 == 2) /* garbage meets a repair */
				cq_dead_owner(&c, (int)rng_range(0, 1));
			field = &cq_side(&c, f[i].side)->w[f[i].w];
			save = *field;
			do
				v = garbage(save, c.cap);
			while (v == save);
			*field = v;
			for (int k = 0; k < CALL_SHUTDOWN; k++) {
				int rc;

				if (k == CALL_SEND)
					continue;
				rc = corrupt_call(&c, k);
				if (rc != -EPROTO &&
				    !(k == CALL_DONE && rc == -EINVAL))
					worked++;
			}
			if (!f[i].guards || worked > 0 || rng_range(0, 1))
				send_rc = corrupt_call(&c, CALL_SEND);
			total += f[i].guards;
			if (!f[i].guards) {
				ck_assert_msg(worked > 0, "word %u of side %d "
				              "refused", f[i].w, f[i].side);
			} else if (worked == 0) {
				refused++;
				*field = save;
				if (send_rc != 0)
					corrupt_check_healthy(&c);
			}
			for (int k = 0; k < 20; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			corrupt_close(&c);
		}
	}
	/* Most garbage is caught, not served. */
	ck_assert_msg(refused > total / 3, "only %d of %d scribbles refused",
	              refused, total);
}
END_TEST

/* Record headers: what comes before the scribbled record is served whole
 * and in order; then -EPROTO or working calls. */
START_TEST(test_crash_corrupt_records)
{
	static const struct { size_t off, width; } f[] = {
		{ offsetof(struct m_rec, magic), 4 },
		{ offsetof(struct m_rec, len), 4 },
		{ offsetof(struct m_rec, size), 4 },
		{ offsetof(struct m_rec, flags), 4 },
		{ offsetof(struct m_rec, attempts), 4 },
		{ offsetof(struct m_rec, request), 4 },
		{ offsetof(struct m_rec, recipient), 4 },
		{ offsetof(struct m_rec, lease_pid), 4 },
		{ offsetof(struct m_rec, sent_ns), 8 },
	};
	uint64_t offs[64];

	rng_seed_auto();
	for (int round = 0; round < 3 * CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			int n, victim, served = 0;
			uint64_t v, last = 0;
			uint32_t before[64];
			uint8_t *field;

			corrupt_open(&c, 0, round % 4 == 1);
			n = cq_records(&c, offs, 64, NULL);
			ck_assert_int_gt(n, 0);
			victim = (int)rng_range(0, (uint32_t)n - 1);
			/* The messages still queued before the victim. */
			for (int j = 0; j < victim; j++) {
				uint32_t fl = *(uint32_t *)rec_at(&c, offs[j],
				        offsetof(struct m_rec, flags));

				before[j] = fl & M_REC_CONSUMED ? 0 : 1;
				served += (int)before[j];
			}
			/* Both repairs walk the records. */
			if (round % 5 == 4)
				cq_dead_owner(&c, (int)rng_range(0, 1));
			field = rec_at(&c, offs[victim], f[i].off);
			v = rng_range(0, 3) == 0 ? rng_range(0, 7)
			                        : garbage(0, c.cap);
			if (f[i].width == 8)
				poke64(field, v);
			else
				poke32(field, (uint32_t)v);
			/* Those before the victim come out whole, in order. */
			for (int j = 0; j < served; j++) {
				struct pay p;
				int torn,
				    rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT,
				                  &p, &torn);

				/* The repair's walk, or moving the head
				 * past the last good one, reads the victim. */
				if (rc == -EPROTO)
					break;
				expect_msg(rc == 0 && !torn &&
				           (j == 0 || p.seq > last),
				           "message %d before a scribbled "
				           "record: %s%s", j,
				           mproc_strerror(rc),
				           torn ? " (torn)" : "");
				last = p.seq;
			}
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			corrupt_close(&c);
		}
	}
}
END_TEST

/*
 * The journals (the send side's and the receive side's, in turn): a valid
 * flag nobody wrote is refused by the calls that take that side's lock; a
 * garbage journal left by a dead owner is refused or repaired; a sound one
 * rolls forward.
 */
START_TEST(test_crash_corrupt_journal)
{
	rng_seed_auto();
	for (int round = 0; round < 8 * CORRUPT_ROUNDS; round++) {
		int kind = round % 4, side = round / 4 % 2;
		unsigned nw = side_words(side);
		struct m_journal *j;
		struct m_side *sd;
		uint64_t rec0;
		struct cq c;

		corrupt_open(&c, round % 16 >= 8, round % 32 >= 16);
		sd = cq_side(&c, side);
		j = &sd->journal;
		rec0 = stats_of(c.q).recoveries;
		switch (kind) {
		case 0: /* valid flag alone, no dead owner: refused */
			do
				j->valid = rng_next();
			while (j->valid == 0);
			ck_assert_int_eq(corrupt_calls_side(&c, side), 0);
			/* Twice: a refusal changes nothing. */
			ck_assert_int_eq(corrupt_calls_side(&c, side), 0);
			j->valid = 0;
			ck_assert_uint_eq(stats_of(c.q).recoveries, rec0);
			corrupt_check_settled(&c);
			break;
		case 1: /* a dead owner left garbage marked valid */
			cq_dead_owner(&c, side);
			for (size_t i = 0; i < sizeof(*j); i += 4)
				poke32((uint8_t *)j + i, rng_next());
			if (j->valid == 0)
				j->valid = 1;
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			break;
		case 2: { /* plausible: the real state, a word or mark off */
			uint32_t span, wi;
			int probe = -1;

			cq_dead_owner(&c, side);
			j->changed = 0;
			j->mark.off = M_NO_MARK;
			wi = rng_range(0, nw - 1);
			switch (rng_range(0, 3)) {
			case 0:
				j->changed = 1u << wi;
				j->val[0] = garbage(sd->w[wi], c.cap);
				break;
			case 1:
				span = (uint32_t)(cq_tail(&c) - cq_head(&c));
				j->mark.off = cq_head(&c) + rng_range(0, span);
				j->mark.flags = rng_range(0, 7);
				j->mark.attempts = rng_next();
				break;
			case 2:
				j->mark.off = garbage(cq_head(&c), c.cap);
				j->mark.flags = rng_next();
				break;
			default:
				/* A word the side does not have. */
				j->changed = 1u << rng_range(nw, 31);
				j->val[0] = sd->w[0];
				probe = side == SIDE_SEND ? CALL_SEND
				                          : CALL_RECV;
				break;
			}
			/* A send journal never holds a mark. */
			if (side == SIDE_SEND && j->mark.off != M_NO_MARK)
				probe = CALL_SEND;
			j->valid = 1;
			if (probe >= 0) {
				/* Refused by the repair, and from then on. */
				ck_assert_int_eq(corrupt_call(&c, probe),
				                 -EPROTO);
				ck_assert_int_eq(corrupt_call(&c, CALL_STATS),
				                 -EPROTO);
				ck_assert_int_eq(corrupt_call(&c, probe),
				                 -EPROTO);
				ck_assert_int_ne(j->valid, 0);
			}
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			break;
		}
		default: { /* a sound journal: rolled forward, all is well */
			uint64_t offs[64];
			unsigned k = 0;
			int n;

			cq_dead_owner(&c, side);
			/* Its words are the live ones (the commit was all
			 * applied); its mark, a record's own flags. */
			j->changed = 0;
			for (unsigned w = 0; w < nw && k < M_JOURNAL_WORDS; w++)
				if (rng_range(0, 1)) {
					j->val[k++] = sd->w[w];
					j->changed |= 1u << w;
				}
			j->mark.off = M_NO_MARK;
			n = cq_records(&c, offs, 64, NULL);
			if (side == SIDE_RECV && n > 0 && rng_range(0, 1)) {
				uint64_t off =
				    offs[rng_range(0, (uint32_t)n - 1)];

				j->mark.off = off;
				j->mark.flags = *(uint32_t *)rec_at(&c, off,
				        offsetof(struct m_rec, flags));
				j->mark.attempts = *(uint32_t *)rec_at(&c, off,
				        offsetof(struct m_rec, attempts));
				j->mark.lease_pid = *(int32_t *)rec_at(&c, off,
				        offsetof(struct m_rec, lease_pid));
				j->mark.reserved = 0;
			}
			j->valid = 1;
			/* Repaired by stats (both locks), or by empty (the
			 * receive lock; a dead sender's journal, by the
			 * send lock it tries on the way). */
			if (rng_range(0, 1)) {
				ck_assert_int_eq(mproc_queue_empty(c.q), 0);
				ck_assert_int_eq(j->valid, 0);
			}
			ck_assert_uint_eq(stats_of(c.q).recoveries, rec0 + 1);
			ck_assert_uint_eq(cq_side(&c, side)->recoveries, 1);
			ck_assert_uint_eq(cq_side(&c, !side)->recoveries, 0);
			ck_assert_int_eq(j->valid, 0);
			corrupt_check_healthy(&c);
			break;
		}
		}
		corrupt_close(&c);
	}
}
END_TEST

/* Writes n bytes at ring offset off, wrapping at the end. */
static void ring_write(const struct cq *c, uint64_t off, const void *src,
                       size_t n)
{
	for (size_t i = 0; i < n; i++)
		c->ring[(off + i) % c->cap] = ((const uint8_t *)src)[i];
}

/* Writes the record of a message of size bytes (pay seq) at off, as a
 * sender does beyond tail; returns its length. */
static uint32_t cq_write_record(const struct cq *c, uint64_t off,
                                uint32_t size, uint64_t seq)
{
	uint8_t buf[CQ_PAYLOAD];
	struct m_rec r;

	memset(&r, 0, sizeof(r));
	r.magic = M_REC_MAGIC;
	r.len = (uint32_t)M_LEN(size);
	r.request = MPROC_USER;
	r.sender = getpid();
	r.size = size;
	r.id = c->s->send.w[M_P_SENT];
	pay_make(buf, size, 3, 0, seq);
	ring_write(c, off, &r, sizeof(r));
	ring_write(c, off + M_HDR, buf, size);
	return r.len;
}

/*
 * A take of the record at off cut short where no hook can reach, built by
 * hand on the mirror (the caller killed the receive lock's owner): the
 * journal whole and valid (gone, received, the head if move_head, and the
 * record's mark), then the mark and the first `words` words applied, as
 * queue_commit applies them.
 */
static void cq_torn_take(struct cq *c, uint64_t off, int move_head,
                         int words)
{
	struct m_side *sd = &c->s->recv;
	uint64_t cur[M_SIDE_WORDS], nw[M_SIDE_WORDS];
	struct m_mark mk;

	memcpy(cur, sd->w, sizeof(cur));
	memcpy(nw, cur, sizeof(nw));
	mk.off = off;
	mk.flags = M_REC_CONSUMED;
	mk.attempts = *(uint32_t *)rec_at(c, off,
	                                  offsetof(struct m_rec, attempts));
	mk.lease_pid = 0;
	mk.reserved = 0;
	if (move_head)
		nw[M_C_HEAD] += *(uint32_t *)rec_at(
		        c, off, offsetof(struct m_rec, len));
	nw[M_C_GONE]++;
	nw[M_C_RECEIVED]++;
	m_journal_set(&sd->journal, cur, nw, M_C_WORDS);
	sd->journal.mark = mk;
	sd->journal.valid = 1;
	/* queue_commit applies the mark, then the words in order. */
	if (words > 0 || rng_range(0, 1))
		poke32(rec_at(c, off, offsetof(struct m_rec, flags)),
		       mk.flags);
	for (int w = 0; w < words; w++)
		sd->w[w] = nw[w];
}

/*
 * A commit cut short where no hook can reach: the owner died after
 * applying the first `words` words of the new state (or all of them,
 * with the journal still valid). Built by hand on the mirror: a send (a
 * new record beyond tail, the send journal {sent, tail}, the send lock's
 * owner dead) or a take (the receive journal {head, gone, received} and
 * the record's mark, the receive lock's owner dead) of the head record or
 * of one behind it. The next call must roll the journal forward, and the
 * queue must hold exactly what the finished operation leaves.
 */
START_TEST(test_crash_torn_apply)
{
	static const char *const what[] = { "send", "take at the head",
		                            "take behind the head" };

	rng_seed_auto();
	for (int round = 0; round < 3 * CORRUPT_ROUNDS; round++) {
		int op = round % 3, is_send = op == 0, n, words;
		uint64_t offs[64], rec0, skip = UINT64_MAX;
		struct m_side *sd;
		struct cq c;

		corrupt_open(&c, 0, round % 6 >= 3);
		/* Start clean: no holes, the head on a live record. */
		for (;;) {
			struct pay p;
			int torn;

			if (recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
			             &torn) < 0)
				break;
		}
		n = cq_fill(&c, (int)rng_range(2, 6));
		ck_assert_int_ge(n, 2);
		ck_assert_int_eq(cq_records(&c, offs, 64, NULL), n);
		rec0 = stats_of(c.q).recoveries;
		sd = cq_side(&c, is_send ? SIDE_SEND : SIDE_RECV);
		cq_dead_owner(&c, is_send ? SIDE_SEND : SIDE_RECV);

		if (is_send) {
			uint64_t cur[M_SIDE_WORDS], nw[M_SIDE_WORDS];
			uint32_t size =
			    rng_range(sizeof(struct pay), CQ_PAYLOAD);

			memcpy(cur, sd->w, sizeof(cur));
			memcpy(nw, cur, sizeof(nw));
			nw[M_P_TAIL] += cq_write_record(&c, cq_tail(&c), size,
			                                (uint64_t)n);
			nw[M_P_SENT]++;
			/* The journal, whole and valid, no mark ... */
			m_journal_set(&sd->journal, cur, nw, M_P_WORDS);
			sd->journal.mark.off = M_NO_MARK;
			sd->journal.valid = 1;
			/* ... and `words` words of the state (sent first). */
			words = (int)rng_range(0, M_P_WORDS);
			for (int w = 0; w < words; w++)
				sd->w[w] = nw[w];
		} else {
			words = (int)rng_range(0, M_C_WORDS);
			skip = op == 1 ? 0 : 1;
			cq_torn_take(&c, offs[skip], op == 1, words);
		}

		/* A dead sender's journal is rolled forward by a receiver
		 * too (it tries the send lock): empty says so at once. */
		if (is_send && rng_range(0, 1)) {
			ck_assert_int_eq(mproc_queue_empty(c.q), 0);
			ck_assert_int_eq(sd->journal.valid, 0);
		}
		ck_assert_msg(stats_of(c.q).recoveries == rec0 + 1,
		              "no recovery (%s, %d words applied)", what[op],
		              words);
		ck_assert_int_eq(sd->journal.valid, 0);
		/* Exactly what the finished operation leaves, in order. */
		for (uint64_t want = 0; want < (uint64_t)n + (uint64_t)is_send;
		     want++) {
			struct pay p;
			int torn, rc;

			if (want == skip)
				continue;
			rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);
			ck_assert_msg(rc == 0 && !torn && p.seq == want,
			              "%s cut after %d words: message %llu: %s",
			              what[op], words, (unsigned long long)want,
			              rc ? mproc_strerror(rc) : "wrong one");
		}
		check_drained(c.q);
		corrupt_close(&c);
	}
}
END_TEST

/*
 * A take of the head record cut after its commit moved the head (the
 * journal still valid, the receive lock's owner dead), in a full ring.
 * Before anyone takes the receive lock, a sender fills the room the take
 * freed, over the taken record's bytes: a sender needs only the send
 * lock. The repair must finish the take without applying the mark again
 * (the head passed it, so it was applied, and its bytes now belong to the
 * new record), and everything, the new message last, comes out whole.
 */
START_TEST(test_crash_torn_take_reused)
{
	rng_seed_auto();
	for (int round = 0; round < 2 * CORRUPT_ROUNDS; round++) {
		uint64_t offs[64], rec0, room, size, victim_end;
		int n, words, rc;
		struct cq c;
		mproc_stats st;

		corrupt_open(&c, 0, round % 2);
		for (;;) {
			struct pay p;
			int torn;

			if (recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
			             &torn) < 0)
				break;
		}
		n = cq_fill_up(&c);
		ck_assert_int_ge(n, 2);
		ck_assert_int_eq(cq_records(&c, offs, 64, NULL), n);
		rec0 = stats_of(c.q).recoveries;
		cq_dead_owner(&c, SIDE_RECV);
		/* At least the head applied (it is the first word). */
		words = (int)rng_range(1, M_C_WORDS);
		cq_torn_take(&c, offs[0], 1, words);
		ck_assert_uint_eq(cq_head(&c), offs[1]);

		room = c.cap - (cq_tail(&c) - cq_head(&c));
		size = room - M_HDR < CQ_PAYLOAD ? room - M_HDR : CQ_PAYLOAD;
		/* The new record covers the marked fields of the old one. */
		victim_end = offs[0] + c.cap + offsetof(struct m_rec, reserved);
		ck_assert_uint_ge(cq_tail(&c) + M_LEN(size), victim_end);
		rc = send_pay(c.q, (uint32_t)size, 3, 0, (uint64_t)n,
		              MPROC_NOWAIT);
		ck_assert_msg(rc == 0, "send into the freed room: %s",
		              mproc_strerror(rc));

		rc = mproc_queue_stats(c.q, &st);
		ck_assert_msg(rc == 0, "repair after the head's bytes were "
		              "reused (%d words applied): %s", words,
		              mproc_strerror(rc));
		ck_assert_uint_eq(st.recoveries, rec0 + 1);
		ck_assert_int_eq(c.s->recv.journal.valid, 0);
		for (uint64_t want = 1; want <= (uint64_t)n; want++) {
			struct pay p;
			int torn;

			rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);
			ck_assert_msg(rc == 0 && !torn && p.seq == want,
			              "%d words applied: message %llu: %s%s",
			              words, (unsigned long long)want,
			              rc ? mproc_strerror(rc) : "",
			              torn ? "torn" : (rc ? "" : "wrong one"));
		}
		check_drained(c.q);
		corrupt_close(&c);
	}
}
END_TEST

/* Anything but the locks, anywhere, a few bytes at a time. */
START_TEST(test_crash_corrupt_random)
{
	size_t lock_off[SIDES], lock_len[SIDES];
	int iters = 600;

	rng_seed_auto();
	for (int side = 0; side < SIDES; side++)
		ck_assert_int_eq(mproc__queue_lock_span(side, &lock_off[side],
		                                        &lock_len[side]),
		                 0);
	for (int it = 0; it < iters; it++) {
		struct cq c;
		uint8_t *base;
		int spots = (int)rng_range(1, 8);

		corrupt_open(&c, it % 2, it % 4 == 1);
		base = (uint8_t *)c.s;
		if (it % 8 == 3)
			cq_dead_owner(&c, (int)rng_range(0, 1));
		for (int k = 0; k < spots; k++) {
			size_t width = (size_t)1 << rng_range(0, 3), off;
			uint64_t v;
			int on_lock = 0;

			/* Aim at the header half the time: it is small. */
			if (rng_range(0, 1))
				off = rng_range(0, sizeof(struct m_shared) - 8);
			else
				off = sizeof(struct m_shared) +
				      rng_range(0, (uint32_t)c.cap - 8);
			off &= ~(width - 1);
			for (int side = 0; side < SIDES; side++)
				if (off + width > lock_off[side] &&
				    off < lock_off[side] + lock_len[side])
					on_lock = 1;
			if (on_lock)
				continue;
			v = rng_range(0, 1) ? garbage(0, c.cap)
			                    : (uint64_t)rng_range(0, 64);
			memcpy(base + off, &v, width);
		}
		for (int k = 0; k < 25; k++)
			corrupt_call(&c, (int)rng_range(0, CALL_SHUTDOWN));
		if (rng_range(0, 7) == 0)
			corrupt_call(&c, CALL_SHUTDOWN);
		for (int k = 0; k < 5; k++)
			corrupt_call(&c, (int)rng_range(0, CALL_SHUTDOWN));
		corrupt_close(&c);
	}
}
END_TEST

Suite *crash_suite(void);

Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc;

	tc = check_tcase(s, "hooks");
	tcase_add_loop_test(tc, test_crash_hook_point, MPROC__CRASH_SEND_COPY,
	                    MPROC__CRASH_RECV_APPLIED + 1);
	tcase_add_loop_test(tc, test_crash_send_journal_seen, 0, SJ_KINDS);

	tc = check_tcase(s, "kills");
	tcase_add_test(tc, test_crash_random_kills);

	tc = check_tcase(s, "waiters");
	tcase_add_loop_test(tc, test_crash_waiter_killed, 0, WAIT_KINDS);
	tcase_add_loop_test(tc, test_crash_stopped_holder, 0, SIDES);
	tcase_add_test(tc, test_crash_holder_killed);

	tc = check_tcase(s, "corrupt");
	tcase_add_test(tc, test_crash_corrupt_identity);
	tcase_add_test(tc, test_crash_corrupt_state);
	tcase_add_test(tc, test_crash_corrupt_records);
	tcase_add_test(tc, test_crash_corrupt_journal);
	tcase_add_test(tc, test_crash_corrupt_random);
	tcase_add_test(tc, test_crash_torn_apply);
	tcase_add_test(tc, test_crash_torn_take_reused);

	return s;
}

int main(void)
{
	return check_run_suite(crash_suite());
}
