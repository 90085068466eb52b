/*
 * check_scans.c - the queue's calls that read the whole queue: stats,
 * and the orphan scans of stats, purge and join. None holds a lock while
 * it reads: stats takes a lock-free snapshot of both sides' words, and
 * the scans walk the records without the receive lock, looking each
 * recipient process up once.
 *
 * open() is interposed here (the library is linked in statically) to
 * count the /proc/<pid>/stat reads of the pids a test watches, and to hold
 * a scan inside one of them while the test checks that others get the
 * receive lock meanwhile.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "check_common.h"
#include "check_pay.h"
#include "check_rng.h"
#include "shm/record.h"

#define T check_scale_ms(5000) /* every blocking call */

/* ---- /proc reads, counted and held --------------------------------------- */

struct scan_watch {
	pid_t pid[2];       /* the recipients watched */
	uint32_t opens[2];  /* /proc/<pid>/stat opens of each, all processes */
	pid_t park_in;      /* this process waits in its next such open ... */
	uint32_t parked;    /* ... saying so here ... */
	uint32_t release;   /* ... until this is set (20 s at most) */
};

static struct scan_watch *scan_w;

static void scan_saw(const char *path)
{
	char want[64];

	if (scan_w == NULL || path == NULL)
		return;
	for (int i = 0; i < 2; i++) {
		if (scan_w->pid[i] <= 0)
			continue;
		snprintf(want, sizeof(want), "/proc/%d/stat",
		         (int)scan_w->pid[i]);
		if (strcmp(path, want) != 0)
			continue;
		__atomic_add_fetch(&scan_w->opens[i], 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&scan_w->park_in, __ATOMIC_SEQ_CST) ==
		    getpid()) {
			long long end = check_now_ms() + 20000;

			__atomic_store_n(&scan_w->park_in, 0, __ATOMIC_SEQ_CST);
			__atomic_store_n(&scan_w->parked, 1, __ATOMIC_SEQ_CST);
			while (!__atomic_load_n(&scan_w->release,
			                        __ATOMIC_SEQ_CST) &&
			       check_now_ms() < end)
				usleep(1000);
		}
	}
}

int open(const char *path, int flags, ...)
{
	int mode = 0;

	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	scan_saw(path);
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/* ---- a queue with mail for a dead process and a live one ---------------- */

#define SCAN_EACH 2000 /* messages to each */
#define SCAN_TAKE 10   /* messages the live one takes while a scan waits */

struct scan_shared {
	struct scan_watch w;
	uint32_t go;    /* the live child: take SCAN_TAKE of yours */
	uint32_t quit;  /* the live child: exit */
	uint32_t taken; /* how many it took */
	int32_t join_rc;
};

struct scan_setup {
	mproc_conn *q;
	struct scan_shared *sh;
	pid_t dead, live;
};

/* The live child: takes SCAN_TAKE of its messages, in order, when told
 * to, then waits to be told to exit. */
static void scan_live_child(mproc_conn *q, struct scan_shared *sh)
{
	long long end = check_now_ms() + 30000;
	uint32_t seq;
	mproc_msg m = { .data = &seq, .capacity = sizeof(seq) };

	while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST) &&
	       !__atomic_load_n(&sh->quit, __ATOMIC_SEQ_CST) &&
	       check_now_ms() < end)
		usleep(1000);
	for (uint32_t i = 0; i < SCAN_TAKE && !sh->quit; i++) {
		int rc = mproc_recv(q, &m, mproc_for_me, NULL,
		                    check_scale_ms(1000));

		if (rc != 0)
			child_fail("live child: recv %u: %s", i,
			           mproc_strerror(rc));
		if (m.recipient != getpid() || seq != i)
			child_fail("live child: got seq %u for %d", seq,
			           (int)m.recipient);
		__atomic_store_n(&sh->taken, i + 1, __ATOMIC_SEQ_CST);
	}
	while (!__atomic_load_n(&sh->quit, __ATOMIC_SEQ_CST) &&
	       check_now_ms() < end)
		usleep(1000);
	mproc_close(q);
	_exit(0);
}

