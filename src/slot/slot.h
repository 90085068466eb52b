/*
 * slot.h - what the slot's sources share: the process-local handle. The
 * shared layout and the protocol are in slot/layout.h.
 *
 * Files: open.c (open, create, attach, close), send.c (claim a buffer,
 * fill it, publish; reserve, commit, cancel), recv.c (pin, copy, the wait
 * for a newer value, borrow and release, the descriptor, stats).
 */
#ifndef MPROC_SLOT_SLOT_H
#define MPROC_SLOT_SLOT_H

#include <pthread.h>
#include <stdint.h>

#include "internal.h"
#include "shm/name.h"
#include "shm/poll.h"
#include "slot/layout.h"

/* A handle's reservation: none, being waited for, open. */
#define SLOT_RES_NONE 0
#define SLOT_RES_WAIT 1
#define SLOT_RES_OPEN 2

/* Sleepers look again this often (a waker may have died). */
#define SLOT_SLICE_MS 100

struct slot_conn {
	struct mproc_conn base;
	struct mproc__slot_shared *s;
	uint8_t *data;     /* the first buffer */
	size_t map_len;
	uint32_t max_payload; /* trusted copies of the geometry */
	uint32_t nbuf;
	uint64_t stride;
	uint32_t flags;
	uint64_t last;     /* the version this handle last returned (or
	                      rejected); copied by fork, as the contract says.
	                      Written under mu, read without it by the
	                      nothing-new look (slot_seen_all): atomic */
	pthread_mutex_t mu; /* threads of one process receive in turn; it
	                       also guards the borrow fields (taken by
	                       slot_lock, recv.c: not while the process has
	                       one thread) */
	uint32_t borrowed; /* buffer index + 1 lent by a borrow; 0: none */
	pid_t borrow_pid;  /* the process that borrowed (a forked copy of the
	                      handle has none) */
	pthread_mutex_t zmu; /* guards the reservation fields (never held
	                        while waiting) */
	int res_state;     /* SLOT_RES_* */
	uint32_t res_buf;  /* the claimed buffer, when SLOT_RES_OPEN */
	uint32_t res_size; /* the bytes reserved */
	pid_t res_pid;     /* the process that reserved */
	int reader;        /* this process's entry in readers[]; -1: none */
	pid_t reader_pid;  /* the process reader is for: stored (release)
	                      after reader, under mu; the nothing-new look
	                      reads it (acquire) without mu, then reader */
	struct mproc__poller poll;
	struct mproc__named *named; /* NULL: anonymous */
};

static inline struct slot_conn *slot_of(mproc_conn *c)
{
	return (struct slot_conn *)c;
}

static inline uint8_t *slot_buf_data(const struct slot_conn *h, uint32_t i)
{
	return h->data + (uint64_t)i * h->stride;
}

/* The identity fields still say what this handle was opened with. */
static inline int slot_check_identity(const struct slot_conn *h)
{
	const struct mproc__slot_shared *s = h->s;

	if (mproc__region_check(&s->hdr, h->map_len, MPROC__KIND_SLOT,
	                        MPROC__SLOT_LAYOUT, MPROC__SLOT_HDR) < 0 ||
	    __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED) != h->max_payload ||
	    __atomic_load_n(&s->nbuf, __ATOMIC_RELAXED) != h->nbuf ||
	    __atomic_load_n(&s->stride, __ATOMIC_RELAXED) != h->stride)
		return -EPROTO;
	return 0;
}

/* The slot whose predicate this thread is running. */
extern __thread const struct mproc__slot_shared *mproc__slot_in_callback;
/* Threads of this process running a slot predicate (recv.c). */
extern uint32_t mproc__slot_callbacks;

/*
 * Is this thread inside a predicate on s (a call on s would deadlock:
 * -EDEADLK)? While no thread of the process runs one, the count says no
 * with one plain load, and the __thread variable (a __tls_get_addr call
 * in a shared library) is not read. A thread in a predicate counted
 * itself before, so its own look always sees the count above 0.
 */
static inline int slot_in_callback(const struct mproc__slot_shared *s)
{
	return mproc__unlikely(__atomic_load_n(&mproc__slot_callbacks,
	                                       __ATOMIC_RELAXED) != 0) &&
	       mproc__slot_in_callback == s;
}

int mproc__slot_send(mproc_conn *c, const mproc_msg *m, int timeout_ms);
int mproc__slot_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                     void *arg, int timeout_ms);
int mproc__slot_fd(mproc_conn *c);
int mproc__slot_reserve(mproc_conn *c, size_t size, void **buf,
                        int timeout_ms);
int mproc__slot_commit(mproc_conn *c, int32_t request, pid_t recipient,
                       size_t size);
int mproc__slot_cancel(mproc_conn *c);
void mproc__slot_drop_reservation(struct slot_conn *h);
int mproc__slot_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                       void *arg, int timeout_ms);
int mproc__slot_release(mproc_conn *c, mproc_msg *m);

#endif /* MPROC_SLOT_SLOT_H */
