/*
 * check_slot.c - the slot (latest value) and the event: coalescing, what
 * each handle has seen (fork included), screening, sizes, large values
 * under concurrent writers and readers (never torn, never overwritten
 * under a reader), killed writers and readers, events seen once by every
 * listener, named slots attached from an exec'd program, the descriptor;
 * zero-copy (reserve, commit, cancel, borrow, release): its rules, a
 * borrow held under a busy writer, mixed with copies, killed holders.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "check_common.h"
#include "internal.h"
#include "slot/slot.h"

#define T 5000 /* ms: every blocking call in these tests */

static const char *self_exe;

static mproc_conn *slot_new(uint32_t max_payload)
{
	mproc_slot_opts o = { .max_payload = max_payload };
	mproc_conn *s = NULL;
	int rc = mproc_slot_open(&s, &o);

	ck_assert_msg(rc == 0, "mproc_slot_open: %s", mproc_strerror(rc));
	return s;
}

static mproc_slot_counts sstats(mproc_conn *s)
{
	mproc_slot_counts st;

	ck_assert_int_eq(mproc_slot_stats(s, &st), 0);
	return st;
}

static int send_u64(mproc_conn *s, uint64_t v)
{
	return mproc_send(s, MPROC_USER, 0, &v, sizeof(v));
}

static int recv_u64(mproc_conn *s, uint64_t *v, int timeout)
{
	mproc_msg m = { .data = v, .capacity = sizeof(*v) };

	return mproc_recv(s, &m, NULL, NULL, timeout);
}

static int reject_all(const mproc_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	return 0;
}

START_TEST(test_slot_latest_coalesces)
{
	mproc_conn *s = slot_new(0);
	uint64_t v = 0;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(recv_u64(s, &v, 30), -ETIMEDOUT);
	ck_assert_int_eq(sstats(s).version, 0);
	ck_assert_int_eq(send_u64(s, 1), 0);
	ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(m.request, MPROC_USER);
	ck_assert_int_eq(m.sender, getpid());
	ck_assert_int_eq(m.size, sizeof(v));
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	for (uint64_t i = 2; i <= 50; i++)
		ck_assert_int_eq(send_u64(s, i), 0);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 50); /* values in between are skipped */
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(sstats(s).version, 50);
	ck_assert_int_eq(sstats(s).seen, 50);
	ck_assert_int_eq(sstats(s).size, sizeof(v));
	ck_assert_int_eq(sstats(s).buffers, 8);
	ck_assert_int_eq(mproc_close(s), 0);
	ck_assert_int_eq(mproc_close(s), -EINVAL);
}
END_TEST

START_TEST(test_slot_args)
{
	mproc_slot_opts o = { 0 };
	mproc_conn *s = NULL, *q = queue_new(0, 0, 0, 0);
	mproc_slot_counts st;
	char big[100] = { 0 };

	ck_assert_int_eq(mproc_slot_open(NULL, NULL), -EINVAL);
	o.flags = 1u << 3;
	ck_assert_int_eq(mproc_slot_open(&s, &o), -EINVAL);
	o.flags = MPROC_UNLINK_ON_LAST_CLOSE; /* no name */
	ck_assert_int_eq(mproc_slot_open(&s, &o), -EINVAL);
	o.flags = 0;
	o.max_payload = MPROC_SLOT_MAX_PAYLOAD + 1;
	ck_assert_int_eq(mproc_slot_open(&s, &o), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(mproc_slot_stats(q, &st), -EINVAL);
	ck_assert_int_eq(mproc_slot_stats(NULL, &st), -EINVAL);
	s = slot_new(64);
	ck_assert_int_eq(mproc_slot_stats(s, NULL), -EINVAL);
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, big, 65), -EMSGSIZE);
	ck_assert_int_eq(mproc_send(s, 7, 0, big, 1), -EINVAL);
	ck_assert_int_eq(mproc_send(s, MPROC_USER, -1, big, 1), -EINVAL);
	ck_assert_int_eq(sstats(s).version, 0); /* failed calls changed nothing */
	ck_assert_int_eq(mproc_queue_stats(s, NULL), -EINVAL);
	ck_assert_int_eq(mproc_slot_create(&s, "bad name", NULL), -EINVAL);
	mproc_close(s);
	mproc_close(q);
}
END_TEST

START_TEST(test_slot_msgsize_keeps_value)
{
	mproc_conn *s = slot_new(0);
	char buf[64], small[4];
	mproc_msg m = { .data = small, .capacity = sizeof(small) };

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), -EMSGSIZE);
	ck_assert_int_eq(m.size, sizeof(buf));
	m.data = buf;
	m.capacity = sizeof(buf);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(m.size, sizeof(buf));
	ck_assert_int_eq(buf[63], 'x');
	mproc_close(s);
}
END_TEST

START_TEST(test_slot_rejected_counts_as_seen)
{
	mproc_conn *s = slot_new(0);
	uint64_t v;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	ck_assert_int_eq(send_u64(s, 7), 0);
	ck_assert_int_eq(mproc_recv(s, &m, reject_all, NULL, 50), -ETIMEDOUT);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(sstats(s).seen, 1);
	ck_assert_int_eq(send_u64(s, 8), 0);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 8);
	mproc_close(s);
}
END_TEST

/* A child starts where its parent's copy stood; handles are separate. */
START_TEST(test_slot_fork_starts_where_parent_stood)
{
	mproc_conn *s = slot_new(0);
	struct pollfd pf;
	uint64_t v;
	int looked[2];
	pid_t pid;

	ck_assert_int_eq(send_u64(s, 1), 0);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(pipe(looked), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t w;

		close(looked[0]);
		child_assert(recv_u64(s, &w, MPROC_NOWAIT) == -EAGAIN);
		child_assert(write(looked[1], "l", 1) == 1);
		child_assert(recv_u64(s, &w, T) == 0 && w == 2);
		mproc_close(s);
		_exit(0);
	}
	/* The next value only once the child has looked (a slow child,
	 * under valgrind, would see it at its first look). */
	close(looked[1]);
	pf.fd = looked[0];
	pf.events = POLLIN;
	ck_assert_int_eq(poll(&pf, 1, T), 1);
	close(looked[0]);
	usleep(20000); /* most likely asleep in its receive by now */
	ck_assert_int_eq(send_u64(s, 2), 0);
	check_reap_ok(pid, T);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 2);
	mproc_close(s);
}
END_TEST

/* Every listener of an event sees the signal once. */
START_TEST(test_slot_event_every_listener_once)
{
	mproc_conn *e = slot_new(0);
	pid_t kids[4];
	long long end;
	int i;

	for (i = 0; i < 4; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			mproc_msg m = { 0 };

			child_assert(mproc_recv(e, &m, NULL, NULL, T) == 0);
			child_assert(m.size == 0 && m.request == MPROC_USER);
			child_assert(mproc_recv(e, &m, NULL, NULL, 50) == -ETIMEDOUT);
			mproc_close(e);
			_exit(0);
		}
	}
	end = check_now_ms() + T;
	while (sstats(e).readers_waiting < 4 && check_now_ms() < end)
		usleep(1000);
	ck_assert_int_eq(sstats(e).readers_waiting, 4);
	ck_assert_int_eq(mproc_send(e, MPROC_USER, 0, NULL, 0), 0);
	for (i = 0; i < 4; i++)
		check_reap_ok(kids[i], T);
	mproc_close(e);
}
END_TEST

