/*
 * check_corrupt.c - the queue's shared state scribbled on, as if a peer
 * wrote garbage into the mapping: its identity, the words of both sides,
 * record headers, the journals (a pending one nobody is writing, garbage
 * left by a dead owner, a sound one), random bytes anywhere but the
 * locks; and commits cut where no hook can reach (part of the state
 * applied). Every call returns 0 or an error the contract allows,
 * promptly, never crashes or reads out of bounds; what is caught is
 * refused (-EPROTO), and once the damage is undone the queue is healthy.
 *
 * The tests aim at named fields of the library's own layout
 * (check_layout.h), and cut commits the library's own commit journalled
 * (a child killed at SEND_COMMIT or RECV_COMMIT, then the first words of
 * what mproc__journal_overlay says it leaves applied by hand).
 */
#include <stddef.h>
#include <stdint.h>

#include "check_common.h"
#include "check_layout.h"
#include "check_pay.h"
#include "check_rng.h"

#define CQ_CAP 2048u  /* a power of two: ring positions are masked */
#define CQ_CAP_ODD 2008u /* not one: ring positions are divided */
#define CQ_PAYLOAD 200u

struct cq {
	mproc_conn *q;
	struct mproc__queue_shared *s;
	struct mproc__ring ring; /* the ring, as the library addresses it */
	size_t len;
	uint64_t cap;
	int manual;
};

static struct mproc__side *cq_side(const struct cq *c, int side)
{
	return side == SIDE_SEND ? &c->s->send : &c->s->recv;
}

static uint64_t cq_head(const struct cq *c)
{
	return c->s->recv.w[QC_HEAD];
}

static uint64_t cq_tail(const struct cq *c)
{
	return c->s->send.w[QP_TAIL];
}

/* A pointer to a header field of the record at off (never straddles). */
static void *rec_at(const struct cq *c, uint64_t off, size_t field)
{
	return mproc__ring_at(&c->ring, off + field);
}

static uint32_t rec_u32(const struct cq *c, uint64_t off, size_t field)
{
	uint32_t v;

	memcpy(&v, rec_at(c, off, field), sizeof(v));
	return v;
}

/* Sends n whole messages of random sizes, seq first, first + 1, ...;
 * returns how many fit. */
static int cq_fill_from(struct cq *c, int first, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		uint32_t size = rng_range(sizeof(struct pay), CQ_PAYLOAD);

		if (send_pay(c->q, size, 3, 0, (uint64_t)(first + i),
		             MPROC_NOWAIT) != 0)
			break;
	}
	return i;
}

static int cq_fill(struct cq *c, int n)
{
	return cq_fill_from(c, 0, n);
}

/* Fills the ring until not even the smallest message fits; returns how
 * many it sent (seq 0, 1, ...). */
static int cq_fill_up(struct cq *c)
{
	int n = cq_fill(c, 64);
	uint64_t room;

	while ((room = c->cap - (cq_tail(c) - cq_head(c))) >=
	       mproc__rec_len(sizeof(struct pay))) {
		uint64_t size = room - MPROC__REC_HDR;

		if (size > CQ_PAYLOAD)
			size = CQ_PAYLOAD;
		ck_assert_int_eq(send_pay(c->q, (uint32_t)size, 3, 0,
		                          (uint64_t)n, MPROC_NOWAIT),
		                 0);
		n++;
	}
	return n;
}

static int pred_odd_seq(const mproc_msg *m, void *arg)
{
	struct pay p;

	MPROC__UNUSED(arg);
	return m->size >= sizeof(p) && memcpy(&p, m->data, sizeof(p)) &&
	       p.seq % 2 == 1;
}

/* Takes only the message whose pay seq is *(uint64_t *)arg. */
static int pred_seq(const mproc_msg *m, void *arg)
{
	struct pay p;

	return m->size >= sizeof(p) && memcpy(&p, m->data, sizeof(p)) &&
	       p.seq == *(const uint64_t *)arg;
}

/* The records from head to tail, checked as the library reads them
 * (stops at the first bad one); *end (if not NULL): where it stopped. */
static int cq_records(const struct cq *c, uint64_t *offs, int max,
                      uint64_t *end)
{
	uint64_t off = cq_head(c), tail = cq_tail(c);
	struct mproc__rec r;
	int n = 0;

	while (off < tail && n < max &&
	       mproc__rec_read(&c->ring, off, tail, CQ_PAYLOAD, &r) == 0) {
		offs[n++] = off;
		off += r.len;
	}
	if (end != NULL)
		*end = off;
	return n;
}

#define premise(cond, what)                                                   \
	ck_assert_msg((cond), "corrupt_open: %s is not as expected", what)

/* The words of both sides after sent sends, gone takes, taken not done. */
static void cq_expect_words(const struct cq *c, uint64_t sent, uint64_t gone,
                            uint64_t taken, const char *when)
{
	const struct mproc__queue_shared *s = c->s;

	uint64_t held = s->recv.w[QC_TAKEN];

	/* Taken tasks are counted in the takers' slots (and QC_TAKEN when
	 * no slot is free). */
	for (int i = 0; i < MPROC__QUEUE_TAKERS; i++)
		held += s->takers[i].taken;
	premise(s->send.w[QP_SENT] == sent && s->recv.w[QC_GONE] == gone &&
	        s->recv.w[QC_RECEIVED] == gone &&
	        held == taken && s->recv.w[QC_LEASED] == 0 &&
	        s->recv.w[QC_PURGED] == 0 && s->recv.w[QC_GEN] == 0,
	        when);
	premise(cq_head(c) % 8 == 0 && cq_tail(c) % 8 == 0 &&
	        cq_head(c) <= cq_tail(c) && cq_tail(c) - cq_head(c) <= c->cap &&
	        s->send.w[QP_DTAIL] <= cq_tail(c),
	        when);
	premise(!mproc__journal_pending(&s->send) &&
	        !mproc__journal_pending(&s->recv) &&
	        s->send.journal.mark.off == UINT64_MAX,
	        when);
}

