/*
 * conn.h - the handle and the ops table every kind implements: the one
 * seam between the API (src/api.c) and the kinds (src/pipe/, src/queue/).
 *
 * A kind's handle starts with struct mproc_conn, so the common entry
 * points in api.c check arguments once and dispatch through c->tr.
 * Arguments reaching a transport are already checked: c and m are not
 * NULL, data is not NULL when size > 0, timeouts are >= MPROC_FOREVER.
 */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include "mproc.h"

struct mproc__transport {
	const char *name;
	/* send copies m (payload included) into the transport. May block up to
	 * timeout_ms waiting for room. The queue holds its lock only while
	 * copying; the pipe holds its send lock while it waits for room, so
	 * frames never interleave. The caller keeps m. */
	int (*send)(mproc_conn *c, const mproc_msg *m, int timeout_ms);
	/* recv copies the oldest message match accepts into m (the caller's
	 * buffer). May block up to timeout_ms. match runs with the transport's
	 * lock held (queue). */
	int (*recv)(mproc_conn *c, mproc_msg *m, mproc_match_fn match, void *arg,
	            int timeout_ms);
	/* close releases what this process's copy holds (mapping,
	 * descriptors, buffers) but not the struct c itself, which
	 * mproc_close keeps so later calls on it get -EINVAL. Never blocks
	 * for long. */
	void (*close)(mproc_conn *c);
	/* fd returns a pollable descriptor, or -EINVAL if it has none. */
	int (*fd)(mproc_conn *c);
	/* Zero-copy (NULL: the kind has none, and the calls are -EINVAL).
	 * reserve waits up to timeout_ms for room for size bytes and lends
	 * *buf, contiguous shared memory, until commit or cancel (size is at
	 * most the kind's max_payload: checked by the kind). commit publishes
	 * the first size bytes (not above the reservation) as one message
	 * with request and recipient (already checked); cancel drops it.
	 * borrow is recv without the copy: m->data points at the payload
	 * where it lies, lent until release, which finishes it as a receive
	 * would. One reservation and one borrow at a time per handle:
	 * -EBUSY for a second; commit, cancel, release without one: -EINVAL. */
	int (*reserve)(mproc_conn *c, size_t size, void **buf, int timeout_ms);
	int (*commit)(mproc_conn *c, int32_t request, pid_t recipient,
	              size_t size);
	int (*cancel)(mproc_conn *c);
	int (*borrow)(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
	              void *arg, int timeout_ms);
	int (*release)(mproc_conn *c, mproc_msg *m);
};

struct mproc_conn {
	const struct mproc__transport *tr;
};

extern const struct mproc__transport mproc__pipe_transport;
extern const struct mproc__transport mproc__queue_transport;
extern const struct mproc__transport mproc__slot_transport;
extern const struct mproc__transport mproc__bus_transport;

/* Queue-only operations (src/queue/); q is known to be a queue. */
int mproc__queue_empty(mproc_conn *q);
int mproc__queue_join(mproc_conn *q, int timeout_ms);
int mproc__queue_shutdown(mproc_conn *q);
int mproc__queue_task_done(mproc_conn *q);
int mproc__queue_stats(mproc_conn *q, mproc_stats *st);
int mproc__queue_purge(mproc_conn *q);
int mproc__queue_open(mproc_conn **q, const mproc_queue_opts *opts);
int mproc__queue_create(mproc_conn **q, const char *name,
                        const mproc_queue_opts *opts);
int mproc__queue_attach_name(mproc_conn **q, const char *name);
int mproc__name_unlink(const char *name);
int mproc__pipe_open(mproc_conn **a, mproc_conn **b);
int mproc__pipe_adopt(mproc_conn **end, int fd);

/* Slot (src/slot/); s is known to be a slot. */
int mproc__slot_open(mproc_conn **s, const mproc_slot_opts *opts);
int mproc__slot_create(mproc_conn **s, const char *name,
                       const mproc_slot_opts *opts);
int mproc__slot_attach_name(mproc_conn **s, const char *name);
int mproc__slot_stats(mproc_conn *s, mproc_slot_counts *st);

/* Bus (src/bus/); b is known to be a bus. */
int mproc__bus_open(mproc_conn **b, const mproc_bus_opts *opts);
int mproc__bus_create(mproc_conn **b, const char *name,
                      const mproc_bus_opts *opts);
int mproc__bus_attach_name(mproc_conn **b, const char *name);
int mproc__bus_subscribe(mproc_conn *b);
int mproc__bus_unsubscribe(mproc_conn *b);
int mproc__bus_wait_readers(mproc_conn *b, unsigned n, int timeout_ms);
int mproc__bus_stats(mproc_conn *b, mproc_bus_counts *st);

#endif /* MPROC_CONN_H */
