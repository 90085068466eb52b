/*
 * cpeer.c - the C side of the Python interoperability tests
 * (python/tests/test_interop.py). A program started on its own (the tests
 * run it with subprocess, nothing inherited): it meets Python programs on
 * a named queue, bus or slot through the public API only, checks every
 * field and byte they send, and prints what it received, one line each:
 *
 *   WORD key=value key=value ...      (data=HEX: the payload, hex)
 *
 *   cpeer qparent NAME WORKERS TASKS  create queue NAME, print "ready",
 *                                     take WORKERS hellos, send TASKS tasks,
 *                                     take and check TASKS results, send
 *                                     each worker a DIE
 *   cpeer qworker NAME PARENT         attach queue NAME, say hello to
 *                                     PARENT, answer every task for it (for
 *                                     me: to its pid or to anyone) until DIE
 *   cpeer busparent NAME READERS COUNT create bus NAME, subscribe, print
 *                                     "ready", wait for READERS more
 *                                     readers, send COUNT messages, take
 *                                     and check READERS acks
 *   cpeer busreader NAME WRITER COUNT [forme] attach bus NAME, subscribe,
 *                                     print "subscribed", take WRITER's
 *                                     COUNT messages (with forme, only the
 *                                     ones for it), check them, ack
 *   cpeer slotparent NAME COUNT       create slots NAME and NAME.r, publish
 *                                     value 0, print "ready", wait for the
 *                                     reply "seen 0" on NAME.r, publish
 *                                     values 1..COUNT-1 at once, wait for
 *                                     "seen COUNT-1 ..."
 *   cpeer slotreader NAME WRITER COUNT attach both slots, take value 0 and
 *                                     reply "seen 0", take values until
 *                                     COUNT-1 (newer each time), reply
 *                                     "seen COUNT-1 K" (K values taken)
 *                                     (slots: COUNT >= 2)
 *
 * The protocol (test_interop.py builds and checks the same bytes):
 *
 *   pattern(s, n)  n bytes, byte j = (s * 31 + j * 7 + (j >> 8)) & 0xff
 *   item i         4-byte little-endian i, then pattern(i, SIZES[i % 10]),
 *                  SIZES = 0 1 2 3 255 256 257 1000 4096 60000
 *   queue task i   item i; request DO when i % 3 == 0, else USER + i;
 *                  recipient: worker i % (W + 1) in hello order, or
 *                  ANYONE when i % (W + 1) == W
 *   queue result   request FINISHED for DO, else the task's request + 1;
 *                  recipient the task's sender; payload: the task's first
 *                  4 bytes, then the rest of it reversed
 *   hello          request USER, recipient the parent, "hello <pid>"
 *   DIE            request DIE, recipient the worker, no payload
 *   bus message i  item i; request DO when i % 4 == 0, else USER + i;
 *                  recipient ANYONE for even i, 1 for odd i (nobody's:
 *                  a reader taking only its own mail skips them)
 *   bus ack        request ACK, recipient the writer, "ack <n> <sum>":
 *                  n messages taken, sum = FNV-1a 64 (16 hex digits) over
 *                  each one's request, recipient, size (4 bytes LE each)
 *                  and payload, in order
 *   slot value i   item i, request USER + 1 + i, recipient ANYONE
 *   slot reply     on NAME.r: request USER, recipient the writer,
 *                  "seen <i>" or "seen <i> <k>"
 *
 * What cpeer creates goes with its last holder (MPROC_UNLINK_ON_LAST_CLOSE).
 * Every wait has a timeout (PEER_WAIT_MS). Exit 0 when everything was as
 * it should be; 1 on any mismatch or error (a line on stderr says which);
 * 2 for a bad command line.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define PEER_WAIT_MS 10000
#define PEER_MAX_WORKERS 64
#define PEER_BUF (1u << 20)
#define PEER_ACK (MPROC_USER + 1000000)

static const uint32_t sizes[10] = { 0, 1, 2, 3, 255, 256, 257, 1000, 4096,
                                    60000 };

static uint8_t inbuf[PEER_BUF], outbuf[PEER_BUF];

static int fail(const char *what, int rc)
{
	fprintf(stderr, "cpeer %d: %s: %s\n", (int)getpid(), what,
	        rc ? mproc_strerror(rc) : "mismatch");
	return 1;
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0 || v > INT32_MAX)
		exit(2);
	return v;
}

/* item i (see the top): returns its size. */
static uint32_t make_item(uint8_t *p, uint32_t i)
{
	uint32_t n = sizes[i % 10];

	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(i >> (8 * k));
	for (uint32_t j = 0; j < n; j++)
		p[4 + j] = (uint8_t)(i * 31u + j * 7u + (j >> 8));
	return 4 + n;
}

