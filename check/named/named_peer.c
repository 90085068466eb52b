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
 *   named_peer bus NAME N R1 R2 [SECONDS] create bus NAME (mode 0640), fork
 *                                        two subscribers, send N messages
 *                                        of 100 bytes; the readers take R1
 *                                        and R2; print "ready PID1 PID2",
 *                                        stay SECONDS (30), exit
 *   named_peer buslockstop NAME [pending] attach the bus, take its send
 *                                        lock (and with "pending" mark its
 *                                        journal mid-commit), print
 *                                        "locked", SIGSTOP; after SIGCONT
 *                                        undo that and exit
 *   named_peer slot NAME V SIZE [SECONDS] create slot NAME (mode 0600),
 *                                        publish V values (the last SIZE
 *                                        bytes, request MPROC_USER + 1), fork
 *                                        a reader that takes it and waits
 *                                        for a newer one and a reader that
 *                                        borrows it and holds it, reserve a
 *                                        buffer and hold it; print "ready
 *                                        PID1 PID2", stay SECONDS (30), exit
 *   named_peer scribble FILE WHAT        write over one field of the bus or
 *                                        slot file FILE (not through the
 *                                        library): bus-words (tail beyond
 *                                        the ring), bus-cursor (a reader's
 *                                        cursor past tail), bus-record (the
 *                                        oldest record's magic), slot-index
 *                                        (the published buffer out of
 *                                        range), slot-size (the value over
 *                                        max_payload), slot-geometry
 *                                        (nbuf); exit 1 if FILE is no such
 *                                        object
 *
 * Exit 0 when the job went as it should, 1 otherwise (with a line on
 * stderr), 2 for a bad command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"
#include "internal.h"
#include "bus/bus.h"
#include "queue/layout.h"
#include "slot/layout.h"

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

/* Stay until the end (or until the parent is gone, for a child). */
static void peer_stay(long long end, pid_t parent)
{
	while (peer_now_ms() < end && (parent == 0 || getppid() == parent))
		usleep(10000);
}

/* A subscriber of the bus: subscribe, say so on fd, take r messages once
 * the parent says go (a byte on go), say so, stay. */
static int peer_bus_reader(mproc_conn *b, long r, int done_fd, int go_fd,
                           long long end, pid_t parent)
{
	char c = 0;
	int rc;

	if ((rc = mproc_bus_subscribe(b)) != 0)
		return peer_fail("subscribe", rc);
	if (read(go_fd, &c, 1) != 1)
		return 1;
	for (long i = 0; i < r; i++) {
		mproc_msg m = { .data = peer_buf, .capacity = sizeof(peer_buf) };

		if ((rc = mproc_recv(b, &m, NULL, NULL, PEER_WAIT_MS)) != 0)
			return peer_fail("bus recv", rc);
	}
	if (write(done_fd, "d", 1) != 1)
		return 1;
	peer_stay(end, parent);
	return mproc_close(b) == 0 ? 0 : 1;
}

static int peer_bus(const char *name, long n, long r1, long r2, long seconds)
{
	mproc_bus_opts o = { .capacity = 64 << 10, .max_payload = 1024,
	                     .max_readers = 8, .mode = 0640 };
	long long end = peer_now_ms() + seconds * 1000;
	long want[2] = { r1, r2 };
	int go[2], done[2], rc, fail = 0;
	pid_t kid[2], me = getpid();
	mproc_conn *b;
	char c;

	if (r1 > n || r2 > n)
		return 2;
	if ((rc = mproc_bus_create(&b, name, &o)) != 0)
		return peer_fail("bus create", rc);
	if (pipe(go) < 0 || pipe(done) < 0)
		return peer_fail("pipe", -errno);
	for (int k = 0; k < 2; k++) {
		if ((kid[k] = fork()) < 0)
			return peer_fail("fork", -errno);
		if (kid[k] == 0)
			_exit(peer_bus_reader(b, want[k], done[1], go[0], end, me));
	}
	if ((rc = mproc_bus_wait_readers(b, 2, PEER_WAIT_MS)) != 0) {
		fail = peer_fail("wait_readers", rc);
		goto out;
	}
	memset(peer_buf, 'b', 100);
	for (long i = 0; i < n && !fail; i++)
		if ((rc = mproc_send(b, MPROC_USER, 0, peer_buf, 100)) != 0)
			fail = peer_fail("bus send", rc);
	if (fail || write(go[1], "gg", 2) != 2 || read(done[0], &c, 1) != 1 ||
	    read(done[0], &c, 1) != 1) {
		fail = 1;
		goto out;
	}
	printf("ready %d %d\n", (int)kid[0], (int)kid[1]);
	fflush(stdout);
	peer_stay(end, 0);
out:
	for (int k = 0; k < 2; k++) {
		int st;

		if (fail)
			kill(kid[k], SIGKILL);
		if (waitpid(kid[k], &st, 0) != kid[k] || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			fail = 1;
	}
	return mproc_close(b) == 0 && !fail ? 0 : 1;
}

static int peer_buslockstop(const char *name, int pending)
{
	struct mproc__bus_shared *s;
	mproc_conn *b;
	uint32_t seq;
	int rc;

	if ((rc = mproc_bus_attach(&b, name)) != 0)
		return peer_fail("bus attach", rc);
	s = bus_of(b)->s;
	if ((rc = pthread_mutex_lock(&s->send.lock)) != 0)
		return peer_fail("lock", -rc);
	seq = __atomic_load_n(&s->send.journal.seq, __ATOMIC_RELAXED);
	if (pending) /* odd: a commit begun, nothing changed (mark: none) */
		__atomic_store_n(&s->send.journal.seq, seq | 1u,
		                 __ATOMIC_RELEASE);
	printf("locked\n");
	fflush(stdout);
	raise(SIGSTOP);
	__atomic_store_n(&s->send.journal.seq, seq, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&s->send.lock);
	return mproc_close(b) == 0 ? 0 : 1;
}

static int peer_slot(const char *name, long v, uint32_t size, long seconds)
{
	mproc_slot_opts o = { .max_payload = PEER_MAX_PAYLOAD };
	long long end = peer_now_ms() + seconds * 1000;
	pid_t kid, lender, me = getpid();
	int done[2], rc, st, fail = 0;
	mproc_conn *sl;
	void *res;
	char c;

	if (v < 1 || size > PEER_MAX_PAYLOAD)
		return 2;
	if ((rc = mproc_slot_create(&sl, name, &o)) != 0)
		return peer_fail("slot create", rc);
	memset(peer_buf, 's', sizeof(peer_buf));
	for (long i = 0; i < v; i++)
		if ((rc = mproc_send(sl, MPROC_USER + 1, 0, peer_buf,
		                     i + 1 == v ? size : 8)) != 0)
			return peer_fail("slot send", rc);
	if (pipe(done) < 0)
		return peer_fail("pipe", -errno);
	if ((kid = fork()) < 0)
		return peer_fail("fork", -errno);
	if (kid == 0) {
		mproc_msg m = { .data = peer_buf, .capacity = sizeof(peer_buf) };

		if ((rc = mproc_recv(sl, &m, NULL, NULL, PEER_WAIT_MS)) != 0)
			_exit(peer_fail("slot recv", rc));
		if (m.size != size || write(done[1], "d", 1) != 1)
			_exit(1);
		/* Asleep for a newer value until the end. */
		while (peer_now_ms() < end && getppid() == me) {
			rc = mproc_recv(sl, &m, NULL, NULL, 200);
			if (rc != -ETIMEDOUT)
				_exit(peer_fail("slot wait", rc));
		}
		_exit(mproc_close(sl) == 0 ? 0 : 1);
	}
	if ((lender = fork()) < 0) {
		kill(kid, SIGKILL);
		waitpid(kid, &st, 0);
		return peer_fail("fork", -errno);
	}
	if (lender == 0) {
		mproc_msg m = { 0 };

		if ((rc = mproc_recv_borrow(sl, &m, NULL, NULL, PEER_WAIT_MS)) != 0)
			_exit(peer_fail("slot borrow", rc));
		if (m.size != size || write(done[1], "d", 1) != 1)
			_exit(1);
		peer_stay(end, me);
		if ((rc = mproc_recv_release(sl, &m)) != 0)
			_exit(peer_fail("slot release", rc));
		_exit(mproc_close(sl) == 0 ? 0 : 1);
	}
	if ((rc = mproc_send_reserve(sl, 16, &res, PEER_WAIT_MS)) != 0)
		fail = peer_fail("slot reserve", rc);
	if (fail || read(done[0], &c, 1) != 1 || read(done[0], &c, 1) != 1) {
		fail = 1;
	} else {
		printf("ready %d %d\n", (int)kid, (int)lender);
		fflush(stdout);
		peer_stay(end, 0);
	}
	if (!fail && (rc = mproc_send_cancel(sl)) != 0)
		fail = peer_fail("slot cancel", rc);
	if (fail) {
		kill(kid, SIGKILL);
		kill(lender, SIGKILL);
	}
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fail = 1;
	if (waitpid(lender, &st, 0) != lender || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fail = 1;
	return mproc_close(sl) == 0 && !fail ? 0 : 1;
}

/* Write over one field of a bus or slot file, as a buggy or hostile
 * peer could. */
static int peer_scribble(const char *path, const char *what)
{
	const struct mproc__shm_hdr *h;
	struct stat st;
	void *map;
	int fd, rc = 0;

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0 ||
	    (size_t)st.st_size < sizeof(*h))
		return peer_fail(path, -errno);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
	           fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return peer_fail("mmap", -errno);
	h = map;
	if (h->kind == MPROC__KIND_BUS &&
	    (size_t)st.st_size >= sizeof(struct mproc__bus_shared)) {
		struct mproc__bus_shared *s = map;
		struct mproc__bus_reader *rd =
		        (struct mproc__bus_reader *)((char *)map + MPROC__BUS_HDR);
		uint64_t *w = s->send.w;

		if (strcmp(what, "bus-words") == 0) {
			w[BP_TAIL] = w[BP_HEAD] + s->capacity + 8;
		} else if (strcmp(what, "bus-cursor") == 0) {
			rc = 1;
			for (uint32_t i = 0; i < s->max_readers; i++) {
				if (rd[i].pid != 0) {
					rd[i].cursor = w[BP_TAIL] + 8;
					rc = 0;
					break;
				}
			}
		} else if (strcmp(what, "bus-record") == 0 &&
		           w[BP_HEAD] < w[BP_TAIL]) {
			uint8_t *ring = (uint8_t *)map + s->ring_off;

			memset(ring + w[BP_HEAD] % s->capacity, 0xee, 4);
		} else {
			rc = 1;
		}
	} else if (h->kind == MPROC__KIND_SLOT &&
	           (size_t)st.st_size >= sizeof(struct mproc__slot_shared)) {
		struct mproc__slot_shared *s = map;

		if (strcmp(what, "slot-index") == 0)
			s->cur = (s->cur & ~(uint64_t)0xff) | s->nbuf;
		else if (strcmp(what, "slot-size") == 0)
			s->buf[SLOT_CUR_INDEX(s->cur) % MPROC__SLOT_BUFS].size =
			        s->max_payload + 1;
		else if (strcmp(what, "slot-geometry") == 0)
			s->nbuf = MPROC__SLOT_BUFS + 1;
		else
			rc = 1;
	} else {
		rc = 1;
	}
	munmap(map, (size_t)st.st_size);
	if (rc != 0)
		fprintf(stderr, "named_peer: %s: cannot scribble %s\n", path, what);
	return rc;
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
	if ((argc == 6 || argc == 7) && strcmp(cmd, "bus") == 0)
		return peer_bus(argv[2], peer_num(argv[3]), peer_num(argv[4]),
		                peer_num(argv[5]),
		                argc == 7 ? peer_num(argv[6]) : PEER_MAX_SECONDS);
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "pending") == 0)) &&
	    strcmp(cmd, "buslockstop") == 0)
		return peer_buslockstop(argv[2], argc == 4);
	if ((argc == 5 || argc == 6) && strcmp(cmd, "slot") == 0)
		return peer_slot(argv[2], peer_num(argv[3]),
		                 (uint32_t)peer_num(argv[4]),
		                 argc == 6 ? peer_num(argv[5]) : PEER_MAX_SECONDS);
	if (argc == 4 && strcmp(cmd, "scribble") == 0)
		return peer_scribble(argv[2], argv[3]);
	fprintf(stderr, "usage: named_peer send|sendjoin|recv|sender|receiver|"
	        "hold|lockstop|bus|buslockstop|slot|scribble NAME ...\n");
	return 2;
}
