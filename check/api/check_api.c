/*
 * check_api.c - the common API: error texts and names, version, request
 * names, the ready-made predicates, the request codes and recipients a
 * send accepts, and argument checking on every common entry point.
 */
#include <limits.h>
#include <stdint.h>

#include "check_common.h"
#include "check_errnos.h"

/* Every errno mproc returns: its own, and some it passes through. */
static const int api_errnos[] = { CHECK_MPROC_ERRNOS, CHECK_SYSTEM_ERRNOS };
#define API_NERRNOS CHECK_NELEMS(api_errnos)

START_TEST(test_api_strerror_table)
{
	const char *unknown = mproc_strerror(-9999);
	const char *s, *t;

	ck_assert_ptr_nonnull(unknown);
	ck_assert_str_eq(unknown, "unknown error");
	ck_assert_ptr_nonnull(mproc_strerror(0));
	ck_assert_str_ne(mproc_strerror(0), unknown);

	for (size_t i = 0; i < API_NERRNOS; i++) {
		s = mproc_strerror(-api_errnos[i]);
		ck_assert_ptr_nonnull(s);
		ck_assert_msg(s[0] != '\0', "empty name for %d", api_errnos[i]);
		ck_assert_msg(strcmp(s, unknown) != 0, "errno %d unnamed",
		              api_errnos[i]);
		/* Positive values name the same error. */
		ck_assert_str_eq(mproc_strerror(api_errnos[i]), s);
		/* One meaning per value: no two share a name. */
		for (size_t k = 0; k < i; k++) {
			t = mproc_strerror(-api_errnos[k]);
			ck_assert_msg(strcmp(s, t) != 0, "%d and %d: \"%s\"",
			              api_errnos[i], api_errnos[k], s);
		}
	}
}
END_TEST

