/*
 * futex.h - waiting on words in shared memory (src/base/futex.c).
 *
 * The waiter-bit protocol, used by every shared kind: a waiter reads the
 * sequence word, sets its bits in the waiting mask (mproc__sleep_prepare),
 * looks once more at the word it waits for, and sleeps on the sequence
 * word (mproc__sleep) unless it moved. A waker changes the watched word,
 * fences, and calls mproc__wake_bits, which makes the system call only
 * when bits it can help are set: either the waiter sees the change or the
 * waker sees the bits. Sleeps are cut into slices, so a waker killed
 * between its change and its wake costs a sleeper one slice.
 */
#ifndef MPROC_BASE_FUTEX_H
#define MPROC_BASE_FUTEX_H

#include <stdint.h>

#include "base/clock.h"

#define MPROC__FUTEX_ALL 0xffffffffu

/* Spin this long for a change before sleeping. */
#define MPROC__SPIN_NS 20000
/* Most pause instructions between two reads of a spun-on word. */
#ifndef MPROC__SPIN_MAX_PAUSES
#define MPROC__SPIN_MAX_PAUSES 8
#endif
/* A yield that kept us off the CPU this long means the CPU is wanted. */
#define MPROC__YIELD_BUSY_NS 20000

static inline void mproc__pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * mproc__futex_wait sleeps while *word == val, until woken or the deadline.
 * Only a wake whose bits intersect bits wakes it (MPROC__FUTEX_ALL: any).
 * Returns 0 (woken, value changed, or a signal: re-check and call again),
 * -ETIMEDOUT, or another negative errno.
 */
int mproc__futex_wait(uint32_t *word, uint32_t val,
                      const struct mproc__deadline *d, uint32_t bits);
/* mproc__futex_wake wakes up to n sleepers on word whose bits meet bits. */
void mproc__futex_wake(uint32_t *word, int n, uint32_t bits);

/*
 * mproc__wake_bits: the waker's half, called after the change was stored
 * and fenced. Clears the bits in *mask and wakes the sleepers on *seq that
 * have them, only if any of them is set (inline: a load on every send and
 * receive, the system call only when someone sleeps).
 */
static inline void mproc__wake_bits(uint32_t *mask, uint32_t *seq,
                                    uint32_t bits)
{
	if ((__atomic_load_n(mask, __ATOMIC_SEQ_CST) & bits) &&
	    (__atomic_fetch_and(mask, ~bits, __ATOMIC_SEQ_CST) & bits)) {
		__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
		mproc__futex_wake(seq, 0x7fffffff, bits);
	}
}
/*
 * mproc__sleep_prepare: the waiter's first half. Returns the sequence
 * value to sleep on, after setting bits in *mask. The caller then looks at
 * what it waits for once more before mproc__sleep.
 */
uint32_t mproc__sleep_prepare(uint32_t *mask, uint32_t *seq, uint32_t bits);
/*
 * mproc__sleep sleeps on *seq while it is v, until woken, the deadline d,
 * or slice_ms (0: no slice). Returns 0 (look again: woken, a signal, or
 * only the slice ended) or -ETIMEDOUT (d passed).
 */
int mproc__sleep(uint32_t *seq, uint32_t v, const struct mproc__deadline *d,
                 int slice_ms, uint32_t bits);
/*
 * mproc__spin watches *word for a change from v (or *stop becoming
 * nonzero) for a short while, backing off and yielding to a peer that
 * shares the CPU. Returns 1 when it changed, 0 when it gave up.
 */
int mproc__spin(const uint64_t *word, uint64_t v, const uint32_t *stop);

#endif /* MPROC_BASE_FUTEX_H */
