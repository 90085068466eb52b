/*
 * mproc.h - messaging between a parent process and the workers it forks.
 *
 * One API (mproc_send, mproc_recv, mproc_close) over several transports:
 *
 *   pipe   1:1 duplex channel, mproc_pipe_open() before fork()
 *   queue  1:M, M:1, M:M joinable queue in a MAP_SHARED mapping,
 *          mproc_queue_open() before fork()
 *   pool   a parent and W forked workers: DO tasks, FINISHED results,
 *          DIE poison pills (mproc_pool_start)
 *
 * General rules, stated once:
 *
 * - Errors: every function that can fail returns 0 (or a count) on success
 *   and a negative errno value on failure. -EINVAL covers every bad
 *   argument: NULL, a closed handle, a handle of the wrong kind (a queue
 *   call on a pipe end), a bad timeout, an unknown flag. mproc_strerror() names it. A call
 *   that fails changes nothing: the queue and every message in it stay as
 *   they were.
 * - Timeouts are in milliseconds: MPROC_NOWAIT (0) never waits for a
 *   message or for room (a queue call may wait up to 20 ms for one of the
 *   queue's locks while another process holds it, then says -EAGAIN),
 *   MPROC_FOREVER (-1) blocks without limit; any other negative value is
 *   -EINVAL. Waits use CLOCK_MONOTONIC; a signal (EINTR) neither ends a wait
 *   early nor restarts its clock. mproc installs no signal handler and starts
 *   no thread.
 * - fork(): open a pipe or a queue before fork(). The child uses the
 *   inherited handle as it is; there is nothing to call after fork(). Every
 *   process calls mproc_close() on its own copy when it is done with it; the
 *   memory or descriptors go when the last copy is closed. A process that
 *   exits without closing leaks nothing beyond its own lifetime. Every
 *   descriptor mproc creates is close-on-exec.
 * - Threads: a handle may be shared by the threads of one process, except
 *   that mproc_close() must not race other calls on the same handle.
 * - Crashes: a process using a queue may be killed (SIGKILL) at any
 *   instruction; the others never hang, never see a torn message, and every
 *   message whose send returned 0 is delivered at least once.
 * - mproc_close() is called once per handle in each process that has it.
 *   A call on a handle this process closed, a second close included,
 *   returns -EINVAL (the last 256 closed handles of a process are
 *   remembered; a handle closed longer ago than that is freed, and calls
 *   on it are undefined, like after free()).
 * - Nothing here is async-signal-safe.
 * - Ownership: "copies" means mproc keeps its own copy and the caller's
 *   memory is not referenced after the call; "borrows" means the pointer is
 *   used only during the call.
 */
#ifndef MPROC_H
#define MPROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MPROC_VERSION_MAJOR, _MINOR, _PATCH and MPROC_VERSION_STRING, made by
 * configure (the version is set in configure.ac only). */
#include "mproc_version.h"

/* Request codes. Applications use their own codes from MPROC_USER up. */
#define MPROC_DO       1
#define MPROC_FINISHED 2
#define MPROC_DIE      3
#define MPROC_USER     1024

/* Recipient meaning "whoever takes it". */
#define MPROC_ANYONE 0

/* Timeouts in milliseconds. */
#define MPROC_NOWAIT  0
#define MPROC_FOREVER (-1)

/* Largest payload a pipe carries (a frame announcing more is -EPROTO). */
#define MPROC_PIPE_MAX_PAYLOAD (16u << 20)

/* Queue defaults and limits. */
#define MPROC_QUEUE_DEFAULT_CAPACITY (1u << 20)
#define MPROC_QUEUE_DEFAULT_MAX_PAYLOAD (64u << 10)
#define MPROC_QUEUE_MAX_CAPACITY (1u << 30)

/* Queue flags (mproc_queue_opts.flags). */
#define MPROC_QUEUE_MANUAL_DONE (1u << 0) /* takers call mproc_task_done */

/* Flag of every named kind (opts.flags): the last holder's mproc_close
 * removes the name. */
#define MPROC_UNLINK_ON_LAST_CLOSE (1u << 16)

/*
 * mproc_msg is a message: four fields and a payload.
 *
 * On send: request, recipient, data and size are read; sender 0 means
 * getpid(); capacity is ignored.
 * On receive: the caller sets data and capacity (its buffer; data may be
 * NULL when capacity is 0); mproc_recv fills request, sender, recipient and
 * size and copies the payload into data.
 */
typedef struct mproc_msg {
	int32_t request;   /* MPROC_DO, MPROC_FINISHED, MPROC_DIE or >= MPROC_USER */
	pid_t sender;      /* sending process; 0 on send means getpid() */
	pid_t recipient;   /* addressee, or MPROC_ANYONE (0) */
	uint32_t size;     /* payload length in bytes */
	void *data;        /* payload */
	uint32_t capacity; /* on receive: bytes available at data */
} mproc_msg;

/* An open pipe end or queue handle. Opaque. */
typedef struct mproc_conn mproc_conn;

/*
 * mproc_match_fn decides whether a message is for the caller: it returns
 * nonzero to take it, 0 to leave it for someone else. It borrows m (and
 * m->data, m->size bytes of payload) for the duration of the call only.
 * On a queue it runs while the queue's receive side is locked: it must be
 * short, must not block, and must not call mproc on the same queue (such a
 * call, a send included, returns -EDEADLK). It must not leave the call
 * other than by returning (no longjmp, no exception, no thread exit: the
 * lock would stay held) and must not fork() (the child would inherit a
 * half-made receive).
 */
typedef int (*mproc_match_fn)(const mproc_msg *m, void *arg);

/*
 * mproc_queue_opts configures mproc_queue_open. Zeroed fields mean the
 * defaults.
 */
typedef struct mproc_queue_opts {
	size_t capacity;       /* bytes of ring; default 1 MiB, at most 1 GiB */
	uint32_t max_messages; /* most messages queued at once; 0 = bytes only */
	uint32_t max_payload;  /* largest payload; default 64 KiB */
	uint32_t flags;        /* MPROC_QUEUE_MANUAL_DONE,
	                          MPROC_UNLINK_ON_LAST_CLOSE (named) */
	mode_t mode;           /* named: permission bits (& 0777); 0 = 0600;
	                          the umask does not narrow them */
} mproc_queue_opts;

