/*
 * fuzz_pipe.c - the pipe's frame decoder fed arbitrary bytes, as if the
 * peer wrote garbage into the socket. Receives until the endpoint says
 * -EAGAIN, -EPIPE or -EPROTO; anything else, a crash, a hang or a large
 * allocation is a finding.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int pick(const mproc_msg *m, void *arg)
{
	return ((uintptr_t)arg + (uint32_t)m->request) % 3 != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[1 << 16];
	mproc_conn *a, *b;
	mproc_msg m;
	size_t off = 0;
	ssize_t n;
	int rc, i;

	if (mproc_pipe_open(&a, &b) != 0)
		abort();
	/* The raw bytes go in through b's socket, under its framing. */
	while (off < size) {
		n = write(mproc_fd(b), data + off, size - off);
		if (n <= 0)
			break; /* socket buffer full: what fits is enough */
		off += (size_t)n;
	}
	mproc_close(b);
	for (i = 0; i < 10000; i++) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = (i & 1) ? 16 : sizeof(buf);
		rc = mproc_recv(a, &m, (i & 2) ? pick : NULL,
		                (void *)(uintptr_t)i, MPROC_NOWAIT);
		if (rc == 0 || rc == -EMSGSIZE)
			continue;
		if (rc == -EAGAIN || rc == -EPIPE || rc == -EPROTO)
			break;
		abort(); /* an error the contract does not allow here */
	}
	if (i == 10000)
		abort(); /* the decoder did not make progress */
	mproc_close(a);
	return 0;
}
