"""mproc.Pool: a process pool for Python functions over mproc's C pool.

The surface is ``multiprocessing.Pool``'s: ``apply``, ``apply_async``,
``map``, ``map_async``, ``imap``, ``imap_unordered``, ``starmap``,
``starmap_async``, ``close``, ``terminate``, ``join`` and the context
manager (leaving the ``with`` block calls ``terminate``, as
multiprocessing does), with ``AsyncResult`` objects that have ``get``,
``wait``, ``ready`` and ``successful``. What differs, and why:

Every task gets exactly one result.
    The workers are forked by the C pool (``mproc_pool_start``), which
    tracks them by pidfd, restarts a worker that dies and gives its task to
    another (up to ``max_attempts`` dispatches of one task, ``max_restarts``
    replacement workers for the pool). A task that cannot be finished that
    way (its worker died on every attempt, the pool ran out of workers, or
    ``terminate`` ended it) raises :class:`WorkerDied` from ``get``; it
    never hangs. With ``fail_on_death=True`` a task whose worker dies is
    not run again: it fails at once. ``multiprocessing.Pool`` hangs for
    ever in ``get`` when a worker is SIGKILLed.

No threads.
    ``multiprocessing.Pool`` runs three helper threads. This pool runs
    none: tasks are handed to the C pool, and results taken from it, when
    the caller calls into the pool (``get``, ``wait``, ``ready``, ``map``,
    iterating an ``imap``, ``join``, ``apply_async``, ...). Between calls
    the workers keep working on what has been handed over, as far as the
    C pool's queues hold (``queue_capacity`` bytes of tasks, the same of
    results), but a worker that dies is replaced, and its task given to
    another, only at the next call. Several threads may use one pool; one
    of them at a time drives it, for all of them. ``callback`` and
    ``error_callback`` run in whichever thread collected the result,
    before ``get`` on that result returns (in multiprocessing they run in
    the result-handler thread). An exception from a callback is logged
    (logger ``mproc.pool``), not raised.

The GIL is held while the C pool runs.
    The C pool forks (at start, and to replace a dead worker inside any
    later call), and a forked child runs Python code (the worker) at once,
    so the calls are made with the GIL held (``ctypes.PyDLL``): a child
    forked while another thread held the GIL would deadlock. The worker
    re-initialises the interpreter as ``os.fork`` does, before it runs any
    Python code (``PyOS_AfterFork_Child``: the GIL, threading, the import
    lock, ``os.register_at_fork`` after-in-child hooks; the before-fork
    hooks do not run). So that other threads and Ctrl-C are not locked
    out, the pool waits in slices of at most 50 ms (10 ms when the process
    has other threads); other threads run between slices. A program whose
    other threads must run smoothly while it waits for results should wait
    with short timeouts or keep the pool in a process of its own.

Signals.
    A KeyboardInterrupt (or any exception a signal handler raises) gets
    out of a wait within a slice, and the pool stays usable: a result the
    C pool handed over as the signal came is kept for its task. Python
    can raise such an exception between any two steps, though, so one
    that lands while a task is being handed over or a result given to
    its job may, rarely, lose that task's result: after catching one,
    wait with timeouts, or terminate the pool.

Fork, and threads.
    Workers are forked copies of the parent as it was at the fork (the
    start of the pool, or the replacement of a dead worker), as with
    multiprocessing's "fork" start method; spawn and forkserver do not
    apply. Tasks and results are pickled: the function must be importable
    by name in the worker (a module-level function; one defined in
    ``__main__`` must exist before the worker was forked) and arguments
    and results must pickle. In a process with other threads, the usual
    fork caveats hold: only the thread that called the pool goes on in the
    worker; a lock some other thread held at the fork stays held in the
    worker for ever (the interpreter's own locks, logging's and the
    threading module's are re-initialised; locks of your own and of C
    libraries are not), and so does any lock the calling thread held
    around the pool call. Do not hold a lock that task functions take
    while calling the pool, and create the pool before starting threads
    when you can. Standard output and error are flushed before every
    call that may fork, and by the worker after every task, so buffered
    output is neither lost nor printed twice.

Lazy ``imap``.
    ``imap`` and ``imap_unordered`` read their iterable as results are
    consumed, keeping at most ``8 * processes`` chunks (at least 32)
    handed over and not yet consumed, so an endless iterable works;
    ``join`` hands over everything left. ``map``, ``map_async`` and
    ``starmap`` read the whole iterable at once, as multiprocessing does.

Limits.
    A pickled task or result is at most ``max_payload`` bytes (default
    1 MiB); a larger task fails with ``ValueError`` from ``get``, a
    larger result with a ``ValueError`` raised in the worker. So that a
    chunk's results fit, ``map``'s default chunksize is multiprocessing's
    (the length over four times the workers, rounded up) but at most 1000
    items; pass ``chunksize`` (or a larger ``max_payload``) for items whose
    results are big or small. There is no ``maxtasksperchild`` and no
    ``context``.

Ending.
    ``close`` then ``join`` waits for every task and stops the workers
    (``join`` takes a timeout, which multiprocessing's does not);
    ``terminate`` (and leaving a ``with`` block) ends them at once with
    SIGTERM, and SIGKILL a second later for one that ignores it. A pool
    still running at interpreter exit is terminated (atexit), and one
    garbage-collected while running warns (``ResourceWarning``) and is
    terminated. Workers whose parent dies without any of that exit by
    themselves after their current task.

Errors: ``get`` raises the task's own exception (its remote traceback as
``__cause__``, a :class:`RemoteTraceback`), :class:`WorkerDied`, or
:class:`TimeoutError` (both ``multiprocessing.TimeoutError`` and the
built-in ``TimeoutError``, so either ``except`` catches it); failing
native calls raise ``mproc.Error``.
"""

