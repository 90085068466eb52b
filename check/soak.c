/*
 * soak.c - mproc-soak: producers, consumers and a worker pool run for a
 * given number of seconds while a chaos thread SIGKILLs random children at
 * random moments, and now and then stops a pool worker with SIGSTOP for up
 * to 1.5 s (it may be holding the task queue's lock, so the pool must give
 * a killed worker's tasks back later, without any call waiting for it).
 * At the end it checks:
 *
 *   - every message whose send returned 0 was received, whole, at least
 *     once (the consumers' predicate checks each message's checksum in the
 *     ring and marks it seen before the take commits, so a consumer killed
 *     after the commit cannot hide a delivery);
 *   - no torn message was ever seen (checksum in the predicate and again
 *     after the copy);
 *   - the queue's counts agree: nothing queued, nothing unfinished, join
 *     returns at once;
 *   - every pool task got exactly one result (its checksum, or
 *     MPROC_TASK_WORKER_DIED after too many deaths);
 *   - no pool call made with timeout 0 took a second or more;
 *   - no process is left behind (waitpid(-1) says ECHILD).
 *
 * Usage: mproc-soak [SECONDS]   (default: MPROC_STRESS_SECONDS, else 5)
 * Prints a summary and "N passed, N failed"; exits 0 only when all hold.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define NPROD 3
#define NCONS 3
#define MAXID (1u << 24) /* message ids; producers stop at the end */
#define PAYLOAD_MAX 512
#define TMO 10000

struct shared {
	_Atomic uint32_t next_id;
	_Atomic uint32_t stop_producers;
	_Atomic uint32_t stop_consumers;
	_Atomic uint64_t torn;
	uint8_t acked[MAXID]; /* send returned 0 */
	_Atomic uint8_t seen[MAXID];
};

static struct shared *sh;
static mproc_conn *q;
static uint8_t *task_seen; /* parent only; global so forked children that
                              _exit still reach it (no leak reports) */

struct body {
	uint32_t id;
	uint32_t len;
	uint64_t sum;
	uint8_t bytes[PAYLOAD_MAX];
};