/* mproc_stats is filled by mproc_queue_stats. */
typedef struct mproc_stats {
	uint64_t queued;     /* messages waiting */
	uint64_t bytes;      /* ring bytes in use (records, headers included) */
	uint64_t unfinished; /* the join count */
	uint64_t sent;       /* messages ever put */
	uint64_t received;   /* messages ever taken */
	uint64_t recoveries; /* times a lock (the send lock or the receive
	                        lock) was recovered from a dead owner */
	uint64_t orphans;    /* queued messages addressed to dead processes */
	uint64_t purged;     /* orphans dropped by mproc_queue_purge */
	uint64_t capacity;   /* ring size in bytes */
	uint64_t max_payload;
} mproc_stats;

/*
 * mproc_pipe_open creates a 1:1 duplex channel; call it before fork().
 * The parent keeps *parent_end and closes *child_end; the child does the
 * opposite. Both ends may send and receive. Payloads up to
 * MPROC_PIPE_MAX_PAYLOAD bytes. Never blocks.
 * Returns 0, -EINVAL (NULL argument), -EMFILE/-ENFILE or -ENOMEM.
 * Ownership: the caller owns both handles and closes each with mproc_close.
 * Fork: the descriptors are inherited; they are close-on-exec.
 */
int mproc_pipe_open(mproc_conn **parent_end, mproc_conn **child_end);

/*
 * mproc_pipe_adopt makes a pipe end of fd, one end of an AF_UNIX stream
 * socketpair whose other end is (or will be) a pipe end too: an end
 * mproc_pipe_open made, passed to another program as a descriptor (over
 * a Unix socket, or inherited across exec()), is dup()ed there and
 * adopted. The end takes fd over (mproc_close closes it) and sets it
 * blocking and close-on-exec. Nothing is read or written. Used by the
 * Python package to hand a pipe to a spawned process.
 * Returns 0, -EINVAL (NULL end, fd negative or not an AF_UNIX stream
 * socket: fd is left as it was), -EBADF or -ENOMEM.
 */
int mproc_pipe_adopt(mproc_conn **end, int fd);

/*
 * mproc_queue_open creates a joinable queue in an anonymous MAP_SHARED
 * mapping; call it before fork(). opts may be NULL for the defaults.
 * Options that cannot work (capacity too small for one message of
 * max_payload bytes, capacity over MPROC_QUEUE_MAX_CAPACITY, unknown flags)
 * give -EINVAL. Never blocks.
 * Returns 0, -EINVAL or -ENOMEM.
 * Ownership: the caller owns *queue; opts is borrowed.
 * Fork: children use the inherited handle; each process closes its copy.
 */
int mproc_queue_open(mproc_conn **queue, const mproc_queue_opts *opts);

/* ------------------------------------------------------------------ */
/* Named objects                                                       */
/* ------------------------------------------------------------------ */

/*
 * Names let programs started separately meet. A name is "/" followed by 1
 * to 200 characters from [A-Za-z0-9._-], not starting with "."; anything
 * else is -EINVAL. Queues, buses and slots share one namespace. The object
 * "/jobs" is the file "jobs" in the directory $MPROC_DIR (read at each
 * call) or, if unset, /dev/shm/mproc-<euid> (created mode 0700 when
 * missing); ls and rm work on it, and file names starting with "." are the
 * library's own. A directory that is a symlink, not a directory, writable
 * by others or owned by neither the caller nor root is refused with
 * -EPERM (create, attach and unlink check), so no other user can plant or
 * swap an object under a name you use. Share across users with a group
 * directory set up by an administrator, named by $MPROC_DIR.
 * A named object is held by every process that created, attached or
 * inherited (fork) it and has not closed it; the kernel keeps that count
 * (a lock on the file), so a process killed with SIGKILL holds nothing.
 * Handles are close-on-exec: an exec'd program attaches by name.
 */

/*
 * mproc_queue_create makes a new named queue, as mproc_queue_open would,
 * with opts->mode & 0777 as the file's mode (0: 0600; the umask does not
 * narrow it) and opts->flags & MPROC_UNLINK_ON_LAST_CLOSE honoured. The
 * name appears only once the queue is complete: an attach never sees a
 * half-made queue. A name that a live process still holds gives -EEXIST;
 * one that no live process holds (all its holders exited or were killed)
 * is stale and is replaced. Never blocks.
 * Returns 0, -EINVAL (bad name or options), -EEXIST, -EPERM (unsafe
 * directory), -EACCES, -ENOSPC, -ENOMEM or another errno of the file
 * system.
 * Ownership: the caller owns *queue; opts and name are borrowed.
 * Fork: children share the handle and hold the queue by themselves.
 */
int mproc_queue_create(mproc_conn **queue, const char *name,
                       const mproc_queue_opts *opts);

/*
 * mproc_queue_attach opens the named queue an unrelated program created.
 * Returns 0, -EINVAL (bad name), -ENOENT (no such object), -EACCES (its
 * mode forbids you), -EPROTO (not a valid mproc queue: a foreign file,
 * another kind, another layout version, a truncated or corrupted header)
 * or -EPERM (unsafe directory); never crashes or hangs on a bad file. A
 * name being replaced meanwhile is followed to the new object.
 * Every promise of the anonymous queue holds across the programs that
 * attach it. Ownership: the caller owns *queue and closes it.
 */
int mproc_queue_attach(mproc_conn **queue, const char *name);

/*
 * mproc_unlink removes a name (any kind). Holders keep using the object,
 * which goes when the last one closes or exits. Returns 0, -ENOENT,
 * -EACCES, -EINVAL or -EPERM.
 */
int mproc_unlink(const char *name);

