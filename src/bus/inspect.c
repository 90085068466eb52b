/*
 * inspect.c - a bus's figures for the inspector (mproc-stat), from a
 * mapping it may only read: no lock is taken and nothing is written, so a
 * dead or stopped writer holding the send lock holds nothing up, and a
 * corrupt mapping gives -EPROTO, never a crash: every offset and index
 * read from the mapping is checked before it is used.
 *
 * The readers' table is copied before the words are read: a reader moves
 * its cursor only up to a tail it saw, so every cursor a live reader set
 * is at or before the tail read after it. An entry that changed hands
 * meanwhile (unsubscribed, taken back, reused) is looked at again after
 * the words and left out.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/futex.h"
#include "bus/layout.h"
#include "internal.h"

#define INSPECT_TRIES 1000
/* Walks of the ring cut short by a writer, before giving up on it. */
#define INSPECT_WALKS 8
#define INSPECT_FLAGS (MPROC_BUS_OVERWRITE | MPROC_UNLINK_ON_LAST_CLOSE)

/* The geometry, each field read once and checked against len. */
static int bus_inspect_geometry(const struct mproc__bus_shared *s, size_t len,
                                struct mproc__bus_figures *out)
{
	if (len < MPROC__BUS_HDR ||
	    mproc__region_check(&s->hdr, len, MPROC__KIND_BUS, MPROC__BUS_LAYOUT,
	                        MPROC__BUS_HDR) < 0)
		return -EPROTO;
	out->capacity = __atomic_load_n(&s->capacity, __ATOMIC_RELAXED);
	out->max_payload = __atomic_load_n(&s->max_payload, __ATOMIC_RELAXED);
	out->max_readers = __atomic_load_n(&s->max_readers, __ATOMIC_RELAXED);
	out->flags = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);
	if (out->max_readers == 0 || out->max_readers > MPROC__BUS_MAX_READERS ||
	    out->capacity == 0 || out->capacity % 8 != 0 ||
	    out->capacity > MPROC_BUS_MAX_CAPACITY ||
	    mproc__bus_ring_off(out->max_readers) + out->capacity != len ||
	    out->capacity < mproc__rec_len(out->max_payload) ||
	    (out->flags & ~(uint32_t)INSPECT_FLAGS) != 0)
		return -EPROTO;
	return 0;
}

static int bus_inspect_words_valid(const uint64_t *p, uint64_t cap)
{
	return p[BP_HEAD] % 8 == 0 && p[BP_TAIL] % 8 == 0 &&
	       p[BP_HEAD] <= p[BP_TAIL] && p[BP_TAIL] - p[BP_HEAD] <= cap &&
	       p[BP_HEAD_ID] <= p[BP_SENT];
}

/*
 * The send words as one state (a commit cut short for good: the state it
 * leaves). Returns 1 with *seq the journal's seq they were read under, or
 * 0 with the words as they stand (a commit kept running: not one state).
 */
static int bus_inspect_words(const struct mproc__bus_shared *s, uint64_t *p,
                             uint32_t *seq)
{
	for (int i = 0; i < INSPECT_TRIES; i++) {
		if (mproc__side_snapshot(&s->send, BP_WORDS, p, seq) == 0)
			return 1;
		if (i >= INSPECT_TRIES / 2 &&
		    mproc__side_pending_snapshot(&s->send, BP_WORDS, p, seq) == 0)
			return 1;
		mproc__pause();
	}
	mproc__words_load(&s->send, p, BP_WORDS);
	return 0;
}

/*
 * Every record in [head, tail) must be whole. Writers write into those
 * bytes only after a commit freed them (head first), so a bad record
 * found while the journal's seq is still the one the words were read
 * under is corruption; one found after it moved was freed under the walk.
 * Returns 0 (whole), 1 (moved: look again) or -EPROTO.
 */
static int bus_inspect_walk(const struct mproc__bus_shared *s,
                            const struct mproc__ring *ring, const uint64_t *p,
                            uint32_t max_payload, uint32_t seq)
{
	struct mproc__rec r;
	uint64_t off;

	for (off = p[BP_HEAD]; off < p[BP_TAIL]; off += r.len) {
		if (mproc__rec_read(ring, off, p[BP_TAIL], max_payload, &r) == 0)
			continue;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		return __atomic_load_n(&s->send.journal.seq, __ATOMIC_RELAXED) ==
		                       seq
		               ? -EPROTO
		               : 1;
	}
	return 0;
}

