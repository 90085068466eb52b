/*
 * mproc-stat - the inspector: what the named objects in the directory
 * ($MPROC_DIR, or /dev/shm/mproc-<euid>) hold, without disturbing them.
 *
 *   mproc-stat [--json] [--watch SECONDS] [--count N] [NAME...]
 *
 * No NAME: one line per object in the directory (kind, name, mode,
 * holders, depth, bytes, stale; depth is the messages queued for a queue,
 * the largest reader lag for a bus, the version for a slot; bytes the
 * ring bytes in use, or the current value's size). NAME: everything
 * about that object (for a bus, each subscriber's cursor and lag).
 * --json: the same as JSON (an object for one NAME, else an array), one
 * document per line. --watch: again every SECONDS (a decimal) until
 * interrupted, or N times with --count N.
 *
 * Read-only and never waiting: a file is opened O_RDONLY | O_NOFOLLOW |
 * O_NONBLOCK and mapped PROT_READ; no lock of the object is taken (the
 * figures come from mproc__queue_inspect, mproc__bus_inspect and
 * mproc__slot_inspect, which read the locked words under their sequence
 * counts), so a dead or stopped holder of a lock holds nothing up. The
 * mapping is untrusted: a file that is not a valid object, or that
 * shrinks under us (SIGBUS, caught), is reported "corrupt".
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
#include "bus/layout.h"
#include "queue/layout.h"
#include "shm/name.h"
#include "slot/layout.h"
#include "shm/region.h"

/* Files larger than this are no object of ours: the largest slot (three
 * buffers of 1 GiB) and its header; queues and buses stop at 1 GiB of
 * ring and a header under 1 MiB. */
#define STAT_MAX_SIZE \
	((uint64_t)MPROC__SLOT_BUFS_BIG * MPROC_SLOT_MAX_PAYLOAD + (1u << 20))

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
	int have_b;
	struct mproc__bus_figures bf;
	struct mproc__bus_reader_figures *br; /* bf.subscribers of them */
	int have_s;
	struct mproc__slot_figures sf;
};

/* Where a bus's subscribers are read to (one bus at a time). */
static struct mproc__bus_reader_figures stat_readers[MPROC__BUS_MAX_READERS];

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

/* A bus's figures, its subscribers copied out of the scratch table. */
static int stat_read_bus(struct stat_obj *o, const void *map, size_t len)
{
	int n = mproc__bus_inspect(map, len, &o->bf, stat_readers,
	                           MPROC__BUS_MAX_READERS);

	if (n < 0)
		return n;
	o->bf.subscribers = (uint32_t)n;
	if (n > 0) {
		o->br = malloc((size_t)n * sizeof(*o->br));
		if (o->br == NULL)
			return -ENOMEM;
		memcpy(o->br, stat_readers, (size_t)n * sizeof(*o->br));
	}
	return 0;
}

/* The header's kind, the kind's figures: under a SIGBUS guard, since
 * the file may shrink under the mapping. */