/* Large values: every 8-byte word says (writer, seq, word index). */
#define BIG (5u << 20)

static void big_fill(uint64_t *p, uint64_t tag)
{
	for (size_t i = 0; i < BIG / 8; i++)
		p[i] = tag ^ (i * 0x9e3779b97f4a7c15ull);
}

static int big_ok(const uint64_t *p, uint64_t *tag)
{
	*tag = p[0];
	for (size_t i = 1; i < BIG / 8; i++)
		if (p[i] != (*tag ^ (i * 0x9e3779b97f4a7c15ull)))
			return 0;
	return 1;
}

START_TEST(test_slot_large_values_never_torn)
{
	mproc_conn *s = slot_new(BIG);
	pid_t w[2], r[3];
	int i, ms = check_scale_ms(1200);

	for (i = 0; i < 2; i++) {
		w[i] = fork();
		ck_assert_int_ge(w[i], 0);
		if (w[i] == 0) {
			uint64_t *p = malloc(BIG);
			long long end = check_now_ms() + ms;

			child_assert(p != NULL);
			for (uint64_t seq = 1; check_now_ms() < end; seq++) {
				big_fill(p, (uint64_t)(i + 1) << 48 | seq);
				child_assert(mproc_send(s, MPROC_USER, 0, p, BIG) == 0);
			}
			free(p);
			mproc_close(s);
			_exit(0);
		}
	}
	for (i = 0; i < 3; i++) {
		r[i] = fork();
		ck_assert_int_ge(r[i], 0);
		if (r[i] == 0) {
			uint64_t *p = malloc(BIG), last[3] = { 0 }, tag;
			mproc_msg m = { .data = p, .capacity = BIG };
			long long end = check_now_ms() + ms + 200;
			int n = 0, rc;

			child_assert(p != NULL);
			while (check_now_ms() < end) {
				rc = mproc_recv(s, &m, NULL, NULL, 100);
				if (rc == -ETIMEDOUT)
					continue;
				child_assert(rc == 0 && m.size == BIG);
				if (!big_ok(p, &tag))
					child_fail("torn value");
				/* Per writer, values only move forward. */
				child_assert((tag >> 48) >= 1 && (tag >> 48) <= 2);
				child_assert((tag & 0xffffffffffffull) >
				             last[tag >> 48]);
				last[tag >> 48] = tag & 0xffffffffffffull;
				n++;
			}
			child_assert(n > 3);
			free(p);
			mproc_close(s);
			_exit(0);
		}
	}
	for (i = 0; i < 2; i++)
		check_reap_ok(w[i], T + ms);
	for (i = 0; i < 3; i++)
		check_reap_ok(r[i], T + ms);
	mproc_close(s);
}
END_TEST

/* A reader holding a value (its predicate runs while it is pinned) sees
 * it unchanged while a writer publishes many more, and the writer never
 * waits. */
struct hold_arg {
	int checked;
};

static int hold_pred(const mproc_msg *m, void *arg)
{
	struct hold_arg *h = arg;
	char first[256];

	memcpy(first, m->data, sizeof(first));
	usleep(check_scale_ms(300) * 1000);
	h->checked = memcmp(first, m->data, sizeof(first)) == 0 &&
	             ((const char *)m->data)[m->size - 1] == first[0];
	return 1;
}

START_TEST(test_slot_pinned_value_not_overwritten)
{
	mproc_conn *s = slot_new(4096);
	char buf[4096];
	struct hold_arg h = { 0 };
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	pid_t pid;

	memset(buf, 'a', sizeof(buf));
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, buf, sizeof(buf)), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char b[4096];
		mproc_msg w = { .request = MPROC_USER, .data = b, .size = sizeof(b) };

		usleep(50000);
		for (int i = 0; i < 200; i++) {
			memset(b, 'b' + i % 20, sizeof(b));
			child_assert(mproc_send_msg(s, &w, MPROC_NOWAIT) == 0);
		}
		mproc_close(s);
		_exit(0);
	}
	ck_assert_int_eq(mproc_recv(s, &m, hold_pred, &h, T), 0);
	ck_assert_int_eq(h.checked, 1);
	ck_assert_int_eq(buf[0], 'a');
	ck_assert_int_eq(buf[4095], 'a');
	check_reap_ok(pid, T);
	ck_assert_int_eq(sstats(s).version, 201);
	mproc_close(s);
}
END_TEST


/* Zero-copy: the rules of reserve, commit, cancel, borrow, release. */
static int reserve_in_pred(const mproc_msg *m, void *arg)
{
	mproc_conn *s = *(mproc_conn **)arg;
	void *b;
	mproc_msg x = { 0 };

	(void)m;
	*(int *)((mproc_conn **)arg + 1) =
	        mproc_send_reserve(s, 1, &b, MPROC_NOWAIT) == -EDEADLK &&
	        mproc_send_commit(s, MPROC_USER, 0, 0) == -EDEADLK &&
	        mproc_recv_borrow(s, &x, NULL, NULL, MPROC_NOWAIT) == -EDEADLK &&
	        mproc_recv_release(s, &x) == -EDEADLK;
	return 1;
}

