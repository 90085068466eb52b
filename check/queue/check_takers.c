/*
 * check_takers.c - MANUAL_DONE queues when takers die: a taker killed (or
 * exiting) between taking a task and mproc_task_done stops holding join;
 * task_done from another process; more takers than the queue has slots.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "check_common.h"

static void send_tasks(mproc_conn *q, int n)
{
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, &i, sizeof(i)), 0);
}

static int take(mproc_conn *q)
{
	int v = -1;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	return mproc_recv(q, &m, NULL, NULL, 2000) == 0 ? v : -1;
}

/* A child takes two tasks, finishes one and is killed holding the other:
 * the join no longer counts it, and the task still queued still counts. */
START_TEST(test_takers_killed_taker_forgotten)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	pid_t pid;
	int st;

	send_tasks(q, 3);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(take(q) == 0 && take(q) == 1);
		child_assert(mproc_task_done(q) == 0);
		raise(SIGKILL);
		_exit(1);
	}
	st = check_wait_child(pid, 5000);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ck_assert_int_eq(stats_of(q).unfinished, 1); /* task 2, queued */
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(take(q), 2);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_task_done(q), 0);
	ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
	ck_assert_int_eq(mproc_task_done(q), -EINVAL);
	mproc_close(q);
}
END_TEST

/* A join already waiting when the taker dies returns within its slice,
 * even before the dead taker is reaped (a zombie is gone). */
START_TEST(test_takers_waiting_join_sees_death)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	int go[2];
	long long t0;
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	send_tasks(q, 1);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(take(q) == 0);
		child_assert(write(go[1], "t", 1) == 1);
		sleep(1);
		raise(SIGKILL);
		_exit(1);
	}
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_queue_join(q, check_scale_ms(5000)), 0);
	ck_assert_msg(check_now_ms() - t0 < check_scale_ms(3000),
	              "join took %lld ms", check_now_ms() - t0);
	check_wait_child(pid, 5000);
	close(go[0]);
	close(go[1]);
	mproc_close(q);
}
END_TEST

/* A taker that exits without task_done is forgotten too. */
START_TEST(test_takers_exited_taker_forgotten)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	pid_t pid;

	send_tasks(q, 2);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(take(q) == 0 && take(q) == 1);
		mproc_close(q); /* no task_done: the tasks stay taken */
		_exit(0);
	}
	check_reap_ok(pid, 5000);
	ck_assert_int_eq(stats_of(q).unfinished, 0);
	ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
	mproc_close(q);
}
END_TEST

/* task_done in another process than the taker's, as JoinableQueue
 * allows: the taker is alive and its task is finished by the parent. */
START_TEST(test_takers_done_elsewhere)
{
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	int go[2], back[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(back), 0);
	send_tasks(q, 1);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(take(q) == 0);
		child_assert(write(back[1], "t", 1) == 1);
		child_assert(read(go[0], &c, 1) == 1);
		mproc_close(q);
		_exit(0);
	}
	ck_assert_int_eq(read(back[0], &c, 1), 1);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_task_done(q), 0);
	ck_assert_int_eq(mproc_task_done(q), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	check_reap_ok(pid, 5000);
	close(go[0]);
	close(go[1]);
	close(back[0]);
	close(back[1]);
	mproc_close(q);
}
END_TEST

/* More live takers than slots: every task is counted (the ones past the
 * slots in the shared count) and every task_done finishes one. */
START_TEST(test_takers_more_than_slots)
{
	enum { N = 80 };
	mproc_conn *q = queue_new(0, 0, 0, MPROC_QUEUE_MANUAL_DONE);
	int go[2], back[2];
	pid_t pid[N];
	char c;

	if (check_slow()) {
		/* 80 processes under valgrind take minutes to start. */
		fprintf(stderr, "test_takers_more_than_slots: skipped under "
		        "valgrind\n");
		mproc_close(q);
		return;
	}
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(back), 0);
	send_tasks(q, N);
	for (int i = 0; i < N; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			child_assert(take(q) >= 0);
			child_assert(write(back[1], "t", 1) == 1);
			child_assert(read(go[0], &c, 1) == 1);
			child_assert(mproc_task_done(q) == 0);
			mproc_close(q);
			_exit(0);
		}
	}
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(read(back[0], &c, 1), 1);
	ck_assert_int_eq(stats_of(q).unfinished, N);
	ck_assert_int_eq(mproc_queue_join(q, MPROC_NOWAIT), -EAGAIN);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(write(go[1], "g", 1), 1);
	for (int i = 0; i < N; i++)
		check_reap_ok(pid[i], 10000);
	ck_assert_int_eq(mproc_queue_join(q, 1000), 0);
	ck_assert_int_eq(stats_of(q).unfinished, 0);
	close(go[0]);
	close(go[1]);
	close(back[0]);
	close(back[1]);
	mproc_close(q);
}
END_TEST

static Suite *takers_suite(void)
{
	Suite *s = suite_create("takers");
	TCase *tc = tcase_create("deaths");

	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_takers_killed_taker_forgotten);
	tcase_add_test(tc, test_takers_waiting_join_sees_death);
	tcase_add_test(tc, test_takers_exited_taker_forgotten);
	tcase_add_test(tc, test_takers_done_elsewhere);
	tcase_add_test(tc, test_takers_more_than_slots);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run_suite(takers_suite());
}
