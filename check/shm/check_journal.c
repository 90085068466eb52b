/*
 * check_journal.c - the side journal of the shared-memory toolkit
 * (shm/journal.h), on its own: a side and a small ring in a mapping of
 * the test's, no queue around them.
 *
 * A commit changes at most MPROC__JOURNAL_WORDS words (and one record's
 * mark): a larger one is refused loudly (-E2BIG), nothing applied and the
 * journal not left pending. A commit cut by a crash point leaves its
 * journal pending, and mproc__journal_overlay gives the words it leaves.
 * mproc__side_snapshot reads the words without the lock: -EAGAIN while a
 * commit is pending, and otherwise a state the side was in, even while
 * another thread commits.
 */
#include <pthread.h>
#include <stdint.h>

#include "base/lock.h"
#include "check_common.h"
#include "shm/journal.h"

#define J_RING 256 /* bytes of the test's ring */

/* A side and a ring, shared with the children forked after. */
struct jside {
	struct mproc__side side;
	uint8_t ring_bytes[J_RING] __attribute__((aligned(8)));
};

static struct jside *jside_new(struct mproc__ring *ring)
{
	struct jside *j = shm_alloc(sizeof(*j));
	struct mproc__rec r;

	ck_assert_int_eq(mproc__lock_init(&j->side.lock), 0);
	j->side.journal.mark.off = UINT64_MAX;
	for (unsigned i = 0; i < MPROC__SIDE_WORDS; i++)
		j->side.w[i] = 100 + i;
	mproc__ring_init(ring, j->ring_bytes, J_RING);
	/* One record at 0, for the marks. */
	memset(&r, 0, sizeof(r));
	r.magic = MPROC__REC_MAGIC;
	r.len = (uint32_t)mproc__rec_len(0);
	r.lease_pid = 7;
	mproc__ring_copy_in(ring, 0, &r, sizeof(r));
	return j;
}

static void jside_free(struct jside *j)
{
	munmap(j, sizeof(*j));
}

/* The mark of a take of the record at 0. */
static struct mproc__mark j_mark(void)
{
	struct mproc__mark mk = { 0, MPROC__REC_CONSUMED, 3, 0, 0 };

	return mk;
}

/*
 * Loop index: how many of the side's words change (0..8). Up to
 * MPROC__JOURNAL_WORDS commit, in full; more are -E2BIG, and then the
 * words, the record and the journal are as they were.
 */
START_TEST(test_journal_commit_size)
{
	struct mproc__ring ring;
	struct jside *j = jside_new(&ring);
	struct mproc__side *sd = &j->side;
	uint64_t old[MPROC__SIDE_WORDS], nw[MPROC__SIDE_WORDS];
	uint64_t now[MPROC__SIDE_WORDS];
	uint8_t ring_before[J_RING];
	struct mproc__mark mk = j_mark();
	struct mproc__rec r;
	unsigned changed = (unsigned)_i;
	uint32_t seq0;
	int rc;

	mproc__words_load(sd, old, MPROC__SIDE_WORDS);
	memcpy(nw, old, sizeof(nw));
	/* Every other word first: the changed ones are not all in front. */
	for (unsigned k = 0; k < changed; k++)
		nw[k < 4 ? 2 * k : 2 * (k - 4) + 1] += 1000;
	memcpy(ring_before, j->ring_bytes, sizeof(ring_before));
	seq0 = sd->journal.seq;

	ck_assert_int_eq(pthread_mutex_lock(&sd->lock), 0);
	rc = mproc__side_commit(&ring, sd, MPROC__SIDE_WORDS, old, nw, &mk,
	                        MPROC__CRASH_NONE);
	pthread_mutex_unlock(&sd->lock);

	mproc__words_load(sd, now, MPROC__SIDE_WORDS);
	ck_assert(!mproc__journal_pending(sd));
	mproc__ring_copy_out(&ring, 0, &r, sizeof(r));
	if (changed <= MPROC__JOURNAL_WORDS) {
		ck_assert_msg(rc == 0, "%u words: %s", changed,
		              mproc_strerror(rc));
		ck_assert_mem_eq(now, nw, sizeof(nw));
		ck_assert_uint_eq(r.flags, MPROC__REC_CONSUMED);
		ck_assert_uint_eq(r.attempts, 3);
		ck_assert_int_eq(r.lease_pid, 0);
		ck_assert_uint_eq(sd->journal.seq, seq0 + 2);
	} else {
		ck_assert_msg(rc == -E2BIG, "%u words: %d (%s)", changed, rc,
		              mproc_strerror(rc));
		ck_assert_mem_eq(now, old, sizeof(old));
		ck_assert_mem_eq(j->ring_bytes, ring_before, J_RING);
		ck_assert_uint_eq(sd->journal.seq, seq0);
		/* Refused, not stuck: a commit that fits goes through. */
		nw[0] = old[0] + 1;
		memcpy(nw + 1, old + 1, sizeof(nw) - sizeof(nw[0]));
		rc = mproc__side_commit(&ring, sd, MPROC__SIDE_WORDS, old, nw,
		                        NULL, MPROC__CRASH_NONE);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(sd->w[0], old[0] + 1);
		ck_assert(!mproc__journal_pending(sd));
	}
	jside_free(j);
}
END_TEST