START_TEST(test_slot_zc_rules)
{
	mproc_conn *s = slot_new(64), *a = NULL, *b = NULL;
	char out[64];
	mproc_msg m = { 0 }, m2 = { 0 };
	mproc_msg r = { .data = out, .capacity = sizeof(out) };
	void *buf = NULL, *buf2 = NULL;

	/* Nothing open: commit, cancel, release are -EINVAL. */
	ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, 0, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_cancel(s), -EINVAL);
	m.data = out;
	ck_assert_int_eq(mproc_recv_release(s, &m), -EINVAL);
	ck_assert_int_eq(mproc_send_reserve(s, 65, &buf, MPROC_NOWAIT), -EMSGSIZE);
	ck_assert_ptr_null(buf);

	/* One reservation; commit publishes its first size bytes, shrunk. */
	ck_assert_int_eq(mproc_send_reserve(s, 64, &buf, MPROC_NOWAIT), 0);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(mproc_send_reserve(s, 8, &buf2, MPROC_NOWAIT), -EBUSY);
	ck_assert_ptr_null(buf2);
	memset(buf, 'r', 64);
	memcpy(buf, "zero-copy", 9);
	ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, 0, 65), -EINVAL);
	ck_assert_int_eq(mproc_send_commit(s, 7, 0, 9), -EINVAL);
	ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, -1, 9), -EINVAL);
	ck_assert_int_eq(sstats(s).version, 0); /* the reservation stayed */
	ck_assert_int_eq(mproc_send_commit(s, MPROC_USER + 1, 77, 9), 0);
	ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, 0, 9), -EINVAL);
	ck_assert_int_eq(sstats(s).version, 1);
	ck_assert_int_eq(mproc_recv(s, &r, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(r.size, 9);
	ck_assert_int_eq(r.request, MPROC_USER + 1);
	ck_assert_int_eq(r.recipient, 77);
	ck_assert_int_eq(r.sender, getpid());
	ck_assert_mem_eq(out, "zero-copy", 9);

	/* Cancel publishes nothing and frees the buffer (more rounds than
	 * buffers, never waiting). */
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(mproc_send_reserve(s, 8, &buf, MPROC_NOWAIT), 0);
		memset(buf, 'c', 8);
		ck_assert_int_eq(mproc_send_cancel(s), 0);
		ck_assert_int_eq(mproc_send_cancel(s), -EINVAL);
	}
	ck_assert_int_eq(sstats(s).version, 1);
	ck_assert_int_eq(mproc_recv(s, &r, NULL, NULL, MPROC_NOWAIT), -EAGAIN);

	/* One borrow; it returns what a receive would, and counts as seen. */
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "borrowed", 8), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(m.size, 8);
	ck_assert_int_eq(m.request, MPROC_USER);
	ck_assert_int_eq(m.sender, getpid());
	ck_assert_ptr_ne(m.data, out);
	ck_assert_mem_eq(m.data, "borrowed", 8);
	ck_assert_int_eq(mproc_recv_borrow(s, &m2, NULL, NULL, MPROC_NOWAIT),
	                 -EBUSY);
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "newer", 5), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m2, NULL, NULL, MPROC_NOWAIT),
	                 -EBUSY);
	/* A copying receive on the same handle goes on meanwhile. */
	ck_assert_int_eq(mproc_recv(s, &r, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_mem_eq(out, "newer", 5);
	ck_assert_mem_eq(m.data, "borrowed", 8);
	m2.data = out;
	ck_assert_int_eq(mproc_recv_release(s, &m2), -EINVAL);
	ck_assert_int_eq(mproc_recv_release(s, &m), 0);
	ck_assert_int_eq(mproc_recv_release(s, &m), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT),
	                 -EAGAIN);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, 20), -ETIMEDOUT);

	/* A value match rejects counts as seen and lends nothing. */
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "x", 1), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, reject_all, NULL, 20),
	                 -ETIMEDOUT);
	ck_assert_int_eq(mproc_recv_release(s, &m), -EINVAL);
	ck_assert_int_eq(mproc_recv(s, &r, NULL, NULL, MPROC_NOWAIT), -EAGAIN);

	/* A predicate calling back: -EDEADLK for the zero-copy calls too. */
	{
		struct { mproc_conn *s; int ok; } cb = { s, 0 };

		ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "y", 1), 0);
		ck_assert_int_eq(mproc_recv(s, &r, reserve_in_pred, &cb,
		                            MPROC_NOWAIT), 0);
		ck_assert_int_eq(cb.ok, 1);
	}

	/* A forked copy of the handle holds neither its parent's
	 * reservation nor its borrow, and may make its own. */
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "z", 1), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(mproc_send_reserve(s, 4, &buf, MPROC_NOWAIT), 0);
	{
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			mproc_msg c = { 0 };
			void *cb;

			child_assert(mproc_send_commit(s, MPROC_USER, 0, 1) == -EINVAL);
			child_assert(mproc_send_cancel(s) == -EINVAL);
			child_assert(mproc_recv_release(s, &m) == -EINVAL);
			child_assert(mproc_send_reserve(s, 4, &cb, MPROC_NOWAIT) == 0);
			child_assert(cb != buf);
			memcpy(cb, "kid", 3);
			child_assert(mproc_send_commit(s, MPROC_USER, 0, 3) == 0);
			child_assert(mproc_recv_borrow(s, &c, NULL, NULL, T) == 0);
			child_assert(c.size == 3 && memcmp(c.data, "kid", 3) == 0);
			child_assert(mproc_recv_release(s, &c) == 0);
			mproc_close(s);
			_exit(0);
		}
		check_reap_ok(pid, T);
	}
	ck_assert_int_eq(mproc_send_cancel(s), 0);
	ck_assert_int_eq(mproc_recv_release(s, &m), 0);
	ck_assert_int_eq(mproc_recv(s, &r, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_mem_eq(out, "kid", 3);

	/* Close drops what is open. */
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, "c", 1), 0);
	ck_assert_int_eq(mproc_send_reserve(s, 4, &buf, MPROC_NOWAIT), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(mproc_close(s), 0);
	ck_assert_int_eq(mproc_send_reserve(s, 4, &buf, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT),
	                 -EINVAL);

	/* Not on a pipe. */
	ck_assert_int_eq(mproc_pipe_open(&a, &b), 0);
	ck_assert_int_eq(mproc_send_reserve(a, 4, &buf, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_recv_borrow(b, &m, NULL, NULL, MPROC_NOWAIT),
	                 -EINVAL);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* Self-checking values of n 8-byte words: word i is tag ^ i * K. */
static void zc_fill(uint64_t *p, size_t n, uint64_t tag)
{
	p[0] = tag;
	for (size_t i = 1; i < n; i++)
		p[i] = tag ^ (i * 0x9e3779b97f4a7c15ull);
}

static int zc_ok(const uint64_t *p, size_t n, uint64_t *tag)
{
	*tag = p[0];
	for (size_t i = 1; i < n; i++)
		if (p[i] != (*tag ^ (i * 0x9e3779b97f4a7c15ull)))
			return 0;
	return 1;
}

/* A borrowed 1 MiB value stays unchanged while a writer publishes many
 * more (copying and zero-copy), never waiting. */
#define MIB (1u << 20)

START_TEST(test_slot_borrow_held_while_writing)
{
	mproc_conn *s = slot_new(MIB);
	uint64_t *p = malloc(MIB), tag;
	mproc_msg m = { 0 };
	long long end;
	pid_t pid, r;
	int st = 0, checks = 0;

	ck_assert_ptr_nonnull(p);
	zc_fill(p, MIB / 8, 1);
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, p, MIB), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert_int_eq(m.size, MIB);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_msg w = { .request = MPROC_USER, .data = p, .size = MIB };

		for (uint64_t seq = 2; seq <= 41; seq++) {
			void *b;

			if (seq % 2) {
				zc_fill(p, MIB / 8, seq);
				child_assert(mproc_send_msg(s, &w, MPROC_NOWAIT) == 0);
			} else {
				child_assert(mproc_send_reserve(s, MIB, &b,
				                                MPROC_NOWAIT) == 0);
				zc_fill(b, MIB / 8, seq);
				child_assert(mproc_send_commit(s, MPROC_USER, 0,
				                               MIB) == 0);
			}
		}
		mproc_close(s);
		_exit(0);
	}
	/* Check the borrowed bytes while the writer runs, and after. */
	end = check_now_ms() + T;
	do {
		r = waitpid(pid, &st, WNOHANG);
		expect_msg(zc_ok(m.data, MIB / 8, &tag) && tag == 1,
		           "borrowed value changed (tag %llu)",
		           (unsigned long long)tag);
		checks++;
	} while (r == 0 && check_now_ms() < end);
	if (r == 0)
		st = check_wait_child(pid, 0); /* too slow: killed, fails */
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "writer status 0x%x after %d checks", st, checks);
	ck_assert_int_eq(sstats(s).version, 41);
	ck_assert_int_eq(mproc_recv_release(s, &m), 0);
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert(zc_ok(m.data, MIB / 8, &tag));
	ck_assert_int_eq(tag, 41);
	ck_assert_int_eq(mproc_recv_release(s, &m), 0);
	free(p);
	mproc_close(s);
}
END_TEST

