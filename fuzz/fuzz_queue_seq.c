/*
 * fuzz_queue_seq.c - the fuzzer's bytes pick a series of calls on a small
 * queue (send, receive with and without predicates, a buffer too small,
 * join, task_done, stats), all with timeout 0, checked against a simple
 * model of what the queue must contain: a list of records in send order,
 * each live or taken, whose bytes count from the oldest live one (taken
 * records behind a live one are reclaimed only when it goes).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 2048
#define MAXP 200
#define HDR 56 /* the queue's record header */
#define MAXREC 64

struct rec {
	int32_t request;
	pid_t recipient;
	uint32_t size;
	uint8_t fill;
	int live;
};

static struct rec model[4096];
static size_t first, count; /* model[first .. first+count) may hold live */
static uint64_t m_unfinished, m_taken, m_sent, m_received;

static uint64_t rec_len(uint32_t size)
{
	return (HDR + size + 7u) & ~7u;
}

static uint64_t model_bytes(void)
{
	uint64_t b = 0;

	for (size_t i = first; i < first + count; i++)
		b += rec_len(model[i].size);
	return b;
}

static uint64_t model_queued(void)
{
	uint64_t n = 0;

	for (size_t i = first; i < first + count; i++)
		n += model[i].live;
	return n;
}

static void model_trim(void)
{
	while (count > 0 && !model[first].live) {
		first++;
		count--;
	}
}

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "model mismatch: %s (line %d)\n", #c,  \
			        __LINE__);                                     \
			abort();                                               \
		}                                                              \
	} while (0)

struct want {
	int mode; /* 0 any, 1 request == x, 2 for me */
	int32_t request;
};

static int accepts(const struct want *w, int32_t request, pid_t recipient)
{
	if (w->mode == 1)
		return request == w->request;
	if (w->mode == 2)
		return recipient == 0 || recipient == getpid();
	return 1;
}

static int pred(const mproc_msg *m, void *arg)
{
	return accepts(arg, m->request, m->recipient);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MAXP], out[MAXP];
	mproc_queue_opts o = { CAP, 0, MAXP, 0 };
	pid_t other = getppid(), me = getpid();
	mproc_conn *q;
	mproc_stats st;
	mproc_msg m;
	size_t i;
	int rc;

	if (size < 2)
		return 0;
	o.max_messages = data[0] % 8;              /* 0: bytes only */
	o.flags = (data[1] & 1) ? MPROC_QUEUE_MANUAL_DONE : 0;
	if (mproc_queue_open(&q, &o) != 0)
		abort();
	first = count = 0;
	m_unfinished = m_taken = m_sent = m_received = 0;

	for (i = 2; i + 2 < size && first + count < 4096; i += 3) {
		uint8_t op = data[i], a = data[i + 1], b = data[i + 2];

		switch (op % 6) {
		case 0:
		case 1: { /* send */
			uint32_t sz = (uint32_t)(a * 7u + b) % (MAXP + 40);
			pid_t to = (b % 3 == 0) ? 0 : (b % 3 == 1) ? me : other;
			int32_t req = MPROC_DO + a % 3;
			mproc_msg s = { .request = req, .recipient = to,
			                .size = sz, .data = buf };
			int fits;

			memset(buf, a, sizeof(buf));
			rc = mproc_send_msg(q, &s, MPROC_NOWAIT);
			if (sz > MAXP) {
				CHECK(rc == -EMSGSIZE);
				break;
			}
			fits = model_bytes() + rec_len(sz) <= CAP &&
			       (o.max_messages == 0 ||
			        model_queued() < o.max_messages);
			CHECK(rc == (fits ? 0 : -EAGAIN));
			if (rc == 0) {
				model[first + count++] =
				    (struct rec){ req, to, sz, a, 1 };
				m_sent++;
				m_unfinished++;
			}
			break;
		}
		case 2:
		case 3: { /* receive */
			struct want w = { a % 3, MPROC_DO + b % 3 };
			size_t j, hit = SIZE_MAX;

			memset(&m, 0, sizeof(m));
			m.data = out;
			m.capacity = (b & 0x10) ? b % 32 : MAXP;
			for (j = first; j < first + count; j++)
				if (model[j].live &&
				    accepts(&w, model[j].request,
				            model[j].recipient)) {
					hit = j;
					break;
				}
			rc = mproc_recv(q, &m, w.mode ? pred : NULL, &w,
			                MPROC_NOWAIT);
			if (hit == SIZE_MAX) {
				CHECK(rc == -EAGAIN);
				break;
			}
			CHECK(m.size == model[hit].size);
			if (model[hit].size > m.capacity) {
				CHECK(rc == -EMSGSIZE);
				break;
			}
			CHECK(rc == 0);
			CHECK(m.request == model[hit].request);
			CHECK(m.recipient == model[hit].recipient);
			CHECK(m.sender == me);
			for (j = 0; j < m.size; j++)
				CHECK(out[j] == model[hit].fill);
			model[hit].live = 0;
			model_trim();
			m_received++;
			if (o.flags & MPROC_QUEUE_MANUAL_DONE)
				m_taken++;
			else
				m_unfinished--;
			break;
		}
		case 4: /* task_done or join */
			if (a & 1) {
				rc = mproc_task_done(q);
				if ((o.flags & MPROC_QUEUE_MANUAL_DONE) &&
				    m_taken > 0) {
					CHECK(rc == 0);
					m_taken--;
					m_unfinished--;
				} else {
					CHECK(rc == -EINVAL);
				}
			} else {
				rc = mproc_queue_join(q, MPROC_NOWAIT);
				CHECK(rc == (m_unfinished == 0 ? 0 : -EAGAIN));
			}
			break;
		default: /* stats, empty */
			CHECK(mproc_queue_stats(q, &st) == 0);
			CHECK(st.queued == model_queued());
			CHECK(st.bytes == model_bytes());
			CHECK(st.unfinished == m_unfinished);
			CHECK(st.sent == m_sent);
			CHECK(st.received == m_received);
			CHECK(st.orphans == 0);
			CHECK(mproc_queue_empty(q) == (model_queued() == 0));
			break;
		}
	}
	mproc_close(q);
	return 0;
}