START_TEST(test_api_strerror_unknown)
{
	static const int odd[] = { 9999, -9999, 1000000, -1000000, INT_MAX,
		                   -INT_MAX, -ENOSYS, EBADF };

	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *s = mproc_strerror(odd[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_msg(s[0] != '\0', "empty name for %d", odd[i]);
	}
	ck_assert_str_eq(mproc_strerror(INT_MAX), "unknown error");
	ck_assert_str_eq(mproc_err_name(INT_MAX), "UNKNOWN");
	/* Not in mproc's table: the system's text, never "unknown". */
	ck_assert_str_eq(mproc_strerror(-ENOSYS), strerror(ENOSYS));
	ck_assert_str_eq(mproc_err_name(-ENOSYS), "ENOSYS");
}
END_TEST

/* mproc's own codes: its own words, not the system's. */
START_TEST(test_api_strerror_own_words)
{
	static const int own[] = { CHECK_MPROC_ERRNOS };

	for (size_t i = 0; i < CHECK_NELEMS(own); i++) {
		const char *s = mproc_strerror(-own[i]);

		ck_assert_msg(strcmp(s, strerror(own[i])) != 0,
		              "%s: the system's words \"%s\"",
		              mproc_err_name(own[i]), s);
		ck_assert_str_ne(s, "unknown error");
	}
}
END_TEST

/*
 * Every other real errno gets the system's text (EBADF, EMFILE, a
 * failed fork's EAGAIN is mproc's own); no real errno is "unknown error",
 * which only a value no errno has gets (9999, INT_MIN).
 */
START_TEST(test_api_strerror_system_text)
{
	static const int sys[] = { CHECK_SYSTEM_ERRNOS };
	static const int none[] = { 9999, -9999, 4096, INT_MAX, -INT_MAX,
		                    INT_MIN };

	for (size_t i = 0; i < CHECK_NELEMS(sys); i++) {
		ck_assert_str_eq(mproc_strerror(-sys[i]), strerror(sys[i]));
		ck_assert_str_eq(mproc_strerror(sys[i]), strerror(sys[i]));
	}
	/* glibc says "Unknown error N" for a value that is no errno. */
	for (int e = 1; e < 4096; e++) {
		int real = strncmp(strerror(e), "Unknown error", 13) != 0;

		if (real)
			expect_msg(strcmp(mproc_strerror(-e),
			                  "unknown error") != 0,
			           "errno %d (%s) is \"unknown error\"", e,
			           strerror(e));
		else
			expect_msg(strcmp(mproc_strerror(-e),
			                  "unknown error") == 0,
			           "%d is no errno: \"%s\"", e,
			           mproc_strerror(-e));
	}
	for (size_t i = 0; i < CHECK_NELEMS(none); i++)
		ck_assert_str_eq(mproc_strerror(none[i]), "unknown error");
}
END_TEST

/* mproc_err_name: the symbol, for negative and positive values alike. */
START_TEST(test_api_err_name)
{
	static const struct {
		int err;
		const char *name;
	} want[] = {
		{ -EAGAIN, "EAGAIN" },   { EAGAIN, "EAGAIN" },
		{ -EWOULDBLOCK, "EAGAIN" }, { 0, "OK" },
		{ -EBADF, "EBADF" },     { EBADF, "EBADF" },
		{ -EMFILE, "EMFILE" },   { -ECHILD, "ECHILD" },
		{ -EPROTO, "EPROTO" },   { -ETIMEDOUT, "ETIMEDOUT" },
		{ -E2BIG, "E2BIG" },     { -ENOSYS, "ENOSYS" },
		{ 9999, "UNKNOWN" },     { -9999, "UNKNOWN" },
		{ INT_MIN, "UNKNOWN" },  { INT_MAX, "UNKNOWN" },
	};
	static const int own[] = { CHECK_MPROC_ERRNOS };

	for (size_t i = 0; i < CHECK_NELEMS(want); i++) {
		const char *s = mproc_err_name(want[i].err);

		ck_assert_ptr_nonnull(s);
		ck_assert_msg(strcmp(s, want[i].name) == 0,
		              "mproc_err_name(%d): \"%s\", want \"%s\"",
		              want[i].err, s, want[i].name);
		/* A static string, not a buffer of the call's. */
		ck_assert_ptr_eq(mproc_err_name(want[i].err), s);
	}
	/* Every real errno has its symbol, mproc's own codes included. */
	for (int e = 1; e < 4096; e++) {
		const char *s = mproc_err_name(-e);
		int real = strncmp(strerror(e), "Unknown error", 13) != 0;

		expect_msg(real ? s[0] == 'E' : strcmp(s, "UNKNOWN") == 0,
		           "mproc_err_name(%d): \"%s\"", -e, s);
	}
	for (size_t i = 0; i < CHECK_NELEMS(own); i++)
		ck_assert_str_ne(mproc_err_name(own[i]), "UNKNOWN");
}
END_TEST

/* INT_MIN has no positive counterpart: naming it must not negate it
 * (undefined behaviour, caught by -fsanitize=undefined). */
START_TEST(test_api_strerror_int_min)
{
	const char *s = mproc_strerror(INT_MIN);

	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "unknown error");
}
END_TEST

START_TEST(test_api_version)
{
	char want[32];

	ck_assert_ptr_nonnull(mproc_version());
	ck_assert_str_eq(mproc_version(), MPROC_VERSION_STRING);
	snprintf(want, sizeof(want), "%d.%d.%d", MPROC_VERSION_MAJOR,
	         MPROC_VERSION_MINOR, MPROC_VERSION_PATCH);
	ck_assert_str_eq(mproc_version(), want);
}
END_TEST

START_TEST(test_api_request_name)
{
	static const int32_t unknown[] = { 0, 4, -1, MPROC_USER - 1, INT32_MIN };
	static const int32_t user[] = { MPROC_USER, MPROC_USER + 5, INT32_MAX };

	ck_assert_str_eq(mproc_request_name(MPROC_DO), "DO");
	ck_assert_str_eq(mproc_request_name(MPROC_FINISHED), "FINISHED");
	ck_assert_str_eq(mproc_request_name(MPROC_DIE), "DIE");
	for (size_t i = 0; i < sizeof(user) / sizeof(user[0]); i++)
		ck_assert_str_eq(mproc_request_name(user[i]), "USER");
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		ck_assert_str_eq(mproc_request_name(unknown[i]), "UNKNOWN");
}
END_TEST