static void reap_killed(pid_t pid)
{
	int st = check_wait_child(pid, T);

	ck_assert_msg(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	              "child %d: status 0x%x", (int)pid, st);
}

/* Writers killed half way through a copy (more of them than buffers)
 * leave the previous value whole, and their buffers are taken back. */
START_TEST(test_slot_killed_writers)
{
	mproc_conn *s = slot_new(4096);
	char buf[4096];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

	memset(buf, 'k', sizeof(buf));
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, buf, sizeof(buf)), 0);
	for (int i = 0; i < 12; i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			char b[4096];

			memset(b, 'z', sizeof(b));
			mproc__crash_point = i % 2 ? MPROC__CRASH_SEND_COPY
			                           : MPROC__CRASH_SEND_COMMIT;
			mproc__crash_countdown = 1;
			mproc_send(s, MPROC_USER, 0, b, sizeof(b));
			_exit(3);
		}
		reap_killed(pid);
		memset(buf, 0, sizeof(buf));
		ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT),
		                 i == 0 ? 0 : -EAGAIN);
		if (i == 0)
			ck_assert(buf[0] == 'k' && buf[4095] == 'k');
	}
	ck_assert_int_eq(sstats(s).version, 1);
	memset(buf, 'n', sizeof(buf));
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, buf, sizeof(buf)), 0);
	ck_assert_uint_gt(sstats(s).recoveries, 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert(buf[0] == 'n' && buf[4095] == 'n');
	mproc_close(s);
}
END_TEST


/* Writers killed holding a reservation (half filled, or in the commit
 * before the publish), more of them than buffers: the previous value
 * stays whole, their buffers are taken back, nobody waits. */
START_TEST(test_slot_killed_reservation_holders)
{
	mproc_conn *s = slot_new(4096);
	char buf[4096];
	mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
	void *b;

	memset(buf, 'k', sizeof(buf));
	ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, buf, sizeof(buf)), 0);
	for (int i = 0; i < 12; i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			void *zb;

			/* NOWAIT: a dead holder's claim must count as free. */
			if (mproc_send_reserve(s, 4096, &zb, MPROC_NOWAIT) != 0)
				_exit(2);
			memset(zb, 'z', 2048);
			if (i % 2) {
				memset(zb, 'z', 4096);
				mproc__crash_point = MPROC__CRASH_SEND_COMMIT;
				mproc__crash_countdown = 1;
				mproc_send_commit(s, MPROC_USER, 0, 4096);
			}
			kill(getpid(), SIGKILL);
			_exit(3);
		}
		reap_killed(pid);
		memset(buf, 0, sizeof(buf));
		ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT),
		                 i == 0 ? 0 : -EAGAIN);
		if (i == 0)
			ck_assert(buf[0] == 'k' && buf[4095] == 'k');
	}
	ck_assert_int_eq(sstats(s).version, 1);
	ck_assert_uint_gt(sstats(s).recoveries, 0);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(mproc_send_reserve(s, 4096, &b, MPROC_NOWAIT), 0);
		memset(b, 'a' + i, 4096);
		ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, 0, 4096), 0);
	}
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert(buf[0] == 'a' + 19 && buf[4095] == 'a' + 19);
	mproc_close(s);
}
END_TEST

/* Readers killed holding a borrow, each of another version (more of
 * them than buffers): their pins count as free, no writer waits. */