static uint32_t item_index(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 1 when (data, size) is item i exactly, reversed after the index when
 * reversed is set. */
static int is_item(const uint8_t *data, uint32_t size, uint32_t i,
                   int reversed)
{
	uint32_t n = make_item(outbuf, i);

	if (size != n || memcmp(data, outbuf, 4) != 0)
		return 0;
	for (uint32_t j = 4; j < n; j++)
		if (data[j] != outbuf[reversed ? n - 1 - (j - 4) : j])
			return 0;
	return 1;
}

static void print_msg(const char *word, const mproc_msg *m)
{
	printf("%s request=%d sender=%d recipient=%d size=%u data=", word,
	       (int)m->request, (int)m->sender, (int)m->recipient, m->size);
	for (uint32_t j = 0; j < m->size; j++)
		printf("%02x", ((const uint8_t *)m->data)[j]);
	printf("\n");
	fflush(stdout);
}

static void say(const char *line)
{
	printf("%s pid=%d\n", line, (int)getpid());
	fflush(stdout);
}

static int recv_into(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                     void *arg)
{
	*m = (mproc_msg){ .data = inbuf, .capacity = sizeof(inbuf) };
	return mproc_recv(c, m, match, arg, PEER_WAIT_MS);
}

/* A match: addressed to this process itself (not to anyone). */
static int to_me_only(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->recipient == getpid();
}

/* ---- queue ----------------------------------------------------------- */

static int32_t task_request(uint32_t i)
{
	return i % 3 == 0 ? MPROC_DO : MPROC_USER + (int32_t)i;
}

static int32_t reply_request(int32_t request)
{
	return request == MPROC_DO ? MPROC_FINISHED : request + 1;
}

static int hello_pid(const mproc_msg *m, pid_t *pid)
{
	char text[32];
	long v;

	if (m->size < 7 || m->size >= sizeof(text))
		return -1;
	memcpy(text, m->data, m->size);
	text[m->size] = '\0';
	if (sscanf(text, "hello %ld", &v) != 1 || v <= 0)
		return -1;
	*pid = (pid_t)v;
	return 0;
}

static int q_parent(const char *name, long w, long tasks)
{
	static unsigned char seen[1000000];
	mproc_queue_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                       .mode = 0600 };
	pid_t worker[PEER_MAX_WORKERS], me = getpid();
	mproc_conn *q;
	mproc_msg m;
	int rc;

	if (w < 1 || w > PEER_MAX_WORKERS || tasks > 1000000)
		return 2;
	if ((rc = mproc_queue_create(&q, name, &o)) != 0)
		return fail("queue create", rc);
	say("ready");
	for (long k = 0; k < w; k++) {
		if ((rc = recv_into(q, &m, to_me_only, NULL)) != 0)
			return fail("recv hello", rc);
		print_msg("hello", &m);
		if (m.request != MPROC_USER || m.recipient != me ||
		    hello_pid(&m, &worker[k]) != 0 || worker[k] != m.sender)
			return fail("hello", 0);
		for (long j = 0; j < k; j++)
			if (worker[j] == worker[k])
				return fail("hello twice", 0);
	}
	for (long i = 0; i < tasks; i++) {
		long to = i % (w + 1);
		mproc_msg t = { .request = task_request((uint32_t)i),
		                .recipient = to == w ? MPROC_ANYONE : worker[to],
		                .data = outbuf };

		t.size = make_item(outbuf, (uint32_t)i);
		if ((rc = mproc_send_msg(q, &t, PEER_WAIT_MS)) != 0)
			return fail("send task", rc);
	}
	for (long k = 0; k < tasks; k++) {
		uint32_t i;
		long to;
		int known = 0;

		if ((rc = recv_into(q, &m, to_me_only, NULL)) != 0)
			return fail("recv result", rc);
		print_msg("result", &m);
		if (m.size < 4 || (i = item_index(m.data)) >= (uint32_t)tasks ||
		    seen[i]++)
			return fail("result index", 0);
		to = i % (w + 1);
		for (long j = 0; j < w; j++)
			known |= m.sender == worker[j];
		if (m.request != reply_request(task_request(i)) ||
		    m.recipient != me || !known ||
		    (to != w && m.sender != worker[to]) ||
		    !is_item(m.data, m.size, i, 1))
			return fail("result", 0);
	}
	for (long k = 0; k < w; k++)
		if ((rc = mproc_send(q, MPROC_DIE, worker[k], NULL, 0)) != 0)
			return fail("send DIE", rc);
	/* Wait until the workers took their DIEs (closing first, as the
	 * last holder, would take them with the queue). */
	if ((rc = mproc_queue_join(q, PEER_WAIT_MS)) != 0)
		return fail("join", rc);
	printf("ok tasks=%ld\n", tasks);
	return mproc_close(q) == 0 ? 0 : 1;
}

