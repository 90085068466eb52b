/*
 * check_errnos.h - the errno lists names and texts are checked against:
 * the codes mproc words itself (DESIGN.md, "Errors and waiting", and
 * ENOMEM, the pool's ECHILD, the bus's EUSERS, the journal's E2BIG), and
 * real errnos that are none of mproc's (some the library passes through:
 * EBADF, EMFILE...), which get the system's text and symbol.
 */
#ifndef MPROC_CHECK_ERRNOS_H
#define MPROC_CHECK_ERRNOS_H

#include <errno.h>

/* Codes mproc describes in its own words: static const int e[] = {
 * CHECK_MPROC_ERRNOS }. */
#define CHECK_MPROC_ERRNOS                                                    \
	EAGAIN, ETIMEDOUT, EMSGSIZE, EPIPE, EINVAL, EPROTO, ESHUTDOWN,        \
	        EDEADLK, ENOMEM, ECHILD, EEXIST, ENOENT, EACCES, EPERM,       \
	        EOVERFLOW, EBUSY, ENOTCONN, EUSERS, E2BIG

/* Real errnos that are none of mproc's: the system's words for them. */
#define CHECK_SYSTEM_ERRNOS                                                   \
	EBADF, EMFILE, ENFILE, ENOSYS, EINTR, ESRCH, EFAULT, ENOSPC,          \
	        ENOTSUP, EIO, ENXIO, ENOEXEC

#define CHECK_NELEMS(a) (sizeof(a) / sizeof((a)[0]))

#endif /* MPROC_CHECK_ERRNOS_H */
