/*
 * child.c - a forked role: its setup (buffers, the handles it keeps), the
 * wait for the go, the role itself, and its end: a report in the shared
 * area and _exit(0), or FAIL with the reason and _exit(1).
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define PIPE_RDBUF (64u << 10)

struct role_state g_role;

void child_fail(const char *fmt, ...)
{
	va_list ap;
	char buf[sizeof(g_role.rep->err)];
	int n;

	n = snprintf(buf, sizeof(buf), "role %d (pid %d): ", g_role.role,
	             (int)g_role.pid);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (g_role.rep != NULL) {
		g_role.rep->t_fail_ns = now_ns();
		memcpy(g_role.rep->err, buf, sizeof(buf));
		g_role.rep->ok = 0;
	}
	fprintf(stderr, "mproc-bench: FAIL: %s\n", buf);
	_exit(1);
}

void child_fail_mproc(const char *call, int r)
{
	if (r == -ETIMEDOUT)
		child_fail("%s: %s (%d) after %d ms: a hang", call,
		           mproc_strerror(r), r, OP_TIMEOUT_MS);
	child_fail("%s: %s (%d)", call, mproc_strerror(r), r);
}

/*
 * T_NQUEUE: the role attaches every queue of the run by its name, as an
 * unrelated program would, then closes the handle fork gave it (in that
 * order: the name always has a holder).
 */
static void child_attach_named(struct chans *ch)
{
	mproc_conn *c;
	int i, r;

	for (i = 0; i < ch->n; i++) {
		r = mproc_queue_attach(&c, ch->name[i]);
		if (r != 0)
			child_fail("mproc_queue_attach %s: %s (%d)",
			           ch->name[i], mproc_strerror(r), r);
		r = mproc_close(ch->c[i][0]);
		if (r != 0)
			child_fail_mproc("mproc_close (inherited)", r);
		ch->c[i][0] = c;
	}
}

/* Before the go, what a role needs on top of its handles: W1p's
 * descriptor, W9's latency records, W8's subscriptions (the writer waits
 * for all readers). */
static void child_prepare(const struct workload *w, struct ep *eps, int role)
{
	int r;

	if (eps[0].t == T_QPOLL && role >= w->producers &&
	    role < w->producers + w->consumers) {
		r = mproc_fd(eps[0].c);
		if (r < 0)
			child_fail_mproc("mproc_fd", r);
		eps[0].pollfd = r;
	}
	if (w->kind == K_LATEST && role > 0) /* fault them in */
		memset(shared_lat(g_role.sh, role - 1), 0,
		       g_role.sh->lat_cap * sizeof(uint32_t));
	if (eps[0].t != T_BUS)
		return;
	if (role == 0)
		r = mproc_bus_wait_readers(eps[0].c, (unsigned)w->readers,
		                           OP_TIMEOUT_MS);
	else
		r = mproc_bus_subscribe(eps[0].c);
	if (r != 0)
		child_fail_mproc(role == 0 ? "mproc_bus_wait_readers"
		                           : "mproc_bus_subscribe", r);
}

