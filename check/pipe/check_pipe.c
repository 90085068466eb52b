/*
 * check_pipe.c - the 1:1 pipe transport: delivery of every payload size,
 * order, peer death, timeouts, signals, predicates, -EMSGSIZE, poll(),
 * framing errors and bad arguments.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check_common.h"

#define REQ_TEST_CHILD (MPROC_USER + 1)
#define T_LONG 10000 /* ms: a wait that only ends early on success */

/* ---- helpers ----------------------------------------------------------- */

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static unsigned char pattern_byte(size_t i, unsigned seed)
{
	return (unsigned char)(i * 131u + seed * 7u + (i >> 9));
}

static void pattern_fill(void *buf, size_t n, unsigned seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = pattern_byte(i, seed);
}

static int pattern_ok(const void *buf, size_t n, unsigned seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern_byte(i, seed))
			return 0;
	return 1;
}

static void open_pair(mproc_conn **a, mproc_conn **b)
{
	ck_assert_int_eq(mproc_pipe_open(a, b), 0);
	ck_assert_ptr_nonnull(*a);
	ck_assert_ptr_nonnull(*b);
}

/* Fills c's socket with 4 KiB messages, MPROC_NOWAIT, until -EAGAIN.
 * Returns how many sends returned 0 (the last may be partly kept). */
static int fill_socket(mproc_conn *c)
{
	unsigned char buf[4096];
	int n = 0, rc;

	for (;;) {
		pattern_fill(buf, sizeof(buf), (unsigned)n);
		rc = send_t(c, MPROC_USER, n, buf, sizeof(buf), MPROC_NOWAIT);
		if (rc == -EAGAIN)
			return n;
		ck_assert_int_eq(rc, 0);
		n++;
		ck_assert_int_lt(n, 100000);
	}
}

/* ---- pymulproc's test_local_pipe_communication ------------------------- */

START_TEST(test_pipe_local_communication)
{
	mproc_conn *parent, *child;
	mproc_msg m;
	pid_t pid;

	open_pair(&parent, &child);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(parent);
		/* An empty socket takes a header at once: cannot block. */
		child_assert(mproc_send(child, REQ_TEST_CHILD, MPROC_ANYONE,
		                        NULL, 0) == 0);
		mproc_close(child);
		_exit(0);
	}
	mproc_close(child);
	/* As in pymulproc: join the child, then receive. */
	check_reap_ok(pid, 5000);
	ck_assert_int_eq(recv_t(parent, &m, NULL, 0, NULL, NULL, 5000), 0);
	ck_assert_int_eq(m.request, REQ_TEST_CHILD);
	ck_assert_int_eq(m.sender, pid);
	ck_assert_int_eq(m.recipient, MPROC_ANYONE);
	ck_assert_uint_eq(m.size, 0);
	ck_assert_int_eq(recv_t(parent, &m, NULL, 0, NULL, NULL, 1000), -EPIPE);
	mproc_close(parent);
}
END_TEST

/* ---- payload sizes, both directions ------------------------------------ */

static const size_t sizes[] = { 0, 1, 4095, 4096, 65536, 1u << 20,
	                        MPROC_PIPE_MAX_PAYLOAD };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

START_TEST(test_pipe_payload_sizes)
{
	size_t cap = MPROC_PIPE_MAX_PAYLOAD;
	unsigned char *out = malloc(cap), *in = malloc(cap);
	mproc_conn *a, *b;
	mproc_msg m;
	pid_t pid;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(in);
	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		/* Echo each message back with a different pattern. */
		for (unsigned i = 0; i < NSIZES; i++) {
			child_assert(recv_t(b, &m, in, cap, NULL, NULL,
			                    T_LONG) == 0);
			child_assert(m.request == (int32_t)(MPROC_USER + i));
			child_assert(m.size == sizes[i]);
			child_assert(m.sender == getppid());
			child_assert(pattern_ok(in, m.size, i));
			pattern_fill(out, sizes[i], i + 100);
			child_assert(send_t(b, MPROC_FINISHED, m.sender, out,
			                    sizes[i], T_LONG) == 0);
		}
		mproc_close(b);
		free(out);
		free(in);
		_exit(0);
	}
	mproc_close(b);
	for (unsigned i = 0; i < NSIZES; i++) {
		pattern_fill(out, sizes[i], i);
		ck_assert_int_eq(send_t(a, MPROC_USER + i, pid, out, sizes[i],
		                        T_LONG), 0);
		memset(in, 0, sizes[i]);
		ck_assert_int_eq(recv_t(a, &m, in, cap, NULL, NULL, T_LONG), 0);
		ck_assert_int_eq(m.request, MPROC_FINISHED);
		ck_assert_int_eq(m.sender, pid);
		ck_assert_int_eq(m.recipient, getpid());
		ck_assert_uint_eq(m.size, sizes[i]);
		ck_assert_msg(pattern_ok(in, m.size, i + 100),
		              "payload of %zu bytes corrupted", sizes[i]);
	}
	check_reap_ok(pid, 5000);
	mproc_close(a);
	free(out);
	free(in);
}
END_TEST

/* ---- order -------------------------------------------------------------- */

/* Mostly small, now and then large (direct reads into the caller's buffer
 * interleaved with buffered frames). */
static size_t order_size(unsigned i)
{
	static const size_t big[] = { 70000, 300000, 1u << 20 };

	if (i % 97 == 13)
		return big[(i / 97) % 3];
	return (i * 37u) % 301;
}