/*
 * mproc_send sends a message with the given request code to recipient
 * (MPROC_ANYONE or a pid), sender getpid(). Waits for room as long as it
 * takes (a full queue; a full socket buffer).
 * A request code that is not MPROC_DO, MPROC_FINISHED, MPROC_DIE or at
 * least MPROC_USER, and a recipient below 0 (a failed fork()'s -1), are
 * -EINVAL.
 * Returns 0, -EINVAL, -EMSGSIZE (payload over the transport's limit),
 * -EPIPE (peer gone), -ESHUTDOWN or -EPROTO.
 * Ownership: copies data (size bytes).
 * Concurrency: any threads and processes may send at once.
 */
int mproc_send(mproc_conn *c, int32_t request, pid_t recipient,
               const void *data, size_t size);

/*
 * mproc_send_msg copies m into c. Blocks while c is full, up to
 * timeout_ms (MPROC_NOWAIT: never block; MPROC_FOREVER: no limit).
 * m->sender 0 means getpid(); m->capacity is ignored. m->request and
 * m->recipient are checked as for mproc_send (-EINVAL).
 * Returns 0, -EAGAIN (full, MPROC_NOWAIT), -ETIMEDOUT, -EINVAL, -EMSGSIZE,
 * -EPIPE, -ESHUTDOWN, -EPROTO or -ENOMEM (pipe).
 * On a pipe, only the process that owns the end sends on it; its threads
 * may send at once and take turns. Two processes sending on copies of one
 * end can interleave frames.
 * On a pipe, a frame that the peer's socket buffer takes only in part
 * before the timeout is kept in the endpoint and finished by the next call
 * on it (or by mproc_close); such a send returns 0.
 * Ownership: m and its payload stay the caller's; c keeps its own copy.
 * Concurrency: any threads and processes may send at once.
 * Fork: open c before fork(); parent and children share it.
 */
int mproc_send_msg(mproc_conn *c, const mproc_msg *m, int timeout_ms);

/*
 * mproc_recv takes the oldest message that match accepts (match NULL: the
 * oldest message) and copies it into m: request, sender, recipient, size
 * and the payload into m->data (m->capacity bytes available).
 * Messages match rejects stay where they are, in order, for their owner.
 * If the payload does not fit, returns -EMSGSIZE with m->size set to the
 * bytes needed, and the message stays where it was.
 * Blocks until a message matches, up to timeout_ms. A blocking receive
 * whose predicate matches nothing sleeps until a new message arrives.
 * Returns 0, -EAGAIN (nothing, MPROC_NOWAIT), -ETIMEDOUT, -EINVAL,
 * -EMSGSIZE, -EPIPE (pipe: the peer is gone and everything it sent was
 * read), -ESHUTDOWN, -EPROTO (corrupt state or framing), -ENOMEM (pipe:
 * its read buffer could not grow) or -EDEADLK (called from inside a
 * predicate on the same queue or pipe end).
 * On a pipe, after -EPROTO every later send and receive on that end
 * returns -EPROTO. On an error the bytes at m->data are unspecified; the
 * other fields of m are set only on success (m->size also on -EMSGSIZE).
 * Ownership: borrows m; the payload is copied into the caller's buffer.
 * On a queue, taking a message finishes its task unless the queue was
 * opened with MPROC_QUEUE_MANUAL_DONE.
 */
int mproc_recv(mproc_conn *c, mproc_msg *m, mproc_match_fn match, void *arg,
               int timeout_ms);

/* ------------------------------------------------------------------ */
/* Zero-copy: build the payload in the channel, read it where it lies  */
/* ------------------------------------------------------------------ */

/*
 * mproc_send_reserve waits up to timeout_ms for room for size bytes (at
 * most the channel's max_payload: -EMSGSIZE over it) and sets *buf to
 * contiguous shared memory to fill, lent to the caller until
 * mproc_send_commit or mproc_send_cancel. On a queue other senders wait
 * while a reservation is open (it holds the send lock: commit or cancel
 * from the thread that reserved, and soon); on a slot other writers go
 * on, into the other buffers. On a queue the record
 * must fit without crossing the ring's end, so a size whose record is
 * over half the ring's capacity is -EMSGSIZE there.
 * Returns 0, -EAGAIN (no room, MPROC_NOWAIT), -ETIMEDOUT, -EMSGSIZE,
 * -EBUSY (this handle has a reservation open), -ESHUTDOWN, -EPROTO, or
 * -EINVAL (NULL, bad timeout, a pipe or a bus).
 * Ownership: *buf points into the channel's mapping; write at most size
 * bytes there and nothing after commit or cancel.
 * Crash: a process killed holding a reservation drops it; other senders
 * go on, nothing partial is delivered.
 * Fork: a reservation belongs to the process (and thread) that made it.
 */
int mproc_send_reserve(mproc_conn *c, size_t size, void **buf, int timeout_ms);

/*
 * mproc_send_commit publishes the first size bytes of the open
 * reservation (size not above it) as one message with request and
 * recipient (checked as for mproc_send), sender getpid(). Never blocks.
 * Returns 0, or -EINVAL (no reservation open on this handle, a bad request
 * code or recipient, size above the reservation: the reservation stays
 * open) or -EPROTO.
 */
int mproc_send_commit(mproc_conn *c, int32_t request, pid_t recipient,
                      size_t size);

/* mproc_send_cancel drops the open reservation: nothing is sent. Returns
 * 0 or -EINVAL (none open). */
int mproc_send_cancel(mproc_conn *c);

/*
 * mproc_recv_borrow is mproc_recv without the copy: it takes the oldest
 * message match accepts, sets m's fields, and points m->data at the
 * payload where it lies in shared memory (m->capacity is ignored), lent
 * until mproc_recv_release. On a queue the message is hidden from other
 * receivers meanwhile. On a slot the value's buffer is pinned and never
 * overwritten while borrowed; other readers still read it, and writers
 * are not held up. On a queue, a message sent by copy whose payload crosses the
 * ring's end is copied once into the handle's own buffer instead (the
 * same lending rules); reserved messages never cross it.
 * Returns 0, -EAGAIN, -ETIMEDOUT, -EBUSY (this handle has a borrow open),
 * -ESHUTDOWN, -EPROTO, -EDEADLK or -EINVAL (a pipe or a bus).
 * Crash: a process killed holding a borrow has the message delivered
 * again, whole (at-least-once), as for a taker killed mid-copy.
 */
