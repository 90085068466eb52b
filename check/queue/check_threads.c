/*
 * check_threads.c - several threads sharing one queue handle.
 *
 * The contract lets the threads of a process share a handle (everything
 * but close). Here two threads per process, in several processes, send and
 * receive on the inherited handle, and every message must arrive exactly
 * once, whole, and in order per sender as each receiving thread sees it.
 *
 * The in-process tests (threads only, no fork) are the ones to run under
 * ThreadSanitizer, which cannot see races between processes; they do not
 * fork, so they also run with CK_FORK=no.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "check_common.h"
#include "check_pay.h"
#include "check_rng.h"

/* ---- the shared bookkeeping --------------------------------------------- */

#define MAX_THREADS 16
#define PER_THREAD 50000 /* messages each sending thread sends */
#define MAX_PAYLOAD 256

/*
 * Lives in a MAP_SHARED mapping (processes) or in memory (threads only);
 * updated with atomics either way.
 */
struct book {
	uint64_t total;       /* messages that will be sent */
	uint64_t received;    /* taken so far, everyone */
	uint32_t senders_done;
	uint32_t errors;
	char error[160];      /* the first error */
	uint8_t seen[MAX_THREADS][PER_THREAD]; /* deliveries per message */
};

static void book_error(struct book *b, const char *what, unsigned long long a,
                       unsigned long long c)
{
	if (__atomic_fetch_add(&b->errors, 1, __ATOMIC_SEQ_CST) == 0)
		snprintf(b->error, sizeof(b->error), "%s (%llu, %llu)", what,
		         a, c);
}

enum { ROLE_SEND = 1, ROLE_RECV = 2, ROLE_BOTH = 3 };

struct worker {
	pthread_t tid;
	mproc_conn *q;
	struct book *b;
	uint32_t idx;   /* global thread index: the src of what it sends */
	int role;
	uint64_t rng;
	int64_t last[MAX_THREADS]; /* last seq seen per sender, this thread */
	uint8_t buf[MAX_PAYLOAD];
};

/* Take one message (if any within timeout_ms) and book it. Returns 1 for a
 * data message, 0 for none, -1 for DIE. */
static int worker_take(struct worker *w, int timeout_ms)
{
	mproc_msg m = { .data = w->buf, .capacity = sizeof(w->buf) };
	struct pay p;
	int rc = mproc_recv(w->q, &m, NULL, NULL, timeout_ms);

	if (rc == -EAGAIN || rc == -ETIMEDOUT)
		return 0;
	if (rc != 0) {
		book_error(w->b, "recv failed", (unsigned)-rc, w->idx);
		return -1;
	}
	if (m.request == MPROC_DIE)
		return -1;
	if (m.request != MPROC_USER || pay_check(w->buf, m.size, &p) < 0 ||
	    p.src >= MAX_THREADS || p.seq >= PER_THREAD) {
		book_error(w->b, "torn message", m.size, w->idx);
		return -1;
	}
	if ((int64_t)p.seq <= w->last[p.src])
		book_error(w->b, "out of order", p.src, p.seq);
	w->last[p.src] = (int64_t)p.seq;
	if (__atomic_fetch_add(&w->b->seen[p.src][p.seq], 1, __ATOMIC_SEQ_CST))
		book_error(w->b, "delivered twice", p.src, p.seq);
	__atomic_add_fetch(&w->b->received, 1, __ATOMIC_SEQ_CST);
	return 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long long end = check_now_ms() + 30000;
	uint64_t seq = 0;

	for (int i = 0; i < MAX_THREADS; i++)
		w->last[i] = -1;
	if (w->role & ROLE_SEND) {
		while (seq < PER_THREAD && check_now_ms() < end) {
			uint8_t out[MAX_PAYLOAD];
			mproc_msg m;
			int rc;

			memset(&m, 0, sizeof(m));
			m.request = MPROC_USER;
			m.size = rng_range_r(&w->rng, sizeof(struct pay),
			                     MAX_PAYLOAD);
			m.data = out;
			pay_make(out, m.size, w->idx, UINT32_MAX, seq);
			/* A thread that also receives must not sleep in send:
			 * every thread could be asleep on a full queue. */
			rc = mproc_send_msg(w->q, &m, w->role == ROLE_BOTH
			                                  ? MPROC_NOWAIT
			                                  : 5000);
			/* Polling, a lock held by a preempted thread can
			 * also answer -ETIMEDOUT: try again later. */
			if (rc == 0)
				seq++;
			else if (w->role != ROLE_BOTH ||
			         (rc != -EAGAIN && rc != -ETIMEDOUT)) {
				book_error(w->b, "send failed", (unsigned)-rc,
				           w->idx);
				break;
			}
			if (w->role == ROLE_BOTH &&
			    (rc != 0 || rng_range_r(&w->rng, 0, 1)))
				worker_take(w, rc != 0 ? 10 : MPROC_NOWAIT);
		}
		__atomic_add_fetch(&w->b->senders_done, 1, __ATOMIC_SEQ_CST);
	}
	if (w->role == ROLE_RECV) {
		/* Until a DIE. */
		while (check_now_ms() < end && worker_take(w, 5000) >= 0)
			;
	} else if (w->role == ROLE_BOTH) {
		/* Until everything sent has been taken by someone. */
		while (__atomic_load_n(&w->b->received, __ATOMIC_SEQ_CST) <
		               w->b->total &&
		       check_now_ms() < end)
			worker_take(w, 20);
	}
	return NULL;
}

