/* TEMPORARY during bring-up: replaced by the real queue before commit. */
#include "internal.h"
static int q_send(mproc_conn *c, const mproc_msg *m, int t) { (void)c; (void)m; (void)t; return -ENOSYS; }
static int q_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn f, void *a, int t) { (void)c; (void)m; (void)f; (void)a; (void)t; return -ENOSYS; }
static void q_close(mproc_conn *c) { (void)c; }
static int q_fd(mproc_conn *c) { (void)c; return -ENOTSUP; }
const struct mproc__transport mproc__queue_transport = { .name = "queue", .send = q_send, .recv = q_recv, .close = q_close, .fd = q_fd };
int mproc__queue_empty(mproc_conn *q) { (void)q; return -ENOSYS; }
int mproc__queue_join(mproc_conn *q, int t) { (void)q; (void)t; return -ENOSYS; }
int mproc__queue_shutdown(mproc_conn *q) { (void)q; return -ENOSYS; }
int mproc__queue_task_done(mproc_conn *q) { (void)q; return -ENOSYS; }
int mproc__queue_stats(mproc_conn *q, mproc_stats *st) { (void)q; (void)st; return -ENOSYS; }
int mproc__queue_purge(mproc_conn *q) { (void)q; return -ENOSYS; }
int mproc__queue_open(mproc_conn **q, const mproc_queue_opts *o) { (void)q; (void)o; return -ENOSYS; }