/*
 * scan_open: a queue holding SCAN_EACH messages for a child that is gone
 * (reaped) and SCAN_EACH for one that is alive, interleaved, numbered per
 * recipient; the watch on both pids, counts at 0.
 */
static void scan_open(struct scan_setup *su)
{
	memset(su, 0, sizeof(*su));
	su->sh = shm_alloc(sizeof(*su->sh));
	su->dead = check_fork();
	ck_assert_int_ge(su->dead, 0);
	if (su->dead == 0)
		_exit(0);
	check_reap_ok(su->dead, 10000);
	su->q = queue_new(1u << 20, 64, 0, 0);
	su->live = check_fork();
	ck_assert_int_ge(su->live, 0);
	if (su->live == 0)
		scan_live_child(su->q, su->sh);
	for (uint32_t i = 0; i < SCAN_EACH; i++) {
		ck_assert_int_eq(send_t(su->q, MPROC_DO, su->dead, &i,
		                        sizeof(i), T),
		                 0);
		ck_assert_int_eq(send_t(su->q, MPROC_DO, su->live, &i,
		                        sizeof(i), T),
		                 0);
	}
	su->sh->w.pid[0] = su->dead;
	su->sh->w.pid[1] = su->live;
	scan_w = &su->sh->w;
}

static void scan_close(struct scan_setup *su)
{
	__atomic_store_n(&su->sh->quit, 1, __ATOMIC_SEQ_CST);
	check_reap_ok(su->live, check_scale_ms(5000));
	scan_w = NULL;
	mproc_close(su->q);
	munmap(su->sh, sizeof(*su->sh));
}

static void scan_zero_opens(struct scan_setup *su)
{
	__atomic_store_n(&su->sh->w.opens[0], 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&su->sh->w.opens[1], 0, __ATOMIC_SEQ_CST);
}

/* Each watched pid was read from /proc exactly once since the zero. */
#define check_opens_once(su, what)                                            \
	ck_assert_msg((su)->sh->w.opens[0] == 1 && (su)->sh->w.opens[1] == 1,  \
	              "%s: /proc read %u times for the dead recipient, %u "  \
	              "for the live one (once each)", what,                  \
	              (su)->sh->w.opens[0], (su)->sh->w.opens[1])

/*
 * 2,000 messages to a dead process, 2,000 to a live one: stats counts
 * 2,000 orphans, purge drops 2,000, each scan reading each recipient's
 * liveness once; what is left is the live one's, which a join waits for.
 */
START_TEST(test_scan_orphans_counted_once)
{
	struct scan_setup su;
	mproc_stats st;

	scan_open(&su);
	scan_zero_opens(&su);
	st = stats_of(su.q);
	ck_assert_uint_eq(st.orphans, SCAN_EACH);
	ck_assert_uint_eq(st.queued, 2 * SCAN_EACH);
	check_opens_once(&su, "stats");

	scan_zero_opens(&su);
	ck_assert_int_eq(mproc_queue_purge(su.q), SCAN_EACH);
	check_opens_once(&su, "purge");

	st = stats_of(su.q);
	ck_assert_uint_eq(st.orphans, 0);
	ck_assert_uint_eq(st.purged, SCAN_EACH);
	ck_assert_uint_eq(st.queued, SCAN_EACH);
	ck_assert_uint_eq(st.unfinished, SCAN_EACH);
	ck_assert_int_eq(mproc_queue_purge(su.q), 0);
	ck_assert_int_eq(mproc_queue_join(su.q, MPROC_NOWAIT), -EAGAIN);
	scan_close(&su);
}
END_TEST

/*
 * A join with MPROC_NOWAIT on that queue: live mail remains, so it says
 * -EAGAIN, after purging the dead one's. Its orphan scan holds no lock:
 * held inside a /proc read of the scan, it lets the live child take its
 * mail and this process take the receive lock, promptly.
 */
