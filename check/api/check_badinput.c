/*
 * check_badinput.c - every public function called with NULL, closed,
 * wrong-type and out-of-range arguments: each returns its documented
 * negative errno, and the queue's contents are what they were.
 */
#include <limits.h>
#include <stdint.h>

#include "check_common.h"

struct ctx {
	mproc_conn *q;      /* live queue holding three messages */
	mproc_conn *closed; /* a closed queue handle */
	mproc_conn *pclosed; /* a closed pipe end */
	mproc_conn *pipe;   /* a live pipe end (wrong type for queue calls) */
	mproc_conn *peer;
	mproc_msg m;        /* a good receive buffer */
	char buf[64];
};

typedef int (*call_fn)(struct ctx *c);

struct row {
	const char *what;
	call_fn call;
	int want;
};

static int pass_all(const mproc_msg *m, void *arg)
{
	(void)m;
	(void)arg;
	return 1;
}

#define ROW(want, what, expr)                                                  \
	static int row_##what(struct ctx *c)                                   \
	{                                                                      \
		(void)c;                                                       \
		return (expr);                                                 \
	}
#define R(want, what) { #what, row_##what, want }

static mproc_msg msg_null_data = { .request = MPROC_DO, .size = 4 };
static mproc_msg msg_recv_null_data = { .capacity = 4 };
static mproc_queue_opts opts_flags = { .flags = 0x40 };
static mproc_queue_opts opts_tiny = { .capacity = 64 };
static mproc_queue_opts opts_payload = { .capacity = 4096, .max_payload = 8192 };
static mproc_queue_opts opts_huge = { .capacity = (size_t)1 << 40 };

ROW(-EINVAL, send_null, mproc_send(NULL, MPROC_DO, 0, "x", 1))
ROW(-EINVAL, send_null_data, mproc_send(c->q, MPROC_DO, 0, NULL, 3))
ROW(-EMSGSIZE, send_over_u32, mproc_send(c->q, MPROC_DO, 0, c->buf,
                                         (size_t)UINT32_MAX + 1))
ROW(-EMSGSIZE, send_over_payload, mproc_send(c->q, MPROC_DO, 0, c->buf,
                                             MPROC_QUEUE_DEFAULT_MAX_PAYLOAD + 1))
ROW(-EINVAL, send_closed, mproc_send(c->closed, MPROC_DO, 0, "x", 1))
ROW(-EINVAL, send_pipe_closed, mproc_send(c->pclosed, MPROC_DO, 0, "x", 1))
ROW(-EINVAL, send_msg_null, mproc_send_msg(NULL, &c->m, 0))
ROW(-EINVAL, send_msg_null_msg, mproc_send_msg(c->q, NULL, 0))
ROW(-EINVAL, send_msg_null_data, mproc_send_msg(c->q, &msg_null_data, 0))
ROW(-EINVAL, send_msg_timeout, mproc_send_msg(c->q, &c->m, -2))
ROW(-EINVAL, send_msg_timeout_min, mproc_send_msg(c->q, &c->m, INT_MIN))
ROW(-EINVAL, recv_null, mproc_recv(NULL, &c->m, NULL, NULL, 0))
ROW(-EINVAL, recv_null_msg, mproc_recv(c->q, NULL, NULL, NULL, 0))
ROW(-EINVAL, recv_null_data, mproc_recv(c->q, &msg_recv_null_data, NULL, NULL, 0))
ROW(-EINVAL, recv_timeout, mproc_recv(c->q, &c->m, pass_all, NULL, -7))
ROW(-EINVAL, recv_closed, mproc_recv(c->closed, &c->m, NULL, NULL, 0))
ROW(-EINVAL, recv_pipe_closed, mproc_recv(c->pclosed, &c->m, NULL, NULL, 0))
ROW(-EINVAL, close_null, mproc_close(NULL))
ROW(-EINVAL, close_closed, mproc_close(c->closed))
ROW(-EINVAL, fd_null, mproc_fd(NULL))
ROW(-EINVAL, fd_closed, mproc_fd(c->pclosed))
ROW(-EINVAL, fd_qclosed, mproc_fd(c->closed))
ROW(-EINVAL, pipe_open_null, mproc_pipe_open(NULL, &c->peer))
ROW(-EINVAL, pipe_open_null2, mproc_pipe_open(&c->peer, NULL))
ROW(-EINVAL, queue_open_null, mproc_queue_open(NULL, NULL))
ROW(-EINVAL, queue_open_flags, mproc_queue_open(&c->peer, &opts_flags))
ROW(-EINVAL, queue_open_tiny, mproc_queue_open(&c->peer, &opts_tiny))
ROW(-EINVAL, queue_open_payload, mproc_queue_open(&c->peer, &opts_payload))
ROW(-EINVAL, queue_open_huge, mproc_queue_open(&c->peer, &opts_huge))
ROW(-EINVAL, empty_null, mproc_queue_empty(NULL))
ROW(-EINVAL, empty_closed, mproc_queue_empty(c->closed))
ROW(-EINVAL, empty_pipe, mproc_queue_empty(c->pipe))
ROW(-EINVAL, join_null, mproc_queue_join(NULL, 0))
ROW(-EINVAL, join_timeout, mproc_queue_join(c->q, -2))
ROW(-EINVAL, join_closed, mproc_queue_join(c->closed, 0))
ROW(-EINVAL, join_pipe, mproc_queue_join(c->pipe, 0))
ROW(-EINVAL, shutdown_null, mproc_queue_shutdown(NULL))
ROW(-EINVAL, shutdown_closed, mproc_queue_shutdown(c->closed))
ROW(-EINVAL, shutdown_pipe, mproc_queue_shutdown(c->pipe))
ROW(-EINVAL, task_done_null, mproc_task_done(NULL))
ROW(-EINVAL, task_done_auto, mproc_task_done(c->q))
ROW(-EINVAL, task_done_closed, mproc_task_done(c->closed))
ROW(-EINVAL, task_done_pipe, mproc_task_done(c->pipe))
ROW(-EINVAL, stats_null, mproc_queue_stats(NULL, NULL))
ROW(-EINVAL, stats_null_out, mproc_queue_stats(c->q, NULL))
ROW(-EINVAL, stats_closed, mproc_queue_stats(c->closed, NULL))
ROW(-EINVAL, stats_pipe, mproc_queue_stats(c->pipe, (mproc_stats *)c->buf))
ROW(-EINVAL, purge_null, mproc_queue_purge(NULL))
ROW(-EINVAL, purge_closed, mproc_queue_purge(c->closed))
ROW(-EINVAL, purge_pipe, mproc_queue_purge(c->pipe))
ROW(-EINVAL, pipe_send_null_data, mproc_send(c->pipe, MPROC_DO, 0, NULL, 1))
ROW(-EMSGSIZE, pipe_send_over, mproc_send(c->pipe, MPROC_DO, 0, c->buf,
                                          (size_t)MPROC_PIPE_MAX_PAYLOAD + 1))
