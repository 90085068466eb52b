/*
 * poll.c - the descriptor of every shared kind (the scheme is in
 * shm/poll.h): claiming a poller slot, the socket, arming, waking.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shm/poll.h"

static socklen_t poll_addr(struct sockaddr_un *sa, uint64_t id, int slot,
                           uint32_t gen)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* sun_path[0] = 0: the abstract namespace, gone with the socket. */
	n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1,
	             "mproc-poll.%016llx.%d.%u", (unsigned long long)id, slot,
	             gen);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

void mproc__poll_init(struct mproc__poll_table *t, const void *map)
{
	t->id = mproc__boottime_ns() ^ ((uint64_t)mproc__self_pid() << 40) ^
	        (uint64_t)(uintptr_t)map ^ 0x5a5a000000000000ull;
}

void mproc__poller_init(struct mproc__poller *p)
{
	p->fd = -1;
	p->slot = -1;
	p->pid = 0;
	p->wake_fd = -1;
}

/* A slot being freed: its start first, to 0 (judged by the pid alone). */
static void poll_free(struct mproc__poll_slot *sl)
{
	__atomic_store_n(&sl->start_ns, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->pid, 0, __ATOMIC_RELEASE);
}

/*
 * Claim a free slot, or one whose process is gone. -EMFILE: all busy.
 * A slot changing hands has start 0 until its new pid is there (free
 * slots have it; a gone process's is moved to it by compare-and-swap
 * first): a live claimer is never judged by the previous one's older
 * start, taken for a reused pid and robbed.
 */
static int poll_claim(struct mproc__poll_table *t, uint32_t *gen)
{
	pid_t me = mproc__self_pid();
	struct mproc__live lc;
	int i, pass;

	mproc__live_init(&lc);
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < MPROC__POLLERS; i++) {
			struct mproc__poll_slot *sl = &t->slot[i];
			int32_t p = __atomic_load_n(&sl->pid, __ATOMIC_ACQUIRE);
			uint64_t ps = __atomic_load_n(&sl->start_ns,
			                              __ATOMIC_RELAXED);

			if (p != 0 &&
			    (pass == 0 || !mproc__live_gone(&lc, p, ps)))
				continue;
			if (p != 0 &&
			    !__atomic_compare_exchange_n(&sl->start_ns, &ps, 0, 0,
			                                 __ATOMIC_SEQ_CST,
			                                 __ATOMIC_RELAXED))
				continue;
			if (!__atomic_compare_exchange_n(&sl->pid, &p, me, 0,
			                                 __ATOMIC_SEQ_CST,
			                                 __ATOMIC_RELAXED))
				continue;
			__atomic_store_n(&sl->start_ns, mproc__self_start_ns(),
			                 __ATOMIC_RELAXED);
			*gen = __atomic_add_fetch(&sl->gen, 1, __ATOMIC_SEQ_CST);
			return i;
		}
	}
	return -EMFILE;
}

static void poll_drain(int fd)
{
	char buf[16];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		;
}

/* Threads asking for a handle's descriptor at once get the same one. */
static pthread_mutex_t poll_mu = PTHREAD_MUTEX_INITIALIZER;

static int poll_fd_locked(struct mproc__poll_table *t, struct mproc__poller *p)
{
	pid_t me = mproc__self_pid();
	struct sockaddr_un sa;
	socklen_t len;
	uint32_t gen;
	int fd, slot, rc;

	if (p->fd >= 0 && p->pid == me)
		return p->fd;
	if (p->fd >= 0) {
		/* Inherited: the parent's. This process gets its own. */
		close(p->fd);
		p->fd = -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if ((slot = poll_claim(t, &gen)) < 0) {
		close(fd);
		return slot;
	}
	len = poll_addr(&sa, __atomic_load_n(&t->id, __ATOMIC_RELAXED), slot,
	                gen);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		rc = -errno;
		close(fd);
		poll_free(&t->slot[slot]);
		return rc;
	}
	/* Readable from the start: what was sent before this handle asked
	 * has not been looked for yet. A receive clears it. */
	sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&sa, len);
	p->slot = slot;
	p->pid = me;
	__atomic_store_n(&p->fd, fd, __ATOMIC_RELEASE);
	return fd;
}

