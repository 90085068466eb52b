/*
 * mproc-bench - the workloads of DESIGN.md through mproc's queue and pipe,
 * against a raw pipe(2) and a POSIX message queue, in one process tree.
 *
 *   W1  stream 1:1 (64 B and 4 KiB payloads, or --size)
 *   W1w W1's 64 B queue stream with a third process calling
 *       mproc_queue_stats on the queue: never (row W1), every 1 ms
 *       (W1w1ms), in a tight loop (W1wloop); the consumer times every
 *       receive, in all three rows alike
 *   W2  fan-out 1:N          W3  fan-in N:1          W4  N:N
 *   W5  ping-pong round trip (median and p99)
 *   W6  task pool: DO to N workers, FINISHED back, DIE at the end
 *   W6d the same with every task addressed to one worker (mproc_for_me)
 *   (W6 also has a "mproc pool" row: the same tasks through mproc_pool_*)
 *   W1p W1's 64 B queue stream, the consumer waiting in poll() on
 *       mproc_fd and receiving with MPROC_NOWAIT until -EAGAIN
 *   W8  bus broadcast 1:N: every reader gets every message
 *   W9  slot: one writer updating a value, N readers polling it; the
 *       read latency of a new value, against a seqlock
 *   W7a W7b 1 MiB stream in GB/s: W7a the hand-off alone (the body written
 *       once, a 16-byte header written and checked per message), W7b
 *       every byte written by the sender and summed by the receiver;
 *       beside "2 x memcpy" (one process copying each message twice)
 *   W1 and W7 have "mproc queue (zero-copy)" (mproc_send_reserve/commit,
 *   mproc_recv_borrow/release: built and checked in place) and "spsc ring
 *   (limit)", a lock-free single-producer single-consumer byte ring in one
 *   shared mapping, records written and read in place (spsc.c)
 *   --named adds a named-queue row to W1-W6d and W1w: the queue made with
 *   mproc_queue_create in a private MPROC_DIR, every role attaching it by
 *   name after fork
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
 *
 * The files, in the order a run uses them:
 *   main.c       options, the header lines, the run loop, the JSON file
 *   workloads.c  which workloads exist and their shape (roles, channels)
 *   mq_limits.c  the POSIX mq depth and the sysctls raised for it
 *   coord.c      the coordinator: one run (fork, go, reap, totals)
 *   channels.c   opening and closing one run's channels
 *   child.c      a forked role: its setup, the go, its end or failure
 *   roles.c      what each role does (producer, consumer, ... pool)
 *   endpoint.c   one side of one channel: send and receive a message
 *   payload.c    the payload: seq, src, checksum over a seq-dependent body
 *   named.c      the private MPROC_DIR of --named, and its names
 *   bcast.c      W8's writer and readers (bus, a pipe or an mq per reader)
 *   latest.c     W9's writer and readers (slot, seqlock)
 *   report.c     the tables and the JSON of one workload
 *   report_latest.c  W9's table and JSON
 *   spsc.c       the "spsc ring (limit)" baseline of W1 and W7
 */
#ifndef MPROC_BENCH_H
#define MPROC_BENCH_H

#include <mqueue.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#include "mproc.h"

#define OP_TIMEOUT_MS 10000   /* every mproc call: a bug fails, never hangs */
#define MAX_WORKERS 64
#define MAX_ROLES (2 * MAX_WORKERS + 1)
#define MAX_CH (MAX_WORKERS + 1)
#define MAX_RUNS 99
#define MAX_WORKLOADS 16
#define ENV_SIZE 16           /* raw envelope: request, sender, to, size */
#define PL_HDR 16             /* payload: seq (8), src (4), check (4) */
#define MIN_SIZE PL_HDR
#define MAX_SIZE (1u << 20)
#define RESULT_SIZE PL_HDR    /* W6 results: seq, worker, check */
#define POOL_WINDOW 256       /* W6: tasks in flight at most */
#define NONE UINT64_MAX
#define LAT_CAP (1u << 22)   /* W9: latencies kept per reader, the last */

