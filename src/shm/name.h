/*
 * name.h - shared mappings under a name (src/shm/name.c): the name rules,
 * the private directory, create, attach, unlink, and the holders.
 *
 * A name is "/" and 1 to 200 characters of [A-Za-z0-9._-], not starting
 * with "."; the object "/jobs" is the file "jobs" in the directory
 * $MPROC_DIR (read at each call) or /dev/shm/mproc-<euid> (made 0700 when
 * missing). The directory must be a real directory (not a symlink), not
 * writable by others, and owned by the caller or root: else -EPERM, so no
 * other user can plant or swap an object under a name we use.
 *
 * Holders: every process that holds a named object has its own open file
 * description of the file with an open-file-description read lock on its
 * first byte. The kernel drops the lock when the last descriptor of that
 * description goes, however the process ended, so "no lock" means no
 * live holder: the object is stale. A child that inherits a handle by
 * fork() gets a description of its own (an atfork handler reopens it), so
 * it holds the object by itself. The last holder's close can tell it is
 * the last: its lock alone can be made a write lock.
 *
 * Create writes the whole object into a temporary file (".tmp-..."), takes
 * its holder's lock, then links it under the name: an attach never sees a
 * half-made object. A stale object under the name is replaced (renamed
 * over while its replacer holds a write lock on it, so that no attach
 * revives it meanwhile).
 */
#ifndef MPROC_SHM_NAME_H
#define MPROC_SHM_NAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/region.h"

#define MPROC__NAME_MAX 200
#define MPROC__PATH_MAX 4096

/* What a named handle keeps of its object. */
struct mproc__named {
	int fd;            /* its own description, read-locked; -1: none */
	void *map;
	size_t len;
	uint64_t dev, ino; /* the file, to unlink only this one */
	int unlink_on_last_close;
	char dir[MPROC__PATH_MAX];       /* the directory, as resolved */
	char file[MPROC__NAME_MAX + 1]; /* the name without its "/" */
	struct mproc__named *next;      /* the process's registry */
};

/* mproc__name_check: 0 for a valid name, else -EINVAL. */
int mproc__name_check(const char *name);
/*
 * mproc__name_dir resolves the directory into buf (MPROC__PATH_MAX) and
 * opens it (O_DIRECTORY | O_NOFOLLOW), making it 0700 when it is the
 * default one and missing. Returns the directory's descriptor, or -EPERM
 * (not safe: see the top of this file) or another negative errno.
 */
int mproc__name_dir(char *buf);

/*
 * mproc__named_create makes a new object of size bytes under name, mode
 * mode & 0777 (0: 0600; the umask does not narrow it): init(map, arg)
 * fills it (the header last) before it is linked under the name. Returns
 * 0 with *nm filled and registered, -EEXIST (a live process holds the
 * name), -EINVAL, -EPERM, -EACCES, -ENOSPC, -ENOMEM...
 */
int mproc__named_create(struct mproc__named *nm, const char *name,
                        mode_t mode, size_t size,
                        int (*init)(void *map, size_t size, void *arg),
                        void *arg);
/*
 * mproc__named_attach maps the object under name: -ENOENT none, -EACCES
 * its mode forbids us, -EPROTO not an mproc object of this kind (checked
 * with region_check against the file's size, before anything is used).
 * A name being replaced meanwhile is followed to the new object.
 */
int mproc__named_attach(struct mproc__named *nm, const char *name,
                        enum mproc__kind kind, uint32_t layout,
                        uint32_t header_size);
/* mproc__named_close unmaps, closes and unregisters; with
 * unlink_on_last_close set, the last holder removes the name first. */
void mproc__named_close(struct mproc__named *nm);
/* mproc__name_unlink removes name: 0, -ENOENT, -EACCES, -EINVAL, -EPERM. */
int mproc__name_unlink(const char *name);
/*
 * mproc__named_probe: for the inspector. Is the file at fd held by a live
 * process (1), or stale (0)? Negative errno on failure.
 */
int mproc__named_probe(int fd);

#endif /* MPROC_SHM_NAME_H */