static void stat_read_map(struct stat_obj *o, const void *map, size_t len)
{
	const struct mproc__shm_hdr *h = map;

	stat_bus_armed = 1;
	if (sigsetjmp(stat_bus_jmp, 1) != 0) {
		stat_bus_armed = 0;
		o->corrupt = 1;
		o->have_q = o->have_b = o->have_s = 0;
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
		} else if (kind == MPROC__KIND_BUS) {
			int rc = stat_read_bus(o, map, len);

			o->have_b = rc == 0;
			o->corrupt = rc == -EPROTO;
			if (rc < 0 && rc != -EPROTO)
				o->err = rc;
		} else if (kind == MPROC__KIND_SLOT) {
			o->have_s = mproc__slot_inspect(map, len, &o->sf) == 0;
			o->corrupt = !o->have_s;
		} else {
			o->corrupt = 1;
		}
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

static unsigned long long stat_ull(uint64_t v)
{
	return (unsigned long long)v;
}

/* A kind's flags, by name (bit 0 means one thing per kind). */
static const char *stat_flag_name(const struct stat_obj *o, uint32_t bit)
{
	if (bit == MPROC_UNLINK_ON_LAST_CLOSE)
		return "UNLINK_ON_LAST_CLOSE";
	if (bit == MPROC_QUEUE_MANUAL_DONE && o->have_q)
		return "MANUAL_DONE";
	if (bit == MPROC_BUS_OVERWRITE && o->have_b)
		return "OVERWRITE";
	return NULL; /* the inspect checks refuse any other */
}

/* The flags as a JSON array of names, or as a line of them. */
static void stat_flags(const struct stat_obj *o, uint32_t flags, int json)
{
	int first = 1;

	printf(json ? ",\"flags\":[" : "flags:         ");
	for (int i = 0; i < 32; i++) {
		const char *name = stat_flag_name(o, 1u << i);

		if (!(flags & (1u << i)) || name == NULL)
			continue;
		printf(json ? "%s\"%s\"" : "%s%s", first ? "" : json ? "," : " ",
		       name);
		first = 0;
	}
	if (json)
		putchar(']');
	else
		printf("%s\n", first ? "none" : "");
}

static void stat_json_queue(const struct stat_obj *o)
{
	const mproc_stats *st = &o->f.st;

	printf(",\"queued\":%llu,\"bytes\":%llu,\"unfinished\":%llu,"
	       "\"sent\":%llu,\"received\":%llu,\"recoveries\":%llu,"
	       "\"orphans\":%llu,\"purged\":%llu,\"capacity\":%llu,"
	       "\"max_payload\":%llu",
	       stat_ull(st->queued), stat_ull(st->bytes),
	       stat_ull(st->unfinished), stat_ull(st->sent),
	       stat_ull(st->received), stat_ull(st->recoveries),
	       stat_ull(st->orphans), stat_ull(st->purged),
	       stat_ull(st->capacity), stat_ull(st->max_payload));
	printf(",\"max_messages\":%u", o->f.max_messages);
	stat_flags(o, o->f.flags, 1);
	printf(",\"shutdown\":%s,\"pollers\":%d,\"pending\":%s,"
	       "\"consistent\":%s",
	       stat_tf(o->f.shutdown), o->f.pollers, stat_tf(o->f.pending),
	       stat_tf(o->f.consistent));
}

/* A bus: mproc_bus_counts' names for the bus's own figures, the largest
 * lag, and each subscriber. */
static void stat_json_bus(const struct stat_obj *o)
{
	const struct mproc__bus_figures *b = &o->bf;

	printf(",\"sent\":%llu,\"queued\":%llu,\"bytes\":%llu,"
	       "\"capacity\":%llu,\"max_payload\":%u,\"recoveries\":%llu,"
	       "\"reclaimed\":%llu,\"readers\":%u,\"max_readers\":%u,"
	       "\"subscribed\":%u,\"max_lag\":%llu,\"max_lag_bytes\":%llu,"
	       "\"overwrite\":%s",
	       stat_ull(b->sent), stat_ull(b->queued), stat_ull(b->bytes),
	       stat_ull(b->capacity), b->max_payload, stat_ull(b->recoveries),
	       stat_ull(b->reclaimed), b->readers, b->max_readers,
	       b->subscribers, stat_ull(b->max_lag),
	       stat_ull(b->max_lag_bytes),
	       stat_tf(b->flags & MPROC_BUS_OVERWRITE));
	stat_flags(o, b->flags, 1);
	printf(",\"head\":%llu,\"tail\":%llu,\"pollers\":%d,\"pending\":%s,"
	       "\"consistent\":%s,\"subscribers\":[",
	       stat_ull(b->head), stat_ull(b->tail), b->pollers,
	       stat_tf(b->pending), stat_tf(b->consistent));
	for (uint32_t i = 0; i < b->subscribers; i++) {
		const struct mproc__bus_reader_figures *r = &o->br[i];

		printf("%s{\"pid\":%d,\"live\":%s,\"cursor\":%llu,\"lag\":%llu,"
		       "\"lag_bytes\":%llu,\"lost\":%llu,\"received\":%llu,"
		       "\"overrun\":%s}",
		       i > 0 ? "," : "", (int)r->pid, stat_tf(r->live),
		       stat_ull(r->cursor), stat_ull(r->lag),
		       stat_ull(r->lag_bytes), stat_ull(r->lost),
		       stat_ull(r->received), stat_tf(r->overrun));
	}
	putchar(']');
}

/* A slot: mproc_slot_counts' names, but value_size for its size ("size"
 * is the file's, as for every kind). */
static void stat_json_slot(const struct stat_obj *o)
{
	const struct mproc__slot_figures *sl = &o->sf;

	printf(",\"version\":%llu,\"value_size\":%u,\"max_payload\":%u,"
	       "\"buffers\":%u,\"recoveries\":%llu,\"readers\":%u,"
	       "\"readers_waiting\":%u,\"copying\":%u,\"borrowed\":%u,"
	       "\"writing\":%u",
	       stat_ull(sl->version), sl->size, sl->max_payload, sl->buffers,
	       stat_ull(sl->recoveries), sl->readers, sl->readers_waiting,
	       sl->pinned, sl->borrowed, sl->writing);
	if (sl->version > 0)
		printf(",\"request\":%d,\"sender\":%d,\"recipient\":%d",
		       (int)sl->request, (int)sl->sender, (int)sl->recipient);
	stat_flags(o, sl->flags, 1);
	printf(",\"pollers\":%d", sl->pollers);
}

static void stat_print_json(const struct stat_obj *o)
{
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
	if (o->have_q || o->have_b || o->have_s)
		printf(",\"layout\":%u", (unsigned)o->layout);
	if (o->have_q)
		stat_json_queue(o);
	else if (o->have_b)
		stat_json_bus(o);
	else if (o->have_s)
		stat_json_slot(o);
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
	uint64_t d = 0, b = 0;
	int have = 1;

	if (o->have_st)
		snprintf(mode, sizeof(mode), "%04o",
		         (unsigned)(o->mode & 07777));
	if (o->have_q) {
		d = o->f.st.queued;
		b = o->f.st.bytes;
	} else if (o->have_b) {
		d = o->bf.max_lag;
		b = o->bf.bytes;
	} else if (o->have_s) {
		d = o->sf.version;
		b = o->sf.size;
	} else {
		have = 0;
	}
	if (have) {
		snprintf(depth, sizeof(depth), "%llu", stat_ull(d));
		snprintf(bytes, sizeof(bytes), "%llu", stat_ull(b));
	}
	printf("%-7s %-24s %4s %7d %7s %10s %-5s %s\n", o->kind, o->name, mode,
	       o->holders, depth, bytes,
	       o->stale == 1 ? "yes" : o->stale == 0 ? "no" : "-",
	       stat_state(o));
}

static void stat_full_pending(int pending, int consistent, const char *why)
{
	printf("pending:       %s\n",
	       pending ? "yes (a commit was cut short; the next locker "
	                 "repairs it)"
	               : "no");
	printf("consistent:    %s%s%s\n", consistent ? "yes" : "no (",
	       consistent ? "" : why, consistent ? "" : ")");
}

static void stat_full_queue(const struct stat_obj *o)
{
	const mproc_stats *st = &o->f.st;

	printf("queued:        %llu\n", stat_ull(st->queued));
	printf("bytes:         %llu\n", stat_ull(st->bytes));
	printf("unfinished:    %llu\n", stat_ull(st->unfinished));
	printf("sent:          %llu\n", stat_ull(st->sent));
	printf("received:      %llu\n", stat_ull(st->received));
	printf("recoveries:    %llu\n", stat_ull(st->recoveries));
	printf("orphans:       %llu\n", stat_ull(st->orphans));
	printf("purged:        %llu\n", stat_ull(st->purged));
	printf("capacity:      %llu\n", stat_ull(st->capacity));
	printf("max_payload:   %llu\n", stat_ull(st->max_payload));
	printf("max_messages:  %u%s\n", o->f.max_messages,
	       o->f.max_messages == 0 ? " (bounded by bytes)" : "");
	stat_flags(o, o->f.flags, 0);
	printf("shutdown:      %s\n", o->f.shutdown ? "yes" : "no");
	printf("pollers:       %d\n", o->f.pollers);
	stat_full_pending(o->f.pending, o->f.consistent,
	                  "a side kept changing");
}

static void stat_full_bus(const struct stat_obj *o)
{
	const struct mproc__bus_figures *b = &o->bf;

	printf("sent:          %llu\n", stat_ull(b->sent));
	printf("queued:        %llu (messages in the ring)\n",
	       stat_ull(b->queued));
	printf("bytes:         %llu\n", stat_ull(b->bytes));
	printf("capacity:      %llu\n", stat_ull(b->capacity));
	printf("max_payload:   %u\n", b->max_payload);
	printf("overwrite:     %s\n",
	       b->flags & MPROC_BUS_OVERWRITE
	               ? "yes (writers never wait; overrun readers get "
	                 "-EOVERFLOW)"
	               : "no (writers wait for the slowest live reader)");
	stat_flags(o, b->flags, 0);
	printf("recoveries:    %llu\n", stat_ull(b->recoveries));
	printf("reclaimed:     %llu (dead readers' entries taken back)\n",
	       stat_ull(b->reclaimed));
	printf("readers:       %u live of %u subscribed (at most %u)\n",
	       b->readers, b->subscribers, b->max_readers);
	printf("max_lag:       %llu messages, %llu bytes\n",
	       stat_ull(b->max_lag), stat_ull(b->max_lag_bytes));
	printf("head, tail:    %llu, %llu\n", stat_ull(b->head),
	       stat_ull(b->tail));
	printf("pollers:       %d\n", b->pollers);
	stat_full_pending(b->pending, b->consistent,
	                  "a writer kept committing");
	if (b->subscribers == 0)
		return;
	printf("  %-8s %-4s %12s %8s %10s %8s %8s\n", "PID", "LIVE", "CURSOR",
	       "LAG", "LAG_BYTES", "LOST", "RECEIVED");
	for (uint32_t i = 0; i < b->subscribers; i++) {
		const struct mproc__bus_reader_figures *r = &o->br[i];

		printf("  %-8d %-4s %12llu %8llu %10llu %8llu %8llu%s\n",
		       (int)r->pid, r->live ? "yes" : "no", stat_ull(r->cursor),
		       stat_ull(r->lag), stat_ull(r->lag_bytes),
		       stat_ull(r->lost), stat_ull(r->received),
		       r->overrun ? " overrun" : "");
	}
}

static void stat_full_slot(const struct stat_obj *o)
{
	const struct mproc__slot_figures *sl = &o->sf;

	printf("version:       %llu%s\n", stat_ull(sl->version),
	       sl->version == 0 ? " (no value yet)" : "");
	if (sl->version > 0)
		printf("value:         %u bytes, request %d (%s), sender %d, "
		       "recipient %d\n",
		       sl->size, (int)sl->request,
		       mproc_request_name(sl->request), (int)sl->sender,
		       (int)sl->recipient);
	printf("max_payload:   %u\n", sl->max_payload);
	printf("buffers:       %u\n", sl->buffers);
	stat_flags(o, sl->flags, 0);
	printf("recoveries:    %llu (dead writers' buffers taken back)\n",
	       stat_ull(sl->recoveries));
	printf("readers:       %u live (%u waiting for a newer value, %u "
	       "copying one out, %u holding one borrowed)\n",
	       sl->readers, sl->readers_waiting, sl->pinned, sl->borrowed);
	printf("writing:       %u (filling a buffer, reservations "
	       "included)\n",
	       sl->writing);
	printf("pollers:       %d\n", sl->pollers);
}

static void stat_print_full(const struct stat_obj *o)
{
	printf("name:          %s\n", o->name);
	printf("file:          %s/%s\n", stat_dir, o->name + 1);
	printf("kind:          %s", o->kind);
	if (o->have_q || o->have_b || o->have_s)
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
	if (o->have_q)
		stat_full_queue(o);
	else if (o->have_b)
		stat_full_bus(o);
	else if (o->have_s)
		stat_full_slot(o);
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
	for (i = 0; i < n; i++)
		free(objs[i].br);
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