#define MQ_MSG_MAX "/proc/sys/fs/mqueue/msg_max"
#define MQ_MSGSIZE_MAX "/proc/sys/fs/mqueue/msgsize_max"

/*
 * mproc's rows first (T_QUEUE..T_MPROC_LAST), then the baselines
 * (T_BASE_FIRST..). T_NQUEUE is the queue made by name (--named), T_QPOLL
 * the queue with a consumer in poll() (W1p): both are compared with
 * T_QUEUE of the same runs, not with the baselines.
 */
enum transport {
	T_QUEUE, T_NQUEUE, T_QPOLL, T_QZC, T_MPIPE, T_POOL, T_BUS, T_SLOT,
	T_PIPE, T_MQ, T_SEQLOCK, T_SPSC, T_MEMCPY, T_NTRANS
};

#define T_MPROC_LAST T_SLOT
#define T_BASE_FIRST T_PIPE

extern const char *const tname[T_NTRANS];

/* Every transport that is a queue, whatever way it was opened. */
static inline bool t_is_queue(int t)
{
	return t == T_QUEUE || t == T_NQUEUE || t == T_QPOLL || t == T_QZC;
}

/* Transports carried by mproc_send/mproc_recv on one handle. */
static inline bool t_is_mproc(int t)
{
	return t_is_queue(t) || t == T_MPIPE || t == T_BUS || t == T_SLOT;
}

/* The row a variant of the queue is compared with; -1: the baselines. */
static inline int t_ref(int t)
{
	return t == T_NQUEUE || t == T_QPOLL ? T_QUEUE : -1;
}

/* K_BCAST: W8 (1 writer, N readers, each gets every message);
 * K_LATEST: W9 (1 writer, N readers of the latest value). */
enum wkind { K_STREAM, K_PINGPONG, K_POOL, K_BCAST, K_LATEST };

/* W1w: what the watcher process does in a run (the rows of W1w). */
enum watch { WATCH_NONE, WATCH_1MS, WATCH_LOOP, WATCH_N };

extern const char *const watch_row[WATCH_N]; /* "W1", "W1w1ms", "W1wloop" */

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
	bool watched;       /* W1w: queue only, one row per watch mode */
	enum watch watch;   /* W1w: this run's watcher */
	int readers;        /* K_BCAST, K_LATEST */
	bool handoff;       /* W7a: header written and checked, not the body */
	bool gbps;          /* W7: rate in GB/s (1e9 bytes) */
};

/*
 * The SPSC ring (T_SPSC): head (bytes ever written, the producer's) and
 * tail (bytes ever read, the consumer's) on their own cache lines; records
 * of spsc_rec + payload, 8-byte aligned, never crossing the end (a record
 * with size SPSC_WRAP says: go on at offset 0).
 */
struct spsc {
	uint64_t head;
	char pad0[56];
	uint64_t tail;
	char pad1[56];
	uint64_t cap; /* a power of 2 */
	char pad2[56];
	unsigned char data[];
};

struct spsc_rec {
	uint32_t size;
	int32_t request;
	int32_t sender;
	int32_t recipient;
};

#define SPSC_WRAP UINT32_MAX

/* W9's seqlock: the limit of a latest-value channel in shared memory. */
struct seqlock {
	uint64_t seq; /* odd while the writer writes */
	uint64_t pad[7];
	uint64_t w[]; /* the value, from the next cache line */
};

static inline size_t seqlock_len(uint32_t size)
{
	return sizeof(struct seqlock) + ((size_t)size + 7) / 8 * 8;
}

/* One role's report, written by the child into the shared area. */
struct role_report {
	uint64_t t_start_ns;
	uint64_t t_end_ns;
	uint64_t t_fail_ns;
	uint64_t count;
	double rtt_med_us;
	double rtt_p99_us;
	uint64_t max_recv_ns; /* W1w consumers: the longest receive */
	uint64_t wakeups;     /* W1p: the poller's poll() returns */
	uint64_t last_seq;    /* W9 readers: the last value's seq */
	int32_t ok;
	char err[244];
};

