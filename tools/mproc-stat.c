/*
 * mproc-stat - the inspector: what the named objects in the directory
 * ($MPROC_DIR, or /dev/shm/mproc-<euid>) hold, without disturbing them.
 *
 *   mproc-stat [--json] [--watch SECONDS] [--count N] [NAME...]
 *
 * No NAME: one line per object in the directory (kind, name, mode,
 * holders, depth, bytes, stale). NAME: everything about that object.
 * --json: the same as JSON (an object for one NAME, else an array), one
 * document per line. --watch: again every SECONDS (a decimal) until
 * interrupted, or N times with --count N.
 *
 * Read-only and never waiting: a file is opened O_RDONLY | O_NOFOLLOW |
 * O_NONBLOCK and mapped PROT_READ; no lock of the object is taken (the
 * figures come from mproc__queue_inspect, which reads the sides under
 * their sequence counts), so a dead or stopped holder of a lock holds
 * nothing up. The mapping is untrusted: a file that is not a valid object,
 * or that shrinks under us (SIGBUS, caught), is reported "corrupt".
 *
 * Holders are the live processes with a descriptor of the file (the
 * /proc/<pid>/fd links we may read: all as root, else our own); stale
 * means no process holds the object's lock (mproc__named_probe).
 *
 * Exit status: 0; 1 when a NAME given is missing or the directory cannot
 * be read (or is not safe, as for the library); 2 for a usage error.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "queue/layout.h"
#include "shm/name.h"
#include "shm/region.h"

/* Files larger than this are no object of ours. */
#define STAT_MAX_SIZE ((uint64_t)MPROC_QUEUE_MAX_CAPACITY + (1u << 20))

struct stat_obj {
	char name[MPROC__NAME_MAX + 2]; /* "/" and the file name */
	const char *kind;               /* "queue", "bus", "slot", "unknown" */
	uint32_t layout;
	int err;       /* opening or reading it failed: -errno */
	int have_st;
	mode_t mode;
	uid_t uid;
	uint64_t size;
	uint64_t dev, ino;
	int holders;
	pid_t last_pid; /* holders: each pid counted once */
	int stale;      /* 1, 0; -1 unknown */
	int corrupt;
	int have_q;
	struct mproc__queue_figures f;
};

static int stat_json;
static char stat_dir[MPROC__PATH_MAX];
static sigjmp_buf stat_bus_jmp;
static volatile sig_atomic_t stat_bus_armed;

static void stat_on_sigbus(int sig)
{
	(void)sig;
	if (stat_bus_armed)
		siglongjmp(stat_bus_jmp, 1);
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

static void stat_usage(FILE *f)
{
	fprintf(f,
	        "usage: mproc-stat [--json] [--watch SECONDS] [--count N] "
	        "[NAME...]\n"
	        "  no NAME: list every named object in $MPROC_DIR (or "
	        "/dev/shm/mproc-<euid>)\n"
	        "  NAME: show that object in full\n"
	        "  --json: as JSON (one object for one NAME, else an array)\n"
	        "  --watch SECONDS: repeat until interrupted; --count N: N "
	        "times\n");
}

/* ---- reading one object ----------------------------------------------- */

/* The header's kind, the queue's figures: under a SIGBUS guard, since
 * the file may shrink under the mapping. */
static void stat_read_map(struct stat_obj *o, const void *map, size_t len)
{
	const struct mproc__shm_hdr *h = map;

	stat_bus_armed = 1;
	if (sigsetjmp(stat_bus_jmp, 1) != 0) {
		stat_bus_armed = 0;
		o->corrupt = 1;
		o->have_q = 0;
		return;
	}
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MPROC__SHM_MAGIC) {
		o->corrupt = 1;
	} else {
		uint32_t kind = __atomic_load_n(&h->kind, __ATOMIC_RELAXED);

		o->layout = __atomic_load_n(&h->layout, __ATOMIC_RELAXED);
		o->kind = mproc__kind_name(kind);
		if (kind == MPROC__KIND_QUEUE) {
			o->have_q = mproc__queue_inspect(map, len, &o->f) == 0;
			o->corrupt = !o->have_q;
		} else if (strcmp(o->kind, "unknown") == 0) {
			o->corrupt = 1;
		}
		/* Buses and slots: their kind only, for now. */
	}
	stat_bus_armed = 0;
}

