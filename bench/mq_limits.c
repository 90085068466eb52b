/*
 * mq_limits.c - how deep a POSIX mq the bench can have: the depth whose
 * bytes match mproc's default ring, lowered to what the system allows,
 * and the /proc/sys/fs/mqueue limits raised for it (restored at exit and
 * on SIGINT/SIGTERM).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MQ_BYTES_TARGET (1u << 20) /* mq depth aims at mproc's default ring */
#define MQ_HARD_MAX 65536

static long g_msgmax_orig = -1;
static long g_msgsize_orig = -1;

long mq_limits_read(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Async-signal-safe. */
static int mq_limits_write(const char *path, long v)
{
	char buf[32];
	int fd, n = 0, ok;
	char tmp[32];
	unsigned long u = (unsigned long)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0 && n < (int)sizeof(tmp));
	for (fd = 0; fd < n; fd++)
		buf[fd] = tmp[n - 1 - fd];
	buf[n++] = '\n';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = write(fd, buf, (size_t)n) == n;
	close(fd);
	return ok ? 0 : -1;
}

void mq_limits_restore(void)
{
	if (g_msgmax_orig >= 0)
		mq_limits_write(MQ_MSG_MAX, g_msgmax_orig);
	if (g_msgsize_orig >= 0)
		mq_limits_write(MQ_MSGSIZE_MAX, g_msgsize_orig);
	g_msgmax_orig = g_msgsize_orig = -1;
}

void mq_limits_on_signal(int sig)
{
	mq_limits_restore();
	coord_kill_on_signal();
	named_cleanup_on_signal();
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * mq_limits_pick_depth chooses the deepest mq depth for w: the depth
 * whose bytes match mproc's default 1 MiB ring (at least 10, at most
 * 65536), lowered until w->nmq queues open at once (msg_max,
 * RLIMIT_MSGQUEUE). Raises msg_max (and msgsize_max) when allowed; they
 * are restored at exit.
 */
void mq_limits_pick_depth(struct workload *w)
{
	long msgsize = (long)(ENV_SIZE + wl_maxpay(w));
	long target = (long)MQ_BYTES_TARGET / msgsize, d, cur;
	mqd_t q[MAX_CH];
	int i, r = 0;

	if (target < 10)
		target = 10;
	if (target > MQ_HARD_MAX)
		target = MQ_HARD_MAX;
	cur = mq_limits_read(MQ_MSGSIZE_MAX);
	if (cur > 0 && cur < msgsize && !opt_quick && !opt_no_raise) {
		if (g_msgsize_orig < 0)
			g_msgsize_orig = cur;
		if (mq_limits_write(MQ_MSGSIZE_MAX, msgsize) != 0 &&
		    g_msgsize_orig == cur)
			g_msgsize_orig = -1;
	}
	cur = mq_limits_read(MQ_MSG_MAX);
	if (cur > 0 && cur < target && !opt_quick && !opt_no_raise) {
		if (g_msgmax_orig < 0)
			g_msgmax_orig = cur;
		if (mq_limits_write(MQ_MSG_MAX, target) != 0 &&
		    g_msgmax_orig == cur)
			g_msgmax_orig = -1;
	}
	cur = mq_limits_read(MQ_MSG_MAX);
	d = target;
	if (cur > 0 && cur < d)
		d = cur;
	while (d >= 1) {
		for (i = 0; i < w->nmq; i++) {
			r = chans_mq_open(&q[i], d, msgsize);
			if (r != 0)
				break;
		}
		while (i > 0)
			mq_close(q[--i]);
		if (r == 0)
			break;
		if (r != -EINVAL && r != -EMFILE && r != -ENOMEM &&
		    r != -ENOSPC)
			break;
		d = d > 16 ? d * 7 / 8 : d - 1;
	}
	if (r != 0 || d < 1) {
		w->mq_depth = 0;
		cur = mq_limits_read(MQ_MSGSIZE_MAX);
		if (cur > 0 && cur < msgsize)
			snprintf(w->mq_why, sizeof(w->mq_why), "n/a (%ld-byte "
			         "messages, msgsize_max %ld)", msgsize, cur);
		else
			snprintf(w->mq_why, sizeof(w->mq_why), "n/a (mq_open: "
			         "%s)", strerror(-r));
		return;
	}
	w->mq_depth = d;
	if (w->kind == K_POOL && w->window > d)
		w->window = (int)d;
}
