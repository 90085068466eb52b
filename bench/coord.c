/*
 * coord.c - the coordinator's side of one run: the shared area, the
 * channels, one fork per role, the go (a pipe closed at t0), the reaping
 * under a watchdog, and the totals (every message delivered exactly once).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define WATCHDOG_S 300        /* one run of one transport, at most */
#define WATCHDOG_QUICK_S 30

static double coord_tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double coord_cpu_s(void)
{
	struct rusage s, c;

	getrusage(RUSAGE_SELF, &s);
	getrusage(RUSAGE_CHILDREN, &c);
	return coord_tv_s(s.ru_utime) + coord_tv_s(s.ru_stime) +
	       coord_tv_s(c.ru_utime) + coord_tv_s(c.ru_stime);
}

static void coord_describe_status(char *buf, size_t n, int role, pid_t pid,
                                  int st)
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
 * coord_reap_all waits for every role, at most watchdog_s seconds. The first
 * role that fails (or the watchdog) gets the others SIGKILLed. Returns 0
 * when every role exited 0.
 */
/* The roles of the run under way, for coord_kill_on_signal: a pid is set
 * when forked and cleared when reaped. */
static volatile pid_t coord_pids[MAX_ROLES];
static volatile sig_atomic_t coord_npids;

/*
 * coord_kill_on_signal (async-signal-safe): the coordinator interrupted,
 * its roles go too, before the names and the directory are removed (a
 * role still running would make mproc create the directory again).
 */
void coord_kill_on_signal(void)
{
	int i, n = coord_npids;

	for (i = 0; i < n; i++)
		if (coord_pids[i] > 0)
			kill(coord_pids[i], SIGKILL);
	for (i = 0; i < n; i++)
		if (coord_pids[i] > 0)
			waitpid(coord_pids[i], NULL, 0);
}