ROW(-EINVAL, pipe_recv_timeout, mproc_recv(c->pipe, &c->m, NULL, NULL, -3))
ROW(-EINVAL, pool_start_null, mproc_pool_start(NULL, NULL, NULL, NULL))
ROW(-EINVAL, pool_submit_null, mproc_pool_submit(NULL, "x", 1, NULL, 0))
ROW(-EINVAL, pool_result_null, mproc_pool_result(NULL, NULL, 0))
ROW(-EINVAL, pool_join_null, mproc_pool_join(NULL, 0))
ROW(-EINVAL, pool_stop_null, mproc_pool_stop(NULL, 0, NULL, 0))
ROW(-EINVAL, pool_stats_null, mproc_pool_stats(NULL, NULL))
ROW(-EINVAL, pool_pids_null, mproc_pool_worker_pids(NULL, NULL, 0))
ROW(-EINVAL, pool_free_null, mproc_pool_free(NULL))

static const struct row rows[] = {
	R(-EINVAL, send_null),
	R(-EINVAL, send_null_data),
	R(-EMSGSIZE, send_over_u32),
	R(-EMSGSIZE, send_over_payload),
	R(-EINVAL, send_closed),
	R(-EINVAL, send_pipe_closed),
	R(-EINVAL, send_msg_null),
	R(-EINVAL, send_msg_null_msg),
	R(-EINVAL, send_msg_null_data),
	R(-EINVAL, send_msg_timeout),
	R(-EINVAL, send_msg_timeout_min),
	R(-EINVAL, recv_null),
	R(-EINVAL, recv_null_msg),
	R(-EINVAL, recv_null_data),
	R(-EINVAL, recv_timeout),
	R(-EINVAL, recv_closed),
	R(-EINVAL, recv_pipe_closed),
	R(-EINVAL, close_null),
	R(-EINVAL, close_closed),
	R(-EINVAL, fd_null),
	R(-EINVAL, fd_closed),
	R(-EINVAL, fd_qclosed),
	R(-EINVAL, pipe_open_null),
	R(-EINVAL, pipe_open_null2),
	R(-EINVAL, queue_open_null),
	R(-EINVAL, queue_open_flags),
	R(-EINVAL, queue_open_tiny),
	R(-EINVAL, queue_open_payload),
	R(-EINVAL, queue_open_huge),
	R(-EINVAL, empty_null),
	R(-EINVAL, empty_closed),
	R(-EINVAL, empty_pipe),
	R(-EINVAL, join_null),
	R(-EINVAL, join_timeout),
	R(-EINVAL, join_closed),
	R(-EINVAL, join_pipe),
	R(-EINVAL, shutdown_null),
	R(-EINVAL, shutdown_closed),
	R(-EINVAL, shutdown_pipe),
	R(-EINVAL, task_done_null),
	R(-EINVAL, task_done_auto),
	R(-EINVAL, task_done_closed),
	R(-EINVAL, task_done_pipe),
	R(-EINVAL, stats_null),
	R(-EINVAL, stats_null_out),
	R(-EINVAL, stats_closed),
	R(-EINVAL, stats_pipe),
	R(-EINVAL, purge_null),
	R(-EINVAL, purge_closed),
	R(-EINVAL, purge_pipe),
	R(-EINVAL, pipe_send_null_data),
	R(-EMSGSIZE, pipe_send_over),
	R(-EINVAL, pipe_recv_timeout),
	R(-EINVAL, pool_start_null),
	R(-EINVAL, pool_submit_null),
	R(-EINVAL, pool_result_null),
	R(-EINVAL, pool_join_null),
	R(-EINVAL, pool_stop_null),
	R(-EINVAL, pool_stats_null),
	R(-EINVAL, pool_pids_null),
	R(-EINVAL, pool_free_null),
};

