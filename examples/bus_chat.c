/*
 * bus_chat.c - several processes on one bus: each says a few lines, each
 * reads everything the others say, screening out its own messages
 * (pysyncq's pattern). Prints what each one heard; exits 0 when every
 * process heard every other's lines.
 */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#define PEERS 4
#define LINES 3

static int not_mine(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->sender != getpid();
}

static int peer(mproc_conn *bus, int id)
{
	char line[64], buf[64];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) - 1 };
	int heard = 0, rc;

	if (mproc_bus_subscribe(bus) != 0 ||
	    mproc_bus_wait_readers(bus, PEERS, 5000) != 0)
		return 1;
	for (int i = 0; i < LINES; i++) {
		snprintf(line, sizeof(line), "peer %d says line %d", id, i);
		if (mproc_send(bus, MPROC_USER, MPROC_ANYONE, line, strlen(line)) != 0)
			return 1;
	}
	while (heard < (PEERS - 1) * LINES) {
		rc = mproc_recv(bus, &m, not_mine, NULL, 5000);
		if (rc != 0) {
			fprintf(stderr, "peer %d: %s\n", id, mproc_strerror(rc));
			return 1;
		}
		buf[m.size] = '\0';
		printf("peer %d heard from %d: %s\n", id, (int)m.sender, buf);
		heard++;
	}
	/* Stay subscribed until everyone is done sending. */
	return 0;
}

int main(void)
{
	mproc_conn *bus;
	pid_t kids[PEERS];
	int failed = 0, st;

	if (mproc_bus_open(&bus, NULL) != 0)
		return 1;
	for (int i = 0; i < PEERS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			return 1;
		if (kids[i] == 0) {
			int rc = peer(bus, i);

			fflush(stdout);
			mproc_close(bus);
			_exit(rc);
		}
	}
	for (int i = 0; i < PEERS; i++)
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			failed = 1;
	mproc_close(bus);
	return failed;
}
