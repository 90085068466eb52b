/*
 * check_bus.c - the bus: every subscriber sees every message once, in one
 * order for all writers; screening; late subscribers; -ENOTCONN and
 * -EUSERS; backpressure from a slow reader; dead readers never stall
 * writers; MPROC_BUS_OVERWRITE's -EOVERFLOW; writers and readers killed at
 * random; a named bus attached from an exec'd program; the descriptor.
 */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "check_common.h"
#include "internal.h"

#define T 5000 /* ms: every blocking call in these tests */

static const char *self_exe;

static mproc_conn *bus_new(size_t capacity, uint32_t max_payload,
                           uint32_t max_readers, uint32_t flags)
{
	mproc_bus_opts o = { .capacity = capacity, .max_payload = max_payload,
		             .max_readers = max_readers, .flags = flags };
	mproc_conn *b = NULL;
	int rc = mproc_bus_open(&b, &o);

	ck_assert_msg(rc == 0, "mproc_bus_open: %s", mproc_strerror(rc));
	return b;
}

static mproc_bus_counts bstats(mproc_conn *b)
{
	mproc_bus_counts st;

	ck_assert_int_eq(mproc_bus_stats(b, &st), 0);
	return st;
}

struct pay {
	uint32_t writer;
	uint32_t seq;
	uint64_t check;
};

static uint64_t pay_check(uint32_t w, uint32_t seq)
{
	return ((uint64_t)w << 32 | seq) * 0x9e3779b97f4a7c15ull;
}

static int send_pay(mproc_conn *b, uint32_t w, uint32_t seq, int timeout)
{
	struct pay p = { w, seq, pay_check(w, seq) };
	mproc_msg m = { .request = MPROC_USER, .data = &p, .size = sizeof(p) };

	return mproc_send_msg(b, &m, timeout);
}

static int recv_pay(mproc_conn *b, struct pay *p, int timeout)
{
	mproc_msg m = { .data = p, .capacity = sizeof(*p) };
	int rc = mproc_recv(b, &m, NULL, NULL, timeout);

	if (rc == 0 && (m.size != sizeof(*p) ||
	                p->check != pay_check(p->writer, p->seq)))
		return -EBADMSG; /* torn */
	return rc;
}

START_TEST(test_bus_basic)
{
	mproc_conn *b = bus_new(0, 0, 0, 0);
	struct pay p;

	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -ENOTCONN);
	ck_assert_int_eq(mproc_bus_unsubscribe(b), -ENOTCONN);
	ck_assert_int_eq(send_pay(b, 0, 0, MPROC_NOWAIT), 0); /* nobody: freed */
	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	ck_assert_int_eq(bstats(b).readers, 1);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(recv_pay(b, &p, 20), -ETIMEDOUT);
	for (uint32_t i = 1; i <= 3; i++)
		ck_assert_int_eq(send_pay(b, 0, i, MPROC_NOWAIT), 0);
	ck_assert_int_eq(bstats(b).lag, 3);
	for (uint32_t i = 1; i <= 3; i++) {
		ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), 0);
		ck_assert_int_eq(p.seq, i);
	}
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(bstats(b).sent, 4);
	ck_assert_int_eq(bstats(b).lag, 0);
	ck_assert_int_eq(bstats(b).received, 3);
	ck_assert_int_eq(bstats(b).subscribed, 1);
	ck_assert_int_eq(mproc_bus_unsubscribe(b), 0);
	ck_assert_int_eq(bstats(b).subscribed, 0);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -ENOTCONN);
	mproc_close(b);
}
END_TEST

