/*
 * check_zerocopy.c - the queue's zero-copy calls: the rules (one
 * reservation and one borrow per handle, what is -EINVAL, -EMSGSIZE,
 * -EBUSY, -EAGAIN, -ETIMEDOUT), reservations contiguous whatever the ring's
 * end, borrows hidden and finished by release, processes killed holding a
 * reservation or a borrow, and copy and zero-copy senders and receivers
 * mixed on one queue (4x4, self-checking payloads, FIFO per producer).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check_common.h"
#include "check_pay.h"
#include "internal.h"
#include "queue/layout.h"
#include "check_rng.h"

/* Reserve, fill with a self-checking payload, commit. */
static int zc_send_pay(mproc_conn *q, uint32_t size, uint32_t src,
                       uint64_t seq, int timeout_ms)
{
	void *buf = NULL;
	int rc = mproc_send_reserve(q, size, &buf, timeout_ms);

	if (rc < 0)
		return rc;
	pay_make(buf, size, src, 0, seq);
	return mproc_send_commit(q, MPROC_DO, 0, size);
}

START_TEST(test_zc_rules)
{
	mproc_conn *q = queue_new(8192, 1000, 0, 0), *a, *b, *bus;
	mproc_bus_opts bo;
	mproc_msg m, m2;
	void *buf, *buf2;
	char out[1000];

	memset(&m, 0, sizeof(m));
	memset(&m2, 0, sizeof(m2));
	/* Nothing open: -EINVAL. */
	ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, 0, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_cancel(q), -EINVAL);
	ck_assert_int_eq(mproc_recv_release(q, &m), -EINVAL);
	/* Bad arguments. */
	ck_assert_int_eq(mproc_send_reserve(NULL, 1, &buf, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_reserve(q, 1, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_reserve(q, 1, &buf, -2), -EINVAL);
	ck_assert_int_eq(mproc_send_reserve(q, 1001, &buf, 0), -EMSGSIZE);
	ck_assert_int_eq(mproc_recv_borrow(q, NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(q, &m, NULL, NULL, 0), -EAGAIN);
	/* One reservation at a time; the same thread's send says so too. */
	ck_assert_int_eq(mproc_send_reserve(q, 100, &buf, 0), 0);
	ck_assert_int_eq(mproc_send_reserve(q, 100, &buf2, 0), -EBUSY);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "x", 1), -EBUSY);
	memset(buf, 7, 100);
	/* A bad commit leaves it open. */
	ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, 0, 101), -EINVAL);
	ck_assert_int_eq(mproc_send_commit(q, 0, 0, 10), -EINVAL);
	ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, -1, 10), -EINVAL);
	ck_assert_uint_eq(stats_of(q).sent, 0);
	/* Commit fewer bytes than reserved. */
	ck_assert_int_eq(mproc_send_commit(q, MPROC_USER + 5, 0, 60), 0);
	ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, 0, 60), -EINVAL);
	/* Cancel publishes nothing. */
	ck_assert_int_eq(mproc_send_reserve(q, 100, &buf, 0), 0);
	ck_assert_int_eq(mproc_send_cancel(q), 0);
	ck_assert_int_eq(mproc_send_cancel(q), -EINVAL);
	ck_assert_uint_eq(stats_of(q).sent, 1);
	/* The borrow: m->data in the ring, hidden while borrowed. */
	ck_assert_int_eq(mproc_recv_borrow(q, &m, NULL, NULL, 0), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 5);
	ck_assert_uint_eq(m.size, 60);
	ck_assert_int_eq(m.sender, getpid());
	for (int i = 0; i < 60; i++)
		ck_assert_int_eq(((unsigned char *)m.data)[i], 7);
	ck_assert_int_eq(mproc_recv_borrow(q, &m2, NULL, NULL, 0), -EBUSY);
	m2.data = out;
	m2.capacity = sizeof(out);
	ck_assert_int_eq(mproc_recv(q, &m2, NULL, NULL, 0), -EAGAIN);
	ck_assert_uint_eq(stats_of(q).unfinished, 1);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	m2.data = out;
	ck_assert_int_eq(mproc_recv_release(q, &m2), -EINVAL); /* not it */
	ck_assert_int_eq(mproc_recv_release(q, &m), 0);
	ck_assert_int_eq(mproc_recv_release(q, &m), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	/* Too large to be made contiguous in this ring. */
	mproc_close(q);
	q = queue_new(2048, 1000, 0, 0);
	ck_assert_int_eq(mproc_send_reserve(q, 1000, &buf, 0), -EMSGSIZE);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(mproc_send_reserve(q, 900, &buf, 0), 0);
		ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, 0, 900), 0);
	}
	/* Full: -EAGAIN, then -ETIMEDOUT after the wait. */
	ck_assert_int_eq(mproc_send_reserve(q, 900, &buf, 0), -EAGAIN);
	ck_assert_int_eq(mproc_send_reserve(q, 900, &buf, 50), -ETIMEDOUT);
	mproc_close(q);
	/* A pipe and a bus have none of it. */
	ck_assert_int_eq(mproc_pipe_open(&a, &b), 0);
	ck_assert_int_eq(mproc_send_reserve(a, 1, &buf, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_commit(a, MPROC_DO, 0, 1), -EINVAL);
	ck_assert_int_eq(mproc_send_cancel(a), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(a, &m, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv_release(a, &m), -EINVAL);
	mproc_close(a);
	mproc_close(b);
	memset(&bo, 0, sizeof(bo));
	ck_assert_int_eq(mproc_bus_open(&bus, &bo), 0);
	ck_assert_int_eq(mproc_send_reserve(bus, 1, &buf, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(bus, &m, NULL, NULL, 0), -EINVAL);
	mproc_close(bus);
}
END_TEST

/* Every reservation lies within the ring in one piece, whatever the
 * ring's end, and every message comes out whole and in order. */
START_TEST(test_zc_contiguous)
{
	mproc_conn *q = queue_new(4096, 1500, 0, 0);
	uint8_t *map;
	size_t len;
	mproc_msg m;
	struct pay p;
	uint64_t seq = 0, got = 0;

	rng_seed_auto();
	map = mproc__queue_mapping(q, &len);
	for (int round = 0; round < 3000; round++) {
		uint32_t size = rng_range(sizeof(struct pay), 1500);
		void *buf;
		int rc = mproc_send_reserve(q, size, &buf, 0);

		if (rc == -EAGAIN) {
			/* Drain a few, by borrow or by copy. */
			for (int k = 0; k < 2; k++) {
				uint8_t out[1500];

				memset(&m, 0, sizeof(m));
				if (k == 0) {
					ck_assert_int_eq(mproc_recv_borrow(q, &m, NULL, NULL, 0), 0);
				} else {
					m.data = out;
					m.capacity = sizeof(out);
					if (mproc_recv(q, &m, NULL, NULL, 0) != 0)
						break;
				}
				expect_msg(pay_check(m.data, m.size, &p) == 0 &&
				                   p.seq == got,
				           "message %llu torn or out of order",
				           (unsigned long long)got);
				got++;
				if (k == 0)
					ck_assert_int_eq(mproc_recv_release(q, &m), 0);
			}
			continue;
		}
		ck_assert_int_eq(rc, 0);
		expect_msg((uint8_t *)buf >= map + MPROC__QUEUE_HDR &&
		                   (uint8_t *)buf + size <= map + len,
		           "reservation %d not in one piece", round);
		pay_make(buf, size, 1, 0, seq++);
		ck_assert_int_eq(mproc_send_commit(q, MPROC_DO, 0, size), 0);
	}
	ck_assert_uint_ge(got, 100);
	mproc_close(q);
}
END_TEST

/* A process killed holding a reservation: the next sender goes on at
 * once, nothing partial is delivered, the queue counts one recovery. */
START_TEST(test_zc_killed_reserver)
{
	mproc_conn *q = queue_new(1 << 16, 2000, 0, 0);
	uint64_t rec0;
	mproc_msg m;
	struct pay p;
	uint8_t out[2000];

	rng_seed_auto();
	for (int round = 0; round < 30; round++) {
		pid_t pid;
		int st;

		ck_assert_int_eq(send_pay(q, 64, 2, 0, (uint64_t)round, 1000), 0);
		rec0 = stats_of(q).recoveries;
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			void *buf;
			uint32_t size = rng_range(sizeof(struct pay), 2000);

			child_assert(mproc_send_reserve(q, size, &buf, 1000) == 0);
			pay_make(buf, size, 9, 0, 999);
			if (rng_range(0, 1))
				memset(buf, 0xee, size / 2); /* half-built */
			raise(SIGKILL);
			_exit(1);
		}
		st = check_wait_child(pid, 5000);
		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		ck_assert_int_eq(send_pay(q, 64, 2, 0, (uint64_t)round + 1000,
		                          1000),
		                 0);
		ck_assert_uint_eq(stats_of(q).recoveries, rec0 + 1);
		for (int k = 0; k < 2; k++) {
			m.data = out;
			m.capacity = sizeof(out);
			ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 1000), 0);
			ck_assert_int_eq(pay_check(m.data, m.size, &p), 0);
			ck_assert_uint_eq(p.src, 2); /* never the dead one's */
		}
		m.data = out;
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 0), -EAGAIN);
	}
	mproc_close(q);
}
END_TEST

