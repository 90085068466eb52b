/*
 * mproc-bench - the workloads of DESIGN.md through mproc's queue and pipe,
 * against a raw pipe(2) and a POSIX message queue, in one process tree.
 *
 *   W1  stream 1:1 (64 B and 4 KiB payloads, or --size)
 *   W2  fan-out 1:N          W3  fan-in N:1          W4  N:N
 *   W5  ping-pong round trip (median and p99)
 *   W6  task pool: DO to N workers, FINISHED back, DIE at the end
 *   W6d the same with every task addressed to one worker (mproc_for_me)
 *   (W6 also has a "mproc pool" row: the same tasks through mproc_pool_*)
 *
 * Every run forks its processes ("roles") from this one coordinator, which
 * only opens the channels, forks, starts the roles together (a "go" pipe
 * closed at t0) and reaps them. Every message carries a sequence number,
 * the sending role's index and a checksum of its payload; every receiver
 * checks them, the sender pid, the request code and the size, and the
 * coordinator checks the totals (each message delivered exactly once). A
 * wrong answer prints FAIL and the bench exits 1.
 *
 * Time: CLOCK_MONOTONIC from the go signal to the last role's end.
 * CPU: getrusage(RUSAGE_SELF) + getrusage(RUSAGE_CHILDREN) over the run,
 * divided by the messages (W5: round trips; W6: tasks).
 *
 * Baselines, written the way a careful user would: a raw pipe sends one
 * write(2) per message (a 16-byte envelope: request, sender, recipient,
 * size, then the payload) and reads with a 64 KiB buffer; a POSIX mq sends
 * one mq_send per message with the same envelope, at the deepest queue the
 * system allows (printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <mqueue.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define OP_TIMEOUT_MS 10000   /* every mproc call: a bug fails, never hangs */
#define WATCHDOG_S 300        /* one run of one transport, at most */
#define WATCHDOG_QUICK_S 30
#define MAX_WORKERS 64
#define MAX_ROLES (2 * MAX_WORKERS + 1)
#define MAX_CH (MAX_WORKERS + 1)
#define MAX_RUNS 99
#define ENV_SIZE 16           /* raw envelope: request, sender, to, size */
#define PL_HDR 16             /* payload: seq (8), src (4), check (4) */
#define MIN_SIZE PL_HDR
#define MAX_SIZE (1u << 20)
#define RESULT_SIZE PL_HDR    /* W6 results: seq, worker, check */
#define POOL_WINDOW 256       /* W6: tasks in flight at most */
#define PIPE_RDBUF (64u << 10)
#define MQ_BYTES_TARGET (1u << 20) /* mq depth aims at mproc's default ring */
#define MQ_HARD_MAX 65536
#define NONE UINT64_MAX

#define K1 0x9E3779B97F4A7C15ull
#define K2 0xD6E8FEB86659FD93ull

#define MQ_MSG_MAX "/proc/sys/fs/mqueue/msg_max"
#define MQ_MSGSIZE_MAX "/proc/sys/fs/mqueue/msgsize_max"

/* mproc's rows first (T_QUEUE..T_POOL), then the baselines (T_PIPE..T_MQ). */
enum transport { T_QUEUE, T_MPIPE, T_POOL, T_PIPE, T_MQ, T_NTRANS };

static const char *const tname[T_NTRANS] = {
	[T_QUEUE] = "mproc queue",
	[T_MPIPE] = "mproc pipe",
	[T_POOL] = "mproc pool",
	[T_PIPE] = "raw pipe",
	[T_MQ] = "POSIX mq",
};

enum wkind { K_STREAM, K_PINGPONG, K_POOL };

struct workload {
	char id[8];         /* "W1" */
	char title[64];
	enum wkind kind;
	int producers;      /* K_STREAM */
	int consumers;      /* K_STREAM */
	int workers;        /* K_POOL */
	bool directed;      /* W6d */
	uint32_t size;      /* payload bytes */
	uint64_t n;         /* messages, round trips or tasks */
	uint64_t warm;      /* W5: round trips before the measured ones */
	const char *unit;   /* "msgs/s", ... */
	bool has[T_NTRANS];
	int nmq;            /* POSIX mqs per run */
	long mq_depth;      /* chosen before the runs; <= 0: unavailable */
	char mq_why[128];
	int window;         /* W6: tasks in flight */
};

/* One role's report, written by the child into the shared area. */
struct role_report {
	uint64_t t_start_ns;
	uint64_t t_end_ns;
	uint64_t t_fail_ns;
	uint64_t count;
	double rtt_med_us;
	double rtt_p99_us;
	int32_t ok;
	char err[244];
};

/* Shared by the coordinator and the roles of one run (MAP_SHARED). */
struct shared {
	pid_t pids[MAX_ROLES];
	uint32_t producers_done;
	struct role_report r[MAX_ROLES];
	unsigned char seen[]; /* K_STREAM with several consumers: seq -> 1 */
};

/* The coordinator's handles for one run; children inherit them. */
struct chans {
	enum transport t;
	int n;
	mproc_conn *c[MAX_CH][2]; /* queue in [0]; mproc pipe ends A, B */
	int fd[MAX_CH][2];        /* raw pipe: [0] read, [1] write */
	mqd_t mq[MAX_CH];
};

/* One side of one channel, in a role. */
struct ep {
	enum transport t;
	mproc_conn *c;
	int fd;
	mqd_t mq;
	bool directed; /* queue receive with mproc_for_me */
};

/* A received message; data points into the role's buffers. */
struct rmsg {
	int32_t request;
	pid_t sender;
	pid_t recipient;
	uint32_t size;
	const unsigned char *data;
};

/* The raw transports' envelope. */
struct envelope {
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;
};

struct sample {
	int status; /* 0 ok, 1 n/a, -1 failed */
	double rate;
	double cpu_us;
	double elapsed_s;
	double rtt_med_us;
	double rtt_p99_us;
	char why[300];
};

struct row {
	struct sample s[MAX_RUNS];
	int nruns;
};

/* Options. */
static int opt_workers = 4;
static uint32_t opt_size;
static bool opt_quick;
static const char *opt_json;
static int opt_runs;
static uint64_t opt_messages;
static bool opt_no_raise;
static char opt_only[256];
static int opt_window = POOL_WINDOW;
static unsigned opt_transports = (1u << T_NTRANS) - 1;

/* Per-process state of a role. */
static struct {
	struct shared *sh;
	struct role_report *rep;
	int role;
	pid_t pid;
	uint32_t maxpay;
	size_t mq_msgsize;
	unsigned char *sbuf; /* ENV_SIZE + maxpay: the frame being sent */
	unsigned char *rbuf; /* ENV_SIZE + maxpay: mproc payload / mq frame */
	unsigned char *pbuf; /* raw pipe read buffer */
	size_t pcap, phead, ptail;
} g;

