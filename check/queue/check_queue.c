/*
 * check_queue.c - the shared-memory joinable queue: pymulproc's queue suite
 * ported, predicates, join, options, stats, shutdown, orphans.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#include "check_common.h"
#include "internal.h" /* mproc__queue_peek */

#define T 5000 /* ms: every blocking call in these tests */

static int reject_all(const mproc_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	return 0;
}

static int accept_all(const mproc_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	return 1;
}

/* pymulproc: test_children_to_parent_communication. */
START_TEST(test_queue_children_to_parent)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	pid_t kids[5];
	int i, counter = 0, v;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	for (i = 0; i < 5; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			int val = 3;

			child_assert(mproc_send(q, MPROC_FINISHED, getppid(),
			                        &val, sizeof(val)) == 0);
			mproc_close(q);
			_exit(0);
		}
	}
	for (i = 0; i < 5; i++)
		check_reap_ok(kids[i], T);
	while (mproc_queue_empty(q) == 0) {
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
		ck_assert_int_eq(m.request, MPROC_FINISHED);
		ck_assert_int_eq(m.recipient, getpid());
		counter += v;
	}
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	ck_assert_int_eq(counter, 15);
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	mproc_close(q);
}
END_TEST

/*
 * pymulproc: the full-duplex directed stress test. Rounds of 1..10
 * children; the parent addresses each child in turn, only that child
 * answers; then one DIE each; join.
 */
static void duplex_child(mproc_conn *q, pid_t parent)
{
	int32_t v;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	for (;;) {
		int rc = mproc_recv(q, &m, mproc_for_me, NULL, 20000);

		child_assert(rc == 0);
		child_assert(m.recipient == getpid());
		if (m.request == MPROC_DIE)
			break;
		child_assert(m.request == MPROC_DO);
		v = v * 2 + 1;
		child_assert(mproc_send(q, MPROC_FINISHED, parent, &v,
		                        sizeof(v)) == 0);
	}
	mproc_close(q);
	_exit(0);
}

START_TEST(test_queue_duplex_directed_stress)
{
	mproc_conn *q = queue_new(64 << 10, 64, 0, 0);
	pid_t kids[10], me = getpid();
	int round, n, i, k;
	int32_t v;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	for (round = 1; round <= 10; round++) {
		n = round;
		for (i = 0; i < n; i++) {
			kids[i] = fork();
			ck_assert_int_ge(kids[i], 0);
			if (kids[i] == 0)
				duplex_child(q, me);
		}
		for (k = 0; k < 3; k++) {
			for (i = 0; i < n; i++) {
				int32_t x = round * 100 + i * 10 + k;

				ck_assert_int_eq(mproc_send(q, MPROC_DO, kids[i],
				                            &x, sizeof(x)), 0);
				ck_assert_int_eq(mproc_recv(q, &m, mproc_for_me,
				                            NULL, T), 0);
				ck_assert_int_eq(m.request, MPROC_FINISHED);
				ck_assert_int_eq(m.sender, kids[i]);
				ck_assert_int_eq(v, x * 2 + 1);
			}
		}
		for (i = 0; i < n; i++)
			ck_assert_int_eq(mproc_send(q, MPROC_DIE, kids[i], NULL,
			                            0), 0);
		ck_assert_int_eq(mproc_queue_join(q, T), 0);
		for (i = 0; i < n; i++)
			check_reap_ok(kids[i], T);
	}
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_receive_nothing)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	long long t0;

	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, MPROC_NOWAIT), -EAGAIN);
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 50), -ETIMEDOUT);
	ck_assert_int_ge(check_now_ms() - t0, 49);
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_send_and_receive)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[64];
	mproc_msg s = { .request = MPROC_USER + 7, .sender = 4242,
	                .recipient = 77, .size = 5, .data = "hello" };
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

	ck_assert_int_eq(mproc_send_msg(q, &s, T), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, MPROC_ANYONE, NULL, 0), 0);
	ck_assert_int_eq(mproc_queue_empty(q), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 7);
	ck_assert_int_eq(m.sender, 4242);
	ck_assert_int_eq(m.recipient, 77);
	ck_assert_uint_eq(m.size, 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(m.request, MPROC_DO);
	ck_assert_int_eq(m.sender, getpid());
	ck_assert_int_eq(m.recipient, MPROC_ANYONE);
	ck_assert_uint_eq(m.size, 0);
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	mproc_close(q);
}
END_TEST

