/*
 * named_consumer - takes jobs from a named queue that a program started
 * separately fills (examples/named_producer), until a DIE.
 *
 *   shell 1:  ./examples/named_consumer /jobs
 *   shell 2:  ./examples/named_producer /jobs 1000
 *
 * Either may start first (see named_producer.c). Prints each job as it
 * comes, then a summary: how many, from whom, and whether each producer's
 * jobs came in order.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mproc.h>

struct job {
	uint32_t seq;
	char text[28];
};

static int open_named(mproc_conn **q, const char *name)
{
	mproc_queue_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                       .mode = 0600 };
	int rc = -EEXIST;

	for (int i = 0; i < 10; i++) {
		if ((rc = mproc_queue_create(q, name, &o)) != -EEXIST)
			return rc;
		if ((rc = mproc_queue_attach(q, name)) != -ENOENT)
			return rc;
	}
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long jobs = 0, out_of_order = 0;
	uint32_t next = 0;
	pid_t last = 0;
	mproc_conn *q;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME   (NAME like /jobs)\n", argv[0]);
		return 2;
	}
	if ((rc = open_named(&q, argv[1])) != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1],
		        mproc_strerror(rc));
		return 1;
	}
	printf("consumer %d: waiting on %s\n", (int)getpid(), argv[1]);
	fflush(stdout);
	for (;;) {
		struct job j;
		mproc_msg m = { .data = &j, .capacity = sizeof(j) };

		rc = mproc_recv(q, &m, NULL, NULL, MPROC_FOREVER);
		if (rc != 0) {
			fprintf(stderr, "%s: receive: %s\n", argv[0],
			        mproc_strerror(rc));
			break;
		}
		if (m.request == MPROC_DIE) {
			printf("consumer %d: DIE from pid %d after %lu jobs "
			       "(%s)\n", (int)getpid(), (int)m.sender, jobs,
			       out_of_order ? "some out of order" : "in order");
			break;
		}
		if (m.size != sizeof(j)) {
			fprintf(stderr, "%s: a message of %u bytes\n", argv[0],
			        m.size);
			continue;
		}
		/* A new producer starts again from 0. */
		if (m.sender != last) {
			last = m.sender;
			next = 0;
		}
		if (j.seq != next)
			out_of_order++;
		next = j.seq + 1;
		jobs++;
		j.text[sizeof(j.text) - 1] = '\0';
		printf("%s from pid %d\n", j.text, (int)m.sender);
	}
	fflush(stdout);
	mproc_close(q);
	return rc == 0 && out_of_order == 0 ? 0 : 1;
}
