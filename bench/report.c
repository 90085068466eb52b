/*
 * report.c - one workload's results: the table (median [min - max] over
 * the runs, and the ratios of mproc's rows to the baselines, run by run)
 * and the same numbers as JSON.
 */
#include <inttypes.h>
#include <string.h>

#include "bench.h"

const char *const tname[T_NTRANS] = {
	[T_QUEUE] = "mproc queue",
	[T_NQUEUE] = "mproc queue (named)",
	[T_QPOLL] = "mproc queue + poll",
	[T_QZC] = "mproc queue (zero-copy)",
	[T_MPIPE] = "mproc pipe",
	[T_POOL] = "mproc pool",
	[T_BUS] = "mproc bus",
	[T_SLOT] = "mproc slot",
	[T_PIPE] = "raw pipe",
	[T_MQ] = "POSIX mq",
	[T_SEQLOCK] = "seqlock",
	[T_SPSC] = "spsc ring (limit)",
	[T_MEMCPY] = "2 x memcpy",
};

#define BCAST_MIN 3.0 /* target: W8's bus at least 3x the pipes */
#define ZC_MIN 3.0    /* W1 4 KiB, W7a: zero-copy at least 3x a raw pipe */
#define ZC_FULL_MIN 1.5 /* W7b: the same, every byte touched */
#define COPY_MAX 1.5  /* W7: the copy path within 1.5x of 2 x memcpy */
#define MAX_TARGETS 6

