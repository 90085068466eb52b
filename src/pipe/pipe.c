/*
 * pipe.c - the 1:1 duplex pipe transport, over an AF_UNIX stream
 * socketpair (close-on-exec).
 *
 * Frame format (native byte order: both ends run on one machine):
 *
 *   u32 magic       PIPE_MAGIC
 *   i32 request
 *   i32 sender
 *   i32 recipient
 *   u32 size        payload bytes, at most MPROC_PIPE_MAX_PAYLOAD
 *   u8  payload[size]
 *
 * A frame with another magic or a larger size gives -EPROTO. A byte stream
 * cannot be resynchronised, so the endpoint then stays in error: every
 * later send and receive on it returns -EPROTO.
 *
 * Blocking: the file description is blocking, and SO_RCVTIMEO and
 * SO_SNDTIMEO are set once, at open, to PIPE_SLICE_MS (they are shared
 * by every process holding the end, so they are never changed after).
 * A call whose deadline is at least PIPE_SLICE_MS + PIPE_SLICE_SLACK_MS
 * away (MPROC_FOREVER included) makes one plain blocking recv or send:
 * one system call whether or not it has to wait, and a slice always ends
 * before the deadline. A call with less time left passes MSG_DONTWAIT.
 * Either way, -EAGAIN (a slice ran out, or nothing there) is followed by a
 * poll() on the exact remaining time, then another try. O_NONBLOCK is
 * never toggled: the description is shared across fork().
 *
 * Endpoint state (struct pipe_end; one per end per process):
 *
 *   in[head, parsed)  whole frames already validated, in arrival order.
 *                     Frames a predicate rejected ("held") stay here. A
 *                     frame taken from the middle is stamped PIPE_TAKEN
 *                     and skipped; head never rests on a taken frame.
 *   in[parsed, tail)  bytes read but not validated yet: the start of the
 *                     next frame, kept across calls and timeouts.
 *   out[off, len)     the unsent rest of a frame a timed send could not
 *                     finish. Every later call flushes it first, so frames
 *                     never interleave on the wire. Only the process that
 *                     wrote the frame's start (out_pid) flushes it. When
 *                     nothing is pending, out is where a small frame is
 *                     assembled, so it goes out in one send().
 *   eof               the peer's end is closed: after the buffered frames,
 *                     receive gives -EPIPE.
 *   err               0, or -EPROTO once the peer sent a bad frame.
 *
 * Memory: opening allocates the struct, a 64 KiB `in` and an 8 KiB `out`.
 * They grow (at least doubling) only when a frame needs more room, and are
 * reused, so the message path does not allocate per message. One recv
 * reads ahead as many frames as fit. A large payload with nothing held
 * before it is read straight into the caller's buffer, skipping the copy
 * through `in`.
 *
 * Locks: send_mu serialises the write side (out and the socket's sends),
 * recv_mu the read side (in, eof). Each is held across the call's waits so
 * a frame is never interleaved and a second thread queues behind the first
 * within its own deadline. A receive only try-locks send_mu (to flush), and
 * a send never takes recv_mu, so they never wait on each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "base/lock.h"

#define PIPE_MAGIC 0x3163706du /* "mpc1" */
#define PIPE_TAKEN 0x656b6174u /* "take": a held frame already received */

struct pipe_hdr {
	uint32_t magic;
	int32_t request;
	int32_t sender;
	int32_t recipient;
	uint32_t size;
};

#define PIPE_HDR sizeof(struct pipe_hdr)
_Static_assert(sizeof(struct pipe_hdr) == 20, "frame header is 20 bytes");

#define PIPE_IN_INIT (64u << 10)    /* first input buffer */
#define PIPE_READ_MIN (16u << 10)   /* never read into less room than this */
#define PIPE_DIRECT_MIN (64u << 10) /* payload still to come that is worth
                                       reading straight into the caller's
                                       buffer */
#define PIPE_OUT_INIT (8u << 10)    /* frames up to this size are copied
                                       into out and sent with one send():
                                       cheaper than sendmsg's iovec */
#define PIPE_CLOSE_FLUSH_MS 1000
/* The kernel rounds socket timeouts up to jiffies (HZ >= 100) and its timer
 * wheel is exact to a jiffy for this range: a slice ends within
 * PIPE_SLICE_MS + 10 ms. */
