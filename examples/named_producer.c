/*
 * named_producer - puts jobs on a named queue for a program started
 * separately (examples/named_consumer or examples/epoll_consumer).
 *
 *   shell 1:  ./examples/named_consumer /jobs
 *   shell 2:  ./examples/named_producer /jobs 1000
 *
 * Either may start first: each creates the queue, or attaches to it when
 * the other was first (-EEXIST). The creator asks for
 * MPROC_UNLINK_ON_LAST_CLOSE, so the name goes when the last of the two
 * closes. The producer sends COUNT jobs (MPROC_DO, "job <n>") and one DIE,
 * then waits (mproc_queue_join) until the consumer has taken them all:
 * closing before that, as the last holder, would take the jobs with it.
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

/* Create the queue, or attach to the one another program made. */
static int open_named(mproc_conn **q, const char *name)
{
	mproc_queue_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                       .mode = 0600 };
	int rc = -EEXIST;

	/* A name may vanish between the two calls (its last holder just
	 * closed): try again a few times. */
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
	long count = 1000;
	mproc_conn *q;
	int rc;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s NAME [COUNT]   (NAME like /jobs)\n",
		        argv[0]);
		return 2;
	}
	if (argc == 3) {
		char *end;

		count = strtol(argv[2], &end, 10);
		if (*end != '\0' || count < 0 || count > 100000000) {
			fprintf(stderr, "%s: bad COUNT %s\n", argv[0], argv[2]);
			return 2;
		}
	}
	if ((rc = open_named(&q, argv[1])) != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1],
		        mproc_strerror(rc));
		return 1;
	}
	for (long i = 0; i < count; i++) {
		struct job j = { .seq = (uint32_t)i };

		snprintf(j.text, sizeof(j.text), "job %ld", i);
		/* Waits while the queue is full. */
		if ((rc = mproc_send(q, MPROC_DO, MPROC_ANYONE, &j,
		                     sizeof(j))) != 0) {
			fprintf(stderr, "%s: send: %s\n", argv[0],
			        mproc_strerror(rc));
			mproc_close(q);
			return 1;
		}
	}
	if ((rc = mproc_send(q, MPROC_DIE, MPROC_ANYONE, NULL, 0)) != 0) {
		fprintf(stderr, "%s: send: %s\n", argv[0], mproc_strerror(rc));
		mproc_close(q);
		return 1;
	}
	printf("producer %d: sent %ld jobs and DIE to %s; waiting for them "
	       "to be taken\n", (int)getpid(), count, argv[1]);
	fflush(stdout);
	rc = mproc_queue_join(q, MPROC_FOREVER);
	if (rc != 0)
		fprintf(stderr, "%s: join: %s\n", argv[0], mproc_strerror(rc));
	else
		printf("producer %d: all taken\n", (int)getpid());
	mproc_close(q);
	return rc == 0 ? 0 : 1;
}