/* pymulproc: a message that is not for us stays in the queue. */
START_TEST(test_queue_not_for_us_stays)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[16];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t other = getppid(); /* alive: its mail is no orphan */
	mproc_stats st;

	ck_assert_int_eq(mproc_send(q, MPROC_DO, other, "x", 1), 0);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_for_me, NULL, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(mproc_recv(q, &m, reject_all, NULL, 20), -ETIMEDOUT);
	st = stats_of(q);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert_uint_eq(st.unfinished, 1);
	ck_assert_uint_eq(st.received, 0);
	ck_assert_int_eq(mproc_queue_join(q, 20), -ETIMEDOUT);
	ck_assert_int_eq(mproc_recv(q, &m, accept_all, NULL, T), 0);
	ck_assert_int_eq(m.recipient, other);
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	mproc_close(q);
}
END_TEST

/* Rejected messages keep their place: the oldest accepted comes first,
 * and what is left is still in order. */
START_TEST(test_queue_predicate_keeps_order)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	int32_t want = MPROC_USER + 1, v, i;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	for (i = 0; i < 10; i++) {
		int32_t req = (i % 2) ? MPROC_USER + 1 : MPROC_USER + 2;

		ck_assert_int_eq(mproc_send(q, req, 0, &i, sizeof(i)), 0);
	}
	for (i = 1; i < 10; i += 2) {
		ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request, &want,
		                            T),
		                 0);
		ck_assert_int_eq(v, i);
	}
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request, &want,
	                            MPROC_NOWAIT),
	                 -EAGAIN);
	for (i = 0; i < 10; i += 2) {
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
		ck_assert_int_eq(v, i);
	}
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	mproc_close(q);
}
END_TEST

/* pymulproc: the queue full error, by count and by bytes. */
START_TEST(test_queue_full)
{
	mproc_conn *q = queue_new(0, 0, 2, 0);
	mproc_conn *b = queue_new(1024, 256, 0, 0);
	mproc_msg s = { .request = MPROC_DO, .size = 200, .data = NULL };
	char buf[256] = { 0 };
	long long t0;
	int n;

	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "a", 1), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "b", 1), 0);
	s.data = buf;
	s.size = 1;
	ck_assert_int_eq(mproc_send_msg(q, &s, MPROC_NOWAIT), -EAGAIN);
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_send_msg(q, &s, 50), -ETIMEDOUT);
	ck_assert_int_ge(check_now_ms() - t0, 49);
	ck_assert_uint_eq(stats_of(q).queued, 2);

	s.size = 200;
	for (n = 0; mproc_send_msg(b, &s, MPROC_NOWAIT) == 0; n++)
		ck_assert_int_lt(n, 100);
	ck_assert_int_eq(n, 1024 / 256); /* 200 B + header, rounded */
	ck_assert_int_eq(mproc_send_msg(b, &s, 20), -ETIMEDOUT);
	ck_assert_uint_eq(stats_of(b).queued, (uint64_t)n);
	mproc_close(q);
	mproc_close(b);
}
END_TEST

/* A sender blocked on a full queue wakes when a receiver makes room. */
START_TEST(test_queue_full_sender_wakes)
{
	mproc_conn *q = queue_new(0, 0, 1, 0);
	int v = 1;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };
	pid_t kid;

	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, &v, sizeof(v)), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		int w = 2;
		mproc_msg s = { .request = MPROC_DO, .size = sizeof(w),
		                .data = &w };

		child_assert(mproc_send_msg(q, &s, T) == 0);
		_exit(0);
	}
	usleep(100000);
	ck_assert_int_eq(waitpid(kid, NULL, WNOHANG), 0); /* still blocked */
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(v, 1);
	check_reap_ok(kid, T);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(v, 2);
	mproc_close(q);
}
END_TEST

/* pymulproc: task counting with rejecting and accepting predicates. */
START_TEST(test_queue_task_counting)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	int i;

	for (i = 0; i < 3; i++)
		ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "t", 1), 0);
	ck_assert_uint_eq(stats_of(q).unfinished, 3);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(mproc_recv(q, &m, reject_all, NULL,
		                            MPROC_NOWAIT), -EAGAIN);
	ck_assert_uint_eq(stats_of(q).unfinished, 3);
	ck_assert_uint_eq(stats_of(q).queued, 3);
	ck_assert_int_eq(mproc_recv(q, &m, accept_all, NULL, T), 0);
	ck_assert_uint_eq(stats_of(q).unfinished, 2);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_for_me, NULL, T), 0);
	ck_assert_uint_eq(stats_of(q).unfinished, 0);
	ck_assert_uint_eq(stats_of(q).received, 3);
	ck_assert_uint_eq(stats_of(q).sent, 3);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	mproc_close(q);
}
END_TEST