#define PIPE_SLICE_MS 50
#define PIPE_SLICE_SLACK_MS 25

struct pipe_end {
	struct mproc_conn base;
	int fd;
	int err; /* 0 or -EPROTO; atomic (set by receive, read by send) */

	pthread_mutex_t send_mu;
	unsigned char *out;
	size_t out_cap, out_off, out_len;
	pid_t out_pid;    /* the process whose frame out holds */
	bool out_pending; /* out_off < out_len; atomic, peeked by receive */

	pthread_mutex_t recv_mu;
	unsigned char *in;
	size_t in_cap, head, parsed, tail;
	bool eof;
};

/* The endpoints whose predicates this thread is running (innermost first),
 * so a predicate that receives on one of them gets -EDEADLK, not a hang. */
struct pipe_frame {
	const struct pipe_end *p;
	const struct pipe_frame *outer;
};
static _Thread_local const struct pipe_frame *pipe_matching;

static struct pipe_end *pipe_of(mproc_conn *c)
{
	return (struct pipe_end *)c;
}

static int pipe_err(const struct pipe_end *p)
{
	return __atomic_load_n(&p->err, __ATOMIC_ACQUIRE);
}

static int pipe_poison(struct pipe_end *p)
{
	__atomic_store_n(&p->err, -EPROTO, __ATOMIC_RELEASE);
	return -EPROTO;
}

/* A deadline that ran out means -EAGAIN to a caller that did not wait. */
static int pipe_timeout_rc(int rc, int timeout_ms)
{
	return rc == -ETIMEDOUT && timeout_ms == MPROC_NOWAIT ? -EAGAIN : rc;
}

/*
 * pipe_io_flags: 0 (a blocking call, which the socket timeouts bound to
 * one slice) when a whole slice fits before the deadline, else
 * MSG_DONTWAIT.
 */
static int pipe_io_flags(const struct mproc__deadline *d)
{
	if (d->forever)
		return 0;
	if (d->expired)
		return MSG_DONTWAIT;
	return mproc__deadline_ns(d) >=
	               (int64_t)(PIPE_SLICE_MS + PIPE_SLICE_SLACK_MS) * 1000000
	       ? 0
	       : MSG_DONTWAIT;
}

static int pipe_lock(pthread_mutex_t *mu, const struct mproc__deadline *d,
                     int timeout_ms)
{
	int rc;

	if (timeout_ms == MPROC_FOREVER)
		rc = pthread_mutex_lock(mu);
	else if (timeout_ms == MPROC_NOWAIT)
		rc = pthread_mutex_trylock(mu);
	else {
		mproc__deadline_arm(d);
		rc = mproc__mutex_clocklock(mu, &d->at);
	}
	if (rc == 0)
		return 0;
	if (rc == EBUSY || rc == ETIMEDOUT)
		return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
	return -rc;
}

/*
 * pipe_wait polls the socket for events until the deadline. Returns the
 * revents (> 0), -ETIMEDOUT or another negative errno. A signal neither
 * ends the wait nor moves the deadline: poll is simply called again with
 * what is left.
 */
