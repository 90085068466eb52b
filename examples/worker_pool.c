/*
 * worker_pool - checksum every regular file under a directory in parallel
 * with an mproc pool: each task is one file path, each result the file's
 * size and checksum.
 *
 *   worker_pool [-j N] [--chaos] [--verify] [-q] [DIR]     (DIR: /usr/include)
 *
 * Checksums (so any implementation can reproduce them):
 *   H(bytes)  = FNV-1a 64 (offset 0xcbf29ce484222325, prime 0x100000001b3)
 *   mix(x)    = the splitmix64 finalizer
 *   file(f)   = mix(H(relpath) ^ mix(H(content) + size))
 *   combined  = sum of file(f) mod 2^64 over the files read successfully
 * relpath is the path below DIR without a leading '/'. A sum does not care
 * about order, so the combined checksum is the same for any worker count
 * and any schedule.
 *
 * Symbolic links are not followed (a dangling one is skipped like any
 * other non-regular file). Files that cannot be read are reported and
 * counted, never fatal. A task whose worker died (--chaos) is submitted
 * again, up to MAX_RESUBMITS times.
 *
 * Exit status: 0, 1 when --verify finds a difference, 2 on a usage or pool
 * error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nftw, getopt_long */
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define MAX_PATH_BYTES 8192
#define READ_CHUNK (128u << 10)
#define MAX_RESUBMITS 5 /* per file, after its worker died */
#define PROGRESS_TTY_MS 100
#define PROGRESS_PLAIN_MS 1000
#define RESULT_WAIT_MS 100
#define MAX_PIDS 1024
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* A worker's answer for one file. */
struct file_result {
	int32_t err; /* 0 or an errno value */
	uint32_t pad;
	uint64_t size;
	uint64_t hash; /* H(content) */
};

struct file {
	char *path;
	size_t rel;     /* offset of relpath in path */
	int err;        /* -1: no result yet */
	int resubmits;
	uint64_t size;
	uint64_t hash;
};

struct worker_count {
	pid_t pid;
	uint64_t tasks;
};

struct options {
	const char *root;
	int jobs;
	bool chaos, verify, quiet;
};

/* The run's state, in the parent. */
struct run {
	struct options opt;
	mproc_pool *pool;
	bool tty;
	double start, last_progress, elapsed;
	size_t done, errors;
	uint64_t bytes, combined, kills, resubmitted;
	size_t *task_file, cap_task; /* task id -> file index */
	size_t *retry, nretry;       /* files to submit again */
	struct worker_count *wc;     /* tasks per worker pid */
	size_t nwc, cap_wc;
	mproc_pool_counts counts;    /* at the end */
	int how[5];                  /* workers by MPROC_EXIT_* */
	int started;
};

/* nftw takes no argument: the walk fills this. */
static struct {
	struct file *f;
	size_t n, cap;
	size_t root_len;
	uint64_t walk_errors;
} files;

