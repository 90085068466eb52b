/*
 * main.c - mproc-bench's entry: the options, the header lines (machine,
 * POSIX mq limits, raw pipe), every selected workload's runs (the
 * transports interleaved run by run), its table, and the JSON file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"

int opt_workers = 4;
uint32_t opt_size;
bool opt_quick;
const char *opt_json;
int opt_runs;
uint64_t opt_messages;
bool opt_no_raise;
char opt_only[256];
int opt_window = POOL_WINDOW;
unsigned opt_transports = (1u << T_NTRANS) - 1;
bool opt_named;
static const char *opt_named_dir;

sigset_t g_oldmask;
static bool g_failed;

static void main_machine_line(char *buf, size_t n, char *cpu, size_t cpun,
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

static void main_usage(FILE *f)
{
	fprintf(f,
	        "usage: mproc-bench [options]\n"
	        "  --workers N    workers (W6), producers and consumers (W2-W4),\n"
	        "                 readers (W8, W9); default 4\n"
	        "  --size B       payload bytes, %u..%u (default: 64, and 4096 for W1)\n"
	        "  --messages N   messages (or round trips, tasks) per run\n"
	        "  --runs R       runs per transport: median, min-max (default 3)\n"
	        "  --only LIST    workloads, e.g. W1,W5,W6d\n"
	        "  --window N     W6: tasks in flight at most (default %d; a\n"
	        "                 shallower POSIX mq lowers it for every row)\n"
	        "  --transports L queue, named, poll, zerocopy, mpipe, pool, bus,\n"
	        "                 slot, pipe, mq, seqlock, spsc, memcpy (default\n"
	        "                 all)\n"
	        "  --named        W1-W6d and W1w also on a named queue (row\n"
	        "                 \"mproc queue (named)\", ratio to the anonymous\n"
	        "                 queue of the same runs): mproc_queue_create in\n"
	        "                 a private MPROC_DIR made at start and removed\n"
	        "                 at exit, every role attaching it by name.\n"
	        "                 Target, printed only: the named queue's\n"
	        "                 median within the anonymous one's spread\n"
	        "  --named-dir D  where that directory is made (default\n"
	        "                 /dev/shm, the file system of mproc's default\n"
	        "                 directory; /tmp if there is no /dev/shm)\n"
	        "  --quick        a few seconds: checks correctness, not speed\n"
	        "  --json FILE    write the numbers as JSON\n"
	        "  --no-raise     do not raise /proc/sys/fs/mqueue limits\n"
	        "  --help\n"
	        "workloads (--only):\n"
	        "  W1   stream 1:1, 64 B and 4 KiB (or --size): the queue by\n"
	        "       copy and zero-copy (mproc_send_reserve/commit, the\n"
	        "       payload built in place; mproc_recv_borrow/release,\n"
	        "       checked in place), mproc pipe, raw pipe, POSIX mq, and\n"
	        "       \"spsc ring (limit)\": a lock-free single-producer\n"
	        "       single-consumer ring in one shared mapping.\n"
	        "       Target, printed only: 4 KiB zero-copy >= 3x a raw pipe\n"
	        "  W7   (W7a and W7b) 1 MiB stream in GB/s: queue by copy and\n"
	        "       zero-copy, raw pipe, spsc ring, and \"2 x memcpy\" (one\n"
	        "       process copying each message twice). W7a: the hand-off\n"
	        "       alone (body written once, a header per message); W7b:\n"
	        "       every byte written by the sender, summed by the\n"
	        "       receiver. Targets, printed only: zero-copy >= 3x a raw\n"
	        "       pipe (W7a), >= 1.5x (W7b); the copy path within 1.5x of\n"
	        "       2 x memcpy\n"
	        "  W1w  W1's 64 B queue stream plus a process that calls\n"
	        "       mproc_queue_stats on the queue: never (row W1),\n"
	        "       every 1 ms (W1w1ms), in a tight loop (W1wloop);\n"
	        "       msgs/s, the ratio to W1 run by run, the stats\n"
	        "       calls, the longest single receive (every row's\n"
	        "       consumer reads the clock once per receive).\n"
	        "       Targets, printed only: W1w1ms within W1's spread,\n"
	        "       W1wloop >= 0.2x W1, no receive of 50 ms or more\n"
	        "  W2   fan-out 1:N   W3 fan-in N:1   W4 N:N (--workers)\n"
	        "  W5   ping-pong round trips (median and p99)\n"
	        "  W6   task pool: DO to N workers, FINISHED back\n"
	        "  W6d  the same, every task addressed to one worker\n"
	        "  W1p  W1's 64 B queue stream, plain (row mproc queue) and\n"
	        "       with the consumer in poll() on mproc_fd, receiving\n"
	        "       with MPROC_NOWAIT until -EAGAIN (mproc queue + poll):\n"
	        "       msgs/s, the ratio, poll() wake-ups per 1000 messages\n"
	        "       (the sender's system calls: count them by hand,\n"
	        "       strace -f -c; see BENCHMARKS.md)\n"
	        "  W8   bus broadcast 1:N (--workers readers, 64 B): msgs/s\n"
	        "       delivered to each reader, against a raw pipe and a\n"
	        "       POSIX mq per reader (the writer sends to each).\n"
	        "       Target, printed only: bus >= 3x the pipes\n"
	        "  W9   slot: one writer replaces a 64 B value as fast as it\n"
	        "       can, N readers poll it (mproc_recv, MPROC_NOWAIT):\n"
	        "       updates/s, reads/s (new values, all readers), the\n"
	        "       read latency of a new value (writer's stamp to the\n"
	        "       reader's clock, median and p99); against a seqlock\n"
	        "       in a shared mapping.\n"
	        "       Target, printed only: within 2x of the seqlock\n",
	        MIN_SIZE, MAX_SIZE, POOL_WINDOW);
}

static long main_parse_num(const char *s, const char *what, long lo, long hi)
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

static int main_parse_transports(const char *list)
{
	static const char *const key[T_NTRANS] = {
		[T_QUEUE] = "queue", [T_NQUEUE] = "named", [T_QPOLL] = "poll",
		[T_MPIPE] = "mpipe", [T_POOL] = "pool", [T_BUS] = "bus",
		[T_SLOT] = "slot", [T_PIPE] = "pipe", [T_MQ] = "mq",
		[T_SEQLOCK] = "seqlock", [T_QZC] = "zerocopy",
		[T_SPSC] = "spsc", [T_MEMCPY] = "memcpy",
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
			        "named, poll, zerocopy, mpipe, pool, bus, slot, "
			        "pipe, mq, seqlock, spsc, memcpy)\n",
			        tok);
			return -1;
		}
		opt_transports |= 1u << t;
	}
	return 0;
}

/*
 * W1w: the runs of its rows (watch modes, on the anonymous queue and, with
 * --named, on the named one) interleaved like the transports of the other
 * workloads, then its table.
 */
