/*
 * fuzz_named_attach.c - mproc_queue_attach on a file someone else wrote:
 * the fuzzer's bytes become the object under a name in a private
 * $MPROC_DIR, and whatever attaches is used (sends, receives, stats, the
 * descriptor, with MPROC_NOWAIT) and inspected read-only
 * (mproc__queue_inspect on a PROT_READ mapping, as mproc-stat does).
 *
 * Input: byte 0 picks the shape (bits 0-1), the length change (bits 2-3,
 * amount in byte 1) and the ops (bits 4-7); then patches of (u16 offset,
 * u8 width, value).
 *   shape 0: the input itself is the file (from byte 2)
 *   shape 1: a real queue made by the library, with messages, patched
 *            anywhere but on the two mutexes (a scribbled mutex looks
 *            held: every call waits its 20 ms, and the fuzzer crawls)
 *   shape 2: a header built from struct mproc__queue_shared, the same
 *   shape 3: as 1, the mutexes' state words patched too, but not glibc's
 *            type word (__kind, __spins, __elision): a scribbled type
 *            crashes pthread_mutex_trylock itself (SIGILL in lock
 *            elision on a CPU without TSX; reported, see
 *            check/named/check_named.c test_named_known_mutex_kind)
 * Attach must return 0 or -EPROTO (-ENOMEM); every later call 0 or a
 * documented error; nothing may crash (ASan, UBSan) or hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mproc.h"
#include "internal.h"
#include "base/lock.h"
#include "queue/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP 4096
#define FUZZ_MAXP 256

static char fz_dir[128];
static char fz_path[256];
static uint8_t *fz_real, *fz_built;
static size_t fz_len;

static void fz_cleanup(void)
{
	unlink(fz_path);
	rmdir(fz_dir);
}

static int fz_allowed(int rc)
{
	return rc >= 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EMSGSIZE ||
	       rc == -ESHUTDOWN || rc == -ETIMEDOUT || rc == -EINVAL ||
	       rc == -EMFILE || rc == -ENOMEM;
}

static void fz_write(const uint8_t *p, size_t len)
{
	int fd;

	unlink(fz_path); /* a new file each time: no old holder's lock */
	fd = open(fz_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || (len > 0 && write(fd, p, len) != (ssize_t)len))
		abort();
	close(fd);
}

/* A queue the library made, with a few messages in it, as bytes. */
static void fz_make_real(void)
{
	mproc_queue_opts o = { .capacity = FUZZ_CAP, .max_payload = FUZZ_MAXP };
	char buf[FUZZ_MAXP];
	mproc_conn *q;
	struct stat st;
	int fd;

	if (mproc_queue_create(&q, "/real", &o) != 0)
		abort();
	for (int k = 0; k < 10; k++) {
		memset(buf, 'a' + k, sizeof(buf));
		if (mproc_send(q, MPROC_DO + k % 3, k % 2 ? getpid() : 0, buf,
		               (size_t)(k * 29) % FUZZ_MAXP) != 0)
			abort();
	}
	{
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

		mproc_recv(q, &m, NULL, NULL, MPROC_NOWAIT);
	}
	snprintf(fz_path, sizeof(fz_path), "%s/real", fz_dir);
	fd = open(fz_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	fz_len = (size_t)st.st_size;
	fz_real = malloc(fz_len);
	if (fz_real == NULL || read(fd, fz_real, fz_len) != (ssize_t)fz_len)
		abort();
	close(fd);
	mproc_close(q);
	unlink(fz_path);
}

/* The same geometry, laid out by hand from layout.h: an empty queue. */
static void fz_make_built(void)
{
	struct mproc__queue_shared *s;

	fz_built = calloc(1, fz_len);
	if (fz_built == NULL)
		abort();
	s = (struct mproc__queue_shared *)fz_built;
	s->capacity = fz_len - MPROC__QUEUE_HDR;
	s->max_payload = FUZZ_MAXP;
	s->send.journal.mark.off = UINT64_MAX;
	s->recv.journal.mark.off = UINT64_MAX;
	s->poll.id = 0x66757a7a; /* "fuzz" */
	if (mproc__lock_init(&s->send.lock) != 0 ||
	    mproc__lock_init(&s->recv.lock) != 0)
		abort();
	mproc__region_init(&s->hdr, MPROC__KIND_QUEUE, MPROC__QUEUE_LAYOUT,
	                   MPROC__QUEUE_HDR, fz_len);
}

static void fz_init(void)
{
	const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz-named-%d", root,
	         (int)getpid());
	if (mkdir(fz_dir, 0700) < 0 || chmod(fz_dir, 0700) < 0 ||
	    setenv("MPROC_DIR", fz_dir, 1) < 0)
		abort();
	atexit(fz_cleanup);
	fz_make_real();
	fz_make_built();
	snprintf(fz_path, sizeof(fz_path), "%s/f", fz_dir);
}