int mproc_recv_borrow(mproc_conn *c, mproc_msg *m, mproc_match_fn match,
                      void *arg, int timeout_ms);

/*
 * mproc_recv_release ends the borrow m came from and finishes the message
 * as a receive would (it counts for join; on a MANUAL_DONE queue it is
 * taken, and mproc_task_done finishes it). m->data must not be used after.
 * Returns 0, -EINVAL (no borrow open on this handle, or m is not it) or
 * -EPROTO.
 */
int mproc_recv_release(mproc_conn *c, mproc_msg *m);

/*
 * mproc_for_me is a ready-made match: the message's recipient is the
 * calling process (getpid()) or MPROC_ANYONE. arg is ignored.
 * It takes MPROC_ANYONE mail too: a parent that waits for its workers'
 * FINISHED results with it can take back its own DO tasks. Wait for a
 * request code with mproc_match_request instead (or for a code addressed
 * to you with mproc_match_request_for_me).
 */
int mproc_for_me(const mproc_msg *m, void *arg);

/*
 * mproc_match_request is a ready-made match for one request code: arg
 * points at an int32_t code, and the message is taken when its request is
 * that code. A NULL arg matches nothing. Borrows arg during the call.
 *   int32_t want = MPROC_FINISHED;
 *   mproc_recv(q, &m, mproc_match_request, &want, 1000);
 */
int mproc_match_request(const mproc_msg *m, void *arg);

/*
 * mproc_match_request_for_me: the request is *(const int32_t *)arg and
 * mproc_for_me accepts the message (addressed to the caller or to
 * MPROC_ANYONE). A NULL arg matches nothing.
 */
int mproc_match_request_for_me(const mproc_msg *m, void *arg);

/*
 * mproc_close closes this process's copy of c and releases what it holds.
 * Never blocks for long: a pipe end flushes a frame left half-written by a
 * timed send for at most 1 second. The shared queue lives on while any
 * process still has it mapped; closing a copy in one process changes
 * nothing for the others. Returns 0, or -EINVAL (NULL, or already closed).
 */
int mproc_close(mproc_conn *c);

/*
 * mproc_fd returns a descriptor for poll(), epoll or libuv's uv_poll, to
 * wait for c together with other descriptors. Read nothing from it and
 * close nothing: it stays owned by c (mproc_close closes it).
 * On a pipe end: readable when a receive may make progress (a message, or
 * the peer gone). A receive reads ahead, so messages it already took in,
 * and messages held back by a rejecting predicate, are not visible to
 * poll: after poll reports c readable, call mproc_recv with MPROC_NOWAIT
 * until it returns -EAGAIN before polling again.
 * On a queue (anonymous or named): readable when something was sent (or
 * the queue shut down) since this handle's last receive began, and from
 * the start; any receive on the handle clears it. So: poll, receive with
 * MPROC_NOWAIT until -EAGAIN, poll again. No message is missed, and
 * nothing spins while every queued message is for someone else. Senders
 * pay one load while nobody polls, and one system call per wake-up of an
 * idle poller. The descriptor belongs to the calling process: a child
 * that inherited the handle gets its own from mproc_fd. At most 64
 * handles of one queue have a descriptor at once (-EMFILE after that).
 * Pollers and senders must share a network namespace (the wake-ups are
 * datagrams on abstract-namespace sockets).
 * Returns the descriptor, or -EINVAL (NULL or closed), -EMFILE, -EPROTO,
 * or the errno of socket()/bind().
 */
int mproc_fd(mproc_conn *c);

/*
 * mproc_queue_empty returns 1 when no message is queued, 0 when some are,
 * or a negative errno (-EINVAL, -EPROTO, or -ETIMEDOUT when the receive
 * lock stayed held for a second, by a stopped process). Blocks only for
 * the queue's receive lock (and repairs it after a dead owner); for a
 * look that never waits, use mproc_queue_stats.
 */
int mproc_queue_empty(mproc_conn *q);

/*
 * mproc_queue_join waits until every message put has been finished (taken,
 * or marked with mproc_task_done under MPROC_QUEUE_MANUAL_DONE), up to
 * timeout_ms. Orphans (messages addressed to processes that no longer
 * exist) are purged while waiting, so a join never waits on a dead
 * recipient's mail. The search for orphans holds no lock (receivers go
 * on meanwhile); only dropping the ones found takes the receive lock,
 * briefly. With MPROC_NOWAIT, join waits for nothing but that lock (at
 * most 20 ms, as every NOWAIT call).
 * Returns 0, -EAGAIN (MPROC_NOWAIT and tasks remain), -ETIMEDOUT,
 * -ESHUTDOWN, -EINVAL or -EPROTO.
 */
int mproc_queue_join(mproc_conn *q, int timeout_ms);

/*
 * mproc_queue_shutdown marks the queue shut down: every process blocked in
 * send, receive or join on it wakes at once with -ESHUTDOWN, and every later
 * send, receive or join returns -ESHUTDOWN. Queued messages stay (stats
 * still sees them). Returns 0, -EINVAL or -EPROTO.
 */
int mproc_queue_shutdown(mproc_conn *q);

/*
 * mproc_task_done marks one taken task finished; only for queues opened
 * with MPROC_QUEUE_MANUAL_DONE. It finishes one of the caller's own taken
 * tasks, or, if it has none, one taken by another live process (as
 * multiprocessing.JoinableQueue allows). Tasks are counted per taker: a
 * taker killed (or exiting) before mproc_task_done stops counting, so its
 * tasks no longer hold mproc_queue_join (they are not delivered again).
 * Returns 0, -EINVAL (wrong queue kind, or more task_done calls than tasks
 * taken) or -EPROTO.
 */
int mproc_task_done(mproc_conn *q);

