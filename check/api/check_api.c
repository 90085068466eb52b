/*
 * check_api.c - the common API: error names, version, request names,
 * mproc_for_me, and argument checking on every common entry point.
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
	tcase_add_test(tc, test_api_version);
	tcase_add_test(tc, test_api_request_name);
	tcase_add_test(tc, test_api_for_me);

	tc = check_tcase(s, "arguments");
	tcase_add_test(tc, test_api_null_handles);
	tcase_add_test(tc, test_api_bad_arguments_on_pipe);

	return s;
}

int main(void)
{
	return check_run_suite(api_suite());
}
