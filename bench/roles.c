/*
 * roles.c - what each role of a run does, and how it checks every message
 * it receives: producer and consumer (W1-W4), pinger and ponger (W5),
 * dispatcher and worker (W6, W6d), and W6 through mproc_pool_*.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static int role_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Checks a data message: request, size, checksum; returns seq and src. */
void role_check_msg(const struct rmsg *m, int32_t request, uint32_t size,
                    uint64_t *seq, uint32_t *src)
{
	if (m->request != request)
		child_fail("request %d (%s), expected %d (%s)", m->request,
		           mproc_request_name(m->request), request,
		           mproc_request_name(request));
	if (m->size != size)
		child_fail("payload of %u bytes, expected %u", m->size, size);
	if (payload_verify(m->data, m->size, seq, src) != 0)
		child_fail("checksum mismatch (seq field %" PRIu64 ")", *seq);
}

/* W7a: the request, the size and the header only. */
static void role_check_hdr(const struct rmsg *m, uint32_t size, uint64_t *seq,
                           uint32_t *src)
{
	if (m->request != MPROC_DO)
		child_fail("request %d, expected DO", m->request);
	if (m->size != size)
		child_fail("payload of %u bytes, expected %u", m->size, size);
	if (payload_hdr_verify(m->data, m->size, seq, src) != 0)
		child_fail("header check mismatch (seq field %" PRIu64 ")",
		           *seq);
}

void role_check_sender(const struct rmsg *m, uint32_t src, uint32_t nsrc,
                       uint32_t base)
{
	if (src < base || src >= base + nsrc)
		child_fail("source index %u out of range", src);
	if (m->sender != g_role.sh->pids[src])
		child_fail("sender %d, expected %d (role %u)", (int)m->sender,
		           (int)g_role.sh->pids[src], src);
}

void role_producer(const struct workload *w, const struct ep *out)
{
	uint32_t P = (uint32_t)w->producers, idx = (uint32_t)g_role.role;
	uint64_t per = w->n / P, k;
	unsigned char *pl;
	int c;

	/* W7a: the body written once (the copy paths send the same buffer;
	 * the channel's own memory keeps what it had), the header each time */
	if (w->handoff)
		payload_fill(g_role.sbuf + ENV_SIZE, w->size, 0, idx);
	for (k = 0; k < per; k++) {
		pl = ep_send_begin(out, w->size);
		if (w->handoff)
			payload_hdr_fill(pl, w->size, k * P + idx, idx);
		else
			payload_fill(pl, w->size, k * P + idx, idx);
		ep_send_end(out, MPROC_DO, MPROC_ANYONE, pl, w->size);
	}
	g_role.rep->count = per;
	/* The last producer to finish sends one DIE per consumer: every
	 * producer's messages are queued before it (FIFO), so the pills
	 * come after all the data. */
	if (w->consumers > 1 &&
	    __atomic_add_fetch(&g_role.sh->producers_done, 1,
	                       __ATOMIC_ACQ_REL) == P)
		for (c = 0; c < w->consumers; c++)
			ep_send(out, MPROC_DIE, MPROC_ANYONE, NULL, 0);
}

/*
 * role_poll_recv (W1p) is mproc_fd's recipe: receive with MPROC_NOWAIT
 * until -EAGAIN, then poll() the descriptor, and again. Counts the polls
 * that returned (each a wake-up of the poller).
 */