START_TEST(test_bus_args)
{
	mproc_bus_opts o = { .flags = 1u << 5 };
	mproc_conn *b = NULL, *q = queue_new(0, 0, 0, 0);
	mproc_bus_counts st;
	char big[200] = { 0 };

	ck_assert_int_eq(mproc_bus_open(NULL, NULL), -EINVAL);
	ck_assert_int_eq(mproc_bus_open(&b, &o), -EINVAL);
	o.flags = MPROC_UNLINK_ON_LAST_CLOSE;
	ck_assert_int_eq(mproc_bus_open(&b, &o), -EINVAL);
	o.flags = 0;
	o.capacity = 64;
	o.max_payload = 1024; /* one message does not fit */
	ck_assert_int_eq(mproc_bus_open(&b, &o), -EINVAL);
	o.capacity = 0;
	o.max_readers = 5000;
	ck_assert_int_eq(mproc_bus_open(&b, &o), -EINVAL);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(mproc_bus_subscribe(q), -EINVAL);
	ck_assert_int_eq(mproc_bus_subscribe(NULL), -EINVAL);
	ck_assert_int_eq(mproc_bus_stats(q, &st), -EINVAL);
	ck_assert_int_eq(mproc_bus_wait_readers(q, 1, 0), -EINVAL);
	b = bus_new(0, 128, 0, 0);
	ck_assert_int_eq(mproc_bus_wait_readers(b, 1, -2), -EINVAL);
	ck_assert_int_eq(mproc_bus_stats(b, NULL), -EINVAL);
	ck_assert_int_eq(mproc_send(b, MPROC_USER, 0, big, 129), -EMSGSIZE);
	ck_assert_int_eq(mproc_send(b, 5, 0, big, 1), -EINVAL);
	ck_assert_int_eq(bstats(b).sent, 0);
	ck_assert_int_eq(mproc_queue_empty(b), -EINVAL);
	mproc_close(b);
	ck_assert_int_eq(mproc_bus_subscribe(b), -EINVAL); /* closed */
	mproc_close(q);
}
END_TEST

/* Several writers, several readers: each reader gets every message once,
 * and all readers get them in the same order. A small ring makes the
 * writers wait for the readers and wrap. */
#define NW 3
#define NR 3
#define PER 300

START_TEST(test_bus_exactly_once_one_order)
{
	mproc_conn *b = bus_new(2048, 64, 0, 0);
	uint32_t *log = mmap(NULL, NR * NW * PER * sizeof(uint32_t),
	                     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	                     -1, 0);
	pid_t w[NW], r[NR];
	int i;

	ck_assert(log != MAP_FAILED);
	for (i = 0; i < NR; i++) {
		r[i] = fork();
		ck_assert_int_ge(r[i], 0);
		if (r[i] == 0) {
			uint32_t next[NW] = { 0 };
			struct pay p;

			child_assert(mproc_bus_subscribe(b) == 0);
			for (int k = 0; k < NW * PER; k++) {
				int rc = recv_pay(b, &p, T);

				if (rc != 0)
					child_fail("recv %d: %s", k, mproc_strerror(rc));
				child_assert(p.writer < NW && p.seq == next[p.writer]);
				next[p.writer]++;
				log[i * NW * PER + k] = p.writer << 16 | p.seq;
			}
			child_assert(recv_pay(b, &p, 50) == -ETIMEDOUT);
			mproc_close(b);
			_exit(0);
		}
	}
	ck_assert_int_eq(mproc_bus_wait_readers(b, NR, T), 0);
	for (i = 0; i < NW; i++) {
		w[i] = fork();
		ck_assert_int_ge(w[i], 0);
		if (w[i] == 0) {
			for (uint32_t k = 0; k < PER; k++)
				child_assert(send_pay(b, (uint32_t)i, k, T) == 0);
			mproc_close(b);
			_exit(0);
		}
	}
	for (i = 0; i < NW; i++)
		check_reap_ok(w[i], 2 * T);
	for (i = 0; i < NR; i++)
		check_reap_ok(r[i], 2 * T);
	for (i = 1; i < NR; i++)
		ck_assert(memcmp(log, log + i * NW * PER,
		                 NW * PER * sizeof(uint32_t)) == 0);
	ck_assert_int_eq(bstats(b).sent, NW * PER);
	munmap(log, NR * NW * PER * sizeof(uint32_t));
	mproc_close(b);
}
END_TEST

static int not_from(const mproc_msg *m, void *arg)
{
	return m->sender != *(pid_t *)arg;
}