/*
 * corrupt_open: a fresh queue holding a few messages (some taken out of
 * the middle, so consumed records and a moved head exist), the state the
 * tests start from checked.
 */
static void corrupt_open(struct cq *c, int manual, int odd_cap)
{
	uint8_t buf[CQ_PAYLOAD];
	uint64_t offs[64], end, head0;
	mproc_stats st;
	mproc_msg m;
	int n0, n, rc;

	memset(c, 0, sizeof(*c));
	c->manual = manual;
	c->cap = odd_cap ? CQ_CAP_ODD : CQ_CAP;
	c->q = queue_new(c->cap, CQ_PAYLOAD, 0,
	                 manual ? MPROC_QUEUE_MANUAL_DONE : 0);
	c->s = check_queue_shared(c->q, &c->len);
	mproc__ring_init(&c->ring, (uint8_t *)c->s + MPROC__QUEUE_HDR, c->cap);
	premise(c->s->capacity == c->cap && c->s->max_payload == CQ_PAYLOAD &&
	        c->s->max_messages == 0 &&
	        c->s->flags == (manual ? MPROC_QUEUE_MANUAL_DONE : 0u) &&
	        c->len == MPROC__QUEUE_HDR + c->cap,
	        "the geometry");
	premise(c->s->recv.journal.mark.off == UINT64_MAX &&
	        c->s->send.recoveries == 0 && c->s->recv.recoveries == 0 &&
	        cq_head(c) == 0 && cq_tail(c) == 0,
	        "a fresh queue");
	cq_expect_words(c, 0, 0, 0, "a fresh queue");

	/* Move the head away from 0 so records wrap at the ring's end. */
	n0 = cq_fill(c, (int)rng_range(0, 6));
	cq_expect_words(c, (uint64_t)n0, 0, 0, "after sends");
	premise(cq_records(c, offs, 64, &end) == n0 && end == cq_tail(c),
	        "the records after sends");
	for (int i = 0; i < n0; i++) {
		int torn;
		struct pay p;

		ck_assert_int_eq(recv_pay(c->q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
		                          &torn), 0);
	}
	cq_expect_words(c, (uint64_t)n0, (uint64_t)n0,
	                manual ? (uint64_t)n0 : 0, "after receives");
	premise(cq_head(c) == cq_tail(c), "the head after receives");
	head0 = cq_head(c);
	if (manual)
		for (int i = 0; i < n0; i++)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	n = cq_fill(c, (int)rng_range(3, 12));
	cq_expect_words(c, (uint64_t)(n0 + n), (uint64_t)n0, 0,
	                "after more sends");
	premise(cq_head(c) == head0 &&
	        cq_records(c, offs, 64, &end) == n && end == cq_tail(c),
	        "the records after more sends");
	st = stats_of(c->q);
	premise(st.sent == c->s->send.w[QP_SENT] &&
	        st.received == c->s->recv.w[QC_RECEIVED] &&
	        st.queued == (uint64_t)n && st.unfinished == (uint64_t)n &&
	        st.bytes == cq_tail(c) - cq_head(c) && st.purged == 0 &&
	        st.recoveries == 0 && st.capacity == c->cap,
	        "the stats");
	/* Holes: take some odd ones out of the middle. */
	for (int i = (int)rng_range(0, 2); i > 0; i--) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = sizeof(buf);
		rc = mproc_recv(c->q, &m, pred_odd_seq, NULL, MPROC_NOWAIT);
		if (rc == 0 && manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
}

static void corrupt_close(struct cq *c)
{
	mproc_close(c->q);
	memset(c, 0, sizeof(*c));
}

/*
 * Kill a child while it holds lock side, so the next call that takes it
 * repairs: the LOCKED hook ends it right after the lock is taken, before
 * anything changed, in a send (the send lock) or in an empty (the receive
 * lock).
 */
static void cq_dead_owner(struct cq *c, int side)
{
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc__crash_point = MPROC__CRASH_LOCKED;
		mproc__crash_countdown = 1;
		if (side == SIDE_SEND)
			send_pay(c->q, sizeof(struct pay), 5, 0, 0,
			         MPROC_NOWAIT);
		else
			mproc_queue_empty(c->q);
		_exit(3);
	}
	check_reap_killed(pid);
}

static int point_sends(int point)
{
	return point == MPROC__CRASH_SEND_COMMIT ||
	       point == MPROC__CRASH_SEND_APPLIED;
}

/*
 * cq_dead_commit: a child killed by crash point `point` in the middle of
 * a commit of the library's own, its journal left pending and its lock's
 * owner dead: a send (SEND_COMMIT: nothing applied; SEND_APPLIED: all
 * applied) of a message of size bytes numbered seq, or a take
 * (RECV_COMMIT, RECV_APPLIED) of the oldest message, or with want not
 * NULL of the one numbered *want.
 */
static void cq_dead_commit(struct cq *c, int point, uint32_t size,
                           uint64_t seq, uint64_t *want)
{
	int side = point_sends(point) ? SIDE_SEND : SIDE_RECV;
	pid_t pid = check_fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t buf[CQ_PAYLOAD];
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

		mproc__crash_point = point;
		mproc__crash_countdown = 1;
		if (side == SIDE_SEND)
			send_pay(c->q, size, 3, 0, seq, MPROC_NOWAIT);
		else
			mproc_recv(c->q, &m, want != NULL ? pred_seq : NULL,
			           want, MPROC_NOWAIT);
		_exit(3);
	}
	check_reap_killed(pid);
	ck_assert_msg(mproc__journal_pending(cq_side(c, side)),
	              "crash point %d left no journal pending", point);
}

/*
 * cq_apply_part: what a commit cut where no hook reaches leaves: of the
 * change the pending journal of side holds (mproc__journal_overlay), the
 * record's mark (if mark) and the first `words` words applied, in the
 * order mproc__side_commit applies them (mark, then the words in order),
 * and the journal still pending.
 */
