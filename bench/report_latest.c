/*
 * report_latest.c - W9's table and JSON: per row the updates per second
 * (the writer), the reads per second (new values, all readers together),
 * the read latency of a new value (median and p99 over every value every
 * reader got), CPU per update; the slot's ratios to the seqlock, run by
 * run, and the target (within LATEST_MAX of the seqlock).
 */
#include <inttypes.h>
#include <string.h>

#include "bench.h"

#define LATEST_MAX 2.0 /* target: the slot within 2x of the seqlock */
/* A run whose median read latency is over this waited for a CPU (a new
 * value is read in well under 1 us when a reader has one), not for the
 * value. */
#define LATEST_SLOW_US 100.0

static int report_latest_slow(const struct row *rw)
{
	int i, n = 0;

	for (i = 0; i < rw->nruns; i++)
		n += rw->s[i].status == 0 && rw->s[i].rtt_med_us > LATEST_SLOW_US;
	return n;
}

/* Ratios slot / seqlock, run by run (latency: > 1 is slower). */
struct latest_ratio {
	double upd[3];
	double reads[3];
	double lat[3];
	double p99[3];
};

static int report_latest_ratio(const struct row *m, const struct row *b,
                               struct latest_ratio *out)
{
	double u[MAX_RUNS], r[MAX_RUNS], l[MAX_RUNS], p[MAX_RUNS];
	struct stats sm, sb;
	int i;

	report_row_stats(m, &sm);
	report_row_stats(b, &sb);
	if (sm.n == 0 || sb.n == 0 || m->nruns != b->nruns)
		return -1;
	for (i = 0; i < m->nruns; i++) {
		u[i] = m->s[i].rate / b->s[i].rate;
		r[i] = m->s[i].reads_rate / b->s[i].reads_rate;
		l[i] = m->s[i].rtt_med_us / b->s[i].rtt_med_us;
		p[i] = m->s[i].rtt_p99_us / b->s[i].rtt_p99_us;
	}
	report_stat3(u, m->nruns, out->upd);
	report_stat3(r, m->nruns, out->reads);
	report_stat3(l, m->nruns, out->lat);
	report_stat3(p, m->nruns, out->p99);
	return 0;
}

static void report_latest_reads(const struct row *rw, double out[3])
{
	double v[MAX_RUNS];
	int i;

	for (i = 0; i < rw->nruns; i++)
		v[i] = rw->s[i].reads_rate;
	report_stat3(v, rw->nruns, out);
}

/* The target's three parts: updates and reads at least 1/LATEST_MAX of
 * the seqlock's, the median latency at most LATEST_MAX times. */
static void report_latest_met(const struct latest_ratio *ra, int met[3])
{
	met[0] = ra->upd[0] >= 1 / LATEST_MAX;
	met[1] = ra->reads[0] >= 1 / LATEST_MAX;
	met[2] = ra->lat[0] <= LATEST_MAX;
}

