/*
 * channels.c - one run's channels: opened by the coordinator before it
 * forks (every role inherits them), closed by each role down to the
 * handles it uses, and by the coordinator once the roles are forked.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

static unsigned chans_mq_serial;

int chans_mq_open(mqd_t *q, long depth, long msgsize)
{
	struct mq_attr a;
	char name[64];
	int e;

	memset(&a, 0, sizeof(a));
	a.mq_maxmsg = depth;
	a.mq_msgsize = msgsize;
	snprintf(name, sizeof(name), "/mproc-bench-%d-%u", (int)getpid(),
	         chans_mq_serial++);
	*q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
	if (*q == (mqd_t)-1)
		return -errno;
	/* Unlinked at once: the descriptors (inherited by fork) keep it
	 * alive, and nothing is left behind whatever happens. */
	if (mq_unlink(name) != 0) {
		e = -errno;
		mq_close(*q);
		return e;
	}
	return 0;
}

void chans_close(struct chans *ch)
{
	int i;

	for (i = 0; i < ch->n; i++) {
		if (ch->c[i][0] != NULL)
			mproc_close(ch->c[i][0]);
		if (ch->c[i][1] != NULL)
			mproc_close(ch->c[i][1]);
		if (ch->fd[i][0] >= 0)
			close(ch->fd[i][0]);
		if (ch->fd[i][1] >= 0)
			close(ch->fd[i][1]);
		if (ch->mq[i] != (mqd_t)-1)
			mq_close(ch->mq[i]);
		ch->c[i][0] = ch->c[i][1] = NULL;
		ch->fd[i][0] = ch->fd[i][1] = -1;
		ch->mq[i] = (mqd_t)-1;
	}
	if (ch->sl != NULL)
		munmap(ch->sl, ch->sl_len);
	ch->sl = NULL;
	if (ch->ring != NULL)
		munmap(ch->ring, ch->ring_len);
	ch->ring = NULL;
}

/* The coordinator, after the run: the named queues' names go. */
void chans_unlink(struct chans *ch)
{
	int i;

	for (i = 0; i < ch->n; i++)
		if (ch->name[i][0] != '\0') {
			named_unlink(ch->name[i]);
			ch->name[i][0] = '\0';
		}
}

/* mproc's own open calls, by transport; the name for T_NQUEUE. */
static int chans_mproc_open(const struct workload *w, enum transport t,
                            struct chans *ch, int i,
                            const mproc_queue_opts *qo, const char **call)
{
	mproc_bus_opts bo;
	mproc_slot_opts so;

	switch (t) {
	case T_QUEUE:
	case T_QPOLL:
	case T_QZC:
		*call = "mproc_queue_open";
		return mproc_queue_open(&ch->c[i][0], qo);
	case T_NQUEUE:
		*call = "mproc_queue_create";
		named_new(ch->name[i], sizeof(ch->name[i]));
		return mproc_queue_create(&ch->c[i][0], ch->name[i], qo);
	case T_MPIPE:
		*call = "mproc_pipe_open";
		return mproc_pipe_open(&ch->c[i][0], &ch->c[i][1]);
	case T_BUS:
		*call = "mproc_bus_open";
		memset(&bo, 0, sizeof(bo));
		if (wl_maxpay(w) > MPROC_BUS_DEFAULT_MAX_PAYLOAD) {
			bo.max_payload = wl_maxpay(w);
			bo.capacity = (size_t)8 * (wl_maxpay(w) + 64);
		}
		if (w->readers > MPROC_BUS_DEFAULT_MAX_READERS)
			bo.max_readers = (uint32_t)w->readers;
		return mproc_bus_open(&ch->c[i][0], &bo);
	default:
		*call = "mproc_slot_open";
		memset(&so, 0, sizeof(so));
		so.max_payload = w->size; /* the value, no more */
		return mproc_slot_open(&ch->c[i][0], &so);
	}
}

/*
 * chans_open opens the channels of one run. Returns 0, 1 when mproc says
 * -ENOSYS (not built yet), -1 on failure (why filled).
 */
int chans_open(const struct workload *w, enum transport t,
               struct chans *ch, char *why, size_t whylen)
{
	mproc_queue_opts qo;
	const char *call;
	int i, r;