/* A process killed holding a borrow: the message is delivered again,
 * whole, to a receiver waiting meanwhile; join then finishes. */
START_TEST(test_zc_killed_borrower)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	uint8_t out[PAY_MAX];
	mproc_msg m;
	struct pay p;

	for (int round = 0; round < 20; round++) {
		int go[2];
		pid_t pid;
		char c;

		ck_assert_int_eq(pipe(go), 0);
		ck_assert_int_eq(send_pay(q, 500, 3, 0, (uint64_t)round, 1000), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			mproc_msg x;

			memset(&x, 0, sizeof(x));
			child_assert(mproc_recv_borrow(q, &x, NULL, NULL, 1000) == 0);
			child_assert(write(go[1], "b", 1) == 1);
			usleep(round % 3 * 10000);
			raise(SIGKILL);
			_exit(1);
		}
		ck_assert_int_eq(read(go[0], &c, 1), 1);
		m.data = out;
		m.capacity = sizeof(out);
		/* Waits until the borrower is gone and its message back. */
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, check_scale_ms(5000)), 0);
		ck_assert_int_eq(pay_check(m.data, m.size, &p), 0);
		ck_assert_uint_eq(p.seq, (uint64_t)round);
		check_wait_child(pid, 5000);
		ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
		close(go[0]);
		close(go[1]);
	}
	mproc_close(q);
}
END_TEST