START_TEST(test_pipe_order)
{
	enum { N = 5000 };
	size_t cap = 1u << 20;
	unsigned char *buf = malloc(cap);
	mproc_conn *a, *b;
	mproc_msg m;
	pid_t pid;

	ck_assert_ptr_nonnull(buf);
	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		for (unsigned i = 0; i < N; i++) {
			pattern_fill(buf, order_size(i), i);
			child_assert(send_t(b, MPROC_USER, (pid_t)i, buf,
			                    order_size(i), T_LONG) == 0);
		}
		mproc_close(b);
		free(buf);
		_exit(0);
	}
	mproc_close(b);
	for (unsigned i = 0; i < N; i++) {
		ck_assert_int_eq(recv_t(a, &m, buf, cap, NULL, NULL, T_LONG), 0);
		ck_assert_int_eq(m.recipient, (pid_t)i);
		ck_assert_uint_eq(m.size, order_size(i));
		ck_assert_msg(pattern_ok(buf, m.size, i), "message %u", i);
	}
	ck_assert_int_eq(recv_t(a, &m, buf, cap, NULL, NULL, T_LONG), -EPIPE);
	check_reap_ok(pid, 5000);
	mproc_close(a);
	free(buf);
}
END_TEST

/* ---- peer death and closed peers --------------------------------------- */

START_TEST(test_pipe_peer_death)
{
	enum { N = 500, SZ = 1000 }; /* 500 KB: more than a socket holds */
	unsigned char buf[SZ];
	mproc_conn *a, *b;
	mproc_msg m;
	pid_t pid;

	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		for (unsigned i = 0; i < N; i++) {
			pattern_fill(buf, SZ, i);
			child_assert(send_t(b, MPROC_USER + (int32_t)i, 0, buf,
			                    SZ, T_LONG) == 0);
		}
		_exit(0); /* no close: the kernel closes it */
	}
	mproc_close(b);
	for (unsigned i = 0; i < N; i++) {
		ck_assert_int_eq(recv_t(a, &m, buf, SZ, NULL, NULL, T_LONG), 0);
		ck_assert_int_eq(m.request, MPROC_USER + (int32_t)i);
		ck_assert(pattern_ok(buf, m.size, i));
	}
	ck_assert_int_eq(recv_t(a, &m, buf, SZ, NULL, NULL, T_LONG), -EPIPE);
	ck_assert_int_eq(recv_t(a, &m, buf, SZ, NULL, NULL, 0), -EPIPE);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPIPE);
	check_reap_ok(pid, 5000);
	mproc_close(a);
}
END_TEST

/* The peer dies half way through writing a frame: the frames before it
 * arrive, the torn one is not delivered, then -EPIPE. */
START_TEST(test_pipe_peer_death_mid_frame)
{
	size_t big = 4u << 20;
	unsigned char *buf = malloc(big);
	mproc_conn *a, *b;
	mproc_msg m;
	pid_t pid;

	ck_assert_ptr_nonnull(buf);
	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		child_assert(send_t(b, MPROC_USER, 0, "first", 5, T_LONG) == 0);
		pattern_fill(buf, big, 1);
		/* Nobody reads: part of the frame goes, the rest is kept. */
		child_assert(send_t(b, MPROC_USER + 1, 0, buf, big, 50) == 0);
		free(buf);
		_exit(0);
	}
	mproc_close(b);
	check_reap_ok(pid, 5000);
	ck_assert_int_eq(recv_t(a, &m, buf, big, NULL, NULL, T_LONG), 0);
	ck_assert_uint_eq(m.size, 5);
	ck_assert_int_eq(memcmp(buf, "first", 5), 0);
	ck_assert_int_eq(recv_t(a, &m, buf, big, NULL, NULL, T_LONG), -EPIPE);
	ck_assert_int_eq(recv_t(a, &m, buf, big, NULL, NULL, T_LONG), -EPIPE);
	mproc_close(a);
	free(buf);
}
END_TEST

START_TEST(test_pipe_send_to_closed_peer)
{
	size_t big = 1u << 20;
	unsigned char *buf = calloc(1, big);
	mproc_conn *a, *b;
	mproc_msg m;
	char c[8];
	pid_t pid;

	/* SIGPIPE stays fatal: a send that raised it would kill the test. */
	signal(SIGPIPE, SIG_DFL);
	ck_assert_ptr_nonnull(buf);

	/* Closed in this process. */
	open_pair(&a, &b);
	ck_assert_int_eq(mproc_close(b), 0);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPIPE);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 1000), -EPIPE);
	ck_assert_int_eq(mproc_send(a, MPROC_DIE, 0, NULL, 0), -EPIPE);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 0), -EPIPE);
	mproc_close(a);

	/* The peer closed with our message unread (a reset connection):
	 * what it sent is still delivered, then -EPIPE both ways. */
	open_pair(&a, &b);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "unread", 6, 1000), 0);
	ck_assert_int_eq(send_t(b, MPROC_USER + 1, 0, "bye", 3, 1000), 0);
	mproc_close(b);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 1000), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 1);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 1000), -EPIPE);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPIPE);
	mproc_close(a);

	/* The same, sending first: still -EPIPE, not -ECONNRESET. */
	open_pair(&a, &b);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "unread", 6, 1000), 0);
	mproc_close(b);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPIPE);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPIPE);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 1000), -EPIPE);
	mproc_close(a);

	/* A child that exited. */
	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	mproc_close(b);
	check_reap_ok(pid, 5000);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 1000), -EPIPE);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 1000), -EPIPE);
	mproc_close(a);
	free(buf);
}
END_TEST

/* ---- timeouts ---------------------------------------------------------- */