static void cq_apply_part(struct cq *c, int side, int mark, unsigned words)
{
	struct mproc__side *sd = cq_side(c, side);
	uint64_t nw[MPROC__SIDE_WORDS];

	ck_assert_int_eq(mproc__journal_overlay(sd, check_side_words(side),
	                                        nw),
	                 0);
	if (mark)
		mproc__mark_apply(&c->ring, &sd->journal.mark);
	for (unsigned w = 0; w < words; w++)
		sd->w[w] = nw[w];
}

static volatile uint8_t pred_sink;

/* Reads every byte the queue shows it (the sanitizer checks them). */
static int pred_read_all(const mproc_msg *m, void *arg)
{
	const uint8_t *p = m->data;
	uint8_t x = 0;

	if (m->size > CQ_PAYLOAD || (m->size > 0 && p == NULL))
		ck_abort_msg("predicate shown %u bytes at %p", m->size,
		             m->data);
	for (uint32_t i = 0; i < m->size; i++)
		x ^= p[i];
	pred_sink = x;
	return arg != NULL || (rng_next() & 1);
}

static void dead_read_all(const mproc_msg *m, uint32_t attempts, void *arg)
{
	MPROC__UNUSED(attempts);
	pred_read_all(m, arg);
}

enum {
	CALL_SEND, CALL_RECV, CALL_RECV_SMALL, CALL_RECV_PRED, CALL_STATS,
	CALL_EMPTY, CALL_JOIN, CALL_PURGE, CALL_DONE, CALL_LEASE,
	CALL_LEASE_DONE, CALL_RELEASE, CALL_SHUTDOWN, CALL_KINDS
};

/*
 * corrupt_call runs one call on a possibly scribbled queue and checks it
 * returned something the contract allows, promptly. Returns its result.
 */
static int corrupt_call(struct cq *c, int kind)
{
	uint8_t *buf = malloc(CQ_PAYLOAD);
	uint32_t cap = CQ_PAYLOAD;
	struct mproc__lease lease;
	long long t0 = check_now_ms();
	mproc_stats st;
	mproc_msg m;
	int rc = 0, ok = 0;

	ck_assert_ptr_nonnull(buf);
	memset(&m, 0, sizeof(m));
	m.data = buf;
	m.capacity = CQ_PAYLOAD;
	switch (kind) {
	case CALL_SEND:
		rc = send_pay(c->q,
		              rng_range(0, 1) ? 0 : rng_range(32, CQ_PAYLOAD),
		              4, 0, 1, MPROC_NOWAIT);
		if (rc == -EINVAL) /* size 0 with a NULL-free buffer is fine */
			rc = -EPROTO - 1000;
		ok = rc == 0 || rc == -EAGAIN || rc == -EPROTO ||
		     rc == -ESHUTDOWN;
		break;
	case CALL_RECV_SMALL:
		cap = rng_range(0, 64);
		m.capacity = cap;
		/* fall through */
	case CALL_RECV:
		rc = mproc_recv(c->q, &m, NULL, NULL, MPROC_NOWAIT);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap) ||
		     (rc == -EMSGSIZE && m.size > cap && m.size <= CQ_PAYLOAD);
		break;
	case CALL_RECV_PRED:
		rc = mproc_recv(c->q, &m, pred_read_all, NULL, MPROC_NOWAIT);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap);
		break;
	case CALL_STATS:
		rc = mproc_queue_stats(c->q, &st);
		/* Counts some ring could hold: every message queued has a
		 * record of a header or more between head and tail. */
		ok = rc == -EPROTO ||
		     (rc == 0 && st.bytes <= c->cap &&
		      st.queued * MPROC__REC_HDR <= st.bytes &&
		      st.unfinished >= st.queued && st.capacity == c->cap);
		expect_msg(ok || rc != 0,
		           "stats on a scribbled queue: 0, with counts no "
		           "ring holds: queued %llu in %llu bytes (capacity "
		           "%llu), unfinished %llu, sent %llu",
		           (unsigned long long)st.queued,
		           (unsigned long long)st.bytes,
		           (unsigned long long)c->cap,
		           (unsigned long long)st.unfinished,
		           (unsigned long long)st.sent);
		break;
	case CALL_EMPTY:
		rc = mproc_queue_empty(c->q);
		ok = rc == 0 || rc == 1 || rc == -EPROTO;
		break;
	case CALL_JOIN:
		rc = mproc_queue_join(c->q, MPROC_NOWAIT);
		ok = rc == 0 || rc == -EAGAIN || rc == -EPROTO ||
		     rc == -ESHUTDOWN;
		break;
	case CALL_PURGE:
		rc = mproc_queue_purge(c->q);
		ok = rc >= 0 || rc == -EPROTO;
		break;
	case CALL_DONE:
		rc = mproc_task_done(c->q);
		ok = rc == -EINVAL || (c->manual && (rc == 0 || rc == -EPROTO));
		break;
	case CALL_LEASE:
		rc = mproc__queue_recv_lease(c->q, &m, NULL, NULL, MPROC_NOWAIT,
		                             &lease);
		ok = rc == -EAGAIN || rc == -EPROTO || rc == -ESHUTDOWN ||
		     (rc == 0 && m.size <= cap);
		if (rc == 0 && rng_range(0, 1)) {
			rc = mproc__queue_lease_done(c->q, &lease);
			ok = rc == 0 || rc == -ENOENT || rc == -EPROTO;
		}
		break;
	case CALL_LEASE_DONE:
		lease.cookie = rng_range(0, 1)
		                   ? rng_next64()
		                   : cq_head(c) + 8 * rng_range(0, 64);
		lease.attempts = 1;
		rc = mproc__queue_lease_done(c->q, &lease);
		ok = rc == 0 || rc == -ENOENT || rc == -EPROTO;
		break;
	case CALL_RELEASE:
		rc = mproc__queue_lease_release(c->q, rng_range(0, 1) ? getpid()
		                                                      : 12345,
		                                rng_range(0, 2), dead_read_all,
		                                NULL);
		ok = rc >= 0 || rc == -EPROTO;
		break;
	case CALL_SHUTDOWN:
		rc = mproc_queue_shutdown(c->q);
		ok = rc == 0 || rc == -EPROTO;
		break;
	}
	free(buf);
	expect_msg(ok, "call %d on a scribbled queue returned %d (%s)", kind,
	           rc, mproc_strerror(rc));
	expect_msg(check_now_ms() - t0 < check_scale_ms(1000),
	           "call %d took %lld ms", kind, check_now_ms() - t0);
	return rc;
}