/* MANUAL_DONE: a released borrow is taken, mproc_task_done finishes it. */
START_TEST(test_zc_manual_done)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	mproc_msg m;

	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(zc_send_pay(q, 100, 1, 0, 0), 0);
	ck_assert_int_eq(mproc_recv_borrow(q, &m, NULL, NULL, 0), 0);
	ck_assert_int_eq(mproc_recv_release(q, &m), 0);
	ck_assert_uint_eq(stats_of(q).unfinished, 1);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_task_done(q), 0);
	ck_assert_int_eq(mproc_queue_join(q, 0), 0);
	mproc_close(q);
}
END_TEST

/* Closing a handle with a borrow open gives the message back; with a
 * reservation open drops it. A child's inherited handle does not own the
 * parent's reservation. */
START_TEST(test_zc_close_and_fork)
{
	mproc_conn *q = queue_new(0, 0, 0, 0), *q2 = queue_new(0, 0, 0, 0);
	uint8_t out[PAY_MAX];
	mproc_msg m;
	struct pay p;
	void *buf;
	pid_t pid;

	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(send_pay(q, 100, 1, 0, 5, 1000), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_msg x;

		memset(&x, 0, sizeof(x));
		child_assert(mproc_recv_borrow(q, &x, NULL, NULL, 1000) == 0);
		child_assert(mproc_close(q) == 0); /* gives it back */
		pause();
		_exit(1);
	}
	m.data = out;
	m.capacity = sizeof(out);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 5000), 0);
	ck_assert_int_eq(pay_check(m.data, m.size, &p), 0);
	ck_assert_uint_eq(p.seq, 5);
	kill(pid, SIGKILL);
	check_wait_child(pid, 5000);

	ck_assert_int_eq(mproc_send_reserve(q2, 100, &buf, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(mproc_send_commit(q2, MPROC_DO, 0, 10) == -EINVAL);
		child_assert(mproc_send_cancel(q2) == -EINVAL);
		mproc_close(q2);
		mproc_close(q);
		_exit(0);
	}
	check_reap_ok(pid, 5000);
	ck_assert_int_eq(mproc_close(q2), 0); /* drops the reservation */
	mproc_close(q);
}
END_TEST

/*
 * 4 producers (2 by copy, 2 by reservation) and 4 consumers (2 by copy,
 * 2 by borrow) on one small ring: every message arrives exactly once,
 * whole, and each producer's messages in the order sent.
 */
enum { ZC_N = 4, ZC_PER = 3000 };

