/*
 * check_alloc.c - no allocation on the message path. malloc and friends
 * are interposed here (the test links the library statically) and counted
 * while a queue and a pipe carry thousands of messages, through every
 * receive outcome: taken, rejected by a predicate, too big for the buffer,
 * nothing there. The count must be zero.
 */
#include <stdint.h>

#include "check_common.h"

#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer owns malloc: interposing it here would bypass ASan.
 * The normal build runs this test; here it is skipped (exit 77). */
int main(void)
{
	return 77;
}
#else

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

static volatile int counting;
static volatile unsigned long allocs;

void *malloc(size_t n)
{
	if (counting)
		allocs++;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	if (counting)
		allocs++;
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	if (counting)
		allocs++;
	return __libc_realloc(p, n);
}

void free(void *p)
{
	__libc_free(p);
}

static int odd_request(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->request % 2 == 1;
}

/* Sends and receives n messages of every kind; returns failures. */
static int exercise(mproc_conn *tx, mproc_conn *rx, int n)
{
	char out[512], in[512];
	mproc_msg m;
	int i, bad = 0;

	memset(out, 'x', sizeof(out));
	for (i = 0; i < n; i++) {
		size_t size = (size_t)(i * 37) % sizeof(out);

		bad += mproc_send(tx, MPROC_USER + 2, 0, out, size) != 0;
		bad += mproc_send(tx, MPROC_USER + 1, getpid(), out, 8) != 0;
		memset(&m, 0, sizeof(m));
		m.data = in;
		m.capacity = sizeof(in);
		/* Rejected by the predicate, then taken. */
		bad += mproc_recv(rx, &m, odd_request, NULL, 1000) != 0;
		bad += m.request != MPROC_USER + 1;
		bad += mproc_recv(rx, &m, mproc_for_me, NULL, 1000) != 0;
		/* Nothing there. */
		bad += mproc_recv(rx, &m, NULL, NULL, MPROC_NOWAIT) != -EAGAIN;
		/* Too big for the buffer, then taken. */
		bad += mproc_send(tx, MPROC_DO, 0, out, 100) != 0;
		m.capacity = 10;
		bad += mproc_recv(rx, &m, NULL, NULL, 1000) != -EMSGSIZE;
		m.capacity = sizeof(in);
		bad += mproc_recv(rx, &m, NULL, NULL, 1000) != 0;
	}
	return bad;
}

START_TEST(test_alloc_queue_path)
{
	mproc_conn *q;
	mproc_stats st;
	int bad;

	ck_assert_int_eq(mproc_queue_open(&q, NULL), 0);
	bad = exercise(q, q, 100); /* warm-up, as every test does */
	allocs = 0;
	counting = 1;
	bad += exercise(q, q, 5000);
	bad += mproc_queue_join(q, 1000) != 0;
	bad += mproc_queue_stats(q, &st) != 0;
	counting = 0;
	ck_assert_int_eq(bad, 0);
	ck_assert_msg(allocs == 0, "%lu allocations on the queue's path",
	              allocs);
	mproc_close(q);
}
END_TEST

START_TEST(test_alloc_pipe_path)
{
	mproc_conn *a, *b;
	int bad;

	ck_assert_int_eq(mproc_pipe_open(&a, &b), 0);
	/* Buffers grow to the largest frame seen, once. */
	bad = exercise(a, b, 100);
	allocs = 0;
	counting = 1;
	bad += exercise(a, b, 5000);
	counting = 0;
	ck_assert_int_eq(bad, 0);
	ck_assert_msg(allocs == 0, "%lu allocations on the pipe's path",
	              allocs);
	mproc_close(a);
	mproc_close(b);
}
END_TEST

/* The queue's memory is its mapping: capacity plus a fixed header. */
START_TEST(test_alloc_queue_footprint)
{
	mproc_queue_opts o = { 1 << 16, 0, 1024, 0, 0 };
	mproc_conn *q;
	mproc_stats st;

	ck_assert_int_eq(mproc_queue_open(&q, &o), 0);
	ck_assert_int_eq(mproc_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.capacity, 1 << 16);
	ck_assert_int_eq(exercise(q, q, 200), 0);
	ck_assert_int_eq(mproc_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.bytes, 0);
	mproc_close(q);
}
END_TEST

static Suite *alloc_suite(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = check_tcase(s, "alloc");

	tcase_add_test(tc, test_alloc_queue_path);
	tcase_add_test(tc, test_alloc_pipe_path);
	tcase_add_test(tc, test_alloc_queue_footprint);
	return s;
}

int main(void)
{
	return check_run_suite(alloc_suite());
}
#endif /* __SANITIZE_ADDRESS__ */