void child_main(const struct workload *w, struct chans *ch, int role,
                int go_r, int go_w)
{
	struct ep eps[MAX_CH];
	int ne = 0, i, P = w->producers;
	mproc_pool *pool = NULL;
	char c;
	ssize_t n;

	close(go_w);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN); /* a raw pipe's lost reader: EPIPE, said */
	sigprocmask(SIG_SETMASK, &g_oldmask, NULL);
	g_role.role = role;
	g_role.pid = getpid();
	g_role.rep = &g_role.sh->r[role];
	g_role.maxpay = wl_maxpay(w);
	g_role.mq_msgsize = ENV_SIZE + g_role.maxpay;
	g_role.sbuf = xmalloc(ENV_SIZE + g_role.maxpay);
	g_role.rbuf = xmalloc(ENV_SIZE + g_role.maxpay);
	g_role.pcap = PIPE_RDBUF + ENV_SIZE + g_role.maxpay;
	g_role.pbuf = xmalloc(g_role.pcap);
	g_role.phead = g_role.ptail = 0;
	/* Fault the buffers in before the clock starts. */
	memset(g_role.sbuf, 0, ENV_SIZE + g_role.maxpay);
	memset(g_role.rbuf, 0, ENV_SIZE + g_role.maxpay);
	memset(g_role.pbuf, 0, g_role.pcap);
	if (ch->t == T_NQUEUE)
		child_attach_named(ch);

	switch (ch->t == T_POOL || ch->t == T_MEMCPY ? (enum wkind)-1
	                                             : w->kind) {
	case K_STREAM:
		eps[ne++] = ep_of(ch, 0, role < P, role < P ? 0 : 1);
		break;
	case K_PINGPONG:
		if (ch->t == T_MPIPE) {
			eps[ne++] = ep_of(ch, 0, true, role);
		} else {
			/* channel 0 carries pings, channel 1 pongs */
			eps[ne++] = ep_of(ch, role == 0 ? 0 : 1, true, 0);
			eps[ne++] = ep_of(ch, role == 0 ? 1 : 0, false, 0);
		}
		break;
	case K_POOL:
		if (role == 0) {
			eps[ne++] = ep_of(ch, 0, false, 0);
			for (i = 1; i < ch->n; i++)
				eps[ne++] = ep_of(ch, i, true, 0);
		} else {
			eps[ne++] = ep_of(ch, 0, true, 0);
			eps[ne++] = ep_of(ch, ch->n > 2 ? role : 1, false, 0);
			eps[1].directed = w->directed;
		}
		break;
	case K_BCAST:
		if (role == 0) {
			for (i = 0; i < ch->n; i++)
				eps[ne++] = ep_of(ch, i, true, 0);
		} else {
			eps[ne++] = ep_of(ch, ch->n > 1 ? role - 1 : 0, false,
			                  0);
		}
		break;
	case K_LATEST:
		eps[ne++] = ep_of(ch, 0, role == 0, 0);
		break;
	default:
		break;
	}
	chans_keep(ch, eps, ne);
	if (ch->t == T_POOL)
		pool = role_pool_open(w);
	else if (ch->t != T_MEMCPY)
		child_prepare(w, eps, role);

	/* Wait for the go: end of file when the coordinator closes it. */
	while ((n = read(go_r, &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 0)
		child_fail("go pipe: unexpected read %zd", n);
	close(go_r);
	g_role.rep->t_start_ns = now_ns();

	switch (ch->t == T_POOL || ch->t == T_MEMCPY ? (enum wkind)-1
	                                             : w->kind) {
	case K_STREAM:
		if (role < P)
			role_producer(w, &eps[0]);
		else if (role < P + w->consumers)
			role_consumer(w, &eps[0]);
		else
			role_watcher(w, &eps[0]);
		break;
	case K_PINGPONG:
		if (ch->t == T_MPIPE) {
			if (role == 0)
				role_pinger(w, &eps[0], &eps[0]);
			else
				role_ponger(w, &eps[0], &eps[0]);
		} else if (role == 0) {
			role_pinger(w, &eps[0], &eps[1]);
		} else {
			role_ponger(w, &eps[0], &eps[1]);
		}
		break;
	case K_POOL:
		if (role == 0)
			role_dispatcher(w, &eps[1], ne - 1, &eps[0]);
		else
			role_worker(w, &eps[1], &eps[0]);
		break;
	case K_BCAST:
		if (role == 0)
			role_bcast_writer(w, eps, ne);
		else
			role_bcast_reader(w, &eps[0]);
		break;
	case K_LATEST:
		if (role == 0)
			role_latest_writer(w, &eps[0]);
		else
			role_latest_reader(w, &eps[0]);
		break;
	default:
		if (ch->t == T_MEMCPY)
			role_memcpy(w);
		else
			role_pool(w, pool);
		break;
	}
	if (g_role.rep->t_end_ns == 0)
		g_role.rep->t_end_ns = now_ns();
	for (i = 0; i < ne; i++)
		ep_close(&eps[i]);
	g_role.rep->ok = 1;
	_exit(0);
}
