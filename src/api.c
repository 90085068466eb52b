/*
 * api.c - the public entry points: argument checks, then dispatch through
 * the handle's ops table (conn.h). Also the ready-made predicates and the
 * version. The error table is errors.c's.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

const char *mproc_version(void)
{
	return PACKAGE_VERSION;
}

const char *mproc_request_name(int32_t request)
{
	switch (request) {
	case MPROC_DO:
		return "DO";
	case MPROC_FINISHED:
		return "FINISHED";
	case MPROC_DIE:
		return "DIE";
	default:
		return request >= MPROC_USER ? "USER" : "UNKNOWN";
	}
}

int mproc_for_me(const mproc_msg *m, void *arg)
{
	MPROC__UNUSED(arg);
	if (m == NULL)
		return 0;
	return m->recipient == MPROC_ANYONE || m->recipient == mproc__self_pid();
}

int mproc_match_request(const mproc_msg *m, void *arg)
{
	if (m == NULL || arg == NULL)
		return 0;
	return m->request == *(const int32_t *)arg;
}

int mproc_match_request_for_me(const mproc_msg *m, void *arg)
{
	return mproc_match_request(m, arg) && mproc_for_me(m, NULL);
}

/* A message a send may carry: a known request code, a real addressee. */
static int api_msg_ok(int32_t request, pid_t recipient)
{
	if (recipient < 0)
		return 0; /* a failed fork()'s -1 is not an address */
	return request == MPROC_DO || request == MPROC_FINISHED ||
	       request == MPROC_DIE || request >= MPROC_USER;
}

int mproc_pipe_open(mproc_conn **parent_end, mproc_conn **child_end)
{
	if (parent_end == NULL || child_end == NULL || parent_end == child_end)
		return -EINVAL;
	return mproc__pipe_open(parent_end, child_end);
}

int mproc_pipe_adopt(mproc_conn **end, int fd)
{
	if (end == NULL)
		return -EINVAL;
	return mproc__pipe_adopt(end, fd);
}

int mproc_queue_open(mproc_conn **queue, const mproc_queue_opts *opts)
{
	if (queue == NULL)
		return -EINVAL;
	return mproc__queue_open(queue, opts);
}

int mproc_queue_create(mproc_conn **queue, const char *name,
                       const mproc_queue_opts *opts)
{
	if (queue == NULL)
		return -EINVAL;
	return mproc__queue_create(queue, name, opts);
}

int mproc_queue_attach(mproc_conn **queue, const char *name)
{
	if (queue == NULL)
		return -EINVAL;
	return mproc__queue_attach_name(queue, name);
}

int mproc_unlink(const char *name)
{
	return mproc__name_unlink(name);
}

int mproc_send_msg(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	if (c == NULL || m == NULL || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	if ((m->data == NULL && m->size > 0) ||
	    !api_msg_ok(m->request, m->recipient))
		return -EINVAL;
	return c->tr->send(c, m, timeout_ms);
}

int mproc_send(mproc_conn *c, int32_t request, pid_t recipient,
               const void *data, size_t size)
{
	mproc_msg m;

	if (c == NULL || (data == NULL && size > 0) ||
	    !api_msg_ok(request, recipient))
		return -EINVAL;
	if (size > UINT32_MAX)
		return -EMSGSIZE;
	memset(&m, 0, sizeof(m));
	m.request = request;
	m.recipient = recipient;
	m.data = (void *)data;
	m.size = (uint32_t)size;
	return c->tr->send(c, &m, MPROC_FOREVER);
}

int mproc_send_reserve(mproc_conn *c, size_t size, void **buf, int timeout_ms)
{
	if (c == NULL || buf == NULL || !mproc__timeout_ok(timeout_ms) ||
	    c->tr->reserve == NULL)
		return -EINVAL;
	if (size > UINT32_MAX)
		return -EMSGSIZE;
	return c->tr->reserve(c, size, buf, timeout_ms);
}

int mproc_send_commit(mproc_conn *c, int32_t request, pid_t recipient,
                      size_t size)
{
	if (c == NULL || c->tr->commit == NULL ||
	    !api_msg_ok(request, recipient) || size > UINT32_MAX)
		return -EINVAL;
	return c->tr->commit(c, request, recipient, size);
}

int mproc_send_cancel(mproc_conn *c)
{
	if (c == NULL || c->tr->cancel == NULL)
		return -EINVAL;
	return c->tr->cancel(c);
}

int mproc_recv_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                      void *arg, int timeout_ms)
{
	if (c == NULL || m == NULL || !mproc__timeout_ok(timeout_ms) ||
	    c->tr->borrow == NULL)
		return -EINVAL;
	return c->tr->borrow(c, m, match, arg, timeout_ms);
}

int mproc_recv_release(mproc_conn *c, mproc_msg *m)
{
	if (c == NULL || m == NULL || c->tr->release == NULL)
		return -EINVAL;
	return c->tr->release(c, m);
}

int mproc_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match, void *arg,
               int timeout_ms)
{
	if (c == NULL || m == NULL || !mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	if (m->data == NULL && m->capacity > 0)
		return -EINVAL;
	return c->tr->recv(c, m, match, arg, timeout_ms);
}

/*
 * A closed handle keeps its struct, with the closed transport, so that a
 * call on it says -EINVAL instead of touching freed memory. The last
 * MPROC__GRAVEYARD closed handles of the process are kept; an older one
 * is freed (calls on it are undefined, like after free()).
 */
#define MPROC__GRAVEYARD 256

static int closed_send(mproc_conn *c, const mproc_msg *m, int t)
{
	MPROC__UNUSED(c);
	MPROC__UNUSED(m);
	MPROC__UNUSED(t);
	return -EINVAL;
}

static int closed_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn f, void *a,
                       int t)
{
	MPROC__UNUSED(c);
	MPROC__UNUSED(m);
	MPROC__UNUSED(f);
	MPROC__UNUSED(a);
	MPROC__UNUSED(t);
	return -EINVAL;
}