	memset(ch, 0, sizeof(*ch));
	ch->t = t;
	ch->n = wl_nchans(w, t);
	for (i = 0; i < MAX_CH; i++) {
		ch->fd[i][0] = ch->fd[i][1] = -1;
		ch->mq[i] = (mqd_t)-1;
	}
	memset(&qo, 0, sizeof(qo));
	if (wl_maxpay(w) > MPROC_QUEUE_DEFAULT_MAX_PAYLOAD) {
		qo.max_payload = wl_maxpay(w);
		qo.capacity = (size_t)8 * (wl_maxpay(w) + 64);
		if (qo.capacity < MPROC_QUEUE_DEFAULT_CAPACITY)
			qo.capacity = MPROC_QUEUE_DEFAULT_CAPACITY;
	}
	for (i = 0; i < ch->n; i++) {
		switch (t) {
		case T_QUEUE:
		case T_NQUEUE:
		case T_QPOLL:
		case T_QZC:
		case T_MPIPE:
		case T_BUS:
		case T_SLOT:
			r = chans_mproc_open(w, t, ch, i, &qo, &call);
			if (r == -ENOSYS)
				goto nosys;
			if (r != 0) {
				snprintf(why, whylen, "%s: %s (%d)", call,
				         mproc_strerror(r), r);
				goto fail;
			}
			break;
		case T_SEQLOCK:
			ch->sl_len = seqlock_len(w->size);
			ch->sl = mmap(NULL, ch->sl_len, PROT_READ | PROT_WRITE,
			              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (ch->sl == MAP_FAILED) {
				ch->sl = NULL;
				snprintf(why, whylen, "mmap: %s",
				         strerror(errno));
				goto fail;
			}
			break;
		case T_SPSC:
			ch->ring_len = spsc_len(wl_maxpay(w));
			ch->ring = mmap(NULL, ch->ring_len,
			                PROT_READ | PROT_WRITE,
			                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (ch->ring == MAP_FAILED) {
				ch->ring = NULL;
				snprintf(why, whylen, "mmap: %s",
				         strerror(errno));
				goto fail;
			}
			spsc_init(ch->ring, ch->ring_len);
			/* fault it in before the clock starts */
			memset(ch->ring->data, 0, ch->ring->cap);
			break;
		case T_PIPE:
			if (pipe2(ch->fd[i], O_CLOEXEC) != 0) {
				snprintf(why, whylen, "pipe2: %s",
				         strerror(errno));
				goto fail;
			}
			break;
		case T_POOL:
		case T_MEMCPY:
			break;
		case T_MQ:
			r = chans_mq_open(&ch->mq[i], w->mq_depth,
			                  (long)(ENV_SIZE + wl_maxpay(w)));
			if (r != 0) {
				snprintf(why, whylen, "mq_open (depth %ld): %s",
				         w->mq_depth, strerror(-r));
				goto fail;
			}
			break;
		default:
			goto fail;
		}
	}
	return 0;
nosys:
	chans_close(ch);
	chans_unlink(ch);
	snprintf(why, whylen, "n/a (not built yet)");
	return 1;
fail:
	chans_close(ch);
	chans_unlink(ch);
	return -1;
}

static bool chans_ep_uses(const struct ep *eps, int n, const void *c, int fd,
                          mqd_t mq)
{
	int i;

	for (i = 0; i < n; i++) {
		if (c != NULL && eps[i].c == c)
			return true;
		if (fd >= 0 && eps[i].fd == fd)
			return true;
		if (mq != (mqd_t)-1 && eps[i].mq == mq)
			return true;
	}
	return false;
}

/* In a role: close every inherited handle it does not use. */
void chans_keep(struct chans *ch, const struct ep *eps, int n)
{
	int i, j;

	for (i = 0; i < ch->n; i++) {
		for (j = 0; j < 2; j++) {
			if (ch->c[i][j] != NULL &&
			    !chans_ep_uses(eps, n, ch->c[i][j], -1, (mqd_t)-1))
				mproc_close(ch->c[i][j]);
			if (ch->fd[i][j] >= 0 &&
			    !chans_ep_uses(eps, n, NULL, ch->fd[i][j],
			                   (mqd_t)-1))
				close(ch->fd[i][j]);
		}
		if (ch->mq[i] != (mqd_t)-1 &&
		    !chans_ep_uses(eps, n, NULL, -1, ch->mq[i]))
			mq_close(ch->mq[i]);
	}
}
