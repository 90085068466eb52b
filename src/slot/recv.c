/*
 * recv.c - reading the slot's latest value: pin the published buffer,
 * copy it out, unpin (the protocol is in slot/layout.h); the wait for a
 * newer value; borrow (the same without the copy, the pin kept until the
 * release); the descriptor; stats.
 *
 * Each handle remembers the version it last returned (or that its
 * predicate rejected): a receive returns the published value only if its
 * version is newer, else it waits for a publish. Values published in
 * between are never seen by this handle (coalescing).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/futex.h"
#include "slot/slot.h"

#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h> /* glibc 2.32 and later */
#define SLOT_ONE_THREAD() (__libc_single_threaded != 0)
#endif
#endif
#ifndef SLOT_ONE_THREAD
#define SLOT_ONE_THREAD() 0
#endif

__thread const struct mproc__slot_shared *mproc__slot_in_callback;
uint32_t mproc__slot_callbacks;

/* A slot is never shut down: the spin's stop word. */
static const uint32_t slot_never;

/* Claim this process's reader entry for h. -EUSERS: none free. Once per
 * handle and process: kept out of line, off the receive's path. */
__attribute__((noinline, cold)) static int
slot_reader_claim(struct slot_conn *h, pid_t me)
{
	struct mproc__slot_shared *s = h->s;
	struct mproc__live lc;
	int pass;

	mproc__live_init(&lc);
	for (pass = 0; pass < 2; pass++) {
		for (int i = 0; i < MPROC__SLOT_READERS; i++) {
			struct mproc__slot_reader *e = &s->readers[i];
			int32_t p = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);
			uint64_t ps = __atomic_load_n(&e->start_ns,
			                              __ATOMIC_RELAXED);

			if (p != 0 &&
			    (pass == 0 || mproc__live_gone(&lc, p, ps) == 0))
				continue;
			/* A dead reader's entry: its start first, as for a
			 * writer's buffer (slot_claim in send.c). */
			if (p != 0 &&
			    !__atomic_compare_exchange_n(&e->start_ns, &ps,
			                                 MPROC__SLOT_NO_START, 0,
			                                 __ATOMIC_SEQ_CST,
			                                 __ATOMIC_RELAXED))
				continue;
			if (!__atomic_compare_exchange_n(&e->pid, &p, me, 0,
			                                 __ATOMIC_SEQ_CST,
			                                 __ATOMIC_RELAXED))
				continue;
			__atomic_store_n(&e->pin, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&e->borrow, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&e->waiting, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&e->start_ns, mproc__self_start_ns(),
			                 __ATOMIC_RELEASE);
			/* Before any pin of this entry: writers scan to hwm. */
			for (uint32_t hw = __atomic_load_n(&s->readers_hwm,
			                                   __ATOMIC_SEQ_CST);
			     hw < (uint32_t)i + 1 &&
			     !__atomic_compare_exchange_n(&s->readers_hwm, &hw,
			                                  (uint32_t)i + 1, 0,
			                                  __ATOMIC_SEQ_CST,
			                                  __ATOMIC_SEQ_CST);)
				;
			h->reader = i;
			/* reader before its pid: see slot_seen_all. */
			__atomic_store_n(&h->reader_pid, me, __ATOMIC_RELEASE);
			return i;
		}
	}
	return -EUSERS;
}

/* This process's reader entry, claimed on first use. -EUSERS: none free.
 * Under slot_lock. */
static inline int slot_reader(struct slot_conn *h)
{
	pid_t me = mproc__self_pid();

	if (mproc__likely(h->reader >= 0 && h->reader_pid == me))
		return h->reader;
	return slot_reader_claim(h, me);
}

/*
 * slot_lock takes the handle's mutex, unless the process has one thread
 * and no predicate is to run under it: then no other thread can hold it
 * or come in (the variable turns false before a thread starts, in the
 * thread that starts it, and only a predicate could do that inside the
 * section). 1: taken, give it to slot_unlock.
 */