/* Every call but shutdown, once each; returns how many did not give
 * -EPROTO (task_done on an automatic queue, -EINVAL, does not count). */
static int corrupt_all_calls(struct cq *c)
{
	int n = 0;

	for (int k = 0; k < CALL_SHUTDOWN; k++) {
		int rc = corrupt_call(c, k);

		if (rc != -EPROTO && !(k == CALL_DONE && rc == -EINVAL))
			n++;
	}
	return n;
}

/* Which sides' journals call kind needs closed (bit SIDE_SEND, bit
 * SIDE_RECV): the locks it takes. join, empty and peek also try the send
 * lock, never waiting, to roll a dead sender's journal forward; that is
 * not a lock they need. stats and purge read both sides without a lock,
 * but a journal that stays pending sends them to both locks. */
static unsigned call_locks(int kind)
{
	switch (kind) {
	case CALL_SEND:
		return 1u << SIDE_SEND;
	case CALL_STATS:
	case CALL_PURGE:
		return 1u << SIDE_SEND | 1u << SIDE_RECV;
	case CALL_SHUTDOWN:
		return 0;
	default:
		return 1u << SIDE_RECV;
	}
}

/*
 * Every call but shutdown, once each, with side's lock made unusable (its
 * journal pending, its owner alive): those that take that lock must refuse
 * (-EPROTO); those that do not must not (each side's journal guards its
 * own words). Returns how many of the first did not refuse.
 */
static int corrupt_calls_side(struct cq *c, int side)
{
	int n = 0;

	for (int k = 0; k < CALL_SHUTDOWN; k++) {
		int rc = corrupt_call(c, k);

		if (k == CALL_DONE && rc == -EINVAL)
			continue;
		if (call_locks(k) & (1u << side)) {
			if (rc != -EPROTO)
				n++;
		} else {
			expect_msg(rc != -EPROTO, "call %d refused: only the "
			           "%s journal is bad", k,
			           side == SIDE_SEND ? "send" : "receive");
		}
	}
	return n;
}

/* Undo what working calls left open: leases this process holds, and
 * (MANUAL_DONE) tasks taken and not done. */
static void cq_settle(struct cq *c)
{
	int rc = mproc__queue_lease_release(c->q, getpid(), 0, NULL, NULL);

	ck_assert_msg(rc >= 0, "lease_release: %s", mproc_strerror(rc));
	if (!c->manual)
		return;
	while ((rc = mproc_task_done(c->q)) == 0)
		;
	ck_assert_msg(rc == -EINVAL, "task_done: %s", mproc_strerror(rc));
}