START_TEST(test_slot_killed_borrow_holders)
{
	mproc_conn *s = slot_new(4096);
	char buf[4096];
	mproc_msg w = { .request = MPROC_USER, .data = buf, .size = sizeof(buf) };
	mproc_msg m = { 0 };

	for (int i = 0; i < 12; i++) {
		pid_t pid;

		memset(buf, 'a' + i, sizeof(buf));
		ck_assert_int_eq(mproc_send_msg(s, &w, MPROC_NOWAIT), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			mproc_msg c = { 0 };

			if (mproc_recv_borrow(s, &c, NULL, NULL, T) != 0 ||
			    ((char *)c.data)[4095] != 'a' + i)
				_exit(2);
			kill(getpid(), SIGKILL);
			_exit(3);
		}
		reap_killed(pid);
	}
	for (int i = 0; i < 20; i++) {
		memset(buf, 'A' + i, sizeof(buf));
		ck_assert_int_eq(mproc_send_msg(s, &w, MPROC_NOWAIT), 0);
	}
	ck_assert_int_eq(mproc_recv_borrow(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
	ck_assert(((char *)m.data)[0] == 'A' + 19 &&
	          ((char *)m.data)[4095] == 'A' + 19);
	ck_assert_int_eq(mproc_recv_release(s, &m), 0);
	mproc_close(s);
}
END_TEST

/* Copying and zero-copy writers and readers on one slot: every value
 * read is whole, and per writer values only move forward. */
#define ZCW (256u << 10)

static int hold_some(const mproc_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	return 1;
}

START_TEST(test_slot_zc_mixed)
{
	mproc_conn *s = slot_new(ZCW);
	pid_t w[2], r[3];
	int i, ms = check_scale_ms(800);

	for (i = 0; i < 2; i++) {
		w[i] = fork();
		ck_assert_int_ge(w[i], 0);
		if (w[i] == 0) {
			uint64_t *p = malloc(ZCW);
			long long end = check_now_ms() + ms;
			void *b;

			child_assert(p != NULL);
			for (uint64_t seq = 1; check_now_ms() < end; seq++) {
				uint64_t tag = (uint64_t)(i + 1) << 48 | seq;

				if (i == 0) {
					zc_fill(p, ZCW / 8, tag);
					child_assert(mproc_send(s, MPROC_USER, 0, p,
					                        ZCW) == 0);
				} else {
					child_assert(mproc_send_reserve(s, ZCW, &b,
					                                T) == 0);
					zc_fill(b, ZCW / 8, tag);
					child_assert(mproc_send_commit(s, MPROC_USER,
					                               0, ZCW) == 0);
				}
			}
			free(p);
			mproc_close(s);
			_exit(0);
		}
	}
	for (i = 0; i < 3; i++) {
		r[i] = fork();
		ck_assert_int_ge(r[i], 0);
		if (r[i] == 0) {
			uint64_t *p = malloc(ZCW), last[3] = { 0 }, tag, t2;
			long long end = check_now_ms() + ms + 200;
			int n = 0, rc;

			child_assert(p != NULL);
			while (check_now_ms() < end) {
				mproc_msg m = { .data = p, .capacity = ZCW };
				const uint64_t *v = p;

				if (i == 0)
					rc = mproc_recv(s, &m, NULL, NULL, 100);
				else
					rc = mproc_recv_borrow(s, &m, i == 2 ? hold_some
					                                     : NULL,
					                       NULL, 100);
				if (rc == -ETIMEDOUT)
					continue;
				child_assert(rc == 0 && m.size == ZCW);
				if (i > 0)
					v = m.data;
				if (!zc_ok(v, ZCW / 8, &tag))
					child_fail("torn value");
				if (i == 2) {
					/* Held a while: still the same bytes. */
					usleep(2000);
					if (!zc_ok(v, ZCW / 8, &t2) || t2 != tag)
						child_fail("borrowed value changed");
				}
				if (i > 0)
					child_assert(mproc_recv_release(s, &m) == 0);
				child_assert((tag >> 48) >= 1 && (tag >> 48) <= 2);
				child_assert((tag & 0xffffffffffffull) >
				             last[tag >> 48]);
				last[tag >> 48] = tag & 0xffffffffffffull;
				n++;
			}
			child_assert(n > 3);
			free(p);
			mproc_close(s);
			_exit(0);
		}
	}
	for (i = 0; i < 2; i++)
		check_reap_ok(w[i], T + ms);
	for (i = 0; i < 3; i++)
		check_reap_ok(r[i], T + ms);
	mproc_close(s);
}
END_TEST

/* Readers killed while copying, each pinning another version (more of
 * them than buffers), block no writer. */
START_TEST(test_slot_killed_readers_block_nobody)
{
	mproc_conn *s = slot_new(4096);
	char buf[4096];
	mproc_msg w = { .request = MPROC_USER, .data = buf, .size = sizeof(buf) };

	for (int i = 0; i < 12; i++) {
		pid_t pid;

		memset(buf, 'a' + i, sizeof(buf));
		ck_assert_int_eq(mproc_send_msg(s, &w, MPROC_NOWAIT), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			char b[4096];
			mproc_msg m = { .data = b, .capacity = sizeof(b) };

			mproc__crash_point = MPROC__CRASH_RECV_COPY;
			mproc__crash_countdown = 1;
			mproc_recv(s, &m, NULL, NULL, T);
			_exit(3);
		}
		reap_killed(pid);
	}
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(mproc_send_msg(s, &w, MPROC_NOWAIT), 0);
	mproc_close(s);
}
END_TEST

/* Writers and readers killed at random instants, for bounded rounds:
 * afterwards every value read is whole and the slot still works. */
START_TEST(test_slot_random_kills)
{
	mproc_conn *s = slot_new(64 << 10);
	int rounds = check_slow() ? 3 : 12;

	srand(12345);
	for (int round = 0; round < rounds; round++) {
		pid_t kids[4];

		for (int k = 0; k < 4; k++) {
			kids[k] = fork();
			ck_assert_int_ge(kids[k], 0);
			if (kids[k] == 0) {
				static uint64_t p[(64 << 10) / 8];
				mproc_msg m = { .data = p, .capacity = sizeof(p) };

				for (uint64_t seq = 1;; seq++) {
					if (k < 2) {
						for (size_t i = 0; i < 8192; i++)
							p[i] = seq * 8192 + i;
						child_assert(mproc_send(s, MPROC_USER, 0, p,
						                        sizeof(p)) == 0);
					} else {
						int rc = mproc_recv(s, &m, NULL, NULL, 100);

						if (rc == -ETIMEDOUT)
							continue;
						child_assert(rc == 0);
						for (size_t i = 1; i < 8192; i++)
							child_assert(p[i] == p[0] + i);
					}
				}
			}
		}
		usleep((useconds_t)(1000 + rand() % 20000));
		for (int k = 0; k < 4; k++) {
			int st;

			kill(kids[k], SIGKILL);
			st = check_wait_child(kids[k], T);
			ck_assert_msg(WIFSIGNALED(st), "child status 0x%x", st);
		}
	}
	{
		static uint64_t p[(64 << 10) / 8];
		mproc_msg m = { .data = p, .capacity = sizeof(p) };

		for (size_t i = 0; i < 8192; i++)
			p[i] = 77 + i;
		ck_assert_int_eq(mproc_send(s, MPROC_USER, 0, p, sizeof(p)), 0);
		memset(p, 0, sizeof(p));
		ck_assert_int_eq(mproc_recv(s, &m, NULL, NULL, MPROC_NOWAIT), 0);
		for (size_t i = 0; i < 8192; i++)
			ck_assert(p[i] == 77 + i);
	}
	mproc_close(s);
}
END_TEST

/*
 * A writer taking back a dead writer's buffer used to store its pid (the
 * compare-and-swap) before its start, so for a moment the buffer said (a
 * live writer, the dead one's older start); another writer looking then
 * judged that pid reused, took the buffer too (a second recovery), and
 * two writers filled one buffer: a value could be published torn. Here
 * one buffer is a dead writer's (killed mid-copy), every other spare one
 * is claimed by this live process, and 16 fresh writers (their first send
 * reads their start from /proc, which widens the moment) race for it:
 * exactly one may take it back. About 1 round in 100 showed two (some 150
 * rounds a second).
 */
START_TEST(test_slot_live_claim_never_taken)
{
	long long end = check_now_ms() + check_scale_ms(1000);
	int rounds = 0;

	while (check_now_ms() < end) {
		mproc_conn *c = slot_new(64);
		struct mproc__slot_shared *s = slot_of(c)->s;
		uint64_t v = 0;
		mproc_msg m = { .request = MPROC_USER, .data = &v, .size = 8 };
		pid_t d, kids[16];
		int go[2];
		uint32_t cur;

		ck_assert_int_eq(mproc_send_msg(c, &m, MPROC_NOWAIT), 0);
		d = fork();
		ck_assert_int_ge(d, 0);
		if (d == 0) {
			mproc__crash_point = MPROC__CRASH_SEND_COPY;
			mproc__crash_countdown = 1;
			mproc_send_msg(c, &m, MPROC_NOWAIT);
			_exit(3);
		}
		reap_killed(d);
		cur = SLOT_CUR_INDEX(s->cur);
		for (uint32_t i = 0; i < s->nbuf; i++) {
			if (i == cur)
				continue;
			if (s->buf[i].writer == d) {
				/* It started long before them (starts are
				 * counted in 10 ms ticks). */
				s->buf[i].writer_start = 1;
				continue;
			}
			ck_assert_int_eq(s->buf[i].writer, 0);
			s->buf[i].writer_start = mproc__self_start_ns();
			s->buf[i].writer = getpid();
		}
		ck_assert_int_eq(pipe(go), 0);
		for (int k = 0; k < 16; k++) {
			kids[k] = fork();
			ck_assert_int_ge(kids[k], 0);
			if (kids[k] == 0) {
				char x;

				close(go[1]);
				child_assert(read(go[0], &x, 1) == 0);
				mproc_send_msg(c, &m, MPROC_NOWAIT);
				_exit(0);
			}
		}
		close(go[0]);
		usleep(1000);
		close(go[1]); /* all at once */
		for (int k = 0; k < 16; k++)
			check_reap_ok(kids[k], T);
		rounds++;
		ck_assert_msg(s->recoveries == 1,
		              "round %d: the dead writer's buffer taken back %d "
		              "times", rounds, (int)s->recoveries);
		mproc_close(c);
	}
}
END_TEST

/*
 * The same for the readers' entries: a reader taking back a dead reader's
 * entry was judged, for a moment, by the dead one's start, and a second
 * reader took the entry too; the two then shared one pin, and a writer
 * could reuse a buffer one of them was copying. One entry is a dead
 * reader's, every other one is this live process's, and 32 fresh readers
 * race: each must own the entry it reads with (its pid there after its
 * receive).
 */
START_TEST(test_slot_live_reader_never_taken)
{
	long long end = check_now_ms() + check_scale_ms(1000);
	int rounds = 0;

	while (check_now_ms() < end) {
		mproc_conn *c = slot_new(64);
		struct mproc__slot_shared *s = slot_of(c)->s;
		uint64_t v = 0;
		pid_t d, kids[32];
		int go[2], lost = 0;

		ck_assert_int_eq(send_u64(c, 1), 0);
		d = fork();
		ck_assert_int_ge(d, 0);
		if (d == 0) {
			child_assert(recv_u64(c, &v, T) == 0);
			_exit(0);
		}
		check_reap_ok(d, T);
		for (int i = 0; i < MPROC__SLOT_READERS; i++) {
			if (s->readers[i].pid == d) {
				s->readers[i].start_ns = 1; /* long before */
				continue;
			}
			ck_assert_int_eq(s->readers[i].pid, 0);
			s->readers[i].start_ns = mproc__self_start_ns();
			s->readers[i].pid = getpid();
		}
		ck_assert_int_eq(pipe(go), 0);
		for (int k = 0; k < 32; k++) {
			kids[k] = fork();
			ck_assert_int_ge(kids[k], 0);
			if (kids[k] == 0) {
				struct slot_conn *h = slot_of(c);
				char x;

				close(go[1]);
				child_assert(read(go[0], &x, 1) == 0);
				h->last = 0;
				if (recv_u64(c, &v, MPROC_NOWAIT) != 0)
					_exit(0); /* -EUSERS: no entry */
				_exit(s->readers[h->reader].pid == getpid() ? 0 : 9);
			}
		}
		close(go[0]);
		usleep(1000);
		close(go[1]);
		for (int k = 0; k < 32; k++) {
			int st = check_wait_child(kids[k], T);

			ck_assert(WIFEXITED(st));
			lost += WEXITSTATUS(st) == 9;
		}
		rounds++;
		ck_assert_msg(lost == 0, "round %d: %d readers lost their entry",
		              rounds, lost);
		mproc_close(c);
	}
}
END_TEST

/*
 * The descriptor's poller slots (shm/poll, every kind's) the same way: a
 * handle taking back a dead poller's slot must not be robbed by another
 * (which would leave it bound to a name no wake is sent to). One slot is
 * a dead process's, every other one this live process's, and 16 fresh
 * processes ask for a descriptor at once: each must own the slot its
 * descriptor is for.
 */
START_TEST(test_slot_live_poller_never_taken)
{
	long long end = check_now_ms() + check_scale_ms(1000);
	int rounds = 0;

	while (check_now_ms() < end) {
		mproc_conn *c = slot_new(64);
		struct slot_conn *h = slot_of(c);
		struct mproc__poll_table *t = &h->s->poll.table;
		pid_t d, kids[16];
		int go[2], lost = 0;

		d = fork();
		ck_assert_int_ge(d, 0);
		if (d == 0) {
			child_assert(mproc_fd(c) >= 0);
			_exit(0); /* its slot stays claimed */
		}
		check_reap_ok(d, T);
		for (int i = 0; i < MPROC__POLLERS; i++) {
			if (t->slot[i].pid == d) {
				t->slot[i].start_ns = 1; /* long before */
				continue;
			}
			ck_assert_int_eq(t->slot[i].pid, 0);
			t->slot[i].start_ns = mproc__self_start_ns();
			t->slot[i].pid = getpid();
		}
		ck_assert_int_eq(pipe(go), 0);
		for (int k = 0; k < 16; k++) {
			kids[k] = fork();
			ck_assert_int_ge(kids[k], 0);
			if (kids[k] == 0) {
				char x;

				close(go[1]);
				child_assert(read(go[0], &x, 1) == 0);
				if (mproc_fd(c) < 0)
					_exit(0); /* -EMFILE: none left */
				_exit(t->slot[h->poll.slot].pid == getpid() ? 0 : 9);
			}
		}
		close(go[0]);
		usleep(1000);
		close(go[1]);
		for (int k = 0; k < 16; k++) {
			int st = check_wait_child(kids[k], T);

			ck_assert(WIFEXITED(st));
			lost += WEXITSTATUS(st) == 9;
		}
		rounds++;
		ck_assert_msg(lost == 0, "round %d: %d pollers lost their slot",
		              rounds, lost);
		for (int i = 0; i < MPROC__POLLERS; i++)
			t->slot[i].pid = 0; /* nothing for close to find */
		mproc_close(c);
	}
}
END_TEST

/* Named: a program exec'd after the slot was made attaches by name. */
static char named_dir[64];

static void named_setup(void)
{
	strcpy(named_dir, "/tmp/mproc-slot-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(named_dir));
	setenv("MPROC_DIR", named_dir, 1);
}

static void named_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", named_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", named_dir);
	unsetenv("MPROC_DIR");
}

/* The exec'd helper: attach, take the value, answer value + 1. */
static int helper_main(const char *name)
{
	mproc_conn *s = NULL;
	uint64_t v = 0;

	if (mproc_slot_attach(&s, name) != 0)
		return 2;
	if (recv_u64(s, &v, T) != 0 || v != 41)
		return 3;
	if (send_u64(s, v + 1) != 0)
		return 4;
	return mproc_close(s) == 0 ? 0 : 5;
}

/* The exec'd zero-copy helper: borrow the value, answer value + 1 from
 * a reservation. */
static int zc_helper_main(const char *name)
{
	mproc_conn *s = NULL;
	mproc_msg m = { 0 };
	uint64_t v;
	void *b;

	if (mproc_slot_attach(&s, name) != 0)
		return 2;
	if (mproc_recv_borrow(s, &m, NULL, NULL, T) != 0 || m.size != 8)
		return 3;
	memcpy(&v, m.data, sizeof(v));
	if (v != 41 || mproc_recv_release(s, &m) != 0)
		return 4;
	if (mproc_send_reserve(s, sizeof(v), &b, T) != 0)
		return 5;
	v++;
	memcpy(b, &v, sizeof(v));
	if (mproc_send_commit(s, MPROC_USER, 0, sizeof(v)) != 0)
		return 6;
	return mproc_close(s) == 0 ? 0 : 7;
}

START_TEST(test_slot_named_exec_zero_copy)
{
	mproc_conn *s = NULL;
	uint64_t v;
	pid_t pid;

	ck_assert_int_eq(mproc_slot_create(&s, "/zc", NULL), 0);
	ck_assert_int_eq(send_u64(s, 41), 0);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--slot-zc-helper", "/zc", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(recv_u64(s, &v, T), 0);
	ck_assert_int_eq(v, 42);
	check_reap_ok(pid, T);
	mproc_close(s);
}
END_TEST

START_TEST(test_slot_named_exec)
{
	mproc_slot_opts o = { .max_payload = 128, .mode = 0640 };
	mproc_conn *s = NULL, *s2 = NULL, *q = NULL;
	char path[160];
	struct stat sb;
	uint64_t v;
	pid_t pid;

	ck_assert_int_eq(mproc_slot_create(&s, "/latest", &o), 0);
	ck_assert_int_eq(mproc_slot_create(&s2, "/latest", &o), -EEXIST);
	snprintf(path, sizeof(path), "%s/latest", named_dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0640);
	ck_assert_int_eq(send_u64(s, 41), 0);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--slot-helper", "/latest", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(recv_u64(s, &v, T), 0);
	ck_assert_int_eq(v, 42);
	check_reap_ok(pid, T);
	/* Other kinds are -EPROTO on attach, and a slot is not a queue. */
	ck_assert_int_eq(mproc_queue_attach(&q, "/latest"), -EPROTO);
	ck_assert_int_eq(mproc_queue_create(&q, "/jobs", NULL), 0);
	ck_assert_int_eq(mproc_slot_attach(&s2, "/jobs"), -EPROTO);
	ck_assert_int_eq(mproc_slot_attach(&s2, "/none"), -ENOENT);
	ck_assert_int_eq(mproc_slot_attach(&s2, "/latest"), 0);
	ck_assert_int_eq(recv_u64(s2, &v, MPROC_NOWAIT), 0); /* fresh: current */
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(mproc_unlink("/latest"), 0);
	ck_assert_int_eq(mproc_slot_attach(&s, "/latest") == -ENOENT, 1);
	ck_assert_int_eq(send_u64(s2, 43), 0); /* holders keep using it */
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 43);
	mproc_close(s);
	mproc_close(s2);
	mproc_close(q);
}
END_TEST