START_TEST(test_pipe_recv_timeouts)
{
	mproc_conn *a, *b;
	mproc_msg m;
	long long t0, dt;

	open_pair(&a, &b);
	t0 = now_us();
	ck_assert_int_eq(recv_t(a, &m, NULL, 0, NULL, NULL, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_lt(now_us() - t0, check_scale_ms(50) * 1000LL);

	t0 = now_us();
	ck_assert_int_eq(recv_t(a, &m, NULL, 0, NULL, NULL, 50), -ETIMEDOUT);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 50000, "returned after %lld us", dt);
	ck_assert_msg(dt < check_scale_ms(1000) * 1000LL,
	              "returned after %lld us", dt);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* A full socket: NOWAIT gives -EAGAIN, a timed send -ETIMEDOUT after its
 * timeout, and every send that returned 0 is delivered whole, in order,
 * once the reader drains (the kept frame rest flushed by later calls). */
START_TEST(test_pipe_send_full_timeout)
{
	unsigned char buf[4096];
	mproc_conn *a, *b;
	mproc_msg m;
	long long t0, dt;
	int n, got = 0, idle = 0, rc;

	memset(buf, 0, sizeof(buf));
	open_pair(&a, &b);
	n = fill_socket(a);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, 10, MPROC_NOWAIT),
	                 -EAGAIN);
	t0 = now_us();
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, 10, 50), -ETIMEDOUT);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 50000 && dt < check_scale_ms(1000) * 1000LL,
	              "%lld us", dt);

	while (idle < 3) {
		rc = recv_t(b, &m, buf, sizeof(buf), NULL, NULL, MPROC_NOWAIT);
		if (rc == 0) {
			ck_assert_int_eq(m.recipient, got);
			ck_assert_uint_eq(m.size, sizeof(buf));
			ck_assert(pattern_ok(buf, m.size, (unsigned)got));
			got++;
			idle = 0;
			continue;
		}
		ck_assert_int_eq(rc, -EAGAIN);
		/* Any call on a finishes its kept frame. */
		ck_assert_int_eq(recv_t(a, &m, NULL, 0, NULL, NULL,
		                        MPROC_NOWAIT), -EAGAIN);
		idle++;
	}
	ck_assert_int_eq(got, n);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "ok", 2, 1000), 0);
	ck_assert_int_eq(recv_t(b, &m, buf, sizeof(buf), NULL, NULL, 1000), 0);
	ck_assert_uint_eq(m.size, 2);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* A timed send that wrote part of a frame returns 0 and keeps the rest; a
 * later send must flush it before it writes anything new. */
START_TEST(test_pipe_send_partial_flush)
{
	size_t big = 4u << 20;
	unsigned char *buf = malloc(big);
	mproc_conn *a, *b;
	mproc_msg m;
	long long t0, dt;
	pid_t pid;

	ck_assert_ptr_nonnull(buf);
	open_pair(&a, &b);
	pattern_fill(buf, big, 7);
	t0 = now_us();
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 50), 0);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 50000, "partial send returned after %lld us", dt);
	/* The rest cannot go: nothing new is written. */
	ck_assert_int_eq(send_t(a, MPROC_USER + 1, 0, "next", 4, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(send_t(a, MPROC_USER + 1, 0, "next", 4, 20),
	                 -ETIMEDOUT);

	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Closing the inherited copy of a must not write its kept
		 * rest a second time. */
		mproc_close(a);
		child_assert(recv_t(b, &m, buf, big, NULL, NULL, T_LONG) == 0);
		child_assert(m.request == MPROC_USER && m.size == big);
		child_assert(pattern_ok(buf, big, 7));
		child_assert(recv_t(b, &m, buf, big, NULL, NULL, T_LONG) == 0);
		child_assert(m.request == MPROC_USER + 2 && m.size == 4);
		child_assert(memcmp(buf, "last", 4) == 0);
		child_assert(recv_t(b, &m, buf, big, NULL, NULL, T_LONG) ==
		             -EPIPE);
		free(buf);
		_exit(0);
	}
	mproc_close(b);
	ck_assert_int_eq(send_t(a, MPROC_USER + 2, 0, "last", 4, T_LONG), 0);
	mproc_close(a);
	check_reap_ok(pid, 5000);
	free(buf);
}
END_TEST

/* mproc_close finishes a kept frame rest for a reader, but gives up after
 * about a second when nobody reads. */
START_TEST(test_pipe_close_flush)
{
	size_t big = 2u << 20;
	unsigned char *buf = malloc(big);
	mproc_conn *a, *b;
	struct pollfd pfd;
	int ready[2];
	mproc_msg m;
	long long t0, dt;
	pid_t pid;
	char ch;

	ck_assert_ptr_nonnull(buf);

	/* A reader: close delivers the whole frame. The reader says when it
	 * is about to read (over a plain pipe, not to disturb a), so the
	 * close's one-second budget is not spent waiting for it to start. */
	ck_assert_int_eq(pipe(ready), 0);
	open_pair(&a, &b);
	pattern_fill(buf, big, 3);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 20), 0);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		close(ready[0]);
		child_assert(write(ready[1], "r", 1) == 1);
		child_assert(recv_t(b, &m, buf, big, NULL, NULL, T_LONG) == 0);
		child_assert(m.size == big && pattern_ok(buf, big, 3));
		child_assert(recv_t(b, &m, buf, big, NULL, NULL, T_LONG) ==
		             -EPIPE);
		free(buf);
		_exit(0);
	}
	mproc_close(b);
	close(ready[1]);
	pfd.fd = ready[0];
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, T_LONG), 1);
	ck_assert_int_eq(read(ready[0], &ch, 1), 1);
	close(ready[0]);
	t0 = now_us();
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_lt(now_us() - t0, check_scale_ms(1500) * 1000LL);
	check_reap_ok(pid, 5000);

	/* No reader: close is bounded; the reader later sees a torn frame
	 * and the end of the stream. */
	open_pair(&a, &b);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 20), 0);
	t0 = now_us();
	ck_assert_int_eq(mproc_close(a), 0);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 900000 && dt < check_scale_ms(1600) * 1000LL,
	              "close took %lld us", dt);
	ck_assert_int_eq(recv_t(b, &m, buf, big, NULL, NULL, 1000), -EPIPE);
	mproc_close(b);
	free(buf);
}
END_TEST

