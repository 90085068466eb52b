/*
 * check_proc.c - process liveness (base/proc.h): whether a pid still
 * names the process a message was sent to, through the per-scan cache
 * (one /proc read per distinct pid) and with no descriptor left.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>

#include "base/clock.h"
#include "base/proc.h"
#include "check_common.h"

/* A child that waits (for at most 20 s) until killed. */
static pid_t proc_live_child(void)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (int i = 0; i < 20000; i++)
			usleep(1000);
		_exit(0);
	}
	return pid;
}

/* A child that exits at once, left a zombie (not reaped) for the caller. */
static pid_t proc_zombie_child(void)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_msg(check_wait_zombie(pid, check_scale_ms(10000)),
	              "child %d did not become a zombie", (int)pid);
	return pid;
}

/* A pid no process has: one that was a child of ours and was reaped. */
static pid_t proc_dead_pid(void)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	check_reap_ok(pid, 10000);
	return pid;
}

/*
 * Each distinct pid is looked up once, however often it is asked about,
 * and each answer is right: alive (this process, the parent, a child
 * asleep), gone (a zombie, a reaped child), or gone because the process
 * started after the message was sent.
 */
START_TEST(test_proc_live_cache_once_per_pid)
{
	/* Mail to the dead one was sent before it was forked: a later
	 * owner of its pid started after that. */
	uint64_t before = mproc__boottime_ns();
	pid_t dead = proc_dead_pid();
	pid_t live = proc_live_child(), zombie = proc_zombie_child();
	uint64_t now = mproc__boottime_ns();
	const struct {
		pid_t pid;
		uint64_t sent;
		int gone;
	} who[] = {
		{ getpid(), now, 0 }, { getppid(), now, 0 }, { live, now, 0 },
		{ zombie, now, 1 },   { dead, before, 1 },
	};
	const unsigned n = sizeof(who) / sizeof(who[0]);
	struct mproc__live lc;

	mproc__live_init(&lc);
	ck_assert_uint_eq(lc.lookups, 0);
	for (int round = 0; round < 500; round++)
		for (unsigned i = 0; i < n; i++)
			expect_msg(mproc__live_gone(&lc, who[i].pid,
			                            who[i].sent) == who[i].gone,
			           "pid %d (%u): gone should be %d", who[i].pid,
			           i, who[i].gone);
	ck_assert_uint_eq(lc.lookups, n);
	/* Mail sent before the live child started was for an earlier owner
	 * of its pid; the cache knows its start time. */
	ck_assert_int_eq(mproc__live_gone(&lc, live, 1), 1);
	ck_assert_int_eq(mproc__live_gone(&lc, live, 0), 0);
	/* No pid: no lookup, never gone. */
	ck_assert_int_eq(mproc__live_gone(&lc, 0, now), 0);
	ck_assert_int_eq(mproc__live_gone(&lc, -1, now), 0);
	ck_assert_uint_eq(lc.lookups, n);
	/* The same answers without the cache. */
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(mproc__pid_gone(who[i].pid, who[i].sent),
		                 who[i].gone);

	kill(live, SIGKILL);
	check_reap_killed(live);
	check_reap_ok(zombie, 10000);
}
END_TEST

/*
 * More distinct pids than the cache has slots: every answer still right
 * (an evicted pid is looked up again), and no more lookups than asks.
 */
START_TEST(test_proc_live_cache_overflow)
{
	enum { N = 3 * MPROC__LIVE_SLOTS };
	uint64_t before = mproc__boottime_ns();
	pid_t dead[N];
	unsigned asks = 0;
	struct mproc__live lc;

	for (int i = 0; i < N; i++)
		dead[i] = proc_dead_pid();
	mproc__live_init(&lc);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			/* Sent before the pid's owner was forked: a process
			 * that reuses it started later. */
			expect_msg(mproc__live_gone(&lc, dead[i], before) == 1,
			           "reaped pid %d not gone", (int)dead[i]);
			expect_msg(mproc__live_gone(&lc, getpid(), before) == 0,
			           "this process gone");
			asks += 2;
		}
	}
	ck_assert_uint_le(lc.lookups, asks);
	ck_assert_uint_ge(lc.lookups, N);
}
END_TEST

#define PROC_NOFILE 64

/* In a child: lower the soft RLIMIT_NOFILE to PROC_NOFILE (valgrind
 * keeps the hard one) and take every descriptor left (dups of 0) into
 * fds[]; returns how many. */