START_TEST(test_slot_unlink_on_last_close)
{
	mproc_slot_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE };
	mproc_conn *s = NULL, *s2 = NULL;

	ck_assert_int_eq(mproc_slot_create(&s, "/tmpslot", &o), 0);
	ck_assert_int_eq(mproc_slot_attach(&s2, "/tmpslot"), 0);
	mproc_close(s);
	ck_assert_int_eq(mproc_slot_attach(&s, "/tmpslot"), 0);
	mproc_close(s);
	mproc_close(s2);
	ck_assert_int_eq(mproc_slot_attach(&s, "/tmpslot"), -ENOENT);
}
END_TEST

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

START_TEST(test_slot_descriptor)
{
	mproc_conn *s = slot_new(0);
	uint64_t v;
	int fd = mproc_fd(s);
	pid_t pid;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mproc_fd(s), fd);
	ck_assert(readable(fd, 0)); /* from the start */
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert(!readable(fd, 20));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(20000);
		child_assert(send_u64(s, 5) == 0);
		mproc_close(s);
		_exit(0);
	}
	ck_assert(readable(fd, T));
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 5);
	ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert(!readable(fd, 20));
	check_reap_ok(pid, T);
	/* A commit wakes pollers as a send does; a cancel does not. */
	{
		void *b;

		ck_assert_int_eq(mproc_send_reserve(s, 8, &b, MPROC_NOWAIT), 0);
		ck_assert_int_eq(mproc_send_cancel(s), 0);
		ck_assert(!readable(fd, 20));
		ck_assert_int_eq(mproc_send_reserve(s, 8, &b, MPROC_NOWAIT), 0);
		v = 6;
		memcpy(b, &v, sizeof(v));
		ck_assert_int_eq(mproc_send_commit(s, MPROC_USER, 0, 8), 0);
		ck_assert(readable(fd, T));
		ck_assert_int_eq(recv_u64(s, &v, MPROC_NOWAIT), 0);
		ck_assert_int_eq(v, 6);
		ck_assert(!readable(fd, 20));
	}
	mproc_close(s);
}
END_TEST