START_TEST(test_scan_join_nowait_unlocked)
{
	struct scan_setup su;
	long long t0;
	mproc_stats st;
	pid_t joiner;
	int rc;

	scan_open(&su);
	joiner = check_fork();
	ck_assert_int_ge(joiner, 0);
	if (joiner == 0) {
		__atomic_store_n(&su.sh->w.park_in, getpid(),
		                 __ATOMIC_SEQ_CST);
		rc = mproc_queue_join(su.q, MPROC_NOWAIT);
		su.sh->join_rc = rc;
		mproc_close(su.q);
		_exit(rc == -EAGAIN ? 0 : 1);
	}
	t0 = check_now_ms();
	while (!__atomic_load_n(&su.sh->w.parked, __ATOMIC_SEQ_CST)) {
		if (check_now_ms() - t0 > check_scale_ms(5000)) {
			__atomic_store_n(&su.sh->w.release, 1,
			                 __ATOMIC_SEQ_CST);
			check_wait_child(joiner, 5000);
			scan_close(&su);
			ck_abort_msg("the join never read /proc (rc %d)",
			             su.sh->join_rc);
		}
		usleep(1000);
	}

	/* The join is inside its scan: the receive lock is free. */
	t0 = check_now_ms();
	ck_assert_int_eq(mproc_queue_empty(su.q), 0);
	ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(300));
	__atomic_store_n(&su.sh->go, 1, __ATOMIC_SEQ_CST);
	t0 = check_now_ms();
	while (__atomic_load_n(&su.sh->taken, __ATOMIC_SEQ_CST) < SCAN_TAKE &&
	       check_now_ms() - t0 < check_scale_ms(3000))
		usleep(1000);
	ck_assert_msg(su.sh->taken == SCAN_TAKE,
	              "the live child took %u of %d while a join scanned",
	              su.sh->taken, SCAN_TAKE);
	ck_assert_msg(waitpid(joiner, NULL, WNOHANG) == 0 &&
	                      su.sh->w.release == 0,
	              "the join was not held in its scan all along");

	__atomic_store_n(&su.sh->w.release, 1, __ATOMIC_SEQ_CST);
	check_reap_ok(joiner, check_scale_ms(5000));
	ck_assert_int_eq(su.sh->join_rc, -EAGAIN);
	st = stats_of(su.q);
	ck_assert_uint_eq(st.purged, SCAN_EACH);
	ck_assert_uint_eq(st.orphans, 0);
	ck_assert_uint_eq(st.queued, SCAN_EACH - SCAN_TAKE);
	scan_close(&su);
}
END_TEST

/* ---- stats while a stream runs ------------------------------------------- */

#define STREAM_CAP 4096
#define STREAM_PAYLOAD 256

struct stream_shared {
	uint32_t stop;
	uint64_t sent;  /* what the producer sent, when it is done */
	uint64_t taken; /* what the consumer took, in order */
};

static void stream_producer(mproc_conn *q, struct stream_shared *sh)
{
	uint64_t seq;

	rng_seed_child(1);
	for (seq = 0; !__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST); seq++) {
		int rc = send_pay(q, rng_range(sizeof(struct pay),
		                               STREAM_PAYLOAD),
		                  1, 0, seq, T);

		if (rc != 0)
			child_fail("send: %s", mproc_strerror(rc));
	}
	sh->sent = seq;
	if (send_t(q, MPROC_DIE, MPROC_ANYONE, NULL, 0, T) != 0)
		child_fail("send DIE");
	mproc_close(q);
	_exit(0);
}

static void stream_consumer(mproc_conn *q, struct stream_shared *sh)
{
	uint8_t buf[STREAM_PAYLOAD];

	for (uint64_t seq = 0;; seq++) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay p;
		int rc = mproc_recv(q, &m, NULL, NULL, T);

		if (rc != 0)
			child_fail("recv: %s", mproc_strerror(rc));
		if (m.request == MPROC_DIE)
			break;
		if (pay_check(buf, m.size, &p) < 0 || p.seq != seq)
			child_fail("message %llu: torn or out of order",
			           (unsigned long long)seq);
		sh->taken = seq + 1;
	}
	mproc_close(q);
	_exit(0);
}

