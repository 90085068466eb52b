/*
 * send.c - putting a message on the queue.
 *
 * A sender takes the send lock, checks for room (reading head only when
 * its cached view says no), writes its record past tail, where no receiver
 * looks, and publishes it with one commit that moves sent and tail (and
 * dtail, for a directed message). It never waits for a receiver's lock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

/*
 * mproc__queue_room: do len more bytes (a record, and a pad before it)
 * fit after the send side's words
 * p (send lock held)? Reads head only when the handle's last view of it
 * says no. Returns 1, 0, or -EPROTO.
 */
int mproc__queue_room(struct queue_conn *q, const uint64_t *p, uint64_t len)
{
	struct mproc__queue_shared *s = q->s;
	uint64_t tail = p[QP_TAIL], head = q->head_seen, gone;

	if (head > tail || tail - head + len > q->ring.cap) {
		head = ACQUIRE(&s->recv.w[QC_HEAD]);
		if (!queue_send_words_valid(q, p, head))
			return -EPROTO;
		q->head_seen = head;
		if (tail - head + len > q->ring.cap)
			return 0;
	}
	if (q->max_messages != 0) {
		/* Leased records count against the limit too (they may come
		 * back), so the count only falls as receivers move gone. */
		gone = ACQUIRE(&s->recv.w[QC_GONE]);
		if (gone > p[QP_SENT])
			return -EPROTO;
		if (p[QP_SENT] - gone >= q->max_messages)
			return 0;
	}
	return 1;
}

int mproc__queue_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct queue_conn *q = queue_of(c);
	struct mproc__queue_shared *s = q->s;
	struct mproc__side *sd = &s->send;
	struct mproc__deadline d;
	uint64_t p[QP_WORDS], np[QP_WORDS];
	struct mproc__rec r;
	uint64_t len, pad;
	int rc;

	if (m->size > q->max_payload)
		return -EMSGSIZE;
	if (mproc__unlikely(mproc__queue_in_callback == s))
		return -EDEADLK;
	/* This thread holds the send lock for its reservation. */
	if (mproc__unlikely(q->rsv_state != 0) && mproc__queue_rsv_mine(q))
		return -EBUSY;
	len = mproc__rec_len(m->size);
	memset(&r, 0, sizeof(r));
	r.magic = MPROC__REC_MAGIC;
	r.len = (uint32_t)len;
	r.request = m->request;
	r.sender = m->sender != 0 ? m->sender : mproc__self_pid();
	r.recipient = m->recipient;
	r.size = m->size;
	/* Directed mail carries its send time, so a later process that
	 * reuses the recipient's pid can tell it was not meant for it. */
	r.sent_ns = 0;
	if (m->recipient > 0) {
		r.sent_ns = mproc__boottime_ns();
		mproc__proc_reserve(); /* its orphan checks need /proc */
	}
	mproc__deadline_set(&d, timeout_ms);

	if ((rc = queue_take_room(q, &d, timeout_ms, len, 0, p, &pad)) < 0)
		return rc;

	/* Room at tail: write the record where nobody reads, then commit. */
	r.id = p[QP_SENT];
	mproc__ring_copy_in(&q->ring, p[QP_TAIL], &r, MPROC__REC_HDR);
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			mproc__ring_copy_in(&q->ring, p[QP_TAIL] + MPROC__REC_HDR,
			                    m->data, m->size / 2);
			mproc__crash(MPROC__CRASH_SEND_COPY);
		}
		mproc__ring_copy_in(&q->ring, p[QP_TAIL] + MPROC__REC_HDR,
		                    m->data, m->size);
	}
	np[QP_SENT] = p[QP_SENT] + 1;
	np[QP_TAIL] = p[QP_TAIL] + len;
	np[QP_DTAIL] = m->recipient > 0 ? np[QP_TAIL] : p[QP_DTAIL];
	rc = queue_commit(q, sd, QP_WORDS, p, np, NULL,
	                  MPROC__CRASH_SEND_COMMIT);
	queue_unlock_wake(q, sd, rc == 0 ? WAKE_DATA : 0,
	                  queue_data_bits(r.recipient), NULL);
	queue_poll_after_send(q);
	return rc;
}
