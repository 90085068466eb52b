/*
 * msg.c - who a message is for: the caller's pid (cached across fork), its
 * start time, and whether a recipient pid still names the process a message
 * was sent to (orphan detection).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static pid_t msg_pid;          /* 0: not read yet in this process */
static uint64_t msg_start_ns;  /* 0: not read yet in this process */
static pthread_once_t msg_once = PTHREAD_ONCE_INIT;

static void msg_atfork_child(void)
{
	__atomic_store_n(&msg_pid, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&msg_start_ns, 0, __ATOMIC_RELAXED);
}

static void msg_register(void)
{
	pthread_atfork(NULL, NULL, msg_atfork_child);
}

pid_t mproc__self_pid(void)
{
	pid_t p = __atomic_load_n(&msg_pid, __ATOMIC_RELAXED);

	if (mproc__unlikely(p == 0)) {
		pthread_once(&msg_once, msg_register);
		p = getpid();
		__atomic_store_n(&msg_pid, p, __ATOMIC_RELAXED);
	}
	return p;
}

/*
 * msg_read_stat reads /proc/<pid>/stat: the state letter and the start
 * time (field 22, clock ticks since boot) in CLOCK_BOOTTIME ns. Returns 0,
 * or -ENOENT when there is no such process, or another negative errno.
 */
static int msg_read_stat(pid_t pid, char *state, uint64_t *start_ns)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks = 0;
	long hz;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -ENOENT; /* a process gone mid-read */
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
	uint64_t s = __atomic_load_n(&msg_start_ns, __ATOMIC_RELAXED);
	char state;

	if (s == 0) {
		/* The stat start time is rounded down to a clock tick, so it
		 * is never later than the true start. 1 if /proc is missing:
		 * then every message looks sent after we started. */
		if (msg_read_stat(mproc__self_pid(), &state, &s) != 0 || s == 0)
			s = 1;
		__atomic_store_n(&msg_start_ns, s, __ATOMIC_RELAXED);
	}
	return s;
}

int mproc__pid_gone(pid_t pid, uint64_t born_before_ns)
{
	uint64_t start;
	char state;
	int rc;

	if (pid <= 0)
		return 0;
	rc = msg_read_stat(pid, &state, &start);
	if (rc == -ENOENT || rc == -ESRCH)
		return 1;
	if (rc != 0) /* no /proc: ask the kernel whether the pid exists */
		return kill(pid, 0) < 0 && errno == ESRCH;
	if (state == 'Z' || state == 'X')
		return 1;
	return born_before_ns != 0 && start > born_before_ns;
}