void report_latest_table(const struct workload *w, const struct row *rows)
{
	static const int tr[2] = { T_SLOT, T_SEQLOCK };
	char a[32], b[80], c[40], rd[32], med[32], p99[32];
	struct latest_ratio ra;
	struct stats st;
	double reads[3];
	int k, status, met[3];
	const char *why;

	printf("\n%s  %s, %u B value, %" PRIu64 " updates, %d run%s "
	       "(median [min - max])\n", w->id, w->title, w->size, w->n,
	       rows[T_SLOT].nruns > 0 ? rows[T_SLOT].nruns : opt_runs,
	       opt_runs == 1 ? "" : "s");
	printf("    readers spin: mproc_recv(MPROC_NOWAIT) on the slot, an "
	       "even unchanged seq on the seqlock;\n"
	       "    reads/s: new values, all readers; latency: the writer's "
	       "stamp (taken just before it\n"
	       "    publishes) to the reader's clock after the read, over "
	       "every new value every reader got\n");
	printf("    %-24s %-12s %-24s %-10s %-10s %-10s %s\n", "transport",
	       w->unit, "[min - max]", "reads/s", "lat med", "lat p99",
	       "CPU us/update");
	for (k = 0; k < 2; k++) {
		const struct row *rw = &rows[tr[k]];

		if (!w->has[tr[k]])
			continue;
		why = report_row_failure(rw, &status);
		if (why != NULL) {
			printf("    %-24s %s%s\n", tname[tr[k]],
			       status < 0 ? "FAIL: " : "", why);
			continue;
		}
		report_row_stats(rw, &st);
		report_latest_reads(rw, reads);
		snprintf(c, sizeof(c), "[%s",
		         report_fmt_rate(a, sizeof(a), st.rate[1]));
		snprintf(b, sizeof(b), "%s - %s]", c,
		         report_fmt_rate(a, sizeof(a), st.rate[2]));
		report_fmt_rate(rd, sizeof(rd), reads[0]);
		snprintf(med, sizeof(med), "%.2f us", st.rtt[0]);
		snprintf(p99, sizeof(p99), "%.2f us", st.p99[0]);
		printf("    %-24s %-12s %-24s %-10s %-10s %-10s %.3f\n",
		       tname[tr[k]], report_fmt_rate(a, sizeof(a), st.rate[0]),
		       b, rd, med, p99, st.cpu[0]);
	}
	for (k = 0; k < 2; k++)
		if (w->has[tr[k]] && report_latest_slow(&rows[tr[k]]) > 0)
			printf("    note: %s: %d of %d runs with a median read "
			       "latency over %.0f us: its readers waited for a\n"
			       "    CPU, not for a value (more spinning processes "
			       "than free cores); their ratios mean little\n",
			       tname[tr[k]], report_latest_slow(&rows[tr[k]]),
			       rows[tr[k]].nruns, LATEST_SLOW_US);
	if (!w->has[T_SLOT] || !w->has[T_SEQLOCK] ||
	    report_latest_ratio(&rows[T_SLOT], &rows[T_SEQLOCK], &ra) != 0) {
		printf("    target within %.0fx of the seqlock: n/a\n",
		       LATEST_MAX);
		fflush(stdout);
		return;
	}
	printf("    ratio mproc slot / seqlock  updates %.2fx [%.2f - %.2f]  "
	       "reads %.2fx [%.2f - %.2f]\n"
	       "                                latency median %.2fx "
	       "[%.2f - %.2f]  p99 %.2fx\n",
	       ra.upd[0], ra.upd[1], ra.upd[2], ra.reads[0], ra.reads[1],
	       ra.reads[2], ra.lat[0], ra.lat[1], ra.lat[2], ra.p99[0]);
	report_latest_met(&ra, met);
	printf("    target within %.0fx of the seqlock: updates/s %.2fx: %s; "
	       "reads/s %.2fx: %s; median latency %.2fx: %s\n",
	       LATEST_MAX, ra.upd[0], report_met(met[0]), ra.reads[0],
	       report_met(met[1]), ra.lat[0], report_met(met[2]));
	fflush(stdout);
}

