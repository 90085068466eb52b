/*
 * poll.c - the queue's descriptor (mproc_fd): readable when something was
 * sent (or the queue shut down) since this handle's last receive began.
 * The scheme is the one every kind shares (shm/poll.h), over the queue's
 * poll_armed (in its futex line, which senders read anyway) and its poll
 * table. queue.h's inlines keep the send's cost at one load and the
 * receive's at one test while nobody polls.
 */
#include <errno.h>

#include "queue/queue.h"

int mproc__queue_fd(mproc_conn *c)
{
	struct queue_conn *q = queue_of(c);

	if (__atomic_load_n(&q->poll.fd, __ATOMIC_ACQUIRE) >= 0 &&
	    q->poll.pid == mproc__self_pid())
		return q->poll.fd;
	if (mproc__queue_check_identity(q) < 0)
		return -EPROTO;
	return mproc__poll_fd(&q->s->poll, &q->poll);
}

void mproc__queue_poll_arm(struct queue_conn *q)
{
	mproc__poll_arm_lazy(&q->s->poll_armed, &q->poll);
}

void mproc__queue_poll_wake(struct queue_conn *q)
{
	mproc__poll_wake(&q->s->poll_armed, &q->s->poll, &q->poll);
}

void mproc__queue_poll_close(struct queue_conn *q)
{
	mproc__poll_close(q->s != NULL ? &q->s->poll_armed : NULL,
	                  q->s != NULL ? &q->s->poll : NULL, &q->poll);
}