/* Fill o for the file `file` in dirfd. -ENOENT when there is none. */
static int stat_read(int dirfd, const char *file, struct stat_obj *o)
{
	struct stat st, again;
	void *map;
	int fd, rc;

	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "/%s", file);
	o->kind = "unknown";
	o->stale = -1;
	o->last_pid = -1;
	fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return rc;
		if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			o->have_st = 1;
			o->mode = st.st_mode;
			o->uid = st.st_uid;
			o->size = (uint64_t)st.st_size;
		}
		/* A symlink or a socket is no object of ours. */
		if (rc == -ELOOP || rc == -ENXIO)
			o->corrupt = 1;
		else
			o->err = rc;
		return 0;
	}
	if (fstat(fd, &st) < 0) {
		o->err = -errno;
		close(fd);
		return 0;
	}
	o->have_st = 1;
	o->mode = st.st_mode;
	o->uid = st.st_uid;
	o->size = (uint64_t)st.st_size;
	o->dev = (uint64_t)st.st_dev;
	o->ino = (uint64_t)st.st_ino;
	if (!S_ISREG(st.st_mode) ||
	    o->size < sizeof(struct mproc__shm_hdr) || o->size > STAT_MAX_SIZE) {
		o->corrupt = 1;
		close(fd);
		return 0;
	}
	rc = mproc__named_probe(fd);
	o->stale = rc < 0 ? -1 : rc == 0;
	map = mmap(NULL, (size_t)o->size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		o->err = -errno;
		close(fd);
		return 0;
	}
	/* Cut or grown meanwhile: not what we mapped; touch nothing. */
	if (fstat(fd, &again) < 0 || again.st_size != st.st_size)
		o->corrupt = 1;
	else
		stat_read_map(o, map, (size_t)o->size);
	munmap(map, (size_t)o->size);
	close(fd);
	return 0;
}