static int pipe_wait(const struct pipe_end *p, short events,
                     const struct mproc__deadline *d)
{
	struct pollfd pfd;
	int ms, n;

	for (;;) {
		ms = mproc__deadline_ms(d);
		if (ms == 0)
			return -ETIMEDOUT;
		pfd.fd = p->fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, ms);
		if (n > 0)
			return pfd.revents;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* ---- write side (send_mu held) ---------------------------------------- */

static int pipe_send_errno(int e)
{
	/* A peer that closed with data unread resets the connection. */
	return e == ECONNRESET ? -EPIPE : -e;
}

static void pipe_out_reset(struct pipe_end *p)
{
	p->out_off = p->out_len = 0;
	__atomic_store_n(&p->out_pending, false, __ATOMIC_RELEASE);
}

/* Writes out[off, len) by the deadline: 0 (nothing left), or an error. */
static int pipe_flush(struct pipe_end *p, const struct mproc__deadline *d)
{
	ssize_t n;
	int rc;

	/* A copy inherited across fork() is the other process's frame: only
	 * the process that started it may finish it, or the peer would get
	 * its rest twice (say, when a child closes the parent's end). */
	if (p->out_off < p->out_len && p->out_pid != mproc__self_pid()) {
		pipe_out_reset(p);
		return 0;
	}
	while (p->out_off < p->out_len) {
		n = send(p->fd, p->out + p->out_off, p->out_len - p->out_off,
		         MSG_NOSIGNAL | pipe_io_flags(d));
		if (n >= 0) {
			p->out_off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			rc = pipe_wait(p, POLLOUT, d);
			if (rc < 0)
				return rc;
			continue;
		}
		rc = pipe_send_errno(errno);
		if (rc == -EPIPE)
			pipe_out_reset(p); /* nobody will ever read it */
		return rc;
	}
	pipe_out_reset(p);
	return 0;
}

/*
 * The frame can no longer be finished: end our write side so the peer sees
 * a truncated frame and then the end of the stream (-EPIPE), never the
 * start of the next frame glued to half of this one.
 */
static void pipe_break(struct pipe_end *p)
{
	shutdown(p->fd, SHUT_WR);
	pipe_out_reset(p);
}

/* Keeps the unsent rest of a frame (done bytes of it written) in out. */
static int pipe_keep(struct pipe_end *p, const struct pipe_hdr *h,
                     const void *data, size_t done)
{
	size_t rest = PIPE_HDR + h->size - done, cap;
	unsigned char *n;

	if (p->out_cap < rest) {
		cap = p->out_cap * 2 > rest ? p->out_cap * 2 : rest;
		n = malloc(cap);
		if (n == NULL)
			return -ENOMEM;
		free(p->out);
		p->out = n;
		p->out_cap = cap;
	}
	if (done < PIPE_HDR) {
		memcpy(p->out, (const unsigned char *)h + done, PIPE_HDR - done);
		if (h->size > 0)
			memcpy(p->out + PIPE_HDR - done, data, h->size);
	} else {
		memcpy(p->out, (const unsigned char *)data + (done - PIPE_HDR),
		       rest);
	}
	p->out_off = 0;
	p->out_len = rest;
	p->out_pid = mproc__self_pid();
	__atomic_store_n(&p->out_pending, true, __ATOMIC_RELEASE);
	return 0;
}

/* Keeps the unsent rest of a frame assembled in out: it is there already. */
static int pipe_keep_staged(struct pipe_end *p, size_t done, size_t len)
{
	p->out_off = done;
	p->out_len = len;
	p->out_pid = mproc__self_pid();
	__atomic_store_n(&p->out_pending, true, __ATOMIC_RELEASE);
	return 0;
}

static void pipe_iov_advance(struct msghdr *mh, size_t n)
{
	while (n > 0 && mh->msg_iovlen > 0) {
		if (n < mh->msg_iov->iov_len) {
			mh->msg_iov->iov_base = (char *)mh->msg_iov->iov_base + n;
			mh->msg_iov->iov_len -= n;
			return;
		}
		n -= mh->msg_iov->iov_len;
		mh->msg_iov++;
		mh->msg_iovlen--;
	}
}

static int pipe_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct pipe_end *p = pipe_of(c);
	struct mproc__deadline d;
	struct pipe_hdr h;
	struct iovec iov[2];
	struct msghdr mh;
	size_t len, done = 0;
	bool staged;
	ssize_t n;
	int rc;

	if (m->size > MPROC_PIPE_MAX_PAYLOAD)
		return -EMSGSIZE;
	rc = pipe_err(p);
	if (rc != 0)
		return rc;
	mproc__deadline_set(&d, timeout_ms);
	rc = pipe_lock(&p->send_mu, &d, timeout_ms);
	if (rc != 0)
		return rc;
	/* An earlier frame's rest goes first; if it cannot, nothing new is
	 * written. */
	rc = pipe_flush(p, &d);
	if (rc != 0) {
		rc = pipe_timeout_rc(rc, timeout_ms);
		goto out;
	}

	h.magic = PIPE_MAGIC;
	h.request = m->request;
	h.sender = m->sender != 0 ? m->sender : mproc__self_pid();
	h.recipient = m->recipient;
	h.size = m->size;
	len = PIPE_HDR + m->size;
	/* out is free (flushed above) and never smaller than PIPE_OUT_INIT. */
	staged = len <= PIPE_OUT_INIT;
	if (staged) {
		memcpy(p->out, &h, PIPE_HDR);
		if (m->size > 0)
			memcpy(p->out + PIPE_HDR, m->data, m->size);
	} else {
		iov[0].iov_base = &h;
		iov[0].iov_len = PIPE_HDR;
		iov[1].iov_base = m->data;
		iov[1].iov_len = m->size;
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = 2;
	}

	for (;;) {
		/* MSG_NOSIGNAL, so a gone peer is -EPIPE, never SIGPIPE. */
		if (staged)
			n = send(p->fd, p->out + done, len - done,
			         MSG_NOSIGNAL | pipe_io_flags(&d));
		else
			n = sendmsg(p->fd, &mh,
			            MSG_NOSIGNAL | pipe_io_flags(&d));
		if (n >= 0) {
			done += (size_t)n;
			if (done == len) {
				rc = 0;
				break;
			}
			if (!staged)
				pipe_iov_advance(&mh, (size_t)n);
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			rc = pipe_send_errno(errno);
			if (done > 0 && rc != -EPIPE)
				pipe_break(p);
			break;
		}
		rc = pipe_wait(p, POLLOUT, &d);
		if (rc >= 0)
			continue;
		if (done == 0) {
			rc = pipe_timeout_rc(rc, timeout_ms);
			break;
		}
		/* Out of time half way through the frame: keep the rest, the
		 * next call on this end finishes it (documented in mproc.h). */
		if (rc == -ETIMEDOUT) {
			if (staged)
				rc = pipe_keep_staged(p, done, len);
			else
				rc = pipe_keep(p, &h, m->data, done);
		}
		if (rc != 0)
			pipe_break(p);
		break;
	}
out:
	pthread_mutex_unlock(&p->send_mu);
	return rc;
}

