/*
 * poll.c - the queue's descriptor (mproc_fd): readable when something was
 * sent (or the queue shut down) since this handle's last receive began.
 *
 * Each handle that asks for a descriptor claims a poller slot in the
 * mapping and binds a datagram socket in the abstract namespace, named
 * after the queue's id, the slot and the slot's generation (so a reused
 * slot never gets its predecessor's wakes). A receive on the handle
 * drains the socket and sets the slot's bit in poll_armed; a sender that
 * finds bits set takes them all (one exchange) and sends each of those
 * pollers one byte. So an idle poller costs senders one system call per
 * wake-up, a busy one (its bit already taken) none, and nobody polling
 * costs one load. The edge is per handle: poll, receive with MPROC_NOWAIT
 * until -EAGAIN, poll again; nothing spins while all queued mail is for
 * someone else, since only a new send wakes the descriptor.
 *
 * A stray byte (anyone in the network namespace may send to an abstract
 * socket) only makes the descriptor readable once: the next receive
 * drains it. The descriptor belongs to the process that asked: a child
 * that inherited the handle gets its own from mproc_fd.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "queue/queue.h"

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

/* Claim a free slot, or one whose process is gone. -EMFILE: all busy. */
static int poll_claim(struct queue_conn *q, uint32_t *gen)
{
	struct mproc__queue_shared *s = q->s;
	pid_t me = mproc__self_pid();
	struct mproc__live lc;
	int i, pass;

	mproc__live_init(&lc);
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < MPROC__QUEUE_POLLERS; i++) {
			int32_t p = ACQUIRE(&s->poll.slot[i].pid);

			if (p == 0 ||
			    (pass == 1 &&
			     mproc__live_gone(&lc, p,
			                      LOAD(&s->poll.slot[i].start_ns)))) {
				if (!__atomic_compare_exchange_n(
				            &s->poll.slot[i].pid, &p, me, 0,
				            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
					continue;
				STORE(&s->poll.slot[i].start_ns,
				      mproc__self_start_ns());
				*gen = __atomic_add_fetch(&s->poll.slot[i].gen, 1,
				                          __ATOMIC_SEQ_CST);
				return i;
			}
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

static int poll_fd_locked(struct queue_conn *q);

int mproc__queue_fd(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);
	int rc;

	if (__atomic_load_n(&q->poll_fd, __ATOMIC_ACQUIRE) >= 0 &&
	    q->poll_pid == mproc__self_pid())
		return q->poll_fd;
	pthread_mutex_lock(&poll_mu);
	rc = poll_fd_locked(q);
	pthread_mutex_unlock(&poll_mu);
	return rc;
}

static int poll_fd_locked(struct queue_conn *q)
{
	struct mproc__queue_shared *s = q->s;
	pid_t me = mproc__self_pid();
	struct sockaddr_un sa;
	socklen_t len;
	uint32_t gen;
	int fd, slot, rc;

	if (q->poll_fd >= 0 && q->poll_pid == me)
		return q->poll_fd;
	if (q->poll_fd >= 0) {
		/* Inherited: the parent's. This process gets its own. */
		close(q->poll_fd);
		q->poll_fd = -1;
	}
	if (mproc__queue_check_identity(q) < 0)
		return -EPROTO;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if ((slot = poll_claim(q, &gen)) < 0) {
		close(fd);
		return slot;
	}
	len = poll_addr(&sa, LOAD(&s->poll.id), slot, gen);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		rc = -errno;
		close(fd);
		RELEASE(&s->poll.slot[slot].pid, 0);
		return rc;
	}
	/* Readable from the start: what was sent before this handle asked
	 * has not been looked for yet. A receive clears it. */
	sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&sa, len);
	q->poll_slot = slot;
	q->poll_pid = me;
	__atomic_store_n(&q->poll_fd, fd, __ATOMIC_RELEASE);
	return fd;
}

void mproc__queue_poll_arm(struct queue_conn *q)
{
	if (q->poll_pid != mproc__self_pid())
		return; /* the parent's descriptor, inherited */
	/* Drain, then arm: a send after the arm wakes the descriptor; one
	 * before it is found by this receive. */
	poll_drain(q->poll_fd);
	__atomic_fetch_or(&q->s->poll_armed, 1ull << q->poll_slot,
	                  __ATOMIC_SEQ_CST);
}

void mproc__queue_poll_wake(struct queue_conn *q)
{
	struct mproc__queue_shared *s = q->s;
	struct sockaddr_un sa;
	uint64_t armed, id;
	socklen_t len;
	int i, fd;

	armed = __atomic_exchange_n(&s->poll_armed, 0, __ATOMIC_SEQ_CST);
	if (armed == 0)
		return;
	/* An unbound socket to send from, made once per handle (threads
	 * race to make it: one wins); a forked child may use its copy. */
	fd = __atomic_load_n(&q->wake_fd, __ATOMIC_ACQUIRE);
	if (fd < 0) {
		int none = -1;

		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return; /* the pollers look again on their next receive */
		if (!__atomic_compare_exchange_n(&q->wake_fd, &none, fd, 0,
		                                 __ATOMIC_ACQ_REL,
		                                 __ATOMIC_ACQUIRE)) {
			close(fd);
			fd = none;
		}
	}
	id = LOAD(&s->poll.id);
	for (i = 0; i < MPROC__QUEUE_POLLERS; i++) {
		if (!(armed & (1ull << i)))
			continue;
		len = poll_addr(&sa, id, i, LOAD(&s->poll.slot[i].gen));
		/* A poller gone or full: nothing to do (a full socket is
		 * readable already). */
		sendto(fd, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL,
		       (struct sockaddr *)&sa, len);
	}
}

void mproc__queue_poll_close(struct queue_conn *q)
{
	pid_t me = mproc__self_pid();

	if (q->poll_fd >= 0) {
		if (q->poll_pid == me && q->s != NULL) {
			__atomic_fetch_and(&q->s->poll_armed,
			                   ~(1ull << q->poll_slot),
			                   __ATOMIC_SEQ_CST);
			RELEASE(&q->s->poll.slot[q->poll_slot].pid, 0);
		}
		close(q->poll_fd);
		q->poll_fd = -1;
	}
	if (q->wake_fd >= 0) {
		close(q->wake_fd);
		q->wake_fd = -1;
	}
}