static uint64_t checksum(uint32_t id, const uint8_t *p, uint32_t n)
{
	uint64_t h = 1469598103934665603ull ^ id;

	for (uint32_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static int body_ok(const void *data, uint32_t size)
{
	const struct body *b = data;

	if (size < offsetof(struct body, bytes))
		return 0;
	if (b->len > PAYLOAD_MAX || size != offsetof(struct body, bytes) + b->len ||
	    b->id >= MAXID)
		return 0;
	return b->sum == checksum(b->id, b->bytes, b->len);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void producer(unsigned seed)
{
	struct body b;

	while (!atomic_load(&sh->stop_producers)) {
		uint32_t id = atomic_fetch_add(&sh->next_id, 1);
		int rc;

		if (id >= MAXID)
			break;
		b.id = id;
		b.len = (uint32_t)rand_r(&seed) % PAYLOAD_MAX;
		for (uint32_t i = 0; i < b.len; i++)
			b.bytes[i] = (uint8_t)(id * 31 + i);
		b.sum = checksum(id, b.bytes, b.len);
		mproc_msg m = { .request = MPROC_DO, .data = &b,
		                .size = (uint32_t)offsetof(struct body, bytes) + b.len };
		rc = mproc_send_msg(q, &m, TMO);
		if (rc != 0)
			_exit(2);
		sh->acked[id] = 1; /* after the send returned 0 */
	}
	_exit(0);
}

/* Runs under the queue's lock, before the take commits. */
static int mark_seen(const mproc_msg *m, void *arg)
{
	(void)arg;
	if (!body_ok(m->data, m->size)) {
		atomic_fetch_add(&sh->torn, 1);
		return 0; /* leave it: the final drain reports it */
	}
	/* Counts deliveries; saturates rather than wrapping to 0. */
	if (atomic_fetch_add(&sh->seen[((const struct body *)m->data)->id],
	                     1) == 255)
		atomic_store(&sh->seen[((const struct body *)m->data)->id],
		             255);
	return 1;
}

static void consumer(void)
{
	struct body b;

	for (;;) {
		mproc_msg m = { .data = &b, .capacity = sizeof(b) };
		int rc = mproc_recv(q, &m, mark_seen, NULL, 100);

		if (rc == 0) {
			if (!body_ok(&b, m.size))
				atomic_fetch_add(&sh->torn, 1);
		} else if (rc == -ETIMEDOUT) {
			if (atomic_load(&sh->stop_consumers))
				_exit(0);
		} else {
			_exit(3);
		}
	}
}

/* The pool's task: the checksum of the payload. */
static int pool_task(const mproc_msg *task, mproc_msg *result, void *arg)
{
	uint64_t h = checksum(0, task->data, task->size);

	(void)arg;
	memcpy(result->data, &h, sizeof(h));
	result->size = sizeof(h);
	return 0;
}

/* ---- chaos ------------------------------------------------------------ */

static pid_t prods[NPROD], conss[NCONS], workers[16];
static int nworkers;
static mproc_pool *pool;
static pthread_mutex_t pids_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int chaos_on = 1;
static _Atomic uint64_t kills, stops;
static pid_t stopped;          /* a worker chaos stopped (SIGSTOP), or 0 */
static long long stopped_until; /* when chaos continues it */

static void *chaos(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (atomic_load(&chaos_on)) {
		pid_t victim = 0;
		int r = rand_r(&seed) % 3, n;

		usleep((useconds_t)(rand_r(&seed) % 20000));
		pthread_mutex_lock(&pids_mu);
		if (stopped > 0 && now_ms() >= stopped_until) {
			kill(stopped, SIGCONT);
			stopped = 0;
		} else if (stopped == 0 && rand_r(&seed) % 16 == 0 &&
		           (n = nworkers) > 0) {
			stopped = workers[rand_r(&seed) % n];
			stopped_until = now_ms() + 100 + rand_r(&seed) % 1400;
			if (kill(stopped, SIGSTOP) == 0)
				atomic_fetch_add(&stops, 1);
			else
				stopped = 0;
		}
		if (r == 0)
			victim = prods[rand_r(&seed) % NPROD];
		else if (r == 1)
			victim = conss[rand_r(&seed) % NCONS];
		else if ((n = nworkers) > 0) /* the pool replaces them */
			victim = workers[rand_r(&seed) % n];
		pthread_mutex_unlock(&pids_mu);
		if (victim > 0 && kill(victim, SIGKILL) == 0)
			atomic_fetch_add(&kills, 1);
	}
	return NULL;
}

static pid_t spawn(int producer_role, unsigned seed)
{
	pid_t p = fork();

	if (p < 0) {
		perror("fork");
		exit(1);
	}
	if (p == 0) {
		if (producer_role)
			producer(seed);
		consumer();
	}
	return p;
}

/* Reap dead producers/consumers and start replacements. */
static void respawn(unsigned *seed, int allow_producers)
{
	int st, i;

	pthread_mutex_lock(&pids_mu);
	for (i = 0; i < NPROD; i++) {
		if (prods[i] > 0 && waitpid(prods[i], &st, WNOHANG) == prods[i])
			prods[i] = allow_producers ? spawn(1, rand_r(seed)) : 0;
	}
	for (i = 0; i < NCONS; i++) {
		if (conss[i] > 0 && waitpid(conss[i], &st, WNOHANG) == conss[i])
			conss[i] = spawn(0, 0);
	}
	pthread_mutex_unlock(&pids_mu);
}

int main(int argc, char **argv)
{
	const char *env = getenv("MPROC_STRESS_SECONDS");
	int seconds = argc > 1 ? atoi(argv[1]) : env ? atoi(env) : 5;
	mproc_queue_opts qo = { 64 << 10, 0, sizeof(struct body), 0, 0 };
	mproc_pool_opts po = { .workers = 3, .max_payload = 1024,
	                       .max_restarts = 1000000, .max_attempts = 5 };
	unsigned seed = (unsigned)getpid();
	uint64_t submitted = 0, results = 0, died = 0, bad_results = 0;
	uint64_t lost = 0, sent_ok = 0, redelivered_extra;
	long long t0, slowest = 0; /* the longest pool call with timeout 0 */
	mproc_stats st;
	pthread_t th;
	long long end;
	int passed = 0, failed = 0, rc, i;
	char tbuf[256];

	if (seconds <= 0)
		seconds = 5;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	task_seen = calloc(1u << 22, 1);
	if (sh == MAP_FAILED || task_seen == NULL ||
	    mproc_queue_open(&q, &qo) != 0 ||
	    mproc_pool_start(&pool, pool_task, NULL, &po) != 0) {
		fprintf(stderr, "mproc-soak: set-up failed\n");
		return 1;
	}
	for (i = 0; i < NPROD; i++)
		prods[i] = spawn(1, rand_r(&seed));
	for (i = 0; i < NCONS; i++)
		conss[i] = spawn(0, 0);
	pthread_create(&th, NULL, chaos, (void *)(uintptr_t)seed);

	end = now_ms() + seconds * 1000LL;
	while (now_ms() < end) {
		uint64_t id;
		mproc_result r = { .data = tbuf, .capacity = sizeof(tbuf) };

		respawn(&seed, 1);
		/* The pool is the main thread's: chaos gets a copy of the
		 * worker pids. */
		pthread_mutex_lock(&pids_mu);
		nworkers = mproc_pool_worker_pids(pool, workers, 16);
		if (nworkers > 16)
			nworkers = 16;
		pthread_mutex_unlock(&pids_mu);
		for (i = 0; i < 8 && submitted < (1u << 22) - 1; i++) {
			uint8_t data[64];

			memset(data, (int)(submitted & 0xff), sizeof(data));
			t0 = now_ms();
			rc = mproc_pool_submit(pool, data, sizeof(data), &id, 0);
			if (now_ms() - t0 > slowest)
				slowest = now_ms() - t0;
			if (rc != 0)
				break;
			submitted++;
		}
		for (;;) {
			uint8_t data[64];
			uint64_t h;

			t0 = now_ms();
			rc = mproc_pool_result(pool, &r, 0);
			if (now_ms() - t0 > slowest)
				slowest = now_ms() - t0;
			if (rc != 0)
				break;

			results++;
			if (r.task_id >= (1u << 22) || task_seen[r.task_id]++) {
				bad_results++; /* a second result for one task */
				continue;
			}
			if (r.status == MPROC_TASK_WORKER_DIED) {
				died++;
				continue;
			}
			memset(data, (int)((r.task_id - 1) & 0xff), sizeof(data));
			h = checksum(0, data, sizeof(data));
			if (r.size != sizeof(h) || memcmp(tbuf, &h, sizeof(h)) != 0)
				bad_results++;
		}
		usleep(1000);
	}

	/* Wind down: chaos off, producers stop, consumers drain, pool ends. */
	atomic_store(&chaos_on, 0);
	pthread_join(th, NULL);
	if (stopped > 0)
		kill(stopped, SIGCONT);
	atomic_store(&sh->stop_producers, 1);
	for (i = 0; i < NPROD; i++) {
		if (prods[i] > 0)
			waitpid(prods[i], NULL, 0);
		prods[i] = 0;
	}
	/* Consumers that died meanwhile are replaced until the queue is
	 * drained; then they stop. */
	for (end = now_ms() + 30000; now_ms() < end;) {
		respawn(&seed, 0);
		if (mproc_queue_empty(q) == 1)
			break;
		usleep(2000);
	}
	atomic_store(&sh->stop_consumers, 1);
	for (i = 0; i < NCONS; i++)
		if (conss[i] > 0)
			waitpid(conss[i], NULL, 0);
	while (results < submitted) {
		mproc_result r = { .data = tbuf, .capacity = sizeof(tbuf) };

		rc = mproc_pool_result(pool, &r, TMO);
		if (rc != 0)
			break;
		results++;
		if (r.task_id >= (1u << 22) || task_seen[r.task_id]++)
			bad_results++;
		else if (r.status == MPROC_TASK_WORKER_DIED)
			died++;
	}
	mproc_pool_counts pc;
	mproc_pool_stats(pool, &pc);
	mproc_pool_stop(pool, 5000, NULL, 0);
	mproc_pool_free(pool);

	redelivered_extra = 0;
	for (uint32_t id = 0; id < MAXID && id < atomic_load(&sh->next_id); id++) {
		uint8_t n = atomic_load(&sh->seen[id]);

		if (n > 1)
			redelivered_extra += n - 1u;
		if (sh->acked[id]) {
			sent_ok++;
			if (n == 0)
				lost++;
		}
	}
	rc = mproc_queue_stats(q, &st);

#define EXPECT(cond, ...)                                                      \
	do {                                                                   \
		if (cond) {                                                    \
			passed++;                                              \
		} else {                                                       \
			failed++;                                              \
			fprintf(stderr, "mproc-soak: FAIL: " __VA_ARGS__);     \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

	EXPECT(lost == 0, "%llu acknowledged messages never received",
	       (unsigned long long)lost);
	EXPECT(atomic_load(&sh->torn) == 0, "%llu torn messages",
	       (unsigned long long)atomic_load(&sh->torn));
	EXPECT(rc == 0 && st.queued == 0 && st.unfinished == 0,
	       "queue not drained: rc %d queued %llu unfinished %llu", rc,
	       (unsigned long long)st.queued, (unsigned long long)st.unfinished);
	EXPECT(rc == 0 && st.sent == st.received,
	       "sent %llu != received %llu", (unsigned long long)st.sent,
	       (unsigned long long)st.received);
	EXPECT(mproc_queue_join(q, 0) == 0, "join did not return at once");
	EXPECT(results == submitted && bad_results == 0,
	       "pool: %llu submitted, %llu results, %llu bad",
	       (unsigned long long)submitted, (unsigned long long)results,
	       (unsigned long long)bad_results);
	EXPECT(slowest < 1000, "a pool call with timeout 0 took %lld ms",
	       slowest);
	EXPECT(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
	       "a child process was left behind");

	printf("mproc-soak: %d s, %llu kill -9 sent, %llu workers stopped a "
	       "while, %llu queue recoveries\n",
	       seconds, (unsigned long long)atomic_load(&kills),
	       (unsigned long long)atomic_load(&stops),
	       (unsigned long long)st.recoveries);
	printf("mproc-soak: queue: %llu messages acknowledged, all received "
	       "whole: %s; %llu delivered again after a taker died\n",
	       (unsigned long long)sent_ok, lost ? "NO" : "yes",
	       (unsigned long long)redelivered_extra);
	printf("mproc-soak: pool: %llu tasks, %llu results, %llu redelivered, "
	       "%llu failed after worker deaths, %llu workers restarted, "
	       "slowest call with timeout 0: %lld ms\n",
	       (unsigned long long)submitted, (unsigned long long)results,
	       (unsigned long long)pc.redelivered, (unsigned long long)died,
	       (unsigned long long)pc.restarts, slowest);
	printf("%d passed, %d failed\n", passed, failed);
	mproc_close(q);
	munmap(sh, sizeof(*sh));
	free(task_seen);
	return failed == 0 ? 0 : 1;
}