/*
 * pipe_try_flush lets a receive push out a kept frame rest without
 * blocking: the peer may be waiting for it before it answers. Returns true
 * when some is still left and worth waiting for POLLOUT.
 */
static bool pipe_try_flush(struct pipe_end *p)
{
	struct mproc__deadline now;
	bool left;

	if (!__atomic_load_n(&p->out_pending, __ATOMIC_ACQUIRE))
		return false;
	/* A thread holding send_mu is flushing it already. */
	if (pthread_mutex_trylock(&p->send_mu) != 0)
		return false;
	mproc__deadline_set(&now, MPROC_NOWAIT);
	pipe_flush(p, &now);
	left = p->out_off < p->out_len;
	pthread_mutex_unlock(&p->send_mu);
	return left;
}

/* ---- read side (recv_mu held) ----------------------------------------- */

/* Waits until the socket is readable (or hung up), flushing on the way. */
static int pipe_wait_in(struct pipe_end *p, const struct mproc__deadline *d)
{
	short ev;
	int rc;

	for (;;) {
		ev = POLLIN;
		if (pipe_try_flush(p))
			ev |= POLLOUT;
		rc = pipe_wait(p, ev, d);
		if (rc < 0)
			return rc;
		if (rc & ~POLLOUT)
			return 0;
	}
}

/*
 * pipe_reserve makes room in `in` for need bytes from *pos and at least
 * PIPE_READ_MIN free bytes after tail, sliding the live bytes down or
 * moving them to a bigger buffer. Slides happen only when at most half the
 * buffer is live, so each byte is moved O(1) times on average.
 */
static int pipe_reserve(struct pipe_end *p, size_t *pos, size_t need)
{
	size_t live = p->tail - p->head;
	size_t want = *pos - p->head + need;
	size_t cap;
	unsigned char *n;

	if (want < live + PIPE_READ_MIN)
		want = live + PIPE_READ_MIN;
	if (p->in_cap - p->head >= want)
		return 0;
	if (p->in_cap >= want && live <= p->in_cap / 2) {
		memmove(p->in, p->in + p->head, live);
	} else {
		cap = p->in_cap * 2 > want ? p->in_cap * 2 : want;
		n = malloc(cap);
		if (n == NULL)
			return -ENOMEM;
		memcpy(n, p->in + p->head, live);
		free(p->in);
		p->in = n;
		p->in_cap = cap;
	}
	*pos -= p->head;
	p->parsed -= p->head;
	p->tail = live;
	p->head = 0;
	return 0;
}