static void main_run_watched(struct workload *w, struct row rows[2][WATCH_N])
{
	static const enum transport vt[2] = { T_QUEUE, T_NQUEUE };
	struct workload wv;
	int run, m, st, v;

	for (v = 0; v < 2; v++) {
		if (!(opt_transports & (1u << vt[v])))
			w->has[vt[v]] = false;
		for (m = 0; m < WATCH_N; m++)
			rows[v][m].nruns = 0;
	}
	for (run = 0; run < opt_runs; run++) {
		for (v = 0; v < 2; v++) {
			if (!w->has[vt[v]])
				continue;
			for (m = 0; m < WATCH_N; m++) {
				struct row *rw = &rows[v][m];

				/* n/a or failed once: do not repeat. */
				if (report_row_failure(rw, &st) != NULL)
					continue;
				wv = *w;
				wv.watch = (enum watch)m;
				coord_run_once(&wv, vt[v], &rw->s[rw->nruns]);
				if (rw->s[rw->nruns].status < 0) {
					g_failed = true;
					fprintf(stderr,
					        "mproc-bench: FAIL: %s %s%s (%u B): "
					        "%s\n",
					        w->id, watch_row[m],
					        v ? " (named)" : "", w->size,
					        rw->s[rw->nruns].why);
				}
				rw->nruns++;
			}
		}
	}
	report_watch_table(w, rows);
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
		{ "named", no_argument, NULL, 'N' },
		{ "named-dir", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct workload ws[MAX_WORKLOADS];
	static struct row rows[MAX_WORKLOADS][T_NTRANS];
	static struct row wrows[MAX_WORKLOADS][2][WATCH_N]; /* W1w */
	char mline[768], cpu[256], kernel[256], why[512];
	int nw, i, t, run, o, c;
	long cores;
	sigset_t chld;
	uint64_t t_all = now_ns();
	FILE *jf;

	while ((o = getopt_long(argc, argv, "w:s:n:r:o:qj:Rt:W:ND:h", lo,
	                        NULL)) != -1) {
		switch (o) {
		case 'w':
			opt_workers = (int)main_parse_num(optarg, "--workers",
			                                  1, MAX_WORKERS);
			break;
		case 's':
			opt_size = (uint32_t)main_parse_num(optarg, "--size",
			                                    MIN_SIZE, MAX_SIZE);
			break;
		case 'n':
			opt_messages = (uint64_t)main_parse_num(
			        optarg, "--messages", 1, 1000000000L);
			break;
		case 'r':
			opt_runs =
			        (int)main_parse_num(optarg, "--runs", 1,
			                            MAX_RUNS);
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
			        (int)main_parse_num(optarg, "--window", 1,
			                            1 << 20);
			break;
		case 't':
			if (main_parse_transports(optarg) != 0)
				return 2;
			break;
		case 'N':
			opt_named = true;
			break;
		case 'D':
			opt_named = true;
			opt_named_dir = optarg;
			break;
		case 'h':
			main_usage(stdout);
			return 0;
		default:
			main_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		main_usage(stderr);
		return 2;
	}
	if (opt_runs == 0)
		opt_runs = opt_quick ? 1 : 3;
	if (opt_only[0] != '\0' && wl_check_only(opt_only) != 0)
		return 2;
	if (opt_named) {
		if (named_init(opt_named_dir, why, sizeof(why)) != 0) {
			fprintf(stderr, "mproc-bench: --named: %s\n", why);
			return 1;
		}
		atexit(named_cleanup);
	}
	nw = wl_build(ws);

	/* SIGCHLD stays pending for sigtimedwait; roles restore the mask. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &g_oldmask);
	atexit(mq_limits_restore);
	signal(SIGINT, mq_limits_on_signal);
	signal(SIGTERM, mq_limits_on_signal);

	main_machine_line(mline, sizeof(mline), cpu, sizeof(cpu), &cores,
	                  kernel, sizeof(kernel));
	printf("mproc-bench (mproc %s)%s\n", mproc_version(),
	       opt_quick ? " --quick: correctness, not speed" : "");
	printf("machine: %s\n", mline);
	{
		long mm = mq_limits_read(MQ_MSG_MAX),
		     ms = mq_limits_read(MQ_MSGSIZE_MAX);
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
	if (opt_named)
		printf("named queues: MPROC_DIR=%s (made for this run, removed "
		       "at exit); each role attaches by name after fork\n",
		       named_dir());
	printf("runs: %d per transport, interleaved; timeouts %d ms on every "
	       "mproc call\n", opt_runs, OP_TIMEOUT_MS);
	fflush(stdout);

	for (i = 0; i < nw; i++) {
		struct workload *w = &ws[i];

		if (w->watched) {
			main_run_watched(w, wrows[i]);
			continue;
		}
		mq_limits_pick_depth(w);
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
				if (report_row_failure(rw, &st) != NULL)
					continue;
				coord_run_once(w, (enum transport)t,
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
		if (w->kind == K_LATEST)
			report_latest_table(w, rows[i]);
		else
			report_table(w, rows[i]);
	}

	if (opt_json != NULL) {
		jf = fopen(opt_json, "w");
		if (jf == NULL) {
			fprintf(stderr, "mproc-bench: %s: %s\n", opt_json,
			        strerror(errno));
			return 1;
		}
		fprintf(jf, "{\"bench\": \"mproc-bench\", \"mproc_version\": ");
		report_json_str(jf, mproc_version());
		fprintf(jf, ",\n  \"machine\": {\"cpu\": ");
		report_json_str(jf, cpu);
		fprintf(jf, ", \"cores\": %ld, \"kernel\": ", cores);
		report_json_str(jf, kernel);
		fprintf(jf,
		        "},\n  \"options\": {\"runs\": %d, \"workers\": %d, "
		        "\"quick\": %s, \"op_timeout_ms\": %d, \"named\": %s",
		        opt_runs, opt_workers, opt_quick ? "true" : "false",
		        OP_TIMEOUT_MS, opt_named ? "true" : "false");
		if (opt_named) {
			fprintf(jf, ", \"mproc_dir\": ");
			report_json_str(jf, named_dir());
		}
		fprintf(jf, "},\n  \"workloads\": [");
		for (i = 0; i < nw; i++) {
			if (ws[i].watched)
				report_json_watch(jf, &ws[i], wrows[i], i == 0);
			else if (ws[i].kind == K_LATEST)
				report_json_latest(jf, &ws[i], rows[i], i == 0);
			else
				report_json_workload(jf, &ws[i], rows[i],
				                     i == 0);
		}
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
	mq_limits_restore();
	named_cleanup();
	return g_failed ? 1 : 0;
}