/*
 * mproc_queue_stats fills *st with a consistent snapshot: counts that agree
 * with each other as of one state the queue was in. It is read without
 * holding up senders and receivers (each side's words are read under its
 * own sequence count; only when a side keeps changing does stats take the
 * two locks, for the time of a copy), so a progress bar may call it in a
 * loop. orphans is counted by a walk of the queued messages that takes no
 * lock, with one /proc look-up per recipient process.
 * Returns 0, -EINVAL or -EPROTO (corrupt state). Borrows st.
 */
int mproc_queue_stats(mproc_conn *q, mproc_stats *st);

/*
 * mproc_queue_purge drops the queued messages addressed to processes that
 * no longer exist (exited, reaped or not, or whose pid now belongs to a
 * process started after the message was sent); each dropped message
 * finishes its task. The search holds no lock; each batch of orphans found
 * is dropped under the receive lock, checked again there. Returns the
 * number dropped, or -EINVAL or -EPROTO.
 */
int mproc_queue_purge(mproc_conn *q);

/*
 * mproc_strerror describes an error returned by mproc (negative errno
 * values; positive values are accepted too): mproc's own wording for the
 * codes its calls document, the system's strerror text for every other
 * errno (-EBADF, -ECHILD, -EMFILE, a failed fork's -EAGAIN...), "unknown
 * error" only for a value that is no errno. Returns a static string,
 * never NULL. Thread-safe.
 */
const char *mproc_strerror(int err);

/*
 * mproc_err_name gives the symbol of an errno ("EAGAIN" for -EAGAIN or
 * EAGAIN; "OK" for 0; "UNKNOWN" for a value that is no errno), as
 * libuv's uv_err_name. Static string, never NULL. Thread-safe.
 */
const char *mproc_err_name(int err);

/* mproc_version returns the library version (MPROC_VERSION_STRING of the
 * header it was built with, "0.1.0"). Static string, never NULL. */
const char *mproc_version(void);

/*
 * mproc_request_name names a request code for logs: "DO", "FINISHED",
 * "DIE", "USER" for codes >= MPROC_USER, "UNKNOWN" otherwise. Static
 * string, never NULL.
 */
const char *mproc_request_name(int32_t request);

/* ------------------------------------------------------------------ */
/* Bus                                                                 */
/* ------------------------------------------------------------------ */

/*
 * A bus delivers each message to every subscribed reader (pysyncq's
 * queue): a ring of records with a cursor per reader. mproc_send appends
 * one message that every process subscribed at that moment will see, in
 * the order sent (one total order for all writers: they take turns on a
 * send lock). mproc_recv returns the next message at the caller's cursor
 * that match accepts; those it rejects are passed for this reader only
 * (screening by sender or request). Subscriptions are per process (pid
 * and start time): mproc_recv in a process that has not subscribed, a
 * forked child of a subscriber included, is -ENOTCONN. A new subscriber
 * starts at the next message sent.
 * A message is freed when every live reader has passed it. Full ring,
 * default: the writer waits (up to its timeout: -EAGAIN, -ETIMEDOUT) for
 * the slowest live reader; a reader found dead while a writer would wait
 * on it is unsubscribed, so writers never stall on a dead reader. With
 * MPROC_BUS_OVERWRITE writers never wait: the oldest messages make room
 * whatever the readers, and a reader that was overrun gets -EOVERFLOW
 * once from its next receive, its cursor moved to the oldest message
 * still there and the number it lost in its stats (lost); a copy that
 * was overrun while it was made is thrown away, never returned torn.
 * Crash safety as for the queue: every change to the shared words is
 * journaled, and the next writer after one killed holding the lock
 * repairs; a killed reader holds nothing (its cursor is taken back).
 * A predicate on a bus runs without any lock (each reader moves only its
 * own cursor), but must not call mproc on the same bus (-EDEADLK).
 * mproc_fd on a bus: readable when a message was sent since this handle's
 * last receive began (and from the start), as for a queue.
 * On a bus, mproc_send and mproc_send_msg return 0, -EINVAL, -EMSGSIZE,
 * -EAGAIN, -ETIMEDOUT (full, default mode), -EDEADLK or -EPROTO; mproc_recv
 * returns 0, -EAGAIN, -ETIMEDOUT, -ENOTCONN, -EOVERFLOW, -EMSGSIZE (m->size
 * set; the message stays at the cursor), -EDEADLK or -EPROTO.
 * Closing a handle unsubscribes the calling process.
 */

#define MPROC_BUS_DEFAULT_CAPACITY (1u << 20)
#define MPROC_BUS_DEFAULT_MAX_PAYLOAD (64u << 10)
#define MPROC_BUS_DEFAULT_MAX_READERS 64
#define MPROC_BUS_MAX_CAPACITY (1u << 30)

/* Bus flag (mproc_bus_opts.flags): writers never wait, overrun readers
 * get -EOVERFLOW. */
#define MPROC_BUS_OVERWRITE (1u << 0)

/* mproc_bus_opts configures a bus. Zeroed fields mean the defaults. */
typedef struct mproc_bus_opts {
	size_t capacity;      /* bytes of ring; 0 = 1 MiB; at most 1 GiB */
	uint32_t max_payload; /* 0 = 64 KiB */
	uint32_t max_readers; /* 0 = 64; at most 4096 */
	uint32_t flags;       /* MPROC_BUS_OVERWRITE, MPROC_UNLINK_ON_LAST_CLOSE */
	mode_t mode;          /* named: permission bits (& 0777); 0 = 0600 */
} mproc_bus_opts;

/* mproc_bus_counts is filled by mproc_bus_stats. */
typedef struct mproc_bus_counts {
	uint64_t sent;       /* messages ever sent */
	uint64_t queued;     /* messages still in the ring */
	uint64_t bytes;      /* ring bytes they take (headers included) */
	uint64_t capacity;
	uint64_t max_payload;
	uint64_t recoveries; /* the send lock recovered from a dead owner */
	uint64_t reclaimed;  /* dead readers' subscriptions taken back */
	uint32_t readers;    /* live subscribers */
	uint32_t max_readers;
	int32_t subscribed;  /* 1: the caller is a subscriber; the rest is its */
	uint32_t reserved;
	uint64_t lag;        /* messages sent that the caller has not passed */
	uint64_t lost;       /* messages the caller lost to overwrites */
	uint64_t received;   /* messages the caller received */
} mproc_bus_counts;

