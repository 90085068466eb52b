/*
 * check_common.h - helpers shared by the Check suites: forking children
 * that are always reaped, asserting how they ended, bounded waits, shared
 * scratch memory, sends and receives with a timeout, a queue's state.
 *
 * Also in check/common/: check_rng.h (random helpers), check_pay.h
 * (payloads that prove themselves whole), check_errnos.h (the errno
 * lists), check_layout.h (a queue's mapping, for the tests that poke it).
 */
#ifndef MPROC_CHECK_COMMON_H
#define MPROC_CHECK_COMMON_H

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* Reap pid and assert it was killed by SIGKILL. */
#define check_reap_killed(pid)                                                \
	do {                                                                  \
		int st_ = check_wait_child((pid), 10000);                     \
		ck_assert_msg(st_ >= 0, "child %d did not end in time",      \
		              (int)(pid));                                    \
		ck_assert_msg(WIFSIGNALED(st_) && WTERMSIG(st_) == SIGKILL,   \
		              "child %d was not killed: status 0x%x",         \
		              (int)(pid), st_);                               \
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

/* 1 when /proc says pid is asleep in the kernel (S), 0 otherwise. */
static inline int check_proc_sleeping(pid_t pid)
{
	return check_proc_state(pid) == 'S';
}

/*
 * shm_alloc maps len zeroed bytes shared with the children forked after
 * it (MAP_SHARED | MAP_ANONYMOUS), or the test fails. munmap it when done.
 */
static inline void *shm_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

/* mproc_send_msg of a message made from the arguments, with a timeout
 * (mproc_send waits for ever). Returns what it returned. */
static inline int send_t(mproc_conn *c, int32_t req, pid_t to,
                         const void *data, size_t size, int timeout_ms)
{
	mproc_msg m;

	memset(&m, 0, sizeof(m));
	m.request = req;
	m.recipient = to;
	m.data = (void *)data;
	m.size = (uint32_t)size;
	return mproc_send_msg(c, &m, timeout_ms);
}

/* mproc_recv into buf (cap bytes) through m. Returns what it returned. */
static inline int recv_t(mproc_conn *c, mproc_msg *m, void *buf, size_t cap,
                         mproc_match_fn match, void *arg, int timeout_ms)
{
	memset(m, 0, sizeof(*m));
	m->data = buf;
	m->capacity = (uint32_t)cap;
	return mproc_recv(c, m, match, arg, timeout_ms);
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
	mproc_queue_opts o = { capacity, max_messages, max_payload, flags, 0 };
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

/*
 * check_drained: after the last message was taken, nothing is queued or
 * unfinished, every message sent was received, the queue says it is
 * empty and a join returns at once.
 */
static inline void check_drained(mproc_conn *q)
{
	mproc_stats st = stats_of(q);
	int rc;

	ck_assert_msg(st.queued == 0 && st.bytes == 0 && st.unfinished == 0,
	              "after draining: queued %llu bytes %llu unfinished %llu",
	              (unsigned long long)st.queued,
	              (unsigned long long)st.bytes,
	              (unsigned long long)st.unfinished);
	ck_assert_msg(st.sent == st.received, "sent %llu != received %llu",
	              (unsigned long long)st.sent,
	              (unsigned long long)st.received);
	ck_assert_int_eq(mproc_queue_empty(q), 1);
	rc = mproc_queue_join(q, MPROC_NOWAIT);
	ck_assert_msg(rc == 0, "join after draining: %s", mproc_strerror(rc));
}

/* check_drained, where nobody died holding a lock: no repair either. */
static inline void check_drained_no_repair(mproc_conn *q)
{
	check_drained(q);
	ck_assert_uint_eq(stats_of(q).recoveries, 0);
}

/* A test case of suite s with the suites' timeout. */
static inline TCase *check_tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, CHECK_TIMEOUT);
	suite_add_tcase(s, tc);
	return tc;
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
