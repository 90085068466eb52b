/*
 * workloads.c - which workloads exist (W1..W6d, W8, W9, as --only and the other
 * options select and shape them) and what a run of one needs: how many
 * roles, how many channels, the largest payload.
 */
#include <string.h>
#include <strings.h>

#include "bench.h"

static bool wl_selected(const char *id)
{
	char buf[sizeof(opt_only)], *tok, *save = NULL;

	if (opt_only[0] == '\0')
		return true;
	snprintf(buf, sizeof(buf), "%s", opt_only);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save))
		if (strcasecmp(tok, id) == 0 ||
		    (strcasecmp(tok, "W7") == 0 && strncmp(id, "W7", 2) == 0))
			return true;
	return false;
}

static int wl_add(struct workload *ws, int n, const char *id,
                  const char *title, enum wkind kind, uint32_t size,
                  uint64_t count)
{
	struct workload *w = &ws[n];

	if (!wl_selected(id))
		return n;
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", id);
	snprintf(w->title, sizeof(w->title), "%s", title);
	w->kind = kind;
	w->size = size;
	w->n = opt_messages ? opt_messages : count;
	w->producers = w->consumers = 1;
	w->workers = opt_workers;
	w->window = opt_window;
	w->has[T_QUEUE] = true;
	w->has[T_MQ] = true;
	switch (kind) {
	case K_STREAM:
		w->unit = "msgs/s";
		w->nmq = 1;
		break;
	case K_PINGPONG:
		w->unit = "round trips/s";
		w->warm = opt_quick ? 100 : 2000;
		w->has[T_MPIPE] = w->has[T_PIPE] = true;
		w->nmq = 2;
		break;
	case K_POOL:
		w->unit = "tasks/s";
		w->has[T_PIPE] = true;
		w->nmq = 2;
		break;
	case K_BCAST:
		w->unit = "msgs/s";
		w->readers = w->consumers = opt_workers;
		w->has[T_QUEUE] = false;
		w->has[T_BUS] = w->has[T_PIPE] = true;
		w->nmq = w->readers;
		break;
	case K_LATEST:
		w->unit = "updates/s";
		w->readers = w->consumers = opt_workers;
		w->has[T_QUEUE] = w->has[T_MQ] = false;
		w->has[T_SLOT] = w->has[T_SEQLOCK] = true;
		break;
	}
	/* --named: the queue's workloads get the named queue beside it. */
	w->has[T_NQUEUE] = opt_named && w->has[T_QUEUE];
	return n + 1;
}

/* W1's messages per run for a payload size. */
static uint64_t wl_w1_count(uint32_t size)
{
	if (opt_quick)
		return size <= 256 ? 20000 : 5000;
	return size <= 256 ? 1000000 : size <= 8192 ? 200000 : 20000;
}

/*
 * wl_build fills ws with the selected workloads, in the order they run;
 * returns how many (at most MAX_WORKLOADS).
 */
