/*
 * spsc.c - the "spsc ring (limit)" baseline: one producer, one consumer,
 * a byte ring in one MAP_SHARED mapping, head and tail on their own cache
 * lines, acquire/release atomics and nothing else. Records are built and
 * read in place; the waits spin a little, then sched_yield (the machine's
 * cores are shared: a spinner must let its peer run).
 */
#include <sched.h>
#include <string.h>

#include "bench.h"

#define SPSC_SPINS 64
#define SPSC_TIMEOUT_NS (OP_TIMEOUT_MS * 1000000ull)

static inline void spsc_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static size_t spsc_rec_len(uint32_t size)
{
	return sizeof(struct spsc_rec) + ((size_t)size + 7) / 8 * 8;
}

/* The mapping for records of up to maxpay bytes: 4 of them at least. */
size_t spsc_len(uint32_t maxpay)
{
	size_t cap = 1u << 20;

	while (cap < 4 * spsc_rec_len(maxpay))
		cap *= 2;
	return sizeof(struct spsc) + cap;
}

void spsc_init(struct spsc *r, size_t len)
{
	r->head = r->tail = 0;
	r->cap = len - sizeof(struct spsc);
}

/* Waits while *pos (the peer's) is not past the limit; fails on a hang. */
static uint64_t spsc_wait(const uint64_t *pos, uint64_t want_above_or_eq,
                          bool above)
{
	uint64_t v, t0 = 0;
	unsigned spins = 0;

	for (;;) {
		v = __atomic_load_n(pos, __ATOMIC_ACQUIRE);
		if (above ? v > want_above_or_eq : v >= want_above_or_eq)
			return v;
		if (++spins < SPSC_SPINS) {
			spsc_relax();
			continue;
		}
		spins = 0;
		if (t0 == 0)
			t0 = now_ns();
		else if (now_ns() - t0 > SPSC_TIMEOUT_NS)
			child_fail("spsc ring: no progress for %d ms: a hang",
			           OP_TIMEOUT_MS);
		sched_yield();
	}
}

/* The producer's cached view of tail, and where its record goes. */
static uint64_t spsc_tail_seen, spsc_pos, spsc_next;

unsigned char *spsc_reserve(struct spsc *r, uint32_t size)
{
	uint64_t head = r->head, off = head & (r->cap - 1);
	uint64_t need = spsc_rec_len(size), skip = 0;

	if (r->cap - off < need)
		skip = r->cap - off; /* a wrap record, then offset 0 */
	if (head + skip + need - spsc_tail_seen > r->cap)
		spsc_tail_seen = spsc_wait(&r->tail,
		                           head + skip + need - r->cap, false);
	if (skip) {
		((struct spsc_rec *)(void *)(r->data + off))->size = SPSC_WRAP;
		off = 0;
	}
	spsc_pos = off;
	spsc_next = head + skip + need;
	return r->data + off + sizeof(struct spsc_rec);
}

void spsc_commit(struct spsc *r, int32_t request, pid_t sender, pid_t to,
                 uint32_t size)
{
	struct spsc_rec *h = (struct spsc_rec *)(void *)(r->data + spsc_pos);

	h->size = size;
	h->request = request;
	h->sender = sender;
	h->recipient = to;
	__atomic_store_n(&r->head, spsc_next, __ATOMIC_RELEASE);
}

/* The consumer's cached view of head, and the record it holds. */
static uint64_t spsc_head_seen, spsc_rnext;

void spsc_recv(struct spsc *r, struct rmsg *m)
{
	uint64_t tail = r->tail, off;
	const struct spsc_rec *h;

	for (;;) {
		if (tail == spsc_head_seen)
			spsc_head_seen = spsc_wait(&r->head, tail, true);
		off = tail & (r->cap - 1);
		h = (const struct spsc_rec *)(const void *)(r->data + off);
		if (h->size != SPSC_WRAP)
			break;
		tail += r->cap - off;
	}
	if (h->size > g_role.maxpay)
		child_fail("spsc ring: record of %u bytes", h->size);
	m->request = h->request;
	m->sender = h->sender;
	m->recipient = h->recipient;
	m->size = h->size;
	m->data = r->data + off + sizeof(struct spsc_rec);
	spsc_rnext = tail + spsc_rec_len(h->size);
}

void spsc_release(struct spsc *r)
{
	__atomic_store_n(&r->tail, spsc_rnext, __ATOMIC_RELEASE);
}