START_TEST(test_zc_mixed_4x4)
{
	mproc_conn *q = queue_new(16384, 1200, 0, 0), *res;
	uint64_t seen[ZC_N][ZC_PER / 64 + 1];
	pid_t pid[2 * ZC_N];
	int i, total = 0;

	res = queue_new(1 << 20, 64, 0, 0);
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < ZC_N; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			rng_seed((uint64_t)getpid());
			for (uint64_t s = 0; s < ZC_PER; s++) {
				uint32_t size = rng_range(sizeof(struct pay), 1200);
				int rc = i % 2 ? zc_send_pay(q, size, (uint32_t)i, s, 5000)
				               : send_pay(q, size, (uint32_t)i, 0, s, 5000);

				child_assert(rc == 0);
			}
			mproc_close(q);
			mproc_close(res);
			_exit(0);
		}
	}
	for (i = 0; i < ZC_N; i++) {
		pid[ZC_N + i] = fork();
		ck_assert_int_ge(pid[ZC_N + i], 0);
		if (pid[ZC_N + i] == 0) {
			uint64_t last[ZC_N];
			uint8_t out[1200];
			struct pay p;
			mproc_msg m;
			uint32_t rec[2];

			memset(last, 0xff, sizeof(last));
			for (;;) {
				int rc;

				memset(&m, 0, sizeof(m));
				if (i % 2) {
					rc = mproc_recv_borrow(q, &m, NULL, NULL, 5000);
				} else {
					m.data = out;
					m.capacity = sizeof(out);
					rc = mproc_recv(q, &m, NULL, NULL, 5000);
				}
				if (rc == 0 && m.request == MPROC_DIE) {
					if (i % 2)
						child_assert(mproc_recv_release(q, &m) == 0);
					mproc_close(q);
					mproc_close(res);
					_exit(0);
				}
				child_assert(rc == 0);
				child_assert(pay_check(m.data, m.size, &p) == 0);
				child_assert(p.src < ZC_N);
				/* FIFO per producer, per consumer. */
				child_assert(last[p.src] == UINT64_MAX ||
				             p.seq > last[p.src]);
				last[p.src] = p.seq;
				rec[0] = p.src;
				rec[1] = (uint32_t)p.seq;
				if (i % 2)
					child_assert(mproc_recv_release(q, &m) == 0);
				child_assert(mproc_send(res, MPROC_FINISHED, 0, rec, sizeof(rec)) == 0);
			}
		}
	}
	for (i = 0; i < ZC_N; i++)
		check_reap_ok(pid[i], 60000);
	for (i = 0; i < ZC_N * ZC_PER; i++) {
		uint32_t rec[2];
		mproc_msg m = { .data = rec, .capacity = sizeof(rec) };

		ck_assert_int_eq(mproc_recv(res, &m, NULL, NULL, 10000), 0);
		ck_assert_uint_lt(rec[0], ZC_N);
		ck_assert_uint_lt(rec[1], ZC_PER);
		ck_assert_msg(!(seen[rec[0]][rec[1] / 64] & (1ull << (rec[1] % 64))),
		              "message %u of %u twice", rec[1], rec[0]);
		seen[rec[0]][rec[1] / 64] |= 1ull << (rec[1] % 64);
		total++;
	}
	for (i = 0; i < ZC_N; i++)
		ck_assert_int_eq(mproc_send(q, MPROC_DIE, 0, NULL, 0), 0);
	for (i = 0; i < ZC_N; i++)
		check_reap_ok(pid[ZC_N + i], 10000);
	ck_assert_int_eq(total, ZC_N * ZC_PER);
	ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
	mproc_close(q);
	mproc_close(res);
}
END_TEST

static Suite *zc_suite(void)
{
	Suite *s = suite_create("zerocopy");
	TCase *tc = check_tcase(s, "rules");

	tcase_add_test(tc, test_zc_rules);
	tcase_add_test(tc, test_zc_contiguous);
	tcase_add_test(tc, test_zc_manual_done);
	tcase_add_test(tc, test_zc_close_and_fork);
	tc = check_tcase(s, "crash");
	tcase_add_test(tc, test_zc_killed_reserver);
	tcase_add_test(tc, test_zc_killed_borrower);
	tc = check_tcase(s, "mixed");
	tcase_add_test(tc, test_zc_mixed_4x4);
	return s;
}

int main(void)
{
	return check_run_suite(zc_suite());
}
