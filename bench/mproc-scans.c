/*
 * mproc-scans - orphan scans under load (issue: O(n) /proc reads under the
 * receive lock). "fill CAP_MIB": a queue full of 64 B messages to a live
 * child that never receives; times join(NOWAIT), purge and stats. "stream
 * CAP_MIB SECONDS" / "stream-poll ...": a directed 1:1 stream, alone or with
 * a third process calling join(MPROC_NOWAIT) in a loop. Run under
 * `strace -f -c -e trace=openat` to count the /proc reads.
 */
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	mproc_queue_opts o = { 0 };
	mproc_conn *q;
	char buf[64] = { 0 };
	const char *mode = argc > 1 ? argv[1] : "fill";
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 1;
	double secs = argc > 3 ? atof(argv[3]) : 2;
	pid_t live;
	int rc;

	o.capacity = mib << 20;
	o.max_payload = 64;
	if ((rc = mproc_queue_open(&q, &o)) < 0)
		return 1;
	if (strcmp(mode, "fill") == 0) {
		/* a live recipient that never receives */
		live = fork();
		if (live == 0) { pause(); _exit(0); }
		long n = 0;
		mproc_msg m = { .request = MPROC_DO, .recipient = live, .data = buf, .size = 64 };
		while (mproc_send_msg(q, &m, MPROC_NOWAIT) == 0)
			n++;
		double t0 = now();
		rc = mproc_queue_join(q, MPROC_NOWAIT);
		double t1 = now();
		int p = mproc_queue_purge(q);
		double t2 = now();
		mproc_stats st;
		int s = mproc_queue_stats(q, &st);
		double t3 = now();
		printf("queued %ld: join(NOWAIT) %s %.2f ms, purge %d %.2f ms, stats %d %.2f ms\n",
		       n, mproc_strerror(rc), (t1 - t0) * 1e3, p, (t2 - t1) * 1e3, s, (t3 - t2) * 1e3);
		kill(live, SIGKILL);
		waitpid(live, NULL, 0);
		return 0;
	}
	/* stream: producer sends directed to consumer; a poller calls join(NOWAIT) */
	int pfd[2];
	if (pipe(pfd) < 0) return 1;
	pid_t cons = fork();
	if (cons == 0) {
		long got = 0; double t0 = now(), maxgap = 0, last = t0;
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		while (now() - t0 < secs + 0.5) {
			if (mproc_recv(q, &m, mproc_for_me, NULL, 200) == 0) {
				double t = now();
				if (t - last > maxgap) maxgap = t - last;
				last = t;
				got++;
			}
		}
		printf("consumer: %.2f M msg/s, longest gap %.1f ms\n", got / (now() - t0) / 1e6, maxgap * 1e3);
		fflush(stdout);
		_exit(0);
	}
	pid_t prod = fork();
	if (prod == 0) {
		mproc_msg m = { .request = MPROC_DO, .recipient = cons, .data = buf, .size = 64 };
		double t0 = now();
		while (now() - t0 < secs)
			for (int i = 0; i < 1000; i++)
				mproc_send_msg(q, &m, 100);
		_exit(0);
	}
	pid_t poll_pid = -1;
	if (strcmp(mode, "stream-poll") == 0) {
		poll_pid = fork();
		if (poll_pid == 0) {
			double t0 = now(); long calls = 0;
			while (now() - t0 < secs) { mproc_queue_join(q, MPROC_NOWAIT); calls++; }
			printf("poller: %ld join(NOWAIT) calls\n", calls);
			fflush(stdout);
			_exit(0);
		}
	}
	waitpid(prod, NULL, 0);
	waitpid(cons, NULL, 0);
	if (poll_pid > 0) waitpid(poll_pid, NULL, 0);
	return 0;
}
