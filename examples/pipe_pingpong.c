/*
 * pipe_pingpong - a parent and a forked child bounce messages through an
 * mproc pipe and the parent reports the round-trip time.
 *
 *   pipe_pingpong [count]     (default 10000 round trips, 64-byte payload)
 *
 * The child echoes every MPROC_DO back as MPROC_FINISHED and exits when it
 * takes MPROC_DIE; the parent reaps it.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define PAYLOAD 64
#define WAIT_MS 5000 /* no single message should take this long */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int child(mproc_conn *c)
{
	unsigned char buf[PAYLOAD];
	mproc_msg m;
	int rc;

	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = sizeof(buf);
		rc = mproc_recv(c, &m, NULL, NULL, MPROC_FOREVER);
		if (rc != 0) {
			fprintf(stderr, "child: receive: %s\n",
			        mproc_strerror(rc));
			return 1;
		}
		if (m.request == MPROC_DIE)
			return 0;
		m.request = MPROC_FINISHED;
		m.recipient = m.sender;
		m.sender = 0;
		rc = mproc_send_msg(c, &m, WAIT_MS);
		if (rc != 0) {
			fprintf(stderr, "child: send: %s\n", mproc_strerror(rc));
			return 1;
		}
	}
}

int main(int argc, char **argv)
{
	unsigned char out[PAYLOAD], in[PAYLOAD];
	mproc_conn *parent_end, *child_end;
	uint64_t *rtt, t0, total = 0;
	long n = 10000;
	mproc_msg m;
	pid_t pid;
	int rc, st;

	if (argc > 1) {
		char *end;

		n = strtol(argv[1], &end, 10);
		if (*end != '\0' || n <= 0 || n > 100000000) {
			fprintf(stderr, "usage: %s [round trips > 0]\n", argv[0]);
			return 2;
		}
	}
	rtt = malloc((size_t)n * sizeof(*rtt));
	if (rtt == NULL) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	rc = mproc_pipe_open(&parent_end, &child_end);
	if (rc != 0) {
		fprintf(stderr, "mproc_pipe_open: %s\n", mproc_strerror(rc));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		mproc_close(parent_end);
		rc = child(child_end);
		mproc_close(child_end);
		_exit(rc);
	}
	mproc_close(child_end);

	memset(out, 0xab, sizeof(out));
	for (long i = 0; i < n; i++) {
		memset(&m, 0, sizeof(m));
		m.request = MPROC_DO;
		m.recipient = pid;
		m.data = out;
		m.size = sizeof(out);
		t0 = now_ns();
		rc = mproc_send_msg(parent_end, &m, WAIT_MS);
		if (rc == 0) {
			m.data = in;
			m.capacity = sizeof(in);
			rc = mproc_recv(parent_end, &m, NULL, NULL, WAIT_MS);
		}
		if (rc != 0) {
			fprintf(stderr, "round trip %ld: %s\n", i,
			        mproc_strerror(rc));
			break;
		}
		rtt[i] = now_ns() - t0;
		total += rtt[i];
		if (m.request != MPROC_FINISHED || m.sender != pid ||
		    m.size != sizeof(out) || memcmp(in, out, sizeof(out)) != 0) {
			fprintf(stderr, "round trip %ld: wrong reply\n", i);
			rc = -EPROTO;
			break;
		}
	}

	/* DIE even after a failure, so the child never outlives us. */
	if (mproc_send_msg(parent_end, &(mproc_msg){ .request = MPROC_DIE },
	                   WAIT_MS) != 0)
		kill(pid, SIGKILL);
	mproc_close(parent_end);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (rc != 0)
		return 1;

	qsort(rtt, (size_t)n, sizeof(*rtt), cmp_u64);
	printf("pipe ping-pong: %ld round trips, %d-byte payload\n", n,
	       PAYLOAD);
	printf("  median  %8.2f us\n", rtt[(n - 1) / 2] / 1e3);
	printf("  p99     %8.2f us\n", rtt[(n * 99 - 1) / 100] / 1e3);
	printf("  mean    %8.2f us   (%.0f round trips/s)\n",
	       (double)total / (double)n / 1e3,
	       (double)n * 1e9 / (double)total);
	printf("child %d exited with status %d after DIE\n", (int)pid,
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	free(rtt);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