/*
 * A predicate calling back into its slot gets -EDEADLK (receives, with or
 * without a wait, and sends); a call on another slot (a receive that
 * finds nothing new without a lock), or from another thread while the
 * predicate runs, does not; and after the predicate nothing says
 * -EDEADLK (the count of threads in predicates is back to 0).
 */
struct pred_reentry {
	mproc_conn *s, *other;
	int ok;
	int in, go; /* the other thread's turn, while the predicate runs */
};

static int pred_reenter(const mproc_msg *m, void *arg)
{
	struct pred_reentry *r = arg;
	uint64_t v;

	(void)m;
	r->ok = recv_u64(r->s, &v, MPROC_NOWAIT) == -EDEADLK &&
	        recv_u64(r->s, &v, 10) == -EDEADLK &&
	        send_u64(r->s, 9) == -EDEADLK &&
	        recv_u64(r->other, &v, MPROC_NOWAIT) == -EAGAIN;
	__atomic_store_n(&r->in, 1, __ATOMIC_SEQ_CST);
	for (long long end = check_now_ms() + T;
	     !__atomic_load_n(&r->go, __ATOMIC_SEQ_CST) && check_now_ms() < end;)
		usleep(100);
	return 1;
}

static void *pred_other_thread(void *arg)
{
	struct pred_reentry *r = arg;
	uint64_t v;
	intptr_t ok;

	for (long long end = check_now_ms() + T;
	     !__atomic_load_n(&r->in, __ATOMIC_SEQ_CST) && check_now_ms() < end;)
		usleep(100);
	/* Not in a predicate: a slot some thread's predicate is on answers. */
	ok = recv_u64(r->other, &v, MPROC_NOWAIT) == -EAGAIN &&
	     send_u64(r->other, 3) == 0 &&
	     recv_u64(r->other, &v, MPROC_NOWAIT) == 0 && v == 3;
	__atomic_store_n(&r->go, 1, __ATOMIC_SEQ_CST);
	return (void *)ok;
}

