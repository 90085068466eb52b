/*
 * poll.h - the descriptor (mproc_fd) of a shared kind, generalised from
 * the queue's scheme (src/queue/poll.c) for the bus and the slot
 * (src/shm/poll.c). Readable when something was sent since the handle's
 * last receive began, and from the start.
 *
 * The mapping holds a struct mproc__poll_shared: an id (names the
 * sockets), the armed mask and 64 poller slots {pid, generation, start}.
 * A handle asking for a descriptor claims a slot (a free one, or one whose
 * process is gone) and binds a datagram socket in the abstract namespace
 * named after id, slot and generation. A receive drains the socket and
 * sets its bit in armed; a sender that finds bits set takes them all and
 * sends each of those pollers one byte. Nobody polling costs a sender one
 * load.
 */
#ifndef MPROC_SHM_POLL_H
#define MPROC_SHM_POLL_H

#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

#define MPROC__POLLERS 64

struct mproc__poll_shared {
	uint64_t armed; /* bit i: poller slot i waits for a wake */
	uint64_t id;    /* written once at creation */
	struct {
		int32_t pid;       /* 0: free */
		uint32_t gen;      /* bumped at each claim */
		uint64_t start_ns; /* its start (CLOCK_BOOTTIME ns) */
	} slot[MPROC__POLLERS];
};

/* The handle's side (process-local). */
struct mproc__poller {
	int fd;    /* this process's socket; -1: none */
	int slot;
	pid_t pid; /* the process fd belongs to */
	int wake_fd; /* an unbound socket to send wakes from */
};

/* A fresh mapping's id (unique enough per boot). */
uint64_t mproc__poll_new_id(const void *map);
void mproc__poller_init(struct mproc__poller *p);
/* The descriptor, made on first use (per process); negative errno. */
int mproc__poller_fd(struct mproc__poll_shared *ps, struct mproc__poller *p);
void mproc__poller_arm(struct mproc__poll_shared *ps, struct mproc__poller *p);
void mproc__poller_wake(struct mproc__poll_shared *ps, struct mproc__poller *p);
void mproc__poller_close(struct mproc__poll_shared *ps, struct mproc__poller *p);

/* After a send: wake the armed pollers (one load while nobody polls). */
static inline void mproc__poll_after_send(struct mproc__poll_shared *ps,
                                          struct mproc__poller *p)
{
	if (mproc__unlikely(__atomic_load_n(&ps->armed, __ATOMIC_SEQ_CST) != 0))
		mproc__poller_wake(ps, p);
}

/* Before a receive: clear the handle's descriptor and arm it again. */
static inline void mproc__poll_before_recv(struct mproc__poll_shared *ps,
                                           struct mproc__poller *p)
{
	if (mproc__unlikely(p->fd >= 0))
		mproc__poller_arm(ps, p);
}

#endif /* MPROC_SHM_POLL_H */