static mproc_msg api_to(pid_t recipient)
{
	mproc_msg m;

	memset(&m, 0, sizeof(m));
	m.recipient = recipient;
	return m;
}

START_TEST(test_api_for_me)
{
	pid_t me = getpid(), parent = getpid(), pid;
	mproc_msg m;

	m = api_to(MPROC_ANYONE);
	ck_assert_int_ne(mproc_for_me(&m, NULL), 0);
	m = api_to(me);
	ck_assert_int_ne(mproc_for_me(&m, NULL), 0);
	m = api_to(me + 1);
	ck_assert_int_eq(mproc_for_me(&m, NULL), 0);
	m = api_to(1);
	ck_assert_int_eq(mproc_for_me(&m, NULL), 0);
	m = api_to(-1);
	ck_assert_int_eq(mproc_for_me(&m, NULL), 0);
	ck_assert_int_eq(mproc_for_me(NULL, NULL), 0);

	/* After fork the child is "me", not the parent (the pid is cached). */
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		m = api_to(getpid());
		child_assert(mproc_for_me(&m, NULL) != 0);
		m = api_to(parent);
		child_assert(mproc_for_me(&m, NULL) == 0);
		m = api_to(MPROC_ANYONE);
		child_assert(mproc_for_me(&m, NULL) != 0);
		_exit(0);
	}
	check_reap_ok(pid, 5000);
	m = api_to(pid);
	ck_assert_int_eq(mproc_for_me(&m, NULL), 0);
}
END_TEST

/* The ready-made request matchers, on messages made here. */
START_TEST(test_api_match_request)
{
	const int32_t finished = MPROC_FINISHED, user = MPROC_USER + 3;
	mproc_msg m;

	m = api_to(MPROC_ANYONE);
	m.request = MPROC_FINISHED;
	ck_assert_int_ne(mproc_match_request(&m, (void *)&finished), 0);
	ck_assert_int_eq(mproc_match_request(&m, (void *)&user), 0);
	ck_assert_int_ne(mproc_match_request_for_me(&m, (void *)&finished),
	                 0);
	/* NULL matches nothing. */
	ck_assert_int_eq(mproc_match_request(&m, NULL), 0);
	ck_assert_int_eq(mproc_match_request_for_me(&m, NULL), 0);
	ck_assert_int_eq(mproc_match_request(NULL, (void *)&finished), 0);
	ck_assert_int_eq(mproc_match_request_for_me(NULL, (void *)&finished),
	                 0);

	m = api_to(getpid());
	m.request = MPROC_USER + 3;
	ck_assert_int_ne(mproc_match_request(&m, (void *)&user), 0);
	ck_assert_int_ne(mproc_match_request_for_me(&m, (void *)&user), 0);
	ck_assert_int_eq(mproc_match_request_for_me(&m, (void *)&finished),
	                 0);
	/* Someone else's: the request matches, the recipient does not. */
	m = api_to(getpid() + 1);
	m.request = MPROC_USER + 3;
	ck_assert_int_ne(mproc_match_request(&m, (void *)&user), 0);
	ck_assert_int_eq(mproc_match_request_for_me(&m, (void *)&user), 0);
}
END_TEST

/*
 * What a send accepts, on a queue (loop index 0) and a pipe (1): a
 * request code that is MPROC_DO, MPROC_FINISHED, MPROC_DIE or at least
 * MPROC_USER, and a recipient that is MPROC_ANYONE or a pid. Anything
 * else is -EINVAL from mproc_send and mproc_send_msg alike, and nothing
 * is queued: nothing to receive, no task for a join to wait for.
 */