START_TEST(test_slot_predicate_reentry)
{
	struct pred_reentry r = { .s = slot_new(0), .other = slot_new(0) };
	uint64_t v = 0;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };
	pthread_t t;
	void *tok;

	ck_assert_int_eq(send_u64(r.other, 1), 0);
	ck_assert_int_eq(recv_u64(r.other, &v, MPROC_NOWAIT), 0); /* seen */
	ck_assert_int_eq(send_u64(r.s, 1), 0);
	ck_assert_int_eq(recv_u64(r.s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(send_u64(r.s, 2), 0);
	/* One thread: the predicate alone. */
	r.go = 1;
	ck_assert_int_eq(mproc_recv(r.s, &m, pred_reenter, &r, T), 0);
	ck_assert_int_eq(v, 2);
	ck_assert(r.ok);
	ck_assert_int_eq(recv_u64(r.s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(send_u64(r.s, 4), 0);
	/* Two threads: the other one calls while the predicate runs. */
	r.ok = r.in = r.go = 0;
	ck_assert_int_eq(pthread_create(&t, NULL, pred_other_thread, &r), 0);
	ck_assert_int_eq(mproc_recv(r.s, &m, pred_reenter, &r, T), 0);
	ck_assert_int_eq(pthread_join(t, &tok), 0);
	ck_assert_int_eq(v, 4);
	ck_assert(r.ok);
	ck_assert(tok != NULL);
	ck_assert_int_eq(recv_u64(r.s, &v, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(send_u64(r.s, 5), 0);
	ck_assert_int_eq(recv_u64(r.s, &v, MPROC_NOWAIT), 0);
	ck_assert_int_eq(v, 5);
	mproc_close(r.s);
	mproc_close(r.other);
}
END_TEST

/*
 * Threads of one process sharing a handle receive in turn: a value goes
 * to one of them only (the handle returns it once), each one's values
 * move forward and are whole, and the last value is taken. Polls
 * (MPROC_NOWAIT) and waits mixed, so the look without a lock runs beside
 * receives under the mutex. A child process writes.
 */
#define SHARE_N 20000u
#define SHARE_THREADS 3

struct share {
	mproc_conn *s;
	uint8_t got[SHARE_N + 1];
	int idx;
	int fail;
	int done;
};

static void *share_reader(void *arg)
{
	struct share *sh = arg;
	int me = __atomic_fetch_add(&sh->idx, 1, __ATOMIC_SEQ_CST);
	uint64_t p[8], last = 0;
	mproc_msg m = { .data = p, .capacity = sizeof(p) };
	long long end = check_now_ms() + 4 * T;
	unsigned k = 0;
	int rc;

	while (!__atomic_load_n(&sh->done, __ATOMIC_SEQ_CST) &&
	       check_now_ms() < end) {
		rc = mproc_recv(sh->s, &m, NULL, NULL,
		                (me + k++) % 4 == 0 ? 1 : MPROC_NOWAIT);
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			continue;
		if (rc != 0 || m.size != sizeof(p) || p[0] == 0 ||
		    p[0] > SHARE_N || p[0] <= last)
			goto bad;
		for (int i = 1; i < 8; i++)
			if (p[i] != (p[0] ^ (uint64_t)i * 0x9e3779b97f4a7c15ull))
				goto bad; /* torn */
		if (__atomic_add_fetch(&sh->got[p[0]], 1, __ATOMIC_SEQ_CST) != 1)
			goto bad; /* returned twice by the handle */
		last = p[0];
		if (last == SHARE_N)
			__atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
bad:
	__atomic_store_n(&sh->fail, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

START_TEST(test_slot_threads_share_handle)
{
	static struct share sh;
	pthread_t t[SHARE_THREADS];
	unsigned taken = 0;
	pid_t w;

	memset(&sh, 0, sizeof(sh));
	sh.s = slot_new(64);
	w = fork();
	ck_assert_int_ge(w, 0);
	if (w == 0) {
		uint64_t p[8];

		for (uint64_t v = 1; v <= SHARE_N; v++) {
			p[0] = v;
			for (int i = 1; i < 8; i++)
				p[i] = v ^ (uint64_t)i * 0x9e3779b97f4a7c15ull;
			child_assert(mproc_send(sh.s, MPROC_USER, 0, p,
			                        sizeof(p)) == 0);
			if (v % 64 == 0)
				sched_yield();
		}
		mproc_close(sh.s);
		_exit(0);
	}
	for (int i = 0; i < SHARE_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, share_reader, &sh),
		                 0);
	for (int i = 0; i < SHARE_THREADS; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	check_reap_ok(w, T);
	ck_assert_msg(!sh.fail, "a value torn, out of order or taken twice");
	ck_assert_int_eq(sh.got[SHARE_N], 1);
	for (unsigned v = 1; v <= SHARE_N; v++)
		taken += sh.got[v];
	/* Shared, not only the last value: unless the threads started after
	 * the writer was done, as under valgrind, which runs them slowly. */
	if (!check_slow())
		ck_assert_uint_gt(taken, 1);
	ck_assert_uint_ge(taken, 1);
	ck_assert_int_eq(sstats(sh.s).seen, SHARE_N);
	ck_assert_int_eq(recv_u64(sh.s, &(uint64_t){ 0 }, MPROC_NOWAIT),
	                 -EAGAIN);
	mproc_close(sh.s);
}
END_TEST

/*
 * Where the handle's mutex is taken (white box: the test holds it). In a
 * process with more than one thread a receive of a new value waits for
 * the mutex; a receive that finds nothing new does not take it.
 */
struct held {
	mproc_conn *s;
	int rc, done;
	uint64_t v;
};

static void *held_recv(void *arg)
{
	struct held *x = arg;

	x->rc = recv_u64(x->s, &x->v, MPROC_NOWAIT);
	__atomic_store_n(&x->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int held_wait(struct held *x, int ms)
{
	for (long long end = check_now_ms() + ms; check_now_ms() < end;) {
		if (__atomic_load_n(&x->done, __ATOMIC_SEQ_CST))
			return 1;
		usleep(1000);
	}
	return __atomic_load_n(&x->done, __ATOMIC_SEQ_CST);
}

START_TEST(test_slot_threads_take_mutex)
{
	struct held x = { .s = slot_new(0) };
	pthread_mutex_t *mu = &slot_of(x.s)->mu;
	pthread_t t;

	ck_assert_int_eq(send_u64(x.s, 1), 0);
	ck_assert_int_eq(pthread_mutex_lock(mu), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, held_recv, &x), 0);
	ck_assert(!held_wait(&x, 50)); /* a new value: it waits for mu */
	ck_assert_int_eq(pthread_mutex_unlock(mu), 0);
	ck_assert(held_wait(&x, T));
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(x.rc, 0);
	ck_assert_int_eq(x.v, 1);
	x.done = 0;
	ck_assert_int_eq(pthread_mutex_lock(mu), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, held_recv, &x), 0);
	ck_assert(held_wait(&x, T)); /* nothing new: no lock */
	ck_assert_int_eq(pthread_mutex_unlock(mu), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(x.rc, -EAGAIN);
	mproc_close(x.s);
}
END_TEST

static Suite *slot_suite(void)
{
	Suite *s = suite_create("slot");
	TCase *tc = tcase_create("slot");
	TCase *tn = tcase_create("named");

	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_slot_latest_coalesces);
	tcase_add_test(tc, test_slot_args);
	tcase_add_test(tc, test_slot_msgsize_keeps_value);
	tcase_add_test(tc, test_slot_rejected_counts_as_seen);
	tcase_add_test(tc, test_slot_fork_starts_where_parent_stood);
	tcase_add_test(tc, test_slot_event_every_listener_once);
	tcase_add_test(tc, test_slot_large_values_never_torn);
	tcase_add_test(tc, test_slot_pinned_value_not_overwritten);
	tcase_add_test(tc, test_slot_zc_rules);
	tcase_add_test(tc, test_slot_borrow_held_while_writing);
	tcase_add_test(tc, test_slot_zc_mixed);
	tcase_add_test(tc, test_slot_killed_writers);
	tcase_add_test(tc, test_slot_killed_reservation_holders);
	tcase_add_test(tc, test_slot_killed_borrow_holders);
	tcase_add_test(tc, test_slot_killed_readers_block_nobody);
	tcase_add_test(tc, test_slot_random_kills);
	tcase_add_test(tc, test_slot_descriptor);
	tcase_add_test(tc, test_slot_live_claim_never_taken);
	tcase_add_test(tc, test_slot_live_reader_never_taken);
	tcase_add_test(tc, test_slot_live_poller_never_taken);
	tcase_add_test(tc, test_slot_predicate_reentry);
	tcase_add_test(tc, test_slot_threads_share_handle);
	tcase_add_test(tc, test_slot_threads_take_mutex);
	suite_add_tcase(s, tc);
	tcase_set_timeout(tn, CHECK_TIMEOUT);
	tcase_add_checked_fixture(tn, named_setup, named_teardown);
	tcase_add_test(tn, test_slot_named_exec);
	tcase_add_test(tn, test_slot_unlink_on_last_close);
	tcase_add_test(tn, test_slot_named_exec_zero_copy);
	suite_add_tcase(s, tn);
	return s;
}

int main(int argc, char **argv)
{
	static char exe[4096];
	ssize_t n;

	if (argc == 3 && strcmp(argv[1], "--slot-helper") == 0)
		return helper_main(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--slot-zc-helper") == 0)
		return zc_helper_main(argv[2]);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 99;
	exe[n] = '\0';
	self_exe = exe;
	return check_run_suite(slot_suite());
}
