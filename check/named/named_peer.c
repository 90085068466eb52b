/*
 * named_peer.c - an unrelated program for the named-object tests: the
 * tests fork and exec it (nothing inherited but the descriptors named on
 * its command line), it attaches by name and does one job.
 *
 *   named_peer send NAME N SRC SIZE [RECIPIENT]  attach, send N self-checking
 *                                                messages (check_pay.h)
 *   named_peer sendjoin NAME N SRC SIZE  the same, then join (5 s)
 *   named_peer recv NAME N               attach, take N messages, check each
 *                                        (one sender: seq 0..N-1 in order)
 *   named_peer sender NAME SRC FD        send seq 0, 1, ... until killed,
 *                                        writing {src, seq} to FD after each
 *                                        send returned 0 (at most 30 s)
 *   named_peer receiver NAME FD          take messages until killed, writing
 *                                        {src, seq} (src ~0: torn) to FD
 *   named_peer hold NAME N R [SECONDS]   create NAME (mode 0640), send N
 *                                        messages of 100 bytes, take R, print
 *                                        "ready", stay SECONDS (30), exit
 *   named_peer lockstop NAME [pending]   attach, take the receive lock (and
 *                                        with "pending" mark its journal
 *                                        mid-commit, as a receiver stopped
 *                                        inside a commit leaves it), print
 *                                        "locked", stop itself (SIGSTOP);
 *                                        after SIGCONT undo that and exit
 *
 * Exit 0 when the job went as it should, 1 otherwise (with a line on
 * stderr), 2 for a bad command line.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"
#include "internal.h"
#include "queue/layout.h"

#include "check_pay.h"

#define PEER_WAIT_MS 5000
#define PEER_MAX_SECONDS 30
#define PEER_MAX_PAYLOAD 4096

/* What senders and receivers write to their report descriptor. */
struct peer_report {
	uint32_t src; /* UINT32_MAX: a torn message was received */
	uint32_t reserved;
	uint64_t seq;
};

static unsigned char peer_buf[PEER_MAX_PAYLOAD];

static int peer_fail(const char *what, int rc)
{
	fprintf(stderr, "named_peer %d: %s: %s\n", (int)getpid(), what,
	        mproc_strerror(rc));
	return 1;
}

static long peer_num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0)
		exit(2);
	return v;
}

static long long peer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A payload size for seq: varied, from a pay header up to max. */
static uint32_t peer_size(uint64_t seq, uint32_t max)
{
	uint32_t lo = sizeof(struct pay);

	return max <= lo ? lo : lo + (uint32_t)(seq * 37 % (max - lo + 1));
}

static int peer_attach(mproc_conn **q, const char *name)
{
	int rc = mproc_queue_attach(q, name);

	if (rc != 0)
		return peer_fail("attach", rc);
	return 0;
}

static int peer_send(const char *name, long n, uint32_t src, uint32_t size,
                     pid_t to, int join)
{
	mproc_conn *q;
	mproc_msg m = { .request = MPROC_USER, .recipient = to,
	                .data = peer_buf };
	int rc;

	if (size < sizeof(struct pay) || size > sizeof(peer_buf))
		return 2;
	if (peer_attach(&q, name))
		return 1;
	for (long i = 0; i < n; i++) {
		m.size = size;
		pay_make(peer_buf, size, src, 0, (uint64_t)i);
		if ((rc = mproc_send_msg(q, &m, PEER_WAIT_MS)) != 0)
			return peer_fail("send", rc);
	}
	if (join && (rc = mproc_queue_join(q, PEER_WAIT_MS)) != 0)
		return peer_fail("join", rc);
	return mproc_close(q) == 0 ? 0 : 1;
}

static int peer_recv(const char *name, long n)
{
	mproc_conn *q;
	struct pay h = { 0 };
	int rc;

	if (peer_attach(&q, name))
		return 1;
	for (long i = 0; i < n; i++) {
		mproc_msg m = { .data = peer_buf, .capacity = sizeof(peer_buf) };

		if ((rc = mproc_recv(q, &m, NULL, NULL, PEER_WAIT_MS)) != 0)
			return peer_fail("recv", rc);
		if (pay_check(peer_buf, m.size, &h) != 0 ||
		    h.seq != (uint64_t)i) {
			fprintf(stderr, "named_peer: message %ld torn or out "
			        "of order (seq %llu)\n", i,
			        (unsigned long long)h.seq);
			return 1;
		}
	}
	return mproc_close(q) == 0 ? 0 : 1;
}

