/*
 * proc.c - process identity and liveness: the caller's pid (cached across
 * fork), its start time, and whether a recipient pid still names the
 * process a message was sent to (orphan detection).
 *
 * Liveness is read from /proc/<pid>/stat (state letter and start time): a
 * zombie counts as gone, and a pid whose process started after the
 * message was sent belongs to someone else. With no descriptor free
 * (EMFILE) the file is read through a descriptor kept in reserve for this
 * (opened on first use), so a zombie is never taken for alive because the
 * caller ran out of descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/proc.h"
#include "internal.h"

static pid_t proc_pid;         /* 0: not read yet in this process */
static uint64_t proc_start_ns; /* 0: not read yet in this process */
static pthread_once_t proc_once = PTHREAD_ONCE_INIT;

/* A descriptor kept open so that /proc can be read when the process has
 * none left: closed, used, reopened under proc_reserve_mu. */
static pthread_mutex_t proc_reserve_mu = PTHREAD_MUTEX_INITIALIZER;
static int proc_reserve_fd = -1;

static void proc_atfork_child(void)
{
	__atomic_store_n(&proc_pid, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&proc_start_ns, 0, __ATOMIC_RELAXED);
}

static void proc_register(void)
{
	pthread_atfork(NULL, NULL, proc_atfork_child);
}

pid_t mproc__self_pid(void)
{
	pid_t p = __atomic_load_n(&proc_pid, __ATOMIC_RELAXED);

	if (mproc__unlikely(p == 0)) {
		pthread_once(&proc_once, proc_register);
		p = getpid();
		__atomic_store_n(&proc_pid, p, __ATOMIC_RELAXED);
	}
	return p;
}

/* Opens path; *reserved is set when the reserve descriptor was given up
 * for it (proc_reserve_mu is then held until proc_close_stat). */
void mproc__proc_reserve(void)
{
	if (mproc__likely(__atomic_load_n(&proc_reserve_fd, __ATOMIC_RELAXED) >=
	                  0))
		return;
	pthread_mutex_lock(&proc_reserve_mu);
	if (proc_reserve_fd < 0)
		proc_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&proc_reserve_mu);
}

static int proc_open_stat(const char *path, int *reserved)
{
	int fd;

	*reserved = 0;
	mproc__proc_reserve();
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || (errno != EMFILE && errno != ENFILE))
		return fd < 0 ? -errno : fd;
	/* Out of descriptors: give up the reserve for this one read. */
	pthread_mutex_lock(&proc_reserve_mu);
	if (proc_reserve_fd >= 0) {
		close(proc_reserve_fd);
		proc_reserve_fd = -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		proc_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		pthread_mutex_unlock(&proc_reserve_mu);
		return fd;
	}
	*reserved = 1;
	return fd;
}

static void proc_close_stat(int fd, int reserved)
{
	close(fd);
	if (reserved) {
		proc_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		pthread_mutex_unlock(&proc_reserve_mu);
	}
}

/*
 * proc_read_stat reads /proc/<pid>/stat: the state letter and the start
 * time (field 22, clock ticks since boot) in CLOCK_BOOTTIME ns. Returns 0,
 * or -ENOENT when there is no such process, or another negative errno.
 */
static int proc_read_stat(pid_t pid, char *state, uint64_t *start_ns)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks = 0;
	long hz;
	ssize_t n;
	int fd, field, reserved;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = proc_open_stat(path, &reserved);
	if (fd < 0)
		return fd;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		n = -errno;
	proc_close_stat(fd, reserved);
	if (n <= 0)
		return n < 0 ? (int)n : -ENOENT; /* a process gone mid-read */
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: parse from the
	 * last ')'. Field 3 (state) follows it; field 22 is the start time. */
	p = strrchr(buf, ')');
	if (p == NULL || p[1] == '\0' || p[2] == '\0')
		return -EPROTO;
	*state = p[2];
	p += 2;
	for (field = 3; field < 22 && p != NULL; field++) {
		p = strchr(p, ' ');
		if (p != NULL)
			p++;
	}
	if (p == NULL)
		return -EPROTO;
	ticks = strtoull(p, NULL, 10);
	hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	*start_ns = ticks * (1000000000ull / (unsigned long long)hz);
	return 0;
}

uint64_t mproc__self_start_ns(void)
{
	uint64_t s = __atomic_load_n(&proc_start_ns, __ATOMIC_RELAXED);
	char state;

	if (s == 0) {
		/* The stat start time is rounded down to a clock tick, so it
		 * is never later than the true start. 1 if /proc is missing:
		 * then every message looks sent after we started. */
		if (proc_read_stat(mproc__self_pid(), &state, &s) != 0 || s == 0)
			s = 1;
		__atomic_store_n(&proc_start_ns, s, __ATOMIC_RELAXED);
	}
	return s;
}

/* proc_lookup: is pid gone (1), or alive since *start (0)? */
static int proc_lookup(pid_t pid, uint64_t *start)
{
	char state;
	int rc;

	*start = 0;
	rc = proc_read_stat(pid, &state, start);
	if (rc == -ENOENT || rc == -ESRCH)
		return 1;
	if (rc != 0) /* no /proc: ask the kernel whether the pid exists */
		return kill(pid, 0) < 0 && errno == ESRCH;
	return state == 'Z' || state == 'X';
}

int mproc__pid_gone(pid_t pid, uint64_t born_before_ns)
{
	uint64_t start;

	if (pid <= 0)
		return 0;
	if (proc_lookup(pid, &start))
		return 1;
	return born_before_ns != 0 && start > born_before_ns;
}

void mproc__live_init(struct mproc__live *lc)
{
	mproc__proc_reserve();
	memset(lc, 0, sizeof(*lc));
}

int mproc__live_gone(struct mproc__live *lc, pid_t pid,
                     uint64_t born_before_ns)
{
	unsigned h, i, k = 0;

	if (pid <= 0)
		return 0;
	/* Open addressing; a full table reuses the home slot. */
	h = ((uint32_t)pid * 2654435761u) % MPROC__LIVE_SLOTS;
	for (i = 0; i < MPROC__LIVE_SLOTS; i++) {
		k = (h + i) % MPROC__LIVE_SLOTS;
		if (lc->slot[k].pid == pid || lc->slot[k].pid == 0)
			break;
	}
	if (i == MPROC__LIVE_SLOTS)
		k = h;
	if (lc->slot[k].pid != pid) {
		lc->slot[k].pid = pid;
		lc->slot[k].gone = proc_lookup(pid, &lc->slot[k].start);
		lc->lookups++;
	}
	if (lc->slot[k].gone)
		return 1;
	return born_before_ns != 0 && lc->slot[k].start > born_before_ns;
}