static bool g_failed;
static long g_msgmax_orig = -1;
static long g_msgsize_orig = -1;
static sigset_t g_oldmask;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "mproc-bench: out of memory\n");
		exit(1);
	}
	return p;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_of(const double *v, int n)
{
	double t[MAX_RUNS];

	if (n <= 0)
		return 0;
	memcpy(t, v, (size_t)n * sizeof(*t));
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* ------------------------------------------------------------------ */
/* Payload: seq, src, check, then a body that depends on seq           */
/* ------------------------------------------------------------------ */

/* The checksum loops are most of the bench's own cost per 4 KiB message:
 * let GCC vectorize them even at -O2. */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define BENCH_VECTORIZE
#endif

/*
 * The body's words are seed + i*K2 (seed from seq and src), so a stale or
 * torn body gives a different sum; the sum is position-dependent (each
 * word is xored with i*K1 first). check mixes the sum with seq, src, size.
 */
BENCH_VECTORIZE
static void body_fill(unsigned char *b, size_t n, uint64_t seed)
{
	size_t nw = n / 8, i;
	uint64_t w = seed;

	if ((uintptr_t)b % sizeof(uint64_t) == 0) {
		/* The usual case (a payload built in the role's own buffer):
		 * typed stores, which GCC vectorizes. */
		uint64_t *words = (uint64_t *)(void *)b;

		for (i = 0; i < nw; i++, w += K2)
			words[i] = w;
	} else {
		for (i = 0; i < nw; i++, w += K2)
			memcpy(b + 8 * i, &w, 8);
	}
	if (n % 8)
		memcpy(b + 8 * nw, &w, n % 8);
}

BENCH_VECTORIZE
static uint64_t body_sum(const unsigned char *b, size_t n)
{
	size_t nw = n / 8, i;
	uint64_t sum = 0, pos = 0, w;

	for (i = 0; i < nw; i++) {
		memcpy(&w, b + 8 * i, 8);
		sum += w ^ pos;
		pos += K1;
	}
	if (n % 8) {
		w = 0;
		memcpy(&w, b + 8 * nw, n % 8);
		sum += w ^ pos;
	}
	return sum;
}

static uint32_t payload_check_word(uint64_t sum, uint64_t seq, uint32_t src,
                                   uint32_t size)
{
	return (uint32_t)mix64(sum ^ mix64(seq) ^ ((uint64_t)src << 40) ^ size);
}

static void payload_fill(unsigned char *p, uint32_t size, uint64_t seq,
                         uint32_t src)
{
	uint64_t sum;
	uint32_t check;

	body_fill(p + PL_HDR, size - PL_HDR, mix64(seq * K1 + src));
	sum = body_sum(p + PL_HDR, size - PL_HDR);
	check = payload_check_word(sum, seq, src, size);

	memcpy(p, &seq, 8);
	memcpy(p + 8, &src, 4);
	memcpy(p + 12, &check, 4);
}

/* 0 when the checksum holds; fills seq and src. */
static int payload_verify(const unsigned char *p, uint32_t size, uint64_t *seq,
                          uint32_t *src)
{
	uint32_t check;

	if (size < PL_HDR)
		return -1;
	memcpy(seq, p, 8);
	memcpy(src, p + 8, 4);
	memcpy(&check, p + 12, 4);
	return check == payload_check_word(body_sum(p + PL_HDR, size - PL_HDR),
	                                   *seq, *src, size) ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Roles: failing, sending, receiving                                   */
/* ------------------------------------------------------------------ */

static void child_fail(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

static void child_fail(const char *fmt, ...)
{
	va_list ap;
	char buf[sizeof(g.rep->err)];
	int n;

	n = snprintf(buf, sizeof(buf), "role %d (pid %d): ", g.role,
	             (int)g.pid);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (g.rep != NULL) {
		g.rep->t_fail_ns = now_ns();
		memcpy(g.rep->err, buf, sizeof(buf));
		g.rep->ok = 0;
	}
	fprintf(stderr, "mproc-bench: FAIL: %s\n", buf);
	_exit(1);
}

static void mproc_fail(const char *call, int r)
	__attribute__((noreturn));

static void mproc_fail(const char *call, int r)
{
	if (r == -ETIMEDOUT)
		child_fail("%s: %s (%d) after %d ms: a hang", call,
		           mproc_strerror(r), r, OP_TIMEOUT_MS);
	child_fail("%s: %s (%d)", call, mproc_strerror(r), r);
}

static void write_full(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			child_fail("write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

/*
 * ep_send sends one message. A producer builds its payload at
 * g.sbuf + ENV_SIZE so the raw transports send it without a copy.
 */
static void ep_send(const struct ep *e, int32_t request, pid_t to,
                    const unsigned char *data, uint32_t size)
{
	struct envelope v;
	mproc_msg m;
	int r;

	switch (e->t) {
	case T_QUEUE:
	case T_MPIPE:
		memset(&m, 0, sizeof(m));
		m.request = request;
		m.recipient = to;
		m.size = size;
		m.data = (void *)data;
		r = mproc_send_msg(e->c, &m, OP_TIMEOUT_MS);
		if (r != 0)
			mproc_fail("mproc_send_msg", r);
		return;
	case T_PIPE:
	case T_MQ:
		break;
	default:
		child_fail("bad transport");
	}
	if (size > 0 && data != g.sbuf + ENV_SIZE)
		memcpy(g.sbuf + ENV_SIZE, data, size);
	v.request = request;
	v.sender = g.pid;
	v.recipient = to;
	v.size = size;
	memcpy(g.sbuf, &v, ENV_SIZE);
	if (e->t == T_PIPE) {
		write_full(e->fd, g.sbuf, ENV_SIZE + size);
		return;
	}
	while (mq_send(e->mq, (const char *)g.sbuf, ENV_SIZE + size, 0) != 0)
		if (errno != EINTR)
			child_fail("mq_send: %s", strerror(errno));
}

static void pipe_recv(const struct ep *e, struct rmsg *m)
{
	struct envelope v;

	for (;;) {
		size_t avail = g.ptail - g.phead, need = ENV_SIZE;
		ssize_t n;

		if (avail >= ENV_SIZE) {
			memcpy(&v, g.pbuf + g.phead, ENV_SIZE);
			if (v.size > g.maxpay)
				child_fail("raw pipe: frame of %u bytes "
				           "(max %u)", v.size, g.maxpay);
			need = ENV_SIZE + v.size;
			if (avail >= need) {
				m->request = v.request;
				m->sender = v.sender;
				m->recipient = v.recipient;
				m->size = v.size;
				m->data = g.pbuf + g.phead + ENV_SIZE;
				g.phead += need;
				return;
			}
		}
		if (avail == 0) {
			g.phead = g.ptail = 0;
		} else if (g.pcap - g.phead < need) {
			memmove(g.pbuf, g.pbuf + g.phead, avail);
			g.phead = 0;
			g.ptail = avail;
		}
		n = read(e->fd, g.pbuf + g.ptail, g.pcap - g.ptail);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			child_fail("read: %s", strerror(errno));
		}
		if (n == 0)
			child_fail("raw pipe: end of file (peer gone early)");
		g.ptail += (size_t)n;
	}
}

static void ep_recv(const struct ep *e, struct rmsg *m)
{
	struct envelope v;
	mproc_msg mm;
	ssize_t n;
	int r;

	switch (e->t) {
	case T_QUEUE:
	case T_MPIPE:
		memset(&mm, 0, sizeof(mm));
		mm.data = g.rbuf;
		mm.capacity = g.maxpay;
		r = mproc_recv(e->c, &mm, e->directed ? mproc_for_me : NULL,
		               NULL, OP_TIMEOUT_MS);
		if (r != 0)
			mproc_fail("mproc_recv", r);
		m->request = mm.request;
		m->sender = mm.sender;
		m->recipient = mm.recipient;
		m->size = mm.size;
		m->data = g.rbuf;
		return;
	case T_PIPE:
		pipe_recv(e, m);
		return;
	case T_MQ:
		while ((n = mq_receive(e->mq, (char *)g.rbuf, g.mq_msgsize,
		                       NULL)) < 0)
			if (errno != EINTR)
				child_fail("mq_receive: %s", strerror(errno));
		if ((size_t)n < ENV_SIZE)
			child_fail("mq: short message (%zd bytes)", n);
		memcpy(&v, g.rbuf, ENV_SIZE);
		if ((size_t)n != ENV_SIZE + v.size)
			child_fail("mq: %zd bytes for a %u-byte payload", n,
			           v.size);
		m->request = v.request;
		m->sender = v.sender;
		m->recipient = v.recipient;
		m->size = v.size;
		m->data = g.rbuf + ENV_SIZE;
		return;
	default:
		child_fail("bad transport");
	}
}

/* Checks a data message: request, size, checksum; returns seq and src. */
static void check_msg(const struct rmsg *m, int32_t request, uint32_t size,
                      uint64_t *seq, uint32_t *src)
{
	if (m->request != request)
		child_fail("request %d (%s), expected %d (%s)", m->request,
		           mproc_request_name(m->request), request,
		           mproc_request_name(request));
	if (m->size != size)
		child_fail("payload of %u bytes, expected %u", m->size, size);
	if (payload_verify(m->data, m->size, seq, src) != 0)
		child_fail("checksum mismatch (seq field %" PRIu64 ")", *seq);
}

static void check_sender(const struct rmsg *m, uint32_t src, uint32_t nsrc,
                         uint32_t base)
{
	if (src < base || src >= base + nsrc)
		child_fail("source index %u out of range", src);
	if (m->sender != g.sh->pids[src])
		child_fail("sender %d, expected %d (role %u)", (int)m->sender,
		           (int)g.sh->pids[src], src);
}

/* ------------------------------------------------------------------ */
/* The roles                                                           */
/* ------------------------------------------------------------------ */

static void role_producer(const struct workload *w, const struct ep *out)
{
	uint32_t P = (uint32_t)w->producers, idx = (uint32_t)g.role;
	uint64_t per = w->n / P, k;
	unsigned char *pl = g.sbuf + ENV_SIZE;
	int c;

	for (k = 0; k < per; k++) {
		payload_fill(pl, w->size, k * P + idx, idx);
		ep_send(out, MPROC_DO, MPROC_ANYONE, pl, w->size);
	}
	g.rep->count = per;
	/* The last producer to finish sends one DIE per consumer: every
	 * producer's messages are queued before it (FIFO), so the pills
	 * come after all the data. */
	if (w->consumers > 1 &&
	    __atomic_add_fetch(&g.sh->producers_done, 1, __ATOMIC_ACQ_REL) == P)
		for (c = 0; c < w->consumers; c++)
			ep_send(out, MPROC_DIE, MPROC_ANYONE, NULL, 0);
}

static void role_consumer(const struct workload *w, const struct ep *in)
{
	uint32_t P = (uint32_t)w->producers;
	bool single = w->consumers == 1;
	uint64_t last[MAX_WORKERS], count = 0, seq;
	uint32_t src, i;
	struct rmsg m;

	for (i = 0; i < P; i++)
		last[i] = NONE;
	for (;;) {
		if (single && count == w->n)
			break;
		ep_recv(in, &m);
		if (m.request == MPROC_DIE) {
			if (single)
				child_fail("DIE with a single consumer");
			break;
		}
		check_msg(&m, MPROC_DO, w->size, &seq, &src);
		check_sender(&m, src, P, 0);
		if (m.recipient != MPROC_ANYONE)
			child_fail("recipient %d, expected anyone",
			           (int)m.recipient);
		if (seq >= w->n || seq % P != src)
			child_fail("seq %" PRIu64
			           " from producer %u: not its own",
			           seq, src);
		if (last[src] != NONE && seq <= last[src])
			child_fail("seq %" PRIu64 " after %" PRIu64
			           " from producer %u: "
			           "out of order or repeated",
			           seq, last[src], src);
		if (single && seq != (last[src] == NONE ? src : last[src] + P))
			child_fail("seq %" PRIu64
			           " from producer %u: expected %" PRIu64
			           " (lost)",
			           seq, src,
			           last[src] == NONE ? (uint64_t)src
			                             : last[src] + P);
		last[src] = seq;
		if (!single)
			g.sh->seen[seq] = 1;
		count++;
	}
	g.rep->count = count;
}

static void role_pinger(const struct workload *w, const struct ep *out,
                        const struct ep *in)
{
	uint64_t total = w->warm + w->n, i, seq, t1, t2;
	uint64_t *rtt = xmalloc(w->n * sizeof(*rtt));
	unsigned char *pl = g.sbuf + ENV_SIZE;
	pid_t peer = g.sh->pids[1];
	struct rmsg m;
	uint32_t src;
	size_t p99;
	double med;

	memset(rtt, 0, w->n * sizeof(*rtt));
	for (i = 0; i < total; i++) {
		payload_fill(pl, w->size, i, 0);
		t1 = now_ns();
		ep_send(out, MPROC_DO, peer, pl, w->size);
		ep_recv(in, &m);
		t2 = now_ns();
		check_msg(&m, MPROC_FINISHED, w->size, &seq, &src);
		check_sender(&m, 1, 1, 1);
		if (seq != i || src != 0)
			child_fail("pong for seq %" PRIu64
			           " src %u, expected %" PRIu64,
			           seq, src, i);
		if (i >= w->warm)
			rtt[i - w->warm] = t2 - t1;
	}
	g.rep->t_end_ns = now_ns();
	ep_send(out, MPROC_DIE, peer, NULL, 0);
	qsort(rtt, w->n, sizeof(*rtt), cmp_u64);
	p99 = (size_t)((w->n * 99 + 99) / 100);
	if (p99 > 0)
		p99--;
	med = (double)rtt[w->n / 2];
	if (w->n % 2 == 0)
		med = (med + (double)rtt[w->n / 2 - 1]) / 2;
	g.rep->rtt_med_us = med / 1e3;
	g.rep->rtt_p99_us = (double)rtt[p99] / 1e3;
	g.rep->count = total;
	free(rtt);
}

static void role_ponger(const struct workload *w, const struct ep *out,
                        const struct ep *in)
{
	uint64_t expect = 0, seq;
	pid_t peer = g.sh->pids[0];
	struct rmsg m;
	uint32_t src;

	for (;;) {
		ep_recv(in, &m);
		if (m.request == MPROC_DIE)
			break;
		check_msg(&m, MPROC_DO, w->size, &seq, &src);
		check_sender(&m, 0, 1, 0);
		if (seq != expect || src != 0)
			child_fail("ping seq %" PRIu64 ", expected %" PRIu64,
			           seq, expect);
		expect++;
		/* Echo the payload back: the pinger checks it. */
		ep_send(out, MPROC_FINISHED, peer, m.data, m.size);
	}
	if (m.sender != peer)
		child_fail("DIE from %d, expected %d", (int)m.sender,
		           (int)peer);
	g.rep->count = expect;
}

static void role_dispatcher(const struct workload *w, const struct ep *task,
                            int ntask, const struct ep *res)
{
	uint32_t nw = (uint32_t)w->workers;
	uint64_t N = w->n, sent = 0, got = 0, seq;
	unsigned char *seen = xmalloc(N);
	unsigned char *pl = g.sbuf + ENV_SIZE;
	struct rmsg m;
	uint32_t src, k;

	memset(seen, 0, N);
	while (got < N) {
		while (sent < N && sent - got < (uint64_t)w->window) {
			k = (uint32_t)(sent % nw);
			payload_fill(pl, w->size, sent, 0);
			ep_send(ntask > 1 ? &task[k] : &task[0], MPROC_DO,
			        w->directed ? g.sh->pids[1 + k] : MPROC_ANYONE,
			        pl, w->size);
			sent++;
		}
		ep_recv(res, &m);
		check_msg(&m, MPROC_FINISHED, RESULT_SIZE, &seq, &src);
		check_sender(&m, src, nw, 1);
		if (m.recipient != g.pid)
			child_fail("result addressed to %d", (int)m.recipient);
		if (seq >= sent)
			child_fail("result for task %" PRIu64 " never sent",
			           seq);
		if (seen[seq])
			child_fail("second result for task %" PRIu64, seq);
		if (w->directed && src != 1 + seq % nw)
			child_fail("task %" PRIu64
			           " done by worker %u, addressed to %u",
			           seq, src, (uint32_t)(1 + seq % nw));
		seen[seq] = 1;
		got++;
	}
	for (k = 0; k < nw; k++)
		ep_send(ntask > 1 ? &task[k] : &task[0], MPROC_DIE,
		        w->directed ? g.sh->pids[1 + k] : MPROC_ANYONE, NULL,
		        0);
	g.rep->count = got;
	free(seen);
}

static void role_worker(const struct workload *w, const struct ep *task,
                        const struct ep *res)
{
	uint32_t nw = (uint32_t)w->workers, me = (uint32_t)g.role;
	uint64_t last = NONE, count = 0, seq;
	unsigned char rpl[RESULT_SIZE];
	pid_t disp = g.sh->pids[0];
	struct rmsg m;
	uint32_t src;

	for (;;) {
		ep_recv(task, &m);
		if (w->directed && m.recipient != g.pid)
			child_fail("took a %s addressed to %d",
			           mproc_request_name(m.request),
			           (int)m.recipient);
		if (m.request == MPROC_DIE)
			break;
		check_msg(&m, MPROC_DO, w->size, &seq, &src);
		check_sender(&m, src, 1, 0);
		if (seq >= w->n)
			child_fail("task %" PRIu64 " out of range", seq);
		if (last != NONE && seq <= last)
			child_fail("task %" PRIu64 " after %" PRIu64
			           ": out of order",
			           seq, last);
		if (w->directed && (seq % nw != me - 1 ||
		                    seq != (last == NONE ? me - 1 : last + nw)))
			child_fail("task %" PRIu64 " (after %" PRIu64
			           ") is not worker "
			           "%u's next",
			           seq, last, me);
		last = seq;
		payload_fill(rpl, RESULT_SIZE, seq, me);
		ep_send(res, MPROC_FINISHED, disp, rpl, RESULT_SIZE);
		count++;
	}
	if (m.sender != disp)
		child_fail("DIE from %d, expected %d", (int)m.sender,
		           (int)disp);
	g.rep->count = count;
}

/*
 * pool_task runs in the pool's workers: checks the task like role_worker
 * and answers {seq, 1, check}. Any other status than 0 fails the run.
 */
static int pool_task(const mproc_msg *task, mproc_msg *result, void *arg)
{
	const struct workload *w = arg;
	uint64_t seq = 0;
	uint32_t src = 0;
	const char *bad = NULL;

	if (task->request != MPROC_DO)
		bad = "request";
	else if (task->sender != g.sh->pids[0])
		bad = "sender";
	else if (task->size != w->size)
		bad = "size";
	else if (payload_verify(task->data, task->size, &seq, &src) != 0)
		bad = "checksum";
	else if (src != 0 || seq >= w->n)
		bad = "seq";
	else if (result->capacity < RESULT_SIZE)
		bad = "result capacity";
	if (bad != NULL) {
		fprintf(stderr,
		        "mproc-bench: FAIL: pool worker %d: bad task "
		        "(%s), seq field %" PRIu64 "\n",
		        (int)getpid(), bad, seq);
		return 1;
	}
	payload_fill(result->data, RESULT_SIZE, seq, 1);
	result->size = RESULT_SIZE;
	return 0;
}

/* Before the go: the pool forks its workers (not timed). */
static mproc_pool *pool_open(const struct workload *w)
{
	mproc_pool_opts po;
	mproc_pool *pool = NULL;
	int r;

	memset(&po, 0, sizeof(po));
	po.workers = w->workers;
	if (w->size > MPROC_QUEUE_DEFAULT_MAX_PAYLOAD)
		po.max_payload = w->size;
	r = mproc_pool_start(&pool, pool_task, (void *)w, &po);
	if (r != 0)
		mproc_fail("mproc_pool_start", r);
	return pool;
}

/* W6 through mproc_pool_*: submit, collect, stop (DIE). */
static void role_pool(const struct workload *w, mproc_pool *pool)
{
	uint64_t N = w->n, sent = 0, got = 0, seq;
	uint64_t *ids = xmalloc(N * sizeof(*ids));
	unsigned char *seen = xmalloc(N);
	unsigned char *pl = g.sbuf + ENV_SIZE;
	mproc_worker_exit ex[MAX_WORKERS];
	mproc_result r;
	uint32_t src;
	int rc, i;

	memset(seen, 0, N);
	while (got < N) {
		while (sent < N && sent - got < (uint64_t)w->window) {
			payload_fill(pl, w->size, sent, 0);
			rc = mproc_pool_submit(pool, pl, w->size, &ids[sent],
			                       OP_TIMEOUT_MS);
			if (rc != 0)
				mproc_fail("mproc_pool_submit", rc);
			sent++;
		}
		memset(&r, 0, sizeof(r));
		r.data = g.rbuf;
		r.capacity = g.maxpay;
		rc = mproc_pool_result(pool, &r, OP_TIMEOUT_MS);
		if (rc != 0)
			mproc_fail("mproc_pool_result", rc);
		if (r.status != 0 || r.request != MPROC_FINISHED ||
		    r.attempts != 1)
			child_fail("pool result: status %d, request %d, "
			           "attempts %u", r.status, r.request, r.attempts);
		if (r.size != RESULT_SIZE ||
		    payload_verify(r.data, r.size, &seq, &src) != 0 || src != 1)
			child_fail("pool result: bad payload (%u bytes)",
			           r.size);
		if (seq >= sent || seen[seq] || r.task_id != ids[seq])
			child_fail("pool result: task %" PRIu64 " (id %" PRIu64
			           "): never sent, twice, or under another id",
			           seq, r.task_id);
		if (r.worker <= 0 || r.worker == g.pid)
			child_fail("pool result: worker pid %d", (int)r.worker);
		seen[seq] = 1;
		got++;
	}
	g.rep->t_end_ns = now_ns();
	rc = mproc_pool_stop(pool, OP_TIMEOUT_MS, ex, MAX_WORKERS);
	if (rc != w->workers)
		child_fail("mproc_pool_stop reported %d workers, expected %d",
		           rc, w->workers);
	for (i = 0; i < rc; i++)
		if (ex[i].how != MPROC_EXIT_DIE)
			child_fail("pool worker %d ended with how=%d "
			           "status 0x%x", (int)ex[i].pid, ex[i].how,
			           ex[i].status);
	rc = mproc_pool_free(pool);
	if (rc != 0)
		mproc_fail("mproc_pool_free", rc);
	g.rep->count = got;
	free(ids);
	free(seen);
}

/* ------------------------------------------------------------------ */
/* Channels                                                            */
/* ------------------------------------------------------------------ */

static int nroles(const struct workload *w, enum transport t)
{
	if (t == T_POOL)
		return 1; /* the pool forks its own workers */
	switch (w->kind) {
	case K_STREAM:
		return w->producers + w->consumers;
	case K_PINGPONG:
		return 2;
	default:
		return 1 + w->workers;
	}
}

static uint32_t wl_maxpay(const struct workload *w)
{
	return w->size > RESULT_SIZE ? w->size : RESULT_SIZE;
}

/* How many channels a run of w over t uses. */
static int nchans(const struct workload *w, enum transport t)
{
	if (t == T_POOL)
		return 0;
	switch (w->kind) {
	case K_STREAM:
		return 1;
	case K_PINGPONG:
		return t == T_MPIPE ? 1 : 2;
	default:
		/* channel 0: results; then one task channel, or one per
		 * worker where the transport cannot select by recipient */
		if (t == T_PIPE || (t == T_MQ && w->directed))
			return 1 + w->workers;
		return 2;
	}
}

static unsigned g_mq_serial;

static int mq_open_one(mqd_t *q, long depth, long msgsize)
{
	struct mq_attr a;
	char name[64];
	int e;

	memset(&a, 0, sizeof(a));
	a.mq_maxmsg = depth;
	a.mq_msgsize = msgsize;
	snprintf(name, sizeof(name), "/mproc-bench-%d-%u", (int)getpid(),
	         g_mq_serial++);
	*q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
	if (*q == (mqd_t)-1)
		return -errno;
	/* Unlinked at once: the descriptors (inherited by fork) keep it
	 * alive, and nothing is left behind whatever happens. */
	if (mq_unlink(name) != 0) {
		e = -errno;
		mq_close(*q);
		return e;
	}
	return 0;
}

static void chans_close(struct chans *ch)
{
	int i;

	for (i = 0; i < ch->n; i++) {
		if (ch->c[i][0] != NULL)
			mproc_close(ch->c[i][0]);
		if (ch->c[i][1] != NULL)
			mproc_close(ch->c[i][1]);
		if (ch->fd[i][0] >= 0)
			close(ch->fd[i][0]);
		if (ch->fd[i][1] >= 0)
			close(ch->fd[i][1]);
		if (ch->mq[i] != (mqd_t)-1)
			mq_close(ch->mq[i]);
		ch->c[i][0] = ch->c[i][1] = NULL;
		ch->fd[i][0] = ch->fd[i][1] = -1;
		ch->mq[i] = (mqd_t)-1;
	}
}

/*
 * chans_open opens the channels of one run. Returns 0, 1 when mproc says
 * -ENOSYS (not built yet), -1 on failure (why filled).
 */
static int chans_open(const struct workload *w, enum transport t,
                      struct chans *ch, char *why, size_t whylen)
{
	mproc_queue_opts qo;
	int i, r;

	memset(ch, 0, sizeof(*ch));
	ch->t = t;
	ch->n = nchans(w, t);
	for (i = 0; i < MAX_CH; i++) {
		ch->fd[i][0] = ch->fd[i][1] = -1;
		ch->mq[i] = (mqd_t)-1;
	}
	memset(&qo, 0, sizeof(qo));
	if (wl_maxpay(w) > MPROC_QUEUE_DEFAULT_MAX_PAYLOAD) {
		qo.max_payload = wl_maxpay(w);
		qo.capacity = (size_t)8 * (wl_maxpay(w) + 64);
		if (qo.capacity < MPROC_QUEUE_DEFAULT_CAPACITY)
			qo.capacity = MPROC_QUEUE_DEFAULT_CAPACITY;
	}
	for (i = 0; i < ch->n; i++) {
		switch (t) {
		case T_QUEUE:
			r = mproc_queue_open(&ch->c[i][0], &qo);
			if (r == -ENOSYS)
				goto nosys;
			if (r != 0) {
				snprintf(why, whylen,
				         "mproc_queue_open: %s (%d)",
				         mproc_strerror(r), r);
				goto fail;
			}
			break;
		case T_MPIPE:
			r = mproc_pipe_open(&ch->c[i][0], &ch->c[i][1]);
			if (r == -ENOSYS)
				goto nosys;
			if (r != 0) {
				snprintf(why, whylen,
				         "mproc_pipe_open: %s (%d)",
				         mproc_strerror(r), r);
				goto fail;
			}
			break;
		case T_PIPE:
			if (pipe2(ch->fd[i], O_CLOEXEC) != 0) {
				snprintf(why, whylen, "pipe2: %s",
				         strerror(errno));
				goto fail;
			}
			break;
		case T_POOL:
			break;
		case T_MQ:
			r = mq_open_one(&ch->mq[i], w->mq_depth,
			                (long)(ENV_SIZE + wl_maxpay(w)));
			if (r != 0) {
				snprintf(why, whylen, "mq_open (depth %ld): %s",
				         w->mq_depth, strerror(-r));
				goto fail;
			}
			break;
		default:
			goto fail;
		}
	}
	return 0;
nosys:
	chans_close(ch);
	snprintf(why, whylen, "n/a (not built yet)");
	return 1;
fail:
	chans_close(ch);
	return -1;
}

/* The channel handle a role uses: ch index i, for sending or receiving. */
static struct ep ep_of(const struct chans *ch, int i, bool send, int end)
{
	struct ep e;

	memset(&e, 0, sizeof(e));
	e.t = ch->t;
	e.fd = -1;
	e.mq = (mqd_t)-1;
	switch (ch->t) {
	case T_QUEUE:
		e.c = ch->c[i][0];
		break;
	case T_MPIPE:
		e.c = ch->c[i][end];
		break;
	case T_PIPE:
		e.fd = ch->fd[i][send ? 1 : 0];
		break;
	default:
		e.mq = ch->mq[i];
		break;
	}
	return e;
}

static bool ep_uses(const struct ep *eps, int n, const void *c, int fd,
                    mqd_t mq)
{
	int i;

	for (i = 0; i < n; i++) {
		if (c != NULL && eps[i].c == c)
			return true;
		if (fd >= 0 && eps[i].fd == fd)
			return true;
		if (mq != (mqd_t)-1 && eps[i].mq == mq)
			return true;
	}
	return false;
}

/* In a role: close every inherited handle it does not use. */
static void chans_keep(struct chans *ch, const struct ep *eps, int n)
{
	int i, j;

	for (i = 0; i < ch->n; i++) {
		for (j = 0; j < 2; j++) {
			if (ch->c[i][j] != NULL &&
			    !ep_uses(eps, n, ch->c[i][j], -1, (mqd_t)-1))
				mproc_close(ch->c[i][j]);
			if (ch->fd[i][j] >= 0 &&
			    !ep_uses(eps, n, NULL, ch->fd[i][j], (mqd_t)-1))
				close(ch->fd[i][j]);
		}
		if (ch->mq[i] != (mqd_t)-1 &&
		    !ep_uses(eps, n, NULL, -1, ch->mq[i]))
			mq_close(ch->mq[i]);
	}
}

static void ep_close(struct ep *e)
{
	if (e->c != NULL)
		mproc_close(e->c);
	if (e->fd >= 0)
		close(e->fd);
	if (e->mq != (mqd_t)-1)
		mq_close(e->mq);
}

/* ------------------------------------------------------------------ */
/* A child: one role of one run                                        */
/* ------------------------------------------------------------------ */

static void child_main(const struct workload *w, struct chans *ch, int role,
                       int go_r, int go_w) __attribute__((noreturn));

static void child_main(const struct workload *w, struct chans *ch, int role,
                       int go_r, int go_w)
{
	struct ep eps[MAX_CH];
	int ne = 0, i, P = w->producers;
	mproc_pool *pool = NULL;
	char c;
	ssize_t n;

	close(go_w);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN); /* a raw pipe's lost reader: EPIPE, said */
	sigprocmask(SIG_SETMASK, &g_oldmask, NULL);
	g.role = role;
	g.pid = getpid();
	g.rep = &g.sh->r[role];
	g.maxpay = wl_maxpay(w);
	g.mq_msgsize = ENV_SIZE + g.maxpay;
	g.sbuf = xmalloc(ENV_SIZE + g.maxpay);
	g.rbuf = xmalloc(ENV_SIZE + g.maxpay);
	g.pcap = PIPE_RDBUF + ENV_SIZE + g.maxpay;
	g.pbuf = xmalloc(g.pcap);
	g.phead = g.ptail = 0;
	/* Fault the buffers in before the clock starts. */
	memset(g.sbuf, 0, ENV_SIZE + g.maxpay);
	memset(g.rbuf, 0, ENV_SIZE + g.maxpay);
	memset(g.pbuf, 0, g.pcap);

	switch (ch->t == T_POOL ? (enum wkind)-1 : w->kind) {
	case K_STREAM:
		eps[ne++] = ep_of(ch, 0, role < P, role < P ? 0 : 1);
		break;
	case K_PINGPONG:
		if (ch->t == T_MPIPE) {
			eps[ne++] = ep_of(ch, 0, true, role);
		} else {
			/* channel 0 carries pings, channel 1 pongs */
			eps[ne++] = ep_of(ch, role == 0 ? 0 : 1, true, 0);
			eps[ne++] = ep_of(ch, role == 0 ? 1 : 0, false, 0);
		}
		break;
	case K_POOL:
		if (role == 0) {
			eps[ne++] = ep_of(ch, 0, false, 0);
			for (i = 1; i < ch->n; i++)
				eps[ne++] = ep_of(ch, i, true, 0);
		} else {
			eps[ne++] = ep_of(ch, 0, true, 0);
			eps[ne++] = ep_of(ch, ch->n > 2 ? role : 1, false, 0);
			eps[1].directed = w->directed;
		}
		break;
	default:
		break;
	}
	chans_keep(ch, eps, ne);
	if (ch->t == T_POOL)
		pool = pool_open(w);

	/* Wait for the go: end of file when the coordinator closes it. */
	while ((n = read(go_r, &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 0)
		child_fail("go pipe: unexpected read %zd", n);
	close(go_r);
	g.rep->t_start_ns = now_ns();

	switch (ch->t == T_POOL ? (enum wkind)-1 : w->kind) {
	case K_STREAM:
		if (role < P)
			role_producer(w, &eps[0]);
		else
			role_consumer(w, &eps[0]);
		break;
	case K_PINGPONG:
		if (ch->t == T_MPIPE) {
			if (role == 0)
				role_pinger(w, &eps[0], &eps[0]);
			else
				role_ponger(w, &eps[0], &eps[0]);
		} else if (role == 0) {
			role_pinger(w, &eps[0], &eps[1]);
		} else {
			role_ponger(w, &eps[0], &eps[1]);
		}
		break;
	case K_POOL:
		if (role == 0)
			role_dispatcher(w, &eps[1], ne - 1, &eps[0]);
		else
			role_worker(w, &eps[1], &eps[0]);
		break;
	default:
		role_pool(w, pool);
		break;
	}
	if (g.rep->t_end_ns == 0)
		g.rep->t_end_ns = now_ns();
	for (i = 0; i < ne; i++)
		ep_close(&eps[i]);
	g.rep->ok = 1;
	_exit(0);
}

/* ------------------------------------------------------------------ */
/* The coordinator: one run                                            */
/* ------------------------------------------------------------------ */

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double cpu_s(void)
{
	struct rusage s, c;

	getrusage(RUSAGE_SELF, &s);
	getrusage(RUSAGE_CHILDREN, &c);
	return tv_s(s.ru_utime) + tv_s(s.ru_stime) + tv_s(c.ru_utime) +
	       tv_s(c.ru_stime);
}

static void describe_status(char *buf, size_t n, int role, pid_t pid, int st)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "role %d (pid %d) exited %d", role, (int)pid,
		         WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "role %d (pid %d) killed by signal %d (%s)",
		         role, (int)pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, n, "role %d (pid %d) status 0x%x", role, (int)pid,
		         st);
}

/*
 * reap_all waits for every role, at most watchdog_s seconds. The first
 * role that fails (or the watchdog) gets the others SIGKILLed. Returns 0
 * when every role exited 0.
 */
static int reap_all(pid_t *pids, int n, int watchdog_s, char *why,
                    size_t whylen)
{
	uint64_t deadline = now_ns() + (uint64_t)watchdog_s * 1000000000u;
	sigset_t chld;
	int alive = n, failed = 0, i, st;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	while (alive > 0) {
		struct timespec ts;
		uint64_t now, left;
		pid_t p;

		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			for (i = 0; i < n && pids[i] != p; i++)
				;
			if (i == n)
				continue;
			pids[i] = 0;
			alive--;
			if ((!WIFEXITED(st) || WEXITSTATUS(st) != 0) &&
			    !failed) {
				failed = 1;
				describe_status(why, whylen, i, p, st);
				for (i = 0; i < n; i++)
					if (pids[i] > 0)
						kill(pids[i], SIGKILL);
			}
		}
		if (alive == 0)
			break;
		now = now_ns();
		if (now >= deadline) {
			if (!failed) {
				failed = 1;
				snprintf(why, whylen,
				         "watchdog: not done after %d s "
				         "(a hang); killed",
				         watchdog_s);
			}
			for (i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGKILL);
			deadline = now + 5000000000u;
			continue;
		}
		left = deadline - now;
		if (left > 1000000000u)
			left = 1000000000u;
		ts.tv_sec = (time_t)(left / 1000000000u);
		ts.tv_nsec = (long)(left % 1000000000u);
		sigtimedwait(&chld, NULL, &ts);
	}
	return failed ? -1 : 0;
}

static size_t shared_size(uint64_t nseen)
{
	return sizeof(struct shared) + (size_t)nseen;
}

static void run_once(const struct workload *w, enum transport t,
                     struct sample *s)
{
	struct chans ch;
	struct shared *sh;
	pid_t pids[MAX_ROLES];
	int nr = nroles(w, t), go[2], i, r;
	uint64_t nseen = (w->kind == K_STREAM && w->consumers > 1) ? w->n : 0;
	uint64_t t0, tend = 0, total = 0, expect;
	size_t shsz = shared_size(nseen);
	double c0, c1;

	memset(s, 0, sizeof(*s));
	sh = mmap(NULL, shsz, PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(s->why, sizeof(s->why), "mmap: %s", strerror(errno));
		s->status = -1;
		return;
	}
	memset(sh, 0, shsz);
	g.sh = sh;
	r = chans_open(w, t, &ch, s->why, sizeof(s->why));
	if (r != 0) {
		s->status = r > 0 ? 1 : -1;
		munmap(sh, shsz);
		return;
	}
	if (pipe2(go, O_CLOEXEC) != 0) {
		snprintf(s->why, sizeof(s->why), "pipe2: %s", strerror(errno));
		s->status = -1;
		chans_close(&ch);
		munmap(sh, shsz);
		return;
	}
	fflush(NULL);
	c0 = cpu_s();
	for (i = 0; i < nr; i++) {
		pid_t p = fork();

		if (p == 0)
			child_main(w, &ch, i, go[0], go[1]);
		if (p < 0) {
			snprintf(s->why, sizeof(s->why), "fork: %s",
			         strerror(errno));
			break;
		}
		pids[i] = p;
		sh->pids[i] = p;
	}
	chans_close(&ch);
	close(go[0]);
	if (i < nr) {
		nr = i;
		for (i = 0; i < nr; i++)
			kill(pids[i], SIGKILL);
		close(go[1]);
		reap_all(pids, nr, 10, s->why + strlen(s->why), 1);
		s->status = -1;
		munmap(sh, shsz);
		return;
	}
	t0 = now_ns();
	close(go[1]);
	r = reap_all(pids, nr, opt_quick ? WATCHDOG_QUICK_S : WATCHDOG_S,
	             s->why, sizeof(s->why));
	c1 = cpu_s();
	if (r != 0) {
		/* The words of the role that failed first: the others
		 * usually fail because of it (peer gone). */
		int first = -1;

		for (i = 0; i < nr; i++)
			if (sh->r[i].err[0] != '\0' &&
			    (first < 0 ||
			     sh->r[i].t_fail_ns < sh->r[first].t_fail_ns))
				first = i;
		if (first >= 0) {
			size_t l = strlen(s->why);

			snprintf(s->why + l, sizeof(s->why) - l, "; first: %s",
			         sh->r[first].err);
		}
		s->status = -1;
		munmap(sh, shsz);
		return;
	}
	for (i = 0; i < nr; i++) {
		if (!sh->r[i].ok || sh->r[i].t_end_ns < t0) {
			snprintf(s->why, sizeof(s->why),
			         "role %d left no report", i);
			s->status = -1;
			munmap(sh, shsz);
			return;
		}
		if (sh->r[i].t_end_ns > tend)
			tend = sh->r[i].t_end_ns;
	}
	/* The totals: every message delivered exactly once. */
	switch (w->kind) {
	case K_STREAM:
		for (i = w->producers; i < nr; i++)
			total += sh->r[i].count;
		if (total != w->n) {
			snprintf(s->why, sizeof(s->why),
			         "consumers took %" PRIu64 " messages, %" PRIu64
			         " were sent",
			         total, w->n);
			s->status = -1;
		} else if (nseen && memchr(sh->seen, 0, nseen) != NULL) {
			snprintf(s->why, sizeof(s->why),
			         "message %td never arrived "
			         "(and another arrived twice)",
			         (unsigned char *)memchr(sh->seen, 0, nseen) -
			                 sh->seen);
			s->status = -1;
		}
		break;
	case K_PINGPONG:
		if (sh->r[0].count != w->warm + w->n ||
		    sh->r[1].count != w->warm + w->n) {
			snprintf(s->why, sizeof(s->why),
			         "round trips %" PRIu64 "/%" PRIu64
			         ", expected %" PRIu64,
			         sh->r[0].count, sh->r[1].count,
			         w->warm + w->n);
			s->status = -1;
		}
		s->rtt_med_us = sh->r[0].rtt_med_us;
		s->rtt_p99_us = sh->r[0].rtt_p99_us;
		break;
	default:
		if (t == T_POOL) {
			if (sh->r[0].count != w->n) {
				snprintf(s->why, sizeof(s->why),
				         "pool: %" PRIu64
				         " results of %" PRIu64,
				         sh->r[0].count, w->n);
				s->status = -1;
			}
			break;
		}
		for (i = 1; i < nr; i++) {
			total += sh->r[i].count;
			expect = w->n / (uint64_t)w->workers +
			         ((uint64_t)(i - 1) <
			          w->n % (uint64_t)w->workers);
			if (w->directed && sh->r[i].count != expect) {
				snprintf(s->why, sizeof(s->why),
				         "worker %d did %" PRIu64
				         " tasks, %" PRIu64
				         " were addressed to it",
				         i, sh->r[i].count, expect);
				s->status = -1;
			}
		}
		if (s->status == 0 &&
		    (total != w->n || sh->r[0].count != w->n)) {
			snprintf(s->why, sizeof(s->why),
			         "workers did %" PRIu64
			         " tasks, dispatcher collected %" PRIu64
			         ", of %" PRIu64,
			         total, sh->r[0].count, w->n);
			s->status = -1;
		}
		break;
	}
	s->elapsed_s = (double)(tend - t0) / 1e9;
	s->rate = (double)w->n / s->elapsed_s;
	s->cpu_us = (c1 - c0) * 1e6 / (double)w->n;
	munmap(sh, shsz);
}

/* ------------------------------------------------------------------ */
/* POSIX mq depth and the sysctls                                       */
/* ------------------------------------------------------------------ */

static long sysctl_read(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Async-signal-safe. */
static int sysctl_write(const char *path, long v)
{
	char buf[32];
	int fd, n = 0, ok;
	char tmp[32];
	unsigned long u = (unsigned long)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0 && n < (int)sizeof(tmp));
	for (fd = 0; fd < n; fd++)
		buf[fd] = tmp[n - 1 - fd];
	buf[n++] = '\n';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = write(fd, buf, (size_t)n) == n;
	close(fd);
	return ok ? 0 : -1;
}

static void sysctl_restore(void)
{
	if (g_msgmax_orig >= 0)
		sysctl_write(MQ_MSG_MAX, g_msgmax_orig);
	if (g_msgsize_orig >= 0)
		sysctl_write(MQ_MSGSIZE_MAX, g_msgsize_orig);
	g_msgmax_orig = g_msgsize_orig = -1;
}

static void on_signal(int sig)
{
	sysctl_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * mq_pick_depth chooses the deepest mq depth for w: the depth whose bytes
 * match mproc's default 1 MiB ring (at least 10, at most 65536), lowered
 * until w->nmq queues open at once (msg_max, RLIMIT_MSGQUEUE). Raises
 * msg_max (and msgsize_max) when allowed; they are restored at exit.
 */
static void mq_pick_depth(struct workload *w)
{
	long msgsize = (long)(ENV_SIZE + wl_maxpay(w));
	long target = (long)MQ_BYTES_TARGET / msgsize, d, cur;
	mqd_t q[MAX_CH];
	int i, r = 0;

	if (target < 10)
		target = 10;
	if (target > MQ_HARD_MAX)
		target = MQ_HARD_MAX;
	cur = sysctl_read(MQ_MSGSIZE_MAX);
	if (cur > 0 && cur < msgsize && !opt_quick && !opt_no_raise) {
		if (g_msgsize_orig < 0)
			g_msgsize_orig = cur;
		if (sysctl_write(MQ_MSGSIZE_MAX, msgsize) != 0 &&
		    g_msgsize_orig == cur)
			g_msgsize_orig = -1;
	}
	cur = sysctl_read(MQ_MSG_MAX);
	if (cur > 0 && cur < target && !opt_quick && !opt_no_raise) {
		if (g_msgmax_orig < 0)
			g_msgmax_orig = cur;
		if (sysctl_write(MQ_MSG_MAX, target) != 0 &&
		    g_msgmax_orig == cur)
			g_msgmax_orig = -1;
	}
	cur = sysctl_read(MQ_MSG_MAX);
	d = target;
	if (cur > 0 && cur < d)
		d = cur;
	while (d >= 1) {
		for (i = 0; i < w->nmq; i++) {
			r = mq_open_one(&q[i], d, msgsize);
			if (r != 0)
				break;
		}
		while (i > 0)
			mq_close(q[--i]);
		if (r == 0)
			break;
		if (r != -EINVAL && r != -EMFILE && r != -ENOMEM &&
		    r != -ENOSPC)
			break;
		d = d > 16 ? d * 7 / 8 : d - 1;
	}
	if (r != 0 || d < 1) {
		w->mq_depth = 0;
		cur = sysctl_read(MQ_MSGSIZE_MAX);
		if (cur > 0 && cur < msgsize)
			snprintf(w->mq_why, sizeof(w->mq_why), "n/a (%ld-byte "
			         "messages, msgsize_max %ld)", msgsize, cur);
		else
			snprintf(w->mq_why, sizeof(w->mq_why), "n/a (mq_open: "
			         "%s)", strerror(-r));
		return;
	}
	w->mq_depth = d;
	if (w->kind == K_POOL && w->window > d)
		w->window = (int)d;
}

/* ------------------------------------------------------------------ */
/* Printing                                                            */
/* ------------------------------------------------------------------ */

static char *fmt_rate(char *buf, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(buf, n, "%.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, n, "%.1f k", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
	return buf;
}

struct stats {
	int n;          /* ok runs */
	double rate[3]; /* median, min, max */
	double cpu[3];
	double rtt[3];
	double p99[3];
};

static void stat3(const double *v, int n, double out[3])
{
	int i;

	out[0] = median_of(v, n);
	out[1] = out[2] = n ? v[0] : 0;
	for (i = 1; i < n; i++) {
		if (v[i] < out[1])
			out[1] = v[i];
		if (v[i] > out[2])
			out[2] = v[i];
	}
}

/* Stats over the runs of a row; n = 0 when a run failed or was n/a. */
static void row_stats(const struct row *rw, struct stats *st)
{
	double a[MAX_RUNS], b[MAX_RUNS], c[MAX_RUNS], d[MAX_RUNS];
	int i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < rw->nruns; i++) {
		if (rw->s[i].status != 0)
			return;
		a[i] = rw->s[i].rate;
		b[i] = rw->s[i].cpu_us;
		c[i] = rw->s[i].rtt_med_us;
		d[i] = rw->s[i].rtt_p99_us;
	}
	st->n = rw->nruns;
	stat3(a, st->n, st->rate);
	stat3(b, st->n, st->cpu);
	stat3(c, st->n, st->rtt);
	stat3(d, st->n, st->p99);
}

/* Ratios of mproc row m to baseline row b, run by run. */
struct ratio {
	double rate[3]; /* m.rate / b.rate */
	double cpu[3];  /* m.cpu / b.cpu */
	double rtt[3];  /* m.rtt / b.rtt */
};

static int ratio_of(const struct row *m, const struct row *b, struct ratio *out)
{
	double r[MAX_RUNS], c[MAX_RUNS], l[MAX_RUNS];
	struct stats sm, sb;
	int i;

	row_stats(m, &sm);
	row_stats(b, &sb);
	if (sm.n == 0 || sb.n == 0 || m->nruns != b->nruns)
		return -1;
	for (i = 0; i < m->nruns; i++) {
		r[i] = m->s[i].rate / b->s[i].rate;
		c[i] = m->s[i].cpu_us / b->s[i].cpu_us;
		l[i] = b->s[i].rtt_med_us > 0
		               ? m->s[i].rtt_med_us / b->s[i].rtt_med_us
		               : 0;
	}
	stat3(r, m->nruns, out->rate);
	stat3(c, m->nruns, out->cpu);
	stat3(l, m->nruns, out->rtt);
	return 0;
}

static void row_label(char *buf, size_t n, const struct workload *w, int t)
{
	if (t == T_MQ)
		snprintf(buf, n, "%s (depth %ld)", tname[t], w->mq_depth);
	else
		snprintf(buf, n, "%s", tname[t]);
}

static const char *row_failure(const struct row *rw, int *status)
{
	int i;

	for (i = 0; i < rw->nruns; i++)
		if (rw->s[i].status != 0) {
			*status = rw->s[i].status;
			return rw->s[i].why;
		}
	*status = 0;
	return NULL;
}

static void print_table(const struct workload *w, const struct row *rows)
{
	char lab[64], a[32], b[80], c[40];
	struct stats st;
	struct ratio ra;
	int t, bt, status;
	const char *why;

	printf("\n%s  %s, %u B payload, %" PRIu64 " %s%s, %d run%s "
	       "(median [min - max])\n", w->id, w->title, w->size, w->n,
	       w->kind == K_PINGPONG ? "round trips" :
	       w->kind == K_POOL ? "tasks" : "messages",
	       w->kind == K_POOL ? (w->directed ? " addressed to workers"
	                                        : "") : "",
	       rows[T_QUEUE].nruns > 0 ? rows[T_QUEUE].nruns : opt_runs,
	       opt_runs == 1 ? "" : "s");
	if (w->kind == K_POOL)
		printf("    %d workers, at most %d tasks in flight; raw pipe: one "
		       "task pipe per worker, one result pipe\n",
		       w->workers, w->window);
	if (w->kind == K_PINGPONG)
		printf("    %-24s %-12s %-24s %-10s %-10s %s\n", "transport",
		       w->unit, "[min - max]", "RTT med", "RTT p99",
		       "CPU us/rt");
	else
		printf("    %-24s %-12s %-24s %s\n", "transport", w->unit,
		       "[min - max]",
		       w->kind == K_POOL ? "CPU us/task" : "CPU us/msg");
	for (t = 0; t < T_NTRANS; t++) {
		if (!w->has[t])
			continue;
		row_label(lab, sizeof(lab), w, t);
		why = row_failure(&rows[t], &status);
		if (t == T_MQ && w->mq_depth <= 0) {
			printf("    %-24s %s\n", tname[t], w->mq_why);
			continue;
		}
		if (why != NULL) {
			printf("    %-24s %s%s\n", lab,
			       status < 0 ? "FAIL: " : "", why);
			continue;
		}
		row_stats(&rows[t], &st);
		snprintf(c, sizeof(c), "[%s",
		         fmt_rate(a, sizeof(a), st.rate[1]));
		snprintf(b, sizeof(b), "%s - %s]", c,
		         fmt_rate(a, sizeof(a), st.rate[2]));
		if (w->kind == K_PINGPONG) {
			char med[32], p99[32];

			snprintf(med, sizeof(med), "%.2f us", st.rtt[0]);
			snprintf(p99, sizeof(p99), "%.2f us", st.p99[0]);
			printf("    %-24s %-12s %-24s %-10s %-10s %.3f\n", lab,
			       fmt_rate(a, sizeof(a), st.rate[0]), b, med, p99,
			       st.cpu[0]);
		} else {
			printf("    %-24s %-12s %-24s %.3f\n", lab,
			       fmt_rate(a, sizeof(a), st.rate[0]), b,
			       st.cpu[0]);
		}
	}
	for (t = T_QUEUE; t <= T_POOL; t++) {
		if (!w->has[t])
			continue;
		for (bt = T_PIPE; bt <= T_MQ; bt++) {
			if (!w->has[bt] ||
			    ratio_of(&rows[t], &rows[bt], &ra) != 0)
				continue;
			snprintf(lab, sizeof(lab), "%s / %s", tname[t],
			         tname[bt]);
			if (w->kind == K_PINGPONG)
				printf("    ratio %-26s RTT %.2fx [%.2f - %.2f]  "
				       "rate %.2fx  CPU/rt %.2fx\n",
				       lab, ra.rtt[0], ra.rtt[1], ra.rtt[2],
				       ra.rate[0], ra.cpu[0]);
			else
				printf("    ratio %-26s %.2fx [%.2f - %.2f]  CPU/%s "
				       "%.2fx\n",
				       lab, ra.rate[0], ra.rate[1], ra.rate[2],
				       w->kind == K_POOL ? "task" : "msg",
				       ra.cpu[0]);
		}
	}
	fflush(stdout);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_3(FILE *f, const char *name, const double v[3])
{
	fprintf(f, "\"%s\": {\"median\": %.6g, \"min\": %.6g, \"max\": %.6g}",
	        name, v[0], v[1], v[2]);
}

static void json_workload(FILE *f, const struct workload *w,
                          const struct row *rows, bool first)
{
	struct stats st;
	struct ratio ra;
	int t, bt, i, status;
	bool f1 = true;
	const char *why;

	fprintf(f, "%s\n    {\"id\": ", first ? "" : ",");
	json_str(f, w->id);
	fprintf(f, ", \"title\": ");
	json_str(f, w->title);
	fprintf(f,
	        ", \"size\": %u, \"count\": %" PRIu64 ", \"unit\": ", w->size,
	        w->n);
	json_str(f, w->unit);
	fprintf(f, ", \"producers\": %d, \"consumers\": %d, \"workers\": %d, "
	        "\"directed\": %s, \"mq_depth\": %ld, \"window\": %d,\n"
	        "     \"rows\": [", w->producers, w->consumers, w->workers,
	        w->directed ? "true" : "false", w->mq_depth, w->window);
	for (t = 0; t < T_NTRANS; t++) {
		if (!w->has[t])
			continue;
		why = row_failure(&rows[t], &status);
		if (t == T_MQ && w->mq_depth <= 0) {
			status = 1;
			why = w->mq_why;
		}
		fprintf(f, "%s\n       {\"transport\": ", f1 ? "" : ",");
		f1 = false;
		json_str(f, tname[t]);
		fprintf(f, ", \"status\": \"%s\"", status == 0 ? "ok" :
		        status > 0 ? "n/a" : "failed");
		if (why != NULL) {
			fprintf(f, ", \"why\": ");
			json_str(f, why);
			fprintf(f, "}");
			continue;
		}
		row_stats(&rows[t], &st);
		fprintf(f, ", ");
		json_3(f, "rate", st.rate);
		fprintf(f, ", ");
		json_3(f, "cpu_us", st.cpu);
		if (w->kind == K_PINGPONG) {
			fprintf(f, ", ");
			json_3(f, "rtt_median_us", st.rtt);
			fprintf(f, ", ");
			json_3(f, "rtt_p99_us", st.p99);
		}
		fprintf(f, ", \"runs\": [");
		for (i = 0; i < rows[t].nruns; i++) {
			const struct sample *s = &rows[t].s[i];

			fprintf(f,
			        "%s{\"rate\": %.6g, \"cpu_us\": %.6g, \"elapsed_s\": %.6g",
			        i ? ", " : "", s->rate, s->cpu_us,
			        s->elapsed_s);
			if (w->kind == K_PINGPONG)
				fprintf(f,
				        ", \"rtt_median_us\": %.6g, \"rtt_p99_us\": %.6g",
				        s->rtt_med_us, s->rtt_p99_us);
			fprintf(f, "}");
		}
		fprintf(f, "]}");
	}
	fprintf(f, "],\n     \"ratios\": [");
	f1 = true;
	for (t = T_QUEUE; t <= T_POOL; t++) {
		if (!w->has[t])
			continue;
		for (bt = T_PIPE; bt <= T_MQ; bt++) {
			if (!w->has[bt] ||
			    ratio_of(&rows[t], &rows[bt], &ra) != 0)
				continue;
			fprintf(f, "%s\n       {\"mproc\": ", f1 ? "" : ",");
			f1 = false;
			json_str(f, tname[t]);
			fprintf(f, ", \"baseline\": ");
			json_str(f, tname[bt]);
			fprintf(f, ", ");
			json_3(f, "rate", ra.rate);
			fprintf(f, ", ");
			json_3(f, "cpu", ra.cpu);
			if (w->kind == K_PINGPONG) {
				fprintf(f, ", ");
				json_3(f, "rtt_median", ra.rtt);
			}
			fprintf(f, "}");
		}
	}
	fprintf(f, "]}");
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

static void machine_line(char *buf, size_t n, char *cpu, size_t cpun,
                         long *cores, char *kernel, size_t kn)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct utsname u;
	char line[512];

	snprintf(cpu, cpun, "unknown CPU");
	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			char *p = strchr(line, ':');

			if (strncmp(line, "model name", 10) == 0 && p != NULL) {
				p++;
				while (*p == ' ' || *p == '\t')
					p++;
				p[strcspn(p, "\n")] = '\0';
				snprintf(cpu, cpun, "%s", p);
				break;
			}
		}
		fclose(f);
	}
	*cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (uname(&u) == 0)
		snprintf(kernel, kn, "%s %s %s", u.sysname, u.release,
		         u.machine);
	else
		snprintf(kernel, kn, "unknown kernel");
	snprintf(buf, n, "%s, %ld cores online, %s", cpu, *cores, kernel);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: mproc-bench [options]\n"
	        "  --workers N    workers (W6), producers and consumers (W2-W4);\n"
	        "                 default 4\n"
	        "  --size B       payload bytes, %u..%u (default: 64, and 4096 for W1)\n"
	        "  --messages N   messages (or round trips, tasks) per run\n"
	        "  --runs R       runs per transport: median, min-max (default 3)\n"
	        "  --only LIST    workloads, e.g. W1,W5,W6d\n"
	        "  --window N     W6: tasks in flight at most (default %d; a\n"
	        "                 shallower POSIX mq lowers it for every row)\n"
	        "  --transports L queue, mpipe, pool, pipe, mq (default all)\n"
	        "  --quick        a few seconds: checks correctness, not speed\n"
	        "  --json FILE    write the numbers as JSON\n"
	        "  --no-raise     do not raise /proc/sys/fs/mqueue limits\n"
	        "  --help\n",
	        MIN_SIZE, MAX_SIZE, POOL_WINDOW);
}

static bool selected(const char *id)
{
	char buf[sizeof(opt_only)], *tok, *save = NULL;

	if (opt_only[0] == '\0')
		return true;
	snprintf(buf, sizeof(buf), "%s", opt_only);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save))
		if (strcasecmp(tok, id) == 0)
			return true;
	return false;
}