/*
 * pipe_recv_flags: as pipe_io_flags, but never a blocking recv while a
 * kept frame rest is pending: the peer may need it before it answers, and
 * only the wait in pipe_wait_in flushes it.
 */
static int pipe_recv_flags(const struct pipe_end *p,
                           const struct mproc__deadline *d)
{
	if (__atomic_load_n(&p->out_pending, __ATOMIC_ACQUIRE))
		return MSG_DONTWAIT;
	return pipe_io_flags(d);
}

/* Reads as much as the socket has, as many frames as fit (one call for a
 * stream of small frames), waiting by the deadline: > 0 bytes, 0 at the
 * end of the stream, or a negative errno (-ETIMEDOUT: nothing in time). */
static ssize_t pipe_fill(struct pipe_end *p, size_t *pos, size_t need,
                         const struct mproc__deadline *d)
{
	ssize_t n;
	int rc;

	rc = pipe_reserve(p, pos, need);
	if (rc != 0)
		return rc;
	for (;;) {
		n = recv(p->fd, p->in + p->tail, p->in_cap - p->tail,
		         pipe_recv_flags(p, d));
		if (n > 0) {
			p->tail += (size_t)n;
			return n;
		}
		if (n == 0 || errno == ECONNRESET) {
			p->eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		/* Nothing yet, or a slice ran out: wait out what is left. */
		rc = pipe_wait_in(p, d);
		if (rc < 0)
			return rc;
	}
}

/* Removes the frame at pos (flen bytes) from the buffered frames. */
static void pipe_take(struct pipe_end *p, size_t pos, size_t flen)
{
	const uint32_t taken = PIPE_TAKEN;
	struct pipe_hdr h;

	if (pos != p->head) {
		memcpy(p->in + pos, &taken, sizeof(taken));
		return;
	}
	p->head += flen;
	while (p->head < p->parsed) {
		memcpy(&h, p->in + p->head, PIPE_HDR);
		if (h.magic != PIPE_TAKEN)
			break;
		p->head += PIPE_HDR + h.size;
	}
	if (p->head == p->tail)
		p->head = p->parsed = p->tail = 0;
}

static int pipe_match(struct pipe_end *p, mproc_match_fn match,
                      const mproc_msg *v, void *arg)
{
	struct pipe_frame f = { .p = p, .outer = pipe_matching };
	int ok;

	pipe_matching = &f;
	ok = match(v, arg);
	pipe_matching = f.outer;
	return ok;
}

static void pipe_fill_msg(mproc_msg *m, const struct pipe_hdr *h)
{
	m->request = h->request;
	m->sender = h->sender;
	m->recipient = h->recipient;
	m->size = h->size;
}

/*
 * pipe_scan walks the buffered frames from *pos (a frame boundary) and
 * delivers the first one match accepts. Returns 0 (delivered), -EMSGSIZE,
 * -EPROTO, or 1 when more bytes are needed; then *pos is the first frame
 * not yet looked at and *need the bytes it needs from *pos to be whole.
 */
static int pipe_scan(struct pipe_end *p, size_t *pos, size_t *need,
                     mproc_msg *m, mproc_match_fn match, void *arg)
{
	struct pipe_hdr h;
	mproc_msg v;
	size_t avail, flen;

	while ((avail = p->tail - *pos) >= PIPE_HDR) {
		memcpy(&h, p->in + *pos, PIPE_HDR);
		if (*pos >= p->parsed) {
			if (h.magic != PIPE_MAGIC ||
			    h.size > MPROC_PIPE_MAX_PAYLOAD)
				return pipe_poison(p);
			flen = PIPE_HDR + h.size;
			if (avail < flen) {
				*need = flen;
				/* match NULL takes this frame whatever its
				 * payload: the header is enough to say it
				 * does not fit. */
				if (match == NULL && h.size > m->capacity) {
					m->size = h.size;
					return -EMSGSIZE;
				}
				return 1;
			}
			p->parsed = *pos + flen;
		} else {
			flen = PIPE_HDR + h.size;
			if (h.magic == PIPE_TAKEN) {
				*pos += flen;
				continue;
			}
		}
		if (match != NULL) {
			pipe_fill_msg(&v, &h);
			v.data = p->in + *pos + PIPE_HDR;
			v.capacity = h.size;
			if (!pipe_match(p, match, &v, arg)) {
				*pos += flen;
				continue;
			}
		}
		if (h.size > m->capacity) {
			m->size = h.size;
			return -EMSGSIZE;
		}
		if (h.size > 0)
			memcpy(m->data, p->in + *pos + PIPE_HDR, h.size);
		pipe_fill_msg(m, &h);
		pipe_take(p, *pos, flen);
		return 0;
	}
	*need = PIPE_HDR;
	return 1;
}

/*
 * pipe_recv_direct reads the rest of the frame at pos (the only bytes
 * buffered; its header is validated and its payload fits m) straight into
 * the caller's buffer, saving a copy of a large payload. If it has to give
 * up (deadline, peer gone, error), the part read is put back in `in`,
 * which has room for the whole frame: the caller's buffer is only
 * borrowed.
 */
static int pipe_recv_direct(struct pipe_end *p, size_t pos, mproc_msg *m,
                            const struct mproc__deadline *d)
{
	unsigned char *dst = m->data;
	struct pipe_hdr h;
	size_t got;
	ssize_t n;
	int rc = 0, flags;

	memcpy(&h, p->in + pos, PIPE_HDR);
	got = p->tail - pos - PIPE_HDR;
	memcpy(dst, p->in + pos + PIPE_HDR, got);
	p->head = p->parsed = p->tail = 0;
	while (got < h.size) {
		/* Blocking, MSG_WAITALL: the kernel gathers the whole rest in
		 * one call (or up to a slice's end). */
		flags = pipe_recv_flags(p, d);
		n = recv(p->fd, dst + got, h.size - got,
		         flags != 0 ? flags : MSG_WAITALL);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0 || errno == ECONNRESET) {
			p->eof = true;
			rc = -EPIPE;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			rc = -errno;
			break;
		}
		rc = pipe_wait_in(p, d);
		if (rc < 0)
			break;
	}
	if (got < h.size) {
		memcpy(p->in, &h, PIPE_HDR);
		memcpy(p->in + PIPE_HDR, dst, got);
		p->tail = PIPE_HDR + got;
		return rc;
	}
	pipe_fill_msg(m, &h);
	return 0;
}