/* After a repair: the queue serves its messages whole and works. */
static void corrupt_check_healthy(struct cq *c)
{
	for (;;) {
		struct pay p;
		int torn,
		    rc = recv_pay(c->q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);

		if (rc == -EAGAIN)
			break;
		ck_assert_msg(rc == 0 && !torn, "restored queue: %s%s",
		              mproc_strerror(rc), torn ? " (torn)" : "");
		if (c->manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
	check_drained(c->q);
	check_round_trip(c->q, CQ_PAYLOAD);
	if (c->manual)
		ck_assert_int_eq(mproc_task_done(c->q), 0);
}

/*
 * After calls that worked on a queue with one side's journal refusing:
 * cq_settle, then as corrupt_check_healthy, but CALL_SEND's messages may
 * be empty, and a lease released and taken again counts two receives.
 */
static void corrupt_check_settled(struct cq *c)
{
	uint8_t *buf = malloc(CQ_PAYLOAD);
	mproc_stats st;
	struct pay p;
	mproc_msg m;
	int rc;

	ck_assert_ptr_nonnull(buf);
	cq_settle(c);
	for (;;) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = CQ_PAYLOAD;
		rc = mproc_recv(c->q, &m, NULL, NULL, MPROC_NOWAIT);
		if (rc == -EAGAIN)
			break;
		ck_assert_msg(rc == 0 && m.request == MPROC_USER &&
		              (m.size == 0 || pay_check(buf, m.size, &p) == 0),
		              "restored queue: %s (size %u)",
		              mproc_strerror(rc), m.size);
		if (c->manual)
			ck_assert_int_eq(mproc_task_done(c->q), 0);
	}
	free(buf);
	st = stats_of(c->q);
	ck_assert_msg(st.queued == 0 && st.bytes == 0 && st.unfinished == 0 &&
	              st.received >= st.sent,
	              "after draining: queued %llu bytes %llu unfinished "
	              "%llu sent %llu received %llu",
	              (unsigned long long)st.queued,
	              (unsigned long long)st.bytes,
	              (unsigned long long)st.unfinished,
	              (unsigned long long)st.sent,
	              (unsigned long long)st.received);
	ck_assert_int_eq(mproc_queue_empty(c->q), 1);
	ck_assert_int_eq(mproc_queue_join(c->q, MPROC_NOWAIT), 0);
	check_round_trip(c->q, CQ_PAYLOAD);
	if (c->manual)
		ck_assert_int_eq(mproc_task_done(c->q), 0);
}

/* Garbage of the kinds that slip past naive checks. */
static uint64_t garbage(uint64_t orig, uint64_t cap)
{
	switch (rng_range(0, 11)) {
	case 0: return orig + 8;
	case 1: return orig - 8;
	case 2: return orig + 1;
	case 3: return orig + cap;
	case 4: return orig + MPROC__REC_HDR;
	case 5: return 0;
	case 6: return UINT64_MAX;
	case 7: return UINT64_MAX - 7;
	case 8: return cap;
	case 9: return (uint64_t)1 << 63;
	case 10: return orig ^ ((uint64_t)1 << rng_range(0, 63));
	default: return rng_next64();
	}
}

static void poke64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static void poke32(void *p, uint32_t v) { memcpy(p, &v, 4); }

#define CORRUPT_ROUNDS 40

/* The identity fields: every call gives -EPROTO; put back, all is well. */
START_TEST(test_crash_corrupt_identity)
{
	/* The common header first (shm/region.h), then the geometry. */
	static const struct { size_t off, width; } f[] = {
		{ offsetof(struct mproc__queue_shared, hdr.magic), 8 },
		{ offsetof(struct mproc__queue_shared, hdr.kind), 4 },
		{ offsetof(struct mproc__queue_shared, hdr.layout), 4 },
		{ offsetof(struct mproc__queue_shared, hdr.header_size), 4 },
		{ offsetof(struct mproc__queue_shared, hdr.size), 8 },
		{ offsetof(struct mproc__queue_shared, capacity), 8 },
		{ offsetof(struct mproc__queue_shared, max_payload), 4 },
		{ offsetof(struct mproc__queue_shared, max_messages), 4 },
		{ offsetof(struct mproc__queue_shared, flags), 4 },
	};
	const size_t n_hdr = 5; /* fields an attach checks by themselves */

	rng_seed_auto();
	for (int round = 0; round < CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			uint8_t save[8], *field;
			uint64_t v;
			mproc_conn *view = NULL;

			corrupt_open(&c, round % 2, round % 4 == 1);
			field = (uint8_t *)c.s + f[i].off;
			memcpy(save, field, f[i].width);
			do {
				v = garbage(0, c.cap);
				if (f[i].width == 8)
					poke64(field, v);
				else
					poke32(field, (uint32_t)v);
			} while (memcmp(save, field, f[i].width) == 0);
			ck_assert_int_eq(corrupt_all_calls(&c), 0);
			ck_assert_int_eq(mproc_queue_shutdown(c.q), -EPROTO);
			/* A bad identity cannot be attached. (The geometry
			 * fields are the attacher's to believe: a mapping has
			 * no other record of them.) */
			if (i < n_hdr)
				ck_assert_int_eq(mproc__queue_attach(&view, c.s,
				                                     c.len),
				                 -EPROTO);
			memcpy(field, save, f[i].width);
			ck_assert_int_eq(mproc__queue_attach(&view, c.s, c.len),
			                 0);
			ck_assert_int_eq(mproc_queue_empty(view), 0);
			mproc_close(view);
			ck_assert_int_eq(stats_of(c.q).recoveries, 0);
			corrupt_check_healthy(&c);
			corrupt_close(&c);
		}
	}
}
END_TEST

/*
 * The words of both sides: -EPROTO or a working call, never a crash or a
 * hang; when every call that takes the receive lock refused, putting the
 * word back makes all well. (Receivers check both sides' words against
 * each other and the ring on every call. A sender trusts its own side's
 * words and reads the head only when its room runs short, so a send is
 * not expected to refuse: it runs on the garbage half the time, and the
 * queue is then checked for health only if the send did not go through.)
 */
START_TEST(test_crash_corrupt_state)
{
	static const struct {
		int side;
		unsigned w;
		int guards; /* 0: a total or unused word, nothing refuses */
	} f[] = {
		{ SIDE_SEND, QP_SENT, 1 },
		{ SIDE_SEND, QP_TAIL, 1 },
		/* A hint: receivers clamp it to tail, a purge that stops
		 * short only counts fewer orphans. */
		{ SIDE_SEND, QP_DTAIL, 0 },
		{ SIDE_SEND, QP_WORDS, 0 },
		{ SIDE_RECV, QC_HEAD, 1 },
		{ SIDE_RECV, QC_GONE, 1 },
		{ SIDE_RECV, QC_LEASED, 1 },
		{ SIDE_RECV, QC_TAKEN, 1 },
		{ SIDE_RECV, QC_RECEIVED, 0 },
		{ SIDE_RECV, QC_PURGED, 0 },
		{ SIDE_RECV, QC_GEN, 0 },
		{ SIDE_RECV, QC_WORDS, 0 },
	};
	int refused = 0, total = 0;

	rng_seed_auto();
	for (int round = 0; round < CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			uint64_t *field, save, v;
			int worked = 0, send_rc = 1;

			corrupt_open(&c, round % 2, round % 4 == 1);
			if (round % 3 == 2) /* garbage meets a repair */
				cq_dead_owner(&c, (int)rng_range(0, 1));
			field = &cq_side(&c, f[i].side)->w[f[i].w];
			save = *field;
			do
				v = garbage(save, c.cap);
			while (v == save);
			*field = v;
			for (int k = 0; k < CALL_SHUTDOWN; k++) {
				int rc;

				if (k == CALL_SEND)
					continue;
				rc = corrupt_call(&c, k);
				if (rc != -EPROTO &&
				    !(k == CALL_DONE && rc == -EINVAL))
					worked++;
			}
			if (!f[i].guards || worked > 0 || rng_range(0, 1))
				send_rc = corrupt_call(&c, CALL_SEND);
			total += f[i].guards;
			if (!f[i].guards) {
				ck_assert_msg(worked > 0, "word %u of side %d "
				              "refused", f[i].w, f[i].side);
			} else if (worked == 0) {
				refused++;
				*field = save;
				if (send_rc != 0)
					corrupt_check_healthy(&c);
			}
			for (int k = 0; k < 20; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			corrupt_close(&c);
		}
	}
	/* Most garbage is caught, not served. */
	ck_assert_msg(refused > total / 3, "only %d of %d scribbles refused",
	              refused, total);
}
END_TEST