/* Screening: a predicate skips messages for its reader only. */
START_TEST(test_bus_screening)
{
	mproc_conn *b = bus_new(0, 0, 0, 0);
	pid_t me = getpid(), pid;
	struct pay p;
	mproc_msg m = { .data = &p, .capacity = sizeof(p) };

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct pay q;

		child_assert(mproc_bus_subscribe(b) == 0);
		child_assert(send_pay(b, 1, 1, T) == 0); /* the child's */
		/* The child sees the parent's two, and its own. */
		child_assert(recv_pay(b, &q, T) == 0 && q.writer == 1);
		child_assert(recv_pay(b, &q, T) == 0 && q.writer == 0 && q.seq == 1);
		child_assert(recv_pay(b, &q, T) == 0 && q.writer == 0 && q.seq == 2);
		mproc_close(b);
		_exit(0);
	}
	/* The child's first (so its order is known), then the parent's. */
	ck_assert_int_eq(mproc_recv(b, &m, not_from, &me, T), 0);
	ck_assert_int_eq(m.sender, pid);
	ck_assert_int_eq(send_pay(b, 0, 1, T), 0);
	ck_assert_int_eq(send_pay(b, 0, 2, T), 0);
	/* The parent screens out its own: nothing else is left. */
	ck_assert_int_eq(mproc_recv(b, &m, not_from, &me, 50), -ETIMEDOUT);
	ck_assert_int_eq(bstats(b).lag, 0);
	check_reap_ok(pid, T);
	mproc_close(b);
}
END_TEST

START_TEST(test_bus_late_subscriber_and_enotconn)
{
	mproc_conn *b = bus_new(0, 0, 0, 0);
	struct pay p;
	pid_t pid;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	ck_assert_int_eq(send_pay(b, 0, 1, T), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct pay q;

		/* A child is not its parent's subscriber. */
		child_assert(recv_pay(b, &q, MPROC_NOWAIT) == -ENOTCONN);
		child_assert(mproc_bus_subscribe(b) == 0);
		/* Late: starts at the next message. */
		child_assert(recv_pay(b, &q, MPROC_NOWAIT) == -EAGAIN);
		child_assert(send_pay(b, 1, 2, T) == 0);
		child_assert(recv_pay(b, &q, T) == 0 && q.seq == 2);
		mproc_close(b);
		_exit(0);
	}
	check_reap_ok(pid, T);
	ck_assert_int_eq(recv_pay(b, &p, T), 0);
	ck_assert_int_eq(p.seq, 1);
	ck_assert_int_eq(recv_pay(b, &p, T), 0);
	ck_assert_int_eq(p.seq, 2);
	mproc_close(b);
}
END_TEST

START_TEST(test_bus_eusers)
{
	mproc_conn *b = bus_new(0, 0, 2, 0);
	int go[2], i;
	pid_t kids[2];
	char c;

	ck_assert_int_eq(pipe(go), 0);
	for (i = 0; i < 2; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			close(go[1]);
			child_assert(mproc_bus_subscribe(b) == 0);
			child_assert(read(go[0], &c, 1) == 0);
			_exit(0);
		}
	}
	close(go[0]);
	ck_assert_int_eq(mproc_bus_wait_readers(b, 2, T), 0);
	ck_assert_int_eq(mproc_bus_subscribe(b), -EUSERS);
	ck_assert_int_eq(mproc_bus_wait_readers(b, 3, 20), -ETIMEDOUT);
	close(go[1]);
	for (i = 0; i < 2; i++)
		check_reap_ok(kids[i], T);
	/* Their entries are taken back: room again. */
	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	ck_assert_int_eq(bstats(b).readers, 1);
	mproc_close(b);
}
END_TEST