static void role_poll_recv(const struct ep *in, struct rmsg *m,
                           uint64_t *wakeups)
{
	struct pollfd p;
	int r;

	while (ep_try_recv(in, m) == -EAGAIN) {
		p.fd = in->pollfd;
		p.events = POLLIN;
		p.revents = 0;
		r = poll(&p, 1, OP_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			child_fail("poll: %s", strerror(errno));
		if (r == 0)
			child_fail("poll: not readable for %d ms with a message "
			           "due: a lost wake-up",
			           OP_TIMEOUT_MS);
		if (p.revents & (POLLERR | POLLNVAL))
			child_fail("poll: revents 0x%x", p.revents);
		(*wakeups)++;
	}
}

/*
 * role_consumer takes and checks the stream. In W1w it also times every
 * receive with one clock read after each return: the gap since the
 * previous return is the receive plus the previous message's check (tens
 * of ns), an upper bound on the time spent in mproc_recv.
 */
void role_consumer(const struct workload *w, const struct ep *in)
{
	uint32_t P = (uint32_t)w->producers;
	bool single = w->consumers == 1, timed = w->watched;
	uint64_t last[MAX_WORKERS], count = 0, seq, wakeups = 0;
	uint64_t t_last = timed ? now_ns() : 0, t, gap_max = 0;
	uint32_t src, i;
	struct rmsg m;

	for (i = 0; i < P; i++)
		last[i] = NONE;
	for (;;) {
		if (single && count == w->n)
			break;
		if (in->pollfd >= 0)
			role_poll_recv(in, &m, &wakeups);
		else
			ep_recv(in, &m);
		if (timed) {
			t = now_ns();
			if (t - t_last > gap_max)
				gap_max = t - t_last;
			t_last = t;
		}
		if (m.request == MPROC_DIE) {
			if (single)
				child_fail("DIE with a single consumer");
			ep_recv_done(in);
			break;
		}
		if (w->handoff)
			role_check_hdr(&m, w->size, &seq, &src);
		else
			role_check_msg(&m, MPROC_DO, w->size, &seq, &src);
		role_check_sender(&m, src, P, 0);
		if (m.recipient != MPROC_ANYONE)
			child_fail("recipient %d, expected anyone",
			           (int)m.recipient);
		if (seq >= w->n || seq % P != src)
			child_fail("seq %" PRIu64
			           " from producer %u: not its own",
			           seq, src);
		if (last[src] != NONE && seq <= last[src])
			child_fail("seq %" PRIu64 " after %" PRIu64
			           " from producer %u: "
			           "out of order or repeated",
			           seq, last[src], src);
		if (single && seq != (last[src] == NONE ? src : last[src] + P))
			child_fail("seq %" PRIu64
			           " from producer %u: expected %" PRIu64
			           " (lost)",
			           seq, src,
			           last[src] == NONE ? (uint64_t)src
			                             : last[src] + P);
		last[src] = seq;
		if (!single)
			g_role.sh->seen[seq] = 1;
		ep_recv_done(in);
		count++;
	}
	g_role.rep->count = count;
	g_role.rep->wakeups = wakeups;
	if (timed) {
		g_role.rep->max_recv_ns = gap_max;
		__atomic_add_fetch(&g_role.sh->consumers_done, 1,
		                   __ATOMIC_RELEASE);
	}
}

/*
 * role_watcher (W1w) calls mproc_queue_stats on the stream's queue until
 * every consumer is done: every millisecond (WATCH_1MS) or back to back
 * (WATCH_LOOP); at least once. It checks what only grows does not shrink.
 */
void role_watcher(const struct workload *w, const struct ep *q)
{
	const struct timespec one_ms = { 0, 1000000 };
	uint32_t C = (uint32_t)w->consumers;
	uint64_t calls = 0, sent = 0, received = 0;
	uint64_t most = w->n + C; /* the data and at most one DIE each */
	mproc_stats st;
	int r;

	do {
		r = mproc_queue_stats(q->c, &st);
		if (r != 0)
			child_fail_mproc("mproc_queue_stats", r);
		calls++;
		if (st.sent < sent || st.received < received ||
		    st.sent > most || st.received > most)
			child_fail("mproc_queue_stats: sent %" PRIu64
			           " received %" PRIu64 " after %" PRIu64
			           " and %" PRIu64 " (at most %" PRIu64 ")",
			           st.sent, st.received, sent, received, most);
		sent = st.sent;
		received = st.received;
		if (w->watch == WATCH_1MS)
			nanosleep(&one_ms, NULL);
	} while (__atomic_load_n(&g_role.sh->consumers_done,
	                         __ATOMIC_ACQUIRE) < C);
	g_role.rep->count = calls;
}

void role_pinger(const struct workload *w, const struct ep *out,
                 const struct ep *in)
{
	uint64_t total = w->warm + w->n, i, seq, t1, t2;
	uint64_t *rtt = xmalloc(w->n * sizeof(*rtt));
	unsigned char *pl = g_role.sbuf + ENV_SIZE;
	pid_t peer = g_role.sh->pids[1];
	struct rmsg m;
	uint32_t src;
	size_t p99;
	double med;

	memset(rtt, 0, w->n * sizeof(*rtt));
	for (i = 0; i < total; i++) {
		payload_fill(pl, w->size, i, 0);
		t1 = now_ns();
		ep_send(out, MPROC_DO, peer, pl, w->size);
		ep_recv(in, &m);
		t2 = now_ns();
		role_check_msg(&m, MPROC_FINISHED, w->size, &seq, &src);
		role_check_sender(&m, 1, 1, 1);
		if (seq != i || src != 0)
			child_fail("pong for seq %" PRIu64
			           " src %u, expected %" PRIu64,
			           seq, src, i);
		if (i >= w->warm)
			rtt[i - w->warm] = t2 - t1;
	}
	g_role.rep->t_end_ns = now_ns();
	ep_send(out, MPROC_DIE, peer, NULL, 0);
	qsort(rtt, w->n, sizeof(*rtt), role_cmp_u64);
	p99 = (size_t)((w->n * 99 + 99) / 100);
	if (p99 > 0)
		p99--;
	med = (double)rtt[w->n / 2];
	if (w->n % 2 == 0)
		med = (med + (double)rtt[w->n / 2 - 1]) / 2;
	g_role.rep->rtt_med_us = med / 1e3;
	g_role.rep->rtt_p99_us = (double)rtt[p99] / 1e3;
	g_role.rep->count = total;
	free(rtt);
}

void role_ponger(const struct workload *w, const struct ep *out,
                 const struct ep *in)
{
	uint64_t expect = 0, seq;
	pid_t peer = g_role.sh->pids[0];
	struct rmsg m;
	uint32_t src;

	for (;;) {
		ep_recv(in, &m);
		if (m.request == MPROC_DIE)
			break;
		role_check_msg(&m, MPROC_DO, w->size, &seq, &src);
		role_check_sender(&m, 0, 1, 0);
		if (seq != expect || src != 0)
			child_fail("ping seq %" PRIu64 ", expected %" PRIu64,
			           seq, expect);
		expect++;
		/* Echo the payload back: the pinger checks it. */
		ep_send(out, MPROC_FINISHED, peer, m.data, m.size);
	}
	if (m.sender != peer)
		child_fail("DIE from %d, expected %d", (int)m.sender,
		           (int)peer);
	g_role.rep->count = expect;
}

void role_dispatcher(const struct workload *w, const struct ep *task,
                     int ntask, const struct ep *res)
{
	uint32_t nw = (uint32_t)w->workers;
	uint64_t N = w->n, sent = 0, got = 0, seq;
	unsigned char *seen = xmalloc(N);
	unsigned char *pl = g_role.sbuf + ENV_SIZE;
	struct rmsg m;
	uint32_t src, k;

	memset(seen, 0, N);
	while (got < N) {
		while (sent < N && sent - got < (uint64_t)w->window) {
			k = (uint32_t)(sent % nw);
			payload_fill(pl, w->size, sent, 0);
			ep_send(ntask > 1 ? &task[k] : &task[0], MPROC_DO,
			        w->directed ? g_role.sh->pids[1 + k]
			                    : MPROC_ANYONE,
			        pl, w->size);
			sent++;
		}
		ep_recv(res, &m);
		role_check_msg(&m, MPROC_FINISHED, RESULT_SIZE, &seq, &src);
		role_check_sender(&m, src, nw, 1);
		if (m.recipient != g_role.pid)
			child_fail("result addressed to %d", (int)m.recipient);
		if (seq >= sent)
			child_fail("result for task %" PRIu64 " never sent",
			           seq);
		if (seen[seq])
			child_fail("second result for task %" PRIu64, seq);
		if (w->directed && src != 1 + seq % nw)
			child_fail("task %" PRIu64
			           " done by worker %u, addressed to %u",
			           seq, src, (uint32_t)(1 + seq % nw));
		seen[seq] = 1;
		got++;
	}
	for (k = 0; k < nw; k++)
		ep_send(ntask > 1 ? &task[k] : &task[0], MPROC_DIE,
		        w->directed ? g_role.sh->pids[1 + k] : MPROC_ANYONE,
		        NULL, 0);
	g_role.rep->count = got;
	free(seen);
}

void role_worker(const struct workload *w, const struct ep *task,
                 const struct ep *res)
{
	uint32_t nw = (uint32_t)w->workers, me = (uint32_t)g_role.role;
	uint64_t last = NONE, count = 0, seq;
	unsigned char rpl[RESULT_SIZE];
	pid_t disp = g_role.sh->pids[0];
	struct rmsg m;
	uint32_t src;

	for (;;) {
		ep_recv(task, &m);
		if (w->directed && m.recipient != g_role.pid)
			child_fail("took a %s addressed to %d",
			           mproc_request_name(m.request),
			           (int)m.recipient);
		if (m.request == MPROC_DIE)
			break;
		role_check_msg(&m, MPROC_DO, w->size, &seq, &src);
		role_check_sender(&m, src, 1, 0);
		if (seq >= w->n)
			child_fail("task %" PRIu64 " out of range", seq);
		if (last != NONE && seq <= last)
			child_fail("task %" PRIu64 " after %" PRIu64
			           ": out of order",
			           seq, last);
		if (w->directed && (seq % nw != me - 1 ||
		                    seq != (last == NONE ? me - 1 : last + nw)))
			child_fail("task %" PRIu64 " (after %" PRIu64
			           ") is not worker "
			           "%u's next",
			           seq, last, me);
		last = seq;
		payload_fill(rpl, RESULT_SIZE, seq, me);
		ep_send(res, MPROC_FINISHED, disp, rpl, RESULT_SIZE);
		count++;
	}
	if (m.sender != disp)
		child_fail("DIE from %d, expected %d", (int)m.sender,
		           (int)disp);
	g_role.rep->count = count;
}

/*
 * role_pool_task runs in the pool's workers: checks the task like role_worker
 * and answers {seq, 1, check}. Any other status than 0 fails the run.
 */
static int role_pool_task(const mproc_msg *task, mproc_msg *result, void *arg)
{
	const struct workload *w = arg;
	uint64_t seq = 0;
	uint32_t src = 0;
	const char *bad = NULL;

	if (task->request != MPROC_DO)
		bad = "request";
	else if (task->sender != g_role.sh->pids[0])
		bad = "sender";
	else if (task->size != w->size)
		bad = "size";
	else if (payload_verify(task->data, task->size, &seq, &src) != 0)
		bad = "checksum";
	else if (src != 0 || seq >= w->n)
		bad = "seq";
	else if (result->capacity < RESULT_SIZE)
		bad = "result capacity";
	if (bad != NULL) {
		fprintf(stderr,
		        "mproc-bench: FAIL: pool worker %d: bad task "
		        "(%s), seq field %" PRIu64 "\n",
		        (int)getpid(), bad, seq);
		return 1;
	}
	payload_fill(result->data, RESULT_SIZE, seq, 1);
	result->size = RESULT_SIZE;
	return 0;
}

/* Before the go: the pool forks its workers (not timed). */
mproc_pool *role_pool_open(const struct workload *w)
{
	mproc_pool_opts po;
	mproc_pool *pool = NULL;
	int r;

	memset(&po, 0, sizeof(po));
	po.workers = w->workers;
	if (w->size > MPROC_QUEUE_DEFAULT_MAX_PAYLOAD)
		po.max_payload = w->size;
	r = mproc_pool_start(&pool, role_pool_task, (void *)w, &po);
	if (r != 0)
		child_fail_mproc("mproc_pool_start", r);
	return pool;
}

/* W6 through mproc_pool_*: submit, collect, stop (DIE). */
void role_pool(const struct workload *w, mproc_pool *pool)
{
	uint64_t N = w->n, sent = 0, got = 0, seq;
	uint64_t *ids = xmalloc(N * sizeof(*ids));
	unsigned char *seen = xmalloc(N);
	unsigned char *pl = g_role.sbuf + ENV_SIZE;
	mproc_worker_exit ex[MAX_WORKERS];
	mproc_result r;
	uint32_t src;
	int rc, i;

	memset(seen, 0, N);
	while (got < N) {
		while (sent < N && sent - got < (uint64_t)w->window) {
			payload_fill(pl, w->size, sent, 0);
			rc = mproc_pool_submit(pool, pl, w->size, &ids[sent],
			                       OP_TIMEOUT_MS);
			if (rc != 0)
				child_fail_mproc("mproc_pool_submit", rc);
			sent++;
		}
		memset(&r, 0, sizeof(r));
		r.data = g_role.rbuf;
		r.capacity = g_role.maxpay;
		rc = mproc_pool_result(pool, &r, OP_TIMEOUT_MS);
		if (rc != 0)
			child_fail_mproc("mproc_pool_result", rc);
		if (r.status != 0 || r.request != MPROC_FINISHED ||
		    r.attempts != 1)
			child_fail("pool result: status %d, request %d, "
			           "attempts %u", r.status, r.request, r.attempts);
		if (r.size != RESULT_SIZE ||
		    payload_verify(r.data, r.size, &seq, &src) != 0 || src != 1)
			child_fail("pool result: bad payload (%u bytes)",
			           r.size);
		if (seq >= sent || seen[seq] || r.task_id != ids[seq])
			child_fail("pool result: task %" PRIu64 " (id %" PRIu64
			           "): never sent, twice, or under another id",
			           seq, r.task_id);
		if (r.worker <= 0 || r.worker == g_role.pid)
			child_fail("pool result: worker pid %d", (int)r.worker);
		seen[seq] = 1;
		got++;
	}
	g_role.rep->t_end_ns = now_ns();
	rc = mproc_pool_stop(pool, OP_TIMEOUT_MS, ex, MAX_WORKERS);
	if (rc != w->workers)
		child_fail("mproc_pool_stop reported %d workers, expected %d",
		           rc, w->workers);
	for (i = 0; i < rc; i++)
		if (ex[i].how != MPROC_EXIT_DIE)
			child_fail("pool worker %d ended with how=%d "
			           "status 0x%x", (int)ex[i].pid, ex[i].how,
			           ex[i].status);
	rc = mproc_pool_free(pool);
	if (rc != 0)
		child_fail_mproc("mproc_pool_free", rc);
	g_role.rep->count = got;
	free(ids);
	free(seen);
}

/*
 * role_memcpy ("2 x memcpy", W7): one process, no channel: each message
 * built as the producer builds it, copied twice (into a middle buffer, as
 * a copy path copies into the channel, then out of it) and checked as the
 * consumer checks it. The limit of a path that copies in and out.
 */
void role_memcpy(const struct workload *w)
{
	unsigned char *src = g_role.sbuf + ENV_SIZE, *mid = g_role.pbuf;
	unsigned char *dst = g_role.rbuf;
	uint64_t k, seq;
	uint32_t idx;

	if (w->handoff)
		payload_fill(src, w->size, 0, 0);
	for (k = 0; k < w->n; k++) {
		if (w->handoff)
			payload_hdr_fill(src, w->size, k, 0);
		else
			payload_fill(src, w->size, k, 0);
		memcpy(mid, src, w->size);
		/* the copies must not be merged or dropped */
		__asm__ __volatile__("" : : "r"(mid) : "memory");
		memcpy(dst, mid, w->size);
		__asm__ __volatile__("" : : "r"(dst) : "memory");
		if ((w->handoff ? payload_hdr_verify(dst, w->size, &seq, &idx)
		                : payload_verify(dst, w->size, &seq, &idx)) !=
		            0 ||
		    seq != k || idx != 0)
			child_fail("2 x memcpy: message %" PRIu64 " wrong", k);
	}
	g_role.rep->count = w->n;
}
