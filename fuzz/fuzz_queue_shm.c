/*
 * fuzz_queue_shm.c - the queue's validation and receive path on a mapping
 * the fuzzer scribbles on, as if a peer wrote garbage into shared memory.
 *
 * Input: a byte choosing the ops, then patches of (u16 offset, u8 width,
 * value) applied to the mapping of a queue holding a few valid messages.
 * The two mutexes (the send lock and the receive lock, where
 * queue/layout.h puts them) are left alone (a scribbled lock word looks
 * like a held lock).
 * Every call must return 0 or a documented error; nothing may crash or
 * read out of bounds (ASan), and nothing may hang.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "mproc.h"
#include "queue/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The two locks' bytes in the mapping. */
static const size_t lock_off[2] = {
	offsetof(struct mproc__queue_shared, send.lock),
	offsetof(struct mproc__queue_shared, recv.lock),
};
static const size_t lock_len = sizeof(pthread_mutex_t);

static int allowed(int rc)
{
	return rc >= 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EMSGSIZE ||
	       rc == -ESHUTDOWN || rc == -ETIMEDOUT || rc == -ENOENT ||
	       rc == -EINVAL;
}

static int odd(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->size % 2 == 1 && (m->size == 0 || ((char *)m->data)[0] != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[600];
	mproc_msg out = { .request = MPROC_DO, .data = buf };
	mproc_queue_opts o = { 2048, 0, 256, 0 };
	mproc_conn *q, *view;
	mproc_stats st;
	mproc_msg m;
	size_t len, i;
	uint8_t *base, ops;
	int k;

	if (size < 1)
		return 0;
	ops = data[0];
	o.flags = (ops & 0x80) ? MPROC_QUEUE_MANUAL_DONE : 0;
	if (mproc_queue_open(&q, &o) != 0)
		abort();
	for (k = 0; k < 12; k++) {
		memset(buf, 'a' + k, sizeof(buf));
		out.request = MPROC_DO + k % 3;
		out.recipient = k % 2 ? getpid() : 0;
		out.size = (uint32_t)(k * 23) % 257;
		if (mproc_send_msg(q, &out, MPROC_NOWAIT) != 0)
			break;
		if (k % 4 == 3) { /* leave consumed holes and a moved head */
			memset(&m, 0, sizeof(m));
			m.data = buf;
			m.capacity = sizeof(buf);
			mproc_recv(q, &m, odd, NULL, MPROC_NOWAIT);
		}
	}
	base = mproc__queue_mapping(q, &len);
	if (len < MPROC__QUEUE_HDR)
		abort();
	for (i = 1; i + 4 <= size;) {
		size_t off = (size_t)data[i] | (size_t)data[i + 1] << 8;
		unsigned width = 1u << (data[i + 2] & 3); /* 1, 2, 4, 8 */
		uint64_t v = 0;

		i += 3;
		memcpy(&v, data + i, (size - i) < width ? size - i : width);
		i += width;
		off %= len;
		if (off + width > len ||
		    (off + width > lock_off[0] && off < lock_off[0] + lock_len) ||
		    (off + width > lock_off[1] && off < lock_off[1] + lock_len))
			continue;
		memcpy(base + off, &v, width);
	}
	/* The same mapping seen through a fresh handle: its identity is
	 * read from the scribbled header. */
	if (mproc__queue_attach(&view, base, len) != 0)
		view = NULL;
	for (k = 0; k < 8; k++) {
		mproc_conn *c = (view != NULL && (ops >> k) & 1) ? view : q;

		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = (k & 1) ? 8 : sizeof(buf);
		if (!allowed(mproc_recv(c, &m, (k & 2) ? odd : NULL, NULL,
		                        MPROC_NOWAIT)))
			abort();
		out.size = (uint32_t)k * 31;
		out.recipient = 0;
		if (!allowed(mproc_queue_stats(c, &st)) ||
		    !allowed(mproc_queue_empty(c)) ||
		    !allowed(mproc_queue_join(c, MPROC_NOWAIT)) ||
		    !allowed(mproc_queue_purge(c)) ||
		    !allowed(mproc_task_done(c)) ||
		    !allowed(mproc_send_msg(c, &out, MPROC_NOWAIT)))
			abort();
	}
	if (view != NULL)
		mproc_close(view);
	mproc_close(q);
	return 0;
}