/*
 * mproc_bus_open creates a bus in an anonymous MAP_SHARED mapping; call it
 * before fork(). opts may be NULL. Nobody is subscribed yet.
 * Returns 0, -EINVAL (NULL bus, unknown flag, MPROC_UNLINK_ON_LAST_CLOSE,
 * capacity too small for one message of max_payload or over
 * MPROC_BUS_MAX_CAPACITY, max_readers over 4096) or -ENOMEM.
 * Ownership: the caller owns *bus; opts is borrowed.
 * Fork: children use the inherited handle (and subscribe themselves).
 */
int mproc_bus_open(mproc_conn **bus, const mproc_bus_opts *opts);

/*
 * mproc_bus_create makes a new named bus (see "Named objects"), as
 * mproc_bus_open would, with opts->mode and MPROC_UNLINK_ON_LAST_CLOSE
 * honoured. Returns 0, -EINVAL, -EEXIST, -EPERM, -EACCES, -ENOSPC, -ENOMEM
 * or another errno of the file system.
 */
int mproc_bus_create(mproc_conn **bus, const char *name,
                     const mproc_bus_opts *opts);

/*
 * mproc_bus_attach opens the named bus another program created. Returns
 * 0, -EINVAL, -ENOENT, -EACCES, -EPROTO (not a valid mproc bus) or
 * -EPERM. The caller owns *bus and closes it.
 */
int mproc_bus_attach(mproc_conn **bus, const char *name);

/*
 * mproc_bus_subscribe makes the calling process a reader from the next
 * message sent on (a second call changes nothing). Waits at most 1 s for
 * the send lock. Returns 0, -EUSERS (max_readers live subscribers
 * already), -EINVAL, -ETIMEDOUT or -EPROTO.
 */
int mproc_bus_subscribe(mproc_conn *bus);

/*
 * mproc_bus_unsubscribe ends the calling process's subscription: what it
 * has not read is freed for it. Returns 0, -ENOTCONN (not subscribed),
 * -EINVAL or -EPROTO. Never blocks.
 */
int mproc_bus_unsubscribe(mproc_conn *bus);

/*
 * mproc_bus_wait_readers waits until at least n live processes are
 * subscribed, up to timeout_ms. Returns 0, -EAGAIN (MPROC_NOWAIT),
 * -ETIMEDOUT, -EINVAL or -EPROTO.
 */
int mproc_bus_wait_readers(mproc_conn *bus, unsigned n, int timeout_ms);

/*
 * mproc_bus_stats fills *st without a lock: the bus's counts, and the
 * caller's own (lag, lost, received) if it is subscribed. One /proc
 * look-up per subscriber (readers counts live ones). Returns 0, -EINVAL,
 * -ETIMEDOUT (the send lock stayed busy for 1 s) or -EPROTO.
 */
int mproc_bus_stats(mproc_conn *bus, mproc_bus_counts *st);

/* ------------------------------------------------------------------ */
/* Slot                                                                */
/* ------------------------------------------------------------------ */

/*
 * A slot holds the latest value (request, sender, recipient, payload):
 * mproc_send replaces it, and mproc_recv on a handle returns the newest
 * value that handle has not returned yet, or waits up to its timeout for a
 * newer one; values replaced in between are never seen by that handle
 * (coalescing). Each handle remembers the version it last returned (a
 * fresh handle, opened or attached, has returned none: its first receive
 * takes the current value if there is one); a child starts where its
 * parent's copy stood at fork(). A value that the predicate rejects counts
 * as seen. An event is a slot whose values have size 0: mproc_send
 * signals, mproc_recv waits for the next signal, and every listener sees
 * each signal it did not miss by coalescing once.
 * A reader never sees a torn value and a value being copied out is never
 * overwritten under its reader: the slot keeps several buffers (8, or 3
 * for a max_payload over 64 MiB), a reader pins the one it copies, and a
 * writer fills one nobody pins, then publishes it with one atomic step. A
 * writer killed half way leaves the previous value whole; a reader killed
 * half way pins nothing (pins of dead processes count as free).
 * mproc_send never waits for readers, except when every spare buffer is
 * being copied out at that instant (more readers copying distinct older
 * values than there are buffers): then it waits for one of those copies
 * to end, up to its timeout (mproc_send: without limit).
 * On a slot, mproc_send and mproc_send_msg return 0, -EINVAL, -EMSGSIZE
 * (over max_payload), -EAGAIN or -ETIMEDOUT (mproc_send_msg only: the
 * spare buffers stayed busy), -EDEADLK or -EPROTO; mproc_recv returns 0,
 * -EAGAIN, -ETIMEDOUT, -EMSGSIZE (m->size set; the value stays unseen),
 * -EUSERS (256 handles of one slot receive at once), -EDEADLK or -EPROTO.
 * A predicate on a slot runs while its buffer is pinned: it sees
 * m->data in shared memory, and must not call mproc on the same slot.
 * mproc_fd on a slot: readable when a value was published since this
 * handle's last receive began (and from the start), as for a queue.
 * Memory: max_payload times the buffer count, touched only as buffers are
 * used (two while no reader lags).
 */

#define MPROC_SLOT_DEFAULT_MAX_PAYLOAD (64u << 10)
#define MPROC_SLOT_MAX_PAYLOAD (1u << 30)

/* mproc_slot_opts configures a slot. Zeroed fields mean the defaults. */
typedef struct mproc_slot_opts {
	uint32_t max_payload; /* largest value; 0 = 64 KiB; up to 1 GiB */
	uint32_t flags;       /* MPROC_UNLINK_ON_LAST_CLOSE (named) */
	mode_t mode;          /* named: permission bits (& 0777); 0 = 0600 */
} mproc_slot_opts;