static int coord_reap_all(volatile pid_t *pids, int n, int watchdog_s,
                          char *why,
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
				coord_describe_status(why, whylen, i, p, st);
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

/* W9: the latencies each reader keeps (its last reads past that). */
static size_t coord_lat_cap(const struct workload *w)
{
	return w->n < LAT_CAP ? (size_t)w->n : LAT_CAP;
}

/* The shared area: the reports, W2-W4's seen bytes, W9's latencies. */
static size_t coord_shared_size(const struct workload *w, uint64_t nseen,
                                size_t *lat_off)
{
	size_t n = sizeof(struct shared) + (size_t)nseen;

	n = (n + 63) / 64 * 64;
	*lat_off = n;
	if (w->kind == K_LATEST)
		n += (size_t)w->readers * coord_lat_cap(w) * sizeof(uint32_t);
	return n;
}

static int coord_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * W9: every reader reached the writer's last value; the reads per second
 * of all readers, the median and p99 of all their read latencies (of the
 * last LAT_CAP reads of each reader).
 */
static void coord_latest_totals(const struct workload *w, struct shared *sh,
                                struct sample *s)
{
	uint64_t total = 0, kept = 0, k, p99, n;
	uint32_t *all;
	int i;

	if (sh->r[0].count != w->n) {
		snprintf(s->why, sizeof(s->why),
		         "the writer made %" PRIu64 " updates of %" PRIu64,
		         sh->r[0].count, w->n);
		s->status = -1;
		return;
	}
	for (i = 1; i <= w->readers; i++) {
		if (sh->r[i].last_seq != w->n - 1 || sh->r[i].count == 0 ||
		    sh->r[i].count > w->n) {
			snprintf(s->why, sizeof(s->why),
			         "reader %d: %" PRIu64 " values, the last "
			         "seq %" PRIu64 " of %" PRIu64,
			         i, sh->r[i].count, sh->r[i].last_seq, w->n);
			s->status = -1;
			return;
		}
		total += sh->r[i].count;
		kept += sh->r[i].count < sh->lat_cap ? sh->r[i].count
		                                     : sh->lat_cap;
	}
	all = xmalloc(kept * sizeof(*all));
	for (i = 1, k = 0; i <= w->readers; i++) {
		n = sh->r[i].count < sh->lat_cap ? sh->r[i].count : sh->lat_cap;
		memcpy(all + k, shared_lat(sh, i - 1), n * sizeof(*all));
		k += n;
	}
	qsort(all, kept, sizeof(*all), coord_cmp_u32);
	p99 = (kept * 99 + 99) / 100;
	if (p99 > 0)
		p99--;
	s->rtt_med_us = (kept % 2 ? (double)all[kept / 2]
	                          : ((double)all[kept / 2 - 1] +
	                             (double)all[kept / 2]) / 2) / 1e3;
	s->rtt_p99_us = (double)all[p99] / 1e3;
	s->reads_rate = (double)total / s->elapsed_s;
	free(all);
}

/* The totals of one run: every message delivered exactly once. */
static void coord_totals(const struct workload *w, enum transport t,
                         struct shared *sh, int nr, int nwatch,
                         struct sample *s)
{
	uint64_t total = 0, expect;
	uint64_t nseen = (w->kind == K_STREAM && w->consumers > 1) ? w->n : 0;
	int i;

	switch (w->kind) {
	case K_STREAM:
		if (t == T_MEMCPY) /* one process, no consumer */
			total = sh->r[0].count;
		for (i = w->producers;
		     t != T_MEMCPY && i < w->producers + w->consumers; i++) {
			total += sh->r[i].count;
			s->wakeups_k += (double)sh->r[i].wakeups * 1000 /
			                (double)w->n;
			if ((double)sh->r[i].max_recv_ns / 1e6 > s->max_recv_ms)
				s->max_recv_ms =
				        (double)sh->r[i].max_recv_ns / 1e6;
		}
		if (nwatch)
			s->stats_calls = sh->r[nr - 1].count;
		if (total != w->n) {
			snprintf(s->why, sizeof(s->why),
			         "consumers took %" PRIu64 " messages, %" PRIu64
			         " were sent",
			         total, w->n);
			s->status = -1;
		} else if (nwatch && s->stats_calls == 0) {
			snprintf(s->why, sizeof(s->why),
			         "the watcher made no mproc_queue_stats call");
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
	case K_POOL:
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
	case K_BCAST:
		for (i = 0; i < nr; i++)
			if (sh->r[i].count != w->n) {
				snprintf(s->why, sizeof(s->why),
				         "%s %d: %" PRIu64 " messages of %" PRIu64,
				         i ? "reader" : "writer", i,
				         sh->r[i].count, w->n);
				s->status = -1;
				break;
			}
		break;
	case K_LATEST:
		coord_latest_totals(w, sh, s);
		break;
	}
}

void coord_run_once(const struct workload *w, enum transport t,
                    struct sample *s)
{
	struct chans ch;
	struct shared *sh;
	volatile pid_t *pids = coord_pids;
	int nr = wl_nroles(w, t), go[2], i, r;
	uint64_t nseen = (w->kind == K_STREAM && w->consumers > 1) ? w->n : 0;
	uint64_t t0, tend = 0;
	/* W1w's watcher (the last role) is not part of the stream's time */
	int nwatch = w->kind == K_STREAM && w->watch != WATCH_NONE;
	size_t lat_off, shsz = coord_shared_size(w, nseen, &lat_off);
	double c0, c1;

	memset(s, 0, sizeof(*s));
	sh = mmap(NULL, shsz, PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(s->why, sizeof(s->why), "mmap: %s", strerror(errno));
		s->status = -1;
		return;
	}
	memset(sh, 0, lat_off); /* the rest is zero, untouched until used */
	sh->lat_off = lat_off;
	sh->lat_cap = w->kind == K_LATEST ? coord_lat_cap(w) : 0;
	g_role.sh = sh;
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
		goto out;
	}
	fflush(NULL);
	c0 = coord_cpu_s();
	for (i = 0; i < nr; i++)
		pids[i] = 0;
	coord_npids = nr;
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
		coord_reap_all(pids, nr, 10, s->why + strlen(s->why), 1);
		s->status = -1;
		goto out;
	}
	t0 = now_ns();
	close(go[1]);
	r = coord_reap_all(pids, nr,
	                   opt_quick ? WATCHDOG_QUICK_S : WATCHDOG_S, s->why,
	                   sizeof(s->why));
	c1 = coord_cpu_s();
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
		goto out;
	}
	for (i = 0; i < nr; i++) {
		if (!sh->r[i].ok || sh->r[i].t_end_ns < t0) {
			snprintf(s->why, sizeof(s->why),
			         "role %d left no report", i);
			s->status = -1;
			goto out;
		}
		if (i < nr - nwatch && sh->r[i].t_end_ns > tend)
			tend = sh->r[i].t_end_ns;
	}
	s->elapsed_s = (double)(tend - t0) / 1e9;
	s->rate = (double)w->n / s->elapsed_s;
	if (w->gbps)
		s->rate *= (double)w->size / 1e9;
	s->cpu_us = (c1 - c0) * 1e6 / (double)w->n;
	coord_totals(w, t, sh, nr, nwatch, s);
out:
	coord_npids = 0;
	chans_unlink(&ch);
	munmap(sh, shsz);
}
