/*
 * send.c - the send lock (and its repair after a writer that died holding
 * it), making room, appending a record (see bus/layout.h).
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "bus/bus.h"

/* Roll a pending journal forward and check the words and the records
 * they cover. Lock held. */
static int bus_repair(struct bus_conn *b)
{
	struct mproc__side *sd = &b->s->send;
	struct mproc__rec r;
	uint64_t p[MPROC__SIDE_WORDS], off;

	if (mproc__journal_pending(sd)) {
		if (mproc__journal_overlay(sd, BP_WORDS, p) < 0 ||
		    sd->journal.mark.off != UINT64_MAX || !bus_words_valid(b, p))
			return -EPROTO;
		mproc__words_store(sd, p, BP_WORDS);
		mproc__journal_close(sd);
	}
	mproc__words_load(sd, p, BP_WORDS);
	if (!bus_words_valid(b, p))
		return -EPROTO;
	for (off = p[BP_HEAD]; off < p[BP_TAIL]; off += r.len)
		if (mproc__rec_read(&b->ring, off, p[BP_TAIL], b->max_payload,
		                    &r) < 0)
			return -EPROTO;
	__atomic_add_fetch(&sd->recoveries, 1, __ATOMIC_RELAXED);
	return 0;
}

static int bus_repair_arg(void *arg)
{
	return bus_repair(arg);
}

int mproc__bus_lock(struct bus_conn *b, const struct mproc__deadline *d)
{
	struct mproc__side *sd = &b->s->send;
	int rc;

	if (mproc__unlikely(bus_check_identity(b) < 0) ||
	    mproc__unlikely(mproc__lock_kind_of(&sd->lock) != mproc__lock_kind()))
		return -EPROTO; /* a scribbled mutex type crashes glibc */
	rc = pthread_mutex_trylock(&sd->lock);
	if (mproc__likely(rc == 0) && mproc__likely(!mproc__journal_pending(sd))) {
		mproc__crash(MPROC__CRASH_LOCKED);
		return 0;
	}
	return mproc__side_lock(sd, d, rc, bus_repair_arg, b);
}

int mproc__bus_words(struct bus_conn *b, uint64_t *p)
{
	uint32_t seq;

	struct mproc__deadline d;
	int rc;

	for (int i = 0; i < 64; i++) {
		if (mproc__side_snapshot(&b->s->send, BP_WORDS, p, &seq) == 0)
			return bus_words_valid(b, p) ? 0 : -EPROTO;
		mproc__pause();
	}
	/* Busy writers keep moving them: read them under the lock (which
	 * also repairs after a writer that died mid-commit). */
	mproc__deadline_set(&d, BUS_LOCK_MS);
	if ((rc = mproc__bus_lock(b, &d)) < 0)
		return rc;
	mproc__words_load(&b->s->send, p, BP_WORDS);
	mproc__unlock(&b->s->send.lock);
	return bus_words_valid(b, p) ? 0 : -EPROTO;
}

/*
 * bus_room: the head that leaves len bytes free after p's tail (*np), and
 * its id. Default mode: the slowest live reader's cursor bounds it; a
 * reader found dead while it does is taken back. Returns 1 (room), 0
 * (wait for a reader), or -EPROTO. Lock held.
 */
static int bus_room(struct bus_conn *b, const uint64_t *p, uint64_t len,
                    uint64_t *np)
{
	uint64_t tail = p[BP_TAIL], head = p[BP_HEAD], id = p[BP_HEAD_ID];
	struct mproc__rec r;
	uint64_t want;

	if (tail - head + len <= b->ring.cap) {
		np[BP_HEAD] = head;
		np[BP_HEAD_ID] = id;
		return 1;
	}
	want = tail + len - b->ring.cap; /* head must reach this */
	if (!(b->flags & MPROC_BUS_OVERWRITE)) {
		struct mproc__live lc;
		uint64_t min = tail;

		mproc__live_init(&lc);
		for (uint32_t i = 0; i < b->max_readers; i++) {
			struct mproc__bus_reader *e = &b->readers[i];
			int32_t pid = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);
			uint64_t cur;

			if (pid == 0)
				continue;
			cur = __atomic_load_n(&e->cursor, __ATOMIC_ACQUIRE);
			if (cur < want &&
			    mproc__live_gone(&lc, pid,
			                     __atomic_load_n(&e->start_ns,
			                                     __ATOMIC_RELAXED))) {
				/* Writers never stall on a dead reader. */
				__atomic_store_n(&e->pid, 0, __ATOMIC_RELEASE);
				__atomic_add_fetch(&b->s->reclaimed, 1,
				                   __ATOMIC_RELAXED);
				continue;
			}
			if (cur < head || cur > tail || cur % 8 != 0)
				continue; /* a scribbled cursor holds nothing */
			if (cur < min)
				min = cur;
		}
		if (min < want)
			want = min; /* as far as the slowest reader allows */
	}
	/* Walk records from head to the first boundary at or past want. */
	while (head < want) {
		if (mproc__rec_read(&b->ring, head, tail, b->max_payload, &r) < 0)
			return -EPROTO;
		head += r.len;
		id++;
	}
	np[BP_HEAD] = head;
	np[BP_HEAD_ID] = id;
	return tail - head + len <= b->ring.cap;
}

