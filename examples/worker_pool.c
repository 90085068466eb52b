/*
 * worker_pool - SHA-256 of every regular file under a directory, computed
 * in parallel by an mproc pool: each task is one file path, each result
 * the file's size and digest.
 *
 *   worker_pool [-j N] [--chaos] [--verify] [--list] [-q] [DIR]
 *                                                   (DIR: /usr/include)
 *
 * --list prints one line per file read, in sha256sum's format (names
 * holding '\', newline or CR escaped as GNU coreutils 9 does), so
 *   worker_pool --list DIR > sums && sha256sum -c sums
 * checks every digest; the summary then goes to stderr.
 *
 * The combined checksum is SHA-256 over those lines ("<hex>  <path>\n",
 * paths as walked: DIR as given, trailing '/' dropped) sorted bytewise,
 * over the files read successfully. Either of these prints it:
 *   worker_pool --list DIR | LC_ALL=C sort | sha256sum
 *   find -H DIR -type f -exec sha256sum {} + | LC_ALL=C sort | sha256sum
 * It does not depend on the worker count or the schedule; it does depend
 * on how DIR is spelled (cd DIR && worker_pool . gives "./" paths).
 *
 * Symbolic links below DIR are not followed (a dangling one is skipped
 * like any other non-regular file: FIFOs and devices are never opened);
 * DIR itself may be a link to a directory. A file that cannot be read
 * (permissions, vanished, read error) is reported on stderr and the others
 * are still checksummed. A task whose worker died (--chaos) is submitted
 * again, up to MAX_RESUBMITS times.
 *
 * Exit status: 0 when every file was read; 1 when a file or directory
 * could not be read, or --verify finds a difference (the results of the
 * others are still printed); 2 when DIR is not a directory, on a usage or
 * pool error, or when stdout cannot be written.
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

#include <openssl/evp.h>

#include "mproc.h"

#define MAX_PATH_BYTES 8192
#define READ_CHUNK (128u << 10)
#define MAX_RESUBMITS 5 /* per file, after its worker died */
#define PROGRESS_TTY_MS 100
#define PROGRESS_PLAIN_MS 1000
#define RESULT_WAIT_MS 100
#define MAX_PIDS 1024
#define DIGEST_BYTES 32 /* SHA-256 */
#define HEX_BYTES (2 * DIGEST_BYTES)

/* File errors that are no errno value (errno values stay below 4096). */
#define ERR_PENDING -1          /* no result yet */
#define ERR_NOT_REGULAR 10001   /* became a FIFO, device, ... since the walk */
#define ERR_DIGEST 10002        /* libcrypto failed */
#define ERR_WORKER_DIED 10003   /* every worker that took it died */
#define ERR_BAD_RESULT 10004    /* a result of the wrong size */

/* A worker's answer for one file. */
struct file_result {
	int32_t err; /* 0, an errno value or an ERR_* */
	uint32_t pad;
	uint64_t size;
	unsigned char digest[DIGEST_BYTES];
};

struct file {
	char *path;     /* as listed: DIR as given, then the path below it */
	int err;        /* 0, an errno value or an ERR_* */
	int resubmits;
	uint64_t size;
	unsigned char digest[DIGEST_BYTES];
};

struct worker_count {
	pid_t pid;
	uint64_t tasks;
};

struct options {
	const char *root;
	int jobs;
	bool chaos, verify, list, quiet;
};

/* The run's state, in the parent. */
struct run {
	struct options opt;
	mproc_pool *pool;
	bool tty;
	double start, last_progress, elapsed;
	size_t done, errors;
	uint64_t bytes, kills, resubmitted;
	char combined[HEX_BYTES + 1];
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
	const char *root;   /* DIR as listed */
	size_t walked_len;  /* strlen of the path nftw walks (DIR or DIR/.) */
	uint64_t walk_errors;
	bool nomem;
} files;

