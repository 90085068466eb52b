/*
 * open.c - making a slot (an anonymous mapping before fork(), or a named
 * one), attaching a named one, closing a handle.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slot/slot.h"

#define SLOT_FLAGS (MPROC_UNLINK_ON_LAST_CLOSE)

static void slot_close(mproc_conn *c)
{
	struct slot_conn *h = slot_of(c);

	if (h->s != NULL) {
		mproc__poller_close(&h->s->poll, &h->poll);
		/* An open reservation is dropped, an open borrow ends. */
		mproc__slot_drop_reservation(h);
		if (h->reader >= 0 && h->reader_pid == mproc__self_pid()) {
			struct mproc__slot_reader *e = &h->s->readers[h->reader];

			__atomic_store_n(&e->pin, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&e->borrow, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&e->start_ns, MPROC__SLOT_NO_START,
			                 __ATOMIC_RELEASE);
			__atomic_store_n(&e->pid, 0, __ATOMIC_RELEASE);
		}
	}
	if (h->named != NULL) {
		mproc__named_close(h->named);
		free(h->named);
		h->named = NULL;
	} else if (h->s != NULL) {
		mproc__region_unmap(h->s, h->map_len);
	}
	h->s = NULL;
	h->borrowed = 0;
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->zmu);
}

/* The geometry for max_payload: buffers and their stride. */
static int slot_geometry_for(uint32_t max_payload, uint32_t *nbuf,
                             uint64_t *stride, size_t *len)
{
	if (max_payload > MPROC_SLOT_MAX_PAYLOAD)
		return -EINVAL;
	*nbuf = max_payload > MPROC__SLOT_BIG ? MPROC__SLOT_BUFS_BIG
	                                      : MPROC__SLOT_BUFS;
	*stride = (max_payload + 63u) & ~(uint64_t)63u;
	if (*stride == 0)
		*stride = 64; /* events: a line each, never read */
	*len = MPROC__SLOT_HDR + (size_t)(*stride * *nbuf);
	return 0;
}

static int slot_opts(const mproc_slot_opts *opts, mproc_slot_opts *o)
{
	if (opts != NULL)
		*o = *opts;
	else
		memset(o, 0, sizeof(*o));
	if (o->flags & ~(uint32_t)SLOT_FLAGS)
		return -EINVAL;
	if (o->max_payload == 0)
		o->max_payload = MPROC_SLOT_DEFAULT_MAX_PAYLOAD;
	if (o->max_payload > MPROC_SLOT_MAX_PAYLOAD)
		return -EINVAL;
	return 0;
}

/* Lay a fresh (zeroed) mapping out as the slot o describes. */
static int slot_layout_init(void *map, size_t len, void *arg)
{
	const mproc_slot_opts *o = arg;
	struct mproc__slot_shared *s = map;
	uint32_t nbuf, i;
	uint64_t stride;
	size_t want;
	int rc;

	if ((rc = slot_geometry_for(o->max_payload, &nbuf, &stride, &want)) < 0)
		return rc;
	if (want != len)
		return -EINVAL;
	s->max_payload = o->max_payload;
	s->nbuf = nbuf;
	s->flags = o->flags;
	s->stride = stride;
	mproc__poll_init(&s->poll.table, map);
	for (i = 0; i < MPROC__SLOT_BUFS; i++)
		s->buf[i].writer_start = MPROC__SLOT_NO_START;
	for (i = 0; i < MPROC__SLOT_READERS; i++)
		s->readers[i].start_ns = MPROC__SLOT_NO_START;
	mproc__region_init(&s->hdr, MPROC__KIND_SLOT, MPROC__SLOT_LAYOUT,
	                   MPROC__SLOT_HDR, len);
	return 0;
}

static struct slot_conn *slot_conn_new(void)
{
	struct slot_conn *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		return NULL;
	}
	if (pthread_mutex_init(&h->zmu, NULL) != 0) {
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	return h;
}

static void slot_conn_free(struct slot_conn *h)
{
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->zmu);
	free(h->named);
	free(h);
}

static void slot_conn_init(struct slot_conn *h, void *map, size_t len,
                           uint32_t max_payload, uint32_t nbuf,
                           uint64_t stride, uint32_t flags)
{
	h->base.tr = &mproc__slot_transport;
	h->s = map;
	h->data = (uint8_t *)map + MPROC__SLOT_HDR;
	h->map_len = len;
	h->max_payload = max_payload;
	h->nbuf = nbuf;
	h->stride = stride;
	h->flags = flags;
	h->reader = -1;
	mproc__poller_init(&h->poll);
}