static int q_worker(const char *name, pid_t parent)
{
	pid_t me = getpid();
	mproc_conn *q;
	mproc_msg m;
	char hello[32];
	int rc;

	if ((rc = mproc_queue_attach(&q, name)) != 0)
		return fail("queue attach", rc);
	snprintf(hello, sizeof(hello), "hello %d", (int)me);
	if ((rc = mproc_send(q, MPROC_USER, parent, hello,
	                     strlen(hello))) != 0)
		return fail("send hello", rc);
	say("attached");
	for (;;) {
		uint32_t i, n;

		if ((rc = recv_into(q, &m, mproc_for_me, NULL)) != 0)
			return fail("recv task", rc);
		print_msg("task", &m);
		if (m.sender != parent ||
		    (m.recipient != me && m.recipient != MPROC_ANYONE))
			return fail("task sender or recipient", 0);
		if (m.request == MPROC_DIE) {
			if (m.size != 0 || m.recipient != me)
				return fail("DIE", 0);
			break;
		}
		if (m.size < 4 || !is_item(m.data, m.size,
		                           (i = item_index(m.data)), 0) ||
		    m.request != task_request(i))
			return fail("task", 0);
		n = m.size;
		memcpy(outbuf, m.data, 4);
		for (uint32_t j = 4; j < n; j++)
			outbuf[j] = inbuf[n - 1 - (j - 4)];
		m = (mproc_msg){ .request = reply_request(m.request),
		                 .recipient = m.sender, .size = n,
		                 .data = outbuf };
		if ((rc = mproc_send_msg(q, &m, PEER_WAIT_MS)) != 0)
			return fail("send result", rc);
	}
	printf("ok\n");
	return mproc_close(q) == 0 ? 0 : 1;
}

/* ---- bus ------------------------------------------------------------- */

static int32_t bus_request(uint32_t i)
{
	return i % 4 == 0 ? MPROC_DO : MPROC_USER + (int32_t)i;
}

static pid_t bus_recipient(uint32_t i)
{
	return i % 2 == 0 ? MPROC_ANYONE : 1;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	for (size_t j = 0; j < n; j++)
		h = (h ^ ((const uint8_t *)p)[j]) * 1099511628211ull;
	return h;
}

static uint64_t fnv_u32(uint64_t h, uint32_t v)
{
	uint8_t le[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
	                  (uint8_t)(v >> 24) };

	return fnv(h, le, 4);
}

static uint64_t sum_msg(uint64_t h, const mproc_msg *m)
{
	h = fnv_u32(h, (uint32_t)m->request);
	h = fnv_u32(h, (uint32_t)m->recipient);
	h = fnv_u32(h, m->size);
	return fnv(h, m->data, m->size);
}

#define FNV_START 1469598103934665603ull

/* The sum a reader should report: all COUNT messages, or (forme) the
 * ones for anyone. */
static uint64_t bus_expected(long count, int forme, long *n)
{
	uint64_t h = FNV_START;

	*n = 0;
	for (long i = 0; i < count; i++) {
		mproc_msg m = { .request = bus_request((uint32_t)i),
		                .recipient = bus_recipient((uint32_t)i),
		                .data = outbuf };

		if (forme && m.recipient != MPROC_ANYONE)
			continue;
		m.size = make_item(outbuf, (uint32_t)i);
		h = sum_msg(h, &m);
		++*n;
	}
	return h;
}

static int is_ack(const mproc_msg *m, void *arg)
{
	return m->request == PEER_ACK && m->sender != *(pid_t *)arg;
}

