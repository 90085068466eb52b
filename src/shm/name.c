/*
 * name.c - shared mappings under a name: see name.h for the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shm/name.h"

/* How often an attach follows a name that is being replaced. */
#define NAME_ATTACH_TRIES 1000
/* How often a create retries a name that changes under it. */
#define NAME_CREATE_TRIES 100

static pthread_mutex_t name_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mproc__named *name_reg;
static pthread_once_t name_reg_once = PTHREAD_ONCE_INIT;

int mproc__name_check(const char *name)
{
	size_t i;

	if (name == NULL || name[0] != '/' || name[1] == '\0' || name[1] == '.')
		return -EINVAL;
	for (i = 1; name[i] != '\0'; i++) {
		char c = name[i];

		if (i > MPROC__NAME_MAX)
			return -EINVAL;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

/* A directory we may trust: a directory, not writable by others, owned
 * by us or by root. */
static int name_dir_safe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || (st.st_mode & S_IWOTH) ||
	    (st.st_uid != geteuid() && st.st_uid != 0))
		return -EPERM;
	return 0;
}

int mproc__name_dir(char *buf)
{
	const char *env = secure_getenv("MPROC_DIR");
	int fd, rc;

	if (env != NULL && env[0] != '\0') {
		if (strlen(env) >= MPROC__PATH_MAX)
			return -EINVAL;
		strcpy(buf, env);
		/* "dir/" resolves a symlink "dir": O_NOFOLLOW must see it. */
		for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--)
			buf[n - 1] = '\0';
	} else {
		snprintf(buf, MPROC__PATH_MAX, "/dev/shm/mproc-%u",
		         (unsigned)geteuid());
	}
	fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		/* A symlink (ELOOP) or not a directory: not ours to trust. */
		return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
	}
	if ((rc = name_dir_safe(fd)) < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* The holder's lock: a shared OFD lock on byte 0 (type F_RDLCK), or the
 * last holder's exclusive one (F_WRLCK). Never waits. */
static int name_lock(int fd, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

int mproc__named_probe(int fd)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

/* ---- the process's registry, for fork ---------------------------------- */

static void name_prepare(void)
{
	pthread_mutex_lock(&name_reg_mu);
}

static void name_parent(void)
{
	pthread_mutex_unlock(&name_reg_mu);
}

/* The child holds each object by a description of its own (only
 * async-signal-safe calls here). */
static void name_child(void)
{
	struct mproc__named *nm;
	char path[32] = "/proc/self/fd/";
	char num[12];
	int i, n, fd;

	for (nm = name_reg; nm != NULL; nm = nm->next) {
		if (nm->fd < 0)
			continue;
		n = nm->fd;
		i = 0;
		do {
			num[i++] = (char)('0' + n % 10);
			n /= 10;
		} while (n > 0);
		for (n = 0; i > 0; n++)
			path[14 + n] = num[--i];
		path[14 + n] = '\0';
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (name_lock(fd, F_RDLCK) == 0)
			dup3(fd, nm->fd, O_CLOEXEC);
		close(fd);
	}
	pthread_mutex_unlock(&name_reg_mu);
}

static void name_reg_init(void)
{
	pthread_atfork(name_prepare, name_parent, name_child);
}

static void name_register(struct mproc__named *nm)
{
	pthread_once(&name_reg_once, name_reg_init);
	pthread_mutex_lock(&name_reg_mu);
	nm->next = name_reg;
	name_reg = nm;
	pthread_mutex_unlock(&name_reg_mu);
}

static void name_unregister(struct mproc__named *nm)
{
	struct mproc__named **p;

	pthread_mutex_lock(&name_reg_mu);
	for (p = &name_reg; *p != NULL; p = &(*p)->next) {
		if (*p == nm) {
			*p = nm->next;
			break;
		}
	}
	pthread_mutex_unlock(&name_reg_mu);
}

/* ---- create, attach, unlink, close -------------------------------------- */

static void name_fill(struct mproc__named *nm, int fd, void *map, size_t len,
                      const struct stat *st, const char *file)
{
	nm->fd = fd;
	nm->map = map;
	nm->len = len;
	nm->dev = (uint64_t)st->st_dev;
	nm->ino = (uint64_t)st->st_ino;
	strcpy(nm->file, file);
}

/* Publish the complete object tmp under file: link it, or replace a stale
 * object there. 0, -EEXIST (held), or a negative errno. */
static int name_publish(int dirfd, const char *tmp, const char *file)
{
	struct stat st;
	int old, rc, i;

	for (i = 0; i < NAME_CREATE_TRIES; i++) {
		if (linkat(dirfd, tmp, dirfd, file, 0) == 0) {
			unlinkat(dirfd, tmp, 0);
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
		old = openat(dirfd, file, O_RDWR | O_NOFOLLOW | O_NONBLOCK |
		                                  O_CLOEXEC);
		if (old < 0) {
			if (errno == ENOENT)
				continue; /* unlinked meanwhile: link again */
			return -EEXIST; /* not ours to replace */
		}
		if (fstat(old, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(old);
			return -EEXIST;
		}
		/* Stale if nobody holds it; our write lock keeps attaches
		 * off it until the new object is in its place. */
		rc = name_lock(old, F_WRLCK);
		if (rc < 0) {
			close(old);
			return rc == -EAGAIN || rc == -EACCES ? -EEXIST : rc;
		}
		rc = renameat(dirfd, tmp, dirfd, file) < 0 ? -errno : 0;
		close(old);
		return rc;
	}
	return -EEXIST;
}

int mproc__named_create(struct mproc__named *nm, const char *name,
                        mode_t mode, size_t size,
                        int (*init)(void *map, size_t size, void *arg),
                        void *arg)
{
	static unsigned long counter;
	char tmp[64];
	struct stat st;
	void *map = MAP_FAILED;
	int dirfd, fd = -1, rc;
	struct timespec ts;

	memset(nm, 0, sizeof(*nm));
	nm->fd = -1;
	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((dirfd = mproc__name_dir(nm->dir)) < 0)
		return dirfd;
	mode &= 0777;
	if (mode == 0)
		mode = 0600;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(tmp, sizeof(tmp), ".tmp-%d-%lu-%lx", (int)getpid(),
	         __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED),
	         (unsigned long)ts.tv_nsec);
	fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	            0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/* The mode asked for, whatever the umask. */
	if (fchmod(fd, mode) < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Reserve the memory now: a full tmpfs is -ENOSPC here, never a
	 * SIGBUS later. */
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = ftruncate(fd, (off_t)size) < 0 ? errno : 0;
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	if ((rc = init(map, size, arg)) < 0 ||
	    (rc = name_lock(fd, F_RDLCK)) < 0 ||
	    (rc = name_publish(dirfd, tmp, name + 1)) < 0)
		goto fail;
	name_fill(nm, fd, map, size, &st, name + 1);
	name_register(nm);
	close(dirfd);
	return 0;
fail:
	if (map != MAP_FAILED)
		munmap(map, size);
	close(fd);
	unlinkat(dirfd, tmp, 0);
out:
	close(dirfd);
	return rc;
}

int mproc__named_attach(struct mproc__named *nm, const char *name,
                        enum mproc__kind kind, uint32_t layout,
                        uint32_t header_size)
{
	struct stat st, now;
	void *map;
	int dirfd, fd, rc = -ENOENT, i;

	memset(nm, 0, sizeof(*nm));
	nm->fd = -1;
	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((dirfd = mproc__name_dir(nm->dir)) < 0)
		return dirfd;
	for (i = 0; i < NAME_ATTACH_TRIES; i++) {
		fd = openat(dirfd, name + 1, O_RDWR | O_NOFOLLOW | O_NONBLOCK |
		                                     O_CLOEXEC);
		if (fd < 0) {
			/* A symlink, a directory, a socket: not an object. */
			rc = errno == ELOOP || errno == ENXIO || errno == EISDIR
			             ? -EPROTO
			     : errno == EPERM ? -EACCES
			                      : -errno;
			break;
		}
		if (fstat(fd, &st) < 0) {
			rc = -errno;
			close(fd);
			break;
		}
		if (!S_ISREG(st.st_mode) ||
		    (uint64_t)st.st_size < sizeof(struct mproc__shm_hdr) ||
		    (uint64_t)st.st_size > SIZE_MAX / 2) {
			rc = -EPROTO;
			close(fd);
			break;
		}
		rc = name_lock(fd, F_RDLCK);
		/* Locked for write: a create is replacing it, or its last
		 * holder is removing the name. Follow the name again. Else
		 * the name must still be this file (the lock came after). */
		if (rc == 0 && (fstatat(dirfd, name + 1, &now,
		                        AT_SYMLINK_NOFOLLOW) < 0 ||
		                now.st_ino != st.st_ino ||
		                now.st_dev != st.st_dev))
			rc = -EAGAIN;
		if (rc < 0) {
			close(fd);
			if (rc != -EAGAIN && rc != -EACCES)
				break;
			rc = -ENOENT;
			usleep(1000);
			continue;
		}
		map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
		           MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			rc = -errno;
			close(fd);
			break;
		}
		if (mproc__region_check(map, (size_t)st.st_size, kind, layout,
		                        header_size) < 0) {
			munmap(map, (size_t)st.st_size);
			close(fd);
			rc = -EPROTO;
			break;
		}
		name_fill(nm, fd, map, (size_t)st.st_size, &st, name + 1);
		name_register(nm);
		rc = 0;
		break;
	}
	close(dirfd);
	return rc;
}

void mproc__named_close(struct mproc__named *nm)
{
	struct stat st;
	int dirfd;

	if (nm->fd < 0)
		return;
	name_unregister(nm);
	/* The last holder: only its own lock is left, so it can be made
	 * exclusive. It lets go of its read lock first: of two holders
	 * closing at once, each would see the other's and neither would
	 * unlink. Remove the name if it is still this object's. */
	if (nm->unlink_on_last_close && name_lock(nm->fd, F_UNLCK) == 0 &&
	    name_lock(nm->fd, F_WRLCK) == 0) {
		dirfd = open(nm->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		                              O_CLOEXEC);
		if (dirfd >= 0 && name_dir_safe(dirfd) == 0 &&
		    fstatat(dirfd, nm->file, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (uint64_t)st.st_ino == nm->ino &&
		    (uint64_t)st.st_dev == nm->dev)
			unlinkat(dirfd, nm->file, 0);
		if (dirfd >= 0)
			close(dirfd);
	}
	if (nm->map != NULL)
		munmap(nm->map, nm->len);
	close(nm->fd);
	nm->fd = -1;
	nm->map = NULL;
}

int mproc__name_unlink(const char *name)
{
	char dir[MPROC__PATH_MAX];
	int dirfd, rc;

	if ((rc = mproc__name_check(name)) < 0)
		return rc;
	if ((dirfd = mproc__name_dir(dir)) < 0)
		return dirfd;
	rc = unlinkat(dirfd, name + 1, 0) < 0 ? -errno : 0;
	close(dirfd);
	if (rc == -EPERM || rc == -EISDIR)
		rc = -EACCES;
	return rc;
}