/* Start nthreads workers on q (indices from base) and join them. */
static void run_workers(mproc_conn *q, struct book *b, uint32_t base,
                        int nthreads, const int *roles)
{
	struct worker *w = calloc((size_t)nthreads, sizeof(*w));

	if (w == NULL)
		abort();
	for (int i = 0; i < nthreads; i++) {
		w[i].q = q;
		w[i].b = b;
		w[i].idx = base + (uint32_t)i;
		w[i].role = roles[i];
		rng_seed_r(&w[i].rng, (uint64_t)getpid() << 32 ^
		                      (uint64_t)check_now_ms() ^ w[i].idx);
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
			abort();
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(w[i].tid, NULL);
	free(w);
}

static void check_book(struct book *b, int nsenders, const uint32_t *senders)
{
	ck_assert_msg(b->errors == 0, "%u errors, first: %s", b->errors,
	              b->error);
	ck_assert_int_eq(b->received, b->total);
	for (int i = 0; i < nsenders; i++)
		for (int s = 0; s < PER_THREAD; s++)
			expect_msg(b->seen[senders[i]][s] == 1,
			           "thread %u message %d delivered %u times",
			           senders[i], s, b->seen[senders[i]][s]);
}

/* ---- several processes, two threads each -------------------------------- */

#define PROCS 3

/*
 * Loop index 0: in each process one thread sends (blocking) while the
 * other receives (blocking) on the same handle. 1: both threads do both.
 */
START_TEST(test_threads_procs)
{
	const int roles_split[2] = { ROLE_SEND, ROLE_RECV };
	const int roles_both[2] = { ROLE_BOTH, ROLE_BOTH };
	struct book *b = shm_alloc(sizeof(*b));
	mproc_conn *q = queue_new(8192, MAX_PAYLOAD, 0, 0);
	uint32_t senders[2 * PROCS];
	int nsenders = 0, mixed = _i;
	pid_t pids[PROCS];
	long long t0;

	b->total = (uint64_t)(mixed ? 2 : 1) * PROCS * PER_THREAD;
	for (int p = 0; p < PROCS; p++) {
		senders[nsenders++] = 2u * (uint32_t)p;
		if (mixed)
			senders[nsenders++] = 2u * (uint32_t)p + 1;
		pids[p] = check_fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			run_workers(q, b, 2u * (uint32_t)p, 2,
			            mixed ? roles_both : roles_split);
			_exit(0);
		}
	}
	if (!mixed) {
		/* One DIE per receiving thread once every sender is done. */
		t0 = check_now_ms();
		while (__atomic_load_n(&b->senders_done, __ATOMIC_SEQ_CST) <
		       PROCS) {
			ck_assert_msg(check_now_ms() - t0 < 40000,
			              "senders never finished");
			usleep(2000);
		}
		for (int p = 0; p < PROCS; p++) {
			mproc_msg die = { .request = MPROC_DIE };

			ck_assert_int_eq(mproc_send_msg(q, &die, 5000), 0);
		}
	}
	for (int p = 0; p < PROCS; p++)
		check_reap_ok(pids[p], 40000);
	check_book(b, nsenders, senders);
	check_drained_no_repair(q);
	mproc_close(q);
	munmap(b, sizeof(*b));
}
END_TEST

/* ---- threads only (run these under TSan) --------------------------------- */