/* A partial frame survives a receive timeout (including one that was being
 * read straight into the caller's buffer) and is delivered later. */
START_TEST(test_pipe_partial_frame_resumes)
{
	size_t big = 2u << 20;
	unsigned char *buf = malloc(big);
	mproc_conn *a, *b;
	mproc_msg m;
	int rc = -EAGAIN, i;

	ck_assert_ptr_nonnull(buf);
	open_pair(&a, &b);
	pattern_fill(buf, big, 9);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, big, 20), 0);
	memset(buf, 0, big);
	ck_assert_int_eq(recv_t(b, &m, buf, big, NULL, NULL, 30), -ETIMEDOUT);
	ck_assert_int_eq(recv_t(b, &m, buf, big, NULL, NULL, MPROC_NOWAIT),
	                 -EAGAIN);
	/* A predicate cannot see a partial frame either. */
	ck_assert_int_eq(recv_t(b, &m, buf, big, mproc_for_me, NULL,
	                        MPROC_NOWAIT), -EAGAIN);
	for (i = 0; i < 10000 && rc == -EAGAIN; i++) {
		/* a's calls flush its kept rest bit by bit. */
		ck_assert_int_eq(recv_t(a, &m, NULL, 0, NULL, NULL,
		                        MPROC_NOWAIT), -EAGAIN);
		memset(buf, 0, 64);
		rc = recv_t(b, &m, buf, big, NULL, NULL, MPROC_NOWAIT);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(m.size, big);
	ck_assert(pattern_ok(buf, big, 9));
	mproc_close(a);
	mproc_close(b);
	free(buf);
}
END_TEST

/* ---- signals ----------------------------------------------------------- */

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_count++;
}

/* No SA_RESTART: every signal makes poll() fail with EINTR. */
static void install_usr1(struct sigaction *old)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, old), 0);
	usr1_count = 0;
}

/* A child that signals its parent every millisecond for ms ms and, if
 * send_at >= 0, sends one message after send_at ms. */
static pid_t storm_child(mproc_conn *mine, mproc_conn *peer, int ms,
                         int send_at)
{
	pid_t pid = check_fork(), parent;

	ck_assert_int_ge(pid, 0);
	if (pid != 0)
		return pid;
	parent = getppid();
	mproc_close(mine);
	for (int t = 0; t < ms; t++) {
		if (t == send_at)
			child_assert(send_t(peer, MPROC_USER + 7, 0, "late", 4,
			                    T_LONG) == 0);
		kill(parent, SIGUSR1);
		usleep(1000);
	}
	_exit(0);
}

START_TEST(test_pipe_signal_storm)
{
	unsigned char buf[64];
	struct sigaction old;
	mproc_conn *a, *b;
	mproc_msg m;
	long long t0, dt;
	pid_t pid;
	int rc;

	memset(buf, 0, sizeof(buf));
	install_usr1(&old);

	/* Nothing arrives: the full 300 ms, then -ETIMEDOUT. */
	open_pair(&a, &b);
	pid = storm_child(a, b, 500, -1);
	t0 = now_us();
	rc = recv_t(a, &m, buf, sizeof(buf), NULL, NULL, 300);
	dt = now_us() - t0;
	ck_assert_int_eq(rc, -ETIMEDOUT);
	ck_assert_msg(dt >= 300000 && dt < check_scale_ms(2000) * 1000LL,
	              "%lld us", dt);
	ck_assert_msg(usr1_count > 10, "only %d signals", (int)usr1_count);
	check_reap_ok(pid, 5000);

	/* A message that arrives late, through the storm, is delivered. */
	usr1_count = 0;
	pid = storm_child(a, b, 400, 150);
	t0 = now_us();
	rc = recv_t(a, &m, buf, sizeof(buf), NULL, NULL, 3000);
	dt = now_us() - t0;
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(m.request, MPROC_USER + 7);
	ck_assert_int_eq(memcmp(buf, "late", 4), 0);
	ck_assert_msg(dt >= 100000 && dt < check_scale_ms(3000) * 1000LL,
	              "%lld us", dt);
	ck_assert_msg(usr1_count > 10, "only %d signals", (int)usr1_count);
	check_reap_ok(pid, 5000);

	/* A send waiting for room: the full 300 ms too. */
	usr1_count = 0;
	ck_assert_int_gt(fill_socket(a), 0);
	pid = storm_child(b, a, 500, -1);
	t0 = now_us();
	rc = send_t(a, MPROC_USER, 0, buf, sizeof(buf), 300);
	dt = now_us() - t0;
	ck_assert_int_eq(rc, -ETIMEDOUT);
	ck_assert_msg(dt >= 300000 && dt < check_scale_ms(2000) * 1000LL,
	              "%lld us", dt);
	ck_assert_msg(usr1_count > 10, "only %d signals", (int)usr1_count);
	check_reap_ok(pid, 5000);

	mproc_close(a);
	mproc_close(b);
	sigaction(SIGUSR1, &old, NULL);
}
END_TEST