/* pymulproc: a blocking receive woken by a child that sends late. */
START_TEST(test_queue_blocking_receive_woken)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	int v = 0;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };
	long long t0 = check_now_ms();
	pid_t kid = fork();

	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		int x = 99;

		usleep(200000);
		child_assert(mproc_send(q, MPROC_FINISHED, 0, &x, sizeof(x)) ==
		             0);
		_exit(0);
	}
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(v, 99);
	ck_assert_int_ge(check_now_ms() - t0, 150);
	check_reap_ok(kid, T);
	mproc_close(q);
}
END_TEST

/* A blocked receive whose predicate matches nothing keeps sleeping when
 * other mail arrives, and wakes for its own. */
START_TEST(test_queue_blocking_predicate_sleeps)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	int32_t want = MPROC_USER + 5, v = 0;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };
	pid_t kid = fork();

	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		int i;

		for (i = 0; i < 50; i++) {
			child_assert(mproc_send(q, MPROC_DO, 0, &i, sizeof(i)) ==
			             0);
			usleep(1000);
		}
		i = 1234;
		child_assert(mproc_send(q, want, 0, &i, sizeof(i)) == 0);
		_exit(0);
	}
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request, &want, T),
	                 0);
	ck_assert_int_eq(v, 1234);
	check_reap_ok(kid, T);
	ck_assert_uint_eq(stats_of(q).queued, 50);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_emsgsize_keeps_message)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char big[1000], buf[1000];
	mproc_msg m = { .data = buf, .capacity = 10 };

	memset(big, 'z', sizeof(big));
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, big, sizeof(big)), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), -EMSGSIZE);
	ck_assert_uint_eq(m.size, 1000);
	ck_assert_uint_eq(stats_of(q).queued, 1);
	ck_assert_uint_eq(stats_of(q).unfinished, 1);
	m.capacity = sizeof(buf);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_mem_eq(buf, big, sizeof(big));
	mproc_close(q);
}
END_TEST

/* Payloads wrap around the end of the ring whole. */
START_TEST(test_queue_wraparound)
{
	mproc_conn *q = queue_new(4096, 1000, 0, 0);
	unsigned char in[1000], out[1000];
	mproc_msg m = { .data = out, .capacity = sizeof(out) };
	int i, j;

	for (i = 0; i < 200; i++) {
		size_t n = (size_t)(i * 37) % sizeof(in);

		for (j = 0; j < (int)n; j++)
			in[j] = (unsigned char)(i + j * 7);
		ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, in, n), 0);
		if (i % 3 == 0)
			ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, in, 1), 0);
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
		ck_assert_uint_eq(m.size, n);
		ck_assert_mem_eq(out, in, n);
		if (i % 3 == 0) {
			ck_assert_int_eq(mproc_recv(q, &m, accept_all, NULL, T),
			                 0);
			ck_assert_uint_eq(m.size, 1);
		}
	}
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	ck_assert_uint_eq(stats_of(q).bytes, 0);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_manual_done)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

	ck_assert_int_eq(mproc_task_done(q), -EINVAL); /* nothing taken */
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "a", 1), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "b", 1), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	ck_assert_uint_eq(stats_of(q).unfinished, 2);
	ck_assert_int_eq(mproc_queue_join(q, 20), -ETIMEDOUT);
	ck_assert_int_eq(mproc_task_done(q), 0);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_task_done(q), 0);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	ck_assert_int_eq(mproc_task_done(q), -EINVAL);
	ck_assert_uint_eq(stats_of(q).unfinished, 0);
	mproc_close(q);

	q = queue_new(0, 0, 0, 0);
	ck_assert_int_eq(mproc_task_done(q), -EINVAL); /* automatic queue */
	mproc_close(q);
}
END_TEST