int wl_build(struct workload ws[MAX_WORKLOADS])
{
	char title[64], id[8];
	uint32_t sizes[2];
	int nsizes, nw = 0, i;

	if (opt_size) {
		sizes[0] = opt_size;
		nsizes = 1;
	} else {
		sizes[0] = 64;
		sizes[1] = 4096;
		nsizes = 2;
	}
	for (i = 0; i < nsizes; i++) {
		nw = wl_add(ws, nw, "W1", "stream 1:1", K_STREAM,
		            sizes[i], wl_w1_count(sizes[i]));
		if (nw > 0 && strcmp(ws[nw - 1].id, "W1") == 0 &&
		    ws[nw - 1].size == sizes[i]) {
			ws[nw - 1].has[T_MPIPE] = ws[nw - 1].has[T_PIPE] = true;
			ws[nw - 1].has[T_QZC] = ws[nw - 1].has[T_SPSC] = true;
		}
	}
	/* W7: 1 MiB, the hand-off alone (W7a), every byte (W7b). */
	for (i = 0; i < 2; i++) {
		nw = wl_add(ws, nw, i ? "W7b" : "W7a",
		            i ? "1 MiB stream, every byte written and read"
		              : "1 MiB stream, the hand-off alone",
		            K_STREAM, MAX_SIZE,
		            opt_quick ? 50 : i ? 1000 : 4000);
		if (nw > 0 && strncmp(ws[nw - 1].id, "W7", 2) == 0 &&
		    ws[nw - 1].id[2] == (i ? 'b' : 'a')) {
			struct workload *w = &ws[nw - 1];

			w->handoff = i == 0;
			w->gbps = true;
			w->unit = "GB/s";
			w->has[T_MQ] = false;
			w->nmq = 0;
			w->has[T_QZC] = w->has[T_PIPE] = true;
			w->has[T_SPSC] = w->has[T_MEMCPY] = true;
		}
	}
	/* W1w: W1's 64 B queue stream (the same count), and a watcher. */
	nw = wl_add(ws, nw, "W1w", "stream 1:1 with a stats watcher",
	            K_STREAM, sizes[0], wl_w1_count(sizes[0]));
	if (nw > 0 && strcmp(ws[nw - 1].id, "W1w") == 0) {
		ws[nw - 1].watched = true;
		ws[nw - 1].has[T_MQ] = false;
		ws[nw - 1].nmq = 0;
	}
	/* W1p: the same stream, plain and with the consumer in poll(). */
	nw = wl_add(ws, nw, "W1p", "stream 1:1, consumer in poll()",
	            K_STREAM, sizes[0], wl_w1_count(sizes[0]));
	if (nw > 0 && strcmp(ws[nw - 1].id, "W1p") == 0) {
		ws[nw - 1].has[T_QPOLL] = true;
		ws[nw - 1].has[T_MQ] = ws[nw - 1].has[T_NQUEUE] = false;
		ws[nw - 1].nmq = 0;
	}
	{
		uint32_t s = opt_size ? opt_size : 64;
		uint64_t n = opt_quick ? 20000 : 1000000;
		int W = opt_workers;

		snprintf(title, sizeof(title), "fan-out 1:%d", W);
		nw = wl_add(ws, nw, "W2", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W2") == 0)
			ws[nw - 1].consumers = W;
		snprintf(title, sizeof(title), "fan-in %d:1", W);
		nw = wl_add(ws, nw, "W3", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W3") == 0)
			ws[nw - 1].producers = W;
		snprintf(title, sizeof(title), "%d:%d", W, W);
		nw = wl_add(ws, nw, "W4", title, K_STREAM, s, n);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W4") == 0)
			ws[nw - 1].producers = ws[nw - 1].consumers = W;
		nw = wl_add(ws, nw, "W5", "ping-pong", K_PINGPONG, s,
		            opt_quick ? 2000 : 50000);
		snprintf(title, sizeof(title), "task pool, %d workers", W);
		nw = wl_add(ws, nw, "W6", title, K_POOL, s,
		            opt_quick ? 5000 : 200000);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W6") == 0)
			ws[nw - 1].has[T_POOL] = true;
		snprintf(title, sizeof(title), "directed task pool, %d workers",
		         W);
		snprintf(id, sizeof(id), "W6d");
		nw = wl_add(ws, nw, id, title, K_POOL, s,
		            opt_quick ? 5000 : 200000);
		if (nw > 0 && strcmp(ws[nw - 1].id, "W6d") == 0) {
			ws[nw - 1].directed = true;
			ws[nw - 1].nmq = 1 + W;
		}
		snprintf(title, sizeof(title), "bus broadcast 1:%d", W);
		nw = wl_add(ws, nw, "W8", title, K_BCAST, s,
		            opt_quick ? 20000 : 500000);
		snprintf(title, sizeof(title),
		         "latest value, 1 writer, %d reader%s polling", W,
		         W == 1 ? "" : "s");
		nw = wl_add(ws, nw, "W9", title, K_LATEST,
		            s < PL_HDR + 8 ? PL_HDR + 8 : s,
		            opt_quick ? 20000 : 1000000);
	}
	/* Streams: the count a multiple of the producers. */
	for (i = 0; i < nw; i++) {
		if (ws[i].kind == K_STREAM &&
		    ws[i].n % (uint64_t)ws[i].producers)
			ws[i].n += (uint64_t)ws[i].producers -
			           ws[i].n % (uint64_t)ws[i].producers;
	}
	return nw;
}

/* 0 when every workload in list exists; else says which does not. */
int wl_check_only(const char *list)
{
	char buf[sizeof(opt_only)], *tok, *save = NULL;
	static const char *const known[] = { "W1", "W1w", "W1p", "W2", "W3",
		                             "W4", "W5", "W6", "W6d", "W7",
		                             "W7a", "W7b", "W8", "W9" };
	int i, nk = (int)(sizeof(known) / sizeof(known[0]));

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		for (i = 0; i < nk && strcasecmp(tok, known[i]) != 0; i++)
			;
		if (i == nk) {
			fprintf(stderr,
			        "mproc-bench: unknown workload %s "
			        "(W1, W1w, W1p, W2..W6, W6d, W7, W7a, W7b, "
			        "W8, W9)\n",
			        tok);
			return -1;
		}
	}
	return 0;
}

int wl_nroles(const struct workload *w, enum transport t)
{
	if (t == T_POOL || t == T_MEMCPY)
		return 1; /* the pool forks its own workers */
	switch (w->kind) {
	case K_STREAM:
		/* W1w: the watcher is the last role */
		return w->producers + w->consumers +
		       (w->watch != WATCH_NONE ? 1 : 0);
	case K_PINGPONG:
		return 2;
	case K_POOL:
		return 1 + w->workers;
	default:
		return 1 + w->readers; /* the writer first */
	}
}

uint32_t wl_maxpay(const struct workload *w)
{
	return w->size > RESULT_SIZE ? w->size : RESULT_SIZE;
}

/* How many channels a run of w over t uses. */
int wl_nchans(const struct workload *w, enum transport t)
{
	if (t == T_POOL || t == T_MEMCPY)
		return 0;
	switch (w->kind) {
	case K_STREAM:
		return 1;
	case K_PINGPONG:
		return t == T_MPIPE ? 1 : 2;
	case K_POOL:
		/* channel 0: results; then one task channel, or one per
		 * worker where the transport cannot select by recipient */
		if (t == T_PIPE || (t == T_MQ && w->directed))
			return 1 + w->workers;
		return 2;
	case K_BCAST:
		/* the bus, or a pipe or an mq per reader */
		return t == T_BUS ? 1 : w->readers;
	default:
		return 1;
	}
}