/* Copy the table's entries in use (index, pid, start and counts). */
static void bus_inspect_entries(const struct mproc__bus_shared *s,
                                uint32_t n, struct mproc__bus_reader_figures *f)
{
	const struct mproc__bus_reader *rd =
	        (const struct mproc__bus_reader *)((const uint8_t *)s +
	                                           MPROC__BUS_HDR);

	for (uint32_t i = 0; i < n; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].index = i;
		f[i].pid = __atomic_load_n(&rd[i].pid, __ATOMIC_ACQUIRE);
		if (f[i].pid == 0)
			continue;
		f[i].start_ns = __atomic_load_n(&rd[i].start_ns, __ATOMIC_RELAXED);
		f[i].cursor = __atomic_load_n(&rd[i].cursor, __ATOMIC_RELAXED);
		f[i].seen = __atomic_load_n(&rd[i].seen, __ATOMIC_RELAXED);
		f[i].received = __atomic_load_n(&rd[i].received, __ATOMIC_RELAXED);
		f[i].lost = __atomic_load_n(&rd[i].lost, __ATOMIC_RELAXED);
	}
}

/* The entry still belongs to the subscriber copied? */
static int bus_inspect_same(const struct mproc__bus_shared *s,
                            const struct mproc__bus_reader_figures *f)
{
	const struct mproc__bus_reader *rd =
	        (const struct mproc__bus_reader *)((const uint8_t *)s +
	                                           MPROC__BUS_HDR) + f->index;

	return __atomic_load_n(&rd->pid, __ATOMIC_ACQUIRE) == f->pid &&
	       __atomic_load_n(&rd->start_ns, __ATOMIC_RELAXED) == f->start_ns;
}

int mproc__bus_inspect(const void *map, size_t len,
                       struct mproc__bus_figures *out,
                       struct mproc__bus_reader_figures *readers, uint32_t max)
{
	const struct mproc__bus_shared *s = map;
	struct mproc__ring ring;
	struct mproc__live lc;
	uint64_t p[BP_WORDS];
	uint32_t seq = 0, found = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (bus_inspect_geometry(s, len, out) < 0)
		return -EPROTO;
	if (readers == NULL || max < out->max_readers)
		return -ENOBUFS;
	mproc__ring_init(&ring,
	                 (uint8_t *)map + mproc__bus_ring_off(out->max_readers),
	                 out->capacity);
	out->pending = mproc__journal_pending(&s->send);
	for (int walk = 0;; walk++) {
		bus_inspect_entries(s, out->max_readers, readers);
		out->consistent = bus_inspect_words(s, p, &seq);
		if (!bus_inspect_words_valid(p, out->capacity))
			return -EPROTO;
		if (!out->consistent || walk == INSPECT_WALKS)
			break; /* the records could not be checked */
		rc = bus_inspect_walk(s, &ring, p, out->max_payload, seq);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break;
		mproc__pause();
	}
	out->sent = p[BP_SENT];
	out->queued = p[BP_SENT] - p[BP_HEAD_ID];
	out->head = p[BP_HEAD];
	out->tail = p[BP_TAIL];
	out->bytes = p[BP_TAIL] - p[BP_HEAD];
	out->recoveries = __atomic_load_n(&s->send.recoveries, __ATOMIC_RELAXED);
	out->reclaimed = __atomic_load_n(&s->reclaimed, __ATOMIC_RELAXED);
	for (int i = 0; i < MPROC__POLLERS; i++)
		out->pollers += __atomic_load_n(&s->poll.table.slot[i].pid,
		                                __ATOMIC_RELAXED) != 0;
	mproc__live_init(&lc);
	/* Keep the subscribers, in place (found <= i). */
	for (uint32_t i = 0; i < out->max_readers; i++) {
		struct mproc__bus_reader_figures f = readers[i];

		if (f.pid == 0 || !bus_inspect_same(s, &f))
			continue; /* free, or changed hands meanwhile */
		/* What no bus could have written (the bus refuses such a
		 * reader's receives with -EPROTO). A cursor behind head is
		 * not one of them: an overrun reader's (overwrite), or one
		 * that left and came back into its entry meanwhile. */
		if (f.pid < 0 || f.cursor % 8 != 0 || f.cursor > p[BP_TAIL] ||
		    f.seen > p[BP_SENT])
			return -EPROTO;
		f.live = !mproc__live_gone(&lc, f.pid, f.start_ns);
		f.overrun = f.cursor < p[BP_HEAD];
		f.lag = p[BP_SENT] - f.seen;
		f.lag_bytes = p[BP_TAIL] - f.cursor;
		out->subscribers++;
		out->readers += f.live != 0;
		if (f.lag > out->max_lag)
			out->max_lag = f.lag;
		if (f.lag_bytes > out->max_lag_bytes)
			out->max_lag_bytes = f.lag_bytes;
		readers[found++] = f;
	}
	return (int)found;
}
