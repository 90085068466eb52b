/*
 * check_named.c - named queues (mproc_queue_create / _attach, mproc_unlink,
 * MPROC_UNLINK_ON_LAST_CLOSE) and the queue's descriptor (mproc_fd).
 *
 * Every test works in a directory of its own (a fresh 0700 directory under
 * one that main() makes and removes, given as $MPROC_DIR) with names that
 * contain its pid. "Unrelated programs" are check/named/named_peer, forked
 * and exec'd: they inherit nothing and attach by name.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check_common.h"
#include "check_pay.h"
#include "internal.h"
#include "queue/layout.h"
#include "shm/region.h"

#define NOBODY 65534
#define WAIT_MS 5000

static char base_dir[128]; /* made and removed by main() */
static char test_dir[256]; /* this test's $MPROC_DIR */

/* ---- directories, names, files ----------------------------------------- */

static int named_rm_one(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? 0 : 0;
	return unlink(path) < 0 ? 0 : 0;
}

static void named_rm_tree(const char *path)
{
	nftw(path, named_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory for this test, mode mode exactly, as $MPROC_DIR. */
static void named_dir_new(mode_t mode)
{
	static int n;

	snprintf(test_dir, sizeof(test_dir), "%s/t%d-%d", base_dir,
	         (int)getpid(), n++);
	ck_assert_int_eq(mkdir(test_dir, 0700), 0);
	ck_assert_int_eq(chmod(test_dir, mode), 0);
	ck_assert_int_eq(setenv("MPROC_DIR", test_dir, 1), 0);
}

static void named_dir_done(void)
{
	chmod(test_dir, 0700);
	named_rm_tree(test_dir);
}

/* "/<tag>-<pid>" */
static const char *qname(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "/%s-%d", tag, (int)getpid());
	return buf;
}
#define QNAME(var, tag)                                                       \
	char var##_buf[64];                                                   \
	const char *var = qname(var##_buf, sizeof(var##_buf), tag)

/* The file behind name (in this test's directory). */
static const char *named_path(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", test_dir, name + 1);
	return path;
}

static int named_exists(const char *name)
{
	struct stat st;

	return lstat(named_path(name), &st) == 0;
}

/* Entries in the test directory: all of them, and temporaries (".*"). */
static int named_entries(int *temps)
{
	DIR *d = opendir(test_dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	*temps = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		n++;
		if (e->d_name[0] == '.')
			(*temps)++;
	}
	closedir(d);
	return n;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* The bytes of a file (malloc'd), its length in *len. */
static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/* ---- queues ---------------------------------------------------------------- */

/* A small named queue, or the test fails. */
static mproc_conn *q_create(const char *name, uint32_t flags, mode_t mode)
{
	mproc_queue_opts o = { .capacity = 16 << 10, .max_payload = 1024,
	                       .flags = flags, .mode = mode };
	mproc_conn *q = NULL;
	int rc = mproc_queue_create(&q, name, &o);

	ck_assert_msg(rc == 0, "create %s: %s", name, mproc_err_name(rc));
	return q;
}

static mproc_conn *q_attach(const char *name)
{
	mproc_conn *q = NULL;
	int rc = mproc_queue_attach(&q, name);

	ck_assert_msg(rc == 0, "attach %s: %s", name, mproc_err_name(rc));
	return q;
}

/* In a forked child: attach or _exit(1). */
static mproc_conn *c_attach(const char *name)
{
	mproc_conn *q = NULL;
	int rc = mproc_queue_attach(&q, name);

	if (rc != 0)
		child_fail("attach %s: %s", name, mproc_err_name(rc));
	return q;
}

static int send_int(mproc_conn *q, int v, pid_t to)
{
	mproc_msg m = { .request = MPROC_USER, .recipient = to,
	                .size = sizeof(v), .data = &v };

	return mproc_send_msg(q, &m, WAIT_MS);
}

/* The int payload of the next message (or a negative errno). */
static int recv_int(mproc_conn *q, mproc_match_fn match, int timeout_ms)
{
	int v = -1, rc;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	rc = mproc_recv(q, &m, match, NULL, timeout_ms);
	return rc < 0 ? rc : v;
}

/* ---- processes -------------------------------------------------------- */

static const char *peer_path(void)
{
	static char path[PATH_MAX];
	const char *top = getenv("top_builddir");
	ssize_t n;
	char *slash;

	if (top != NULL) {
		snprintf(path, sizeof(path), "%s/check/named/named_peer", top);
		if (access(path, X_OK) == 0)
			return path;
	}
	n = readlink("/proc/self/exe", path, sizeof(path) - 32);
	ck_assert_int_gt(n, 0);
	path[n] = '\0';
	slash = strrchr(path, '/');
	ck_assert_ptr_nonnull(slash);
	strcpy(slash + 1, "named_peer");
	return path;
}

/* Fork and exec named_peer with args (NULL-terminated after argv[0]);
 * keep_fd (or -1) stays open across the exec. */
static pid_t peer_spawn(int keep_fd, ...)
{
	const char *argv[12];
	const char *path = peer_path();
	va_list ap;
	pid_t pid;
	int n = 0;

	argv[n++] = "named_peer";
	va_start(ap, keep_fd);
	while (n < 11 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (keep_fd >= 0)
			fcntl(keep_fd, F_SETFD, 0);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void kill_reap(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	st = check_wait_child(pid, WAIT_MS);
	ck_assert_msg(st >= 0, "child %d not reaped", (int)pid);
}

/* A child that signals once on `ready` and waits for a byte on `go`. */
struct sync {
	int up[2];   /* child -> parent */
	int down[2]; /* parent -> child */
};

static void sync_init(struct sync *s)
{
	ck_assert_int_eq(pipe2(s->up, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(s->down, O_CLOEXEC), 0);
}

static void sync_tell(int fd)
{
	char c = 'x';

	if (write(fd, &c, 1) != 1)
		_exit(3);
}

/* Wait for one byte on fd, up to timeout_ms; 1 if it came. */
static int sync_hear(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, timeout_ms) != 1)
		return 0;
	return read(fd, &c, 1) == 1;
}

static void sync_close(struct sync *s)
{
	close(s->up[0]);
	close(s->up[1]);
	close(s->down[0]);
	close(s->down[1]);
}

/* ---- name rules ------------------------------------------------------ */

static const char *bad_names[] = {
	"", "/", "x", "/.x", "/a/b", "/a b", "//a", "/a\n", "jobs/", "/..",
	"/a:b", "/\xc3\xa9",
};

START_TEST(test_named_name_rules)
{
	char long_ok[203], long_bad[204];
	mproc_conn *q = NULL, *a = NULL;
	mproc_queue_opts o = { .capacity = 4096, .max_payload = 64 };
	size_t i;

	named_dir_new(0700);
	ck_assert_int_eq(mproc_queue_create(&q, NULL, &o), -EINVAL);
	ck_assert_int_eq(mproc_queue_attach(&q, NULL), -EINVAL);
	ck_assert_int_eq(mproc_unlink(NULL), -EINVAL);
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		const char *n = bad_names[i];

		ck_assert_msg(mproc_queue_create(&q, n, &o) == -EINVAL, "%s", n);
		ck_assert_msg(mproc_queue_attach(&q, n) == -EINVAL, "%s", n);
		ck_assert_msg(mproc_unlink(n) == -EINVAL, "%s", n);
	}
	/* 200 characters after the "/": fine; 201: not. */
	snprintf(long_ok, sizeof(long_ok), "/%d-", (int)getpid());
	for (i = strlen(long_ok); i < 201; i++)
		long_ok[i] = "Az09._-"[i % 7];
	long_ok[201] = '\0';
	ck_assert_int_eq(strlen(long_ok), 201);
	memcpy(long_bad, long_ok, 201);
	long_bad[201] = 'b';
	long_bad[202] = '\0';
	ck_assert_int_eq(mproc_queue_create(&q, long_bad, &o), -EINVAL);
	ck_assert_int_eq(mproc_queue_attach(&q, long_bad), -EINVAL);
	ck_assert_int_eq(mproc_unlink(long_bad), -EINVAL);
	ck_assert_int_eq(mproc_queue_create(&q, long_ok, &o), 0);
	ck_assert_int_eq(mproc_queue_attach(&a, long_ok), 0);
	ck_assert(named_exists(long_ok));
	ck_assert_int_eq(mproc_unlink(long_ok), 0);
	ck_assert(!named_exists(long_ok));
	/* Nothing was made for a bad name. */
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(named_entries(&(int){ 0 }), 0);
	/* A NULL handle pointer and bad options are checked too. */
	ck_assert_int_eq(mproc_queue_create(NULL, "/x1", &o), -EINVAL);
	ck_assert_int_eq(mproc_queue_attach(NULL, "/x1"), -EINVAL);
	o.flags = 1u << 30;
	ck_assert_int_eq(mproc_queue_create(&q, "/x1", &o), -EINVAL);
	ck_assert_int_eq(named_entries(&(int){ 0 }), 0);
	/* An anonymous queue has no name to unlink at its last close. */
	o.flags = MPROC_UNLINK_ON_LAST_CLOSE;
	ck_assert_int_eq(mproc_queue_open(&q, &o), -EINVAL);
	named_dir_done();
}
END_TEST

/* ---- create -------------------------------------------------------------- */

START_TEST(test_named_create_exists)
{
	QNAME(n, "ex");
	mproc_conn *q, *a, *q2 = NULL;
	int temps;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	a = q_attach(n);
	ck_assert_int_eq(mproc_close(q), 0);
	/* The attacher holds it still. */
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	ck_assert_int_eq(send_int(a, 7, 0), 0);
	ck_assert_int_eq(recv_int(a, NULL, 0), 7);
	ck_assert_int_eq(mproc_close(a), 0);
	/* Closed by everyone, not unlinked: stale, so replaced. */
	ck_assert(named_exists(n));
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), 0);
	ck_assert_int_eq(stats_of(q2).sent, 0);
	ck_assert_int_eq(named_entries(&temps), 1);
	ck_assert_int_eq(temps, 0);
	ck_assert_int_eq(mproc_close(q2), 0);
	named_dir_done();
}
END_TEST

/* Every holder killed, a holder by fork included: the name is stale and
 * the next create replaces it. */
START_TEST(test_named_create_stale)
{
	QNAME(n, "stale");
	mproc_conn *q, *q2 = NULL, *a;
	struct sync s;
	pid_t pid;
	int temps;

	named_dir_new(0700);
	/* 1: the creator itself is killed. */
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c;

		if (mproc_queue_create(&c, n, NULL) != 0 ||
		    send_int(c, 1, 0) != 0)
			_exit(1);
		sync_tell(s.up[1]);
		pause();
		_exit(1);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	kill_reap(pid);
	ck_assert(named_exists(n));
	q = q_create(n, 0, 0);
	ck_assert_int_eq(stats_of(q).sent, 0); /* a new queue */
	sync_close(&s);

	/* 2: the parent closes; a child that only inherited the handle
	 * holds it until it is killed. */
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sync_tell(s.up[1]);
		pause();
		_exit(1);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	ck_assert_int_eq(send_int(q, 2, 0), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	/* The inherited holder's queue is the one the name shows. */
	a = q_attach(n);
	ck_assert_int_eq(recv_int(a, NULL, 0), 2);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	kill_reap(pid);
	q = q_create(n, 0, 0);
	ck_assert_int_eq(stats_of(q).sent, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	sync_close(&s);

	/* 3: a holder that exits without closing holds nothing either. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c;

		_exit(mproc_queue_create(&c, n, NULL) == 0 ? 0 : 1);
	}
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	q = q_create(n, 0, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(named_entries(&temps), 1);
	ck_assert_int_eq(temps, 0);
	named_dir_done();
}
END_TEST

/* The mode asked for, whatever the umask. */
START_TEST(test_named_create_mode)
{
	static const mode_t umasks[] = { 077, 0, 022, 0777 };
	static const mode_t modes[][2] = {
		{ 0600, 0600 }, { 0640, 0640 }, { 0666, 0666 }, { 0, 0600 },
		{ 0100640, 0640 }, { 0444, 0444 },
	};
	char n[64];
	struct stat st;
	mproc_conn *q;
	size_t u, i;
	int temps;

	named_dir_new(0700);
	for (u = 0; u < sizeof(umasks) / sizeof(umasks[0]); u++) {
		mode_t old = umask(umasks[u]);

		for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
			snprintf(n, sizeof(n), "/mode-%d-%zu-%zu", (int)getpid(),
			         u, i);
			q = q_create(n, 0, modes[i][0]);
			ck_assert_int_eq(stat(named_path(n), &st), 0);
			ck_assert_msg((st.st_mode & 07777) == modes[i][1],
			              "umask %03o mode %03o: file %04o",
			              (unsigned)umasks[u],
			              (unsigned)modes[i][0],
			              (unsigned)(st.st_mode & 07777));
			ck_assert(S_ISREG(st.st_mode));
			ck_assert_int_eq(st.st_uid, geteuid());
			ck_assert_int_eq(mproc_unlink(n), 0);
			ck_assert_int_eq(mproc_close(q), 0);
		}
		umask(old);
	}
	ck_assert_int_eq(named_entries(&temps), 0);
	named_dir_done();
}
END_TEST

/* A create that fails for any reason leaves no temporary behind. */
START_TEST(test_named_create_no_temp)
{
	QNAME(n, "tmp");
	mproc_queue_opts big = { .capacity = MPROC_QUEUE_MAX_CAPACITY + 8 };
	mproc_conn *q, *q2 = NULL;
	int temps;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(mproc_queue_create(&q2, n, NULL), -EEXIST);
	ck_assert_int_eq(mproc_queue_create(&q2, "/other", &big), -EINVAL);
	ck_assert_int_eq(named_entries(&temps), 1);
	ck_assert_int_eq(temps, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	/* Stale replacement, twenty times. */
	for (int i = 0; i < 20; i++) {
		q = q_create(n, 0, 0);
		ck_assert_int_eq(mproc_close(q), 0);
	}
	ck_assert_int_eq(named_entries(&temps), 1);
	ck_assert_int_eq(temps, 0);
	/* A directory we may not write in: -EACCES, nothing left. */
	if (geteuid() != 0) {
		chmod(test_dir, 0500);
		ck_assert_int_eq(mproc_queue_create(&q2, "/ro", NULL), -EACCES);
		chmod(test_dir, 0700);
	}
	ck_assert_int_eq(named_entries(&temps), 1);
	ck_assert_int_eq(temps, 0);
	named_dir_done();
}
END_TEST

/*
 * A child makes and removes the name as fast as it can: created and
 * closed with UNLINK_ON_LAST_CLOSE, created and unlinked, created by a
 * grandchild that dies holding it (stale, replaced by the next create),
 * while the parent attaches in a loop: every attach is 0 or -ENOENT,
 * never -EPROTO (a half-made object), and an attached queue works.
 */
START_TEST(test_named_create_attach_race)
{
	QNAME(n, "race");
	long long end;
	int attached = 0, missing = 0, temps, rc;
	struct sync s;
	pid_t pid;

	named_dir_new(0700);
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_queue_opts o = { .capacity = 4096, .max_payload = 256 };
		long long stop = check_now_ms() + check_scale_ms(600);
		int made = 0;

		sync_tell(s.up[1]);
		for (unsigned i = 0; check_now_ms() < stop; i++) {
			mproc_conn *c;
			pid_t g;
			int st;

			switch (i % 3) {
			case 0:
				o.flags = MPROC_UNLINK_ON_LAST_CLOSE;
				rc = mproc_queue_create(&c, n, &o);
				if (rc == 0)
					mproc_close(c);
				break;
			case 1:
				o.flags = 0;
				rc = mproc_queue_create(&c, n, &o);
				if (rc == 0) {
					mproc_unlink(n);
					mproc_close(c);
				}
				break;
			default:
				g = fork();
				if (g < 0)
					child_fail("fork");
				if (g == 0) {
					o.flags = 0;
					rc = mproc_queue_create(&c, n, &o);
					_exit(rc == 0 ? 0 : rc == -EEXIST ? 3 : 1);
				}
				while (waitpid(g, &st, 0) < 0 && errno == EINTR)
					;
				rc = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0
				     : WIFEXITED(st) && WEXITSTATUS(st) == 3
				             ? -EEXIST
				             : -EIO;
				break;
			}
			if (rc == 0)
				made++;
			else if (rc != -EEXIST)
				child_fail("create: %s", mproc_err_name(rc));
		}
		/* Leave no stale object to the parent's count below. */
		mproc_unlink(n);
		_exit(made > 0 ? 0 : 4);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	end = check_now_ms() + check_scale_ms(600);
	while (check_now_ms() < end) {
		mproc_conn *a = NULL;

		rc = mproc_queue_attach(&a, n);
		expect_msg(rc == 0 || rc == -ENOENT, "attach: %s",
		           mproc_err_name(rc));
		if (rc == 0) {
			attached++;
			expect_msg(send_int(a, attached, 0) == 0, "send");
			expect_msg(recv_int(a, NULL, 0) >= 0, "recv");
			expect_msg(mproc_close(a) == 0, "close");
		} else {
			missing++;
		}
	}
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_msg(attached > 0 && missing > 0,
	              "the race was not run: %d attached, %d missing",
	              attached, missing);
	mproc_unlink(n);
	ck_assert_int_eq(named_entries(&temps), 0);
	ck_assert_int_eq(temps, 0);
	sync_close(&s);
	named_dir_done();
}
END_TEST

/* ---- attach ------------------------------------------------------------ */

START_TEST(test_named_attach_enoent)
{
	QNAME(n, "none");
	mproc_conn *q = NULL;

	named_dir_new(0700);
	ck_assert_int_eq(mproc_queue_attach(&q, n), -ENOENT);
	ck_assert_ptr_null(q);
	ck_assert_int_eq(mproc_unlink(n), -ENOENT);
	ck_assert_int_eq(named_entries(&(int){ 0 }), 0);
	named_dir_done();
}
END_TEST

/* As another user: mode 0600 is -EACCES, 0666 lets messages through. */
START_TEST(test_named_attach_eacces)
{
	QNAME(priv, "priv");
	QNAME(pub, "pub");
	mproc_conn *p, *q;
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "test_named_attach_eacces: skipped, needs root "
		        "(to be another user)\n");
		return;
	}
	/* Root's, 0755: nobody may enter it and read, never write. */
	named_dir_new(0755);
	p = q_create(priv, 0, 0600);
	q = q_create(pub, 0, 0666);
	ck_assert_int_eq(send_int(q, 11, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *a = NULL;
		int rc;

		if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
		    setuid(NOBODY) < 0)
			child_fail("setuid: %s", strerror(errno));
		/* The inherited handles stay usable; attach is what we test. */
		rc = mproc_queue_attach(&a, priv);
		if (rc != -EACCES)
			child_fail("attach 0600: %s", mproc_err_name(rc));
		if ((rc = mproc_queue_attach(&a, pub)) != 0)
			child_fail("attach 0666: %s", mproc_err_name(rc));
		if ((rc = recv_int(a, NULL, WAIT_MS)) != 11)
			child_fail("recv: %d", rc);
		if ((rc = send_int(a, 12, 0)) != 0)
			child_fail("send: %s", mproc_err_name(rc));
		/* The directory is not ours to change. */
		if ((rc = mproc_unlink(pub)) != -EACCES)
			child_fail("unlink: %s", mproc_err_name(rc));
		if ((rc = mproc_queue_create(&a, "/mine", NULL)) != -EACCES)
			child_fail("create: %s", mproc_err_name(rc));
		_exit(0);
	}
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(recv_int(q, NULL, 0), 12);
	ck_assert(named_exists(pub));
	ck_assert_int_eq(mproc_close(p), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* attach within 2 s, and -EPROTO. */
static void expect_eproto(const char *name, const char *what)
{
	mproc_conn *q = NULL;
	long long t0 = check_now_ms();
	int rc = mproc_queue_attach(&q, name);

	ck_assert_msg(rc == -EPROTO, "%s: attach gives %s, not EPROTO", what,
	              mproc_err_name(rc));
	ck_assert_ptr_null(q);
	ck_assert_msg(check_now_ms() - t0 < 2000, "%s: attach took %lld ms",
	              what, check_now_ms() - t0);
}

/* Write data (len bytes) under name and expect -EPROTO from attach. */
static void expect_eproto_bytes(const char *name, const void *data,
                                size_t len, const char *what)
{
	write_file(named_path(name), data, len);
	expect_eproto(name, what);
	ck_assert_int_eq(unlink(named_path(name)), 0);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* A copy of a real queue's file, patched at off with width bytes of v. */
static void expect_eproto_patch(const char *name, const uint8_t *img,
                                size_t len, size_t off, uint64_t v,
                                unsigned width, const char *what)
{
	uint8_t *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	memcpy(p, img, len);
	memcpy(p + off, &v, width);
	expect_eproto_bytes(name, p, len, what);
	free(p);
}

START_TEST(test_named_attach_eproto)
{
	QNAME(real, "real");
	QNAME(bad, "bad");
	const size_t hdr = offsetof(struct mproc__queue_shared, hdr);
	uint8_t *img, *junk;
	mproc_conn *q, *a;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char target[512];
	size_t len;
	int sfd;

	named_dir_new(0700);
	q = q_create(real, 0, 0);
	ck_assert_int_eq(send_int(q, 5, 0), 0);
	img = read_file(named_path(real), &len);
	ck_assert_int_gt(len, MPROC__QUEUE_HDR);
	/* The control: an exact copy is a valid (stale) queue. */
	write_file(named_path(bad), img, len);
	a = q_attach(bad);
	ck_assert_int_eq(recv_int(a, NULL, 0), 5);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(unlink(named_path(bad)), 0);

	/* Foreign files. */
	expect_eproto_bytes(bad, "", 0, "empty file");
	junk = malloc(len + 4096);
	ck_assert_ptr_nonnull(junk);
	for (size_t i = 0; i < len + 4096; i++)
		junk[i] = (uint8_t)rnd();
	expect_eproto_bytes(bad, junk, 1, "1 random byte");
	expect_eproto_bytes(bad, junk, 31, "31 random bytes");
	expect_eproto_bytes(bad, junk, 32, "32 random bytes");
	expect_eproto_bytes(bad, junk, 4096, "4 KiB of random bytes");
	expect_eproto_bytes(bad, junk, len, "random bytes, a queue's size");
	/* Random bytes behind a good magic. */
	memcpy(junk, img, 8);
	expect_eproto_bytes(bad, junk, len, "random bytes after the magic");
	/* Truncated copies. */
	expect_eproto_bytes(bad, img, 32, "the common header only");
	expect_eproto_bytes(bad, img, MPROC__QUEUE_HDR - 1, "header - 1");
	expect_eproto_bytes(bad, img, MPROC__QUEUE_HDR, "the queue header");
	expect_eproto_bytes(bad, img, len / 2, "half a queue");
	expect_eproto_bytes(bad, img, len - 8, "a queue less 8 bytes");
	/* Longer than it says. */
	memcpy(junk, img, len);
	expect_eproto_bytes(bad, junk, len + 4096, "a queue and 4 KiB more");
	/* The header scribbled on. */
	expect_eproto_patch(bad, img, len, hdr, 0, 1, "magic");
	expect_eproto_patch(bad, img, len, hdr + 8, MPROC__KIND_BUS, 4,
	                    "kind bus");
	expect_eproto_patch(bad, img, len, hdr + 8, MPROC__KIND_SLOT, 4,
	                    "kind slot");
	expect_eproto_patch(bad, img, len, hdr + 8, 77, 4, "kind 77");
	expect_eproto_patch(bad, img, len, hdr + 12, MPROC__QUEUE_LAYOUT + 1, 4,
	                    "next layout");
	expect_eproto_patch(bad, img, len, hdr + 12, MPROC__QUEUE_LAYOUT - 1, 4,
	                    "older layout");
	expect_eproto_patch(bad, img, len, hdr + 16, MPROC__QUEUE_HDR + 64, 4,
	                    "header_size");
	expect_eproto_patch(bad, img, len, hdr + 24, len * 2, 8, "size");
	expect_eproto_patch(bad, img, len, hdr + 24, 0, 8, "size 0");
	expect_eproto_patch(bad, img, len,
	                    offsetof(struct mproc__queue_shared, capacity),
	                    len, 8, "capacity");
	expect_eproto_patch(bad, img, len,
	                    offsetof(struct mproc__queue_shared, max_payload),
	                    UINT32_MAX, 4, "max_payload");
	expect_eproto_patch(bad, img, len,
	                    offsetof(struct mproc__queue_shared, flags),
	                    1u << 29, 4, "flags");
	/* Not a file. */
	ck_assert_int_eq(mkdir(named_path(bad), 0700), 0);
	expect_eproto(bad, "a directory");
	ck_assert_int_eq(rmdir(named_path(bad)), 0);
	ck_assert_int_eq(mkfifo(named_path(bad), 0600), 0);
	expect_eproto(bad, "a FIFO");
	ck_assert_int_eq(unlink(named_path(bad)), 0);
	snprintf(target, sizeof(target), "%s", named_path(real));
	ck_assert_int_eq(symlink(target, named_path(bad)), 0);
	expect_eproto(bad, "a symlink to a queue");
	ck_assert_int_eq(unlink(named_path(bad)), 0);
	sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(sfd, 0);
	if (strlen(named_path(bad)) < sizeof(sa.sun_path)) {
		memcpy(sa.sun_path, named_path(bad),
		       strlen(named_path(bad)) + 1);
		ck_assert_int_eq(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)),
		                 0);
		expect_eproto(bad, "a socket");
		ck_assert_int_eq(unlink(named_path(bad)), 0);
	}
	close(sfd);
	/* The real one was never disturbed. */
	ck_assert_int_eq(recv_int(q, NULL, 0), 5);
	ck_assert_int_eq(mproc_close(q), 0);
	free(junk);
	free(img);
	named_dir_done();
}
END_TEST

/* ---- unsafe directories --------------------------------------------------- */

/* create, attach and unlink of name all give -EPERM. */
static void expect_eperm(const char *name, const char *what)
{
	mproc_conn *q = NULL;
	int rc;

	rc = mproc_queue_create(&q, name, NULL);
	ck_assert_msg(rc == -EPERM, "%s: create %s", what, mproc_err_name(rc));
	rc = mproc_queue_attach(&q, name);
	ck_assert_msg(rc == -EPERM, "%s: attach %s", what, mproc_err_name(rc));
	rc = mproc_unlink(name);
	ck_assert_msg(rc == -EPERM, "%s: unlink %s", what, mproc_err_name(rc));
	ck_assert_ptr_null(q);
}

START_TEST(test_named_dir_eperm)
{
	QNAME(n, "perm");
	char link[300], file[300], slash[310];
	mproc_conn *q, *a;

	named_dir_new(0700);
	/* A queue in the good directory, reached through a bad path. */
	q = q_create(n, 0, 0);
	snprintf(link, sizeof(link), "%s-link", test_dir);
	ck_assert_int_eq(symlink(test_dir, link), 0);
	setenv("MPROC_DIR", link, 1);
	expect_eperm(n, "a symlink");
	snprintf(slash, sizeof(slash), "%s/", link);
	setenv("MPROC_DIR", slash, 1);
	expect_eperm(n, "a symlink with a slash");
	ck_assert_int_eq(unlink(link), 0);

	setenv("MPROC_DIR", test_dir, 1);
	ck_assert_int_eq(chmod(test_dir, 0777), 0);
	expect_eperm(n, "mode 0777");
	ck_assert_int_eq(chmod(test_dir, 01777), 0);
	expect_eperm(n, "mode 1777");
	ck_assert_int_eq(chmod(test_dir, 0702), 0);
	expect_eperm(n, "mode 0702");
	ck_assert_int_eq(chmod(test_dir, 0700), 0);
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(test_dir, NOBODY, NOBODY), 0);
		expect_eperm(n, "owned by nobody");
		ck_assert_int_eq(chown(test_dir, 0, 0), 0);
	} else {
		fprintf(stderr, "test_named_dir_eperm: another owner not "
		        "tried, needs root\n");
	}
	snprintf(file, sizeof(file), "%s-file", test_dir);
	write_file(file, "x", 1);
	setenv("MPROC_DIR", file, 1);
	expect_eperm(n, "a regular file");
	ck_assert_int_eq(unlink(file), 0);

	/* Good again: all is there. */
	setenv("MPROC_DIR", test_dir, 1);
	a = q_attach(n);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_unlink(n), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* $MPROC_DIR unset (or empty): /dev/shm/mproc-<euid>, 0700 when made. */
START_TEST(test_named_dir_default)
{
	QNAME(n, "check-named-default");
	char dir[64];
	struct stat st, fst;
	mproc_conn *q, *a;
	int existed;

	snprintf(dir, sizeof(dir), "/dev/shm/mproc-%u", (unsigned)geteuid());
	if (access("/dev/shm", W_OK) != 0) {
		fprintf(stderr, "test_named_dir_default: skipped, no "
		        "writable /dev/shm\n");
		return;
	}
	existed = lstat(dir, &st) == 0;
	unsetenv("MPROC_DIR");
	q = q_create(n, MPROC_UNLINK_ON_LAST_CLOSE, 0);
	ck_assert_int_eq(lstat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_uid, geteuid());
	if (!existed)
		ck_assert_int_eq(st.st_mode & 07777, 0700);
	else
		ck_assert_int_eq(st.st_mode & S_IWOTH, 0);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "%s", n);
	ck_assert_int_eq(stat(dir, &fst), 0);
	setenv("MPROC_DIR", "", 1);
	a = q_attach(n);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_ne(stat(dir, &fst), 0); /* gone at the last close */
	if (!existed) {
		*strrchr(dir, '/') = '\0';
		rmdir(dir); /* ours; someone may have started using it */
	}
}
END_TEST

/* ---- unlink ---------------------------------------------------------------- */

START_TEST(test_named_unlink_holders_go_on)
{
	QNAME(n, "unl");
	mproc_conn *q, *a, *q2;
	struct sync s;
	pid_t pid;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	a = q_attach(n);
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Attached before the unlink, used after it. */
		mproc_conn *c = c_attach(n);

		sync_tell(s.up[1]);
		if (!sync_hear(s.down[0], WAIT_MS))
			_exit(1);
		child_assert(send_int(c, 21, getppid()) == 0);
		child_assert(recv_int(c, mproc_for_me, WAIT_MS) == 22);
		child_assert(mproc_close(c) == 0);
		_exit(0);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	ck_assert_int_eq(mproc_unlink(n), 0);
	ck_assert(!named_exists(n));
	ck_assert_int_eq(mproc_unlink(n), -ENOENT);
	ck_assert_int_eq(mproc_queue_attach(&q2, n), -ENOENT);
	sync_tell(s.down[1]);
	ck_assert_int_eq(recv_int(q, NULL, WAIT_MS), 21);
	ck_assert_int_eq(send_int(a, 22, pid), 0);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	/* A new queue under the name is another queue. */
	q2 = q_create(n, 0, 0);
	ck_assert_int_eq(send_int(q2, 23, 0), 0);
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert_int_eq(stats_of(q).sent, 2);
	ck_assert_int_eq(recv_int(q2, NULL, 0), 23);
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(mproc_close(q2), 0);
	ck_assert_int_eq(mproc_unlink(n), 0);
	sync_close(&s);
	named_dir_done();
}
END_TEST

START_TEST(test_named_unlink_on_last_close)
{
	QNAME(n, "last");
	mproc_conn *q, *a, *q2;
	struct sync s;
	pid_t pid;

	named_dir_new(0700);
	/* Two holders in this process. */
	q = q_create(n, MPROC_UNLINK_ON_LAST_CLOSE, 0);
	a = q_attach(n);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert(named_exists(n));
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert(!named_exists(n));

	/* Across processes: the attacher in a child closes last. */
	q = q_create(n, MPROC_UNLINK_ON_LAST_CLOSE, 0);
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c;

		child_assert(mproc_close(q) == 0); /* the inherited copy */
		child_assert(named_exists(n));
		c = c_attach(n);
		sync_tell(s.up[1]);
		if (!sync_hear(s.down[0], WAIT_MS))
			_exit(1);
		child_assert(named_exists(n));
		child_assert(mproc_close(c) == 0);
		child_assert(!named_exists(n));
		_exit(0);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert(named_exists(n));
	sync_tell(s.down[1]);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert(!named_exists(n));
	sync_close(&s);

	/* The name is removed only if it is still this queue's. */
	q = q_create(n, MPROC_UNLINK_ON_LAST_CLOSE, 0);
	ck_assert_int_eq(mproc_unlink(n), 0);
	q2 = q_create(n, 0, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert(named_exists(n));
	ck_assert_int_eq(mproc_close(q2), 0);
	ck_assert_int_eq(mproc_unlink(n), 0);

	/* The last holder killed: the name stays, stale, and is replaced. */
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_queue_opts o = { .flags = MPROC_UNLINK_ON_LAST_CLOSE };
		mproc_conn *c;

		child_assert(mproc_queue_create(&c, n, &o) == 0);
		child_assert(send_int(c, 31, 0) == 0);
		sync_tell(s.up[1]);
		pause();
		_exit(1);
	}
	ck_assert(sync_hear(s.up[0], WAIT_MS));
	kill_reap(pid);
	ck_assert(named_exists(n));
	q = q_create(n, 0, 0);
	ck_assert_int_eq(stats_of(q).sent, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert(named_exists(n)); /* this one had no flag */
	sync_close(&s);
	named_dir_done();
}
END_TEST

/*
 * The last two holders close at once (a spin barrier in shared memory):
 * one of them must see itself last and remove the name, every time.
 */
START_TEST(test_named_unlink_on_last_close_race)
{
	QNAME(n, "lastrace");
	volatile int *bar;
	int left = 0, rounds = check_slow() ? 20 : 200;

	named_dir_new(0700);
	bar = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
	           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(bar != MAP_FAILED);
	for (int r = 0; r < rounds; r++) {
		mproc_conn *q = q_create(n, MPROC_UNLINK_ON_LAST_CLOSE, 0);
		long long end = check_now_ms() + WAIT_MS;
		pid_t pid;

		*bar = 0;
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			__atomic_add_fetch(bar, 1, __ATOMIC_SEQ_CST);
			while (__atomic_load_n(bar, __ATOMIC_SEQ_CST) < 2 &&
			       check_now_ms() < end)
				;
			_exit(mproc_close(q) == 0 ? 0 : 1);
		}
		__atomic_add_fetch(bar, 1, __ATOMIC_SEQ_CST);
		while (__atomic_load_n(bar, __ATOMIC_SEQ_CST) < 2 &&
		       check_now_ms() < end)
			;
		ck_assert_int_eq(mproc_close(q), 0);
		check_reap_ok(pid, check_scale_ms(WAIT_MS));
		if (named_exists(n)) {
			left++;
			ck_assert_int_eq(mproc_unlink(n), 0);
		}
	}
	ck_assert_msg(left == 0, "the name outlived its last close in %d of "
	              "%d rounds", left, rounds);
	munmap((void *)bar, sizeof(int));
	named_dir_done();
}
END_TEST

/* ---- unrelated programs ------------------------------------------------ */

#define PEER_N 500

START_TEST(test_named_peer_both_ways)
{
	QNAME(n, "peer");
	char num[16], src[16], size[16];
	uint8_t buf[1024];
	mproc_conn *q;
	struct pay h;
	pid_t pid;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	snprintf(num, sizeof(num), "%d", PEER_N);
	/* Test -> peer; the test's join waits for the peer's takes. */
	pid = peer_spawn(-1, "recv", n, num, NULL);
	for (int i = 0; i < PEER_N; i++) {
		mproc_msg m = { .request = MPROC_USER, .data = buf,
		                .size = 32 + i % 900 };

		pay_make(buf, m.size, 1, 0, (uint64_t)i);
		ck_assert_int_eq(mproc_send_msg(q, &m, WAIT_MS), 0);
	}
	ck_assert_int_eq(mproc_queue_join(q, check_scale_ms(WAIT_MS)), 0);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	/* Peer -> test; the peer's join waits for the test's takes. */
	snprintf(src, sizeof(src), "%d", 2);
	snprintf(size, sizeof(size), "%d", 700);
	pid = peer_spawn(-1, "sendjoin", n, num, src, size, NULL);
	for (int i = 0; i < PEER_N; i++) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };

		ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL,
		                            check_scale_ms(WAIT_MS)), 0);
		ck_assert_int_eq(pay_check(buf, m.size, &h), 0);
		ck_assert_int_eq(h.seq, i);
		ck_assert_int_eq(h.src, 2);
		ck_assert_int_eq(m.sender, pid);
	}
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(stats_of(q).sent, 2 * PEER_N);
	ck_assert_int_eq(stats_of(q).unfinished, 0);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* Handles are close-on-exec: an exec'd program sees neither the file nor
 * the descriptor's socket. */