/* A join in the parent returns when a child finishes the last task. */
START_TEST(test_queue_join_waits_for_children)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid;
	int i;

	for (i = 0; i < 10; i++)
		ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "t", 1), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		for (i = 0; i < 10; i++) {
			child_assert(mproc_recv(q, &m, NULL, NULL, T) == 0);
			usleep(5000);
			child_assert(mproc_task_done(q) == 0);
		}
		_exit(0);
	}
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	ck_assert_uint_eq(stats_of(q).unfinished, 0);
	check_reap_ok(kid, T);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_stats_exact)
{
	mproc_conn *q = queue_new(8192, 512, 0, 0);
	char buf[512];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	mproc_stats st;

	st = stats_of(q);
	ck_assert_uint_eq(st.capacity, 8192);
	ck_assert_uint_eq(st.max_payload, 512);
	ck_assert_uint_eq(st.queued + st.bytes + st.sent + st.received, 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, buf, 100), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, buf, 1), 0);
	st = stats_of(q);
	ck_assert_uint_eq(st.queued, 2);
	ck_assert_uint_gt(st.bytes, 101);
	ck_assert_uint_eq(st.bytes % 8, 0);
	ck_assert_uint_eq(st.sent, 2);
	ck_assert_uint_eq(st.unfinished, 2);
	ck_assert_uint_eq(st.recoveries, 0);
	ck_assert_uint_eq(st.orphans, 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	st = stats_of(q);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.bytes, 0);
	ck_assert_uint_eq(st.received, 2);
	ck_assert_uint_eq(st.unfinished, 0);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_bad_options)
{
	mproc_queue_opts o;
	mproc_conn *q = NULL;

	memset(&o, 0, sizeof(o));
	o.flags = 0x80;
	ck_assert_int_eq(mproc_queue_open(&q, &o), -EINVAL);
	memset(&o, 0, sizeof(o));
	o.capacity = 100; /* under one 64 KiB message */
	ck_assert_int_eq(mproc_queue_open(&q, &o), -EINVAL);
	o.capacity = 4096;
	o.max_payload = 8192;
	ck_assert_int_eq(mproc_queue_open(&q, &o), -EINVAL);
	o.capacity = (size_t)MPROC_QUEUE_MAX_CAPACITY + 8;
	o.max_payload = 0;
	ck_assert_int_eq(mproc_queue_open(&q, &o), -EINVAL);
	ck_assert_ptr_null(q);
	ck_assert_int_eq(mproc_queue_open(NULL, NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_open(&q, NULL), 0);
	ck_assert_uint_eq(stats_of(q).capacity, MPROC_QUEUE_DEFAULT_CAPACITY);
	ck_assert_uint_eq(stats_of(q).max_payload,
	                  MPROC_QUEUE_DEFAULT_MAX_PAYLOAD);
	mproc_close(q);
}
END_TEST

START_TEST(test_queue_bad_arguments_change_nothing)
{
	mproc_conn *q = queue_new(0, 128, 0, 0);
	char buf[256] = "keep";
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	mproc_msg s = { .request = MPROC_DO, .size = 5, .data = NULL };

	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "keep", 4), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, NULL, 3), -EINVAL);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, buf, 129), -EMSGSIZE);
	ck_assert_int_eq(mproc_send(NULL, MPROC_DO, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(q, &s, T), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(q, NULL, T), -EINVAL);
	s.data = buf;
	ck_assert_int_eq(mproc_send_msg(q, &s, -2), -EINVAL);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, -5), -EINVAL);
	ck_assert_int_eq(mproc_recv(q, NULL, NULL, NULL, T), -EINVAL);
	ck_assert_int_eq(mproc_recv(NULL, &m, NULL, NULL, T), -EINVAL);
	m.data = NULL;
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(q, -3), -EINVAL);
	ck_assert_int_eq(mproc_queue_stats(q, NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_queue_empty(NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_shutdown(NULL), -EINVAL);
	ck_assert_int_eq(mproc_task_done(NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_purge(NULL), -EINVAL);
	ck_assert_int_ge(mproc_fd(q), 0); /* a queue has one too */
	/* The one good message is still there, whole. */
	ck_assert_uint_eq(stats_of(q).queued, 1);
	ck_assert_uint_eq(stats_of(q).sent, 1);
	m.data = buf;
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_mem_eq(buf, "keep", 4);
	mproc_close(q);
}
END_TEST

/*
 * A parent hands a DO task to anyone and waits for the FINISHED answer
 * with mproc_match_request: it never takes back its own task (as
 * mproc_for_me would: the task is addressed to anyone). The child takes
 * the task with mproc_match_request_for_me; a NULL code matches nothing.
 */
START_TEST(test_queue_match_request_finished)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	const int32_t do_ = MPROC_DO, finished = MPROC_FINISHED;
	int32_t task = 20, v = 0;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };
	pid_t kid;

	ck_assert_int_eq(mproc_send(q, MPROC_DO, MPROC_ANYONE, &task,
	                            sizeof(task)),
	                 0);
	/* The DO is there, for anyone, but is not what the parent waits
	 * for; nor does a NULL code match it. */
	ck_assert_int_eq(mproc__queue_peek(q, mproc_for_me, NULL), 1);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request,
	                            (void *)&finished, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request, NULL,
	                            MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request_for_me, NULL,
	                            MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_uint_eq(stats_of(q).queued, 1);

	kid = check_fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		int32_t t = 0, r;
		mproc_msg c = { .data = &t, .capacity = sizeof(t) };

		child_assert(mproc_recv(q, &c, mproc_match_request_for_me,
		                        (void *)&do_, T) == 0);
		child_assert(c.request == MPROC_DO && t == 20);
		r = t * 2 + 1;
		child_assert(send_t(q, MPROC_FINISHED, getppid(), &r,
		                    sizeof(r), T) == 0);
		mproc_close(q);
		_exit(0);
	}
	/* Waits for the answer, the DO in the queue the whole time until
	 * the child takes it. */
	ck_assert_int_eq(mproc_recv(q, &m, mproc_match_request,
	                            (void *)&finished, T),
	                 0);
	ck_assert_int_eq(m.request, MPROC_FINISHED);
	ck_assert_int_eq(m.sender, kid);
	ck_assert_int_eq(v, 41);
	check_reap_ok(kid, T);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	ck_assert_uint_eq(stats_of(q).received, 2);
	mproc_close(q);
}
END_TEST