/* Count, for each object, the live processes with a descriptor of it. */
static void stat_holders(struct stat_obj *objs, size_t n)
{
	pid_t me = getpid();
	struct dirent *pe, *fe;
	DIR *proc, *fds;
	char path[64];
	struct stat st;
	size_t i;

	if (n == 0 || (proc = opendir("/proc")) == NULL)
		return;
	while ((pe = readdir(proc)) != NULL) {
		pid_t pid;

		if (!isdigit((unsigned char)pe->d_name[0]))
			continue;
		pid = (pid_t)atoi(pe->d_name);
		if (pid == me)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
		if ((fds = opendir(path)) == NULL)
			continue; /* gone, or not ours to see */
		while ((fe = readdir(fds)) != NULL) {
			if (fe->d_name[0] == '.')
				continue;
			/* stat follows the link without opening the file. */
			if (fstatat(dirfd(fds), fe->d_name, &st, 0) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			for (i = 0; i < n; i++) {
				if (objs[i].have_st && objs[i].ino != 0 &&
				    (uint64_t)st.st_ino == objs[i].ino &&
				    (uint64_t)st.st_dev == objs[i].dev &&
				    objs[i].last_pid != pid) {
					objs[i].holders++;
					objs[i].last_pid = pid;
				}
			}
		}
		closedir(fds);
	}
	closedir(proc);
}

/* ---- printing ------------------------------------------------------------ */

static void stat_json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *stat_tf(int v)
{
	return v ? "true" : "false";
}

static void stat_print_json(const struct stat_obj *o)
{
	const mproc_stats *st = &o->f.st;

	printf("{\"name\":");
	stat_json_str(o->name);
	printf(",\"kind\":\"%s\"", o->kind);
	if (o->have_st)
		printf(",\"mode\":\"%04o\",\"uid\":%u,\"size\":%llu",
		       (unsigned)(o->mode & 07777), (unsigned)o->uid,
		       (unsigned long long)o->size);
	printf(",\"holders\":%d,\"stale\":%s,\"corrupt\":%s", o->holders,
	       stat_tf(o->stale == 1), stat_tf(o->corrupt));
	if (o->err != 0)
		printf(",\"error\":\"%s\"", mproc_err_name(o->err));
	if (o->have_q) {
		printf(",\"layout\":%u", (unsigned)o->layout);
		printf(",\"queued\":%llu,\"bytes\":%llu,\"unfinished\":%llu,"
		       "\"sent\":%llu,\"received\":%llu,\"recoveries\":%llu,"
		       "\"orphans\":%llu,\"purged\":%llu,\"capacity\":%llu,"
		       "\"max_payload\":%llu",
		       (unsigned long long)st->queued,
		       (unsigned long long)st->bytes,
		       (unsigned long long)st->unfinished,
		       (unsigned long long)st->sent,
		       (unsigned long long)st->received,
		       (unsigned long long)st->recoveries,
		       (unsigned long long)st->orphans,
		       (unsigned long long)st->purged,
		       (unsigned long long)st->capacity,
		       (unsigned long long)st->max_payload);
		printf(",\"max_messages\":%u,\"flags\":[", o->f.max_messages);
		if (o->f.flags & MPROC_QUEUE_MANUAL_DONE)
			printf("\"MANUAL_DONE\"%s",
			       o->f.flags & MPROC_UNLINK_ON_LAST_CLOSE ? ","
			                                               : "");
		if (o->f.flags & MPROC_UNLINK_ON_LAST_CLOSE)
			printf("\"UNLINK_ON_LAST_CLOSE\"");
		printf("],\"shutdown\":%s,\"pollers\":%d,\"pending\":%s,"
		       "\"consistent\":%s",
		       stat_tf(o->f.shutdown), o->f.pollers,
		       stat_tf(o->f.pending), stat_tf(o->f.consistent));
	}
	putchar('}');
}

static const char *stat_state(const struct stat_obj *o)
{
	if (o->err != 0)
		return mproc_err_name(o->err);
	if (o->corrupt)
		return "corrupt";
	return "";
}

static void stat_print_row(const struct stat_obj *o)
{
	char mode[8] = "-", depth[24] = "-", bytes[24] = "-";

	if (o->have_st)
		snprintf(mode, sizeof(mode), "%04o",
		         (unsigned)(o->mode & 07777));
	if (o->have_q) {
		snprintf(depth, sizeof(depth), "%llu",
		         (unsigned long long)o->f.st.queued);
		snprintf(bytes, sizeof(bytes), "%llu",
		         (unsigned long long)o->f.st.bytes);
	}
	printf("%-7s %-24s %4s %7d %7s %10s %-5s %s\n", o->kind, o->name, mode,
	       o->holders, depth, bytes,
	       o->stale == 1 ? "yes" : o->stale == 0 ? "no" : "-",
	       stat_state(o));
}

static void stat_print_full(const struct stat_obj *o)
{
	const mproc_stats *st = &o->f.st;

	printf("name:          %s\n", o->name);
	printf("file:          %s/%s\n", stat_dir, o->name + 1);
	printf("kind:          %s", o->kind);
	if (o->have_q)
		printf(" (layout %u)", (unsigned)o->layout);
	putchar('\n');
	if (o->have_st) {
		printf("mode:          %04o (uid %u)\n",
		       (unsigned)(o->mode & 07777), (unsigned)o->uid);
		printf("size:          %llu bytes\n",
		       (unsigned long long)o->size);
	}
	printf("holders:       %d\n", o->holders);
	printf("stale:         %s\n",
	       o->stale == 1 ? "yes (no live holder)" :
	       o->stale == 0 ? "no" : "unknown");
	printf("corrupt:       %s\n", o->corrupt ? "yes" : "no");
	if (o->err != 0)
		printf("error:         %s (%s)\n", mproc_err_name(o->err),
		       mproc_strerror(o->err));
	if (!o->have_q)
		return;
	printf("queued:        %llu\n", (unsigned long long)st->queued);
	printf("bytes:         %llu\n", (unsigned long long)st->bytes);
	printf("unfinished:    %llu\n", (unsigned long long)st->unfinished);
	printf("sent:          %llu\n", (unsigned long long)st->sent);
	printf("received:      %llu\n", (unsigned long long)st->received);
	printf("recoveries:    %llu\n", (unsigned long long)st->recoveries);
	printf("orphans:       %llu\n", (unsigned long long)st->orphans);
	printf("purged:        %llu\n", (unsigned long long)st->purged);
	printf("capacity:      %llu\n", (unsigned long long)st->capacity);
	printf("max_payload:   %llu\n", (unsigned long long)st->max_payload);
	printf("max_messages:  %u%s\n", o->f.max_messages,
	       o->f.max_messages == 0 ? " (bounded by bytes)" : "");
	printf("flags:        %s%s%s\n",
	       o->f.flags & MPROC_QUEUE_MANUAL_DONE ? " MANUAL_DONE" : "",
	       o->f.flags & MPROC_UNLINK_ON_LAST_CLOSE ? " UNLINK_ON_LAST_CLOSE"
	                                               : "",
	       o->f.flags == 0 ? " none" : "");
	printf("shutdown:      %s\n", o->f.shutdown ? "yes" : "no");
	printf("pollers:       %d\n", o->f.pollers);
	printf("pending:       %s\n",
	       o->f.pending ? "yes (a commit was cut short; the next locker "
	                      "repairs it)"
	                    : "no");
	printf("consistent:    %s\n",
	       o->f.consistent ? "yes" : "no (a side kept changing)");
}

/* ---- one round --------------------------------------------------------- */

static int stat_cmp(const void *a, const void *b)
{
	return strcmp(((const struct stat_obj *)a)->name,
	              ((const struct stat_obj *)b)->name);
}

/* The directory, opened and checked as the library does; -ENOENT when
 * it does not exist (the inspector makes nothing). */
static int stat_open_dir(void)
{
	const char *env = getenv("MPROC_DIR");
	char path[MPROC__PATH_MAX];
	struct stat st;

	if (env != NULL && env[0] != '\0')
		snprintf(path, sizeof(path), "%s", env);
	else
		snprintf(path, sizeof(path), "/dev/shm/mproc-%u",
		         (unsigned)geteuid());
	if (lstat(path, &st) < 0 && errno == ENOENT) {
		snprintf(stat_dir, sizeof(stat_dir), "%s", path);
		return -ENOENT;
	}
	return mproc__name_dir(stat_dir);
}

static int stat_round(char **names, int nnames)
{
	struct stat_obj *objs = NULL;
	size_t n = 0, cap = 0, i;
	int dirfd, missing = 0;

	dirfd = stat_open_dir();
	if (dirfd < 0 && dirfd != -ENOENT) {
		fprintf(stderr, "mproc-stat: %s: %s\n", stat_dir,
		        dirfd == -EPERM ? "not a safe directory (a symlink, "
		                          "writable by others, or another "
		                          "user's)"
		                        : mproc_strerror(dirfd));
		return 1;
	}
	if (nnames > 0) {
		objs = calloc((size_t)nnames, sizeof(*objs));
		if (objs == NULL)
			return 1;
		for (int k = 0; k < nnames; k++) {
			if (dirfd < 0 ||
			    stat_read(dirfd, names[k] + 1, &objs[n]) == -ENOENT) {
				fprintf(stderr, "mproc-stat: %s: no such object "
				        "in %s\n", names[k], stat_dir);
				missing = 1;
				continue;
			}
			n++;
		}
	} else if (dirfd >= 0) {
		DIR *d = fdopendir(dup(dirfd));
		struct dirent *e;

		while (d != NULL && (e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.' ||
			    strlen(e->d_name) > MPROC__NAME_MAX)
				continue; /* the library's own, or not ours */
			if (n == cap) {
				struct stat_obj *p;

				cap = cap ? cap * 2 : 16;
				p = realloc(objs, cap * sizeof(*objs));
				if (p == NULL)
					break;
				objs = p;
			}
			if (stat_read(dirfd, e->d_name, &objs[n]) == 0)
				n++;
		}
		if (d != NULL)
			closedir(d);
		qsort(objs, n, sizeof(*objs), stat_cmp);
	}
	if (dirfd >= 0)
		close(dirfd);
	stat_holders(objs, n);

	if (stat_json) {
		int one = nnames == 1;

		if (one && n == 0) {
			free(objs);
			return missing;
		}
		if (!one)
			putchar('[');
		for (i = 0; i < n; i++) {
			if (i > 0)
				putchar(',');
			stat_print_json(&objs[i]);
		}
		if (!one)
			putchar(']');
		putchar('\n');
	} else if (nnames > 0) {
		for (i = 0; i < n; i++) {
			if (i > 0)
				putchar('\n');
			stat_print_full(&objs[i]);
		}
	} else {
		printf("%-7s %-24s %4s %7s %7s %10s %-5s\n", "KIND", "NAME",
		       "MODE", "HOLDERS", "DEPTH", "BYTES", "STALE");
		for (i = 0; i < n; i++)
			stat_print_row(&objs[i]);
	}
	fflush(stdout);
	free(objs);
	return missing;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "watch", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sigaction sa;
	double watch = 0;
	long count = 0;
	char *end;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "jw:c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			stat_json = 1;
			break;
		case 'w':
			watch = strtod(optarg, &end);
			if (*optarg == '\0' || *end != '\0' || !(watch > 0) ||
			    watch > 86400) {
				fprintf(stderr, "mproc-stat: --watch wants "
				        "seconds (> 0)\n");
				return 2;
			}
			break;
		case 'c':
			count = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || count < 1) {
				fprintf(stderr, "mproc-stat: --count wants a "
				        "number (>= 1)\n");
				return 2;
			}
			break;
		case 'h':
			stat_usage(stdout);
			return 0;
		default:
			stat_usage(stderr);
			return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (mproc__name_check(argv[i]) < 0) {
			fprintf(stderr, "mproc-stat: %s: not a name (\"/\" "
			        "and 1 to 200 of [A-Za-z0-9._-], not "
			        "starting with \".\")\n", argv[i]);
			return 2;
		}
	}
	if (count > 0 && watch == 0)
		watch = 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stat_on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	for (long round = 0;; round++) {
		if (round > 0 && !stat_json)
			putchar('\n');
		rc |= stat_round(argv + optind, argc - optind);
		if (watch == 0 || (count > 0 && round + 1 >= count))
			break;
		struct timespec ts = { (time_t)watch,
		                       (long)((watch - (double)(time_t)watch) *
		                              1e9) };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return rc;
}
