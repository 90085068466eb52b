/*
 * epoll_consumer - one event loop for a named queue, a timer and stdin:
 * the queue's descriptor (mproc_fd) in epoll next to a timerfd ticking
 * every second and standard input.
 *
 *   shell 1:  ./examples/epoll_consumer /jobs
 *   shell 2:  ./examples/named_producer /jobs 10
 *
 * Prints each message as it comes, a tick line every second (with the
 * queue's depth), what you type; quits on end of input (Ctrl-D) or a DIE.
 *
 * The recipe: when the queue's descriptor is readable, receive with
 * MPROC_NOWAIT until -EAGAIN, then go back to epoll_wait. The descriptor
 * wakes once per send since the last receive began, so nothing is missed,
 * and nothing spins while every queued message is for someone else.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <mproc.h>

struct job {
	uint32_t seq;
	char text[28];
};

static int open_named(mproc_conn **q, const char *name)
{
	mproc_queue_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                       .mode = 0600 };
	int rc = -EEXIST;

	for (int i = 0; i < 10; i++) {
		if ((rc = mproc_queue_create(q, name, &o)) != -EEXIST)
			return rc;
		if ((rc = mproc_queue_attach(q, name)) != -ENOENT)
			return rc;
	}
	return rc;
}

/* Take everything there is now. Returns 1 after a DIE, 0, or -errno. */
static int drain(mproc_conn *q, unsigned long *got)
{
	/* The queue's default largest payload. */
	static char buf[MPROC_QUEUE_DEFAULT_MAX_PAYLOAD];

	for (;;) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		int rc = mproc_recv(q, &m, mproc_for_me, NULL, MPROC_NOWAIT);

		if (rc == -EAGAIN)
			return 0; /* drained: back to epoll_wait */
		if (rc != 0)
			return rc; /* -EMSGSIZE: made with a larger max_payload */
		if (m.request == MPROC_DIE) {
			printf("DIE from pid %d\n", (int)m.sender);
			return 1;
		}
		(*got)++;
		if (m.size == sizeof(struct job)) {
			struct job *j = (struct job *)buf;

			j->text[sizeof(j->text) - 1] = '\0';
			printf("message: %s from pid %d\n", j->text,
			       (int)m.sender);
		} else {
			printf("message: %s, %u bytes from pid %d\n",
			       mproc_request_name(m.request), m.size,
			       (int)m.sender);
		}
	}
}

int main(int argc, char **argv)
{
	struct itimerspec every = { { 1, 0 }, { 1, 0 } };
	struct epoll_event ev, evs[4];
	unsigned long got = 0, ticks = 0;
	int ep, tfd, qfd, rc, done = 0, has_stdin = 1;
	mproc_conn *q;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME   (NAME like /jobs)\n", argv[0]);
		return 2;
	}
	if ((rc = open_named(&q, argv[1])) != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1],
		        mproc_strerror(rc));
		return 1;
	}
	if ((qfd = mproc_fd(q)) < 0) {
		fprintf(stderr, "%s: mproc_fd: %s\n", argv[0],
		        mproc_strerror(qfd));
		mproc_close(q);
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ep < 0 || tfd < 0 || timerfd_settime(tfd, 0, &every, NULL) < 0) {
		perror(argv[0]);
		mproc_close(q);
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.fd = qfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, qfd, &ev);
	ev.data.fd = tfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.fd = 0;
	/* A regular file or /dev/null cannot be polled (EPERM): no input. */
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0)
		has_stdin = 0;
	printf("epoll_consumer %d: waiting on %s%s\n", (int)getpid(), argv[1],
	       has_stdin ? " (Ctrl-D quits)" : "");
	fflush(stdout);
	while (!done) {
		int n = epoll_wait(ep, evs, 4, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("epoll_wait");
			break;
		}
		for (int i = 0; i < n && !done; i++) {
			int fd = evs[i].data.fd;

			if (fd == qfd) {
				rc = drain(q, &got);
				if (rc != 0) {
					if (rc < 0)
						fprintf(stderr, "receive: %s\n",
						        mproc_strerror(rc));
					done = 1;
				}
			} else if (fd == tfd) {
				uint64_t k;
				mproc_stats st;

				if (read(tfd, &k, sizeof(k)) != sizeof(k))
					continue;
				ticks += k;
				if (mproc_queue_stats(q, &st) == 0)
					printf("tick %lu: %lu messages so far, "
					       "%llu queued\n", ticks, got,
					       (unsigned long long)st.queued);
			} else {
				char line[256];
				ssize_t r = read(0, line, sizeof(line));

				if (r <= 0) {
					printf("end of input\n");
					done = 1;
				} else {
					printf("you typed %zd bytes\n", r);
				}
			}
		}
		fflush(stdout);
	}
	printf("epoll_consumer %d: %lu messages\n", (int)getpid(), got);
	close(tfd);
	close(ep);
	mproc_close(q);
	return 0;
}