/* Record headers: what comes before the scribbled record is served whole
 * and in order; then -EPROTO or working calls. */
START_TEST(test_crash_corrupt_records)
{
	static const struct { size_t off, width; } f[] = {
		{ offsetof(struct mproc__rec, magic), 4 },
		{ offsetof(struct mproc__rec, len), 4 },
		{ offsetof(struct mproc__rec, size), 4 },
		{ offsetof(struct mproc__rec, flags), 4 },
		{ offsetof(struct mproc__rec, attempts), 4 },
		{ offsetof(struct mproc__rec, request), 4 },
		{ offsetof(struct mproc__rec, recipient), 4 },
		{ offsetof(struct mproc__rec, lease_pid), 4 },
		{ offsetof(struct mproc__rec, sent_ns), 8 },
	};
	uint64_t offs[64];

	rng_seed_auto();
	for (int round = 0; round < 3 * CORRUPT_ROUNDS; round++) {
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			struct cq c;
			int n, victim, served = 0;
			uint64_t v, last = 0;
			uint32_t before[64];
			uint8_t *field;

			corrupt_open(&c, 0, round % 4 == 1);
			n = cq_records(&c, offs, 64, NULL);
			ck_assert_int_gt(n, 0);
			victim = (int)rng_range(0, (uint32_t)n - 1);
			/* The messages still queued before the victim. */
			for (int j = 0; j < victim; j++) {
				uint32_t fl = rec_u32(
				        &c, offs[j],
				        offsetof(struct mproc__rec, flags));

				before[j] = fl & MPROC__REC_CONSUMED ? 0 : 1;
				served += (int)before[j];
			}
			/* Both repairs walk the records. */
			if (round % 5 == 4)
				cq_dead_owner(&c, (int)rng_range(0, 1));
			field = rec_at(&c, offs[victim], f[i].off);
			v = rng_range(0, 3) == 0 ? rng_range(0, 7)
			                        : garbage(0, c.cap);
			if (f[i].width == 8)
				poke64(field, v);
			else
				poke32(field, (uint32_t)v);
			/* Those before the victim come out whole, in order. */
			for (int j = 0; j < served; j++) {
				struct pay p;
				int torn,
				    rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT,
				                  &p, &torn);

				/* The repair's walk, or moving the head
				 * past the last good one, reads the victim. */
				if (rc == -EPROTO)
					break;
				expect_msg(rc == 0 && !torn &&
				           (j == 0 || p.seq > last),
				           "message %d before a scribbled "
				           "record: %s%s", j,
				           mproc_strerror(rc),
				           torn ? " (torn)" : "");
				last = p.seq;
			}
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			corrupt_close(&c);
		}
	}
}
END_TEST

/*
 * The journals (the send side's and the receive side's, in turn): a
 * pending seq nobody is committing under is refused by the calls that
 * take that side's lock; a garbage journal left by a dead owner is
 * refused or repaired; a sound one (a commit the library journalled, its
 * writer killed before or after applying it) rolls forward.
 */
START_TEST(test_crash_corrupt_journal)
{
	rng_seed_auto();
	for (int round = 0; round < 8 * CORRUPT_ROUNDS; round++) {
		int kind = round % 4, side = round / 4 % 2;
		unsigned nw = check_side_words(side);
		struct mproc__journal *j;
		struct mproc__side *sd;
		uint64_t rec0;
		uint32_t seq;
		struct cq c;

		corrupt_open(&c, round % 16 >= 8, round % 32 >= 16);
		sd = cq_side(&c, side);
		j = &sd->journal;
		rec0 = stats_of(c.q).recoveries;
		switch (kind) {
		case 0: /* pending, no dead owner: refused */
			seq = j->seq;
			j->seq = rng_next() | 1u;
			ck_assert_int_eq(corrupt_calls_side(&c, side), 0);
			/* Twice: a refusal changes nothing. */
			ck_assert_int_eq(corrupt_calls_side(&c, side), 0);
			ck_assert(mproc__journal_pending(sd));
			j->seq = seq;
			ck_assert_uint_eq(stats_of(c.q).recoveries, rec0);
			corrupt_check_settled(&c);
			break;
		case 1: /* a dead owner left garbage, pending */
			cq_dead_owner(&c, side);
			for (size_t i = 0; i < sizeof(*j); i += 4)
				poke32((uint8_t *)j + i, rng_next());
			j->seq |= 1u;
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			break;
		case 2: { /* plausible: the real state, a word or mark off */
			uint32_t span, wi;
			int probe = -1;

			cq_dead_owner(&c, side);
			j->changed = 0;
			j->mark.off = UINT64_MAX;
			wi = rng_range(0, nw - 1);
			switch (rng_range(0, 3)) {
			case 0:
				j->changed = 1u << wi;
				j->val[0] = garbage(sd->w[wi], c.cap);
				break;
			case 1:
				span = (uint32_t)(cq_tail(&c) - cq_head(&c));
				j->mark.off = cq_head(&c) + rng_range(0, span);
				j->mark.flags = rng_range(0, 7);
				j->mark.attempts = rng_next();
				break;
			case 2:
				j->mark.off = garbage(cq_head(&c), c.cap);
				j->mark.flags = rng_next();
				break;
			default:
				/* A word the side does not have. */
				j->changed = 1u << rng_range(nw, 31);
				j->val[0] = sd->w[0];
				probe = side == SIDE_SEND ? CALL_SEND
				                          : CALL_RECV;
				break;
			}
			/* A send journal never holds a mark. */
			if (side == SIDE_SEND && j->mark.off != UINT64_MAX)
				probe = CALL_SEND;
			j->seq |= 1u;
			if (probe >= 0) {
				/* Refused by the repair, and from then on. */
				ck_assert_int_eq(corrupt_call(&c, probe),
				                 -EPROTO);
				ck_assert_int_eq(corrupt_call(&c, CALL_STATS),
				                 -EPROTO);
				ck_assert_int_eq(corrupt_call(&c, probe),
				                 -EPROTO);
				ck_assert(mproc__journal_pending(sd));
			}
			for (int k = 0; k < 30; k++)
				corrupt_call(&c,
				             (int)rng_range(0, CALL_SHUTDOWN));
			break;
		}
		default: { /* a sound journal: rolled forward, all is well */
			static const int points[2][2] = {
				{ MPROC__CRASH_SEND_COMMIT,
				  MPROC__CRASH_SEND_APPLIED },
				{ MPROC__CRASH_RECV_COMMIT,
				  MPROC__CRASH_RECV_APPLIED },
			};

			struct pay p;
			int torn;

			/* Room for the send: the ring may be full. */
			if (side == SIDE_SEND) {
				ck_assert_int_eq(recv_pay(c.q, CQ_PAYLOAD,
				                          MPROC_NOWAIT, &p,
				                          &torn),
				                 0);
				if (c.manual)
					ck_assert_int_eq(mproc_task_done(c.q),
					                 0);
			}
			cq_dead_commit(&c, points[side][rng_range(0, 1)],
			               sizeof(struct pay), 1000, NULL);
			/* Repaired by stats (a pending journal sends it to
			 * both locks), or by empty (the receive lock; a dead
			 * sender's journal, by the send lock it tries on the
			 * way). */
			if (rng_range(0, 1)) {
				ck_assert_int_eq(mproc_queue_empty(c.q), 0);
				ck_assert(!mproc__journal_pending(sd));
			}
			ck_assert_uint_eq(stats_of(c.q).recoveries, rec0 + 1);
			ck_assert_uint_eq(cq_side(&c, side)->recoveries, 1);
			ck_assert_uint_eq(cq_side(&c, !side)->recoveries, 0);
			ck_assert(!mproc__journal_pending(sd));
			/* The dead receiver's task (MANUAL_DONE) stays taken
			 * until someone says it is done. */
			if (side == SIDE_RECV && c.manual)
				ck_assert_int_eq(mproc_task_done(c.q), 0);
			corrupt_check_healthy(&c);
			break;
		}
		}
		corrupt_close(&c);
	}
}
END_TEST