/* ---- predicates -------------------------------------------------------- */

struct pick {
	pid_t to;       /* accept messages to this recipient */
	int calls;      /* times the predicate ran */
	mproc_conn *c;  /* if set, try to receive on it from inside */
	int inner_rc;
};

static int pick_fn(const mproc_msg *m, void *arg)
{
	struct pick *p = arg;
	mproc_msg inner;

	p->calls++;
	/* The predicate sees the payload: one byte, the message's index. */
	ck_assert_uint_eq(m->size, 1);
	ck_assert_ptr_nonnull(m->data);
	if (p->c != NULL) {
		memset(&inner, 0, sizeof(inner));
		p->inner_rc = mproc_recv(p->c, &inner, NULL, NULL, 100);
	}
	return m->recipient == p->to;
}

static void send_idx(mproc_conn *c, unsigned char i, pid_t to)
{
	ck_assert_int_eq(send_t(c, MPROC_USER + i, to, &i, 1, 1000), 0);
}

static void expect_idx(mproc_conn *c, struct pick *p, int idx, int timeout)
{
	unsigned char v = 0xff;
	mproc_msg m;

	ck_assert_int_eq(recv_t(c, &m, &v, 1, p ? pick_fn : NULL, p, timeout),
	                 0);
	ck_assert_int_eq(m.request, MPROC_USER + idx);
	ck_assert_int_eq(v, idx);
}

START_TEST(test_pipe_predicate_holds_in_order)
{
	static const pid_t to[] = { 100, 200, 100, 300, 200, 100 };
	struct pick p200 = { .to = 200 }, p300 = { .to = 300 };
	unsigned char v;
	mproc_conn *a, *b;
	mproc_msg m;
	long long t0;

	open_pair(&a, &b);
	for (unsigned char i = 0; i < 6; i++)
		send_idx(a, i, to[i]);

	expect_idx(b, &p200, 1, 0);
	expect_idx(b, &p200, 4, 0);
	ck_assert_int_eq(recv_t(b, &m, &v, 1, pick_fn, &p200, MPROC_NOWAIT),
	                 -EAGAIN);
	expect_idx(b, &p300, 3, 0);

	/* Matching nothing, a timed receive sleeps its full timeout. */
	t0 = now_us();
	ck_assert_int_eq(recv_t(b, &m, &v, 1, pick_fn, &p200, 50), -ETIMEDOUT);
	ck_assert_int_ge(now_us() - t0, 50000);

	/* New frames queue behind the held ones. */
	send_idx(a, 6, 200);
	send_idx(a, 7, 100);
	p200.calls = 0;
	expect_idx(b, &p200, 6, 1000);
	ck_assert_int_eq(p200.calls, 4); /* held 0, 2, 5, then 6 */

	expect_idx(b, NULL, 0, 0);
	expect_idx(b, NULL, 2, 0);
	expect_idx(b, NULL, 5, 0);
	expect_idx(b, NULL, 7, 0);
	ck_assert_int_eq(recv_t(b, &m, &v, 1, NULL, NULL, MPROC_NOWAIT),
	                 -EAGAIN);

	/* Receiving on the same end from inside its predicate: -EDEADLK. */
	send_idx(a, 8, 100);
	p200.c = b;
	p200.inner_rc = 0;
	ck_assert_int_eq(recv_t(b, &m, &v, 1, pick_fn, &p200, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(p200.inner_rc, -EDEADLK);
	expect_idx(b, NULL, 8, 0);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* Across fork: the child addresses every other message to someone else;
 * mproc_for_me takes the parent's, in order, then the rest follow. */
START_TEST(test_pipe_predicate_for_me)
{
	enum { N = 400 };
	mproc_conn *a, *b;
	mproc_msg m;
	uint32_t v;
	pid_t pid, me = getpid();

	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		for (uint32_t i = 0; i < N; i++)
			child_assert(send_t(b, MPROC_USER, i % 2 ? 1 : me, &i,
			                    sizeof(i), T_LONG) == 0);
		mproc_close(b);
		_exit(0);
	}
	mproc_close(b);
	for (uint32_t i = 0; i < N; i += 2) {
		ck_assert_int_eq(recv_t(a, &m, &v, sizeof(v), mproc_for_me, NULL,
		                        T_LONG), 0);
		ck_assert_uint_eq(v, i);
		ck_assert_int_eq(m.recipient, me);
	}
	check_reap_ok(pid, 5000);
	/* Held messages are delivered even though the peer is gone. */
	for (uint32_t i = 1; i < N; i += 2) {
		ck_assert_int_eq(recv_t(a, &m, &v, sizeof(v), NULL, NULL, 0), 0);
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(recv_t(a, &m, &v, sizeof(v), NULL, NULL, 0), -EPIPE);
	mproc_close(a);
}
END_TEST

/* ---- -EMSGSIZE ---------------------------------------------------------- */

static int to_2(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->recipient == 2;
}

START_TEST(test_pipe_emsgsize_keeps_message)
{
	size_t big = 1u << 20;
	unsigned char *buf = malloc(big);
	mproc_conn *a, *b;
	mproc_msg m;
	pid_t pid;

	ck_assert_ptr_nonnull(buf);
	open_pair(&a, &b);

	/* Buffered frame, match NULL. */
	pattern_fill(buf, 100, 1);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, buf, 100, 1000), 0);
	ck_assert_int_eq(recv_t(b, &m, buf, 10, NULL, NULL, 1000), -EMSGSIZE);
	ck_assert_uint_eq(m.size, 100);
	ck_assert_int_eq(recv_t(b, &m, buf, 10, NULL, NULL, 0), -EMSGSIZE);
	ck_assert_int_eq(recv_t(b, &m, buf, 100, NULL, NULL, 0), 0);
	ck_assert_uint_eq(m.size, 100);
	ck_assert(pattern_ok(buf, 100, 1));

	/* Behind a held message, with a predicate. */
	ck_assert_int_eq(send_t(a, MPROC_USER + 1, 1, "x", 1, 1000), 0);
	pattern_fill(buf, 5000, 2);
	ck_assert_int_eq(send_t(a, MPROC_USER + 2, 2, buf, 5000, 1000), 0);
	ck_assert_int_eq(recv_t(b, &m, buf, 10, to_2, NULL, 1000), -EMSGSIZE);
	ck_assert_uint_eq(m.size, 5000);
	ck_assert_int_eq(recv_t(b, &m, buf, 10, NULL, NULL, 0), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 1);
	ck_assert_int_eq(recv_t(b, &m, buf, 10, NULL, NULL, 0), -EMSGSIZE);
	ck_assert_int_eq(recv_t(b, &m, buf, 5000, to_2, NULL, 0), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 2);
	ck_assert(pattern_ok(buf, 5000, 2));
	ck_assert_int_eq(recv_t(b, &m, buf, 10, NULL, NULL, 0), -EAGAIN);

	/* A large frame still arriving: its header is enough to say. */
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(b);
		pattern_fill(buf, big, 3);
		child_assert(send_t(a, MPROC_USER + 3, 0, buf, big, T_LONG) ==
		             0);
		mproc_close(a);
		_exit(0);
	}
	mproc_close(a);
	ck_assert_int_eq(recv_t(b, &m, buf, 16, NULL, NULL, T_LONG), -EMSGSIZE);
	ck_assert_uint_eq(m.size, big);
	memset(buf, 0, big);
	ck_assert_int_eq(recv_t(b, &m, buf, big, NULL, NULL, T_LONG), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 3);
	ck_assert(pattern_ok(buf, big, 3));
	check_reap_ok(pid, 5000);
	mproc_close(b);
	free(buf);
}
END_TEST

