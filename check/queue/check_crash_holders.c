/*
 * check_crash_holders.c - the holder of one of the queue's two locks
 * stopped (SIGSTOP) or killed while others wait for it. Stopped is not
 * dead: whoever needs its lock times out and nobody repairs, whoever
 * needs only the other lock (or none: stats reads a lock-free snapshot)
 * is not held up, and after SIGCONT all goes on. Killed: both waiters
 * get the lock at once, one repairs, nothing is lost.
 */
#include <pthread.h>
#include <stdint.h>

#include "check_common.h"
#include "check_layout.h"
#include "check_pay.h"

/* max_payload of the queue and the receive buffers. */
#define HOLD_CAP 512

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
static void stall_send_lock(mproc_conn *q, pthread_mutex_t *mu,
                            struct stop_shared *sh)
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
	mproc_close(q); /* the child's copy: no block left to valgrind */
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

/* A call that does not need the stopped holder's lock: it returns
 * want, promptly. */
#define check_not_held(call, want, what)                                      \
	do {                                                                  \
		long long t0_ = check_now_ms();                               \
		int rc_ = (call);                                             \
		long long dt_ = check_now_ms() - t0_;                         \
		ck_assert_msg(rc_ == (want), "%s with a lock it does not "    \
		              "need stopped: %d (%s)", what, rc_,             \
		              mproc_strerror(rc_));                           \
		ck_assert_msg(dt_ < check_scale_ms(300), "%s took %lld ms "   \
		              "with a lock it does not need stopped", what,   \
		              dt_);                                           \
	} while (0)

/* stats, at once, says what is in q (nothing received, no repair). */
#define check_stats_now(q, n, rec0)                                           \
	do {                                                                  \
		mproc_stats st_;                                              \
		check_not_held(mproc_queue_stats((q), &st_), 0, "stats");     \
		ck_assert_msg(st_.queued == (n) && st_.sent == (n) &&         \
		              st_.unfinished == (n) && st_.received == 0 &&   \
		              st_.recoveries == (rec0),                       \
		              "stats with a stopped holder: queued %llu "     \
		              "sent %llu unfinished %llu received %llu",      \
		              (unsigned long long)st_.queued,                 \
		              (unsigned long long)st_.sent,                   \
		              (unsigned long long)st_.unfinished,             \
		              (unsigned long long)st_.received);              \
	} while (0)

/* Loop index: which lock the stopped process holds (SIDE_*). */
START_TEST(test_crash_stopped_holder)
{
	struct stop_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(16384, HOLD_CAP, 0, 0);
	pthread_mutex_t *send_lock = check_queue_lock(q, SIDE_SEND);
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
		uint8_t buf[HOLD_CAP];
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

		if (held == SIDE_SEND)
			stall_send_lock(q, send_lock, sh);
		rc = mproc_recv(q, &m, stall_pred, sh, 5000);
		mproc_close(q);
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
	 * repairs. Whoever needs only the other lock is not held up, nor is
	 * stats, which needs neither (a lock-free snapshot). */
	check_stats_now(q, 2u, rec0);
	if (held == SIDE_RECV) {
		check_not_held(send_pay(q, 100, 1, 0, 3, 200), 0, "send");
		check_stats_now(q, 3u, rec0);
		check_times_out(recv_pay(q, HOLD_CAP, 200, &p, &torn), 150,
		                check_scale_ms(1500), "recv");
		check_times_out(mproc_queue_join(q, 200), 150,
		                check_scale_ms(1500), "join");
		check_times_out(mproc_queue_empty(q), 200,
		                check_scale_ms(5000), "empty");
		t0 = check_now_ms();
		rc = recv_pay(q, HOLD_CAP, MPROC_NOWAIT, &p, &torn);
		ck_assert_msg(rc == -ETIMEDOUT || rc == -EAGAIN,
		              "polling recv with a stopped holder: %s",
		              mproc_strerror(rc));
		ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(1000));
	} else {
		check_times_out(send_pay(q, 100, 1, 0, 3, 200), 150,
		                check_scale_ms(1500), "send");
		check_stats_now(q, 2u, rec0);
		t0 = check_now_ms();
		rc = send_pay(q, 100, 1, 0, 3, MPROC_NOWAIT);
		ck_assert_msg(rc == -ETIMEDOUT || rc == -EAGAIN,
		              "polling send with a stopped holder: %s",
		              mproc_strerror(rc));
		ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(1000));
		check_not_held(recv_pay(q, HOLD_CAP, 200, &p, &torn), 0,
		               "recv");
		ck_assert(!torn && p.seq == 1);
		check_not_held(mproc_queue_empty(q), 0, "empty");
		check_not_held(recv_pay(q, HOLD_CAP, 200, &p, &torn), 0,
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
		rc = kill(holder, SIGCONT);
		mproc_close(q);
		_exit(rc == 0 ? 0 : 1);
	}
	t0 = check_now_ms();
	if (held == SIDE_RECV) {
		/* The holder takes the first; our receive the second. */
		rc = recv_pay(q, HOLD_CAP, 5000, &p, &torn);
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
	rc = recv_pay(q, HOLD_CAP, MPROC_NOWAIT, &p, &torn);
	ck_assert_msg(rc == 0, "recv of seq 3: %s", mproc_strerror(rc));
	ck_assert(!torn && p.seq == 3);
	check_drained(q);
	check_round_trip(q, HOLD_CAP);
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
	mproc_conn *q = queue_new(16384, HOLD_CAP, 0, 0);
	pthread_mutex_t *send_lock = check_queue_lock(q, SIDE_SEND);
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
			uint8_t buf[HOLD_CAP];
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
					rc = recv_pay(q, HOLD_CAP,
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
				mproc_close(q);
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
			int torn, rc = recv_pay(q, HOLD_CAP, MPROC_NOWAIT, &p,
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

Suite *crash_holders_suite(void);

Suite *crash_holders_suite(void)
{
	Suite *s = suite_create("crash_holders");
	TCase *tc = check_tcase(s, "holders");

	tcase_add_loop_test(tc, test_crash_stopped_holder, 0, SIDES);
	tcase_add_test(tc, test_crash_holder_killed);
	return s;
}

int main(void)
{
	return check_run_suite(crash_holders_suite());
}