/*
 * A commit cut by its crash point (the writer killed between journal and
 * apply, or after the apply): the journal is pending, and
 * mproc__journal_overlay gives the words the commit leaves; closing the
 * journal ends the pending state. Loop index: 0 cut before the apply, 1
 * after.
 */
START_TEST(test_journal_overlay_after_crash)
{
	struct mproc__ring ring;
	struct jside *j = jside_new(&ring);
	struct mproc__side *sd = &j->side;
	uint64_t old[MPROC__SIDE_WORDS], nw[MPROC__SIDE_WORDS];
	uint64_t got[MPROC__SIDE_WORDS];
	int applied = _i;
	pid_t pid;

	mproc__words_load(sd, old, MPROC__SIDE_WORDS);
	memcpy(nw, old, sizeof(nw));
	nw[1] += 5;
	nw[2] += 6;
	nw[6] += 7;
	pid = check_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct mproc__mark mk = j_mark();

		mproc__crash_point = applied ? MPROC__CRASH_SEND_APPLIED
		                             : MPROC__CRASH_SEND_COMMIT;
		mproc__crash_countdown = 1;
		pthread_mutex_lock(&sd->lock);
		mproc__side_commit(&ring, sd, MPROC__SIDE_WORDS, old, nw, &mk,
		                   MPROC__CRASH_SEND_COMMIT);
		_exit(3); /* the crash point never fired */
	}
	check_reap_killed(pid);

	ck_assert(mproc__journal_pending(sd));
	mproc__words_load(sd, got, MPROC__SIDE_WORDS);
	ck_assert_mem_eq(got, applied ? nw : old, sizeof(got));
	memset(got, 0, sizeof(got));
	ck_assert_int_eq(mproc__journal_overlay(sd, MPROC__SIDE_WORDS, got), 0);
	ck_assert_mem_eq(got, nw, sizeof(got));
	ck_assert_uint_eq(sd->journal.mark.off, 0);
	ck_assert_uint_eq(sd->journal.mark.flags, MPROC__REC_CONSUMED);
	/* A journal no commit could write: a word beyond those asked for. */
	ck_assert_int_eq(mproc__journal_overlay(sd, 3, got), -EPROTO);
	ck_assert_int_eq(mproc__journal_overlay(sd, MPROC__SIDE_WORDS + 1,
	                                        got),
	                 -EPROTO);
	/* A pending journal is no snapshot. */
	ck_assert_int_eq(mproc__side_snapshot(sd, MPROC__SIDE_WORDS, got, NULL),
	                 -EAGAIN);
	mproc__words_store(sd, nw, MPROC__SIDE_WORDS);
	mproc__journal_close(sd);
	ck_assert(!mproc__journal_pending(sd));
	ck_assert_int_eq(mproc__side_snapshot(sd, MPROC__SIDE_WORDS, got, NULL),
	                 0);
	ck_assert_mem_eq(got, nw, sizeof(got));
	jside_free(j);
}
END_TEST