static bool pipe_direct_ok(const struct pipe_end *p, size_t pos, size_t need,
                           const mproc_msg *m)
{
	return pos == p->head && need > PIPE_HDR &&
	       need - PIPE_HDR <= m->capacity &&
	       need - (p->tail - pos) >= PIPE_DIRECT_MIN;
}

static int pipe_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                     void *arg, int timeout_ms)
{
	struct pipe_end *p = pipe_of(c);
	struct mproc__deadline d;
	size_t pos, need = PIPE_HDR;
	ssize_t n;
	int rc;

	for (const struct pipe_frame *f = pipe_matching; f; f = f->outer)
		if (f->p == p)
			return -EDEADLK;
	rc = pipe_err(p);
	if (rc != 0)
		return rc;
	mproc__deadline_set(&d, timeout_ms);
	rc = pipe_lock(&p->recv_mu, &d, timeout_ms);
	if (rc != 0)
		return rc;
	pipe_try_flush(p);
	/* Held frames first, in order, then whatever arrives; frames this
	 * call has looked at once are not shown to match again. */
	pos = p->head;
	for (;;) {
		rc = pipe_scan(p, &pos, &need, m, match, arg);
		if (rc <= 0)
			break;
		if (p->eof) {
			rc = -EPIPE;
			break;
		}
		/* Not for MPROC_NOWAIT: a caller polling for a large frame
		 * would have the part read so far copied out and back on
		 * every call. */
		if (match == NULL && timeout_ms != MPROC_NOWAIT &&
		    pipe_direct_ok(p, pos, need, m)) {
			rc = pipe_reserve(p, &pos, need);
			if (rc == 0)
				rc = pipe_recv_direct(p, pos, m, &d);
			break;
		}
		n = pipe_fill(p, &pos, need, &d);
		if (n >= 0)
			continue;
		rc = (int)n;
		break;
	}
	pthread_mutex_unlock(&p->recv_mu);
	return pipe_timeout_rc(rc, timeout_ms);
}