static inline int slot_lock(struct slot_conn *h, mproc_match_fn match)
{
	if (match == NULL && SLOT_ONE_THREAD())
		return 0;
	pthread_mutex_lock(&h->mu);
	return 1;
}

static inline void slot_unlock(struct slot_conn *h, int locked)
{
	if (locked)
		pthread_mutex_unlock(&h->mu);
}

/*
 * slot_seen_all: the look before the mutex, one acquire load of the
 * published word as a seqlock reader makes. 1 when this process has its
 * entry in h already (*e set) and the published version is not newer
 * than the last h returned (*seen: the word looked at): nothing for this
 * handle. 0: take the mutex and look (slot_try). h->last only grows, and
 * a version at or below it was returned (or rejected) by this handle
 * when it was the published one; so even next to another thread's
 * receive on h the answer is one the mutex would have given at some
 * instant of the call, and a stale h->last only sends the caller to the
 * mutex. Without an entry the mutex is taken, for its -EUSERS.
 */
static inline int slot_seen_all(struct slot_conn *h,
                                struct mproc__slot_reader **e, uint64_t *seen)
{
	uint64_t cur = __atomic_load_n(&h->s->cur, __ATOMIC_ACQUIRE);

	if (SLOT_CUR_VERSION(cur) > __atomic_load_n(&h->last, __ATOMIC_RELAXED))
		return 0;
	/* The pid (acquire) before reader: see slot_reader. */
	if (__atomic_load_n(&h->reader_pid, __ATOMIC_ACQUIRE) !=
	    mproc__self_pid())
		return 0;
	*e = &h->s->readers[h->reader];
	*seen = cur;
	return 1;
}

/*
 * slot_try: one look at the published value. Returns 0 (taken into m),
 * 1 (nothing newer than h->last; *seen the word looked at), or a negative
 * errno. With lend, the value is not copied: the entry's borrow pin stays
 * on its buffer and m->data points at it. Under slot_lock.
 */
static int slot_try(struct slot_conn *h, struct mproc__slot_reader *e,
                    mproc_msg *m, mproc_match_fn match, void *arg,
                    uint64_t *seen, int lend)
{
	uint32_t *pin = lend ? &e->borrow : &e->pin;
	struct mproc__slot_shared *s = h->s;
	const struct mproc__slot_buf *b;
	uint64_t cur, ver;
	uint32_t i, size;
	const uint8_t *src;
	int rc = 0;

	for (;;) {
		cur = __atomic_load_n(&s->cur, __ATOMIC_ACQUIRE);
		*seen = cur;
		ver = SLOT_CUR_VERSION(cur);
		if (ver <= h->last)
			return 1;
		i = SLOT_CUR_INDEX(cur);
		if (i >= h->nbuf)
			return -EPROTO;
		/* Pin, then check the word did not move (see layout.h). */
		__atomic_store_n(pin, i + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&s->cur, __ATOMIC_SEQ_CST) == cur)
			break;
		__atomic_store_n(pin, 0, __ATOMIC_RELEASE);
	}
	b = &s->buf[i];
	src = slot_buf_data(h, i);
	size = __atomic_load_n(&b->size, __ATOMIC_RELAXED);
	if (size > h->max_payload) {
		rc = -EPROTO;
		goto out;
	}
	if (match != NULL) {
		mproc_msg view;

		memset(&view, 0, sizeof(view));
		view.request = b->request;
		view.sender = b->sender;
		view.recipient = b->recipient;
		view.size = view.capacity = size;
		view.data = (void *)src;
		/* Counted first: see slot_in_callback in slot.h. */
		__atomic_add_fetch(&mproc__slot_callbacks, 1, __ATOMIC_RELAXED);
		mproc__slot_in_callback = s;
		rc = match(&view, arg);
		mproc__slot_in_callback = NULL;
		__atomic_sub_fetch(&mproc__slot_callbacks, 1, __ATOMIC_RELAXED);
		if (!rc) {
			/* a value match rejects counts as seen */
			__atomic_store_n(&h->last, ver, __ATOMIC_RELAXED);
			rc = 1;
			goto out;
		}
		rc = 0;
	}
	if (lend) {
		/* The pin stays: the buffer is the caller's to read until
		 * the release, and no writer takes it meanwhile. */
		m->request = b->request;
		m->sender = b->sender;
		m->recipient = b->recipient;
		m->size = size;
		m->data = (void *)src;
		__atomic_store_n(&h->last, ver, __ATOMIC_RELAXED);
		h->borrowed = i + 1;
		h->borrow_pid = mproc__self_pid();
		return 0;
	}
	if (size > m->capacity) {
		m->size = size; /* the value stays for the next receive */
		rc = -EMSGSIZE;
		goto out;
	}
	if (size > 0) {
		if (mproc__unlikely(mproc__crash_point == MPROC__CRASH_RECV_COPY)) {
			memcpy(m->data, src, size / 2);
			mproc__crash(MPROC__CRASH_RECV_COPY);
		}
		memcpy(m->data, src, size);
	}
	m->request = b->request;
	m->sender = b->sender;
	m->recipient = b->recipient;
	m->size = size;
	__atomic_store_n(&h->last, ver, __ATOMIC_RELAXED);