static int report_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double report_median(const double *v, int n)
{
	double t[MAX_RUNS];

	if (n <= 0)
		return 0;
	memcpy(t, v, (size_t)n * sizeof(*t));
	qsort(t, (size_t)n, sizeof(*t), report_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

char *report_fmt_rate(char *buf, size_t n, double v)
{
	if (v < 100) /* GB/s (W7) */
		snprintf(buf, n, "%.2f", v);
	else if (v >= 1e6)
		snprintf(buf, n, "%.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, n, "%.1f k", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
	return buf;
}

void report_stat3(const double *v, int n, double out[3])
{
	int i;

	out[0] = report_median(v, n);
	out[1] = out[2] = n ? v[0] : 0;
	for (i = 1; i < n; i++) {
		if (v[i] < out[1])
			out[1] = v[i];
		if (v[i] > out[2])
			out[2] = v[i];
	}
}

/* Stats over the runs of a row; n = 0 when a run failed or was n/a. */
void report_row_stats(const struct row *rw, struct stats *st)
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
	report_stat3(a, st->n, st->rate);
	report_stat3(b, st->n, st->cpu);
	report_stat3(c, st->n, st->rtt);
	report_stat3(d, st->n, st->p99);
}

/* Ratios of mproc row m to baseline row b, run by run. */
struct ratio {
	double rate[3]; /* m.rate / b.rate */
	double cpu[3];  /* m.cpu / b.cpu */
	double rtt[3];  /* m.rtt / b.rtt */
};

static int report_ratio_of(const struct row *m, const struct row *b,
                           struct ratio *out)
{
	double r[MAX_RUNS], c[MAX_RUNS], l[MAX_RUNS];
	struct stats sm, sb;
	int i;

	report_row_stats(m, &sm);
	report_row_stats(b, &sb);
	if (sm.n == 0 || sb.n == 0 || m->nruns != b->nruns)
		return -1;
	for (i = 0; i < m->nruns; i++) {
		r[i] = m->s[i].rate / b->s[i].rate;
		c[i] = m->s[i].cpu_us / b->s[i].cpu_us;
		l[i] = b->s[i].rtt_med_us > 0
		               ? m->s[i].rtt_med_us / b->s[i].rtt_med_us
		               : 0;
	}
	report_stat3(r, m->nruns, out->rate);
	report_stat3(c, m->nruns, out->cpu);
	report_stat3(l, m->nruns, out->rtt);
	return 0;
}

static void report_row_label(char *buf, size_t n, const struct workload *w,
                             int t)
{
	const char *per = w->kind == K_BCAST ? " x" : "";

	if (t == T_MQ && w->kind == K_BCAST)
		snprintf(buf, n, "%s%s%d (depth %ld)", tname[t], per,
		         w->readers, w->mq_depth);
	else if (t == T_MQ)
		snprintf(buf, n, "%s (depth %ld)", tname[t], w->mq_depth);
	else if (t == T_PIPE && w->kind == K_BCAST)
		snprintf(buf, n, "%s%s%d", tname[t], per, w->readers);
	else
		snprintf(buf, n, "%s", tname[t]);
}

const char *report_row_failure(const struct row *rw, int *status)
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

/*
 * The pairs a table compares: each of mproc's rows with the baselines, or
 * a variant of the queue (named, polled) with the plain queue. Fills up
 * to T_NTRANS * T_NTRANS pairs; returns how many.
 */
static int report_pairs(const struct workload *w, int pm[], int pb[])
{
	int t, bt, n = 0;

	for (t = T_QUEUE; t <= T_MPROC_LAST; t++) {
		if (!w->has[t])
			continue;
		if (t_ref(t) >= 0) {
			if (w->has[t_ref(t)]) {
				pm[n] = t;
				pb[n++] = t_ref(t);
			}
			continue;
		}
		for (bt = T_BASE_FIRST; bt < T_NTRANS; bt++)
			if (w->has[bt]) {
				pm[n] = t;
				pb[n++] = bt;
			}
	}
	return n;
}

/* A target printed and written to the JSON, never enforced. */
struct target {
	char text[128];
	const char *row;
	double value;
	double lo, hi; /* the reference's spread; or hi: a limit */
	int met;       /* 1 met, 0 missed, -1 n/a */
	int kind;      /* 0 spread, 1 at least a limit, 2 not judged here */
};

/*
 * report_targets: a named queue within the anonymous queue's run-to-run
 * spread (its median at least the anonymous queue's slowest run; for W5,
 * its median RTT at most the slowest run's); W8's bus at least BCAST_MIN
 * times the pipes; W1p's wake-ups (the sender's system calls are not
 * counted by the bench). Returns how many (at most 3).
 */
/* A target "row m at least limit x row b" (kind 1). */
static void report_ratio_target(struct target *t, const struct row *rows,
                                int m, int b, double limit, const char *text)
{
	struct ratio ra;

	memset(t, 0, sizeof(*t));
	t->row = tname[m];
	t->kind = 1;
	t->hi = limit;
	t->met = -1;
	snprintf(t->text, sizeof(t->text), "%s", text);
	if (report_ratio_of(&rows[m], &rows[b], &ra) == 0) {
		t->value = ra.rate[0];
		t->met = ra.rate[0] >= limit;
	}
}

static int report_targets(const struct workload *w, const struct row *rows,
                          struct target tg[MAX_TARGETS])
{
	struct stats sn, sa;
	struct ratio ra;
	int n = 0;

	if (w->has[T_NQUEUE] && w->has[T_QUEUE]) {
		struct target *t = &tg[n++];

		memset(t, 0, sizeof(*t));
		t->row = tname[T_NQUEUE];
		t->met = -1;
		snprintf(t->text, sizeof(t->text),
		         "named queue within the anonymous queue's run-to-run "
		         "spread (%s)",
		         w->kind == K_PINGPONG ? "median RTT" : w->unit);
		report_row_stats(&rows[T_NQUEUE], &sn);
		report_row_stats(&rows[T_QUEUE], &sa);
		if (sn.n > 0 && sa.n > 0) {
			const double *v = w->kind == K_PINGPONG ? sn.rtt
			                                        : sn.rate;
			const double *r = w->kind == K_PINGPONG ? sa.rtt
			                                        : sa.rate;

			t->value = v[0];
			t->lo = r[1];
			t->hi = r[2];
			/* better than the reference's best is within too */
			t->met = w->kind == K_PINGPONG ? v[0] <= r[2]
			                               : v[0] >= r[1];
		}
	}
	if (w->kind == K_BCAST && w->has[T_BUS] && w->has[T_PIPE]) {
		struct target *t = &tg[n++];

		memset(t, 0, sizeof(*t));
		t->row = tname[T_BUS];
		t->kind = 1;
		t->hi = BCAST_MIN;
		t->met = -1;
		snprintf(t->text, sizeof(t->text),
		         "bus at least %.0fx a raw pipe per reader", BCAST_MIN);
		if (report_ratio_of(&rows[T_BUS], &rows[T_PIPE], &ra) == 0) {
			t->value = ra.rate[0];
			t->met = ra.rate[0] >= BCAST_MIN;
		}
	}
	if (w->has[T_QZC] && w->has[T_PIPE] &&
	    (w->gbps || w->size == 4096)) {
		double lim = w->gbps && !w->handoff ? ZC_FULL_MIN : ZC_MIN;
		char text[128];

		snprintf(text, sizeof(text),
		         "zero-copy at least %.1fx a raw pipe", lim);
		report_ratio_target(&tg[n++], rows, T_QZC, T_PIPE, lim, text);
	}
	if (w->gbps && w->has[T_QUEUE] && w->has[T_MEMCPY]) {
		char text[128];

		snprintf(text, sizeof(text),
		         "copy path within %.1fx of 2 x memcpy (ratio at "
		         "least %.2f)", COPY_MAX, 1 / COPY_MAX);
		report_ratio_target(&tg[n++], rows, T_QUEUE, T_MEMCPY,
		                    1 / COPY_MAX, text);
	}
	if (w->has[T_QPOLL]) {
		struct target *t = &tg[n++];

		memset(t, 0, sizeof(*t));
		t->row = tname[T_QPOLL];
		t->kind = 2;
		t->met = -1;
		snprintf(t->text, sizeof(t->text),
		         "at most one sender system call per wake-up of an idle "
		         "poller, none while it is busy");
		report_row_stats(&rows[T_QPOLL], &sn);
		if (sn.n > 0) {
			double v[MAX_RUNS], o[3];
			int i;

			for (i = 0; i < rows[T_QPOLL].nruns; i++)
				v[i] = rows[T_QPOLL].s[i].wakeups_k;
			report_stat3(v, rows[T_QPOLL].nruns, o);
			t->value = o[0];
		}
	}
	return n;
}

static void report_print_targets(const struct workload *w,
                                 const struct row *rows)
{
	struct target tg[MAX_TARGETS];
	char a[32];
	int n = report_targets(w, rows, tg), i;

	for (i = 0; i < n; i++) {
		printf("    target %s: ", tg[i].text);
		if (tg[i].kind == 2) {
			printf("%.2f poll wake-ups per 1000 messages; the sender's "
			       "system calls are not counted here (strace -f -c, "
			       "BENCHMARKS.md)\n", tg[i].value);
			continue;
		}
		if (tg[i].met >= 0 && tg[i].kind == 1)
			printf("%.2fx: ", tg[i].value);
		else if (tg[i].met >= 0 && w->kind == K_PINGPONG)
			printf("%.2f us vs [%.2f - %.2f]: ", tg[i].value,
			       tg[i].lo, tg[i].hi);
		else if (tg[i].met >= 0) {
			printf("%s vs ", report_fmt_rate(a, sizeof(a),
			                                  tg[i].value));
			printf("[%s - ", report_fmt_rate(a, sizeof(a), tg[i].lo));
			printf("%s]: ", report_fmt_rate(a, sizeof(a), tg[i].hi));
		}
		printf("%s\n", report_met(tg[i].met));
	}
}

static void report_json_targets(FILE *f, const struct workload *w,
                                const struct row *rows)
{
	struct target tg[MAX_TARGETS];
	int n = report_targets(w, rows, tg), i;

	fprintf(f, ",\n     \"targets\": [");
	for (i = 0; i < n; i++) {
		fprintf(f, "%s\n       {\"target\": ", i ? "," : "");
		report_json_str(f, tg[i].text);
		fprintf(f, ", \"row\": ");
		report_json_str(f, tg[i].row);
		if (tg[i].kind == 2)
			fprintf(f, ", \"poll_wakeups_per_1000\": %.6g, \"note\": "
			        "\"the sender's system calls are not counted by "
			        "the bench\"", tg[i].value);
		else if (tg[i].kind == 1)
			fprintf(f, ", \"value\": %.6g, \"limit\": %.6g",
			        tg[i].value, tg[i].hi);
		else
			fprintf(f, ", \"value\": %.6g, \"ref_min\": %.6g, "
			        "\"ref_max\": %.6g", tg[i].value, tg[i].lo,
			        tg[i].hi);
		fprintf(f, ", \"met\": ");
		report_json_met(f, tg[i].met);
		fprintf(f, "}");
	}
	fprintf(f, "]");
}

void report_table(const struct workload *w, const struct row *rows)
{
	char lab[64], a[32], b[80], c[40], wk[32];
	int pm[T_NTRANS * T_NTRANS], pb[T_NTRANS * T_NTRANS];
	bool polled = w->has[T_QPOLL];
	struct stats st;
	struct ratio ra;
	int t, status, np, k, nruns = 0;
	const char *why;

	for (t = 0; t < T_NTRANS; t++)
		if (w->has[t] && rows[t].nruns > nruns)
			nruns = rows[t].nruns;
	printf("\n%s  %s, %u B payload, %" PRIu64 " %s%s, %d run%s "
	       "(median [min - max])\n", w->id, w->title, w->size, w->n,
	       w->kind == K_PINGPONG ? "round trips" :
	       w->kind == K_POOL ? "tasks" : "messages",
	       w->kind == K_POOL ? (w->directed ? " addressed to workers"
	                                        : "") : "",
	       nruns > 0 ? nruns : opt_runs, opt_runs == 1 ? "" : "s");
	if (w->kind == K_POOL)
		printf("    %d workers, at most %d tasks in flight; raw pipe: one "
		       "task pipe per worker, one result pipe\n",
		       w->workers, w->window);
	if (w->kind == K_BCAST)
		printf("    1 writer, %d reader%s, each gets every message "
		       "(msgs/s: to each reader); raw pipe, POSIX mq: one\n"
		       "    per reader, the writer sends each message to "
		       "every one; CPU: all processes, per message sent\n",
		       w->readers, w->readers == 1 ? "" : "s");
	if (w->gbps && w->handoff)
		printf("    GB/s: 1e9 payload bytes a second. The hand-off alone: "
		       "the body is written once\n    (the copy paths send "
		       "the same buffer, zero-copy and the ring reserve in\n"
		       "    place and leave it), a 16-byte header is written "
		       "and checked per message\n");
	else if (w->gbps)
		printf("    GB/s: 1e9 payload bytes a second. Every byte: the "
		       "sender fills the whole\n    payload, the receiver "
		       "sums all of it (zero-copy and the ring: in place)\n");
	if (w->has[T_MEMCPY])
		printf("    2 x memcpy: one process builds each message, copies "
		       "it twice, checks it:\n    the limit of a path that "
		       "copies in and out\n");
	if (w->has[T_QZC] && !w->gbps)
		printf("    zero-copy: mproc_send_reserve, the payload built "
		       "in place, commit; mproc_recv_borrow,\n    checked in "
		       "place, release. spsc ring: one shared mapping, "
		       "lock-free, in place\n");
	if (polled)
		printf("    mproc queue + poll: the consumer receives with "
		       "MPROC_NOWAIT until -EAGAIN, then poll()s\n"
		       "    mproc_fd; wake-ups: poll() returns per 1000 "
		       "messages\n");
	if (w->kind == K_PINGPONG)
		printf("    %-24s %-12s %-24s %-10s %-10s %s\n", "transport",
		       w->unit, "[min - max]", "RTT med", "RTT p99",
		       "CPU us/rt");
	else
		printf("    %-24s %-12s %-24s %-12s%s\n", "transport", w->unit,
		       "[min - max]",
		       w->kind == K_POOL ? "CPU us/task" : "CPU us/msg",
		       polled ? "wake-ups/1k" : "");
	for (t = 0; t < T_NTRANS; t++) {
		if (!w->has[t])
			continue;
		report_row_label(lab, sizeof(lab), w, t);
		why = report_row_failure(&rows[t], &status);
		if (t == T_MQ && w->mq_depth <= 0) {
			printf("    %-24s %s\n", tname[t], w->mq_why);
			continue;
		}
		if (why != NULL) {
			printf("    %-24s %s%s\n", lab,
			       status < 0 ? "FAIL: " : "", why);
			continue;
		}
		report_row_stats(&rows[t], &st);
		snprintf(c, sizeof(c), "[%s",
		         report_fmt_rate(a, sizeof(a), st.rate[1]));
		snprintf(b, sizeof(b), "%s - %s]", c,
		         report_fmt_rate(a, sizeof(a), st.rate[2]));
		if (w->kind == K_PINGPONG) {
			char med[32], p99[32];

			snprintf(med, sizeof(med), "%.2f us", st.rtt[0]);
			snprintf(p99, sizeof(p99), "%.2f us", st.p99[0]);
			printf("    %-24s %-12s %-24s %-10s %-10s %.3f\n", lab,
			       report_fmt_rate(a, sizeof(a), st.rate[0]), b,
			       med, p99, st.cpu[0]);
			continue;
		}
		wk[0] = '\0';
		if (t == T_QPOLL) {
			double v[MAX_RUNS], o[3];
			int i;

			for (i = 0; i < rows[t].nruns; i++)
				v[i] = rows[t].s[i].wakeups_k;
			report_stat3(v, rows[t].nruns, o);
			snprintf(wk, sizeof(wk), "%.2f [%.2f - %.2f]", o[0],
			         o[1], o[2]);
		} else if (polled) {
			snprintf(wk, sizeof(wk), "-");
		}
		snprintf(c, sizeof(c), "%.3f", st.cpu[0]);
		printf("    %-24s %-12s %-24s %-12s%s\n", lab,
		       report_fmt_rate(a, sizeof(a), st.rate[0]), b, c, wk);
	}
	np = report_pairs(w, pm, pb);
	for (k = 0; k < np; k++) {
		if (report_ratio_of(&rows[pm[k]], &rows[pb[k]], &ra) != 0)
			continue;
		snprintf(lab, sizeof(lab), "%s / %s", tname[pm[k]],
		         tname[pb[k]]);
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
	report_print_targets(w, rows);
	fflush(stdout);
}

void report_json_str(FILE *f, const char *s)
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

void report_json_3(FILE *f, const char *name, const double v[3])
{
	fprintf(f, "\"%s\": {\"median\": %.6g, \"min\": %.6g, \"max\": %.6g}",
	        name, v[0], v[1], v[2]);
}

void report_json_workload(FILE *f, const struct workload *w,
                          const struct row *rows, bool first)
{
	int pm[T_NTRANS * T_NTRANS], pb[T_NTRANS * T_NTRANS];
	struct stats st;
	struct ratio ra;
	int t, i, k, np, status;
	bool f1 = true;
	const char *why;

	fprintf(f, "%s\n    {\"id\": ", first ? "" : ",");
	report_json_str(f, w->id);
	fprintf(f, ", \"title\": ");
	report_json_str(f, w->title);
	fprintf(f,
	        ", \"size\": %u, \"count\": %" PRIu64 ", \"unit\": ", w->size,
	        w->n);
	report_json_str(f, w->unit);
	fprintf(f, ", \"producers\": %d, \"consumers\": %d, \"workers\": %d, "
	        "\"readers\": %d, \"directed\": %s, \"mq_depth\": %ld, "
	        "\"window\": %d,\n     \"rows\": [", w->producers,
	        w->consumers, w->workers, w->readers,
	        w->directed ? "true" : "false", w->mq_depth, w->window);
	for (t = 0; t < T_NTRANS; t++) {
		if (!w->has[t])
			continue;
		why = report_row_failure(&rows[t], &status);
		if (t == T_MQ && w->mq_depth <= 0) {
			status = 1;
			why = w->mq_why;
		}
		fprintf(f, "%s\n       {\"transport\": ", f1 ? "" : ",");
		f1 = false;
		report_json_str(f, tname[t]);
		if (w->kind == K_BCAST && (t == T_PIPE || t == T_MQ))
			fprintf(f, ", \"channels\": %d", w->readers);
		fprintf(f, ", \"status\": \"%s\"", status == 0 ? "ok" :
		        status > 0 ? "n/a" : "failed");
		if (why != NULL) {
			fprintf(f, ", \"why\": ");
			report_json_str(f, why);
			fprintf(f, "}");
			continue;
		}
		report_row_stats(&rows[t], &st);
		fprintf(f, ", ");
		report_json_3(f, "rate", st.rate);
		fprintf(f, ", ");
		report_json_3(f, "cpu_us", st.cpu);
		if (w->kind == K_PINGPONG) {
			fprintf(f, ", ");
			report_json_3(f, "rtt_median_us", st.rtt);
			fprintf(f, ", ");
			report_json_3(f, "rtt_p99_us", st.p99);
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
			if (t == T_QPOLL)
				fprintf(f, ", \"poll_wakeups_per_1000\": %.6g",
				        s->wakeups_k);
			fprintf(f, "}");
		}
		fprintf(f, "]}");
	}
	fprintf(f, "],\n     \"ratios\": [");
	np = report_pairs(w, pm, pb);
	for (k = 0, f1 = true; k < np; k++) {
		if (report_ratio_of(&rows[pm[k]], &rows[pb[k]], &ra) != 0)
			continue;
		fprintf(f, "%s\n       {\"mproc\": ", f1 ? "" : ",");
		f1 = false;
		report_json_str(f, tname[pm[k]]);
		fprintf(f, ", \"baseline\": ");
		report_json_str(f, tname[pb[k]]);
		fprintf(f, ", ");
		report_json_3(f, "rate", ra.rate);
		fprintf(f, ", ");
		report_json_3(f, "cpu", ra.cpu);
		if (w->kind == K_PINGPONG) {
			fprintf(f, ", ");
			report_json_3(f, "rtt_median", ra.rtt);
		}
		fprintf(f, "}");
	}
	fprintf(f, "]");
	report_json_targets(f, w, rows);
	fprintf(f, "}");
}

/* ------------------------------------------------------------------ */
/* W1w: one row per watch mode                                         */
/* ------------------------------------------------------------------ */

const char *const watch_row[WATCH_N] = {
	[WATCH_NONE] = "W1",
	[WATCH_1MS] = "W1w1ms",
	[WATCH_LOOP] = "W1wloop",
};

static const char *const watch_key[WATCH_N] = {
	[WATCH_NONE] = "none",
	[WATCH_1MS] = "1ms",
	[WATCH_LOOP] = "loop",
};

#define WATCH_LOOP_MIN 0.2   /* target: W1wloop at least 0.2x W1 */
#define WATCH_STALL_MS 50.0  /* target: no receive that long */

/* One W1w row over its runs; n = 0 when a run failed or was n/a. */
struct watch_stats {
	int n;
	double rate[3];
	double cpu[3];
	double ratio[3]; /* to row W1, run by run; n/a for W1 itself */
	double calls[3];
	double recv_ms[3];
	bool has_ratio;
};

static void report_watch_stats(const struct row rows[WATCH_N], int m,
                               struct watch_stats *ws)
{
	const struct row *rw = &rows[m], *b = &rows[WATCH_NONE];
	double r[MAX_RUNS], c[MAX_RUNS], l[MAX_RUNS];
	struct stats st, sb;
	int i;

	memset(ws, 0, sizeof(*ws));
	report_row_stats(rw, &st);
	if (st.n == 0)
		return;
	ws->n = st.n;
	memcpy(ws->rate, st.rate, sizeof(ws->rate));
	memcpy(ws->cpu, st.cpu, sizeof(ws->cpu));
	for (i = 0; i < rw->nruns; i++) {
		c[i] = (double)rw->s[i].stats_calls;
		l[i] = rw->s[i].max_recv_ms;
	}
	report_stat3(c, rw->nruns, ws->calls);
	report_stat3(l, rw->nruns, ws->recv_ms);
	report_row_stats(b, &sb);
	if (m == WATCH_NONE || sb.n == 0 || b->nruns != rw->nruns)
		return;
	for (i = 0; i < rw->nruns; i++)
		r[i] = rw->s[i].rate / b->s[i].rate;
	report_stat3(r, rw->nruns, ws->ratio);
	ws->has_ratio = true;
}

/*
 * The targets of W1w, judged on this sitting's numbers: met 1, missed 0,
 * n/a -1 (a row failed or did not run).
 */
struct watch_targets {
	int spread_met;     /* W1w1ms's median within W1's [min - max] */
	double spread_val;  /* W1w1ms's median rate */
	double spread_min;  /* W1's slowest run */
	double spread_max;
	int loop_met;       /* W1wloop's ratio >= WATCH_LOOP_MIN */
	double loop_val;
	int stall_met;      /* every row's longest receive < WATCH_STALL_MS */
	double stall_val;
	int stall_row;
};

static void report_watch_targets(const struct row rows[WATCH_N],
                                 struct watch_targets *t)
{
	struct watch_stats s[WATCH_N];
	int m;

	memset(t, 0, sizeof(*t));
	for (m = 0; m < WATCH_N; m++)
		report_watch_stats(rows, m, &s[m]);
	t->spread_met = t->loop_met = t->stall_met = -1;
	if (s[WATCH_NONE].n > 0 && s[WATCH_1MS].n > 0) {
		t->spread_val = s[WATCH_1MS].rate[0];
		t->spread_min = s[WATCH_NONE].rate[1];
		t->spread_max = s[WATCH_NONE].rate[2];
		/* faster than W1's fastest run is within the spread too */
		t->spread_met = t->spread_val >= t->spread_min;
	}
	if (s[WATCH_LOOP].has_ratio) {
		t->loop_val = s[WATCH_LOOP].ratio[0];
		t->loop_met = t->loop_val >= WATCH_LOOP_MIN;
	}
	for (m = 0; m < WATCH_N; m++) {
		if (s[m].n == 0) {
			t->stall_met = -1;
			return;
		}
		if (m == 0 || s[m].recv_ms[2] > t->stall_val) {
			t->stall_val = s[m].recv_ms[2];
			t->stall_row = m;
		}
	}
	t->stall_met = t->stall_val < WATCH_STALL_MS;
}

const char *report_met(int met)
{
	return met > 0 ? "met" : met == 0 ? "missed" : "n/a";
}

/* W1w's two sets of rows: the anonymous queue's, the named queue's. */
static const enum transport watch_vt[2] = { T_QUEUE, T_NQUEUE };
static const char *const watch_suffix[2] = { "", " named" };

static void report_watch_print_targets(const struct row rows[WATCH_N],
                                       int v)
{
	struct watch_targets tg;
	char a[32];
	const char *sfx = watch_suffix[v];

	report_watch_targets(rows, &tg);
	printf("    target W1w1ms%s within W1%s's run-to-run spread: ", sfx,
	       sfx);
	if (tg.spread_met >= 0) {
		printf("%s vs W1 ",
		       report_fmt_rate(a, sizeof(a), tg.spread_val));
		printf("[%s - ", report_fmt_rate(a, sizeof(a), tg.spread_min));
		printf("%s]: ", report_fmt_rate(a, sizeof(a), tg.spread_max));
	}
	printf("%s\n", report_met(tg.spread_met));
	printf("    target W1wloop%s >= %.1fx W1%s: ", sfx, WATCH_LOOP_MIN,
	       sfx);
	if (tg.loop_met >= 0)
		printf("%.2fx: ", tg.loop_val);
	printf("%s\n", report_met(tg.loop_met));
	printf("    target no receive of %.0f ms or more%s: ", WATCH_STALL_MS,
	       v ? " (named)" : "");
	if (tg.stall_met >= 0)
		printf("longest %.3f ms (%s%s): ", tg.stall_val,
		       watch_row[tg.stall_row], sfx);
	printf("%s\n", report_met(tg.stall_met));
}

void report_watch_table(const struct workload *w,
                        const struct row rows[2][WATCH_N])
{
	struct watch_stats s;
	struct ratio rt;
	char a[32], b[80], c[40], ra[48], calls[24], recv[24], lab[32];
	const char *why;
	int m, status, v;

	printf("\n%s  %s, %u B payload, %" PRIu64 " messages, %d run%s "
	       "(median [min - max])\n", w->id, w->title, w->size, w->n,
	       rows[0][WATCH_NONE].nruns > 0 ? rows[0][WATCH_NONE].nruns
	                                     : opt_runs,
	       opt_runs == 1 ? "" : "s");
	printf("    mproc queue; a 3rd process calls mproc_queue_stats: never "
	       "(W1), every 1 ms (W1w1ms),\n    in a tight loop (W1wloop). "
	       "Every row's consumer reads the clock once per receive;\n"
	       "    longest recv: the longest gap between two returns of "
	       "mproc_recv, worst run\n");
	if (w->has[T_NQUEUE])
		printf("    rows \"named\": the same on a named queue, attached "
		       "by name; ratio to that queue's own W1\n");
	if (!w->has[T_QUEUE] && !w->has[T_NQUEUE]) {
		printf("    n/a (needs the queue: --transports queue)\n");
		fflush(stdout);
		return;
	}
	printf("    %-14s %-12s %-24s %-22s %-12s %-13s %s\n", "row", w->unit,
	       "[min - max]", "ratio to W1", "stats calls", "longest recv",
	       "CPU us/msg");
	for (v = 0; v < 2; v++) {
		if (!w->has[watch_vt[v]])
			continue;
		for (m = 0; m < WATCH_N; m++) {
			snprintf(lab, sizeof(lab), "%s%s", watch_row[m],
			         watch_suffix[v]);
			why = report_row_failure(&rows[v][m], &status);
			if (why != NULL) {
				printf("    %-14s %s%s\n", lab,
				       status < 0 ? "FAIL: " : "", why);
				continue;
			}
			report_watch_stats(rows[v], m, &s);
			if (s.n == 0)
				continue;
			snprintf(c, sizeof(c), "[%s",
			         report_fmt_rate(a, sizeof(a), s.rate[1]));
			snprintf(b, sizeof(b), "%s - %s]", c,
			         report_fmt_rate(a, sizeof(a), s.rate[2]));
			if (s.has_ratio)
				snprintf(ra, sizeof(ra), "%.2fx [%.2f - %.2f]",
				         s.ratio[0], s.ratio[1], s.ratio[2]);
			else
				snprintf(ra, sizeof(ra), "-");
			if (m == WATCH_NONE)
				snprintf(calls, sizeof(calls), "-");
			else
				snprintf(calls, sizeof(calls), "%.0f",
				         s.calls[0]);
			snprintf(recv, sizeof(recv), "%.3f ms", s.recv_ms[2]);
			printf("    %-14s %-12s %-24s %-22s %-12s %-13s %.3f\n",
			       lab, report_fmt_rate(a, sizeof(a), s.rate[0]),
			       b, ra, calls, recv, s.cpu[0]);
		}
	}
	for (m = 0; m < WATCH_N && w->has[T_QUEUE] && w->has[T_NQUEUE]; m++) {
		if (report_ratio_of(&rows[1][m], &rows[0][m], &rt) != 0)
			continue;
		snprintf(lab, sizeof(lab), "%s named / %s", watch_row[m],
		         watch_row[m]);
		printf("    ratio %-26s %.2fx [%.2f - %.2f]  CPU/msg %.2fx\n",
		       lab, rt.rate[0], rt.rate[1], rt.rate[2], rt.cpu[0]);
	}
	for (v = 0; v < 2; v++)
		if (w->has[watch_vt[v]])
			report_watch_print_targets(rows[v], v);
	fflush(stdout);
}

void report_json_met(FILE *f, int met)
{
	fprintf(f, "%s", met > 0 ? "true" : met == 0 ? "false" : "null");
}

static void report_json_watch_targets(FILE *f, const struct row rows[WATCH_N],
                                      int v, bool first)
{
	struct watch_targets tg;

	report_watch_targets(rows, &tg);
	fprintf(f, "%s\n       {\"target\": \"W1w1ms within the run-to-run "
	        "spread of plain W1\", \"transport\": ", first ? "" : ",");
	report_json_str(f, tname[watch_vt[v]]);
	fprintf(f, ", \"row\": \"W1w1ms\", \"value\": %.6g, "
	        "\"w1_min\": %.6g, \"w1_max\": %.6g, \"met\": ",
	        tg.spread_val, tg.spread_min, tg.spread_max);
	report_json_met(f, tg.spread_met);
	fprintf(f, "},\n       {\"target\": \"W1wloop at least %.1fx plain "
	        "W1\", \"transport\": ", WATCH_LOOP_MIN);
	report_json_str(f, tname[watch_vt[v]]);
	fprintf(f, ", \"row\": \"W1wloop\", \"value\": %.6g, \"limit\": %.6g, "
	        "\"met\": ", tg.loop_val, WATCH_LOOP_MIN);
	report_json_met(f, tg.loop_met);
	fprintf(f, "},\n       {\"target\": \"no single receive stalls for "
	        "%.0f ms\", \"transport\": ", WATCH_STALL_MS);
	report_json_str(f, tname[watch_vt[v]]);
	fprintf(f, ", \"row\": ");
	report_json_str(f, watch_row[tg.stall_row]);
	fprintf(f, ", \"value\": %.6g, \"limit\": %.6g, \"met\": ",
	        tg.stall_val, WATCH_STALL_MS);
	report_json_met(f, tg.stall_met);
	fprintf(f, "}");
}

void report_json_watch(FILE *f, const struct workload *w,
                       const struct row rows[2][WATCH_N], bool first)
{
	struct watch_stats s;
	struct ratio rt;
	int m, i, status, v;
	bool f1 = true;
	const char *why;

	fprintf(f, "%s\n    {\"id\": ", first ? "" : ",");
	report_json_str(f, w->id);
	fprintf(f, ", \"title\": ");
	report_json_str(f, w->title);
	fprintf(f,
	        ", \"size\": %u, \"count\": %" PRIu64 ", \"unit\": ", w->size,
	        w->n);
	report_json_str(f, w->unit);
	fprintf(f, ", \"producers\": %d, \"consumers\": %d, \"workers\": %d, "
	        "\"directed\": %s, \"mq_depth\": %ld, \"window\": %d,\n"
	        "     \"watch_sleep_ms\": 1, \"recv_timing\": \"one "
	        "CLOCK_MONOTONIC read per receive in every row; max_recv_ms: "
	        "the longest gap between two returns of mproc_recv\",\n"
	        "     \"rows\": [", w->producers, w->consumers, w->workers,
	        w->directed ? "true" : "false", w->mq_depth, w->window);
	for (v = 0; v < 2; v++) {
		for (m = 0; m < WATCH_N && w->has[watch_vt[v]]; m++) {
			why = report_row_failure(&rows[v][m], &status);
			fprintf(f, "%s\n       {\"row\": ", f1 ? "" : ",");
			f1 = false;
			report_json_str(f, watch_row[m]);
			fprintf(f, ", \"watcher\": ");
			report_json_str(f, watch_key[m]);
			fprintf(f, ", \"transport\": ");
			report_json_str(f, tname[watch_vt[v]]);
			fprintf(f, ", \"status\": \"%s\"", status == 0 ? "ok" :
			        status > 0 ? "n/a" : "failed");
			if (why != NULL) {
				fprintf(f, ", \"why\": ");
				report_json_str(f, why);
				fprintf(f, "}");
				continue;
			}
			report_watch_stats(rows[v], m, &s);
			fprintf(f, ", ");
			report_json_3(f, "rate", s.rate);
			fprintf(f, ", ");
			report_json_3(f, "cpu_us", s.cpu);
			if (s.has_ratio) {
				fprintf(f, ", ");
				report_json_3(f, "ratio_to_w1", s.ratio);
			}
			if (m != WATCH_NONE) {
				fprintf(f, ", ");
				report_json_3(f, "stats_calls", s.calls);
			}
			fprintf(f, ", ");
			report_json_3(f, "max_recv_ms", s.recv_ms);
			fprintf(f, ", \"runs\": [");
			for (i = 0; i < rows[v][m].nruns; i++) {
				const struct sample *sp = &rows[v][m].s[i];

				fprintf(f,
				        "%s{\"rate\": %.6g, \"cpu_us\": %.6g, "
				        "\"elapsed_s\": %.6g, \"max_recv_ms\": %.6g",
				        i ? ", " : "", sp->rate, sp->cpu_us,
				        sp->elapsed_s, sp->max_recv_ms);
				if (m != WATCH_NONE)
					fprintf(f, ", \"stats_calls\": %" PRIu64,
					        sp->stats_calls);
				fprintf(f, "}");
			}
			fprintf(f, "]}");
		}
	}
	fprintf(f, "],\n     \"ratios\": [");
	for (m = 0, f1 = true; m < WATCH_N; m++) {
		if (!w->has[T_QUEUE] || !w->has[T_NQUEUE] ||
		    report_ratio_of(&rows[1][m], &rows[0][m], &rt) != 0)
			continue;
		fprintf(f, "%s\n       {\"row\": ", f1 ? "" : ",");
		f1 = false;
		report_json_str(f, watch_row[m]);
		fprintf(f, ", \"mproc\": ");
		report_json_str(f, tname[T_NQUEUE]);
		fprintf(f, ", \"baseline\": ");
		report_json_str(f, tname[T_QUEUE]);
		fprintf(f, ", ");
		report_json_3(f, "rate", rt.rate);
		fprintf(f, ", ");
		report_json_3(f, "cpu", rt.cpu);
		fprintf(f, "}");
	}
	fprintf(f, "],\n     \"targets\": [");
	for (v = 0, f1 = true; v < 2; v++) {
		if (!w->has[watch_vt[v]])
			continue;
		report_json_watch_targets(f, rows[v], v, f1);
		f1 = false;
	}
	fprintf(f, "]}");
}