/* Shared by the coordinator and the roles of one run (MAP_SHARED). */
struct shared {
	pid_t pids[MAX_ROLES];
	uint32_t producers_done;
	uint32_t consumers_done; /* W1w: the watcher stops when all are */
	uint64_t lat_cap;        /* W9: latencies room per reader */
	size_t lat_off;          /* W9: where they start (from sh) */
	struct role_report r[MAX_ROLES];
	unsigned char seen[]; /* K_STREAM with several consumers: seq -> 1 */
};

/* W9: reader k's latencies (ns, saturated at UINT32_MAX). */
static inline uint32_t *shared_lat(struct shared *sh, int k)
{
	return (uint32_t *)(void *)((char *)sh + sh->lat_off) +
	       (size_t)k * sh->lat_cap;
}

/* The coordinator's handles for one run; children inherit them. */
struct chans {
	enum transport t;
	int n;
	mproc_conn *c[MAX_CH][2]; /* queue in [0]; mproc pipe ends A, B */
	int fd[MAX_CH][2];        /* raw pipe: [0] read, [1] write */
	mqd_t mq[MAX_CH];
	char name[MAX_CH][64];    /* T_NQUEUE: each queue's name */
	struct seqlock *sl;       /* T_SEQLOCK: a MAP_SHARED mapping */
	size_t sl_len;
	struct spsc *ring;        /* T_SPSC: a MAP_SHARED mapping */
	size_t ring_len;
};

/* One side of one channel, in a role. */
struct ep {
	enum transport t;
	mproc_conn *c;
	int fd;
	mqd_t mq;
	struct seqlock *sl;
	struct spsc *ring;
	int pollfd;    /* W1p's consumer: mproc_fd of c */
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
	double max_recv_ms;   /* W1w */
	uint64_t stats_calls; /* W1w: the watcher's mproc_queue_stats calls */
	double wakeups_k;     /* W1p: poll() returns per 1000 messages */
	double reads_rate;    /* W9: new values read per second, all readers */
	char why[300];
};

struct row {
	struct sample s[MAX_RUNS];
	int nruns;
};

/* Options (main.c). */
extern int opt_workers;
extern uint32_t opt_size;
extern bool opt_quick;
extern const char *opt_json;
extern int opt_runs;
extern uint64_t opt_messages;
extern bool opt_no_raise;
extern char opt_only[256];
extern int opt_window;
extern unsigned opt_transports;
extern bool opt_named;

/* Per-process state of a role (child.c; sh is set by the coordinator). */
struct role_state {
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
};

extern struct role_state g_role;
extern sigset_t g_oldmask; /* main.c: the mask the roles restore */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "mproc-bench: out of memory\n");
		exit(1);
	}
	return p;
}

/* workloads.c */
int wl_build(struct workload ws[MAX_WORKLOADS]);
int wl_check_only(const char *list);
int wl_nroles(const struct workload *w, enum transport t);
int wl_nchans(const struct workload *w, enum transport t);
uint32_t wl_maxpay(const struct workload *w);

/* mq_limits.c */
long mq_limits_read(const char *path);
void mq_limits_restore(void);
void mq_limits_on_signal(int sig);
void mq_limits_pick_depth(struct workload *w);

/* named.c */
int named_init(const char *parent, char *why, size_t whylen);
const char *named_dir(void);
void named_new(char *name, size_t n);
void named_unlink(const char *name);
void named_cleanup(void);
void named_cleanup_on_signal(void);

/* coord.c */
void coord_run_once(const struct workload *w, enum transport t,
                    struct sample *s);
void coord_kill_on_signal(void);

/* channels.c */
int chans_mq_open(mqd_t *q, long depth, long msgsize);
int chans_open(const struct workload *w, enum transport t, struct chans *ch,
               char *why, size_t whylen);
void chans_close(struct chans *ch);
void chans_keep(struct chans *ch, const struct ep *eps, int n);
void chans_unlink(struct chans *ch);

/* child.c */
void child_main(const struct workload *w, struct chans *ch, int role,
                int go_r, int go_w) __attribute__((noreturn));