int mproc__bus_send(mproc_conn *c, const mproc_msg *m, int timeout_ms)
{
	struct bus_conn *b = bus_of(c);
	struct mproc__bus_shared *s = b->s;
	struct mproc__side *sd = &s->send;
	uint64_t p[BP_WORDS], np[BP_WORDS], len, tail_seen;
	struct mproc__deadline d;
	struct mproc__rec r;
	uint32_t v;
	int rc;

	if (m->size > b->max_payload)
		return -EMSGSIZE;
	if (mproc__unlikely(mproc__bus_in_callback == s))
		return -EDEADLK;
	len = mproc__rec_len(m->size);
	memset(&r, 0, sizeof(r));
	r.magic = MPROC__REC_MAGIC;
	r.len = (uint32_t)len;
	r.request = m->request;
	r.sender = m->sender != 0 ? m->sender : mproc__self_pid();
	r.recipient = m->recipient;
	r.size = m->size;
	mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if ((rc = mproc__bus_lock(b, &d)) < 0)
			return rc;
		mproc__words_load(sd, p, BP_WORDS);
		if (!bus_words_valid(b, p)) {
			mproc__unlock(&sd->lock);
			return -EPROTO;
		}
		memcpy(np, p, sizeof(np));
		if ((rc = bus_room(b, p, len, np)) != 0)
			break;
		/* Full: wait for the slowest reader to move on. */
		if (!d.forever && mproc__deadline_ns(&d) <= 0) {
			mproc__unlock(&sd->lock);
			return timeout_ms == MPROC_NOWAIT ? -EAGAIN : -ETIMEDOUT;
		}
		mproc__deadline_arm(&d);
		v = mproc__sleep_prepare(&s->send_waiting, &s->space_seq,
		                         MPROC__FUTEX_ALL);
		mproc__unlock(&sd->lock);
		rc = mproc__sleep(&s->space_seq, v, &d, 10, MPROC__FUTEX_ALL);
		MPROC__UNUSED(rc); /* look again, the deadline is checked above */
	}
	if (rc < 0) {
		mproc__unlock(&sd->lock);
		return rc;
	}
	/* Head first: a reader overrun on the freed bytes sees it moved. */
	if (np[BP_HEAD] != p[BP_HEAD]) {
		rc = mproc__side_commit(&b->ring, sd, BP_WORDS, p, np, NULL,
		                        MPROC__CRASH_SEND_COMMIT);
		if (rc < 0) {
			mproc__unlock(&sd->lock);
			return rc;
		}
		memcpy(p, np, sizeof(p));
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	r.id = p[BP_SENT];
	mproc__ring_copy_in(&b->ring, p[BP_TAIL], &r, MPROC__REC_HDR);
	if (m->size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_SEND_COPY)) {
			mproc__ring_copy_in(&b->ring, p[BP_TAIL] + MPROC__REC_HDR,
			                    m->data, m->size / 2);
			mproc__crash(MPROC__CRASH_SEND_COPY);
		}
		mproc__ring_copy_in(&b->ring, p[BP_TAIL] + MPROC__REC_HDR, m->data,
		                    m->size);
	}
	np[BP_SENT] = p[BP_SENT] + 1;
	np[BP_TAIL] = tail_seen = p[BP_TAIL] + len;
	rc = mproc__side_commit(&b->ring, sd, BP_WORDS, p, np, NULL,
	                        MPROC__CRASH_SEND_COMMIT);
	mproc__unlock(&sd->lock);
	MPROC__UNUSED(tail_seen);
	if (rc == 0) {
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		mproc__wake_bits(&s->recv_waiting, &s->data_seq,
		                 MPROC__FUTEX_ALL);
		mproc__poll_after_send(&s->poll, &b->poll);
	}
	return rc;
}