/* A predicate that calls back into its own queue gets -EDEADLK. */
static int reentrant_pred(const mproc_msg *m, void *arg)
{
	(void)m;
	return mproc_send((mproc_conn *)arg, MPROC_DO, 0, "x", 1) == -EDEADLK;
}

START_TEST(test_queue_reentrant_predicate)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "a", 1), 0);
	/* The predicate accepts only when its nested send said EDEADLK. */
	ck_assert_int_eq(mproc_recv(q, &m, reentrant_pred, q, T), 0);
	ck_assert_uint_eq(stats_of(q).queued, 0);
	ck_assert_uint_eq(stats_of(q).sent, 1);
	mproc_close(q);
}
END_TEST

/* Shutdown wakes a receiver, a sender and a joiner in other processes. */
START_TEST(test_queue_shutdown_wakes_everyone)
{
	mproc_conn *q = queue_new(0, 0, 1, 0);
	pid_t kids[3];
	int i;

	ck_assert_int_eq(mproc_send(q, MPROC_DO, 1, "full", 4), 0);
	for (i = 0; i < 3; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			char buf[8];
			mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
			int rc;

			if (i == 0)
				rc = mproc_recv(q, &m, mproc_for_me, NULL, 20000);
			else if (i == 1)
				rc = mproc_send(q, MPROC_DO, 0, "x", 1);
			else
				rc = mproc_queue_join(q, 20000);
			_exit(rc == -ESHUTDOWN ? 0 : 10 + i);
		}
	}
	usleep(100000);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(waitpid(kids[i], NULL, WNOHANG), 0);
	ck_assert_int_eq(mproc_queue_shutdown(q), 0);
	for (i = 0; i < 3; i++)
		check_reap_ok(kids[i], check_scale_ms(2000));
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "x", 1), -ESHUTDOWN);
	ck_assert_int_eq(mproc_queue_join(q, 10), -ESHUTDOWN);
	ck_assert_uint_eq(stats_of(q).queued, 1);
	mproc_close(q);
}
END_TEST

/* Mail for a process that is gone is an orphan: counted, purged, and a
 * join does not wait for it. */
START_TEST(test_queue_orphans)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid = fork();

	ck_assert_int_ge(kid, 0);
	if (kid == 0)
		_exit(0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, kid, "dead", 4), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, getpid(), "live", 4), 0);
	check_reap_ok(kid, T);
	ck_assert_uint_eq(stats_of(q).orphans, 1);
	ck_assert_int_eq(mproc_recv(q, &m, mproc_for_me, NULL, T), 0);
	ck_assert_mem_eq(buf, "live", 4);
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	ck_assert_uint_eq(stats_of(q).purged, 1);
	ck_assert_uint_eq(stats_of(q).orphans, 0);
	ck_assert_uint_eq(stats_of(q).queued, 0);

	/* Zombies count as gone too, and purge says how many it dropped. */
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0)
		_exit(0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, kid, "z", 1), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, kid, "z", 1), 0);
	/* Wait until the child is a zombie: exited, not reaped yet. */
	ck_assert_msg(check_wait_zombie(kid, 10000),
	              "child %d did not become a zombie", (int)kid);
	ck_assert_int_eq(mproc_queue_purge(q), 2);
	ck_assert_int_eq(mproc_queue_purge(q), 0);
	check_reap_ok(kid, T);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), 0);
	mproc_close(q);
}
END_TEST