/* -EAGAIN while seq is odd (a commit pending); the words and seq else. */
START_TEST(test_journal_snapshot_pending)
{
	struct mproc__ring ring;
	struct jside *j = jside_new(&ring);
	struct mproc__side *sd = &j->side;
	const unsigned n = MPROC__SIDE_WORDS;
	uint64_t want[MPROC__SIDE_WORDS], got[MPROC__SIDE_WORDS];
	uint32_t seq = 12345;

	mproc__words_load(sd, want, MPROC__SIDE_WORDS);
	for (uint32_t s = 0; s < 6; s++) {
		sd->journal.seq = s;
		memset(got, 0, sizeof(got));
		seq = 12345;
		if (s & 1u) {
			ck_assert_int_eq(mproc__side_snapshot(sd, n, got, &seq),
			                 -EAGAIN);
			ck_assert_uint_eq(seq, 12345); /* untouched */
		} else {
			ck_assert_int_eq(mproc__side_snapshot(sd, n, got, &seq),
			                 0);
			ck_assert_mem_eq(got, want, sizeof(got));
			ck_assert_uint_eq(seq, s);
			ck_assert_int_eq(mproc__side_snapshot(sd, 3, got,
			                                      NULL),
			                 0);
		}
	}
	sd->journal.seq = UINT32_MAX; /* odd */
	ck_assert_int_eq(mproc__side_snapshot(sd, n, got, NULL), -EAGAIN);
	jside_free(j);
}
END_TEST

/*
 * A writer thread commits states whose words agree with each other
 * (w1 = 2 w0, w2 = w0 + 7, w3 = ~w0) as fast as it can while the test
 * reads snapshots for a while: every snapshot that returns 0 is one of
 * those states, and they only go forward.
 */
struct snap_writer {
	struct mproc__side *sd;
	const struct mproc__ring *ring;
	uint32_t stop;
	uint64_t last; /* the last state committed */
};

static void *snap_write(void *arg)
{
	struct snap_writer *w = arg;
	uint64_t old[4], nw[4], i;

	mproc__words_load(w->sd, old, 4);
	for (i = 1; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
		nw[0] = i;
		nw[1] = 2 * i;
		nw[2] = i + 7;
		nw[3] = ~i;
		pthread_mutex_lock(&w->sd->lock);
		if (mproc__side_commit(w->ring, w->sd, 4, old, nw, NULL,
		                       MPROC__CRASH_NONE) != 0)
			abort();
		pthread_mutex_unlock(&w->sd->lock);
		memcpy(old, nw, sizeof(old));
	}
	w->last = i - 1;
	return NULL;
}

START_TEST(test_journal_snapshot_consistent)
{
	struct mproc__ring ring;
	struct jside *j = jside_new(&ring);
	struct snap_writer w = { &j->side, &ring, 0, 0 };
	unsigned long ok = 0, busy = 0;
	uint64_t last = 0, got[4];
	long long end = check_now_ms() + 300;
	pthread_t tid;
	int rc;

	ck_assert_int_eq(pthread_create(&tid, NULL, snap_write, &w), 0);
	while (check_now_ms() < end) {
		rc = mproc__side_snapshot(&j->side, 4, got, NULL);
		if (rc == -EAGAIN) {
			busy++;
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ok++;
		if (got[0] == 100) /* the first state, before any commit */
			continue;
		expect_msg(got[1] == 2 * got[0] && got[2] == got[0] + 7 &&
		           got[3] == ~got[0] && got[0] >= last,
		           "snapshot %lu: a torn state %llu %llu %llu %llu "
		           "(last %llu)", ok, (unsigned long long)got[0],
		           (unsigned long long)got[1],
		           (unsigned long long)got[2],
		           (unsigned long long)got[3],
		           (unsigned long long)last);
		last = got[0];
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);
	/* Quiet now: the last state, at once. */
	ck_assert_int_eq(mproc__side_snapshot(&j->side, 4, got, NULL), 0);
	ck_assert_uint_eq(got[0], w.last);
	ck_assert_uint_eq(got[3], ~w.last);
	if (getenv("MPROC_TEST_VERBOSE"))
		fprintf(stderr, "snapshots: %lu whole, %lu busy, %llu "
		        "commits\n", ok, busy, (unsigned long long)w.last);
	jside_free(j);
}
END_TEST

Suite *journal_suite(void);

Suite *journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc = check_tcase(s, "commit");

	tcase_add_loop_test(tc, test_journal_commit_size, 0,
	                    MPROC__SIDE_WORDS + 1);
	tcase_add_loop_test(tc, test_journal_overlay_after_crash, 0, 2);
	tc = check_tcase(s, "snapshot");
	tcase_add_test(tc, test_journal_snapshot_pending);
	tcase_add_test(tc, test_journal_snapshot_consistent);
	return s;
}

int main(void)
{
	return check_run_suite(journal_suite());
}
