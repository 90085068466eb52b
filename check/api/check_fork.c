/*
 * check_fork.c - handles across fork() and exec(): grandchildren, a child
 * that closes its copy, a process that exits without closing, and no
 * descriptor leaking into an exec'd program.
 */
#include <fcntl.h>
#include <signal.h>

#include "check_common.h"

#define T 5000

/* A grandchild sends on the pipe end its parent inherited. */
START_TEST(test_fork_pipe_grandchild)
{
	mproc_conn *pe, *ce;
	char buf[16];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid;

	ck_assert_int_eq(mproc_pipe_open(&pe, &ce), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		pid_t g;

		mproc_close(pe);
		g = fork();
		child_assert(g >= 0);
		if (g == 0) {
			child_assert(mproc_send(ce, MPROC_FINISHED, 0, "grand",
			                        5) == 0);
			mproc_close(ce);
			_exit(0);
		}
		mproc_close(ce);
		child_assert(check_wait_child(g, T) == 0);
		_exit(0);
	}
	mproc_close(ce);
	ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), 0);
	ck_assert_uint_eq(m.size, 5);
	ck_assert_mem_eq(buf, "grand", 5);
	check_reap_ok(kid, T);
	/* Every copy of the child end is gone now. */
	ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), -EPIPE);
	mproc_close(pe);
}
END_TEST

/* A child closing its inherited copy of the parent's end changes
 * nothing for the parent. */
START_TEST(test_fork_child_closes_copy)
{
	mproc_conn *pe, *ce;
	char buf[16];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid;

	ck_assert_int_eq(mproc_pipe_open(&pe, &ce), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		mproc_close(pe); /* the child's copy only */
		child_assert(mproc_recv(ce, &m, NULL, NULL, T) == 0);
		child_assert(mproc_send(ce, MPROC_FINISHED, 0, buf, m.size) ==
		             0);
		mproc_close(ce);
		_exit(0);
	}
	mproc_close(ce);
	ck_assert_int_eq(mproc_send(pe, MPROC_DO, kid, "ping", 4), 0);
	ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), 0);
	ck_assert_mem_eq(buf, "ping", 4);
	check_reap_ok(kid, T);
	mproc_close(pe);
}
END_TEST

/* Children that exit without closing: the queue and the pipe go on. */
START_TEST(test_fork_exit_without_close)
{
	mproc_conn *q, *pe, *ce;
	char buf[16];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t kid;
	int i;

	ck_assert_int_eq(mproc_queue_open(&q, NULL), 0);
	ck_assert_int_eq(mproc_pipe_open(&pe, &ce), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		for (i = 0; i < 3; i++) {
			child_assert(mproc_send(q, MPROC_FINISHED, 0, &i,
			                        sizeof(i)) == 0);
			child_assert(mproc_send(ce, MPROC_FINISHED, 0, &i,
			                        sizeof(i)) == 0);
		}
		_exit(0); /* no mproc_close */
	}
	mproc_close(ce);
	check_reap_ok(kid, T);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
		ck_assert_int_eq(*(int *)buf, i);
		ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), 0);
		ck_assert_int_eq(*(int *)buf, i);
	}
	ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), -EPIPE);
	ck_assert_int_eq(mproc_queue_join(q, T), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "x", 1), 0);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, T), 0);
	mproc_close(q);
	mproc_close(pe);
}
END_TEST

/* exec: no descriptor of a pipe end reaches the new program. */
START_TEST(test_fork_exec_no_leak)
{
	mproc_conn *pe, *ce;
	char script[256];
	int fd1, fd2;
	pid_t kid;

	ck_assert_int_eq(mproc_pipe_open(&pe, &ce), 0);
	fd1 = mproc_fd(pe);
	fd2 = mproc_fd(ce);
	ck_assert_int_ge(fd1, 0);
	ck_assert_int_ge(fd2, 0);
	ck_assert_int_ne(fcntl(fd1, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(fd2, F_GETFD) & FD_CLOEXEC, 0);
	snprintf(script, sizeof(script),
	         "for f in %d %d; do [ -e /proc/$$/fd/$f ] && exit 3; done; "
	         "exit 0",
	         fd1, fd2);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	check_reap_ok(kid, T);
	mproc_close(pe);
	mproc_close(ce);
}
END_TEST

/* Calls on a closed handle fail cleanly; closing twice too. */
START_TEST(test_fork_closed_handles)
{
	mproc_conn *q, *pe, *ce;
	char buf[8];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	mproc_stats st;

	ck_assert_int_eq(mproc_queue_open(&q, NULL), 0);
	ck_assert_int_eq(mproc_pipe_open(&pe, &ce), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(mproc_close(ce), 0);
	ck_assert_int_eq(mproc_send(q, MPROC_DO, 0, "x", 1), -EINVAL);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_queue_stats(q, &st), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(q, 0), -EINVAL);
	ck_assert_int_eq(mproc_queue_empty(q), -EINVAL);
	ck_assert_int_eq(mproc_send(ce, MPROC_DO, 0, "x", 1), -EINVAL);
	ck_assert_int_eq(mproc_recv(ce, &m, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_fd(ce), -EINVAL);
	ck_assert_int_eq(mproc_close(q), -EINVAL);
	ck_assert_int_eq(mproc_close(ce), -EINVAL);
	/* The live end sees its peer gone. */
	ck_assert_int_eq(mproc_recv(pe, &m, NULL, NULL, T), -EPIPE);
	ck_assert_int_eq(mproc_send(pe, MPROC_DO, 0, "x", 1), -EPIPE);
	ck_assert_int_eq(mproc_close(pe), 0);
}
END_TEST

static Suite *fork_suite(void)
{
	Suite *s = suite_create("fork");
	TCase *tc = check_tcase(s, "fork");

	tcase_add_test(tc, test_fork_pipe_grandchild);
	tcase_add_test(tc, test_fork_child_closes_copy);
	tcase_add_test(tc, test_fork_exit_without_close);
	tcase_add_test(tc, test_fork_exec_no_leak);
	tcase_add_test(tc, test_fork_closed_handles);
	return s;
}

int main(void)
{
	return check_run_suite(fork_suite());
}