static uint64_t fnv1a64(const void *data, size_t n, uint64_t h)
{
	const unsigned char *p = data;

	while (n-- > 0) {
		h ^= *p++;
		h *= FNV_PRIME;
	}
	return h;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t file_value(const char *rel, uint64_t size, uint64_t hash)
{
	return mix64(fnv1a64(rel, strlen(rel), FNV_OFFSET) ^
	             mix64(hash + size));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* hash_file reads path and returns 0 or an errno value. */
static int hash_file(const char *path, uint64_t *size, uint64_t *hash)
{
	static unsigned char buf[READ_CHUNK];
	uint64_t h = FNV_OFFSET, n = 0;
	struct stat st;
	ssize_t r;
	int fd, err = 0;

	/* The path may have become a FIFO or a link since the walk. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
	                O_NONBLOCK);
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err = S_ISREG(st.st_mode) ? errno : EINVAL;
		close(fd);
		return err;
	}
	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0)
			break;
		h = fnv1a64(buf, (size_t)r, h);
		n += (uint64_t)r;
	}
	close(fd);
	*size = n;
	*hash = h;
	return err;
}

/* The task function, run in the workers: payload is a NUL-terminated path. */
static int hash_task(const mproc_msg *task, mproc_msg *result, void *arg)
{
	struct file_result fr;
	const char *path = task->data;

	(void)arg;
	memset(&fr, 0, sizeof(fr));
	if (task->size == 0 || path[task->size - 1] != '\0')
		fr.err = EINVAL;
	else
		fr.err = hash_file(path, &fr.size, &fr.hash);
	memcpy(result->data, &fr, sizeof(fr));
	result->size = sizeof(fr);
	return fr.err;
}

/* ---- the walk ----------------------------------------------------------- */

static int walk_cb(const char *path, const struct stat *sb, int type,
                   struct FTW *ftw)
{
	struct file *f;

	(void)ftw;
	if (type == FTW_DNR || type == FTW_NS) {
		fprintf(stderr, "worker_pool: %s: %s\n", path,
		        type == FTW_DNR ? "directory not readable" :
		                          "cannot stat");
		files.walk_errors++;
		return 0;
	}
	if (type != FTW_F || !S_ISREG(sb->st_mode))
		return 0;
	if (strlen(path) + 1 > MAX_PATH_BYTES) {
		fprintf(stderr, "worker_pool: %s: path too long\n", path);
		files.walk_errors++;
		return 0;
	}
	if (files.n == files.cap) {
		size_t cap = files.cap ? files.cap * 2 : 1024;

		f = realloc(files.f, cap * sizeof(*f));
		if (f == NULL)
			return -1;
		files.f = f;
		files.cap = cap;
	}
	f = &files.f[files.n];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	if (f->path == NULL)
		return -1;
	f->rel = files.root_len;
	while (f->path[f->rel] == '/')
		f->rel++;
	f->err = -1;
	files.n++;
	return 0;
}

/* walk lists the regular files under root; root keeps no trailing '/'. */
static int walk(char *root)
{
	files.root_len = strlen(root);
	while (files.root_len > 1 && root[files.root_len - 1] == '/')
		root[--files.root_len] = '\0';
	if (strcmp(root, "/") == 0)
		files.root_len = 0;
	if (nftw(root, walk_cb, 64, FTW_PHYS) != 0) {
		fprintf(stderr, "worker_pool: %s: %s\n", root, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the run ------------------------------------------------------------ */

static void progress(struct run *r, bool final)
{
	mproc_pool_counts c;
	double now = now_s(), el = now - r->start;
	int every = r->tty ? PROGRESS_TTY_MS : PROGRESS_PLAIN_MS;

	if (r->opt.quiet ||
	    (!final && (now - r->last_progress) * 1000 < every))
		return;
	r->last_progress = now;
	if (mproc_pool_stats(r->pool, &c) < 0)
		c.workers_alive = 0;
	fprintf(stderr, "%s%zu/%zu files  %.1f MB/s  %d workers alive%s",
	        r->tty ? "\r\033[K" : "worker_pool: ", r->done, files.n,
	        el > 0 ? (double)r->bytes / 1e6 / el : 0.0, c.workers_alive,
	        r->tty ? "" : "\n");
	if (r->tty && final)
		fputs("\r\033[K", stderr);
}

static int count_task(struct run *r, pid_t pid)
{
	struct worker_count *t;
	size_t i;

	for (i = 0; i < r->nwc; i++) {
		if (r->wc[i].pid == pid) {
			r->wc[i].tasks++;
			return 0;
		}
	}
	if (r->nwc == r->cap_wc) {
		size_t cap = r->cap_wc ? r->cap_wc * 2 : 16;

		t = realloc(r->wc, cap * sizeof(*t));
		if (t == NULL)
			return -1;
		r->wc = t;
		r->cap_wc = cap;
	}
	r->wc[r->nwc].pid = pid;
	r->wc[r->nwc].tasks = 1;
	r->nwc++;
	return 0;
}

static int remember_task(struct run *r, uint64_t id, size_t fi)
{
	size_t c, *t;

	if (id >= r->cap_task) {
		c = r->cap_task ? r->cap_task * 2 : files.n + 64;
		while (c <= id)
			c *= 2;
		t = realloc(r->task_file, c * sizeof(*t));
		if (t == NULL)
			return -1;
		r->task_file = t;
		r->cap_task = c;
	}
	r->task_file[id] = fi;
	return 0;
}

/* Submit until the task queue is full (never block: results must flow). */
static int feed(struct run *r, size_t *next)
{
	const char *path;
	uint64_t id;
	size_t fi;
	int rc;

	while (r->nretry > 0 || *next < files.n) {
		fi = r->nretry > 0 ? r->retry[r->nretry - 1] : *next;
		path = files.f[fi].path;
		rc = mproc_pool_submit(r->pool, path, strlen(path) + 1, &id,
		                       MPROC_NOWAIT);
		if (rc == -EAGAIN)
			return 0;
		if (rc < 0) {
			fprintf(stderr, "worker_pool: submit: %s\n",
			        mproc_strerror(rc));
			return -1;
		}
		if (remember_task(r, id, fi) < 0)
			return -1;
		if (r->nretry > 0)
			r->nretry--;
		else
			(*next)++;
	}
	return 0;
}

/* Chaos: SIGKILL a random worker once the pool has replaced the last
 * victim, so every kill counted is a real death. */
static void chaos_kill(struct run *r)
{
	mproc_pool_counts c;
	pid_t pids[MAX_PIDS];
	int n;

	if (mproc_pool_stats(r->pool, &c) < 0 || c.restarts < r->kills)
		return;
	n = mproc_pool_worker_pids(r->pool, pids, MAX_PIDS);
	if (n > MAX_PIDS)
		n = MAX_PIDS;
	if (n > 0 && kill(pids[rand() % n], SIGKILL) == 0)
		r->kills++;
}

/* Take one result; 1 if it finished a file, 0 if not, -1 on error. */
static int collect(struct run *r)
{
	struct file_result fr;
	mproc_result res;
	struct file *f;
	int rc;

	memset(&res, 0, sizeof(res));
	res.data = &fr;
	res.capacity = sizeof(fr);
	rc = mproc_pool_result(r->pool, &res, RESULT_WAIT_MS);
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "worker_pool: result: %s\n",
		        mproc_strerror(rc));
		return -1;
	}
	f = &files.f[r->task_file[res.task_id]];
	if (res.status == MPROC_TASK_WORKER_DIED) {
		if (f->resubmits++ < MAX_RESUBMITS) {
			r->retry[r->nretry++] = (size_t)(f - files.f);
			r->resubmitted++;
			return 0;
		}
		f->err = ECHILD;
	} else if (res.size != sizeof(fr)) {
		f->err = EPROTO;
	} else {
		f->err = fr.err;
		f->size = fr.size;
		f->hash = fr.hash;
	}
	if (count_task(r, res.worker) < 0)
		return -1;
	r->done++;
	if (f->err != 0) {
		r->errors++;
		if (r->tty && !r->opt.quiet)
			fputs("\r\033[K", stderr);
		fprintf(stderr, "worker_pool: %s: %s\n", f->path,
		        f->err == ECHILD ? "worker died on it every time" :
		                           strerror(f->err));
	} else {
		r->bytes += f->size;
		r->combined += file_value(f->path + f->rel, f->size, f->hash);
	}
	return 1;
}

static int run_pool(struct run *r)
{
	mproc_worker_exit exits[MAX_PIDS];
	mproc_pool_opts opts;
	size_t next = 0, since_kill = 0, chaos_every, i;
	int rc, n;

	memset(&opts, 0, sizeof(opts));
	opts.workers = r->opt.jobs;
	opts.max_payload = MAX_PATH_BYTES;
	if (r->opt.chaos)
		opts.max_restarts = 1 << 20; /* every kill costs a restart */
	rc = mproc_pool_start(&r->pool, hash_task, NULL, &opts);
	if (rc < 0) {
		fprintf(stderr, "worker_pool: pool: %s\n", mproc_strerror(rc));
		return -1;
	}
	r->started = mproc_pool_worker_pids(r->pool, NULL, 0);
	r->tty = isatty(STDERR_FILENO);
	r->retry = malloc((files.n + 1) * sizeof(*r->retry));
	if (r->retry == NULL)
		return -1;
	chaos_every = files.n / 25 > 5 ? files.n / 25 : 5;
	srand((unsigned)getpid());

	r->start = now_s();
	while (r->done < files.n) {
		if (feed(r, &next) < 0)
			return -1;
		rc = collect(r);
		if (rc < 0)
			return -1;
		if (rc > 0 && r->opt.chaos && ++since_kill >= chaos_every) {
			since_kill = 0;
			chaos_kill(r);
		}
		progress(r, false);
	}
	r->elapsed = now_s() - r->start;
	progress(r, true);

	n = mproc_pool_stop(r->pool, 2000, exits, MAX_PIDS);
	for (i = 0; n > 0 && i < (size_t)n && i < MAX_PIDS; i++)
		if (exits[i].how >= 1 && exits[i].how <= 4)
			r->how[exits[i].how]++;
	mproc_pool_stats(r->pool, &r->counts);
	mproc_pool_free(r->pool);
	r->pool = NULL;
	return 0;
}

static void summary(const struct run *r)
{
	double el = r->elapsed > 0 ? r->elapsed : 1e-9;
	size_t i;

	printf("worker_pool: %s\n", r->opt.root);
	printf("  files        %zu (%zu errors", files.n, r->errors);
	if (files.walk_errors > 0)
		printf(", %" PRIu64 " not walked", files.walk_errors);
	printf(")\n");
	printf("  bytes        %" PRIu64 " (%.1f MB)\n", r->bytes,
	       (double)r->bytes / 1e6);
	printf("  elapsed      %.3f s\n", r->elapsed);
	printf("  throughput   %.1f MB/s, %.0f files/s\n",
	       (double)r->bytes / 1e6 / el, (double)files.n / el);
	printf("  workers      %d started, %zu ran tasks:", r->started, r->nwc);
	for (i = 0; i < r->nwc && i < 16; i++)
		printf(" %" PRIu64, r->wc[i].tasks);
	printf("%s tasks\n", r->nwc > 16 ? " ..." : "");
	printf("  redelivered  %" PRIu64 " (resubmitted %" PRIu64 ")\n",
	       r->counts.redelivered, r->resubmitted);
	printf("  restarts     %" PRIu64, r->counts.restarts);
	if (r->opt.chaos)
		printf(" (chaos killed %" PRIu64 ")", r->kills);
	printf("\n  stop         %d DIE, %d TERM, %d KILL, %d crashed\n",
	       r->how[MPROC_EXIT_DIE], r->how[MPROC_EXIT_TERM],
	       r->how[MPROC_EXIT_KILL], r->how[MPROC_EXIT_CRASHED]);
	printf("  checksum     %016" PRIx64 "\n", r->combined);
}

/* Recompute every file in this process and compare. */
static int verify(const struct run *r)
{
	uint64_t serial = 0, size = 0, hash = 0;
	size_t i, diff = 0;
	double t0 = now_s();
	const struct file *f;
	int err;

	for (i = 0; i < files.n; i++) {
		f = &files.f[i];
		err = hash_file(f->path, &size, &hash);
		if (err != f->err ||
		    (err == 0 && (size != f->size || hash != f->hash))) {
			fprintf(stderr, "worker_pool: verify: %s differs\n",
			        f->path);
			diff++;
		}
		if (err == 0)
			serial += file_value(f->path + f->rel, size, hash);
	}
	printf("  serial       %016" PRIx64 " in %.3f s: %s\n", serial,
	       now_s() - t0,
	       diff == 0 && serial == r->combined ? "verify ok" :
	                                            "VERIFY FAILED");
	return diff == 0 && serial == r->combined ? 0 : -1;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: worker_pool [-j N] [--chaos] [--verify] [-q] [DIR]\n"
	        "  checksum every regular file under DIR "
	        "(default /usr/include)\n"
	        "  -j, --jobs N   workers (default: online CPUs)\n"
	        "  --chaos        SIGKILL a random worker every so often\n"
	        "  --verify       recompute serially and compare\n"
	        "  -q, --quiet    no progress line\n");
}

/* Returns 0, or the exit status for a bad command line (or help). */
static int parse(int argc, char **argv, struct options *o, int *status)
{
	static const struct option longopts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "chaos", no_argument, NULL, 'c' },
		{ "verify", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	o->root = "/usr/include";
	while ((c = getopt_long(argc, argv, "j:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			o->jobs = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || o->jobs < 1 || o->jobs > MAX_PIDS) {
				fprintf(stderr, "worker_pool: bad -j %s\n",
				        optarg);
				*status = 2;
				return -1;
			}
			break;
		case 'c':
			o->chaos = true;
			break;
		case 'v':
			o->verify = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			*status = 0;
			return -1;
		default:
			usage(stderr);
			*status = 2;
			return -1;
		}
	}
	if (optind + 1 < argc) {
		usage(stderr);
		*status = 2;
		return -1;
	}
	if (optind < argc)
		o->root = argv[optind];
	return 0;
}

int main(int argc, char **argv)
{
	char root[MAX_PATH_BYTES];
	struct run run;
	int status = 0;
	size_t i;

	memset(&run, 0, sizeof(run));
	if (parse(argc, argv, &run.opt, &status) < 0)
		return status;
	snprintf(root, sizeof(root), "%s", run.opt.root);
	if (walk(root) < 0)
		return 2;
	run.opt.root = root;
	if (run_pool(&run) < 0) {
		if (run.pool != NULL)
			mproc_pool_free(run.pool);
		return 2;
	}
	summary(&run);
	if (run.opt.verify && verify(&run) < 0)
		status = 1;

	for (i = 0; i < files.n; i++)
		free(files.f[i].path);
	free(files.f);
	free(run.task_file);
	free(run.retry);
	free(run.wc);
	return status;
}
