/*
 * slot_latest.c - a fast producer of a large value (4 MiB, a frame
 * number stamped over all of it) and slow readers that always take the
 * newest whole one: values published while a reader is busy are skipped,
 * never torn. Exits 0 when every value read was whole.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#define SIZE (4u << 20)
#define FRAMES 400
#define READERS 3

static int reader(mproc_conn *slot, int id)
{
	uint64_t *v = malloc(SIZE);
	mproc_msg m = { .data = v, .capacity = SIZE };
	uint64_t last = 0;
	int got = 0;

	if (v == NULL)
		return 1;
	while (last < FRAMES) {
		if (mproc_recv(slot, &m, NULL, NULL, 5000) != 0)
			return 1;
		for (size_t i = 1; i < SIZE / 8; i++)
			if (v[i] != v[0])
				return 2; /* torn: never */
		if (v[0] <= last)
			return 3; /* older than what we had: never */
		last = v[0];
		got++;
		usleep(20000); /* a slow reader */
	}
	printf("reader %d: %d of %d frames, all whole, the last one %llu\n", id,
	       got, FRAMES, (unsigned long long)last);
	free(v);
	return 0;
}

int main(void)
{
	mproc_slot_opts o = { .max_payload = SIZE };
	mproc_conn *slot;
	pid_t kids[READERS];
	uint64_t *v;
	int failed = 0, st;

	if (mproc_slot_open(&slot, &o) != 0 || (v = malloc(SIZE)) == NULL)
		return 1;
	for (int i = 0; i < READERS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			return 1;
		if (kids[i] == 0) {
			int rc = reader(slot, i);

			fflush(stdout);
			_exit(rc);
		}
	}
	for (uint64_t f = 1; f <= FRAMES; f++) {
		for (size_t i = 0; i < SIZE / 8; i++)
			v[i] = f;
		if (mproc_send(slot, MPROC_USER, MPROC_ANYONE, v, SIZE) != 0)
			return 1;
		usleep(2000);
	}
	for (int i = 0; i < READERS; i++)
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			failed = 1;
	free(v);
	mproc_close(slot);
	return failed;
}