/* ---- mproc_fd ------------------------------------------------------------ */

START_TEST(test_pipe_fd_poll)
{
	mproc_conn *a, *b;
	struct pollfd pfd;
	mproc_msg m;
	char c[4];
	pid_t pid;

	open_pair(&a, &b);
	ck_assert_int_ge(mproc_fd(a), 0);
	ck_assert_int_ge(mproc_fd(b), 0);
	ck_assert_int_ne(mproc_fd(a), mproc_fd(b));
	pfd.fd = mproc_fd(a);
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);

	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		usleep(50000);
		child_assert(send_t(b, MPROC_USER, 0, "hi", 2, T_LONG) == 0);
		child_assert(send_t(b, MPROC_USER, 0, "yo", 2, T_LONG) == 0);
		mproc_close(b);
		_exit(0);
	}
	mproc_close(b);
	pfd.revents = 0;
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert(pfd.revents & POLLIN);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 0), 0);
	ck_assert_int_eq(memcmp(c, "hi", 2), 0);
	/* The second message may already sit in the endpoint, where poll
	 * cannot see it: receive until -EAGAIN before polling again. */
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, T_LONG), 0);
	ck_assert_int_eq(memcmp(c, "yo", 2), 0);
	check_reap_ok(pid, 5000);
	/* The peer gone is readable too, and reads as -EPIPE. */
	pfd.revents = 0;
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 0), -EPIPE);
	mproc_close(a);
}
END_TEST

/* ---- framing errors --------------------------------------------------- */

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t w;

	while (n > 0) {
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		ck_assert_int_gt(w, 0);
		p += w;
		n -= (size_t)w;
	}
}

START_TEST(test_pipe_garbage_is_eproto)
{
	static const char junk[] = "this is not an mproc frame, not at all!";
	unsigned char hdr[64], v[8];
	mproc_conn *a, *b;
	struct pollfd pfd;
	uint32_t size;
	mproc_msg m;
	ssize_t n;
	pid_t pid;

	/* A valid message, then garbage from the peer's raw descriptor. */
	open_pair(&a, &b);
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_close(a);
		child_assert(send_t(b, MPROC_USER, 0, "ok", 2, T_LONG) == 0);
		child_assert(send(mproc_fd(b), junk, sizeof(junk),
		                  MSG_NOSIGNAL) == (ssize_t)sizeof(junk));
		_exit(0);
	}
	mproc_close(b);
	ck_assert_int_eq(recv_t(a, &m, v, sizeof(v), NULL, NULL, T_LONG), 0);
	ck_assert_int_eq(memcmp(v, "ok", 2), 0);
	ck_assert_int_eq(recv_t(a, &m, v, sizeof(v), NULL, NULL, T_LONG),
	                 -EPROTO);
	ck_assert_int_eq(recv_t(a, &m, v, sizeof(v), NULL, NULL, 0), -EPROTO);
	ck_assert_int_eq(recv_t(a, &m, v, sizeof(v), mproc_for_me, NULL, 0),
	                 -EPROTO);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 1000), -EPROTO);
	check_reap_ok(pid, 5000);
	mproc_close(a);

	/* A well-formed header announcing more than MPROC_PIPE_MAX_PAYLOAD:
	 * take a real header off the wire and raise its size field (the last
	 * u32 of the 20-byte header). */
	open_pair(&a, &b);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, NULL, 0, 1000), 0);
	pfd.fd = mproc_fd(b);
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	n = recv(mproc_fd(b), hdr, sizeof(hdr), MSG_DONTWAIT);
	ck_assert_int_eq(n, 20);
	size = MPROC_PIPE_MAX_PAYLOAD + 1;
	memcpy(hdr + 16, &size, sizeof(size));
	write_all(mproc_fd(a), hdr, (size_t)n);
	ck_assert_int_eq(recv_t(b, &m, v, sizeof(v), NULL, NULL, 1000),
	                 -EPROTO);
	ck_assert_int_eq(recv_t(b, &m, v, sizeof(v), NULL, NULL, 0), -EPROTO);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* ---- bad arguments ---------------------------------------------------- */