START_TEST(test_api_send_checks_request)
{
	static const int32_t bad[] = { 0, -1, 4, 1023, MPROC_USER - 1,
		                       INT32_MIN, -MPROC_DO };
	static const int32_t good[] = { MPROC_DO, MPROC_FINISHED, MPROC_DIE,
		                        MPROC_USER, INT32_MAX };
	static const pid_t bad_to[] = { -1, -2, INT32_MIN };
	int is_queue = _i == 0;
	mproc_conn *tx, *rx;
	char buf[8];
	long long t0;
	mproc_msg m;

	if (is_queue) {
		tx = rx = queue_new(0, 0, 0, 0);
	} else {
		ck_assert_int_eq(mproc_pipe_open(&tx, &rx), 0);
	}
	for (size_t i = 0; i < CHECK_NELEMS(bad); i++) {
		memset(&m, 0, sizeof(m));
		m.request = bad[i];
		m.data = "x";
		m.size = 1;
		ck_assert_int_eq(mproc_send(tx, bad[i], MPROC_ANYONE, "x", 1),
		                 -EINVAL);
		ck_assert_int_eq(mproc_send(tx, bad[i], getpid(), NULL, 0),
		                 -EINVAL);
		ck_assert_int_eq(mproc_send_msg(tx, &m, MPROC_NOWAIT), -EINVAL);
		ck_assert_int_eq(mproc_send_msg(tx, &m, 1000), -EINVAL);
	}
	for (size_t i = 0; i < CHECK_NELEMS(bad_to); i++) {
		memset(&m, 0, sizeof(m));
		m.request = MPROC_DO;
		m.recipient = bad_to[i];
		ck_assert_int_eq(mproc_send(tx, MPROC_DO, bad_to[i], "x", 1),
		                 -EINVAL);
		ck_assert_int_eq(mproc_send_msg(tx, &m, MPROC_NOWAIT), -EINVAL);
	}
	/* Nothing went out. */
	ck_assert_int_eq(recv_t(rx, &m, buf, sizeof(buf), NULL, NULL,
	                        MPROC_NOWAIT),
	                 -EAGAIN);
	if (is_queue) {
		mproc_stats st = stats_of(tx);

		ck_assert_uint_eq(st.sent + st.queued + st.bytes +
		                          st.unfinished,
		                  0);
		ck_assert_int_eq(mproc_queue_join(tx, MPROC_NOWAIT), 0);
	}

	/* The good ones go, both ways, and come out as sent. */
	for (size_t i = 0; i < CHECK_NELEMS(good); i++) {
		int32_t v = (int32_t)i;

		ck_assert_int_eq(mproc_send(tx, good[i], MPROC_ANYONE, &v,
		                            sizeof(v)),
		                 0);
		ck_assert_int_eq(send_t(tx, good[i], getpid(), &v, sizeof(v),
		                        1000),
		                 0);
	}
	for (size_t i = 0; i < 2 * CHECK_NELEMS(good); i++) {
		int32_t v;

		ck_assert_int_eq(recv_t(rx, &m, &v, sizeof(v), NULL, NULL,
		                        1000),
		                 0);
		ck_assert_int_eq(m.request, good[i / 2]);
		ck_assert_int_eq(m.recipient, i % 2 ? getpid() : MPROC_ANYONE);
		ck_assert_int_eq(v, (int32_t)(i / 2));
	}
	ck_assert_int_eq(recv_t(rx, &m, buf, sizeof(buf), NULL, NULL,
	                        MPROC_NOWAIT),
	                 -EAGAIN);
	if (is_queue) {
		t0 = check_now_ms();
		ck_assert_int_eq(mproc_queue_join(tx, 1000), 0);
		ck_assert_int_lt(check_now_ms() - t0, check_scale_ms(100));
		ck_assert_uint_eq(stats_of(tx).sent, 2 * CHECK_NELEMS(good));
	} else {
		mproc_close(rx);
	}
	mproc_close(tx);
}
END_TEST