/*
 * A 1:1 stream runs between two children through a small ring while this
 * process calls stats as fast as it can for a second: every snapshot is
 * a state the queue was in (queued is sent less received, its records
 * fill the bytes between head and tail, the totals only grow), and the
 * stream delivers every message once, in order.
 */
START_TEST(test_scan_stats_during_stream)
{
	struct stream_shared *sh = shm_alloc(sizeof(*sh));
	mproc_conn *q = queue_new(STREAM_CAP, STREAM_PAYLOAD, 0, 0);
	uint64_t last_sent = 0, last_received = 0, calls = 0;
	const uint64_t rec_max = mproc__rec_len(STREAM_PAYLOAD);
	long long end;
	pid_t prod, cons;

	cons = check_fork();
	ck_assert_int_ge(cons, 0);
	if (cons == 0)
		stream_consumer(q, sh);
	prod = check_fork();
	ck_assert_int_ge(prod, 0);
	if (prod == 0)
		stream_producer(q, sh);
	end = check_now_ms() + 1000;
	while (check_now_ms() < end) {
		mproc_stats st;
		int rc = mproc_queue_stats(q, &st);

		calls++;
		expect_msg(rc == 0, "stats: %s", mproc_strerror(rc));
		expect_msg(st.queued <= st.sent && st.unfinished <= st.sent &&
		               st.received <= st.sent &&
		               st.bytes <= st.capacity &&
		               st.capacity == STREAM_CAP,
		           "stats %llu: queued %llu unfinished %llu received "
		           "%llu sent %llu bytes %llu",
		           (unsigned long long)calls,
		           (unsigned long long)st.queued,
		           (unsigned long long)st.unfinished,
		           (unsigned long long)st.received,
		           (unsigned long long)st.sent,
		           (unsigned long long)st.bytes);
		expect_msg(st.queued == st.sent - st.received &&
		               st.unfinished == st.queued &&
		               st.queued * MPROC__REC_HDR <= st.bytes &&
		               st.bytes <= st.queued * rec_max,
		           "stats %llu: not one state: queued %llu unfinished "
		           "%llu in %llu bytes, sent %llu received %llu",
		           (unsigned long long)calls,
		           (unsigned long long)st.queued,
		           (unsigned long long)st.unfinished,
		           (unsigned long long)st.bytes,
		           (unsigned long long)st.sent,
		           (unsigned long long)st.received);
		expect_msg(st.sent >= last_sent &&
		               st.received >= last_received,
		           "stats %llu: went back: sent %llu after %llu, "
		           "received %llu after %llu",
		           (unsigned long long)calls,
		           (unsigned long long)st.sent,
		           (unsigned long long)last_sent,
		           (unsigned long long)st.received,
		           (unsigned long long)last_received);
		last_sent = st.sent;
		last_received = st.received;
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
	check_reap_ok(prod, check_scale_ms(10000));
	check_reap_ok(cons, check_scale_ms(10000));
	ck_assert_uint_gt(sh->sent, 0);
	ck_assert_uint_eq(sh->taken, sh->sent);
	ck_assert_uint_eq(stats_of(q).sent, sh->sent + 1);
	check_drained_no_repair(q);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr, "stream: %llu messages, %llu stats calls\n",
		        (unsigned long long)sh->sent,
		        (unsigned long long)calls);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
}
END_TEST

Suite *scans_suite(void);

Suite *scans_suite(void)
{
	Suite *s = suite_create("scans");
	TCase *tc = check_tcase(s, "orphans");

	tcase_add_test(tc, test_scan_orphans_counted_once);
	tcase_add_test(tc, test_scan_join_nowait_unlocked);
	tc = check_tcase(s, "stats");
	tcase_add_test(tc, test_scan_stats_during_stream);
	return s;
}

int main(void)
{
	return check_run_suite(scans_suite());
}