static int bus_parent(const char *name, long readers, long count)
{
	mproc_bus_opts o = { .capacity = 8u << 20, .max_payload = 64u << 10,
	                     .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                     .mode = 0600 };
	pid_t me = getpid(), acked[PEER_MAX_WORKERS];
	mproc_conn *b;
	mproc_msg m;
	int rc;

	if (readers < 1 || readers > PEER_MAX_WORKERS || count > 1000000)
		return 2;
	if ((rc = mproc_bus_create(&b, name, &o)) != 0)
		return fail("bus create", rc);
	if ((rc = mproc_bus_subscribe(b)) != 0)
		return fail("subscribe", rc);
	say("ready");
	if ((rc = mproc_bus_wait_readers(b, (unsigned)readers + 1,
	                                 PEER_WAIT_MS)) != 0)
		return fail("wait_readers", rc);
	for (long i = 0; i < count; i++) {
		mproc_msg t = { .request = bus_request((uint32_t)i),
		                .recipient = bus_recipient((uint32_t)i),
		                .data = outbuf };

		t.size = make_item(outbuf, (uint32_t)i);
		if ((rc = mproc_send_msg(b, &t, PEER_WAIT_MS)) != 0)
			return fail("bus send", rc);
	}
	for (long k = 0; k < readers; k++) {
		char text[64], sum[17];
		long n, want_n;
		uint64_t want;

		if ((rc = recv_into(b, &m, is_ack, &me)) != 0)
			return fail("recv ack", rc);
		print_msg("ack", &m);
		if (m.recipient != me || m.size >= sizeof(text))
			return fail("ack", 0);
		memcpy(text, m.data, m.size);
		text[m.size] = '\0';
		if (sscanf(text, "ack %ld %16s", &n, sum) != 2)
			return fail("ack text", 0);
		want = bus_expected(count, n != count, &want_n);
		if (n != want_n || strtoull(sum, NULL, 16) != want ||
		    strlen(sum) != 16)
			return fail("ack sum", 0);
		for (long j = 0; j < k; j++)
			if (acked[j] == m.sender)
				return fail("ack twice", 0);
		acked[k] = m.sender;
	}
	printf("ok\n");
	return mproc_close(b) == 0 ? 0 : 1;
}

static int from_writer(const mproc_msg *m, void *arg)
{
	return m->sender == *(pid_t *)arg;
}

/* Mail from the writer for this process or for anyone. */
static int from_writer_for_me(const mproc_msg *m, void *arg)
{
	return from_writer(m, arg) && mproc_for_me(m, NULL);
}

static int bus_reader(const char *name, pid_t writer, long count, int forme)
{
	mproc_conn *b;
	mproc_msg m;
	uint64_t h = FNV_START, want;
	long n = 0, want_n;
	char ack[64];
	int rc;

	if ((rc = mproc_bus_attach(&b, name)) != 0)
		return fail("bus attach", rc);
	if ((rc = mproc_bus_subscribe(b)) != 0)
		return fail("subscribe", rc);
	say("subscribed");
	want = bus_expected(count, forme, &want_n);
	for (long i = 0; i < count; i++) {
		if (forme && bus_recipient((uint32_t)i) != MPROC_ANYONE)
			continue;
		if ((rc = recv_into(b, &m, forme ? from_writer_for_me
		                                 : from_writer, &writer)) != 0)
			return fail("bus recv", rc);
		print_msg("recv", &m);
		if (m.request != bus_request((uint32_t)i) ||
		    m.recipient != bus_recipient((uint32_t)i) ||
		    !is_item(m.data, m.size, (uint32_t)i, 0))
			return fail("bus message", 0);
		h = sum_msg(h, &m);
		n++;
	}
	if (n != want_n || h != want)
		return fail("bus sum", 0);
	snprintf(ack, sizeof(ack), "ack %ld %016llx", n, (unsigned long long)h);
	if ((rc = mproc_send(b, PEER_ACK, writer, ack, strlen(ack))) != 0)
		return fail("send ack", rc);
	printf("ok\n");
	return mproc_close(b) == 0 ? 0 : 1;
}

/* ---- slot ------------------------------------------------------------ */

static int slot_names(const char *name, char *reply, size_t n)
{
	return snprintf(reply, n, "%s.r", name) < (int)n ? 0 : -1;
}

static int slot_publish(mproc_conn *s, uint32_t i)
{
	uint32_t n = make_item(outbuf, i);

	return mproc_send(s, MPROC_USER + 1 + (int32_t)i, MPROC_ANYONE,
	                  outbuf, n);
}

/* Take the reply on r; 0 when it starts with want, from sender (any when
 * 0), to me. */