/* Signals do not end a blocking receive early. */
static void on_usr1(int sig)
{
	(void)sig;
}

START_TEST(test_queue_signal_storm)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	struct sigaction sa;
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t me = getpid(), kid;
	long long t0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART: waits see EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		long long end = check_now_ms() + 400;

		while (check_now_ms() < end) {
			kill(me, SIGUSR1);
			usleep(500);
		}
		child_assert(mproc_send(q, MPROC_DO, 0, "late", 4) == 0);
		_exit(0);
	}
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_recv(q, &m, reject_all, NULL, 200), -ETIMEDOUT);
	ck_assert_int_ge(check_now_ms() - t0, 199);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_mem_eq(buf, "late", 4);
	check_reap_ok(kid, T);
	mproc_close(q);
}
END_TEST

/* A grandchild uses the inherited handle; a child that closes its copy
 * does not disturb the others. */
START_TEST(test_queue_fork_generations)
{
	mproc_conn *q = queue_new(0, 0, 0, 0);
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid = fork();

	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		pid_t g = fork();

		child_assert(g >= 0);
		if (g == 0) {
			child_assert(mproc_send(q, MPROC_DO, 0, "gc", 2) == 0);
			_exit(0);
		}
		mproc_close(q); /* the child's copy only */
		child_assert(check_wait_child(g, T) == 0);
		_exit(0);
	}
	check_reap_ok(kid, T);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	ck_assert_mem_eq(buf, "gc", 2);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "p", 1), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	mproc_close(q);
}
END_TEST

/* The queue holds nothing per process: no descriptor to leak over exec. */
START_TEST(test_queue_no_descriptor)
{
	int before, after, fd;
	mproc_conn *q;

	before = dup(0);
	ck_assert_int_ge(before, 0);
	close(before);
	q = queue_new(0, 0, 0, 0);
	fd = dup(0);
	after = fd;
	close(fd);
	ck_assert_int_eq(before, after);
	mproc_close(q);
}
END_TEST

static Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = check_tcase(s, "pymulproc");

	tcase_add_test(tc, test_queue_children_to_parent);
	tcase_add_test(tc, test_queue_duplex_directed_stress);
	tcase_add_test(tc, test_queue_receive_nothing);
	tcase_add_test(tc, test_queue_send_and_receive);
	tcase_add_test(tc, test_queue_not_for_us_stays);
	tcase_add_test(tc, test_queue_full);
	tcase_add_test(tc, test_queue_task_counting);
	tcase_add_test(tc, test_queue_blocking_receive_woken);

	tc = check_tcase(s, "semantics");
	tcase_add_test(tc, test_queue_predicate_keeps_order);
	tcase_add_test(tc, test_queue_full_sender_wakes);
	tcase_add_test(tc, test_queue_blocking_predicate_sleeps);
	tcase_add_test(tc, test_queue_emsgsize_keeps_message);
	tcase_add_test(tc, test_queue_wraparound);
	tcase_add_test(tc, test_queue_manual_done);
	tcase_add_test(tc, test_queue_join_waits_for_children);
	tcase_add_test(tc, test_queue_stats_exact);
	tcase_add_test(tc, test_queue_reentrant_predicate);
	tcase_add_test(tc, test_queue_match_request_finished);
	tcase_add_test(tc, test_queue_shutdown_wakes_everyone);
	tcase_add_test(tc, test_queue_orphans);
	tcase_add_test(tc, test_queue_signal_storm);
	tcase_add_test(tc, test_queue_fork_generations);
	tcase_add_test(tc, test_queue_no_descriptor);

	tc = check_tcase(s, "arguments");
	tcase_add_test(tc, test_queue_bad_options);
	tcase_add_test(tc, test_queue_bad_arguments_change_nothing);
	return s;
}

int main(void)
{
	return check_run_suite(queue_suite());
}
