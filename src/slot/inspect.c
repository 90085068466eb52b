/*
 * inspect.c - a slot's figures for the inspector (mproc-stat), from a
 * mapping it may only read: nothing is written (no pin, no reader entry),
 * nothing waited for, and a corrupt mapping gives -EPROTO, never a crash:
 * every index read from the mapping is checked before it is used.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/futex.h"
#include "internal.h"
#include "slot/layout.h"

#define INSPECT_TRIES 1000
#define INSPECT_FLAGS (MPROC_UNLINK_ON_LAST_CLOSE)

/* The geometry, each field read once and checked against len (as
 * attach does). */
static int slot_inspect_geometry(const struct mproc__slot_shared *s,
                                 size_t len, struct mproc__slot_figures *out)
{
	uint64_t stride, want;

	if (len < MPROC__SLOT_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_SLOT,
	                        MPROC__SLOT_LAYOUT, MPROC__SLOT_HDR) < 0)
		return -EPROTO;
	out->max_payload = __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED);
	out->buffers = __atomic_load_n(&s->nbuf, __ATOMIC_RELAXED);
	out->flags = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);
	stride = __atomic_load_n(&s->stride, __ATOMIC_RELAXED);
	want = ((uint64_t)out->max_payload + 63u) & ~(uint64_t)63u;
	if (want == 0)
		want = 64;
	if (out->max_payload > MPROC_SLOT_MAX_PAYLOAD ||
	    out->buffers != (out->max_payload > MPROC__SLOT_BIG
	                             ? MPROC__SLOT_BUFS_BIG
	                             : MPROC__SLOT_BUFS) ||
	    stride != want || MPROC__SLOT_HDR + stride * out->buffers != len ||
	    (out->flags & ~(uint32_t)INSPECT_FLAGS) != 0)
		return -EPROTO;
	return 0;
}

int mproc__slot_inspect(const void *map, size_t len,
                        struct mproc__slot_figures *out)
{
	const struct mproc__slot_shared *s = map;
	const struct mproc__slot_buf *b;
	struct mproc__live lc;
	uint64_t cur, again;
	uint32_t i;
	int tries;

	memset(out, 0, sizeof(*out));
	if (slot_inspect_geometry(s, len, out) < 0)
		return -EPROTO;
	/* The current value's fields, read while cur names it: the buffer
	 * is nobody's to fill meanwhile (a writer claims none that cur
	 * names), so a second equal cur means they were one value's. */
	for (tries = 0;; tries++) {
		cur = __atomic_load_n(&s->cur, __ATOMIC_ACQUIRE);
		i = SLOT_CUR_INDEX(cur);
		if (i >= out->buffers)
			return -EPROTO;
		b = &s->buf[i];
		out->size = __atomic_load_n(&b->size, __ATOMIC_RELAXED);
		out->request = __atomic_load_n(&b->request, __ATOMIC_RELAXED);
		out->sender = __atomic_load_n(&b->sender, __ATOMIC_RELAXED);
		out->recipient = __atomic_load_n(&b->recipient, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		again = __atomic_load_n(&s->cur, __ATOMIC_RELAXED);
		if (again == cur || tries == INSPECT_TRIES)
			break;
		mproc__pause();
	}
	out->version = SLOT_CUR_VERSION(cur);
	if (out->version == 0) {
		/* No value yet: the fields are a fresh mapping's zeroes. */
		out->size = 0;
		out->request = out->sender = out->recipient = 0;
	} else if (out->size > out->max_payload) {
		return -EPROTO; /* a receive would say so too */
	}
	out->recoveries = __atomic_load_n(&s->recoveries, __ATOMIC_RELAXED);
	mproc__live_init(&lc);
	for (int k = 0; k < MPROC__SLOT_READERS; k++) {
		const struct mproc__slot_reader *e = &s->readers[k];
		int32_t pid = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);
		uint32_t pin;

		if (pid <= 0 ||
		    mproc__live_gone(&lc, pid,
		                     __atomic_load_n(&e->start_ns,
		                                     __ATOMIC_RELAXED)))
			continue;
		out->readers++;
		if (__atomic_load_n(&e->waiting, __ATOMIC_RELAXED))
			out->readers_waiting++;
		pin = __atomic_load_n(&e->pin, __ATOMIC_RELAXED);
		if (pin != 0 && pin <= out->buffers)
			out->pinned++;
		pin = __atomic_load_n(&e->borrow, __ATOMIC_RELAXED);
		if (pin != 0 && pin <= out->buffers)
			out->borrowed++;
	}
	for (uint32_t k = 0; k < out->buffers; k++) {
		int32_t w = __atomic_load_n(&s->buf[k].writer, __ATOMIC_ACQUIRE);

		if (w > 0 &&
		    !mproc__live_gone(&lc, w,
		                      __atomic_load_n(&s->buf[k].writer_start,
		                                      __ATOMIC_RELAXED)))
			out->writing++;
	}
	for (int k = 0; k < MPROC__POLLERS; k++)
		out->pollers += __atomic_load_n(&s->poll.table.slot[k].pid,
		                                __ATOMIC_RELAXED) != 0;
	return 0;
}