int mproc__poll_fd(struct mproc__poll_table *t, struct mproc__poller *p)
{
	int rc;

	if (__atomic_load_n(&p->fd, __ATOMIC_ACQUIRE) >= 0 &&
	    p->pid == mproc__self_pid())
		return p->fd;
	pthread_mutex_lock(&poll_mu);
	rc = poll_fd_locked(t, p);
	pthread_mutex_unlock(&poll_mu);
	return rc;
}

void mproc__poll_arm(uint64_t *armed, struct mproc__poller *p)
{
	if (p->pid != mproc__self_pid())
		return; /* the parent's descriptor, inherited */
	/* Drain, then arm: a send after the arm wakes the descriptor; one
	 * before it is found by this receive. */
	poll_drain(p->fd);
	__atomic_fetch_or(armed, 1ull << p->slot, __ATOMIC_SEQ_CST);
}

void mproc__poll_arm_lazy(uint64_t *armed, struct mproc__poller *p)
{
	uint64_t bit = 1ull << p->slot;

	if (p->pid != mproc__self_pid())
		return;
	/* Still armed: no sender took the bit, so no byte was sent since
	 * the last arm and there is nothing to drain (a busy poller pays no
	 * system call here, and its senders none either). */
	if (__atomic_load_n(armed, __ATOMIC_SEQ_CST) & bit)
		return;
	poll_drain(p->fd);
	__atomic_fetch_or(armed, bit, __ATOMIC_SEQ_CST);
}

void mproc__poll_idle(uint64_t *armed, struct mproc__poller *p)
{
	if (p->pid != mproc__self_pid())
		return;
	/* A receive that found nothing: whatever byte is there is stale (a
	 * sender's wake racing the last arm); drain it and stay armed, so
	 * the descriptor is not readable until a new send. The caller looks
	 * at the queue once more after this. */
	poll_drain(p->fd);
	__atomic_fetch_or(armed, 1ull << p->slot, __ATOMIC_SEQ_CST);
}

void mproc__poll_wake(uint64_t *armed, const struct mproc__poll_table *t,
                      struct mproc__poller *p)
{
	struct sockaddr_un sa;
	uint64_t bits, id;
	socklen_t len;
	int i, fd;

	bits = __atomic_exchange_n(armed, 0, __ATOMIC_SEQ_CST);
	if (bits == 0)
		return;
	/* An unbound socket to send from, made once per handle (threads
	 * race to make it: one wins); a forked child may use its copy. */
	fd = __atomic_load_n(&p->wake_fd, __ATOMIC_ACQUIRE);
	if (fd < 0) {
		int none = -1;

		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return; /* the pollers look again on their next receive */
		if (!__atomic_compare_exchange_n(&p->wake_fd, &none, fd, 0,
		                                 __ATOMIC_ACQ_REL,
		                                 __ATOMIC_ACQUIRE)) {
			close(fd);
			fd = none;
		}
	}
	id = __atomic_load_n(&t->id, __ATOMIC_RELAXED);
	for (i = 0; i < MPROC__POLLERS; i++) {
		if (!(bits & (1ull << i)))
			continue;
		len = poll_addr(&sa, id, i,
		                __atomic_load_n(&t->slot[i].gen, __ATOMIC_RELAXED));
		/* A poller gone or full: nothing to do (a full socket is
		 * readable already). */
		sendto(fd, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL,
		       (struct sockaddr *)&sa, len);
	}
}

void mproc__poller_wake(struct mproc__poll_shared *ps, struct mproc__poller *p)
{
	mproc__poll_wake(&ps->armed, &ps->table, p);
}

void mproc__poll_close(uint64_t *armed, struct mproc__poll_table *t,
                       struct mproc__poller *p)
{
	if (p->fd >= 0) {
		if (p->pid == mproc__self_pid() && armed != NULL && t != NULL) {
			__atomic_fetch_and(armed, ~(1ull << p->slot),
			                   __ATOMIC_SEQ_CST);
			poll_free(&t->slot[p->slot]);
		}
		close(p->fd);
		p->fd = -1;
	}
	if (p->wake_fd >= 0) {
		close(p->wake_fd);
		p->wake_fd = -1;
	}
}
