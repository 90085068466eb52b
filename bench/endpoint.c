/*
 * endpoint.c - one side of one channel, in a role: which handle it is,
 * sending one message and receiving one, the same way over every
 * transport (mproc's queue, pipe and bus, a raw pipe, a POSIX mq; W9's
 * slot and seqlock have their own loop in latest.c).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* The channel handle a role uses: ch index i, for sending or receiving. */
struct ep ep_of(const struct chans *ch, int i, bool send, int end)
{
	struct ep e;

	memset(&e, 0, sizeof(e));
	e.t = ch->t;
	e.fd = -1;
	e.mq = (mqd_t)-1;
	e.pollfd = -1;
	switch (ch->t) {
	case T_MPIPE:
		e.c = ch->c[i][end];
		break;
	case T_PIPE:
		e.fd = ch->fd[i][send ? 1 : 0];
		break;
	case T_MQ:
		e.mq = ch->mq[i];
		break;
	case T_SEQLOCK:
		e.sl = ch->sl;
		break;
	case T_SPSC:
		e.ring = ch->ring;
		break;
	default:
		e.c = ch->c[i][0];
		break;
	}
	return e;
}

static void ep_write_full(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			child_fail("write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

/*
 * ep_send sends one message. A producer builds its payload at
 * g_role.sbuf + ENV_SIZE so the raw transports send it without a copy.
 */
void ep_send(const struct ep *e, int32_t request, pid_t to,
             const unsigned char *data, uint32_t size)
{
	struct envelope v;
	mproc_msg m;
	int r;

	if (t_is_mproc(e->t)) {
		memset(&m, 0, sizeof(m));
		m.request = request;
		m.recipient = to;
		m.size = size;
		m.data = (void *)data;
		r = mproc_send_msg(e->c, &m, OP_TIMEOUT_MS);
		if (r != 0)
			child_fail_mproc("mproc_send_msg", r);
		return;
	}
	if (e->t == T_SPSC) {
		unsigned char *p = spsc_reserve(e->ring, size);

		if (size > 0)
			memcpy(p, data, size);
		spsc_commit(e->ring, request, g_role.pid, to, size);
		return;
	}
	if (e->t != T_PIPE && e->t != T_MQ)
		child_fail("bad transport");
	if (size > 0 && data != g_role.sbuf + ENV_SIZE)
		memcpy(g_role.sbuf + ENV_SIZE, data, size);
	v.request = request;
	v.sender = g_role.pid;
	v.recipient = to;
	v.size = size;
	memcpy(g_role.sbuf, &v, ENV_SIZE);
	if (e->t == T_PIPE) {
		ep_write_full(e->fd, g_role.sbuf, ENV_SIZE + size);
		return;
	}
	while (mq_send(e->mq, (const char *)g_role.sbuf, ENV_SIZE + size,
	               0) != 0)
		if (errno != EINTR)
			child_fail("mq_send: %s", strerror(errno));
}

static void ep_pipe_recv(const struct ep *e, struct rmsg *m)
{
	struct envelope v;

	for (;;) {
		size_t avail = g_role.ptail - g_role.phead, need = ENV_SIZE;
		ssize_t n;

		if (avail >= ENV_SIZE) {
			memcpy(&v, g_role.pbuf + g_role.phead, ENV_SIZE);
			if (v.size > g_role.maxpay)
				child_fail("raw pipe: frame of %u bytes "
				           "(max %u)", v.size, g_role.maxpay);
			need = ENV_SIZE + v.size;
			if (avail >= need) {
				m->request = v.request;
				m->sender = v.sender;
				m->recipient = v.recipient;
				m->size = v.size;
				m->data = g_role.pbuf + g_role.phead + ENV_SIZE;
				g_role.phead += need;
				return;
			}
		}
		if (avail == 0) {
			g_role.phead = g_role.ptail = 0;
		} else if (g_role.pcap - g_role.phead < need) {
			memmove(g_role.pbuf, g_role.pbuf + g_role.phead, avail);
			g_role.phead = 0;
			g_role.ptail = avail;
		}
		n = read(e->fd, g_role.pbuf + g_role.ptail,
		         g_role.pcap - g_role.ptail);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			child_fail("read: %s", strerror(errno));
		}
		if (n == 0)
			child_fail("raw pipe: end of file (peer gone early)");
		g_role.ptail += (size_t)n;
	}
}

/* One mproc_recv into the role's buffer: 0, or its error. */
static int ep_mproc_recv(const struct ep *e, struct rmsg *m, int timeout_ms)
{
	mproc_msg mm;
	int r;

	memset(&mm, 0, sizeof(mm));
	mm.data = g_role.rbuf;
	mm.capacity = g_role.maxpay;
	r = mproc_recv(e->c, &mm, e->directed ? mproc_for_me : NULL, NULL,
	               timeout_ms);
	if (r != 0)
		return r;
	m->request = mm.request;
	m->sender = mm.sender;
	m->recipient = mm.recipient;
	m->size = mm.size;
	m->data = g_role.rbuf;
	return 0;
}

/* T_QZC's borrowed message, until ep_recv_done. */
static mproc_msg ep_borrowed;

static void ep_borrow(const struct ep *e, struct rmsg *m)
{
	int r;

	memset(&ep_borrowed, 0, sizeof(ep_borrowed));
	r = mproc_recv_borrow(e->c, &ep_borrowed, NULL, NULL, OP_TIMEOUT_MS);
	if (r != 0)
		child_fail_mproc("mproc_recv_borrow", r);
	m->request = ep_borrowed.request;
	m->sender = ep_borrowed.sender;
	m->recipient = ep_borrowed.recipient;
	m->size = ep_borrowed.size;
	m->data = ep_borrowed.data;
}

/* The receiver is done with the message ep_recv gave it (checked). */
void ep_recv_done(const struct ep *e)
{
	int r;

	if (e->t == T_QZC) {
		r = mproc_recv_release(e->c, &ep_borrowed);
		if (r != 0)
			child_fail_mproc("mproc_recv_release", r);
	} else if (e->t == T_SPSC) {
		spsc_release(e->ring);
	}
}

/*
 * ep_send_begin: where the producer builds a payload of size bytes: in
 * the channel (T_QZC: a reservation; T_SPSC: the ring), else the role's
 * frame buffer. ep_send_end sends it.
 */
unsigned char *ep_send_begin(const struct ep *e, uint32_t size)
{
	void *buf;
	int r;

	if (e->t == T_QZC) {
		r = mproc_send_reserve(e->c, size, &buf, OP_TIMEOUT_MS);
		if (r != 0)
			child_fail_mproc("mproc_send_reserve", r);
		return buf;
	}
	if (e->t == T_SPSC)
		return spsc_reserve(e->ring, size);
	return g_role.sbuf + ENV_SIZE;
}

void ep_send_end(const struct ep *e, int32_t request, pid_t to,
                 unsigned char *data, uint32_t size)
{
	int r;

	if (e->t == T_QZC) {
		r = mproc_send_commit(e->c, request, to, size);
		if (r != 0)
			child_fail_mproc("mproc_send_commit", r);
		return;
	}
	if (e->t == T_SPSC) {
		spsc_commit(e->ring, request, g_role.pid, to, size);
		return;
	}
	ep_send(e, request, to, data, size);
}

/*
 * ep_try_recv receives with MPROC_NOWAIT (mproc transports only): 0, or
 * -EAGAIN when there is nothing; any other error fails the role.
 */
int ep_try_recv(const struct ep *e, struct rmsg *m)
{
	int r;

	if (!t_is_mproc(e->t))
		child_fail("bad transport");
	r = ep_mproc_recv(e, m, MPROC_NOWAIT);
	if (r != 0 && r != -EAGAIN)
		child_fail_mproc("mproc_recv (MPROC_NOWAIT)", r);
	return r;
}

void ep_recv(const struct ep *e, struct rmsg *m)
{
	struct envelope v;
	ssize_t n;
	int r;

	if (e->t == T_QZC) {
		ep_borrow(e, m);
		return;
	}
	if (e->t == T_SPSC) {
		spsc_recv(e->ring, m);
		return;
	}
	if (t_is_mproc(e->t)) {
		r = ep_mproc_recv(e, m, OP_TIMEOUT_MS);
		if (r != 0)
			child_fail_mproc("mproc_recv", r);
		return;
	}
	switch (e->t) {
	case T_PIPE:
		ep_pipe_recv(e, m);
		return;
	case T_MQ:
		while ((n = mq_receive(e->mq, (char *)g_role.rbuf,
		                       g_role.mq_msgsize, NULL)) < 0)
			if (errno != EINTR)
				child_fail("mq_receive: %s", strerror(errno));
		if ((size_t)n < ENV_SIZE)
			child_fail("mq: short message (%zd bytes)", n);
		memcpy(&v, g_role.rbuf, ENV_SIZE);
		if ((size_t)n != ENV_SIZE + v.size)
			child_fail("mq: %zd bytes for a %u-byte payload", n,
			           v.size);
		m->request = v.request;
		m->sender = v.sender;
		m->recipient = v.recipient;
		m->size = v.size;
		m->data = g_role.rbuf + ENV_SIZE;
		return;
	default:
		child_fail("bad transport");
	}
}

void ep_close(struct ep *e)
{
	if (e->c != NULL)
		mproc_close(e->c);
	if (e->fd >= 0)
		close(e->fd);
	if (e->mq != (mqd_t)-1)
		mq_close(e->mq);
}