/* mproc_slot_counts is filled by mproc_slot_stats. */
typedef struct mproc_slot_counts {
	uint64_t version;    /* values published so far (0: none yet) */
	uint64_t seen;       /* the version this handle last returned or
	                        rejected (0: none) */
	uint64_t recoveries; /* buffers taken back from writers that died
	                        while filling them */
	uint32_t size;       /* payload bytes of the current value */
	uint32_t max_payload;
	uint32_t buffers;
	uint32_t readers;         /* live handles that have received */
	uint32_t readers_waiting; /* of them, asleep in mproc_recv */
	uint32_t reserved;
} mproc_slot_counts;

/*
 * mproc_slot_open creates a slot in an anonymous MAP_SHARED mapping; call
 * it before fork(). opts may be NULL for the defaults. It holds no value
 * until the first send. Never blocks.
 * Returns 0, -EINVAL (NULL slot, unknown flag, MPROC_UNLINK_ON_LAST_CLOSE,
 * max_payload over MPROC_SLOT_MAX_PAYLOAD) or -ENOMEM.
 * Ownership: the caller owns *slot; opts is borrowed.
 * Fork: children use the inherited handle; each process closes its copy.
 */
int mproc_slot_open(mproc_conn **slot, const mproc_slot_opts *opts);

/*
 * mproc_slot_create makes a new named slot (see "Named objects"), as
 * mproc_slot_open would, with opts->mode and MPROC_UNLINK_ON_LAST_CLOSE
 * honoured. Returns 0, -EINVAL, -EEXIST, -EPERM, -EACCES, -ENOSPC,
 * -ENOMEM or another errno of the file system.
 * Ownership: the caller owns *slot; opts and name are borrowed.
 */
int mproc_slot_create(mproc_conn **slot, const char *name,
                      const mproc_slot_opts *opts);

/*
 * mproc_slot_attach opens the named slot another program created. Its
 * first receive takes the current value, if any. Returns 0, -EINVAL,
 * -ENOENT, -EACCES, -EPROTO (not a valid mproc slot) or -EPERM.
 * Ownership: the caller owns *slot and closes it.
 */
int mproc_slot_attach(mproc_conn **slot, const char *name);

/*
 * mproc_slot_stats fills *st without a lock and without waiting (one
 * /proc look-up per receiving process, for readers). Returns 0, -EINVAL
 * (not a slot, NULL) or -EPROTO. Borrows st.
 */
int mproc_slot_stats(mproc_conn *slot, mproc_slot_counts *st);

/* ------------------------------------------------------------------ */
/* The worker pool                                                     */
/* ------------------------------------------------------------------ */

typedef struct mproc_pool mproc_pool;

/*
 * mproc_task_fn is run by a worker for each DO task. task borrows the
 * task's payload (task->data, task->size); result->data points at a buffer
 * of result->capacity bytes (the pool's max_payload) that fn fills, setting
 * result->size. fn's return value is the task's status (0 usually means
 * success; it must not be MPROC_TASK_WORKER_DIED). fn may set
 * result->request to report a code other than MPROC_FINISHED. If fn sets
 * result->size above result->capacity, the result is sent with size 0 and
 * status -EMSGSIZE.
 */
typedef int (*mproc_task_fn)(const mproc_msg *task, mproc_msg *result,
                             void *arg);

/* Pool flags (mproc_pool_opts.flags). */
#define MPROC_POOL_FAIL_ON_DEATH (1u << 0) /* report, do not redeliver */

/* Status of a task whose worker died while running it (and that is not
 * dispatched again). */
#define MPROC_TASK_WORKER_DIED INT32_MIN

typedef struct mproc_pool_opts {
	int workers;            /* 0: the number of online CPUs; at most 4096 */
	size_t queue_capacity;  /* bytes of each queue's ring; 0: 1 MiB, or more
	                           so that four records of max_payload fit */
	uint32_t max_payload;   /* task and result payload limit; 0: 64 KiB */
	int max_restarts;       /* replacement workers allowed; 0: 16 * workers;
	                           negative: none */
	int max_attempts;       /* dispatches of one task before it is reported
	                           failed; 0: 3 */
	uint32_t flags;         /* MPROC_POOL_FAIL_ON_DEATH */
} mproc_pool_opts;

/* A task's result, filled by mproc_pool_result. A task that no worker ever
 * ran (no worker left, or still queued at stop) is reported with worker 0
 * and attempts 0. A WORKER_DIED result has request MPROC_FINISHED and
 * size 0. */
typedef struct mproc_result {
	uint64_t task_id; /* as returned by mproc_pool_submit */
	pid_t worker;     /* pid of the worker that ran it (or died on it) */
	int32_t status;   /* fn's return, or MPROC_TASK_WORKER_DIED */
	int32_t request;  /* MPROC_FINISHED unless fn set another code */
	uint32_t attempts; /* dispatches it took */
	uint32_t size;    /* result payload length */
	void *data;       /* caller's buffer */
	uint32_t capacity; /* bytes available at data */
} mproc_result;

/* How a worker ended, filled by mproc_pool_stop. */
typedef struct mproc_worker_exit {
	pid_t pid;
	int status;       /* as from waitpid(); -1 when unknown */
	int how;          /* MPROC_EXIT_DIE, _TERM, _KILL, _CRASHED, _UNKNOWN */
} mproc_worker_exit;

#define MPROC_EXIT_DIE     1 /* took its DIE pill and exited */
#define MPROC_EXIT_TERM    2 /* ended by SIGTERM from stop */
#define MPROC_EXIT_KILL    3 /* ended by SIGKILL from stop */
#define MPROC_EXIT_CRASHED 4 /* died on its own while the pool ran */
#define MPROC_EXIT_UNKNOWN 5 /* reaped by someone else (SIGCHLD ignored, a
                                wait for any child): status -1, nothing
                                known of how it ended */