/* ---- the rest ---------------------------------------------------------- */

static void pipe_close(mproc_conn *c)
{
	struct pipe_end *p = pipe_of(c);
	struct mproc__deadline d;

	if (p->in == NULL) /* closed already: idempotent */
		return;
	if (p->fd >= 0) {
		if (p->out_off < p->out_len) {
			mproc__deadline_set(&d, PIPE_CLOSE_FLUSH_MS);
			pipe_flush(p, &d);
		}
		close(p->fd);
		p->fd = -1;
	}
	free(p->in);
	p->in = NULL;
	free(p->out);
	p->out = NULL;
	pthread_mutex_destroy(&p->send_mu);
	pthread_mutex_destroy(&p->recv_mu);
	/* The struct is mproc_close's to free (it answers -EINVAL after). */
}

static int pipe_fd(mproc_conn *c)
{
	return pipe_of(c)->fd;
}

const struct mproc__transport mproc__pipe_transport = {
	.name = "pipe",
	.send = pipe_send,
	.recv = pipe_recv,
	.close = pipe_close,
	.fd = pipe_fd,
};

static struct pipe_end *pipe_new(void)
{
	struct pipe_end *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->in = malloc(PIPE_IN_INIT);
	p->out = malloc(PIPE_OUT_INIT);
	if (p->in == NULL || p->out == NULL) {
		free(p->in);
		free(p->out);
		free(p);
		return NULL;
	}
	p->base.tr = &mproc__pipe_transport;
	p->fd = -1;
	p->in_cap = PIPE_IN_INIT;
	p->out_cap = PIPE_OUT_INIT;
	pthread_mutex_init(&p->send_mu, NULL);
	pthread_mutex_init(&p->recv_mu, NULL);
	return p;
}

/* Bounds every blocking recv and send on fd to one slice (see the top). */
static int pipe_set_slice(int fd)
{
	const struct timeval tv = { .tv_sec = 0,
		                    .tv_usec = PIPE_SLICE_MS * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

int mproc__pipe_open(mproc_conn **a, mproc_conn **b)
{
	struct pipe_end *pa, *pb;
	int sv[2], rc;

	pa = pipe_new();
	pb = pipe_new();
	if (pa == NULL || pb == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		goto fail;
	}
	pa->fd = sv[0];
	pb->fd = sv[1];
	rc = pipe_set_slice(sv[0]);
	if (rc == 0)
		rc = pipe_set_slice(sv[1]);
	if (rc != 0)
		goto fail;
	*a = &pa->base;
	*b = &pb->base;
	return 0;
fail:
	/* pipe_close leaves the struct to mproc_close; these never got out. */
	if (pa != NULL) {
		pipe_close(&pa->base);
		free(pa);
	}
	if (pb != NULL) {
		pipe_close(&pb->base);
		free(pb);
	}
	return rc;
}

int mproc__pipe_adopt(mproc_conn **end, int fd)
{
	struct pipe_end *p;
	int type = 0, domain = 0, fl, rc;
	socklen_t len = sizeof(type);

	if (fd < 0)
		return -EINVAL;
	/* Only an AF_UNIX stream socket can carry the frames. */
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return errno == ENOTSOCK ? -EINVAL : -errno;
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return -errno;
	if (type != SOCK_STREAM || domain != AF_UNIX)
		return -EINVAL;
	if ((fl = fcntl(fd, F_GETFL)) < 0)
		return -errno;
	if ((p = pipe_new()) == NULL)
		return -ENOMEM;
	/* Blocking, close-on-exec, the send and receive slices: as
	 * mproc_pipe_open makes its ends. Nothing is changed on failure. */
	if ((rc = pipe_set_slice(fd)) != 0) {
		free(p);
		return rc;
	}
	if ((fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		rc = -errno;
		free(p);
		return rc;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	p->fd = fd;
	*end = &p->base;
	return 0;
}
