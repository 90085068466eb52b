/*
 * errors.c - the error table behind mproc_strerror and mproc_err_name.
 *
 * One X-macro table holds the codes whose meaning mproc states in its own
 * words (the codes include/mproc.h documents); every other errno gets the
 * system's text and symbol, so a code the library passes through (EBADF,
 * ECHILD, EMFILE, a failed fork's EAGAIN...) is never "unknown".
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

/* mproc's own wording: value, symbol, message. */
#define MPROC__ERRORS(X)                                                       \
	X(0, "OK", "success")                                                  \
	X(EAGAIN, "EAGAIN", "nothing for you right now (would block)")         \
	X(ETIMEDOUT, "ETIMEDOUT", "the wait allowed ran out")                  \
	X(EMSGSIZE, "EMSGSIZE",                                                \
	  "message larger than the channel or the buffer accepts")             \
	X(EPIPE, "EPIPE", "the other end is gone")                             \
	X(EINVAL, "EINVAL", "invalid argument")                                \
	X(EPROTO, "EPROTO", "shared state or framing is not valid mproc data")  \
	X(ESHUTDOWN, "ESHUTDOWN", "the channel was shut down")                 \
	X(EDEADLK, "EDEADLK",                                                  \
	  "called back into the channel from its own predicate")               \
	X(ENOMEM, "ENOMEM", "out of memory")                                   \
	X(ECHILD, "ECHILD", "no worker is alive and none may be started")      \
	X(EEXIST, "EEXIST", "a live object already has that name")             \
	X(ENOENT, "ENOENT", "no such object, task or result")                  \
	X(EACCES, "EACCES", "the object's mode forbids it")                    \
	X(EPERM, "EPERM", "the object directory is not safe to use")           \
	X(EOVERFLOW, "EOVERFLOW", "the reader was overrun; messages were lost") \
	X(EBUSY, "EBUSY", "a reservation or borrow is already open")           \
	X(ENOTCONN, "ENOTCONN", "this process has not subscribed")             \
	X(EUSERS, "EUSERS", "too many readers")                                \
	X(E2BIG, "E2BIG", "the change is larger than a journal holds")

/* The errno as a positive value, or -1 for one that cannot be. */
static int err_abs(int err)
{
	if (err == INT_MIN)
		return -1; /* -INT_MIN does not exist */
	return err < 0 ? -err : err;
}

const char *mproc_strerror(int err)
{
	const char *text;
	int e = err_abs(err);

	if (e < 0)
		return "unknown error";
#define X(code, name, msg)                                                     \
	if (e == (code))                                                       \
		return msg;
	MPROC__ERRORS(X)
#undef X
	/* The system's description: a static string (glibc >= 2.32), NULL
	 * for a value no errno has. */
	text = strerrordesc_np(e);
	return text != NULL ? text : "unknown error";
}

const char *mproc_err_name(int err)
{
	const char *name;
	int e = err_abs(err);

	if (e < 0)
		return "UNKNOWN";
#define X(code, sym, msg)                                                      \
	if (e == (code))                                                       \
		return sym;
	MPROC__ERRORS(X)
#undef X
	name = strerrorname_np(e);
	return name != NULL ? name : "UNKNOWN";
}