static int slot_reply(mproc_conn *r, const char *want, pid_t sender)
{
	mproc_msg m;
	int rc;

	if ((rc = recv_into(r, &m, NULL, NULL)) != 0)
		return fail("recv reply", rc);
	print_msg("reply", &m);
	if (m.request != MPROC_USER || m.recipient != getpid() ||
	    (sender && m.sender != sender) || m.size < strlen(want) ||
	    memcmp(m.data, want, strlen(want)) != 0)
		return fail("reply", 0);
	return 0;
}

static int slot_parent(const char *name, long count)
{
	mproc_slot_opts o = { .max_payload = 64u << 10,
	                      .flags = MPROC_UNLINK_ON_LAST_CLOSE,
	                      .mode = 0600 };
	mproc_conn *s, *r;
	char rname[256], want[32];
	int rc;

	if (count < 2 || slot_names(name, rname, sizeof(rname)) != 0)
		return 2;
	if ((rc = mproc_slot_create(&s, name, &o)) != 0 ||
	    (rc = mproc_slot_create(&r, rname, &o)) != 0)
		return fail("slot create", rc);
	if ((rc = slot_publish(s, 0)) != 0)
		return fail("publish", rc);
	say("ready");
	if (slot_reply(r, "seen 0", 0) != 0)
		return 1;
	for (long i = 1; i < count; i++)
		if ((rc = slot_publish(s, (uint32_t)i)) != 0)
			return fail("publish", rc);
	snprintf(want, sizeof(want), "seen %ld ", count - 1);
	if (slot_reply(r, want, 0) != 0)
		return 1;
	printf("ok\n");
	return mproc_close(s) == 0 && mproc_close(r) == 0 ? 0 : 1;
}

static int slot_reader(const char *name, pid_t writer, long count)
{
	mproc_conn *s, *r;
	mproc_msg m;
	char rname[256], text[64];
	long last = -1, k = 0;
	int rc;

	if (count < 2 || slot_names(name, rname, sizeof(rname)) != 0)
		return 2;
	if ((rc = mproc_slot_attach(&s, name)) != 0 ||
	    (rc = mproc_slot_attach(&r, rname)) != 0)
		return fail("slot attach", rc);
	while (last < count - 1) {
		uint32_t i;

		if ((rc = recv_into(s, &m, NULL, NULL)) != 0)
			return fail("slot recv", rc);
		print_msg("value", &m);
		if (m.size < 4 || (long)(i = item_index(m.data)) <= last ||
		    i >= (uint32_t)count || m.sender != writer ||
		    m.request != MPROC_USER + 1 + (int32_t)i ||
		    m.recipient != MPROC_ANYONE || !is_item(m.data, m.size, i, 0))
			return fail("slot value", 0);
		if (last < 0 && i != 0)
			return fail("first value", 0);
		last = i;
		k++;
		if (i == 0 || i == (uint32_t)count - 1) {
			if (i == 0)
				snprintf(text, sizeof(text), "seen 0");
			else
				snprintf(text, sizeof(text), "seen %ld %ld", last,
				         k);
			if ((rc = mproc_send(r, MPROC_USER, writer, text,
			                     strlen(text))) != 0)
				return fail("reply", rc);
		}
	}
	printf("ok values=%ld\n", k);
	return mproc_close(s) == 0 && mproc_close(r) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (argc == 5 && strcmp(cmd, "qparent") == 0)
		return q_parent(argv[2], num(argv[3]), num(argv[4]));
	if (argc == 4 && strcmp(cmd, "qworker") == 0)
		return q_worker(argv[2], (pid_t)num(argv[3]));
	if (argc == 5 && strcmp(cmd, "busparent") == 0)
		return bus_parent(argv[2], num(argv[3]), num(argv[4]));
	if ((argc == 5 || (argc == 6 && strcmp(argv[5], "forme") == 0)) &&
	    strcmp(cmd, "busreader") == 0)
		return bus_reader(argv[2], (pid_t)num(argv[3]), num(argv[4]),
		                  argc == 6);
	if (argc == 4 && strcmp(cmd, "slotparent") == 0)
		return slot_parent(argv[2], num(argv[3]));
	if (argc == 5 && strcmp(cmd, "slotreader") == 0)
		return slot_reader(argv[2], (pid_t)num(argv[3]), num(argv[4]));
	fprintf(stderr, "usage: cpeer qparent|qworker|busparent|busreader|"
	        "slotparent|slotreader NAME ...\n");
	return 2;
}
