/*
 * inspect.c - a queue's figures for the inspector (mproc-stat), from a
 * mapping it may only read: no lock is taken and nothing is written, so a
 * dead or stopped holder of either lock holds nothing up, and a corrupt
 * mapping gives -EPROTO, never a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

#define INSPECT_TRIES 1000

int mproc__queue_inspect(const void *map, size_t len,
                         struct mproc__queue_figures *out)
{
	const struct mproc__queue_shared *s = map;
	struct queue_conn q;
	struct queue_view v;
	uint64_t p[QP_WORDS];
	uint8_t scratch[1];
	int i, orphans;

	memset(out, 0, sizeof(*out));
	memset(&q, 0, sizeof(q));
	if (len < MPROC__QUEUE_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_QUEUE,
	                        MPROC__QUEUE_LAYOUT, MPROC__QUEUE_HDR) < 0)
		return -EPROTO;
	q.s = (struct mproc__queue_shared *)s; /* read only from here on */
	q.map_len = len;
	q.max_payload = LOAD(&s->max_payload);
	q.max_messages = LOAD(&s->max_messages);
	q.flags = LOAD(&s->flags);
	q.scratch = scratch;
	if (LOAD(&s->capacity) != len - MPROC__QUEUE_HDR ||
	    LOAD(&s->capacity) % 8 != 0 || LOAD(&s->capacity) == 0)
		return -EPROTO;
	mproc__ring_init(&q.ring, (uint8_t *)map + MPROC__QUEUE_HDR,
	                 LOAD(&s->capacity));
	out->pending = mproc__journal_pending(&s->send) ||
	               mproc__journal_pending(&s->recv);
	memset(&v, 0, sizeof(v));
	for (i = 0; i < INSPECT_TRIES; i++) {
		/* A side whose live holder stopped mid-commit: what that
		 * commit leaves (see stats.c). */
		int a = mproc__side_snapshot(&s->recv, QC_WORDS, v.w, NULL);
		int b = mproc__side_snapshot(&s->send, QP_WORDS, p, NULL);

		if (a < 0 && i >= INSPECT_TRIES / 2)
			a = mproc__side_pending_snapshot(&s->recv, QC_WORDS,
			                                 v.w, NULL);
		if (b < 0 && i >= INSPECT_TRIES / 2)
			b = mproc__side_pending_snapshot(&s->send, QP_WORDS, p,
			                                 NULL);

		if (a == 0 && b == 0) {
			out->consistent = 1;
			break;
		}
		mproc__pause();
	}
	if (!out->consistent) {
		/* A side mid-commit for good (its writer died or stopped
		 * there): the words as they stand. */
		mproc__words_load(&s->recv, v.w, QC_WORDS);
		mproc__words_load(&s->send, p, QP_WORDS);
	}
	v.sent = p[QP_SENT];
	v.tail = p[QP_TAIL];
	v.dtail = p[QP_DTAIL] <= p[QP_TAIL] ? p[QP_DTAIL] : p[QP_TAIL];
	if (!queue_view_valid(&q, &v))
		return -EPROTO;
	out->st.queued = queue_queued(&v);
	out->st.bytes = v.tail - v.w[QC_HEAD];
	out->st.unfinished = queue_unfinished(&v);
	if (q.flags & MPROC_QUEUE_MANUAL_DONE) {
		struct queue_dead_takers dead;

		out->st.unfinished += mproc__queue_takers_sum(&q, &dead);
	}
	out->st.sent = v.sent;
	out->st.received = v.w[QC_RECEIVED];
	out->st.recoveries = LOAD(&s->send.recoveries) +
	                     LOAD(&s->recv.recoveries);
	out->st.purged = v.w[QC_PURGED];
	out->st.capacity = q.ring.cap;
	out->st.max_payload = q.max_payload;
	out->max_messages = q.max_messages;
	out->flags = q.flags;
	out->shutdown = LOAD(&s->shutdown) != 0;
	for (i = 0; i < MPROC__QUEUE_POLLERS; i++)
		out->pollers += LOAD(&s->poll.slot[i].pid) != 0;
	orphans = mproc__queue_count_orphans(&q, &v);
	if (orphans < 0)
		return -EPROTO;
	out->st.orphans = (uint64_t)orphans;
	return 0;
}