static int peer_report(int fd, uint32_t src, uint64_t seq)
{
	struct peer_report r = { src, 0, seq };

	/* 16 bytes: one atomic pipe write, whoever else writes. */
	return write(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : -1;
}

static int peer_sender(const char *name, uint32_t src, int fd)
{
	long long end = peer_now_ms() + PEER_MAX_SECONDS * 1000;
	mproc_msg m = { .request = MPROC_USER, .data = peer_buf };
	mproc_conn *q;
	uint64_t seq = 0;
	int rc;

	if (peer_attach(&q, name))
		return 1;
	while (peer_now_ms() < end) {
		m.size = peer_size(seq, 300);
		pay_make(peer_buf, m.size, src, 0, seq);
		rc = mproc_send_msg(q, &m, 200);
		if (rc == -ETIMEDOUT || rc == -EAGAIN)
			continue; /* nothing was sent: the same seq again */
		if (rc != 0)
			return peer_fail("send", rc);
		if (peer_report(fd, src, seq) < 0)
			return 1;
		seq++;
	}
	return 0;
}

static int peer_receiver(const char *name, int fd)
{
	long long end = peer_now_ms() + PEER_MAX_SECONDS * 1000;
	mproc_conn *q;
	struct pay h = { 0 };
	int rc;

	if (peer_attach(&q, name))
		return 1;
	while (peer_now_ms() < end) {
		mproc_msg m = { .data = peer_buf, .capacity = sizeof(peer_buf) };

		rc = mproc_recv(q, &m, NULL, NULL, 200);
		if (rc == -ETIMEDOUT || rc == -EAGAIN)
			continue;
		if (rc != 0)
			return peer_fail("recv", rc);
		if (pay_check(peer_buf, m.size, &h) != 0) {
			peer_report(fd, UINT32_MAX, 0);
			return 1;
		}
		if (peer_report(fd, h.src, h.seq) < 0)
			return 1;
	}
	return 0;
}

static int peer_hold(const char *name, long n, long r, long seconds)
{
	mproc_queue_opts o = { .capacity = 64 << 10, .max_payload = 1024,
	                       .mode = 0640 };
	long long end = peer_now_ms() + seconds * 1000;
	mproc_conn *q;
	int rc;

	if ((rc = mproc_queue_create(&q, name, &o)) != 0)
		return peer_fail("create", rc);
	memset(peer_buf, 'h', 100);
	for (long i = 0; i < n; i++)
		if ((rc = mproc_send(q, MPROC_USER, 0, peer_buf, 100)) != 0)
			return peer_fail("send", rc);
	for (long i = 0; i < r; i++) {
		mproc_msg m = { .data = peer_buf, .capacity = sizeof(peer_buf) };

		if ((rc = mproc_recv(q, &m, NULL, NULL, PEER_WAIT_MS)) != 0)
			return peer_fail("recv", rc);
	}
	printf("ready\n");
	fflush(stdout);
	while (peer_now_ms() < end)
		usleep(10000);
	return mproc_close(q) == 0 ? 0 : 1;
}

static int peer_lockstop(const char *name, int pending)
{
	struct mproc__queue_shared *s;
	mproc_conn *q;
	uint32_t seq;
	size_t len;
	int rc;

	if (peer_attach(&q, name))
		return 1;
	s = mproc__queue_mapping(q, &len);
	if ((rc = pthread_mutex_lock(&s->recv.lock)) != 0)
		return peer_fail("lock", -rc);
	seq = __atomic_load_n(&s->recv.journal.seq, __ATOMIC_RELAXED);
	if (pending) /* odd: a commit begun; the words are untouched */
		__atomic_store_n(&s->recv.journal.seq, seq | 1u,
		                 __ATOMIC_RELEASE);
	printf("locked\n");
	fflush(stdout);
	raise(SIGSTOP);
	__atomic_store_n(&s->recv.journal.seq, seq, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&s->recv.lock);
	return mproc_close(q) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (argc >= 6 && (strcmp(cmd, "send") == 0 ||
	                  strcmp(cmd, "sendjoin") == 0))
		return peer_send(argv[2], peer_num(argv[3]),
		                 (uint32_t)peer_num(argv[4]),
		                 (uint32_t)peer_num(argv[5]),
		                 argc > 6 ? (pid_t)peer_num(argv[6]) : 0,
		                 strcmp(cmd, "sendjoin") == 0);
	if (argc == 4 && strcmp(cmd, "recv") == 0)
		return peer_recv(argv[2], peer_num(argv[3]));
	if (argc == 5 && strcmp(cmd, "sender") == 0)
		return peer_sender(argv[2], (uint32_t)peer_num(argv[3]),
		                   (int)peer_num(argv[4]));
	if (argc == 4 && strcmp(cmd, "receiver") == 0)
		return peer_receiver(argv[2], (int)peer_num(argv[3]));
	if ((argc == 5 || argc == 6) && strcmp(cmd, "hold") == 0)
		return peer_hold(argv[2], peer_num(argv[3]), peer_num(argv[4]),
		                 argc == 6 ? peer_num(argv[5])
		                           : PEER_MAX_SECONDS);
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "pending") == 0)) &&
	    strcmp(cmd, "lockstop") == 0)
		return peer_lockstop(argv[2], argc == 4);
	fprintf(stderr, "usage: named_peer send|sendjoin|recv|sender|receiver|"
	        "hold|lockstop NAME ...\n");
	return 2;
}