static void closed_close(mproc_conn *c)
{
	MPROC__UNUSED(c);
}

static int closed_fd(mproc_conn *c)
{
	MPROC__UNUSED(c);
	return -EINVAL;
}

static const struct mproc__transport closed_transport = {
	.name = "closed",
	.send = closed_send,
	.recv = closed_recv,
	.close = closed_close,
	.fd = closed_fd,
};

static pthread_mutex_t graveyard_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_conn *graveyard[MPROC__GRAVEYARD];
static unsigned graveyard_next;

int mproc_close(mproc_conn *c)
{
	mproc_conn *old;

	if (c == NULL || c->tr == &closed_transport)
		return -EINVAL;
	c->tr->close(c); /* releases what it holds, not the struct */
	c->tr = &closed_transport;
	pthread_mutex_lock(&graveyard_mu);
	old = graveyard[graveyard_next];
	graveyard[graveyard_next] = c;
	graveyard_next = (graveyard_next + 1) % MPROC__GRAVEYARD;
	pthread_mutex_unlock(&graveyard_mu);
	free(old);
	return 0;
}

int mproc_fd(mproc_conn *c)
{
	if (c == NULL)
		return -EINVAL;
	return c->tr->fd(c);
}

/* Queue-only calls: any other handle is a bad argument. */
#define MPROC__QUEUE_ONLY(c)                                                   \
	do {                                                                   \
		if ((c) == NULL || (c)->tr == &closed_transport)        \
			return -EINVAL;                                        \
		if ((c)->tr != &mproc__queue_transport)                        \
			return -EINVAL;                                        \
	} while (0)

int mproc_queue_empty(mproc_conn *q)
{
	MPROC__QUEUE_ONLY(q);
	return mproc__queue_empty(q);
}

int mproc_queue_join(mproc_conn *q, int timeout_ms)
{
	MPROC__QUEUE_ONLY(q);
	if (!mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	return mproc__queue_join(q, timeout_ms);
}

int mproc_queue_shutdown(mproc_conn *q)
{
	MPROC__QUEUE_ONLY(q);
	return mproc__queue_shutdown(q);
}

int mproc_task_done(mproc_conn *q)
{
	MPROC__QUEUE_ONLY(q);
	return mproc__queue_task_done(q);
}

int mproc_queue_stats(mproc_conn *q, mproc_stats *st)
{
	MPROC__QUEUE_ONLY(q);
	if (st == NULL)
		return -EINVAL;
	return mproc__queue_stats(q, st);
}

int mproc_queue_purge(mproc_conn *q)
{
	MPROC__QUEUE_ONLY(q);
	return mproc__queue_purge(q);
}

/* Kind-only calls: a handle of any other kind is a bad argument. */
#define MPROC__KIND_ONLY(c, transport)                                         \
	do {                                                                   \
		if ((c) == NULL || (c)->tr != &(transport))                    \
			return -EINVAL;                                        \
	} while (0)

int mproc_slot_open(mproc_conn **slot, const mproc_slot_opts *opts)
{
	if (slot == NULL)
		return -EINVAL;
	return mproc__slot_open(slot, opts);
}

int mproc_slot_create(mproc_conn **slot, const char *name,
                      const mproc_slot_opts *opts)
{
	if (slot == NULL)
		return -EINVAL;
	return mproc__slot_create(slot, name, opts);
}

int mproc_slot_attach(mproc_conn **slot, const char *name)
{
	if (slot == NULL)
		return -EINVAL;
	return mproc__slot_attach_name(slot, name);
}

int mproc_slot_stats(mproc_conn *slot, mproc_slot_counts *st)
{
	MPROC__KIND_ONLY(slot, mproc__slot_transport);
	if (st == NULL)
		return -EINVAL;
	return mproc__slot_stats(slot, st);
}

int mproc_bus_open(mproc_conn **bus, const mproc_bus_opts *opts)
{
	if (bus == NULL)
		return -EINVAL;
	return mproc__bus_open(bus, opts);
}

int mproc_bus_create(mproc_conn **bus, const char *name,
                     const mproc_bus_opts *opts)
{
	if (bus == NULL)
		return -EINVAL;
	return mproc__bus_create(bus, name, opts);
}

int mproc_bus_attach(mproc_conn **bus, const char *name)
{
	if (bus == NULL)
		return -EINVAL;
	return mproc__bus_attach_name(bus, name);
}

int mproc_bus_subscribe(mproc_conn *bus)
{
	MPROC__KIND_ONLY(bus, mproc__bus_transport);
	return mproc__bus_subscribe(bus);
}

int mproc_bus_unsubscribe(mproc_conn *bus)
{
	MPROC__KIND_ONLY(bus, mproc__bus_transport);
	return mproc__bus_unsubscribe(bus);
}

int mproc_bus_wait_readers(mproc_conn *bus, unsigned n, int timeout_ms)
{
	MPROC__KIND_ONLY(bus, mproc__bus_transport);
	if (!mproc__timeout_ok(timeout_ms))
		return -EINVAL;
	return mproc__bus_wait_readers(bus, n, timeout_ms);
}

int mproc_bus_stats(mproc_conn *bus, mproc_bus_counts *st)
{
	MPROC__KIND_ONLY(bus, mproc__bus_transport);
	if (st == NULL)
		return -EINVAL;
	return mproc__bus_stats(bus, st);
}