/* Loop index 0: 2 senders and 2 receivers; 1: 4 threads doing both. */
START_TEST(test_threads_inproc)
{
	const int split[4] = { ROLE_SEND, ROLE_SEND, ROLE_RECV, ROLE_RECV };
	const int both[4] = { ROLE_BOTH, ROLE_BOTH, ROLE_BOTH, ROLE_BOTH };
	struct book *b = calloc(1, sizeof(*b));
	mproc_conn *q = queue_new(4096, MAX_PAYLOAD, 0, 0);
	const uint32_t senders[4] = { 0, 1, 2, 3 };
	int mixed = _i;

	ck_assert_ptr_nonnull(b);
	b->total = (uint64_t)(mixed ? 4 : 2) * PER_THREAD;
	if (mixed) {
		run_workers(q, b, 0, 4, both);
	} else {
		/* The receivers stop on a DIE each, sent from here once the
		 * senders are done: run them alongside in threads. */
		struct worker *w = calloc(4, sizeof(*w));

		ck_assert_ptr_nonnull(w);
		for (int i = 0; i < 4; i++) {
			w[i].q = q;
			w[i].b = b;
			w[i].idx = (uint32_t)i;
			w[i].role = split[i];
			rng_seed_r(&w[i].rng, (uint64_t)check_now_ms() ^
			                      (uint64_t)(i + 1) << 40);
			ck_assert_int_eq(pthread_create(&w[i].tid, NULL,
			                                worker_main, &w[i]), 0);
		}
		pthread_join(w[0].tid, NULL);
		pthread_join(w[1].tid, NULL);
		for (int i = 0; i < 2; i++) {
			mproc_msg die = { .request = MPROC_DIE };

			ck_assert_int_eq(mproc_send_msg(q, &die, 5000), 0);
		}
		pthread_join(w[2].tid, NULL);
		pthread_join(w[3].tid, NULL);
		free(w);
	}
	check_book(b, mixed ? 4 : 2, senders);
	check_drained_no_repair(q);
	mproc_close(q);
	free(b);
}
END_TEST

/*
 * Selective receive across threads: one thread deals messages to three
 * others, each of which takes only its own (a predicate on the payload).
 * Sleepers whose predicate matches nothing must be woken when their mail
 * comes, and nobody may take another's.
 */
#define PICK_THREADS 3
#define PICK_MSGS 20000

struct picker {
	pthread_t tid;
	mproc_conn *q;
	uint32_t me;
	uint64_t got;
	int error;
};

static int pick_mine(const mproc_msg *m, void *arg)
{
	const struct picker *pk = arg;
	struct pay p;

	if (m->request == MPROC_DIE)
		return m->recipient == MPROC_ANYONE &&
		       m->size == sizeof(pk->me) &&
		       memcmp(m->data, &pk->me, sizeof(pk->me)) == 0;
	return m->size >= sizeof(p) && memcpy(&p, m->data, sizeof(p)) != NULL &&
	       p.dst == pk->me;
}

static void *picker_main(void *arg)
{
	struct picker *pk = arg;
	uint8_t buf[MAX_PAYLOAD];

	for (;;) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay p;
		int rc = mproc_recv(pk->q, &m, pick_mine, pk, 5000);

		if (rc != 0) {
			pk->error = rc;
			break;
		}
		if (m.request == MPROC_DIE)
			break;
		if (pay_check(buf, m.size, &p) < 0 || p.dst != pk->me ||
		    p.seq != pk->got) {
			pk->error = -EPROTO;
			break;
		}
		pk->got++;
	}
	return NULL;
}

START_TEST(test_threads_predicates)
{
	struct picker pk[PICK_THREADS];
	mproc_conn *q = queue_new(4096, MAX_PAYLOAD, 0, 0);
	uint64_t sent[PICK_THREADS] = { 0 }, rng;
	uint8_t out[MAX_PAYLOAD];

	rng_seed_r(&rng, (uint64_t)check_now_ms());
	for (uint32_t i = 0; i < PICK_THREADS; i++) {
		memset(&pk[i], 0, sizeof(pk[i]));
		pk[i].q = q;
		pk[i].me = i;
		ck_assert_int_eq(pthread_create(&pk[i].tid, NULL, picker_main,
		                                &pk[i]), 0);
	}
	for (int n = 0; n < PICK_MSGS; n++) {
		uint32_t to = rng_range_r(&rng, 0, PICK_THREADS - 1);
		mproc_msg m = { .request = MPROC_USER, .data = out };

		m.size = rng_range_r(&rng, sizeof(struct pay), MAX_PAYLOAD);
		pay_make(out, m.size, 99, to, sent[to]++);
		ck_assert_int_eq(mproc_send_msg(q, &m, 5000), 0);
	}
	for (uint32_t i = 0; i < PICK_THREADS; i++) {
		mproc_msg die = { .request = MPROC_DIE, .data = &i,
		                  .size = sizeof(i) };

		ck_assert_int_eq(mproc_send_msg(q, &die, 5000), 0);
	}
	for (int i = 0; i < PICK_THREADS; i++) {
		pthread_join(pk[i].tid, NULL);
		ck_assert_msg(pk[i].error == 0, "thread %d: %s", i,
		              mproc_strerror(pk[i].error));
		ck_assert_int_eq(pk[i].got, sent[i]);
	}
	check_drained_no_repair(q);
	mproc_close(q);
}
END_TEST

Suite *threads_suite(void);

Suite *threads_suite(void)
{
	Suite *s = suite_create("threads");
	TCase *tc;

	tc = check_tcase(s, "procs");
	tcase_add_loop_test(tc, test_threads_procs, 0, 2);

	tc = check_tcase(s, "inproc");
	tcase_add_loop_test(tc, test_threads_inproc, 0, 2);
	tcase_add_test(tc, test_threads_predicates);
	return s;
}

int main(void)
{
	return check_run_suite(threads_suite());
}