/* Fetched once in the parent, so the forked workers share it. */
static EVP_MD *sha256;

static const char *file_error(int err)
{
	switch (err) {
	case ERR_NOT_REGULAR:
		return "not a regular file any more";
	case ERR_DIGEST:
		return "SHA-256 failed (libcrypto)";
	case ERR_WORKER_DIED:
		return "worker died on it every time";
	case ERR_BAD_RESULT:
		return "bad result from the worker";
	default:
		return strerror(err);
	}
}

static void to_hex(const unsigned char *d, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < DIGEST_BYTES; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[HEX_BYTES] = '\0';
}

/*
 * list_line returns sha256sum's line for path, without the newline, or
 * NULL when out of memory. Like GNU coreutils 9: a name holding '\', LF
 * or CR is written escaped and its line starts with '\'.
 */
static char *list_line(const char *path, const unsigned char *digest)
{
	bool esc = strpbrk(path, "\\\n\r") != NULL;
	char *line, *p;

	line = malloc(1 + HEX_BYTES + 2 + 2 * strlen(path) + 1);
	if (line == NULL)
		return NULL;
	p = line;
	if (esc)
		*p++ = '\\';
	to_hex(digest, p);
	p += HEX_BYTES;
	*p++ = ' ';
	*p++ = ' ';
	for (; *path != '\0'; path++) {
		if (esc && (*path == '\\' || *path == '\n' || *path == '\r')) {
			*p++ = '\\';
			*p++ = *path == '\\' ? '\\' : *path == '\n' ? 'n' : 'r';
		} else {
			*p++ = *path;
		}
	}
	*p = '\0';
	return line;
}

static int list_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * combine sorts lines bytewise (as LC_ALL=C sort does: without their
 * newlines) and writes the hex SHA-256 of them, each followed by '\n'.
 * Returns 0, or -1 when libcrypto fails.
 */