START_TEST(test_api_null_handles)
{
	mproc_conn *x = NULL;
	mproc_stats st;
	mproc_msg m;

	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(mproc_pipe_open(NULL, NULL), -EINVAL);
	ck_assert_int_eq(mproc_pipe_open(NULL, &x), -EINVAL);
	ck_assert_int_eq(mproc_pipe_open(&x, NULL), -EINVAL);
	ck_assert_int_eq(mproc_pipe_open(&x, &x), -EINVAL);
	ck_assert_int_eq(mproc_queue_open(NULL, NULL), -EINVAL);
	ck_assert_ptr_null(x);

	ck_assert_int_eq(mproc_send(NULL, MPROC_DO, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_send_msg(NULL, &m, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_recv(NULL, &m, NULL, NULL, MPROC_NOWAIT),
	                 -EINVAL);
	ck_assert_int_eq(mproc_close(NULL), -EINVAL);
	ck_assert_int_eq(mproc_fd(NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_empty(NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(NULL, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_queue_shutdown(NULL), -EINVAL);
	ck_assert_int_eq(mproc_task_done(NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(mproc_queue_purge(NULL), -EINVAL);
}
END_TEST

START_TEST(test_api_bad_arguments_on_pipe)
{
	mproc_conn *a, *b;
	mproc_msg m;
	char c[4];

	ck_assert_int_eq(mproc_pipe_open(&a, &b), 0);
	memset(&m, 0, sizeof(m));

	ck_assert_int_eq(mproc_send_msg(a, NULL, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_recv(a, NULL, NULL, NULL, MPROC_NOWAIT),
	                 -EINVAL);
	ck_assert_int_eq(mproc_send(a, MPROC_DO, 0, NULL, 1), -EINVAL);
	m.size = 1; /* data NULL */
	ck_assert_int_eq(mproc_send_msg(a, &m, MPROC_NOWAIT), -EINVAL);
	m.size = 0;
	m.capacity = 1; /* data NULL */
	ck_assert_int_eq(mproc_recv(a, &m, NULL, NULL, MPROC_NOWAIT), -EINVAL);
	m.capacity = 0;
	ck_assert_int_eq(mproc_send_msg(a, &m, -2), -EINVAL);
	ck_assert_int_eq(mproc_recv(a, &m, NULL, NULL, -2), -EINVAL);
	ck_assert_int_eq(mproc_recv(a, &m, NULL, NULL, INT_MIN), -EINVAL);

	/* Queue-only calls on a pipe end. */
	ck_assert_int_eq(mproc_queue_empty(a), -EINVAL);
	ck_assert_int_eq(mproc_queue_join(a, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_queue_shutdown(a), -EINVAL);
	ck_assert_int_eq(mproc_task_done(a), -EINVAL);
	ck_assert_int_eq(mproc_queue_stats(a, NULL), -EINVAL);
	ck_assert_int_eq(mproc_queue_purge(a), -EINVAL);
	ck_assert_int_ge(mproc_fd(a), 0);

	/* Nothing above touched the pipe. */
	ck_assert_int_eq(mproc_recv(b, &m, NULL, NULL, MPROC_NOWAIT), -EAGAIN);
	ck_assert_int_eq(mproc_send(a, MPROC_DIE, 0, "die", 3), 0);
	m.data = c;
	m.capacity = sizeof(c);
	ck_assert_int_eq(mproc_recv(b, &m, NULL, NULL, 1000), 0);
	ck_assert_int_eq(m.request, MPROC_DIE);
	ck_assert_uint_eq(m.size, 3);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_close(b), 0);

	/* A closed handle answers -EINVAL, a second close included. */
	ck_assert_int_eq(mproc_close(a), -EINVAL);
	ck_assert_int_eq(mproc_fd(a), -EINVAL);
	ck_assert_int_eq(mproc_send(a, MPROC_DO, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(mproc_recv(b, &m, NULL, NULL, MPROC_NOWAIT), -EINVAL);
	ck_assert_int_eq(mproc_queue_empty(a), -EINVAL);
}
END_TEST

Suite *api_suite(void);

Suite *api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc;

	tc = check_tcase(s, "names");
	tcase_add_test(tc, test_api_strerror_table);
	tcase_add_test(tc, test_api_strerror_unknown);
	tcase_add_test(tc, test_api_strerror_int_min);
	tcase_add_test(tc, test_api_strerror_own_words);
	tcase_add_test(tc, test_api_strerror_system_text);
	tcase_add_test(tc, test_api_err_name);
	tcase_add_test(tc, test_api_version);
	tcase_add_test(tc, test_api_request_name);
	tcase_add_test(tc, test_api_for_me);
	tcase_add_test(tc, test_api_match_request);

	tc = check_tcase(s, "arguments");
	tcase_add_test(tc, test_api_null_handles);
	tcase_add_test(tc, test_api_bad_arguments_on_pipe);
	tcase_add_loop_test(tc, test_api_send_checks_request, 0, 2);

	return s;
}

int main(void)
{
	return check_run_suite(api_suite());
}
