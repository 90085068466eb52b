/*
 * poll.h - the descriptor (mproc_fd) of every shared kind: queue, bus and
 * slot (src/shm/poll.c). Readable when something was sent since the
 * handle's last receive began, and from the start.
 *
 * A mapping holds two things for it: the armed mask (a word senders load
 * after every send: the queue keeps it in its futex line, which senders
 * read anyway; a bus or a slot next to the table, struct
 * mproc__poll_shared) and the table (struct mproc__poll_table: an id that
 * names the sockets and 64 poller slots {pid, generation, start}).
 * A handle asking for a descriptor claims a slot (a free one, or one whose
 * process is gone) and binds a datagram socket in the abstract namespace
 * named after id, slot and generation (so a reused slot never gets its
 * predecessor's wakes). A receive drains the socket and sets its bit in
 * armed; a sender that finds bits set takes them all (one exchange) and
 * sends each of those pollers one byte. So nobody polling costs a sender
 * one load, an idle poller one system call per wake-up, a busy one (its
 * bit already taken) none. The edge is per handle: poll, receive with
 * MPROC_NOWAIT until -EAGAIN, poll again; nothing spins while all queued
 * mail is for someone else, since only a new send wakes the descriptor.
 *
 * A stray byte (anyone in the network namespace may send to an abstract
 * socket) only makes the descriptor readable once: the next receive
 * drains it. The descriptor belongs to the process that asked: a child
 * that inherited the handle gets its own from mproc__poll_fd.
 */
#ifndef MPROC_SHM_POLL_H
#define MPROC_SHM_POLL_H

#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

#define MPROC__POLLERS 64

struct mproc__poll_slot {
	int32_t pid;       /* 0: free */
	uint32_t gen;      /* bumped at each claim */
	uint64_t start_ns; /* its start (CLOCK_BOOTTIME ns) */
};

struct mproc__poll_table {
	uint64_t id; /* written once at creation (mproc__poll_init) */
	struct mproc__poll_slot slot[MPROC__POLLERS];
};

/* A bus's or a slot's poll area: the mask, then the table. */
struct mproc__poll_shared {
	uint64_t armed; /* bit i: poller slot i waits for a wake */
	struct mproc__poll_table table;
};

/* The handle's side (process-local). */
struct mproc__poller {
	int fd;      /* this process's socket; -1: none */
	int slot;
	pid_t pid;   /* the process fd belongs to */
	int wake_fd; /* an unbound socket to send wakes from (any process
	                may use its copy) */
};

/* A fresh mapping's table (unique enough per boot). */
void mproc__poll_init(struct mproc__poll_table *t, const void *map);
void mproc__poller_init(struct mproc__poller *p);
/* The descriptor, made on first use (per process); negative errno. */
int mproc__poll_fd(struct mproc__poll_table *t, struct mproc__poller *p);
/* Clear the handle's descriptor and arm it again (it has one). */
void mproc__poll_arm(uint64_t *armed, struct mproc__poller *p);
/* Wake every armed poller once. A send calls it only when it finds armed
 * not 0 (one load while nobody polls): see the kinds' inlines. */
void mproc__poll_wake(uint64_t *armed, const struct mproc__poll_table *t,
                      struct mproc__poller *p);
/* Release the handle's slot (if this process claimed it) and sockets;
 * armed and t may be NULL (nothing mapped any more). */
void mproc__poll_close(uint64_t *armed, struct mproc__poll_table *t,
                       struct mproc__poller *p);

/* The same over a struct mproc__poll_shared (bus, slot); the wake takes
 * ps, so that a send computes nothing more before its one load. */
void mproc__poller_wake(struct mproc__poll_shared *ps, struct mproc__poller *p);

static inline int mproc__poller_fd(struct mproc__poll_shared *ps,
                                   struct mproc__poller *p)
{
	return mproc__poll_fd(&ps->table, p);
}

static inline void mproc__poller_close(struct mproc__poll_shared *ps,
                                       struct mproc__poller *p)
{
	mproc__poll_close(ps != NULL ? &ps->armed : NULL,
	                  ps != NULL ? &ps->table : NULL, p);
}

/* After a send: wake the armed pollers (one load while nobody polls). */
static inline void mproc__poll_after_send(struct mproc__poll_shared *ps,
                                          struct mproc__poller *p)
{
	if (mproc__unlikely(__atomic_load_n(&ps->armed, __ATOMIC_SEQ_CST) != 0))
		mproc__poller_wake(ps, p);
}

/* The queue's arm: only when a sender took the bit (no system call for a
 * busy poller); mproc__poll_idle then drains what a receive that found
 * nothing may have left, and the caller looks once more. */
void mproc__poll_arm_lazy(uint64_t *armed, struct mproc__poller *p);
void mproc__poll_idle(uint64_t *armed, struct mproc__poller *p);

/* Before a receive: clear the handle's descriptor and arm it again. */
static inline void mproc__poll_before_recv(struct mproc__poll_shared *ps,
                                           struct mproc__poller *p)
{
	if (mproc__unlikely(p->fd >= 0))
		mproc__poll_arm(&ps->armed, p);
}

#endif /* MPROC_SHM_POLL_H */
