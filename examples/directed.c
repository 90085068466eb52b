/*
 * directed - the parent addresses tasks to particular children through one
 * shared queue; each child takes only its own mail with mproc_for_me.
 *
 *   directed [children [tasks]]     (default 3 children, 9 tasks)
 *
 * Task t goes, as MPROC_DO, to child t % children (by pid). A child
 * answers each of its tasks with MPROC_FINISHED addressed to the parent,
 * and exits on its MPROC_DIE. The parent prints what it sent and what came
 * back, checks that every task was answered by the child it was addressed
 * to, joins the queue and reaps the children.
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

#define WAIT_MS 5000 /* no message should take this long */

struct task {
	uint32_t id;
	uint32_t reserved;
	uint64_t value; /* the answer: id cubed */
};

static int child(mproc_conn *q)
{
	for (;;) {
		struct task t;
		mproc_msg m = { .data = &t, .capacity = sizeof(t) };
		int rc;

		/* Mail for other children stays in the queue for them. */
		rc = mproc_recv(q, &m, mproc_for_me, NULL, 2 * WAIT_MS);
		if (rc != 0) {
			fprintf(stderr, "child %d: receive: %s\n",
			        (int)getpid(), mproc_strerror(rc));
			return 1;
		}
		if (m.request == MPROC_DIE)
			return 0;
		if (m.request != MPROC_DO || m.size != sizeof(t))
			return 1;
		t.value = (uint64_t)t.id * t.id * t.id;
		rc = mproc_send(q, MPROC_FINISHED, m.sender, &t, sizeof(t));
		if (rc != 0) {
			fprintf(stderr, "child %d: send: %s\n", (int)getpid(),
			        mproc_strerror(rc));
			return 1;
		}
	}
}

int main(int argc, char **argv)
{
	long children = 3, tasks = 9;
	pid_t pids[64];
	int rc, failed = 0;
	mproc_conn *q;

	if (argc > 1)
		children = strtol(argv[1], NULL, 10);
	if (argc > 2)
		tasks = strtol(argv[2], NULL, 10);
	if (children < 1 || children > 64 || tasks < 0 || tasks > 100000) {
		fprintf(stderr, "usage: %s [children 1..64 [tasks]]\n",
		        argv[0]);
		return 2;
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
			rc = child(q);
			mproc_close(q);
			_exit(rc);
		}
	}

	for (long t = 0; t < tasks; t++) {
		struct task task = { (uint32_t)t, 0, 0 };
		pid_t to = pids[t % children];

		rc = mproc_send(q, MPROC_DO, to, &task, sizeof(task));
		if (rc != 0) {
			fprintf(stderr, "parent: send: %s\n",
			        mproc_strerror(rc));
			failed = 1;
			break;
		}
		printf("parent: %s task %ld -> child %d\n",
		       mproc_request_name(MPROC_DO), t, (int)to);
	}
	for (long n = 0; !failed && n < tasks; n++) {
		struct task task;
		mproc_msg m = { .data = &task, .capacity = sizeof(task) };

		/* Answers are addressed to us; the DO mail is not. */
		rc = mproc_recv(q, &m, mproc_for_me, NULL, WAIT_MS);
		if (rc != 0 || m.size != sizeof(task)) {
			fprintf(stderr, "parent: receive: %s\n",
			        rc ? mproc_strerror(rc) : "bad size");
			failed = 1;
			break;
		}
		printf("parent: %s task %u from child %d: %llu\n",
		       mproc_request_name(m.request), task.id, (int)m.sender,
		       (unsigned long long)task.value);
		if (m.request != MPROC_FINISHED ||
		    m.sender != pids[task.id % children] ||
		    task.value != (uint64_t)task.id * task.id * task.id) {
			fprintf(stderr, "parent: task %u answered wrongly\n",
			        task.id);
			failed = 1;
		}
	}
	/* One DIE each, by pid: a child cannot take another's pill. */
	for (long i = 0; i < children; i++) {
		if (failed)
			kill(pids[i], SIGKILL);
		else if ((rc = mproc_send(q, MPROC_DIE, pids[i], NULL, 0)) != 0)
			failed = 1;
		else
			printf("parent: %s -> child %d\n",
			       mproc_request_name(MPROC_DIE), (int)pids[i]);
	}
	for (long i = 0; i < children; i++) {
		int st;

		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		printf("parent: child %d %s\n", (int)pids[i],
		       WIFEXITED(st) ? "exited" : "was killed");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	if (!failed && (rc = mproc_queue_join(q, WAIT_MS)) != 0) {
		fprintf(stderr, "join: %s\n", mproc_strerror(rc));
		failed = 1;
	}
	mproc_close(q);
	printf("%ld tasks to %ld children: %s\n", tasks, children,
	       failed ? "FAILED" : "each answered by the child it was for");
	return failed;
}