/*
 * A commit cut short where no hook can reach: the owner died after
 * applying the first `words` words of the new state (or all of them,
 * with the journal still pending). The library's own commit writes the
 * journal (a child killed at SEND_COMMIT or RECV_COMMIT: a send of a new
 * message, or a take of the head record or of one behind it), and part
 * of it is then applied by hand (cq_apply_part). The next call must roll
 * the journal forward, and the queue must hold exactly what the finished
 * operation leaves.
 */
START_TEST(test_crash_torn_apply)
{
	static const char *const what[] = { "send", "take at the head",
		                            "take behind the head" };

	rng_seed_auto();
	for (int round = 0; round < 3 * CORRUPT_ROUNDS; round++) {
		int op = round % 3, is_send = op == 0, side, n, words;
		uint64_t offs[64], rec0, skip = UINT64_MAX;
		struct mproc__side *sd;
		struct cq c;

		corrupt_open(&c, 0, round % 6 >= 3);
		/* Start clean: no holes, the head on a live record. */
		for (;;) {
			struct pay p;
			int torn;

			if (recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
			             &torn) < 0)
				break;
		}
		n = cq_fill(&c, (int)rng_range(2, 6));
		ck_assert_int_ge(n, 2);
		ck_assert_int_eq(cq_records(&c, offs, 64, NULL), n);
		rec0 = stats_of(c.q).recoveries;
		side = is_send ? SIDE_SEND : SIDE_RECV;
		sd = cq_side(&c, side);

		if (is_send) {
			uint32_t size = rng_range(sizeof(struct pay),
			                          CQ_PAYLOAD);

			cq_dead_commit(&c, MPROC__CRASH_SEND_COMMIT, size,
			               (uint64_t)n, NULL);
			/* The state applied in part (sent first). */
			words = (int)rng_range(0, QP_WORDS);
			cq_apply_part(&c, side, 0, (unsigned)words);
		} else {
			skip = op == 1 ? 0 : 1;
			cq_dead_commit(&c, MPROC__CRASH_RECV_COMMIT, 0, 0,
			               op == 1 ? NULL : &skip);
			ck_assert_uint_eq(sd->journal.mark.off, offs[skip]);
			/* The mark goes first: applied if any word is. */
			words = (int)rng_range(0, QC_WORDS);
			cq_apply_part(&c, side, words > 0 || rng_range(0, 1),
			              (unsigned)words);
		}

		/* A dead sender's journal is rolled forward by a receiver
		 * too (it tries the send lock): empty says so at once. */
		if (is_send && rng_range(0, 1)) {
			ck_assert_int_eq(mproc_queue_empty(c.q), 0);
			ck_assert(!mproc__journal_pending(sd));
		}
		ck_assert_msg(stats_of(c.q).recoveries == rec0 + 1,
		              "no recovery (%s, %d words applied)", what[op],
		              words);
		ck_assert(!mproc__journal_pending(sd));
		/* Exactly what the finished operation leaves, in order. */
		for (uint64_t want = 0; want < (uint64_t)n + (uint64_t)is_send;
		     want++) {
			struct pay p;
			int torn, rc;

			if (want == skip)
				continue;
			rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);
			ck_assert_msg(rc == 0 && !torn && p.seq == want,
			              "%s cut after %d words: message %llu: %s",
			              what[op], words, (unsigned long long)want,
			              rc ? mproc_strerror(rc) : "wrong one");
		}
		check_drained(c.q);
		corrupt_close(&c);
	}
}
END_TEST