out:
	__atomic_store_n(pin, 0, __ATOMIC_RELEASE);
	return rc;
}

/* Does this process hold a borrow on h? Under slot_lock. */
static int slot_lending(const struct slot_conn *h)
{
	return h->borrowed != 0 && h->borrow_pid == mproc__self_pid() &&
	       h->reader >= 0 && h->reader_pid == h->borrow_pid;
}

/*
 * slot_wait: the receive after the checks (slot_get): look under the
 * mutex, then spin, then sleep, until a value is taken or the timeout.
 * fresh: slot_seen_all has just said there is something new.
 */
static int slot_wait(struct slot_conn *h, mproc_msg *m, mproc_match_fn match,
                     void *arg, int timeout_ms, int lend, int fresh)
{
	struct mproc__slot_shared *s = h->s;
	struct mproc__slot_reader *e = NULL;
	struct mproc__deadline d;
	uint64_t seen;
	uint32_t v;
	int rc, locked, spun = 0;

	/* MPROC_NOWAIT returns after one look, before any use of d. */
	if (timeout_ms != MPROC_NOWAIT)
		mproc__deadline_set(&d, timeout_ms);
	for (;;) {
		if (lend || fresh || !slot_seen_all(h, &e, &seen)) {
			fresh = 0;
			locked = slot_lock(h, match);
			if (lend && slot_lending(h))
				rc = -EBUSY;
			else if ((rc = slot_reader(h)) >= 0) {
				e = &s->readers[rc];
				rc = slot_try(h, e, m, match, arg, &seen, lend);
			}
			slot_unlock(h, locked);
			if (rc <= 0)
				return rc;
		}
		if (timeout_ms == MPROC_NOWAIT)
			return -EAGAIN;
		if (!d.forever && mproc__deadline_ns(&d) <= 0)
			return -ETIMEDOUT;
		if (!spun) {
			mproc__deadline_arm(&d);
			mproc__spin(&s->cur, seen, &slot_never);
			spun = 1;
			continue;
		}
		spun = 0;
		mproc__deadline_arm(&d);
		v = mproc__sleep_prepare(&s->recv_waiting, &s->data_seq,
		                         MPROC__FUTEX_ALL);
		if (__atomic_load_n(&s->cur, __ATOMIC_SEQ_CST) != seen)
			continue;
		__atomic_store_n(&e->waiting, 1, __ATOMIC_RELAXED);
		rc = mproc__sleep(&s->data_seq, v, &d, SLOT_SLICE_MS,
		                  MPROC__FUTEX_ALL);
		__atomic_store_n(&e->waiting, 0, __ATOMIC_RELAXED);
		if (rc < 0 && __atomic_load_n(&s->cur, __ATOMIC_SEQ_CST) == seen)
			return rc;
	}
}