START_TEST(test_named_exec_no_leak)
{
	QNAME(n, "leak");
	char script[1024];
	mproc_conn *q, *a;
	pid_t pid;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	a = q_attach(n);
	ck_assert_int_ge(mproc_fd(q), 0);
	ck_assert_int_ge(mproc_fd(a), 0);
	ck_assert_int_eq(send_int(q, 1, 0), 0); /* a waker socket too */
	snprintf(script, sizeof(script),
	         "for f in /proc/$$/fd/*; do readlink \"$f\"; done | "
	         "grep -e '%s' -e socket: && exit 1; exit 0",
	         named_path(n));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(mproc_close(a), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* Mail for an exec'd peer that is gone: counted, purged, join unheld. */
START_TEST(test_named_peer_orphans)
{
	QNAME(n, "orph");
	mproc_conn *q;
	mproc_stats st;
	pid_t pid;
	int v;
	mproc_msg m = { .data = &v, .capacity = sizeof(v) };

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	pid = peer_spawn(-1, "send", n, "1", "3", "40", NULL);
	ck_assert_int_eq(mproc_recv(q, &(mproc_msg){ .data = (uint8_t[64]){ 0 },
	                                              .capacity = 64 },
	                            NULL, NULL, check_scale_ms(WAIT_MS)), 0);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(send_int(q, i, pid), 0);
	ck_assert_int_eq(send_int(q, 99, MPROC_ANYONE), 0);
	st = stats_of(q);
	ck_assert_int_eq(st.orphans, 5);
	ck_assert_int_eq(st.queued, 6);
	ck_assert_int_eq(mproc_queue_purge(q), 5);
	st = stats_of(q);
	ck_assert_int_eq(st.orphans, 0);
	ck_assert_int_eq(st.purged, 5);
	ck_assert_int_eq(st.queued, 1);
	ck_assert_int_eq(mproc_recv(q, &m, NULL, NULL, 0), 0);
	ck_assert_int_eq(v, 99);
	/* A join purges what is left for the dead. */
	ck_assert_int_eq(send_int(q, 7, pid), 0);
	ck_assert_int_eq(mproc_queue_join(q, WAIT_MS), 0);
	ck_assert_int_eq(stats_of(q).purged, 6);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/*
 * kill -9 at random moments, bounded rounds: exec'd senders report each
 * send that returned 0, exec'd receivers each message they took, through
 * pipes. At the end: nothing torn, nothing delivered twice, every
 * acknowledged message received but for at most one per receiver killed
 * (taken, not yet reported), nothing hung.
 */
#define KILL_SENDERS 2
#define KILL_RECEIVERS 2
#define KILL_ROUNDS 16
#define KILL_MAX_SRC 64

struct report {
	uint32_t src;
	uint32_t reserved;
	uint64_t seq;
};

struct kill_books {
	uint64_t acked[KILL_MAX_SRC]; /* sends that returned 0: seq < acked */
	uint8_t *got[KILL_MAX_SRC];   /* times each seq was reported taken */
	size_t got_len[KILL_MAX_SRC];
	uint64_t torn, dup, extra;
};

static void books_got(struct kill_books *b, uint32_t src, uint64_t seq)
{
	if (src == UINT32_MAX) {
		b->torn++;
		return;
	}
	ck_assert_uint_lt(src, KILL_MAX_SRC);
	if (seq >= b->got_len[src]) {
		size_t len = (size_t)seq * 2 + 1024;

		b->got[src] = realloc(b->got[src], len);
		ck_assert_ptr_nonnull(b->got[src]);
		memset(b->got[src] + b->got_len[src], 0, len - b->got_len[src]);
		b->got_len[src] = len;
	}
	if (b->got[src][seq]++ > 0)
		b->dup++;
}

/* Read what the pipes hold now. */
static void books_pump(struct kill_books *b, int ack_fd, int got_fd)
{
	struct report r[256];
	ssize_t n;

	while ((n = read(ack_fd, r, sizeof(r))) > 0) {
		ck_assert_int_eq(n % sizeof(r[0]), 0);
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(r[0]); i++) {
			ck_assert_uint_lt(r[i].src, KILL_MAX_SRC);
			/* In order, one by one. */
			ck_assert_uint_eq(r[i].seq, b->acked[r[i].src]);
			b->acked[r[i].src]++;
		}
	}
	while ((n = read(got_fd, r, sizeof(r))) > 0) {
		ck_assert_int_eq(n % sizeof(r[0]), 0);
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(r[0]); i++)
			books_got(b, r[i].src, r[i].seq);
	}
}

START_TEST(test_named_kill9_peers)
{
	QNAME(n, "kill");
	static struct kill_books b;
	mproc_queue_opts o = { .capacity = 32 << 10, .max_payload = 512 };
	pid_t snd[KILL_SENDERS], rcv[KILL_RECEIVERS];
	uint32_t snd_src[KILL_SENDERS], next_src = 1;
	int ack[2], got[2], rcv_kills = 0;
	char src[16], fdnum[16], gfdnum[16];
	uint64_t acked = 0, missing = 0, taken = 0;
	uint8_t buf[512];
	mproc_conn *q;
	long long end;

	named_dir_new(0700);
	ck_assert_int_eq(mproc_queue_create(&q, n, &o), 0);
	ck_assert_int_eq(pipe2(ack, O_CLOEXEC | O_NONBLOCK), 0);
	ck_assert_int_eq(pipe2(got, O_CLOEXEC | O_NONBLOCK), 0);
	/* The children write blocking. */
	fcntl(ack[1], F_SETFL, 0);
	fcntl(got[1], F_SETFL, 0);
	snprintf(fdnum, sizeof(fdnum), "%d", ack[1]);
	snprintf(gfdnum, sizeof(gfdnum), "%d", got[1]);
	for (int i = 0; i < KILL_SENDERS; i++) {
		snd_src[i] = next_src++;
		snprintf(src, sizeof(src), "%u", snd_src[i]);
		snd[i] = peer_spawn(ack[1], "sender", n, src, fdnum, NULL);
	}
	for (int i = 0; i < KILL_RECEIVERS; i++)
		rcv[i] = peer_spawn(got[1], "receiver", n, gfdnum, NULL);
	for (int round = 0; round < KILL_ROUNDS; round++) {
		int victim = (int)(rnd() % (KILL_SENDERS + KILL_RECEIVERS));

		end = check_now_ms() + check_scale_ms(10 + (int)(rnd() % 40));
		while (check_now_ms() < end) {
			books_pump(&b, ack[0], got[0]);
			usleep(2000);
		}
		if (victim < KILL_SENDERS) {
			kill_reap(snd[victim]);
			ck_assert_uint_lt(next_src, KILL_MAX_SRC);
			snd_src[victim] = next_src++;
			snprintf(src, sizeof(src), "%u", snd_src[victim]);
			snd[victim] = peer_spawn(ack[1], "sender", n, src,
			                         fdnum, NULL);
		} else {
			victim -= KILL_SENDERS;
			kill_reap(rcv[victim]);
			rcv_kills++;
			rcv[victim] = peer_spawn(got[1], "receiver", n, gfdnum,
			                         NULL);
		}
	}
	for (int i = 0; i < KILL_SENDERS; i++)
		kill_reap(snd[i]);
	/* The receivers take what is left; then they go too. */
	end = check_now_ms() + check_scale_ms(WAIT_MS);
	while (stats_of(q).queued > 0 && check_now_ms() < end) {
		books_pump(&b, ack[0], got[0]);
		usleep(2000);
	}
	for (int i = 0; i < KILL_RECEIVERS; i++) {
		kill_reap(rcv[i]);
		rcv_kills++;
	}
	books_pump(&b, ack[0], got[0]);
	/* Whatever is still queued: taken here. */
	for (;;) {
		mproc_msg m = { .data = buf, .capacity = sizeof(buf) };
		struct pay h;
		int rc = mproc_recv(q, &m, NULL, NULL, 0);

		if (rc == -EAGAIN)
			break;
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(pay_check(buf, m.size, &h), 0);
		books_got(&b, h.src, h.seq);
	}
	ck_assert_uint_eq(b.torn, 0);
	ck_assert_uint_eq(b.dup, 0);
	for (uint32_t s = 1; s < next_src; s++) {
		acked += b.acked[s];
		for (uint64_t i = 0; i < b.acked[s]; i++) {
			if (i >= b.got_len[s] || b.got[s][i] == 0)
				missing++;
			else
				taken++;
		}
		/* At most one message sent and not acknowledged (killed
		 * between the send and its report). */
		for (uint64_t i = b.acked[s] + 1; i < b.got_len[s]; i++)
			ck_assert_msg(b.got[s][i] == 0,
			              "src %u seq %llu received, never sent", s,
			              (unsigned long long)i);
	}
	ck_assert_msg(missing <= (uint64_t)rcv_kills,
	              "%llu acknowledged messages lost (%d receivers killed)",
	              (unsigned long long)missing, rcv_kills);
	if (!check_slow())
		ck_assert_msg(acked > 0, "nothing was sent");
	fprintf(stderr, "kill9: %llu acknowledged, %llu received, %llu in "
	        "killed receivers, %d receivers and %u senders started\n",
	        (unsigned long long)acked, (unsigned long long)taken,
	        (unsigned long long)missing, rcv_kills, next_src - 1);
	for (int s = 0; s < KILL_MAX_SRC; s++)
		free(b.got[s]);
	close(ack[0]);
	close(ack[1]);
	close(got[0]);
	close(got[1]);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* ---- the descriptor ------------------------------------------------------ */

/* Is fd readable within timeout_ms? */
static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int rc;

	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	ck_assert_int_ge(rc, 0);
	return rc == 1 && (p.revents & POLLIN);
}

START_TEST(test_named_fd_poll_epoll)
{
	QNAME(n, "fd");
	struct epoll_event ev = { .events = EPOLLIN }, out;
	mproc_conn *q;
	pid_t pid;
	int fd, ep;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	fd = mproc_fd(q);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mproc_fd(q), fd); /* the same each time */
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* Readable from the start; a receive (even one finding nothing)
	 * clears it. */
	ck_assert(readable(fd, 0));
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	ck_assert(!readable(fd, 50));
	/* A send by an exec'd program wakes it. */
	pid = peer_spawn(-1, "send", n, "1", "4", "64", NULL);
	ck_assert(readable(fd, check_scale_ms(WAIT_MS)));
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(mproc_recv(q, &(mproc_msg){ .data = (uint8_t[64]){ 0 },
	                                              .capacity = 64 },
	                            NULL, NULL, 0), 0);
	ck_assert(!readable(fd, 0));
	/* epoll, level-triggered. */
	ep = epoll_create1(EPOLL_CLOEXEC);
	ck_assert_int_ge(ep, 0);
	ev.data.fd = fd;
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = send_int(q, 41, 0);

		mproc_close(q);
		_exit(rc == 0 ? 0 : 1);
	}
	ck_assert_int_eq(epoll_wait(ep, &out, 1, check_scale_ms(WAIT_MS)), 1);
	ck_assert_int_eq(out.data.fd, fd);
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 0), 1); /* still, until... */
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(recv_int(q, NULL, 0), 41); /* ...a receive */
	ck_assert_int_eq(epoll_wait(ep, &out, 1, 0), 0);
	/* Sends while nobody received: one wake, still readable once. */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(send_int(q, i, 0), 0);
	ck_assert(readable(fd, 0));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(recv_int(q, NULL, 0), i);
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	close(ep);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* Everything queued is for someone else: after one receive, no wake. */
START_TEST(test_named_fd_no_spin)
{
	QNAME(n, "spin");
	mproc_conn *q;
	struct sync s;
	pid_t other;
	int fd;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	sync_init(&s);
	other = fork();
	ck_assert_int_ge(other, 0);
	if (other == 0) {
		/* Alive (its mail is not orphaned) until told, then writes
		 * to the parent once. */
		if (!sync_hear(s.down[0], WAIT_MS))
			_exit(1);
		child_assert(send_int(q, 77, getppid()) == 0);
		mproc_close(q);
		_exit(0);
	}
	fd = mproc_fd(q);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(send_int(q, i, other), 0);
	ck_assert(readable(fd, 0));
	ck_assert_int_eq(recv_int(q, mproc_for_me, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	ck_assert(!readable(fd, 100));
	ck_assert_int_eq(recv_int(q, mproc_for_me, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	sync_tell(s.down[1]);
	ck_assert(readable(fd, check_scale_ms(WAIT_MS)));
	ck_assert_int_eq(recv_int(q, mproc_for_me, 0), 77);
	ck_assert_int_eq(recv_int(q, mproc_for_me, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	check_reap_ok(other, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(stats_of(q).queued, 20);
	sync_close(&s);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* A forked child's descriptor is its own and works alone. */
START_TEST(test_named_fd_fork)
{
	QNAME(n, "fdfork");
	mproc_conn *q;
	struct stat pst;
	struct sync s;
	pid_t pid;
	int fd;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	fd = mproc_fd(q);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert_int_eq(fstat(fd, &pst), 0);
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct stat cst;
		int keep = dup(fd), cfd;

		cfd = mproc_fd(q);
		child_assert(cfd >= 0);
		child_assert(fstat(cfd, &cst) == 0);
		/* Another socket than the parent's (the number may be
		 * reused: compare the inodes). */
		child_assert(cst.st_ino != pst.st_ino);
		close(keep);
		child_assert(readable(cfd, 0)); /* from the start */
		child_assert(recv_int(q, mproc_for_me, 0) == -EAGAIN);
		child_assert(!readable(cfd, 0));
		sync_tell(s.up[1]);
		child_assert(readable(cfd, WAIT_MS));
		child_assert(recv_int(q, mproc_for_me, 0) == 51);
		child_assert(!readable(cfd, 0));
		sync_tell(s.up[1]);
		_exit(0);
	}
	ck_assert(sync_hear(s.up[0], check_scale_ms(WAIT_MS)));
	ck_assert(!readable(fd, 0));
	ck_assert_int_eq(send_int(q, 51, pid), 0);
	ck_assert(sync_hear(s.up[0], check_scale_ms(WAIT_MS)));
	/* The child's receive did not clear the parent's descriptor. */
	ck_assert(readable(fd, 0));
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	sync_close(&s);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

START_TEST(test_named_fd_shutdown)
{
	QNAME(n, "fdshut");
	mproc_conn *q;
	pid_t pid;
	int fd;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	fd = mproc_fd(q);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(recv_int(q, NULL, 0), -EAGAIN);
	ck_assert(!readable(fd, 0));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c = c_attach(n);

		usleep(20000);
		_exit(mproc_queue_shutdown(c) == 0 ? 0 : 1);
	}
	ck_assert(readable(fd, check_scale_ms(WAIT_MS)));
	ck_assert_int_eq(recv_int(q, NULL, 0), -ESHUTDOWN);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

/* 64 descriptors on one queue; the 65th is -EMFILE until a slot frees,
 * by a close here or by its process dying. */
START_TEST(test_named_fd_slots)
{
	QNAME(n, "slots");
	mproc_conn *h[MPROC__QUEUE_POLLERS + 1];
	struct sync s;
	pid_t pid;
	int fd;

	named_dir_new(0700);
	h[0] = q_create(n, 0, 0);
	for (int i = 1; i <= MPROC__QUEUE_POLLERS; i++)
		h[i] = q_attach(n);
	for (int i = 0; i < MPROC__QUEUE_POLLERS; i++)
		ck_assert_int_ge(mproc_fd(h[i]), 0);
	ck_assert_int_eq(mproc_fd(h[MPROC__QUEUE_POLLERS]), -EMFILE);
	ck_assert_int_eq(mproc_close(h[7]), 0);
	fd = mproc_fd(h[MPROC__QUEUE_POLLERS]);
	ck_assert_int_ge(fd, 0);
	/* Each of them wakes. */
	ck_assert_int_eq(recv_int(h[MPROC__QUEUE_POLLERS], NULL, 0), -EAGAIN);
	ck_assert_int_eq(send_int(h[0], 1, 0), 0);
	ck_assert(readable(fd, WAIT_MS));
	ck_assert_int_eq(recv_int(h[MPROC__QUEUE_POLLERS], NULL, 0), 1);
	/* A slot held by a process killed is free again. */
	ck_assert_int_eq(mproc_close(h[8]), 0);
	sync_init(&s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c = c_attach(n);

		child_assert(mproc_fd(c) >= 0);
		sync_tell(s.up[1]);
		pause();
		_exit(1);
	}
	ck_assert(sync_hear(s.up[0], check_scale_ms(WAIT_MS)));
	h[8] = q_attach(n);
	ck_assert_int_eq(mproc_fd(h[8]), -EMFILE);
	kill_reap(pid);
	ck_assert_int_ge(mproc_fd(h[8]), 0);
	for (int i = 0; i <= MPROC__QUEUE_POLLERS; i++)
		if (i != 7)
			ck_assert_int_eq(mproc_close(h[i]), 0);
	sync_close(&s);
	named_dir_done();
}
END_TEST

/* ---- bugs found by these tests (fixed) ------------------------------- */

/*
 * A peer scribbles glibc's type word of the receive mutex (bytes found by
 * fuzz/fuzz_named_attach): every process that locks the queue dies in
 * pthread_mutex_trylock (SIGILL: lock elision on a CPU without TSX); other
 * type words make the receive return -EINVAL, which means a bad argument.
 * Shared memory is untrusted input: expected -EPROTO (or the message).
 */
START_TEST(test_named_known_mutex_kind)
{
	/* __kind 0x10100 (PTHREAD_MUTEX_ELISION_NP among others), __spins,
	 * __elision. */
	static const uint8_t kind[8] = { 0x00, 0x01, 0x01, 0x00,
	                                 0x00, 0xe3, 0x80, 0xe3 };
	QNAME(n, "kind");
	size_t off, len;
	mproc_conn *q;
	pid_t pid;
	int fd, st;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	ck_assert_int_eq(send_int(q, 1, 0), 0);
	ck_assert_int_eq(mproc_close(q), 0);
	ck_assert_int_eq(mproc__queue_lock_span(1, &off, &len), 0);
	fd = open(named_path(n), O_WRONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, kind, sizeof(kind),
	                        (off_t)(off + offsetof(pthread_mutex_t,
	                                               __data.__kind))),
	                 sizeof(kind));
	close(fd);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		mproc_conn *c = NULL;
		int rc = mproc_queue_attach(&c, n);

		if (rc == 0)
			rc = recv_int(c, NULL, 0);
		if (rc != 1 && rc != -EPROTO && rc != -EAGAIN)
			child_fail("recv: %d", rc);
		_exit(0);
	}
	st = check_wait_child(pid, WAIT_MS);
	ck_assert_msg(!WIFSIGNALED(st), "a receive on a queue whose mutex "
	              "type was scribbled died of signal %d", WTERMSIG(st));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	named_dir_done();
}
END_TEST

/*
 * A receiver stopped (SIGSTOP, a debugger) inside a commit: its journal is
 * pending and it holds the receive lock. mproc_queue_stats, documented as
 * 0, -EINVAL or -EPROTO and "read without holding up", waits 1 s and
 * returns -ETIMEDOUT (mproc_queue_empty too). mproc-stat (no lock)
 * answers at once with "pending".
 */
START_TEST(test_named_known_stats_stopped_mid_commit)
{
	QNAME(n, "midc");
	mproc_conn *q;
	mproc_stats st;
	long long t0, ms;
	int out[2], rc;
	char line[16] = { 0 };
	pid_t pid;

	named_dir_new(0700);
	q = q_create(n, 0, 0);
	ck_assert_int_eq(send_int(q, 1, 0), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		execl(peer_path(), "named_peer", "lockstop", n, "pending",
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	ck_assert(sync_hear(out[0], check_scale_ms(WAIT_MS))); /* "l"... */
	ck_assert_int_gt(read(out[0], line, sizeof(line) - 1), 0);
	for (int i = 0; i < 500 && check_proc_state(pid) != 'T'; i++)
		usleep(10000);
	ck_assert_int_eq(check_proc_state(pid), 'T');
	t0 = check_now_ms();
	rc = mproc_queue_stats(q, &st);
	ms = check_now_ms() - t0;
	kill(pid, SIGCONT);
	check_reap_ok(pid, check_scale_ms(WAIT_MS));
	close(out[0]);
	ck_assert_msg(rc == 0 || rc == -EPROTO, "stats: %s after %lld ms",
	              mproc_err_name(rc), ms);
	ck_assert_int_eq(mproc_close(q), 0);
	named_dir_done();
}
END_TEST

static Suite *named_suite(void)
{
	Suite *s = suite_create("named");
	TCase *tc;

	tc = tcase_create("names");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_named_name_rules);
	tcase_add_test(tc, test_named_create_exists);
	tcase_add_test(tc, test_named_create_stale);
	tcase_add_test(tc, test_named_create_mode);
	tcase_add_test(tc, test_named_create_no_temp);
	tcase_add_test(tc, test_named_create_attach_race);
	tcase_add_test(tc, test_named_attach_enoent);
	tcase_add_test(tc, test_named_attach_eacces);
	tcase_add_test(tc, test_named_attach_eproto);
	tcase_add_test(tc, test_named_dir_eperm);
	tcase_add_test(tc, test_named_dir_default);
	tcase_add_test(tc, test_named_unlink_holders_go_on);
	tcase_add_test(tc, test_named_unlink_on_last_close);
	tcase_add_test(tc, test_named_unlink_on_last_close_race);
	suite_add_tcase(s, tc);

	tc = tcase_create("peers");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_named_peer_both_ways);
	tcase_add_test(tc, test_named_exec_no_leak);
	tcase_add_test(tc, test_named_peer_orphans);
	tcase_add_test(tc, test_named_kill9_peers);
	suite_add_tcase(s, tc);

	tc = tcase_create("descriptor");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_named_fd_poll_epoll);
	tcase_add_test(tc, test_named_fd_no_spin);
	tcase_add_test(tc, test_named_fd_fork);
	tcase_add_test(tc, test_named_fd_shutdown);
	tcase_add_test(tc, test_named_fd_slots);
	suite_add_tcase(s, tc);

	/* Two bugs found here, fixed in src/: a scribbled mutex type, and
	 * stats behind a committer stopped in the middle. */
	tc = tcase_create("found");
	tcase_set_timeout(tc, CHECK_TIMEOUT);
	tcase_add_test(tc, test_named_known_mutex_kind);
	tcase_add_test(tc, test_named_known_stats_stopped_mid_commit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	int rc;

	/* 0755: a test run as another user must be able to pass through. */
	snprintf(base_dir, sizeof(base_dir), "%s/check-named-%d", root,
	         (int)getpid());
	if (mkdir(base_dir, 0755) < 0 || chmod(base_dir, 0755) < 0) {
		perror(base_dir);
		return 99;
	}
	rc = check_run_suite(named_suite());
	named_rm_tree(base_dir);
	return rc;
}