/* Does [off, off + width) touch a mutex (type_only: its type words)? */
static int fz_on_lock(size_t off, size_t width, int type_only)
{
	size_t lo, len;

	for (int k = 0; k < 2; k++) {
		if (mproc__queue_lock_span(k, &lo, &len) != 0)
			abort();
		if (type_only) {
			lo += offsetof(pthread_mutex_t, __data.__kind);
			len = 8; /* __kind, __spins, __elision */
		}
		if (off + width > lo && off < lo + len)
			return 1;
	}
	return 0;
}

static int fz_odd(const mproc_msg *m, void *arg)
{
	(void)arg;
	return m->size % 2 == 1;
}

/* What mproc-stat does: a read-only mapping, figures without a lock. */
static void fz_inspect(void)
{
	struct mproc__queue_figures f;
	struct stat st;
	void *map;
	int fd, rc;

	fd = open(fz_path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return; /* its flags said UNLINK_ON_LAST_CLOSE */
	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd,
		           0);
		if (map == MAP_FAILED)
			abort();
		rc = mproc__queue_inspect(map, (size_t)st.st_size, &f);
		if (rc != 0 && rc != -EPROTO)
			abort();
		munmap(map, (size_t)st.st_size);
	}
	close(fd);
}

/* With the mutexes scribbled on, only the calls that take a timeout
 * (MPROC_NOWAIT: 20 ms at most for a lock): the others wait up to 1 s
 * for a lock that looks held (stats too, when a journal looks pending). */
static void fz_use(mproc_conn *q, uint8_t ops, int slow)
{
	char buf[FUZZ_MAXP + 64];
	mproc_msg out = { .request = MPROC_USER, .data = buf };
	mproc_stats st;
	mproc_msg m;

	memset(buf, 'z', sizeof(buf));
	for (int k = 0; k < 4; k++) {
		memset(&m, 0, sizeof(m));
		m.data = buf;
		m.capacity = (ops >> k) & 1 ? 8 : sizeof(buf);
		if (!fz_allowed(mproc_recv(q, &m, k & 1 ? fz_odd : NULL, NULL,
		                           MPROC_NOWAIT)))
			abort();
		out.size = (uint32_t)(k * 61) % sizeof(buf);
		out.recipient = k & 2 ? getpid() : 0;
		if (!fz_allowed(mproc_send_msg(q, &out, MPROC_NOWAIT)) ||
		    (!slow && (!fz_allowed(mproc_queue_stats(q, &st)) ||
		               !fz_allowed(mproc_queue_empty(q)))))
			abort();
	}
	if (slow)
		return;
	if ((ops & 0x10) && !fz_allowed(mproc_fd(q)))
		abort();
	if ((ops & 0x20) && (!fz_allowed(mproc_queue_join(q, MPROC_NOWAIT)) ||
	                     !fz_allowed(mproc_queue_purge(q)) ||
	                     !fz_allowed(mproc_task_done(q))))
		abort();
	if ((ops & 0x40) && !fz_allowed(mproc_queue_shutdown(q)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t img[2 * 65536];
	unsigned shape, grow;
	mproc_conn *q = NULL;
	size_t len, i;
	int rc;

	if (fz_real == NULL)
		fz_init();
	if (size < 2)
		return 0;
	shape = data[0] & 3;
	grow = (data[0] >> 2) & 3;
	if (shape == 0) {
		len = size - 2 < sizeof(img) ? size - 2 : sizeof(img);
		memcpy(img, data + 2, len);
	} else {
		len = fz_len;
		memcpy(img, shape == 2 ? fz_built : fz_real, len);
		for (i = 2; i + 4 <= size;) {
			size_t off = (size_t)data[i] | (size_t)data[i + 1] << 8;
			unsigned width = 1u << (data[i + 2] & 3);
			uint64_t v = 0;

			i += 3;
			memcpy(&v, data + i, size - i < width ? size - i : width);
			i += width;
			off %= len;
			if (off + width > len ||
			    fz_on_lock(off, width, shape == 3))
				continue;
			memcpy(img + off, &v, width);
		}
		if (grow == 1)
			len = len * data[1] / 256; /* cut short */
		else if (grow == 2)
			len += (size_t)data[1] * 8; /* longer than it says */
		if (len > sizeof(img))
			len = sizeof(img);
		if (grow == 2)
			memset(img + fz_len, data[1], len - fz_len);
	}
	fz_write(img, len);
	fz_inspect(); /* as written */
	rc = mproc_queue_attach(&q, "/f");
	if (rc != 0 && rc != -EPROTO && rc != -ENOMEM)
		abort();
	if (rc == 0) {
		fz_use(q, data[0], shape == 3);
		if (mproc_close(q) != 0)
			abort();
	}
	fz_inspect(); /* as the calls left it */
	return 0;
}