START_TEST(test_badinput_table)
{
	struct ctx c;
	mproc_conn *tmp;
	mproc_stats before, after;
	size_t i;
	int k, rc;

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(mproc_queue_open(&c.q, NULL), 0);
	for (k = 0; k < 3; k++)
		ck_assert_int_eq(mproc_send(c.q, MPROC_USER + k, 0, &k, sizeof(k)),
		                 0);
	ck_assert_int_eq(mproc_queue_open(&c.closed, NULL), 0);
	ck_assert_int_eq(mproc_close(c.closed), 0);
	ck_assert_int_eq(mproc_pipe_open(&c.pipe, &tmp), 0);
	ck_assert_int_eq(mproc_pipe_open(&c.pclosed, &c.peer), 0);
	ck_assert_int_eq(mproc_close(c.pclosed), 0);
	ck_assert_int_eq(mproc_close(c.peer), 0);
	c.peer = NULL;
	c.m.data = c.buf;
	c.m.capacity = sizeof(c.buf);
	ck_assert_int_eq(mproc_queue_stats(c.q, &before), 0);

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		rc = rows[i].call(&c);
		ck_assert_msg(rc == rows[i].want, "%s: got %d (%s), want %d (%s)",
		              rows[i].what, rc, mproc_strerror(rc), rows[i].want,
		              mproc_strerror(rows[i].want));
		ck_assert_ptr_null(c.peer); /* failed opens hand out nothing */
	}

	/* Nothing moved: same counts, same messages, same order. */
	ck_assert_int_eq(mproc_queue_stats(c.q, &after), 0);
	ck_assert_uint_eq(after.queued, 3);
	ck_assert_uint_eq(after.sent, before.sent);
	ck_assert_uint_eq(after.received, before.received);
	ck_assert_uint_eq(after.bytes, before.bytes);
	ck_assert_uint_eq(after.unfinished, before.unfinished);
	for (k = 0; k < 3; k++) {
		int v = -1;
		mproc_msg m = { .data = &v, .capacity = sizeof(v) };

		ck_assert_int_eq(mproc_recv(c.q, &m, NULL, NULL, 0), 0);
		ck_assert_int_eq(m.request, MPROC_USER + k);
		ck_assert_int_eq(v, k);
	}
	ck_assert_int_eq(mproc_queue_empty(c.q), 1);
	mproc_close(c.q);
	mproc_close(c.pipe);
	mproc_close(tmp);
}
END_TEST

/* mproc_strerror never returns NULL, whatever it is given. */
START_TEST(test_badinput_strerror_total)
{
	int e;

	for (e = -300; e <= 300; e++)
		ck_assert_ptr_nonnull(mproc_strerror(e));
	ck_assert_ptr_nonnull(mproc_strerror(INT_MIN));
	ck_assert_ptr_nonnull(mproc_strerror(INT_MAX));
	ck_assert_ptr_nonnull(mproc_request_name(INT32_MIN));
	ck_assert_int_eq(mproc_for_me(NULL, NULL), 0);
}
END_TEST

static Suite *badinput_suite(void)
{
	Suite *s = suite_create("badinput");
	TCase *tc = check_tcase(s, "table");

	tcase_add_test(tc, test_badinput_table);
	tcase_add_test(tc, test_badinput_strerror_total);
	return s;
}

int main(void)
{
	return check_run_suite(badinput_suite());
}