START_TEST(test_pipe_bad_arguments)
{
	mproc_conn *a, *b, *x = NULL;
	mproc_msg m;
	char c[8];

	open_pair(&a, &b);
	memset(&m, 0, sizeof(m));
	m.request = MPROC_USER;

	ck_assert_int_eq(mproc_pipe_open(NULL, &x), -EINVAL);
	ck_assert_int_eq(mproc_pipe_open(&x, NULL), -EINVAL);
	ck_assert_int_eq(mproc_pipe_open(&x, &x), -EINVAL);
	ck_assert_ptr_null(x);

	ck_assert_int_eq(mproc_send(NULL, MPROC_USER, 0, "x", 1), -EINVAL);
	ck_assert_int_eq(mproc_send(a, MPROC_USER, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(NULL, &m, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(a, NULL, 0), -EINVAL);
	m.size = 5;
	ck_assert_int_eq(mproc_send_msg(a, &m, 0), -EINVAL);
	m.size = 1;
	m.data = c;
	ck_assert_int_eq(mproc_send_msg(a, &m, -2), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(a, &m, INT32_MIN), -EINVAL);

	/* Oversize: refused before the payload is touched. */
	m.size = MPROC_PIPE_MAX_PAYLOAD + 1;
	ck_assert_int_eq(mproc_send_msg(a, &m, 0), -EMSGSIZE);
	ck_assert_int_eq(mproc_send(a, MPROC_USER, 0, c,
	                            (size_t)MPROC_PIPE_MAX_PAYLOAD + 1),
	                 -EMSGSIZE);
	ck_assert_int_eq(mproc_send(a, MPROC_USER, 0, c, (size_t)UINT32_MAX + 1),
	                 -EMSGSIZE);

	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(mproc_recv(NULL, &m, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv(b, NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv(b, &m, NULL, NULL, -2), -EINVAL);
	m.capacity = 5;
	ck_assert_int_eq(mproc_recv(b, &m, NULL, NULL, 0), -EINVAL);

	ck_assert_int_eq(mproc_fd(NULL), -EINVAL);
	ck_assert_int_eq(mproc_close(NULL), -EINVAL);

	/* None of that changed anything: the pipe works. */
	ck_assert_int_eq(recv_t(b, &m, c, sizeof(c), NULL, NULL, 0), -EAGAIN);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "fine", 4, 1000), 0);
	ck_assert_int_eq(recv_t(b, &m, c, sizeof(c), NULL, NULL, 1000), 0);
	ck_assert_uint_eq(m.size, 4);
	ck_assert_int_eq(m.sender, getpid());
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* ---- threads ----------------------------------------------------------- */

struct job {
	mproc_conn *c;
	int timeout_ms;
	int rc;
	char buf[64];
	mproc_msg m;
};

static void *recv_thread(void *arg)
{
	struct job *j = arg;

	j->rc = recv_t(j->c, &j->m, j->buf, sizeof(j->buf), NULL, NULL,
	               j->timeout_ms);
	return NULL;
}

static void *send_thread(void *arg)
{
	struct job *j = arg;

	j->rc = send_t(j->c, MPROC_USER, 0, j->buf, sizeof(j->buf),
	               j->timeout_ms);
	return NULL;
}

/* A blocked receive does not hold up a send on the same end. */
START_TEST(test_pipe_threads_duplex)
{
	struct job j = { .rc = 1, .timeout_ms = 5000 };
	mproc_conn *a, *b;
	mproc_msg m;
	char c[8];
	pthread_t t;
	long long t0;

	open_pair(&a, &b);
	j.c = a;
	ck_assert_int_eq(pthread_create(&t, NULL, recv_thread, &j), 0);
	usleep(20000); /* let it block in receive */
	t0 = now_us();
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "ping", 4, 1000), 0);
	ck_assert_int_lt(now_us() - t0, check_scale_ms(500) * 1000LL);
	ck_assert_int_eq(recv_t(b, &m, c, sizeof(c), NULL, NULL, 1000), 0);
	ck_assert_int_eq(send_t(b, MPROC_USER + 1, 0, "pong", 4, 1000), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(j.rc, 0);
	ck_assert_int_eq(j.m.request, MPROC_USER + 1);
	ck_assert_int_eq(memcmp(j.buf, "pong", 4), 0);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* A second receiver (or sender) on one end queues behind the first, but
 * only for as long as its own timeout allows. */
START_TEST(test_pipe_threads_wait_their_turn)
{
	struct job j = { .rc = 1, .timeout_ms = 400 };
	mproc_conn *a, *b;
	mproc_msg m;
	char c[64];
	pthread_t t;
	long long t0, dt;

	open_pair(&a, &b);
	j.c = a;
	ck_assert_int_eq(pthread_create(&t, NULL, recv_thread, &j), 0);
	usleep(50000);
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, MPROC_NOWAIT),
	                 -EAGAIN);
	t0 = now_us();
	ck_assert_int_eq(recv_t(a, &m, c, sizeof(c), NULL, NULL, 50),
	                 -ETIMEDOUT);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 50000 && dt < check_scale_ms(300) * 1000LL,
	              "%lld us", dt);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(j.rc, -ETIMEDOUT);

	ck_assert_int_gt(fill_socket(a), 0);
	j.rc = 1;
	ck_assert_int_eq(pthread_create(&t, NULL, send_thread, &j), 0);
	usleep(50000);
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, MPROC_NOWAIT),
	                 -EAGAIN);
	t0 = now_us();
	ck_assert_int_eq(send_t(a, MPROC_USER, 0, "x", 1, 50), -ETIMEDOUT);
	dt = now_us() - t0;
	ck_assert_msg(dt >= 50000 && dt < check_scale_ms(300) * 1000LL,
	              "%lld us", dt);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(j.rc, -ETIMEDOUT);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* ---- mproc_pipe_adopt: an end made of a descriptor -------------------- */