/* A slow reader holds the writers back, up to their timeout. */
START_TEST(test_bus_backpressure)
{
	mproc_conn *b = bus_new(1024, 64, 0, 0);
	int n = 0, rc;
	long long t0;
	struct pay p;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	while ((rc = send_pay(b, 0, (uint32_t)n, MPROC_NOWAIT)) == 0)
		n++;
	ck_assert_int_eq(rc, -EAGAIN);
	ck_assert_int_eq(n, 1024 / 72); /* records of 56 + 16 bytes */
	t0 = check_now_ms();
	ck_assert_int_eq(send_pay(b, 0, 99, 50), -ETIMEDOUT);
	ck_assert_int_ge(check_now_ms() - t0, 45);
	ck_assert_int_eq(bstats(b).sent, n);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), 0);
	ck_assert_int_eq(p.seq, 0);
	ck_assert_int_eq(send_pay(b, 0, (uint32_t)n, MPROC_NOWAIT), 0);
	ck_assert_int_eq(send_pay(b, 0, 99, MPROC_NOWAIT), -EAGAIN);
	mproc_close(b);
}
END_TEST

/* A reader killed without reading never stalls the writers. */
START_TEST(test_bus_dead_reader_never_stalls)
{
	mproc_conn *b = bus_new(1024, 64, 0, 0);
	struct pay p;
	pid_t pid;
	int st;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		child_assert(mproc_bus_subscribe(b) == 0);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(mproc_bus_wait_readers(b, 2, T), 0);
	kill(pid, SIGKILL);
	st = check_wait_child(pid, T);
	ck_assert(WIFSIGNALED(st));
	/* Many ring's worth, the parent reading as it goes. */
	for (uint32_t i = 0; i < 200; i++) {
		ck_assert_int_eq(send_pay(b, 0, i, 100), 0);
		ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), 0);
		ck_assert_int_eq(p.seq, i);
	}
	ck_assert_int_eq(bstats(b).reclaimed, 1);
	ck_assert_int_eq(bstats(b).readers, 1);
	mproc_close(b);
}
END_TEST

/* OVERWRITE: writers never wait; an overrun reader gets -EOVERFLOW once,
 * then whole messages in order from the oldest still there. */
START_TEST(test_bus_overwrite_eoverflow_once)
{
	mproc_conn *b = bus_new(1024, 64, 0, MPROC_BUS_OVERWRITE);
	mproc_bus_counts st;
	uint32_t last = 0;
	struct pay p;
	int got = 0, rc;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	for (uint32_t i = 0; i < 100; i++)
		ck_assert_int_eq(send_pay(b, 0, i, MPROC_NOWAIT), 0);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -EOVERFLOW);
	while ((rc = recv_pay(b, &p, MPROC_NOWAIT)) == 0) {
		if (got > 0)
			ck_assert_int_eq(p.seq, last + 1);
		last = p.seq;
		got++;
	}
	ck_assert_int_eq(rc, -EAGAIN);
	ck_assert_int_eq(last, 99);
	st = bstats(b);
	ck_assert_int_eq(st.received, got);
	ck_assert_int_eq(st.lost + st.received, 100);
	ck_assert_int_eq(st.lost, 100 - got);
	mproc_close(b);
}
END_TEST

/* OVERWRITE with a reader copying while the writer laps it: every
 * message returned is whole and in order. */
START_TEST(test_bus_overwrite_concurrent_whole)
{
	mproc_conn *b = bus_new(4096, 64, 0, MPROC_BUS_OVERWRITE);
	pid_t pid;
	int overflows = 0, got = 0, rc;
	uint32_t last = 0;
	struct pay p;
	long long end;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (uint32_t i = 1; i <= 200000; i++)
			child_assert(send_pay(b, 0, i, MPROC_NOWAIT) == 0);
		_exit(0);
	}
	end = check_now_ms() + check_scale_ms(T);
	while (last < 200000 && check_now_ms() < end) {
		rc = recv_pay(b, &p, 100);
		if (rc == -EOVERFLOW) {
			overflows++;
			continue;
		}
		/* The writer not started yet, or descheduled (a loaded
		 * machine, a sanitizer): the loop's bound is the limit. */
		if (rc == -ETIMEDOUT)
			continue;
		ck_assert_msg(rc == 0, "recv: %s", mproc_strerror(rc));
		ck_assert_uint_gt(p.seq, last);
		last = p.seq;
		got++;
	}
	check_reap_ok(pid, check_scale_ms(T));
	ck_assert_int_eq(last, 200000);
	ck_assert_int_eq(bstats(b).lost + (uint64_t)got, 200000);
	mproc_close(b);
	(void)overflows;
}
END_TEST

