/*
 * check_common.h - helpers shared by the Check suites: forking children
 * that are always reaped, asserting how they ended, bounded waits.
 */
#ifndef MPROC_CHECK_COMMON_H
#define MPROC_CHECK_COMMON_H

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

/* Per-TCase timeout in seconds (raised under sanitizers by the env). */
#define CHECK_TIMEOUT 60

/* Milliseconds on CLOCK_MONOTONIC. */
static inline long long check_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * check_wait_child reaps pid within timeout_ms (SIGKILLs it after that)
 * and returns its wait status.
 */
static inline int check_wait_child(pid_t pid, int timeout_ms)
{
	long long end = check_now_ms() + timeout_ms;
	int st = 0;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (check_now_ms() > end) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -2;
		}
		usleep(1000);
	}
}

/* Reap pid and assert it exited with code 0. */
#define check_reap_ok(pid, timeout_ms)                                        \
	do {                                                                  \
		int st_ = check_wait_child((pid), (timeout_ms));              \
		ck_assert_msg(st_ >= 0, "child %d did not end in time",      \
		              (int)(pid));                                    \
		ck_assert_msg(WIFEXITED(st_) && WEXITSTATUS(st_) == 0,        \
		              "child %d ended badly: status 0x%x", (int)(pid), \
		              st_);                                           \
	} while (0)

/* In a child: fail with a message and exit code 1. */
#define child_fail(...)                                                       \
	do {                                                                  \
		fprintf(stderr, "child %d: ", (int)getpid());                 \
		fprintf(stderr, __VA_ARGS__);                                 \
		fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__);            \
		_exit(1);                                                     \
	} while (0)

/*
 * expect_msg is ck_assert_msg without the checkpoint Check records on
 * success (a write to its pipe each time): for assertions inside loops.
 */
#define expect_msg(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond))                                                  \
			ck_abort_msg(__VA_ARGS__);                            \
	} while (0)

#define child_assert(cond)                                                    \
	do {                                                                  \
		if (!(cond))                                                  \
			child_fail("assertion failed: %s", #cond);            \
	} while (0)

/*
 * check_slow is 1 under "make check-valgrind" (MPROC_VALGRIND set and not
 * "0"), where everything runs 20-50 times slower and a process's threads
 * take turns. Only time bounds and minimum counts depend on it, never
 * what a test asserts.
 */
static inline int check_slow(void)
{
	const char *s = getenv("MPROC_VALGRIND");

	return s != NULL && s[0] != '\0' && strcmp(s, "0") != 0;
}

/* A time bound in ms: as given, or 10 times that when check_slow(). */
static inline int check_scale_ms(int ms)
{
	return check_slow() ? ms * 10 : ms;
}

/*
 * check_proc_state returns the state letter /proc/<pid>/stat shows
 * ('R', 'S', 'Z', ...), or '?' if pid is gone or unreadable.
 */
static inline char check_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return '?';
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/*
 * check_wait_zombie waits up to timeout_ms for our child pid to have
 * exited without being reaped (state 'Z'). Returns 1 once it is a zombie,
 * 0 on timeout. Does not reap it.
 */
static inline int check_wait_zombie(pid_t pid, int timeout_ms)
{
	long long end = check_now_ms() + timeout_ms;

	for (;;) {
		if (check_proc_state(pid) == 'Z')
			return 1;
		if (check_now_ms() > end)
			return 0;
		usleep(1000);
	}
}

/* Seconds for stress tests: MPROC_STRESS_SECONDS, default 5. */
static inline int check_stress_seconds(void)
{
	const char *s = getenv("MPROC_STRESS_SECONDS");
	int n = s ? atoi(s) : 5;

	return n > 0 ? n : 5;
}

/* A queue with these options (0: the default), or the test fails. */
static inline mproc_conn *queue_new(size_t capacity, uint32_t max_payload,
                                    uint32_t max_messages, uint32_t flags)
{
	mproc_queue_opts o = { capacity, max_messages, max_payload, flags };
	mproc_conn *q = NULL;
	int rc = mproc_queue_open(&q, &o);

	ck_assert_msg(rc == 0 && q != NULL, "mproc_queue_open: %s",
	              mproc_strerror(rc));
	return q;
}

/* q's stats, or the test fails. */
static inline mproc_stats stats_of(mproc_conn *q)
{
	mproc_stats st;
	int rc = mproc_queue_stats(q, &st);

	ck_assert_msg(rc == 0, "mproc_queue_stats: %s", mproc_strerror(rc));
	return st;
}

/* Run one suite; exit status for automake. */
static inline int check_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* MPROC_CHECK_COMMON_H */