START_TEST(test_pipe_adopt)
{
	mproc_conn *parent, *child, *adopted;
	unsigned char buf[64];
	mproc_msg m;
	int fd, sv[2], dg[2], fl;

	open_pair(&parent, &child);
	/* A message already in the socket is received by the adopter. */
	ck_assert_int_eq(mproc_send(parent, MPROC_USER + 5, 0, "hello", 5), 0);
	fd = dup(mproc_fd(child));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mproc_close(child), 0);
	fl = fcntl(fd, F_GETFL);
	ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
	ck_assert_int_eq(mproc_pipe_adopt(&adopted, fd), 0);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(recv_t(adopted, &m, buf, sizeof(buf), NULL, NULL, 1000), 0);
	ck_assert_int_eq(m.request, MPROC_USER + 5);
	ck_assert_int_eq(m.sender, getpid());
	ck_assert_uint_eq(m.size, 5);
	ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
	/* Both ways. */
	ck_assert_int_eq(mproc_send(adopted, MPROC_DO, 0, "x", 1), 0);
	ck_assert_int_eq(recv_t(parent, &m, buf, sizeof(buf), NULL, NULL, 1000), 0);
	ck_assert_int_eq(m.request, MPROC_DO);
	ck_assert_int_eq(mproc_close(adopted), 0);
	/* Closing the adopted end closed fd: the peer sees the end. */
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(recv_t(parent, &m, buf, sizeof(buf), NULL, NULL, 1000), -EPIPE);
	ck_assert_int_eq(mproc_close(parent), 0);

	/* Bad descriptors: -EINVAL or -EBADF, fd left alone. */
	ck_assert_int_eq(mproc_pipe_adopt(NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_pipe_adopt(&adopted, -1), -EINVAL);
	ck_assert_int_eq(mproc_pipe_adopt(&adopted, 1000000), -EBADF);
	ck_assert_int_eq(pipe(sv), 0);
	ck_assert_int_eq(mproc_pipe_adopt(&adopted, sv[0]), -EINVAL);
	ck_assert_int_ne(fcntl(sv[0], F_GETFD), -1);
	close(sv[0]);
	close(sv[1]);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), 0);
	ck_assert_int_eq(mproc_pipe_adopt(&adopted, dg[0]), -EINVAL);
	ck_assert_int_ne(fcntl(dg[0], F_GETFD), -1);
	close(dg[0]);
	close(dg[1]);
}
END_TEST

Suite *pipe_suite(void);

Suite *pipe_suite(void)
{
	Suite *s = suite_create("pipe");
	TCase *tc;

	tc = check_tcase(s, "delivery");
	tcase_add_test(tc, test_pipe_local_communication);
	tcase_add_test(tc, test_pipe_payload_sizes);
	tcase_add_test(tc, test_pipe_order);
	tcase_add_test(tc, test_pipe_fd_poll);
	tcase_add_test(tc, test_pipe_threads_duplex);
	tcase_add_test(tc, test_pipe_threads_wait_their_turn);
	tcase_add_test(tc, test_pipe_adopt);

	tc = check_tcase(s, "peer_gone");
	tcase_add_test(tc, test_pipe_peer_death);
	tcase_add_test(tc, test_pipe_peer_death_mid_frame);
	tcase_add_test(tc, test_pipe_send_to_closed_peer);

	tc = check_tcase(s, "waiting");
	tcase_add_test(tc, test_pipe_recv_timeouts);
	tcase_add_test(tc, test_pipe_send_full_timeout);
	tcase_add_test(tc, test_pipe_send_partial_flush);
	tcase_add_test(tc, test_pipe_close_flush);
	tcase_add_test(tc, test_pipe_partial_frame_resumes);
	tcase_add_test(tc, test_pipe_signal_storm);

	tc = check_tcase(s, "selective");
	tcase_add_test(tc, test_pipe_predicate_holds_in_order);
	tcase_add_test(tc, test_pipe_predicate_for_me);
	tcase_add_test(tc, test_pipe_emsgsize_keeps_message);

	tc = check_tcase(s, "errors");
	tcase_add_test(tc, test_pipe_garbage_is_eproto);
	tcase_add_test(tc, test_pipe_bad_arguments);

	return s;
}

int main(void)
{
	return check_run_suite(pipe_suite());
}