void child_fail(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
void child_fail_mproc(const char *call, int r) __attribute__((noreturn));

/* roles.c */
void role_check_msg(const struct rmsg *m, int32_t request, uint32_t size,
                    uint64_t *seq, uint32_t *src);
void role_check_sender(const struct rmsg *m, uint32_t src, uint32_t nsrc,
                       uint32_t base);
void role_producer(const struct workload *w, const struct ep *out);
void role_consumer(const struct workload *w, const struct ep *in);
void role_pinger(const struct workload *w, const struct ep *out,
                 const struct ep *in);
void role_ponger(const struct workload *w, const struct ep *out,
                 const struct ep *in);
void role_dispatcher(const struct workload *w, const struct ep *task,
                     int ntask, const struct ep *res);
void role_worker(const struct workload *w, const struct ep *task,
                 const struct ep *res);
void role_watcher(const struct workload *w, const struct ep *q);
mproc_pool *role_pool_open(const struct workload *w);
void role_pool(const struct workload *w, mproc_pool *pool);
void role_memcpy(const struct workload *w);

/* bcast.c */
void role_bcast_writer(const struct workload *w, const struct ep *out,
                       int nout);
void role_bcast_reader(const struct workload *w, const struct ep *in);

/* latest.c */
void role_latest_writer(const struct workload *w, const struct ep *out);
void role_latest_reader(const struct workload *w, const struct ep *in);

/* endpoint.c */
struct ep ep_of(const struct chans *ch, int i, bool send, int end);
void ep_send(const struct ep *e, int32_t request, pid_t to,
             const unsigned char *data, uint32_t size);
void ep_recv(const struct ep *e, struct rmsg *m);
int ep_try_recv(const struct ep *e, struct rmsg *m);
void ep_close(struct ep *e);
unsigned char *ep_send_begin(const struct ep *e, uint32_t size);
void ep_send_end(const struct ep *e, int32_t request, pid_t to,
                 unsigned char *data, uint32_t size);
void ep_recv_done(const struct ep *e);

/* spsc.c */
size_t spsc_len(uint32_t maxpay);
void spsc_init(struct spsc *r, size_t len);
unsigned char *spsc_reserve(struct spsc *r, uint32_t size);
void spsc_commit(struct spsc *r, int32_t request, pid_t sender, pid_t to,
                 uint32_t size);
void spsc_recv(struct spsc *r, struct rmsg *m);
void spsc_release(struct spsc *r);

/* payload.c */
void payload_fill(unsigned char *p, uint32_t size, uint64_t seq, uint32_t src);
int payload_verify(const unsigned char *p, uint32_t size, uint64_t *seq,
                   uint32_t *src);
void payload_set_stamp(unsigned char *p, uint32_t size, uint64_t stamp);
uint64_t payload_stamp(const unsigned char *p);
void payload_hdr_fill(unsigned char *p, uint32_t size, uint64_t seq,
                      uint32_t src);
int payload_hdr_verify(const unsigned char *p, uint32_t size, uint64_t *seq,
                       uint32_t *src);

/* report.c */
const char *report_row_failure(const struct row *rw, int *status);
void report_table(const struct workload *w, const struct row *rows);
void report_json_str(FILE *f, const char *s);
void report_json_workload(FILE *f, const struct workload *w,
                          const struct row *rows, bool first);
void report_watch_table(const struct workload *w,
                        const struct row rows[2][WATCH_N]);
void report_json_watch(FILE *f, const struct workload *w,
                       const struct row rows[2][WATCH_N], bool first);

/* report.c, for report_latest.c */
struct stats {
	int n;          /* ok runs */
	double rate[3]; /* median, min, max */
	double cpu[3];
	double rtt[3];
	double p99[3];
};

void report_stat3(const double *v, int n, double out[3]);
void report_row_stats(const struct row *rw, struct stats *st);
char *report_fmt_rate(char *buf, size_t n, double v);
void report_json_3(FILE *f, const char *name, const double v[3]);
const char *report_met(int met);
void report_json_met(FILE *f, int met);

/* report_latest.c */
void report_latest_table(const struct workload *w, const struct row *rows);
void report_json_latest(FILE *f, const struct workload *w,
                        const struct row *rows, bool first);

#endif