/*
 * A take of the head record cut after its commit moved the head (the
 * journal still pending, the receive lock's owner dead), in a full ring.
 * Before anyone takes the receive lock, a sender fills the room the take
 * freed, over the taken record's bytes: a sender needs only the send
 * lock. The repair must finish the take without applying the mark again
 * (the head passed it, so it was applied, and its bytes now belong to the
 * new record), and everything, the new message last, comes out whole.
 */
START_TEST(test_crash_torn_take_reused)
{
	rng_seed_auto();
	for (int round = 0; round < 2 * CORRUPT_ROUNDS; round++) {
		uint64_t offs[64], rec0, room, size, victim_end;
		int n, words, rc;
		struct cq c;
		mproc_stats st;

		corrupt_open(&c, 0, round % 2);
		for (;;) {
			struct pay p;
			int torn;

			if (recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p,
			             &torn) < 0)
				break;
		}
		n = cq_fill_up(&c);
		ck_assert_int_ge(n, 2);
		ck_assert_int_eq(cq_records(&c, offs, 64, NULL), n);
		rec0 = stats_of(c.q).recoveries;
		cq_dead_commit(&c, MPROC__CRASH_RECV_COMMIT, 0, 0, NULL);
		ck_assert_uint_eq(c.s->recv.journal.mark.off, offs[0]);
		/* The mark and at least the head (the first word). */
		words = (int)rng_range(1, QC_WORDS);
		cq_apply_part(&c, SIDE_RECV, 1, (unsigned)words);
		ck_assert_uint_eq(cq_head(&c), offs[1]);

		room = c.cap - (cq_tail(&c) - cq_head(&c));
		size = room - MPROC__REC_HDR;
		if (size > CQ_PAYLOAD)
			size = CQ_PAYLOAD;
		/* The new record covers the marked fields of the old one. */
		victim_end = offs[0] + c.cap +
		             offsetof(struct mproc__rec, reserved);
		ck_assert_uint_ge(cq_tail(&c) + mproc__rec_len(size),
		                  victim_end);
		rc = send_pay(c.q, (uint32_t)size, 3, 0, (uint64_t)n,
		              MPROC_NOWAIT);
		ck_assert_msg(rc == 0, "send into the freed room: %s",
		              mproc_strerror(rc));

		rc = mproc_queue_stats(c.q, &st);
		ck_assert_msg(rc == 0, "repair after the head's bytes were "
		              "reused (%d words applied): %s", words,
		              mproc_strerror(rc));
		ck_assert_uint_eq(st.recoveries, rec0 + 1);
		ck_assert(!mproc__journal_pending(&c.s->recv));
		for (uint64_t want = 1; want <= (uint64_t)n; want++) {
			struct pay p;
			int torn;

			rc = recv_pay(c.q, CQ_PAYLOAD, MPROC_NOWAIT, &p, &torn);
			ck_assert_msg(rc == 0 && !torn && p.seq == want,
			              "%d words applied: message %llu: %s%s",
			              words, (unsigned long long)want,
			              rc ? mproc_strerror(rc) : "",
			              torn ? "torn" : (rc ? "" : "wrong one"));
		}
		check_drained(c.q);
		corrupt_close(&c);
	}
}
END_TEST

/* Anything but the locks, anywhere, a few bytes at a time. */
START_TEST(test_crash_corrupt_random)
{
	/* The two mutexes: a scribbled lock word looks like a held lock. */
	static const size_t lock_off[SIDES] = {
		[SIDE_SEND] = offsetof(struct mproc__queue_shared, send.lock),
		[SIDE_RECV] = offsetof(struct mproc__queue_shared, recv.lock),
	};
	const size_t lock_len = sizeof(pthread_mutex_t);
	int iters = 600;

	rng_seed_auto();
	for (int it = 0; it < iters; it++) {
		struct cq c;
		uint8_t *base;
		int spots = (int)rng_range(1, 8);

		corrupt_open(&c, it % 2, it % 4 == 1);
		base = (uint8_t *)c.s;
		if (it % 8 == 3)
			cq_dead_owner(&c, (int)rng_range(0, 1));
		for (int k = 0; k < spots; k++) {
			size_t width = (size_t)1 << rng_range(0, 3), off;
			uint64_t v;
			int on_lock = 0;

			/* Aim at the header half the time: it is small. */
			if (rng_range(0, 1))
				off = rng_range(0, MPROC__QUEUE_HDR - 8);
			else
				off = MPROC__QUEUE_HDR +
				      rng_range(0, (uint32_t)c.cap - 8);
			off &= ~(width - 1);
			for (int side = 0; side < SIDES; side++)
				if (off + width > lock_off[side] &&
				    off < lock_off[side] + lock_len)
					on_lock = 1;
			if (on_lock)
				continue;
			v = rng_range(0, 1) ? garbage(0, c.cap)
			                    : (uint64_t)rng_range(0, 64);
			memcpy(base + off, &v, width);
		}
		for (int k = 0; k < 25; k++)
			corrupt_call(&c, (int)rng_range(0, CALL_SHUTDOWN));
		if (rng_range(0, 7) == 0)
			corrupt_call(&c, CALL_SHUTDOWN);
		for (int k = 0; k < 5; k++)
			corrupt_call(&c, (int)rng_range(0, CALL_SHUTDOWN));
		corrupt_close(&c);
	}
}
END_TEST
Suite *corrupt_suite(void);

Suite *corrupt_suite(void)
{
	Suite *s = suite_create("corrupt");
	TCase *tc = check_tcase(s, "corrupt");

	tcase_add_test(tc, test_crash_corrupt_identity);
	tcase_add_test(tc, test_crash_corrupt_state);
	tcase_add_test(tc, test_crash_corrupt_records);
	tcase_add_test(tc, test_crash_corrupt_journal);
	tcase_add_test(tc, test_crash_corrupt_random);
	tcase_add_test(tc, test_crash_torn_apply);
	tcase_add_test(tc, test_crash_torn_take_reused);
	return s;
}

int main(void)
{
	return check_run_suite(corrupt_suite());
}