static int proc_fill_fds(int *fds)
{
	struct rlimit rl;
	int n = 0, fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		child_fail("getrlimit: %s", strerror(errno));
	rl.rlim_cur = PROC_NOFILE;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		child_fail("setrlimit: %s", strerror(errno));

	while ((fd = dup(0)) >= 0) {
		if (n == PROC_NOFILE)
			child_fail("dup never ran out");
		fds[n++] = fd;
	}
	if (errno != EMFILE)
		child_fail("dup: %s", strerror(errno));
	if (n == 0 || open("/dev/null", O_RDONLY) >= 0 || errno != EMFILE)
		child_fail("descriptors left");
	return n;
}

/* In a child: a child of its own that has exited, not reaped. */
static pid_t proc_child_zombie(void)
{
	pid_t zombie = check_fork();

	if (zombie < 0)
		child_fail("fork: %s", strerror(errno));
	if (zombie == 0)
		_exit(0);
	if (!check_wait_zombie(zombie, check_scale_ms(10000)))
		child_fail("no zombie");
	return zombie;
}

/*
 * A zombie is gone even when the process looking has no descriptor left
 * to read /proc with (the library keeps one in reserve for this, once it
 * has looked a pid up): in a child with RLIMIT_NOFILE lowered and every
 * descriptor taken.
 */
START_TEST(test_proc_gone_without_descriptors)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pid_t zombie = proc_child_zombie(), live = getppid();
		int fds[PROC_NOFILE], n;

		child_assert(mproc__pid_gone(zombie, 0) == 1);
		n = proc_fill_fds(fds);
		for (int i = 0; i < 3; i++) {
			child_assert(mproc__pid_gone(zombie, 0) == 1);
			child_assert(mproc__pid_gone(live, 0) == 0);
			child_assert(mproc__pid_gone(getpid(), 0) == 0);
		}
		/* The reserve went back where it was: still none free. */
		child_assert(dup(0) < 0 && errno == EMFILE);
		for (int i = 0; i < n; i++)
			close(fds[i]);
		child_assert(check_wait_child(zombie, 10000) == 0);
		_exit(0);
	}
	check_reap_ok(pid, check_scale_ms(20000));
}
END_TEST

/*
 * The same through the public calls, in a process whose first liveness
 * question comes after its descriptors ran out: it opened a queue and
 * sent mail to a child that is now a zombie, then filled its descriptor
 * table. stats still counts that mail as orphans and purge drops it.
 */
START_TEST(test_proc_purge_without_descriptors)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_queue_opts o = { 1u << 16, 0, 64, 0, 0 };
		pid_t zombie = proc_child_zombie();
		int fds[PROC_NOFILE], n, rc;
		mproc_conn *q;
		mproc_stats st;

		if (mproc_queue_open(&q, &o) != 0)
			child_fail("queue_open");
		for (int i = 0; i < 3; i++)
			child_assert(mproc_send(q, MPROC_DO, zombie, &i,
			                        sizeof(i)) == 0);
		child_assert(mproc_send(q, MPROC_DO, MPROC_ANYONE, NULL, 0) ==
		             0);
		n = proc_fill_fds(fds);
		rc = mproc_queue_stats(q, &st);
		if (rc != 0 || st.orphans != 3)
			child_fail("stats without descriptors: %s, orphans "
			           "%llu of 3", mproc_strerror(rc),
			           (unsigned long long)st.orphans);
		rc = mproc_queue_purge(q);
		if (rc != 3)
			child_fail("purge without descriptors: %d of 3", rc);
		child_assert(mproc_queue_stats(q, &st) == 0 &&
		             st.queued == 1 && st.purged == 3);
		for (int i = 0; i < n; i++)
			close(fds[i]);
		child_assert(check_wait_child(zombie, 10000) == 0);
		mproc_close(q);
		_exit(0);
	}
	check_reap_ok(pid, check_scale_ms(20000));
}
END_TEST

Suite *proc_suite(void);

Suite *proc_suite(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = check_tcase(s, "liveness");

	tcase_add_test(tc, test_proc_live_cache_once_per_pid);
	tcase_add_test(tc, test_proc_live_cache_overflow);
	tcase_add_test(tc, test_proc_gone_without_descriptors);
	tcase_add_test(tc, test_proc_purge_without_descriptors);
	return s;
}

int main(void)
{
	return check_run_suite(proc_suite());
}