/*
 * slot_get: the checks, then the look for nothing new that takes no lock
 * (a reader polling with MPROC_NOWAIT and finding nothing returns here,
 * inlined into its entry point); else slot_wait.
 */
static inline int slot_get(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                           void *arg, int timeout_ms, int lend)
{
	struct slot_conn *h = slot_of(c);
	struct mproc__slot_shared *s = h->s;
	struct mproc__slot_reader *e;
	uint64_t seen;

	if (slot_in_callback(s))
		return -EDEADLK;
	if (slot_check_identity(h) < 0)
		return -EPROTO;
	mproc__poll_before_recv(&s->poll, &h->poll);
	/* A borrow looks under the mutex, for its -EBUSY. */
	if (lend || timeout_ms != MPROC_NOWAIT)
		return slot_wait(h, m, match, arg, timeout_ms, lend, 0);
	if (slot_seen_all(h, &e, &seen))
		return -EAGAIN;
	return slot_wait(h, m, match, arg, timeout_ms, lend, 1);
}

int mproc__slot_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                     void *arg, int timeout_ms)
{
	return slot_get(c, m, match, arg, timeout_ms, 0);
}

/*
 * Zero-copy: a borrow is a receive whose pin (the entry's borrow word)
 * outlives the call; writers write into the other buffers meanwhile.
 */
int mproc__slot_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                       void *arg, int timeout_ms)
{
	return slot_get(c, m, match, arg, timeout_ms, 1);
}

int mproc__slot_release(mproc_conn *c, mproc_msg *m)
{
	struct slot_conn *h = slot_of(c);
	struct mproc__slot_shared *s = h->s;
	int rc = 0, locked;

	if (slot_in_callback(s))
		return -EDEADLK;
	locked = slot_lock(h, NULL);
	if (!slot_lending(h) || h->borrowed > h->nbuf ||
	    m->data != (void *)slot_buf_data(h, h->borrowed - 1)) {
		rc = -EINVAL;
	} else {
		__atomic_store_n(&s->readers[h->reader].borrow, 0,
		                 __ATOMIC_RELEASE);
		h->borrowed = 0;
	}
	slot_unlock(h, locked);
	return rc;
}

int mproc__slot_fd(mproc_conn *c)
{
	struct slot_conn *h = slot_of(c);

	if (slot_check_identity(h) < 0)
		return -EPROTO;
	return mproc__poller_fd(&h->s->poll, &h->poll);
}

int mproc__slot_stats(mproc_conn *c, mproc_slot_counts *st)
{
	struct slot_conn *h = slot_of(c);
	struct mproc__slot_shared *s = h->s;
	struct mproc__live lc;
	uint64_t cur;
	uint32_t i;

	if (slot_check_identity(h) < 0)
		return -EPROTO;
	memset(st, 0, sizeof(*st));
	cur = __atomic_load_n(&s->cur, __ATOMIC_ACQUIRE);
	i = SLOT_CUR_INDEX(cur);
	if (i >= h->nbuf)
		return -EPROTO;
	st->version = SLOT_CUR_VERSION(cur);
	st->seen = __atomic_load_n(&h->last, __ATOMIC_RELAXED);
	st->size = __atomic_load_n(&s->buf[i].size, __ATOMIC_RELAXED);
	st->max_payload = h->max_payload;
	st->buffers = h->nbuf;
	st->recoveries = __atomic_load_n(&s->recoveries, __ATOMIC_RELAXED);
	mproc__live_init(&lc);
	for (int k = 0; k < MPROC__SLOT_READERS; k++) {
		const struct mproc__slot_reader *e = &s->readers[k];
		int32_t pid = __atomic_load_n(&e->pid, __ATOMIC_ACQUIRE);

		if (pid == 0 ||
		    mproc__live_gone(&lc, pid,
		                     __atomic_load_n(&e->start_ns,
		                                     __ATOMIC_RELAXED)))
			continue;
		st->readers++;
		if (__atomic_load_n(&e->waiting, __ATOMIC_RELAXED))
			st->readers_waiting++;
	}
	return 0;
}