/* A writer killed mid-commit: the next send repairs, nothing is torn. */
START_TEST(test_bus_killed_writer_repaired)
{
	int points[] = { MPROC__CRASH_SEND_COPY, MPROC__CRASH_SEND_COMMIT,
		         MPROC__CRASH_SEND_APPLIED, MPROC__CRASH_LOCKED };
	mproc_conn *b = bus_new(1024, 64, 0, 0);
	uint32_t seq = 0;
	struct pay p;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	for (unsigned i = 0; i < 4 * 3; i++) {
		pid_t pid = fork();
		int st;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			mproc__crash_point = points[i % 4];
			mproc__crash_countdown = 1 + (int)(i / 4);
			for (uint32_t k = 0; k < 8; k++)
				send_pay(b, 1, 1000 + k, 100);
			_exit(3);
		}
		st = check_wait_child(pid, T);
		ck_assert_msg(WIFSIGNALED(st), "status 0x%x", st);
		ck_assert_int_eq(send_pay(b, 0, seq, T), 0);
		/* Everything whole, the parent's last one at the end. */
		for (;;) {
			ck_assert_int_eq(recv_pay(b, &p, T), 0);
			if (p.writer == 0)
				break;
		}
		ck_assert_int_eq(p.seq, seq);
		seq++;
	}
	ck_assert_uint_gt(bstats(b).recoveries, 0);
	mproc_close(b);
}
END_TEST

/* Writers and readers killed at random instants, bounded rounds. */
START_TEST(test_bus_random_kills)
{
	mproc_conn *b = bus_new(4096, 64, 0, 0);
	int rounds = check_slow() ? 3 : 10;
	struct pay p;
	int rc;

	srand(4242);
	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	for (int round = 0; round < rounds; round++) {
		pid_t kids[4];

		for (int k = 0; k < 4; k++) {
			kids[k] = fork();
			ck_assert_int_ge(kids[k], 0);
			if (kids[k] == 0) {
				struct pay q;

				if (k >= 2)
					child_assert(mproc_bus_subscribe(b) == 0);
				for (uint32_t i = 0;; i++) {
					if (k < 2) {
						rc = send_pay(b, (uint32_t)(10 + k), i, 100);
						child_assert(rc == 0 || rc == -ETIMEDOUT);
					} else {
						rc = recv_pay(b, &q, 100);
						child_assert(rc == 0 || rc == -ETIMEDOUT);
					}
				}
			}
		}
		usleep((useconds_t)(1000 + rand() % 10000));
		/* The parent reads too, so writers go on. */
		while ((rc = recv_pay(b, &p, MPROC_NOWAIT)) == 0)
			;
		ck_assert_int_eq(rc, -EAGAIN);
		for (int k = 0; k < 4; k++) {
			int st;

			kill(kids[k], SIGKILL);
			st = check_wait_child(kids[k], T);
			ck_assert_msg(WIFSIGNALED(st), "child status 0x%x", st);
		}
		while ((rc = recv_pay(b, &p, MPROC_NOWAIT)) == 0)
			;
		ck_assert_int_eq(rc, -EAGAIN);
	}
	for (uint32_t i = 0; i < 100; i++) {
		ck_assert_int_eq(send_pay(b, 0, i, T), 0);
		ck_assert_int_eq(recv_pay(b, &p, T), 0);
		ck_assert_int_eq(p.seq, i);
	}
	mproc_close(b);
}
END_TEST

static char named_dir[64];