static long parse_num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "mproc-bench: %s must be %ld..%ld\n", what, lo,
		        hi);
		exit(2);
	}
	return v;
}

static int parse_transports(const char *list)
{
	static const char *const key[T_NTRANS] = {
		[T_QUEUE] = "queue", [T_MPIPE] = "mpipe", [T_POOL] = "pool",
		[T_PIPE] = "pipe", [T_MQ] = "mq",
	};
	char buf[128], *tok, *save = NULL;
	int t;

	opt_transports = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		for (t = 0; t < T_NTRANS && strcasecmp(tok, key[t]) != 0; t++)
			;
		if (t == T_NTRANS) {
			fprintf(stderr,
			        "mproc-bench: unknown transport %s (queue, "
			        "mpipe, pool, pipe, mq)\n",
			        tok);
			return -1;
		}
		opt_transports |= 1u << t;
	}
	return 0;
}

static int add_workload(struct workload *ws, int n, const char *id,
                        const char *title, enum wkind kind, uint32_t size,
                        uint64_t count)
{
	struct workload *w = &ws[n];

	if (!selected(id))
		return n;
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", id);
	snprintf(w->title, sizeof(w->title), "%s", title);
	w->kind = kind;
	w->size = size;
	w->n = opt_messages ? opt_messages : count;
	w->producers = w->consumers = 1;
	w->workers = opt_workers;
	w->window = opt_window;
	w->has[T_QUEUE] = true;
	w->has[T_MQ] = true;
	switch (kind) {
	case K_STREAM:
		w->unit = "msgs/s";
		w->nmq = 1;
		break;
	case K_PINGPONG:
		w->unit = "round trips/s";
		w->warm = opt_quick ? 100 : 2000;
		w->has[T_MPIPE] = w->has[T_PIPE] = true;
		w->nmq = 2;
		break;
	default:
		w->unit = "tasks/s";
		w->has[T_PIPE] = true;
		w->nmq = 2;
		break;
	}
	return n + 1;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "workers", required_argument, NULL, 'w' },
		{ "size", required_argument, NULL, 's' },
		{ "messages", required_argument, NULL, 'n' },
		{ "runs", required_argument, NULL, 'r' },
		{ "only", required_argument, NULL, 'o' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", required_argument, NULL, 'j' },
		{ "no-raise", no_argument, NULL, 'R' },
		{ "transports", required_argument, NULL, 't' },
		{ "window", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct workload ws[16];
	static struct row rows[16][T_NTRANS];
	char mline[768], cpu[256], kernel[256], title[64], id[8];
	uint32_t sizes[2];
	int nsizes, nw = 0, i, t, run, o, c;
	long cores;
	sigset_t chld;
	uint64_t t_all = now_ns();
	FILE *jf;

	while ((o = getopt_long(argc, argv, "w:s:n:r:o:qj:Rt:W:h", lo, NULL)) !=
	       -1) {
		switch (o) {
		case 'w':
			opt_workers = (int)parse_num(optarg, "--workers", 1,
			                             MAX_WORKERS);
			break;
		case 's':
			opt_size = (uint32_t)parse_num(optarg, "--size",
			                               MIN_SIZE, MAX_SIZE);
			break;
		case 'n':
			opt_messages = (uint64_t)parse_num(optarg, "--messages",
			                                   1, 1000000000L);
			break;
		case 'r':
			opt_runs =
			        (int)parse_num(optarg, "--runs", 1, MAX_RUNS);
			break;
		case 'o':
			snprintf(opt_only, sizeof(opt_only), "%s", optarg);
			break;
		case 'q':
			opt_quick = true;
			break;
		case 'j':
			opt_json = optarg;
			break;
		case 'R':
			opt_no_raise = true;
			break;
		case 'W':
			opt_window =
			        (int)parse_num(optarg, "--window", 1, 1 << 20);
			break;
		case 't':
			if (parse_transports(optarg) != 0)
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (opt_runs == 0)
		opt_runs = opt_quick ? 1 : 3;
	if (opt_only[0] != '\0') {
		char buf[sizeof(opt_only)], *tok, *save = NULL;
		static const char *const known[] = { "W1", "W2", "W3", "W4",
			                             "W5", "W6", "W6d" };

		snprintf(buf, sizeof(buf), "%s", opt_only);
		for (tok = strtok_r(buf, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			for (i = 0; i < 7 && strcasecmp(tok, known[i]) != 0;
			     i++)
				;
			if (i == 7) {
				fprintf(stderr,
				        "mproc-bench: unknown workload %s "
				        "(W1..W6, W6d)\n",
				        tok);
				return 2;
			}
		}
	}

	if (opt_size) {
		sizes[0] = opt_size;
		nsizes = 1;
	} else {
		sizes[0] = 64;
		sizes[1] = 4096;
		nsizes = 2;
	}
	for (i = 0; i < nsizes; i++) {
		uint64_t n = sizes[i] <= 256    ? 1000000
		             : sizes[i] <= 8192 ? 200000
		                                : 20000;

		if (opt_quick)
			n = sizes[i] <= 256 ? 20000 : 5000;
		nw = add_workload(ws, nw, "W1", "stream 1:1", K_STREAM,
		                  sizes[i], n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W1") == 0 &&
		    ws[nw - 1].size == sizes[i]) {
			ws[nw - 1].has[T_MPIPE] = ws[nw - 1].has[T_PIPE] = true;
		}
	}
	{
		uint32_t s = opt_size ? opt_size : 64;
		uint64_t n = opt_quick ? 20000 : 1000000;
		int W = opt_workers;

		snprintf(title, sizeof(title), "fan-out 1:%d", W);
		nw = add_workload(ws, nw, "W2", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W2") == 0)
			ws[nw - 1].consumers = W;
		snprintf(title, sizeof(title), "fan-in %d:1", W);
		nw = add_workload(ws, nw, "W3", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W3") == 0)
			ws[nw - 1].producers = W;
		snprintf(title, sizeof(title), "%d:%d", W, W);
		nw = add_workload(ws, nw, "W4", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W4") == 0)
			ws[nw - 1].producers = ws[nw - 1].consumers = W;
		nw = add_workload(ws, nw, "W5", "ping-pong", K_PINGPONG, s,
		                  opt_quick ? 2000 : 50000);
		snprintf(title, sizeof(title), "task pool, %d workers", W);
		nw = add_workload(ws, nw, "W6", title, K_POOL, s,
		                  opt_quick ? 5000 : 200000);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W6") == 0)
			ws[nw - 1].has[T_POOL] = true;
		snprintf(title, sizeof(title), "directed task pool, %d workers",
		         W);
		snprintf(id, sizeof(id), "W6d");
		nw = add_workload(ws, nw, id, title, K_POOL, s,
		                  opt_quick ? 5000 : 200000);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W6d") == 0) {
			ws[nw - 1].directed = true;
			ws[nw - 1].nmq = 1 + W;
		}
	}
	/* Streams: the count a multiple of the producers. */
	for (i = 0; i < nw; i++) {
		if (ws[i].kind == K_STREAM &&
		    ws[i].n % (uint64_t)ws[i].producers)
			ws[i].n += (uint64_t)ws[i].producers -
			           ws[i].n % (uint64_t)ws[i].producers;
	}

	/* SIGCHLD stays pending for sigtimedwait; roles restore the mask. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &g_oldmask);
	atexit(sysctl_restore);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	machine_line(mline, sizeof(mline), cpu, sizeof(cpu), &cores, kernel,
	             sizeof(kernel));
	printf("mproc-bench (mproc %s)%s\n", mproc_version(),
	       opt_quick ? " --quick: correctness, not speed" : "");
	printf("machine: %s\n", mline);
	{
		long mm = sysctl_read(MQ_MSG_MAX),
		     ms = sysctl_read(MQ_MSGSIZE_MAX);
		struct rlimit rl;

		getrlimit(RLIMIT_MSGQUEUE, &rl);
		printf("POSIX mq: msg_max %ld, msgsize_max %ld, RLIMIT_MSGQUEUE "
		       "%llu bytes%s\n", mm, ms, (unsigned long long)rl.rlim_cur,
		       opt_quick || opt_no_raise ? "" :
		       " (msg_max raised where allowed, restored at exit)");
	}
	{
		int pfd[2], psz = -1;

		if (pipe(pfd) == 0) {
			psz = fcntl(pfd[0], F_GETPIPE_SZ);
			close(pfd[0]);
			close(pfd[1]);
		}
		printf("raw pipe: %d-byte kernel buffer, one write per message, "
		       "64 KiB reads; every message checked (seq, checksum, "
		       "sender)\n",
		       psz);
	}
	printf("runs: %d per transport, interleaved; timeouts %d ms on every "
	       "mproc call\n", opt_runs, OP_TIMEOUT_MS);
	fflush(stdout);

	for (i = 0; i < nw; i++) {
		struct workload *w = &ws[i];

		mq_pick_depth(w);
		for (t = 0; t < T_NTRANS; t++)
			rows[i][t].nruns = 0;
		for (run = 0; run < opt_runs; run++) {
			for (t = 0; t < T_NTRANS; t++) {
				struct row *rw = &rows[i][t];
				int st;

				if (!(opt_transports & (1u << t)))
					w->has[t] = false;
				if (!w->has[t] ||
				    (t == T_MQ && w->mq_depth <= 0))
					continue;
				/* n/a or failed once: do not repeat. */
				if (row_failure(rw, &st) != NULL)
					continue;
				run_once(w, (enum transport)t,
				         &rw->s[rw->nruns]);
				if (rw->s[rw->nruns].status < 0) {
					g_failed = true;
					fprintf(stderr,
					        "mproc-bench: FAIL: %s %s (%u B): %s\n",
					        w->id, tname[t], w->size,
					        rw->s[rw->nruns].why);
				}
				rw->nruns++;
			}
		}
		print_table(w, rows[i]);
	}

	if (opt_json != NULL) {
		jf = fopen(opt_json, "w");
		if (jf == NULL) {
			fprintf(stderr, "mproc-bench: %s: %s\n", opt_json,
			        strerror(errno));
			return 1;
		}
		fprintf(jf, "{\"bench\": \"mproc-bench\", \"mproc_version\": ");
		json_str(jf, mproc_version());
		fprintf(jf, ",\n  \"machine\": {\"cpu\": ");
		json_str(jf, cpu);
		fprintf(jf, ", \"cores\": %ld, \"kernel\": ", cores);
		json_str(jf, kernel);
		fprintf(jf,
		        "},\n  \"options\": {\"runs\": %d, \"workers\": %d, "
		        "\"quick\": %s, \"op_timeout_ms\": %d},\n  \"workloads\": [",
		        opt_runs, opt_workers, opt_quick ? "true" : "false",
		        OP_TIMEOUT_MS);
		for (i = 0; i < nw; i++)
			json_workload(jf, &ws[i], rows[i], i == 0);
		fprintf(jf, "\n  ],\n  \"ok\": %s}\n",
		        g_failed ? "false" : "true");
		c = fclose(jf);
		if (c != 0) {
			fprintf(stderr, "mproc-bench: %s: %s\n", opt_json,
			        strerror(errno));
			return 1;
		}
	}
	printf("\n%s in %.1f s\n",
	       g_failed ? "FAIL: a run did not verify (above)"
	                : "all runs verified",
	       (double)(now_ns() - t_all) / 1e9);
	sysctl_restore();
	return g_failed ? 1 : 0;
}