int mproc__slot_open(mproc_conn **out, const mproc_slot_opts *opts)
{
	mproc_slot_opts o;
	struct slot_conn *h;
	uint32_t nbuf;
	uint64_t stride;
	size_t len;
	void *map;
	int rc;

	if ((rc = slot_opts(opts, &o)) < 0)
		return rc;
	if (o.flags & MPROC_UNLINK_ON_LAST_CLOSE)
		return -EINVAL; /* no name to unlink */
	if ((rc = slot_geometry_for(o.max_payload, &nbuf, &stride, &len)) < 0)
		return rc;
	if ((h = slot_conn_new()) == NULL)
		return -ENOMEM;
	if ((rc = mproc__region_anon(len, &map)) < 0) {
		slot_conn_free(h);
		return rc;
	}
	if ((rc = slot_layout_init(map, len, &o)) < 0) {
		mproc__region_unmap(map, len);
		slot_conn_free(h);
		return rc;
	}
	slot_conn_init(h, map, len, o.max_payload, nbuf, stride, o.flags);
	*out = &h->base;
	return 0;
}

int mproc__slot_create(mproc_conn **out, const char *name,
                       const mproc_slot_opts *opts)
{
	mproc_slot_opts o;
	struct slot_conn *h;
	uint32_t nbuf;
	uint64_t stride;
	size_t len;
	int rc;

	if ((rc = slot_opts(opts, &o)) < 0)
		return rc;
	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((rc = slot_geometry_for(o.max_payload, &nbuf, &stride, &len)) < 0)
		return rc;
	if ((h = slot_conn_new()) == NULL)
		return -ENOMEM;
	if ((h->named = malloc(sizeof(*h->named))) == NULL) {
		slot_conn_free(h);
		return -ENOMEM;
	}
	rc = mproc__named_create(h->named, name, o.mode, len, slot_layout_init,
	                         &o);
	if (rc < 0) {
		slot_conn_free(h);
		return rc;
	}
	h->named->unlink_on_last_close =
	        (o.flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	slot_conn_init(h, h->named->map, h->named->len, o.max_payload, nbuf,
	               stride, o.flags);
	*out = &h->base;
	return 0;
}

/* A mapping's slot fields, read once each and checked against its
 * length. 0 or -EPROTO. */
static int slot_geometry(const struct mproc__slot_shared *s, size_t len,
                         uint32_t *max_payload, uint32_t *nbuf,
                         uint64_t *stride, uint32_t *flags)
{
	uint32_t want_nbuf;
	uint64_t want_stride;
	size_t want_len;

	if (len < MPROC__SLOT_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_SLOT,
	                        MPROC__SLOT_LAYOUT, MPROC__SLOT_HDR) < 0)
		return -EPROTO;
	*max_payload = __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED);
	*nbuf = __atomic_load_n(&s->nbuf, __ATOMIC_RELAXED);
	*stride = __atomic_load_n(&s->stride, __ATOMIC_RELAXED);
	*flags = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);
	if (slot_geometry_for(*max_payload, &want_nbuf, &want_stride,
	                      &want_len) < 0 ||
	    *nbuf != want_nbuf || *stride != want_stride || len != want_len ||
	    (*flags & ~(uint32_t)SLOT_FLAGS) != 0)
		return -EPROTO;
	return 0;
}

int mproc__slot_attach_name(mproc_conn **out, const char *name)
{
	struct mproc__named *nm;
	struct slot_conn *h = NULL;
	uint32_t max_payload, nbuf, flags;
	uint64_t stride;
	int rc;

	if ((nm = malloc(sizeof(*nm))) == NULL)
		return -ENOMEM;
	if ((rc = mproc__named_attach(nm, name, MPROC__KIND_SLOT,
	                              MPROC__SLOT_LAYOUT, MPROC__SLOT_HDR)) < 0) {
		free(nm);
		return rc;
	}
	rc = slot_geometry(nm->map, nm->len, &max_payload, &nbuf, &stride,
	                   &flags);
	if (rc == 0 && (h = slot_conn_new()) == NULL)
		rc = -ENOMEM;
	if (rc < 0) {
		mproc__named_close(nm);
		free(nm);
		return rc;
	}
	h->named = nm;
	nm->unlink_on_last_close = (flags & MPROC_UNLINK_ON_LAST_CLOSE) != 0;
	slot_conn_init(h, nm->map, nm->len, max_payload, nbuf, stride, flags);
	*out = &h->base;
	return 0;
}

const struct mproc__transport mproc__slot_transport = {
	.name = "slot",
	.send = mproc__slot_send,
	.recv = mproc__slot_recv,
	.close = slot_close,
	.fd = mproc__slot_fd,
	.reserve = mproc__slot_reserve,
	.commit = mproc__slot_commit,
	.cancel = mproc__slot_cancel,
	.borrow = mproc__slot_borrow,
	.release = mproc__slot_release,
};