/* finished and failed are counted when the pool takes a result from its
 * queue (in mproc_pool_result or mproc_pool_join), so they can lag behind
 * results still queued. fork_failures counts every fork of a worker (at a
 * restart) that failed; the pool tries again at its next calls. */
typedef struct mproc_pool_counts {
	uint64_t submitted;
	uint64_t finished;    /* results with a status from fn */
	uint64_t failed;      /* results with MPROC_TASK_WORKER_DIED */
	uint64_t redelivered; /* dispatches after a worker death */
	uint64_t restarts;    /* replacement workers started */
	uint64_t pending;     /* submitted, result not yet collected */
	int workers_alive;
	uint64_t fork_failures; /* forks of a worker that failed */
} mproc_pool_counts;

/*
 * mproc_pool_start forks the workers, each running fn(task, result, arg)
 * for every DO task until it takes a DIE pill. opts may be NULL.
 * Returns 0, -EINVAL (NULL pool or fn, negative workers, bad options),
 * -ENOMEM or -EAGAIN (fork failed).
 * Ownership: the caller owns *pool until mproc_pool_stop + mproc_pool_free;
 * arg is borrowed by the workers (each has its own copy after fork).
 * Fork: only the process that called mproc_pool_start drives the pool:
 * every pool call (mproc_pool_free included) from any other process, a
 * worker or a child forked later, returns -EINVAL and touches nothing;
 * such a process's copy of the pool goes with it.
 * Workers are tracked by pidfd (Linux >= 5.3; one descriptor per worker,
 * close-on-exec, closed in the workers): a worker reaped by someone else
 * (SIGCHLD set to SIG_IGN, a waitpid(-1) elsewhere) is still seen to end,
 * with status -1 and how MPROC_EXIT_UNKNOWN, and a later process reusing
 * its pid is never taken for it nor signalled. Where pidfd_open fails
 * (older kernels, no descriptor left) a worker is tracked by pid
 * (waitpid(pid, WNOHANG), kill): a worker reaped elsewhere still ends
 * with status unknown, but if its pid is reused by another child of the
 * program before the pool looks, the pool takes that child for it. The
 * pool reaps only its own workers. Workers reset SIGTERM to its default
 * and unblock it, and _exit(70) when their parent dies. The pool is driven
 * by the parent's calls from one thread at a time.
 */
int mproc_pool_start(mproc_pool **pool, mproc_task_fn fn, void *arg,
                     const mproc_pool_opts *opts);

/*
 * mproc_pool_submit copies a DO task (data, size bytes) into the task queue
 * and stores its id in *task_id (may be NULL). Waits for room up to
 * timeout_ms (backpressure). Returns 0, -EAGAIN (no room with
 * MPROC_NOWAIT; or, whatever the timeout, no worker is alive and forking
 * one failed: try again later), -ETIMEDOUT, -ECHILD (no worker is alive
 * and none may be restarted: nobody could run it), -EINVAL (also: called
 * from a process other than the one that started the pool), -EMSGSIZE
 * (over max_payload), -ENOMEM (the table of tasks in flight could not
 * grow) or -ESHUTDOWN (pool stopped). On any error no task was taken.
 * Results not collected fill the result queue and stall the workers; a
 * caller that submits with MPROC_FOREVER must collect results in between
 * (or size the queues for the whole batch). The same holds for
 * mproc_pool_stop with MPROC_FOREVER.
 */
int mproc_pool_submit(mproc_pool *pool, const void *data, size_t size,
                      uint64_t *task_id, int timeout_ms);

/*
 * mproc_pool_result takes the next result, waiting up to timeout_ms, and
 * copies its payload into r->data (r->capacity bytes). Restarts dead
 * workers and redelivers (or fails) their tasks while it waits. Returns 0,
 * -EAGAIN (none ready with MPROC_NOWAIT; or, whatever the timeout, none
 * ready and no worker is alive and forking one failed: the tasks stay
 * queued and run once a later call manages to fork one), -ETIMEDOUT,
 * -EMSGSIZE (r->size set, result kept), -EINVAL, or -ENOENT when no
 * submitted task is still without a collected result.
 */
int mproc_pool_result(mproc_pool *pool, mproc_result *r, int timeout_ms);

/*
 * mproc_pool_join waits until every submitted task has a result ready or
 * collected, up to timeout_ms. Returns 0, -EAGAIN (not all ready with
 * MPROC_NOWAIT; or, whatever the timeout, no worker is alive and forking
 * one failed, as for mproc_pool_result), -ETIMEDOUT or -EINVAL.
 */
int mproc_pool_join(mproc_pool *pool, int timeout_ms);

/*
 * mproc_pool_stop sends one DIE pill per worker (and one to each worker it
 * forks meanwhile to replace one that crashed); workers finish the tasks
 * queued before the pills and exit. It returns as soon as every worker is
 * reaped. After timeout_ms, workers still alive get SIGTERM, and 1 second
 * later SIGKILL. Tasks nobody ran get MPROC_TASK_WORKER_DIED results.
 * Results not yet collected stay collectable. If report is not NULL, up
 * to n entries are filled with how each worker ended. Calling stop twice
 * returns 0 and does nothing the second time.
 * Returns how many workers ended over the pool's life (crashed ones
 * included; may be more than n), 0 when called again, or -EINVAL.
 */
int mproc_pool_stop(mproc_pool *pool, int timeout_ms,
                    mproc_worker_exit *report, size_t n);

/* mproc_pool_stats fills *st (after a look for workers that ended).
 * Returns 0 or -EINVAL. */
int mproc_pool_stats(mproc_pool *pool, mproc_pool_counts *st);

/* mproc_pool_worker_pids copies up to n live worker pids into pids and
 * returns how many there are (may be more than n), or -EINVAL. */
int mproc_pool_worker_pids(mproc_pool *pool, pid_t *pids, size_t n);

/*
 * mproc_pool_free stops the pool if it is running (as mproc_pool_stop with
 * a 1 second timeout) and frees it. Returns 0 or -EINVAL (also from a
 * process other than the one that started the pool, which frees nothing).
 */
int mproc_pool_free(mproc_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_H */
