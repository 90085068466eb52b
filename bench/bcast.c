/*
 * bcast.c - W8, broadcast 1:N: one writer, N readers, every reader gets
 * every message. On the bus the writer sends each message once; the
 * baselines give each reader its own channel (a raw pipe or a POSIX mq)
 * and the writer sends each message to all of them, as a careful user
 * would without a broadcast primitive.
 */
#include <inttypes.h>

#include "bench.h"

void role_bcast_writer(const struct workload *w, const struct ep *out,
                       int nout)
{
	unsigned char *pl = g_role.sbuf + ENV_SIZE;
	uint64_t k;
	int i;

	for (k = 0; k < w->n; k++) {
		payload_fill(pl, w->size, k, 0);
		for (i = 0; i < nout; i++)
			ep_send(&out[i], MPROC_DO, MPROC_ANYONE, pl, w->size);
	}
	g_role.rep->count = w->n;
}

/* Each reader takes the whole stream, in order, each message once. */
void role_bcast_reader(const struct workload *w, const struct ep *in)
{
	uint64_t k, seq;
	struct rmsg m;
	uint32_t src;

	for (k = 0; k < w->n; k++) {
		ep_recv(in, &m);
		role_check_msg(&m, MPROC_DO, w->size, &seq, &src);
		role_check_sender(&m, src, 1, 0);
		if (m.recipient != MPROC_ANYONE)
			child_fail("recipient %d, expected anyone",
			           (int)m.recipient);
		if (seq != k)
			child_fail("seq %" PRIu64 ", expected %" PRIu64
			           " (lost, repeated or out of order)",
			           seq, k);
	}
	g_role.rep->count = w->n;
}