void report_json_latest(FILE *f, const struct workload *w,
                        const struct row *rows, bool first)
{
	static const int tr[2] = { T_SLOT, T_SEQLOCK };
	static const char *const part[3] = { "updates/s", "reads/s",
		                             "median read latency" };
	struct latest_ratio ra;
	struct stats st;
	double reads[3], val[3];
	int k, i, status, met[3] = { -1, -1, -1 };
	bool f1 = true, have;
	const char *why;

	fprintf(f, "%s\n    {\"id\": ", first ? "" : ",");
	report_json_str(f, w->id);
	fprintf(f, ", \"title\": ");
	report_json_str(f, w->title);
	fprintf(f, ", \"size\": %u, \"count\": %" PRIu64 ", \"unit\": ",
	        w->size, w->n);
	report_json_str(f, w->unit);
	fprintf(f, ", \"readers\": %d, \"reader_loop\": \"spin: "
	        "mproc_recv MPROC_NOWAIT / seqlock retry\",\n"
	        "     \"rows\": [", w->readers);
	for (k = 0; k < 2; k++) {
		const struct row *rw = &rows[tr[k]];

		if (!w->has[tr[k]])
			continue;
		why = report_row_failure(rw, &status);
		fprintf(f, "%s\n       {\"transport\": ", f1 ? "" : ",");
		f1 = false;
		report_json_str(f, tname[tr[k]]);
		fprintf(f, ", \"status\": \"%s\"", status == 0 ? "ok" :
		        status > 0 ? "n/a" : "failed");
		if (why != NULL) {
			fprintf(f, ", \"why\": ");
			report_json_str(f, why);
			fprintf(f, "}");
			continue;
		}
		report_row_stats(rw, &st);
		report_latest_reads(rw, reads);
		fprintf(f, ", ");
		report_json_3(f, "rate", st.rate);
		fprintf(f, ", ");
		report_json_3(f, "reads_rate", reads);
		fprintf(f, ", ");
		report_json_3(f, "latency_median_us", st.rtt);
		fprintf(f, ", ");
		report_json_3(f, "latency_p99_us", st.p99);
		fprintf(f, ", ");
		report_json_3(f, "cpu_us", st.cpu);
		fprintf(f, ", \"runs_median_latency_over_100us\": %d",
		        report_latest_slow(rw));
		fprintf(f, ", \"runs\": [");
		for (i = 0; i < rw->nruns; i++) {
			const struct sample *s = &rw->s[i];

			fprintf(f, "%s{\"rate\": %.6g, \"reads_rate\": %.6g, "
			        "\"latency_median_us\": %.6g, "
			        "\"latency_p99_us\": %.6g, \"cpu_us\": %.6g, "
			        "\"elapsed_s\": %.6g}",
			        i ? ", " : "", s->rate, s->reads_rate,
			        s->rtt_med_us, s->rtt_p99_us, s->cpu_us,
			        s->elapsed_s);
		}
		fprintf(f, "]}");
	}
	fprintf(f, "],\n     \"ratios\": [");
	have = w->has[T_SLOT] && w->has[T_SEQLOCK] &&
	       report_latest_ratio(&rows[T_SLOT], &rows[T_SEQLOCK], &ra) == 0;
	memset(val, 0, sizeof(val));
	if (have) {
		fprintf(f, "\n       {\"mproc\": ");
		report_json_str(f, tname[T_SLOT]);
		fprintf(f, ", \"baseline\": ");
		report_json_str(f, tname[T_SEQLOCK]);
		fprintf(f, ", ");
		report_json_3(f, "rate", ra.upd);
		fprintf(f, ", ");
		report_json_3(f, "reads_rate", ra.reads);
		fprintf(f, ", ");
		report_json_3(f, "latency_median", ra.lat);
		fprintf(f, ", ");
		report_json_3(f, "latency_p99", ra.p99);
		fprintf(f, "}");
		report_latest_met(&ra, met);
		val[0] = ra.upd[0];
		val[1] = ra.reads[0];
		val[2] = ra.lat[0];
	}
	fprintf(f, "],\n     \"targets\": [");
	for (k = 0; k < 3; k++) {
		fprintf(f, "%s\n       {\"target\": \"slot within %.0fx of the "
		        "seqlock: %s\", \"row\": ", k ? "," : "", LATEST_MAX,
		        part[k]);
		report_json_str(f, tname[T_SLOT]);
		fprintf(f, ", \"value\": %.6g, \"limit\": %.6g, \"met\": ",
		        val[k], k < 2 ? 1 / LATEST_MAX : LATEST_MAX);
		report_json_met(f, met[k]);
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}