import atexit
import builtins
import collections
import ctypes
import errno
import itertools
import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
import warnings
import weakref

__all__ = ["Pool", "AsyncResult", "MapResult", "IMapIterator",
           "WorkerDied", "RemoteTraceback", "TimeoutError", "PoolStats"]

# ---------------------------------------------------------------------------
# The library
# ---------------------------------------------------------------------------

from . import _lib

_Msg = _lib.Msg                       # struct mproc_msg
_NOWAIT = 0
_WORKER_DIED = -2**31                 # MPROC_TASK_WORKER_DIED (INT32_MIN)
_FAIL_ON_DEATH = 1                    # MPROC_POOL_FAIL_ON_DEATH
_DEFAULT_MAX_PAYLOAD = 1 << 20
_MIN_MAX_PAYLOAD = 1024

_pid_t = ctypes.c_int


class _Result(ctypes.Structure):
    """struct mproc_result."""
    _fields_ = [("task_id", ctypes.c_uint64), ("worker", _pid_t),
                ("status", ctypes.c_int32), ("request", ctypes.c_int32),
                ("attempts", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("data", ctypes.c_void_p), ("capacity", ctypes.c_uint32)]


class _Opts(ctypes.Structure):
    """struct mproc_pool_opts."""
    _fields_ = [("workers", ctypes.c_int),
                ("queue_capacity", ctypes.c_size_t),
                ("max_payload", ctypes.c_uint32),
                ("max_restarts", ctypes.c_int),
                ("max_attempts", ctypes.c_int),
                ("flags", ctypes.c_uint32)]


class _Counts(ctypes.Structure):
    """struct mproc_pool_counts."""
    _fields_ = [("submitted", ctypes.c_uint64), ("finished", ctypes.c_uint64),
                ("failed", ctypes.c_uint64), ("redelivered", ctypes.c_uint64),
                ("restarts", ctypes.c_uint64), ("pending", ctypes.c_uint64),
                ("workers_alive", ctypes.c_int),
                ("fork_failures", ctypes.c_uint64)]


_c = None  # the bound functions, loaded by the first Pool


def _bind():
    """Bind the pool calls, with the GIL held during each (PyDLL: the
    library mproc._lib loaded, bound a second time)."""
    global _c
    if _c is not None:
        return _c
    lib = ctypes.PyDLL(_lib.LIBRARY_PATH)
    vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    protos = {
        "mproc_pool_start": [ctypes.POINTER(vp), vp, vp,
                             ctypes.POINTER(_Opts)],
        "mproc_pool_submit": [vp, ctypes.c_char_p, sz,
                              ctypes.POINTER(ctypes.c_uint64), i],
        "mproc_pool_result": [vp, ctypes.POINTER(_Result), i],
        "mproc_pool_stop": [vp, i, vp, sz],
        "mproc_pool_stats": [vp, ctypes.POINTER(_Counts)],
        "mproc_pool_worker_pids": [vp, ctypes.POINTER(_pid_t), sz],
        "mproc_pool_free": [vp],
    }
    fns = {}
    for name, args in protos.items():
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = ctypes.c_int
        fns[name[len("mproc_pool_"):]] = f
    after_fork = ctypes.pythonapi.PyOS_AfterFork_Child
    after_fork.argtypes = []
    after_fork.restype = None
    fns["after_fork"] = after_fork
    _c = collections.namedtuple("_Calls", fns)(**fns)
    return _c


def _flush_std():
    """Flush stdout and stderr (before a fork, and after a task)."""
    for f in (sys.stdout, sys.stderr):
        if f is not None:
            try:
                f.flush()
            except Exception:
                pass


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    """A task got no result from its function: its worker died.

    Raised by ``get`` (and from ``map``, iteration of ``imap``) for a task
    whose worker died while running it on each of ``max_attempts``
    dispatches (at the first death with ``fail_on_death=True``), or that no
    worker ran: the pool had no worker left (``max_restarts`` used up) or
    was terminated first. A subclass of ``RuntimeError`` (as
    ``concurrent.futures``' ``BrokenProcessPool``), not of ``mproc.Error``:
    no system call failed.

    Attributes: ``pid``, the worker that died running it last (0 when no
    worker ran it); ``attempts``, how many times it was dispatched.
    """

    def __init__(self, message, pid=0, attempts=0):
        super().__init__(message)
        self.pid = pid
        self.attempts = attempts


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text.

    Set as ``__cause__`` of the exception that ``get`` re-raises, so the
    worker's traceback is printed under it.
    """

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class TimeoutError(multiprocessing.TimeoutError, builtins.TimeoutError):
    """``get`` or ``next`` timed out: the result is not ready yet.

    Both ``multiprocessing.TimeoutError`` (what ``multiprocessing.Pool``
    raises) and the built-in ``TimeoutError``.
    """


PoolStats = collections.namedtuple(
    "PoolStats", "submitted finished failed redelivered restarts pending "
    "workers_alive fork_failures")
PoolStats.__doc__ = """The C pool's counters (Pool.stats()).

They count C tasks: one per apply_async, one per chunk of a map. submitted;
finished (results from the function, exceptions included); failed
(WorkerDied results); redelivered (dispatches after a worker death);
restarts (replacement workers started); pending (submitted, result not
taken yet); workers_alive; fork_failures."""


# ---------------------------------------------------------------------------
# The worker's side: runs in the forked child, called by the C worker loop
# ---------------------------------------------------------------------------

_APPLY, _MAP, _STARMAP = 0, 1, 2
# Result statuses (the task function's return value in C terms).
_OK, _RAISED, _LOST = 0, 1, 2


class _Worker:
    """What a worker needs: the task function for C, the initializer.

    A worker is forked inside a pool call, with the GIL held by the calling
    thread, and its interpreter must be fixed up (PyOS_AfterFork_Child, as
    os.fork does) before it runs any bytecode: the eval loop would first
    honour a GIL drop request another thread of the parent made, and wait
    for ever for a thread the child does not have. So the callback's first
    argument has a type of its own, a c_void_p subclass whose __init__ is
    PyOS_AfterFork_Child itself (a foreign function, not a descriptor:
    called with no arguments, returns None): ctypes constructs that
    argument, in C, before it calls run. The first run in each worker
    deletes that __init__ (in the worker's copy of the class only; workers
    forked later get the parent's, which keeps it)."""

    def __init__(self, initializer, initargs):
        self.initializer = initializer
        self.initargs = initargs
        self.started = False
        self.init_error = None
        self.task_type = type("_TaskPtr", (ctypes.c_void_p,),
                              {"__init__": _c.after_fork})
        self.proto = ctypes.CFUNCTYPE(ctypes.c_int, self.task_type,
                                      ctypes.c_void_p, ctypes.c_void_p)

    def _start(self):
        """First task in this worker (the interpreter is fixed up)."""
        self.started = True
        del self.task_type.__init__
        if self.initializer is not None:
            try:
                self.initializer(*self.initargs)
            except Exception as e:
                e.add_note(f"raised by the pool's initializer in worker "
                           f"{os.getpid()}")
                self.init_error = e

    def run(self, task_ptr, result_addr, _arg):
        """mproc_task_fn: run one task, write its pickled result."""
        try:
            res = _Msg.from_address(result_addr)
            try:
                if not self.started:
                    self._start()
                if self.init_error is not None:
                    return _send_error(res, self.init_error)
                task = _Msg.from_address(task_ptr.value)
                mode, func, a, kw = pickle.loads(
                    ctypes.string_at(task.data, task.size))
                if mode == _APPLY:
                    value = func(*a, **kw)
                elif mode == _MAP:
                    value = list(map(func, a))
                else:
                    value = list(itertools.starmap(func, a))
            except BaseException as e:
                return _send_error(res, e)
            try:
                data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            except BaseException as e:
                e.add_note("while pickling the task's result")
                return _send_error(res, e)
            if len(data) > res.capacity:
                return _send_error(res, ValueError(
                    f"the task's result is {len(data)} bytes pickled, over "
                    f"the pool's max_payload of {res.capacity} (raise "
                    f"max_payload, or give map a smaller chunksize)"))
            ctypes.memmove(res.data, data, len(data))
            res.size = len(data)
            return _OK
        except BaseException:
            return _LOST
        finally:
            _flush_std()


def _send_error(res, exc):
    """Write exc (pickled, with its traceback text) as the result. A
    SystemExit or KeyboardInterrupt of the task is sent as a RuntimeError:
    it is the task's failure, not a reason for the parent to exit."""
    import traceback
    tb = "".join(traceback.format_exception(exc))
    tb = '\n"""\n' + tb + '"""'
    if not isinstance(exc, Exception):
        exc = RuntimeError(f"the task raised {exc!r}")
    try:
        data = pickle.dumps((exc, tb), pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # what does not come back must not be sent
    except BaseException:
        data = pickle.dumps((RuntimeError(
            f"{type(exc).__qualname__}: {exc} (the exception could not be "
            f"pickled)"), tb), pickle.HIGHEST_PROTOCOL)
    if len(data) > res.capacity:
        data = pickle.dumps((RuntimeError(
            f"{type(exc).__qualname__}: {str(exc)[:200]}"), ""),
            pickle.HIGHEST_PROTOCOL)
        if len(data) > res.capacity:
            res.size = 0
            return _LOST
    ctypes.memmove(res.data, data, len(data))
    res.size = len(data)
    return _RAISED


def _decode(status, data):
    """(ok, value) from a result's status and payload."""
    try:
        if status == _OK:
            return True, pickle.loads(data)
        if status == _RAISED:
            exc, tb = pickle.loads(data)
            if tb:
                exc.__cause__ = RemoteTraceback(tb)
            return False, exc
    except Exception as e:
        err = RuntimeError(f"the task's result could not be unpickled: "
                           f"{e!r}")
        err.__cause__ = e
        return False, err
    if status == _LOST:
        return False, RuntimeError("the task failed in the worker and its "
                                   "error could not be sent back")
    return False, RuntimeError(f"the task ended with status {status}")


def _died(pid, attempts):
    """The WorkerDied for a C result with MPROC_TASK_WORKER_DIED."""
    if attempts == 0:
        return WorkerDied("no worker ran the task: the pool stopped or had "
                          "no worker left", 0, 0)
    return WorkerDied(f"worker {pid} died running the task (dispatched "
                      f"{attempts} time{'s' if attempts != 1 else ''})",
                      pid, attempts)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


class _Job:
    """A batch of tasks fed to the C pool, and their results.

    The pool calls _next_task to get the next task to hand over (None:
    nothing more now), _set with each task's result (under the pool's
    lock) and _fire once the job is complete (outside it)."""

    def __init__(self, pool, mode, func, source):
        self._pool = pool
        self._mode = mode
        self._func = func
        self._source = source       # iterator of each task's arguments
        self._nsent = 0             # tasks taken from source
        self._pending = None        # (index, payload) waiting for room
        self._feed_done = False

    def _may_feed(self):
        return True

    def _next_task(self, force):
        """The next (index, pickled task), or None."""
        while not self._feed_done:
            if not force and not self._may_feed():
                return None
            try:
                chunk = next(self._source)
            except StopIteration:
                self._feed_done = True
                self._end_of_input(self._nsent, None)
                return None
            except Exception as e:      # the caller's iterable raised
                self._feed_done = True
                self._end_of_input(self._nsent, e)
                return None
            idx = self._nsent
            self._nsent += 1
            try:
                if self._mode == _APPLY:
                    t = (_APPLY, self._func, chunk[0], chunk[1])
                else:
                    t = (self._mode, self._func, chunk, None)
                return idx, pickle.dumps(t, pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                self._set(idx, False, e)
        return None

    def _end_of_input(self, n, exc):
        pass

    def _abandon(self, exc):
        """The pool ended: what was never handed over fails with exc."""
        self._feed_done = True
        if self._pending is not None:
            self._set(self._pending[0], False, exc)
            self._pending = None


class AsyncResult:
    """The result of ``Pool.apply_async`` (multiprocessing's AsyncResult).

    ``get``, ``wait`` and ``ready`` drive the pool: they take results from
    it (any task's) as they wait. Thread-safe.
    """

    def __init__(self, pool, callback, error_callback):
        self._pool = pool
        self._callback = callback
        self._error_callback = error_callback
        self._complete = False      # value known (set under the pool lock)
        self._ready = False         # callbacks ran: get may return it
        self._success = None
        self._value = None

    def _is_ready(self):
        return self._ready

    def _complete_with(self, ok, value):
        if self._complete:
            return
        self._success, self._value = ok, value
        self._complete = True
        self._pool._due.append(self)

    def _fire(self):
        try:
            cb = self._callback if self._success else self._error_callback
            if cb is not None:
                cb(self._value)
        except Exception:
            import logging
            logging.getLogger("mproc.pool").exception(
                "exception calling callback for %r", self)
        finally:
            self._ready = True

    def ready(self):
        """Whether the result is there (takes what results are ready)."""
        if not self._ready:
            self._pool._wait(self._is_ready, 0)
        return self._ready

    def successful(self):
        """Whether the task returned; ValueError if not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout=None):
        """Wait up to timeout seconds (None: for ever) for the result."""
        if not self._ready:
            self._pool._wait(self._is_ready, timeout)

    def get(self, timeout=None):
        """The task's return value, waiting up to timeout seconds (None:
        for ever). Raises the task's exception, WorkerDied, or
        TimeoutError when the result is not there in time."""
        self.wait(timeout)
        if not self._ready:
            raise TimeoutError("the result is not ready")
        if self._success:
            return self._value
        raise self._value

    def __repr__(self):
        state = ("ready" if self._ready else "pending")
        return f"<{type(self).__name__} {state}>"


class _ApplyJob(_Job, AsyncResult):
    def __init__(self, pool, func, args, kwds, callback, error_callback):
        _Job.__init__(self, pool, _APPLY, func, iter([(args, kwds)]))
        AsyncResult.__init__(self, pool, callback, error_callback)

    def _set(self, idx, ok, value):
        self._complete_with(ok, value)


class MapResult(AsyncResult):
    """The result of ``map_async`` / ``starmap_async``: ``get`` returns the
    list of results in order, or raises the first failure (the task's
    exception or WorkerDied)."""


class _MapJob(_Job, MapResult):
    def __init__(self, pool, mode, func, items, chunksize, callback,
                 error_callback):
        chunks = (items[i:i + chunksize]
                  for i in range(0, len(items), chunksize))
        _Job.__init__(self, pool, mode, func, chunks)
        MapResult.__init__(self, pool, callback, error_callback)
        self._nchunks = -(-len(items) // chunksize) if items else 0
        self._chunks = [None] * self._nchunks
        self._got = [False] * self._nchunks
        self._left = self._nchunks
        if self._nchunks == 0:
            self._feed_done = True
            self._complete_with(True, [])

    def _set(self, idx, ok, value):
        if self._got[idx]:
            return
        self._got[idx] = True
        self._left -= 1
        if self._complete:
            return
        if not ok:
            self._complete_with(False, value)
            return
        self._chunks[idx] = value
        if self._left == 0 and not self._complete:
            self._complete_with(True, list(itertools.chain.from_iterable(
                self._chunks)))
            self._chunks = None


class IMapIterator(_Job):
    """The iterator of ``imap`` (results in order) and ``imap_unordered``
    (results as they come). ``next(timeout)`` waits up to timeout seconds
    (None: for ever) and raises TimeoutError; a failed task raises its
    exception (or WorkerDied) at its place, and iteration may go on after
    it. Reads its iterable lazily (see the module's documentation)."""

    def __init__(self, pool, mode, func, iterable, chunksize, ordered):
        it = iter(iterable)
        if chunksize == 1:
            source = ([x] for x in it)
        else:
            source = iter(lambda: list(itertools.islice(it, chunksize)), [])
        super().__init__(pool, mode, func, source)
        self._ordered = ordered
        self._window = max(32, 8 * pool._processes)
        self._length = None     # chunks in all, once the input is read
        self._done = {}         # index -> (ok, chunk results), ordered
        self._arrived = collections.deque()  # (index, ok, ...), unordered
        self._got = set()       # indexes stored and not consumed yet
        self._next = 0          # chunks consumed
        self._items = collections.deque()   # the current chunk's results

    def _may_feed(self):
        return self._nsent - self._next < self._window

    def _end_of_input(self, n, exc):
        if exc is None:
            self._length = n
        else:
            self._length = n + 1
            self._store(n, False, exc)

    def _abandon(self, exc):
        pending = self._pending
        self._pending = None
        if not self._feed_done or pending is not None:
            self._feed_done = True
            n = pending[0] if pending is not None else self._nsent
            self._length = n + 1
            self._store(n, False, exc)

    def _set(self, idx, ok, value):
        if idx not in self._got:
            self._store(idx, ok, value)

    def _store(self, idx, ok, value):
        self._got.add(idx)
        if self._ordered:
            self._done[idx] = (idx, ok, value)
        else:
            self._arrived.append((idx, ok, value))

    def _available(self):
        return bool(self._items or self._done.get(self._next)
                    or self._arrived or self._ended())

    def _ended(self):
        return self._length is not None and self._next >= self._length

    def _pop(self):
        """(True, item), or (False, None) when nothing is there yet;
        raises a failed task's exception, or StopIteration."""
        with self._pool._lock:
            if self._items:
                return True, self._items.popleft()
            if self._ended():
                raise StopIteration
            if self._ordered:
                entry = self._done.pop(self._next, None)
            else:
                entry = self._arrived.popleft() if self._arrived else None
            if entry is None:
                return False, None
            idx, ok, value = entry
            self._got.discard(idx)
            self._next += 1
            self._pool._pump()  # room in the window: feed on
            if not ok:
                raise value
            self._items.extend(value)
            if self._items:
                return True, self._items.popleft()
            return False, None  # an empty chunk cannot happen; go on

    def next(self, timeout=None):
        """The next result, waiting up to timeout seconds (None: for
        ever); TimeoutError if none comes in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ok, item = self._pop()
            if ok:
                return item
            left = None if deadline is None else deadline - time.monotonic()
            if not self._pool._wait(self._available,
                                    None if left is None else max(left, 0)):
                raise TimeoutError("no result came in time")

    __next__ = next

    def __iter__(self):
        return self


# ---------------------------------------------------------------------------
# The pool
# ---------------------------------------------------------------------------

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_SLICE = 0.05            # longest C wait with the GIL held, seconds
_SLICE_THREADS = 0.01    # the same when the process has other threads
_DRAIN_BATCH = 256       # results taken per step before feeding again
_TERMINATE_DRAIN = 2.0   # seconds terminate waits for the C pool's verdicts
_MAX_DEFAULT_CHUNK = 1000  # map's chunks: a chunk's results fit max_payload

_live = weakref.WeakSet()  # pools to terminate at exit


@atexit.register
def _terminate_at_exit():
    """Terminate the pools still running when the interpreter exits (as
    multiprocessing does): workers busy with a long task would otherwise
    run it to its end before they notice their parent is gone."""
    for pool in list(_live):
        try:
            pool.terminate()
        except Exception:
            pass


class Pool:
    """A pool of forked worker processes running Python functions.

    ``Pool(processes=None, initializer=None, initargs=(), *,
    max_payload=1 MiB, queue_capacity=0, max_restarts=None,
    max_attempts=None, fail_on_death=False)``

    processes: how many workers (None: ``os.cpu_count()``).
    initializer: called as ``initializer(*initargs)`` in each worker
    before its first task (a replacement worker runs it too); if it
    raises, every task of that worker fails with its exception.
    max_payload: the largest pickled task or result, in bytes.
    queue_capacity: bytes of each C queue (0: 1 MiB, or enough for four
    of the largest records).
    max_restarts: replacement workers the pool may start over its life
    (None: 16 per worker; 0: none).
    max_attempts: dispatches of one task before it fails with WorkerDied
    (None: 3).
    fail_on_death: a task whose worker dies fails at once with
    WorkerDied, not run again.

    Methods as ``multiprocessing.Pool``'s; see the module's documentation
    for what differs (no threads, exactly one result per task,
    WorkerDied). Only the process that created the pool may use it.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), *,
                 max_payload=_DEFAULT_MAX_PAYLOAD, queue_capacity=0,
                 max_restarts=None, max_attempts=None, fail_on_death=False):
        self._p = None
        self._state = _TERMINATE
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not _MIN_MAX_PAYLOAD <= max_payload <= (1 << 30):
            raise ValueError(f"max_payload must be in [{_MIN_MAX_PAYLOAD}, "
                             f"2**30]")
        if max_restarts is not None and max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        c = _bind()
        self._c = c
        self._processes = processes
        self._owner = os.getpid()
        self._lock = threading.RLock()
        self._worker = _Worker(initializer, tuple(initargs))
        self._cfunc = self._worker.proto(self._worker.run)  # kept alive
        self._buf = ctypes.create_string_buffer(max_payload)
        self._buf_addr = ctypes.addressof(self._buf)
        self._view = memoryview(self._buf).cast("B")  # unpickled in place
        self._res = _Result()
        self._res.data = self._buf_addr
        self._res.capacity = max_payload
        self._res_ref = ctypes.byref(self._res)
        self._tid = ctypes.c_uint64()
        self._tid_ref = ctypes.byref(self._tid)
        self._tasks = {}                    # task id -> (job, index)
        self._feeders = collections.deque()  # jobs with tasks to hand over
        self._due = collections.deque()     # complete jobs, callbacks due
        self._joining = False
        self._final_stats = None

        opts = _Opts()
        opts.workers = processes
        opts.queue_capacity = queue_capacity
        opts.max_payload = max_payload
        opts.max_restarts = (0 if max_restarts is None else
                             -1 if max_restarts == 0 else max_restarts)
        opts.max_attempts = 0 if max_attempts is None else max_attempts
        opts.flags = _FAIL_ON_DEATH if fail_on_death else 0
        p = ctypes.c_void_p()
        _flush_std()
        _lib.check(c.start(ctypes.byref(p), ctypes.cast(self._cfunc,
                                                    ctypes.c_void_p),
                       None, ctypes.byref(opts)))
        self._p = p
        self._state = _RUN
        _live.add(self)

    # -- submitting ---------------------------------------------------------

    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _add(self, job):
        """Queue job's tasks and hand over what fits now."""
        with self._lock:
            self._check_running()
            self._feeders.append(job)
            self._pump()
            if self._feeders and self._p is not None:
                # No room: results not taken may be stalling the workers.
                self._collect(0)
        self._run_due()
        return job

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker; waits for its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None,
                    error_callback=None):
        """Run func(*args, **kwds) in a worker; returns an AsyncResult.

        callback(value) or error_callback(exception) is called once the
        result is collected, in the thread that collects it."""
        self._check_running()
        return self._add(_ApplyJob(self, func, tuple(args), dict(kwds),
                                   callback, error_callback))

    def _map_async(self, mode, func, iterable, chunksize, callback,
                   error_callback):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), self._processes * 4)
            if extra:
                chunksize += 1
            chunksize = min(chunksize, _MAX_DEFAULT_CHUNK)
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        chunksize = max(chunksize, 1)
        if not isinstance(iterable, (list, tuple)):
            iterable = list(iterable)
        return self._add(_MapJob(self, mode, func, iterable, chunksize,
                                 callback, error_callback))

    def map(self, func, iterable, chunksize=None):
        """[func(x) for x in iterable], run in the workers in chunks."""
        return self._map_async(_MAP, func, iterable, chunksize, None,
                               None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None,
                  error_callback=None):
        """Like map, returning a MapResult."""
        return self._map_async(_MAP, func, iterable, chunksize, callback,
                               error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """[func(*args) for args in iterable], run in the workers."""
        return self._map_async(_STARMAP, func, iterable, chunksize, None,
                               None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        """Like starmap, returning a MapResult."""
        return self._map_async(_STARMAP, func, iterable, chunksize,
                               callback, error_callback)

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        return self._add(IMapIterator(self, _MAP, func, iterable, chunksize,
                                      ordered))

    def imap(self, func, iterable, chunksize=1):
        """An iterator of func(x) for x in iterable, in order."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """An iterator of func(x) for x in iterable, as they finish."""
        return self._imap(func, iterable, chunksize, False)

    # -- driving the C pool (with self._lock held) -------------------------

    def _pump(self):
        """Hand over queued tasks, oldest job first, until the C queue has
        no room. A job that may not feed more now (an imap's window) goes
        to the back, behind the others."""
        feeders = self._feeders
        if not feeders or self._p is None:
            return
        _flush_std()
        force = self._joining
        for _ in range(len(feeders)):
            job = feeders[0]
            while True:
                t = job._pending
                if t is None:
                    t = job._next_task(force)
                    if t is None:
                        break
                    job._pending = t
                if not self._submit(job, *t):
                    return          # no room: the job stays first
                job._pending = None
            if job._feed_done:
                feeders.popleft()
            else:
                feeders.rotate(-1)

    def _submit(self, job, idx, payload):
        """Hand one task to the C pool: False when there is no room."""
        tid = self._tid
        tid.value = 0
        try:
            rc = self._c.submit(self._p, payload, len(payload), self._tid_ref,
                                _NOWAIT)
        finally:
            # Registered even if a signal's exception comes right after.
            if tid.value:
                self._tasks[tid.value] = (job, idx)
        if rc == 0:
            return True
        if rc == -errno.EAGAIN:
            return False
        if rc == -errno.EMSGSIZE:
            job._set(idx, False, ValueError(
                f"the task is {len(payload)} bytes pickled, over the pool's "
                f"max_payload of {self._res.capacity}"))
        elif rc in (-errno.ECHILD, -errno.ESHUTDOWN):
            job._set(idx, False, WorkerDied(
                "no worker can run the task: the pool has no worker left",
                0, 0))
        else:
            self._raise(rc)
        return True

    def _raise(self, rc):
        if rc == -errno.EINVAL and os.getpid() != self._owner:
            raise RuntimeError(f"this pool belongs to process {self._owner}; "
                               f"only that process may use it")
        raise _lib.error(rc)

    def _take(self):
        """Give the result in self._res to its job."""
        r = self._res
        entry = self._tasks.get(r.task_id)
        if entry is not None:
            if r.status == _WORKER_DIED:
                ok, value = False, _died(r.worker, r.attempts)
            else:
                ok, value = _decode(r.status, self._view[:r.size])
            entry[0]._set(entry[1], ok, value)
            del self._tasks[r.task_id]
        r.task_id = 0

    def _collect(self, ms):
        """Feed, then take results, waiting up to ms for the first.

        Returns False when nothing can move now (nothing in flight, or no
        worker and forking one fails), True otherwise."""
        r = self._res
        if r.task_id:               # taken by a call a signal cut short
            self._take()
        if self._p is None:
            return False
        self._pump()
        _flush_std()
        got = 0
        moving = True
        while got < _DRAIN_BATCH:
            rc = None
            try:
                rc = self._c.result(self._p, self._res_ref,
                                    _NOWAIT if got else ms)
            finally:
                if r.task_id and (rc is None or rc == 0):
                    self._take()
            if rc == 0:
                got += 1
                continue
            if rc in (-errno.ETIMEDOUT, -errno.EINTR):
                break
            if rc == -errno.EAGAIN:
                moving = got > 0 or ms == _NOWAIT
                break
            if rc == -errno.ENOENT:
                moving = got > 0
                break
            r.task_id = 0
            self._raise(rc)
        if got:
            self._pump()
        return moving

    def _slice(self):
        return _SLICE if threading.active_count() == 1 else _SLICE_THREADS

    def _wait(self, pred, timeout):
        """Drive the pool until pred() holds or timeout seconds (None: no
        limit) pass; returns pred(). Looks at least once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            if self._due:
                self._run_due()
            if pred():
                return True
            s = self._slice()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 and not first:
                    return False
                s = max(0.0, min(s, left))
            first = False
            if s > 0:
                locked = self._lock.acquire(timeout=s)
            else:
                locked = self._lock.acquire(False)
            if locked:
                try:
                    moving = self._collect(math.ceil(s * 1000))
                finally:
                    self._lock.release()
                if not moving and s > 0:
                    if self._due:
                        continue
                    time.sleep(s)   # nothing can move: don't spin

    def _run_due(self):
        """Run the callbacks of completed jobs (in the calling thread)."""
        while True:
            try:
                job = self._due.popleft()
            except IndexError:
                return
            job._fire()

    def _all_done(self):
        return not self._tasks and not self._feeders

    # -- life ---------------------------------------------------------------

    def close(self):
        """Take no more tasks; join waits for those already given."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self):
        """Stop the workers now (SIGTERM; SIGKILL one second later) and
        free the pool. Every task without a result fails with WorkerDied;
        callbacks of what completes run here."""
        with self._lock:
            self._state = _TERMINATE
            if self._p is None:
                return
            if os.getpid() != self._owner:
                self._p = None  # a forked copy: the pool is not ours
                return
            _flush_std()
            self._c.stop(self._p, 0, None, 0)
            self._finish()
        self._run_due()

    def join(self, timeout=None):
        """Wait for every task to have its result, then stop the workers
        (DIE pills) and free the pool. Only after close or terminate, as
        in multiprocessing (ValueError otherwise). With a timeout (seconds)
        raises TimeoutError if the tasks are not done by then (the pool
        goes on)."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        if self._p is None:
            self._run_due()
            return
        self._joining = True
        if not self._wait(self._all_done, timeout):
            raise TimeoutError("the pool's tasks are not done")
        with self._lock:
            if self._p is None:
                return
            _flush_std()
            self._c.stop(self._p, 1000, None, 0)
            self._finish()
        self._run_due()

    def _finish(self):
        """After stop: take every result left, fail what has none, free."""
        lost = WorkerDied("no worker ran the task: the pool was terminated",
                          0, 0)
        for job in list(self._feeders):
            job._abandon(lost)
        self._feeders.clear()
        deadline = time.monotonic() + _TERMINATE_DRAIN
        while self._tasks and time.monotonic() < deadline:
            if not self._collect(10):
                break
        for job, idx in list(self._tasks.values()):
            job._set(idx, False, lost)
        self._tasks.clear()
        st = _Counts()
        if self._c.stats(self._p, ctypes.byref(st)) == 0:
            self._final_stats = self._stats_from(st)
        p, self._p = self._p, None
        _live.discard(self)
        self._c.free(p)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __del__(self):
        if getattr(self, "_p", None) is None:
            return
        try:
            if os.getpid() != self._owner:
                return  # a copy in a worker or a forked child: not ours
            warnings.warn(f"unclosed running pool {self!r}",
                          ResourceWarning, source=self)
            self.terminate()
        except Exception:
            pass

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between "
                                  "processes or pickled")

    def __repr__(self):
        return (f"<{type(self).__module__}.{type(self).__qualname__} "
                f"state={self._state} pool_size={self._processes}>")

    # -- inspection ---------------------------------------------------------

    @property
    def processes(self):
        """The number of workers."""
        return self._processes

    @staticmethod
    def _stats_from(st):
        return PoolStats(st.submitted, st.finished, st.failed,
                         st.redelivered, st.restarts, st.pending,
                         st.workers_alive, st.fork_failures)

    def stats(self):
        """The C pool's counters as a PoolStats (after the pool is freed:
        the last ones)."""
        with self._lock:
            if self._p is None:
                return self._final_stats
            st = _Counts()
            _flush_std()
            rc = self._c.stats(self._p, ctypes.byref(st))
            if rc < 0:
                self._raise(rc)
            return self._stats_from(st)

    def worker_pids(self):
        """The pids of the live workers (empty once the pool is freed)."""
        with self._lock:
            if self._p is None:
                return []
            n = self._processes
            while True:
                pids = (_pid_t * n)()
                _flush_std()
                rc = self._c.worker_pids(self._p, pids, n)
                if rc < 0:
                    self._raise(rc)
                if rc <= n:
                    return list(pids[:rc])
                n = rc
