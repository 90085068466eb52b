/*
 * fan_in - forked children report results to the parent through one queue
 * (M:1).
 *
 *   fan_in [children]     (default 4, at most 64)
 *
 * Child i sums the squares of its share of 1..children*1000, in CHUNKS
 * parts, and sends each partial sum as an MPROC_FINISHED message. The
 * parent prints every message as it arrives (sender pid, request name,
 * value), adds them up, checks the total against the closed form, joins
 * the queue and reaps the children.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#define SHARE 1000   /* numbers per child */
#define CHUNKS 3     /* messages per child */
#define WAIT_MS 5000 /* no message should take this long */

struct result {
	uint32_t child; /* index */
	uint32_t chunk;
	uint64_t value; /* sum of squares of the chunk */
};

static int child(mproc_conn *q, uint32_t idx)
{
	uint64_t first = (uint64_t)idx * SHARE + 1;

	for (uint32_t c = 0; c < CHUNKS; c++) {
		uint64_t lo = first + c * SHARE / CHUNKS;
		uint64_t hi = first + (c + 1) * SHARE / CHUNKS; /* exclusive */
		struct result r = { idx, c, 0 };
		int rc;

		for (uint64_t x = lo; x < hi; x++)
			r.value += x * x;
		rc = mproc_send(q, MPROC_FINISHED, MPROC_ANYONE, &r, sizeof(r));
		if (rc != 0) {
			fprintf(stderr, "child %u: send: %s\n", idx,
			        mproc_strerror(rc));
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t total = 0, n, expect;
	pid_t pids[64];
	long children = 4;
	int rc, failed = 0;
	mproc_conn *q;

	if (argc > 1) {
		char *end;

		children = strtol(argv[1], &end, 10);
		if (*end != '\0' || children < 1 || children > 64) {
			fprintf(stderr, "usage: %s [children 1..64]\n",
			        argv[0]);
			return 2;
		}
	}
	rc = mproc_queue_open(&q, NULL);
	if (rc != 0) {
		fprintf(stderr, "queue: %s\n", mproc_strerror(rc));
		return 1;
	}
	for (long i = 0; i < children; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			for (long j = 0; j < i; j++)
				kill(pids[j], SIGKILL);
			return 1;
		}
		if (pids[i] == 0) {
			rc = child(q, (uint32_t)i);
			mproc_close(q);
			_exit(rc);
		}
	}

	for (long i = 0; i < children * CHUNKS; i++) {
		struct result r;
		mproc_msg m = { .data = &r, .capacity = sizeof(r) };

		rc = mproc_recv(q, &m, NULL, NULL, WAIT_MS);
		if (rc != 0 || m.size != sizeof(r)) {
			fprintf(stderr, "parent: receive: %s\n",
			        rc ? mproc_strerror(rc) : "bad size");
			failed = 1;
			break;
		}
		printf("from pid %d: %-8s child %u chunk %u: %llu\n",
		       (int)m.sender, mproc_request_name(m.request), r.child,
		       r.chunk, (unsigned long long)r.value);
		total += r.value;
	}
	/* Every message taken: the join returns at once. */
	rc = mproc_queue_join(q, WAIT_MS);
	if (rc != 0) {
		fprintf(stderr, "join: %s\n", mproc_strerror(rc));
		failed = 1;
	}
	for (long i = 0; i < children; i++) {
		int st;

		if (failed)
			kill(pids[i], SIGKILL);
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	mproc_close(q);

	n = (uint64_t)children * SHARE;
	expect = n * (n + 1) * (2 * n + 1) / 6;
	printf("total %llu from %ld children (expected %llu): %s\n",
	       (unsigned long long)total, children,
	       (unsigned long long)expect,
	       !failed && total == expect ? "ok" : "WRONG");
	return !failed && total == expect ? 0 : 1;
}