static void named_setup(void)
{
	strcpy(named_dir, "/tmp/mproc-bus-XXXXXX");
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

/* The exec'd helper: attach, subscribe, say ready, wait for ping. */
static int helper_main(const char *name)
{
	mproc_conn *b = NULL;
	struct pay p;

	if (mproc_bus_attach(&b, name) != 0)
		return 2;
	if (mproc_bus_subscribe(b) != 0 || send_pay(b, 7, 1, T) != 0)
		return 3;
	for (;;) {
		if (recv_pay(b, &p, T) != 0)
			return 4;
		if (p.writer == 0)
			break; /* the parent's ping; its own "ready" first */
	}
	return mproc_close(b) == 0 ? 0 : 5;
}

START_TEST(test_bus_named_exec)
{
	mproc_bus_opts o = { .capacity = 4096, .max_payload = 64 };
	mproc_conn *b = NULL, *b2 = NULL;
	struct pay p;
	pid_t pid;

	ck_assert_int_eq(mproc_bus_create(&b, "/chat", &o), 0);
	ck_assert_int_eq(mproc_bus_create(&b2, "/chat", &o), -EEXIST);
	ck_assert_int_eq(mproc_slot_attach(&b2, "/chat"), -EPROTO);
	ck_assert_int_eq(mproc_bus_attach(&b2, "/nothing"), -ENOENT);
	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--bus-helper", "/chat", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(recv_pay(b, &p, T), 0);
	ck_assert_int_eq(p.writer, 7);
	ck_assert_int_eq(send_pay(b, 0, 1, T), 0);
	check_reap_ok(pid, T);
	ck_assert_int_eq(recv_pay(b, &p, T), 0); /* our own ping */
	ck_assert_int_eq(p.writer, 0);
	ck_assert_int_eq(bstats(b).readers, 1);
	ck_assert_int_eq(mproc_unlink("/chat"), 0);
	mproc_close(b);
}
END_TEST

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

START_TEST(test_bus_descriptor)
{
	mproc_conn *b = bus_new(0, 0, 0, 0);
	struct pay p;
	int fd;
	pid_t pid;

	ck_assert_int_eq(mproc_bus_subscribe(b), 0);
	fd = mproc_fd(b);
	ck_assert_int_ge(fd, 0);
	ck_assert(readable(fd, 0));
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -EAGAIN);
	ck_assert(!readable(fd, 20));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		usleep(20000);
		child_assert(send_pay(b, 1, 1, T) == 0);
		child_assert(send_pay(b, 1, 2, T) == 0);
		mproc_close(b);
		_exit(0);
	}
	ck_assert(readable(fd, T));
	check_reap_ok(pid, T);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), 0);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), 0);
	ck_assert_int_eq(p.seq, 2);
	ck_assert_int_eq(recv_pay(b, &p, MPROC_NOWAIT), -EAGAIN);
	ck_assert(!readable(fd, 20));
	mproc_close(b);
}
END_TEST

static Suite *bus_suite(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("bus");
	TCase *tn = tcase_create("named");

	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_bus_basic);
	tcase_add_test(tc, test_bus_args);
	tcase_add_test(tc, test_bus_exactly_once_one_order);
	tcase_add_test(tc, test_bus_screening);
	tcase_add_test(tc, test_bus_late_subscriber_and_enotconn);
	tcase_add_test(tc, test_bus_eusers);
	tcase_add_test(tc, test_bus_backpressure);
	tcase_add_test(tc, test_bus_dead_reader_never_stalls);
	tcase_add_test(tc, test_bus_overwrite_eoverflow_once);
	tcase_add_test(tc, test_bus_overwrite_concurrent_whole);
	tcase_add_test(tc, test_bus_killed_writer_repaired);
	tcase_add_test(tc, test_bus_random_kills);
	tcase_add_test(tc, test_bus_descriptor);
	suite_add_tcase(s, tc);
	tcase_set_timeout(tn, CHECK_TIMEOUT);
	tcase_add_checked_fixture(tn, named_setup, named_teardown);
	tcase_add_test(tn, test_bus_named_exec);
	suite_add_tcase(s, tn);
	return s;
}

int main(int argc, char **argv)
{
	static char exe[4096];
	ssize_t n;

	if (argc == 3 && strcmp(argv[1], "--bus-helper") == 0)
		return helper_main(argv[2]);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 99;
	exe[n] = '\0';
	self_exe = exe;
	return check_run_suite(bus_suite());
}