static int combine(char **lines, size_t n, char *hex)
{
	unsigned char d[DIGEST_BYTES];
	EVP_MD_CTX *ctx;
	size_t i;
	int ok;

	qsort(lines, n, sizeof(*lines), list_cmp);
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL && EVP_DigestInit_ex2(ctx, sha256, NULL) == 1;
	for (i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(ctx, lines[i], strlen(lines[i])) == 1 &&
		     EVP_DigestUpdate(ctx, "\n", 1) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, d, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	to_hex(d, hex);
	return 0;
}

/* The --list lines of the files read, in walk order; NULL if no memory. */
static char **ok_lines(const unsigned char (*digests)[DIGEST_BYTES],
                       size_t *n)
{
	char **lines = malloc((files.n + 1) * sizeof(*lines));
	size_t i;

	*n = 0;
	if (lines == NULL)
		return NULL;
	for (i = 0; i < files.n; i++) {
		if (files.f[i].err != 0)
			continue;
		lines[*n] = list_line(files.f[i].path, digests != NULL ?
		                      digests[i] : files.f[i].digest);
		if (lines[*n] == NULL) {
			while (*n > 0)
				free(lines[--*n]);
			free(lines);
			return NULL;
		}
		(*n)++;
	}
	return lines;
}

static void free_lines(char **lines, size_t n)
{
	while (n > 0)
		free(lines[--n]);
	free(lines);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* hash_file reads path and returns 0, an errno value or an ERR_*. */
static int hash_file(const char *path, uint64_t *size, unsigned char *digest)
{
	static unsigned char buf[READ_CHUNK];
	EVP_MD_CTX *ctx;
	uint64_t n = 0;
	struct stat st;
	ssize_t r;
	int fd, err = 0;

	/* The path may have become a FIFO or a link since the walk:
	 * O_NONBLOCK so that opening a FIFO cannot hang. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
	                O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? ERR_NOT_REGULAR : errno;
	if (fstat(fd, &st) < 0) {
		err = errno;
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return ERR_NOT_REGULAR;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex2(ctx, sha256, NULL) != 1)
		err = ERR_DIGEST;
	while (err == 0) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0)
			break;
		if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1)
			err = ERR_DIGEST;
		n += (uint64_t)r;
	}
	if (err == 0 && EVP_DigestFinal_ex(ctx, digest, NULL) != 1)
		err = ERR_DIGEST;
	EVP_MD_CTX_free(ctx);
	close(fd);
	*size = n;
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
		fr.err = hash_file(path, &fr.size, fr.digest);
	memcpy(result->data, &fr, sizeof(fr));
	result->size = sizeof(fr);
	return fr.err;
}

/* ---- the walk ----------------------------------------------------------- */

static int walk_cb(const char *walked, const struct stat *sb, int type,
                   struct FTW *ftw)
{
	const char *below = walked + files.walked_len;
	size_t len = strlen(files.root) + strlen(below);
	struct file *f;
	char *path;

	(void)ftw;
	/* Only stat() here: a FIFO or device is never opened. */
	if (type != FTW_DNR && type != FTW_NS &&
	    (type != FTW_F || !S_ISREG(sb->st_mode)))
		return 0;
	path = malloc(len + 1);
	if (path == NULL) {
		files.nomem = true;
		return -1;
	}
	snprintf(path, len + 1, "%s%s", files.root, below);
	if (type == FTW_DNR || type == FTW_NS || len + 1 > MAX_PATH_BYTES) {
		fprintf(stderr, "worker_pool: %s: %s\n", path,
		        type == FTW_DNR ? "directory not readable" :
		        type == FTW_NS ? "cannot stat" : "path too long");
		files.walk_errors++;
		free(path);
		return 0;
	}
	if (files.n == files.cap) {
		size_t cap = files.cap ? files.cap * 2 : 1024;

		f = realloc(files.f, cap * sizeof(*f));
		if (f == NULL) {
			free(path);
			files.nomem = true;
			return -1;
		}
		files.f = f;
		files.cap = cap;
	}
	f = &files.f[files.n++];
	memset(f, 0, sizeof(*f));
	f->path = path;
	f->err = ERR_PENDING;
	return 0;
}

/*
 * walk lists the regular files under root, which loses its trailing '/'.
 * Returns 0, or -1 when root is no directory (said on stderr).
 */
static int walk(char *root)
{
	char walked[MAX_PATH_BYTES + 3];
	size_t len = strlen(root);
	struct stat st;

	while (len > 1 && root[len - 1] == '/')
		root[--len] = '\0';
	/* stat, not open: a FIFO named here must not block us. */
	if (stat(root, &st) < 0) {
		fprintf(stderr, "worker_pool: %s: %s\n", root, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "worker_pool: %s: not a directory\n", root);
		return -1;
	}
	/* nftw does not enter a symlink it starts from (FTW_PHYS); "link/."
	 * it does, and walk_cb lists "link/x" for "link/./x". */
	if (lstat(root, &st) == 0 && S_ISLNK(st.st_mode))
		snprintf(walked, sizeof(walked), "%s/.", root);
	else
		snprintf(walked, sizeof(walked), "%s", root);
	files.root = root;
	files.walked_len = strlen(walked);
	if (nftw(walked, walk_cb, 64, FTW_PHYS) != 0) {
		fprintf(stderr, "worker_pool: %s: %s\n", root,
		        files.nomem ? "out of memory" : strerror(errno));
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
		f->err = ERR_WORKER_DIED;
	} else if (res.size != sizeof(fr)) {
		f->err = ERR_BAD_RESULT;
	} else {
		f->err = fr.err;
		f->size = fr.size;
		memcpy(f->digest, fr.digest, sizeof(f->digest));
	}
	if (count_task(r, res.worker) < 0)
		return -1;
	r->done++;
	if (f->err != 0) {
		r->errors++;
		if (r->tty && !r->opt.quiet)
			fputs("\r\033[K", stderr);
		fprintf(stderr, "worker_pool: %s: %s\n", f->path,
		        file_error(f->err));
	} else {
		r->bytes += f->size;
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

static void summary(const struct run *r, FILE *out)
{
	double el = r->elapsed > 0 ? r->elapsed : 1e-9;
	size_t i;

	fprintf(out, "worker_pool: %s\n", r->opt.root);
	fprintf(out, "  files        %zu (%zu errors", files.n, r->errors);
	if (files.walk_errors > 0)
		fprintf(out, ", %" PRIu64 " not walked", files.walk_errors);
	fprintf(out, ")\n");
	fprintf(out, "  bytes        %" PRIu64 " (%.1f MB)\n", r->bytes,
	        (double)r->bytes / 1e6);
	fprintf(out, "  elapsed      %.3f s\n", r->elapsed);
	fprintf(out, "  throughput   %.1f MB/s, %.0f files/s\n",
	        (double)r->bytes / 1e6 / el, (double)files.n / el);
	fprintf(out, "  workers      %d started, %zu ran tasks", r->started,
	        r->nwc);
	for (i = 0; i < r->nwc && i < 16; i++)
		fprintf(out, "%s%" PRIu64, i == 0 ? ": " : " ", r->wc[i].tasks);
	fprintf(out, "%s\n", r->nwc > 16 ? " ... tasks" :
	                     r->nwc > 0 ? " tasks" : "");
	fprintf(out, "  redelivered  %" PRIu64 " (resubmitted %" PRIu64 ")\n",
	        r->counts.redelivered, r->resubmitted);
	fprintf(out, "  restarts     %" PRIu64, r->counts.restarts);
	if (r->opt.chaos)
		fprintf(out, " (chaos killed %" PRIu64 ")", r->kills);
	fprintf(out, "\n  stop         %d DIE, %d TERM, %d KILL, %d crashed\n",
	        r->how[MPROC_EXIT_DIE], r->how[MPROC_EXIT_TERM],
	        r->how[MPROC_EXIT_KILL], r->how[MPROC_EXIT_CRASHED]);
	fprintf(out, "  checksum     %s\n", r->combined);
}

/* Recompute every file in this process and compare: 0 if all agree, -1
 * if not (or out of memory). */
static int verify(const struct run *r, FILE *out)
{
	unsigned char (*digests)[DIGEST_BYTES];
	char serial[HEX_BYTES + 1] = "", **lines = NULL;
	size_t i, n = 0, diff = 0;
	double t0 = now_s();
	const struct file *f;
	uint64_t size;
	int err;

	digests = calloc(files.n + 1, sizeof(*digests));
	if (digests == NULL) {
		fprintf(stderr, "worker_pool: verify: out of memory\n");
		return -1;
	}
	for (i = 0; i < files.n; i++) {
		f = &files.f[i];
		size = 0;
		err = hash_file(f->path, &size, digests[i]);
		if (err != f->err ||
		    (err == 0 && (size != f->size ||
		                  memcmp(digests[i], f->digest,
		                         DIGEST_BYTES) != 0))) {
			fprintf(stderr, "worker_pool: verify: %s differs\n",
			        f->path);
			diff++;
		}
	}
	/* Files whose error differs count above; the serial sum takes the
	 * pool's set of files so that it checks the digests only. */
	lines = ok_lines((const unsigned char (*)[DIGEST_BYTES])digests, &n);
	if (lines == NULL || combine(lines, n, serial) < 0)
		diff++;
	free_lines(lines, n);
	free(digests);
	fprintf(out, "  serial       %s in %.3f s: %s\n",
	        serial[0] != '\0' ? serial : "(failed)", now_s() - t0,
	        diff == 0 && strcmp(serial, r->combined) == 0 ?
	                "verify ok" : "VERIFY FAILED");
	return diff == 0 && strcmp(serial, r->combined) == 0 ? 0 : -1;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: worker_pool [-j N] [--chaos] [--verify] [--list] [-q] "
	        "[DIR]\n"
	        "  SHA-256 of every regular file under DIR "
	        "(default /usr/include), in parallel\n"
	        "  -j, --jobs N   workers (default: online CPUs)\n"
	        "  --chaos        SIGKILL a random worker every so often\n"
	        "  --verify       recompute serially and compare\n"
	        "  -l, --list     print sha256sum's line for each file on "
	        "stdout,\n"
	        "                 the summary on stderr\n"
	        "  -q, --quiet    no progress line\n"
	        "The checksum at the end is SHA-256 over the --list lines "
	        "sorted bytewise:\n"
	        "  worker_pool --list DIR | LC_ALL=C sort | sha256sum\n"
	        "  find -H DIR -type f -exec sha256sum {} + | LC_ALL=C sort "
	        "| sha256sum\n"
	        "  (paths as given: DIR without its trailing '/')\n"
	        "Exit status: 0 all files read; 1 some file or directory "
	        "could not be read\n"
	        "(the others are still reported) or --verify differs; "
	        "2 DIR is no directory,\n"
	        "bad usage, pool error or stdout not written.\n");
}

/* Returns 0, or the exit status for a bad command line (or help). */
static int parse(int argc, char **argv, struct options *o, int *status)
{
	static const struct option longopts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "chaos", no_argument, NULL, 'c' },
		{ "verify", no_argument, NULL, 'v' },
		{ "list", no_argument, NULL, 'l' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	o->root = "/usr/include";
	while ((c = getopt_long(argc, argv, "j:lqh", longopts, NULL)) != -1) {
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
		case 'l':
			o->list = true;
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
	char root[MAX_PATH_BYTES], **lines = NULL;
	struct run run;
	int status = 0;
	size_t i, n = 0;
	FILE *out;

	memset(&run, 0, sizeof(run));
	if (parse(argc, argv, &run.opt, &status) < 0)
		return status;
	if (strlen(run.opt.root) >= sizeof(root)) {
		fprintf(stderr, "worker_pool: %s: path too long\n",
		        run.opt.root);
		return 2;
	}
	snprintf(root, sizeof(root), "%s", run.opt.root);
	if (walk(root) < 0)
		return 2;
	run.opt.root = root;
	/* Before the pool forks, so the workers need not fetch it. */
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256 == NULL) {
		fprintf(stderr, "worker_pool: libcrypto has no SHA-256\n");
		return 2;
	}
	if (run_pool(&run) < 0) {
		if (run.pool != NULL)
			mproc_pool_free(run.pool);
		return 2;
	}
	lines = ok_lines(NULL, &n);
	if (lines == NULL) {
		fprintf(stderr, "worker_pool: out of memory\n");
		return 2;
	}
	/* --list: stdout holds sha256sum's lines only. */
	out = run.opt.list ? stderr : stdout;
	for (i = 0; run.opt.list && i < n; i++)
		printf("%s\n", lines[i]);
	if (combine(lines, n, run.combined) < 0) {
		fprintf(stderr, "worker_pool: SHA-256 failed (libcrypto)\n");
		return 2;
	}
	summary(&run, out);
	if (run.opt.verify && verify(&run, out) < 0)
		status = 1;
	if (run.errors > 0 || files.walk_errors > 0) {
		fprintf(stderr, "worker_pool: %zu of %zu files not read%s\n",
		        run.errors, files.n, files.walk_errors > 0 ?
		        ", some of the tree not walked" : "");
		status = 1;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "worker_pool: stdout: %s\n", strerror(errno));
		status = 2;
	}

	free_lines(lines, n);
	for (i = 0; i < files.n; i++)
		free(files.f[i].path);
	free(files.f);
	free(run.task_file);
	free(run.retry);
	free(run.wc);
	EVP_MD_free(sha256);
	return status;
}
