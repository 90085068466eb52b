/*
 * check_pay.h - payloads that prove themselves whole, for the crash,
 * stress and threads suites: a header (producer, a tag, a sequence number)
 * and a body that depends on them, with an FNV-1a sum over all of it. A
 * torn, stale or mixed-up copy fails pay_check. send_pay and recv_pay
 * carry them through a channel; check_round_trip says a queue still works.
 */
#ifndef MPROC_CHECK_PAY_H
#define MPROC_CHECK_PAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_common.h"

#define PAY_MAGIC 0x31594150u /* "PAY1" */

struct pay {
	uint32_t magic;
	uint32_t size; /* whole payload, header included */
	uint32_t src;  /* producer (or the thread or child it comes from) */
	union {
		uint32_t round; /* crash and stress suites: the round */
		uint32_t dst;   /* threads suite: who it is for, or UINT32_MAX */
	};
	uint64_t seq;
	uint64_t sum; /* FNV-1a of the payload with this field zeroed */
};

static inline uint8_t pay_fill(uint64_t seq, uint32_t src, uint32_t i)
{
	return (uint8_t)(seq * 131u + i * 7u + src * 17u + (i >> 8));
}

static inline uint64_t pay_sum(const uint8_t *p, uint32_t size)
{
	const uint32_t lo = offsetof(struct pay, sum), hi = lo + 8;
	uint64_t h = 1469598103934665603ull;

	for (uint32_t i = 0; i < size; i++)
		h = (h ^ (i >= lo && i < hi ? 0 : p[i])) * 1099511628211ull;
	return h;
}

static inline void pay_make(void *buf, uint32_t size, uint32_t src,
                            uint32_t tag, uint64_t seq)
{
	struct pay h = { PAY_MAGIC, size, src, { tag }, seq, 0 };
	uint8_t *p = buf;

	for (uint32_t i = sizeof(h); i < size; i++)
		p[i] = pay_fill(seq, src, i);
	memcpy(p, &h, sizeof(h));
	h.sum = pay_sum(p, size);
	memcpy(p + offsetof(struct pay, sum), &h.sum, sizeof(h.sum));
}

/* 0 when buf (size bytes) is a whole payload made by pay_make. */
static inline int pay_check(const void *buf, uint32_t size, struct pay *out)
{
	const uint8_t *p = buf;
	struct pay h;

	if (size < sizeof(h))
		return -1;
	memcpy(&h, p, sizeof(h));
	if (h.magic != PAY_MAGIC || h.size != size || h.sum != pay_sum(p, size))
		return -1;
	for (uint32_t i = sizeof(h); i < size; i++)
		if (p[i] != pay_fill(h.seq, h.src, i))
			return -1;
	*out = h;
	return 0;
}

/* The largest payload send_pay makes (larger sizes are cut to it). */
#define PAY_MAX 4096u

/*
 * send_pay_to sends a struct pay message of size bytes (src, tag, seq)
 * with the given request to `to`. Returns what mproc_send_msg returned.
 */
static inline int send_pay_to(mproc_conn *c, int32_t request, pid_t to,
                              uint32_t size, uint32_t src, uint32_t tag,
                              uint64_t seq, int timeout_ms)
{
	uint8_t buf[PAY_MAX];
	mproc_msg m;

	if (size > sizeof(buf))
		size = sizeof(buf);
	pay_make(buf, size, src, tag, seq);
	memset(&m, 0, sizeof(m));
	m.request = request;
	m.recipient = to;
	m.data = buf;
	m.size = size;
	return mproc_send_msg(c, &m, timeout_ms);
}

/* send_pay_to as MPROC_USER to anyone. */
static inline int send_pay(mproc_conn *c, uint32_t size, uint32_t src,
                           uint32_t tag, uint64_t seq, int timeout_ms)
{
	return send_pay_to(c, MPROC_USER, MPROC_ANYONE, size, src, tag, seq,
	                   timeout_ms);
}

/*
 * recv_pay receives one message into a heap buffer of exactly cap bytes
 * (so the sanitizer sees any overflow) and checks it is whole. Returns
 * what recv returned; *torn is set when a received message is not whole
 * (or not MPROC_USER).
 */
static inline int recv_pay(mproc_conn *c, uint32_t cap, int timeout_ms,
                           struct pay *out, int *torn)
{
	void *buf = malloc(cap > 0 ? cap : 1);
	mproc_msg m;
	int rc;

	*torn = 0;
	if (buf == NULL)
		return -ENOMEM;
	memset(&m, 0, sizeof(m));
	m.data = buf;
	m.capacity = cap;
	rc = mproc_recv(c, &m, NULL, NULL, timeout_ms);
	if (rc == 0 && (m.request != MPROC_USER || m.size > cap ||
	                pay_check(buf, m.size, out) < 0))
		*torn = 1;
	free(buf);
	return rc;
}

/* The queue still works: one message there and back, promptly. */
static inline void check_round_trip(mproc_conn *q, uint32_t cap)
{
	long long t0 = check_now_ms();
	struct pay p;
	int torn, rc;

	rc = send_pay(q, 100, 999, 0, 424242, 1000);
	ck_assert_msg(rc == 0, "send: %s", mproc_strerror(rc));
	rc = recv_pay(q, cap, 1000, &p, &torn);
	ck_assert_msg(rc == 0, "recv: %s", mproc_strerror(rc));
	ck_assert(!torn && p.src == 999 && p.seq == 424242);
	ck_assert_msg(check_now_ms() - t0 < check_scale_ms(500),
	              "round trip took %lld ms", check_now_ms() - t0);
}

#endif /* MPROC_CHECK_PAY_H */
