"""mproc.Queue and mproc.JoinableQueue: multiprocessing's queues on
mproc's crash-safe shared-memory queue.

Drop-ins for :class:`multiprocessing.Queue` and
:class:`multiprocessing.JoinableQueue`: the same methods, arguments,
exceptions and blocking rules, pickled objects, the fork, spawn and
forkserver start methods. Where they differ, they are better:

- ``put`` returns once the object is in the shared queue (no feeder
  thread, nothing lost when the putting process exits or is killed right
  after), and a process killed at any instruction never wedges the queue
  for the others.
- ``JoinableQueue.join(timeout)`` takes a timeout.
- ``get(match=...)`` takes only an object the predicate accepts; the
  others keep their place, in order.
- numpy arrays travel without pickling.
- the queue is bounded in bytes as well as in items (``capacity``, 4 MiB
  by default, allocated in the objects' directory, /dev/shm): a ``put``
  into a full ring blocks as for ``maxsize``. Objects over
  ``max_payload`` (2 MiB by default) go through a file, so any size
  travels.
"""

import ctypes
import errno
import pickle
import sys

_modules = sys.modules
_dumps = pickle.dumps
_loads = pickle.loads
_HIGHEST = pickle.HIGHEST_PROTOCOL

from . import _lib, _codec, _named
from ._lib import lib, check, PICKLE, NDARRAY, SPILL
from ._channel import Channel, Message, SLICE_MS, check_sent
from . import _channel

_bare_send_msg = _lib.bare_send_msg
_bare_recv = _lib.bare_recv
_bare_task_done = _lib.bare_task_done

__all__ = ["Queue", "JoinableQueue"]

DEFAULT_CAPACITY = 4 << 20
DEFAULT_MAX_PAYLOAD = 2 << 20

_ETIMEDOUT = -errno.ETIMEDOUT
_EAGAIN = -errno.EAGAIN
_EMSGSIZE = -errno.EMSGSIZE
_EINVAL = -errno.EINVAL


def _decode_obj(request, sender, recipient, view, fresh):
    if request == PICKLE:
        return _loads(view)
    if request == NDARRAY or request == SPILL:
        return _codec.decode(request, view, fresh)
    return Message(request, sender, recipient, view.tobytes())


class Queue(Channel):
    """A process-shared FIFO queue of Python objects, as
    :class:`multiprocessing.Queue`.

    ``Queue(maxsize=0)`` holds at most *maxsize* items (0: no item limit).
    Keyword-only extensions: ``name`` creates it under that name
    (``"/jobs"``) so unrelated programs, in C or Python, can
    :func:`mproc.attach` it; ``capacity`` (bytes of shared ring, 4 MiB,
    allocated in /dev/shm when the queue is made) and ``max_payload``
    (largest payload kept in the ring, capacity / 2; larger objects
    travel through a file); ``mode`` (permission bits of a named
    queue, 0o600); ``unlink_on_last_close`` (a named queue's name goes
    with its last holder). ``ctx`` is accepted and ignored, as
    multiprocessing's context passes it.

    A queue pickles (to a process started with spawn or forkserver, or
    through another queue) as its name: the receiving process attaches
    it.
    """

    _kind = "queue"
    _flags = 0

    def __init__(self, maxsize=0, *, ctx=None, name=None, capacity=None,
                 max_payload=None, mode=0o600, unlink_on_last_close=False):
        if maxsize is None or maxsize < 0:
            maxsize = 0
        if maxsize > 0xFFFFFFFF:
            raise ValueError("maxsize over 2**32-1")
        self._maxsize = int(maxsize)
        opts = _lib.QueueOpts()
        opts.capacity = DEFAULT_CAPACITY if capacity is None else capacity
        mp = DEFAULT_MAX_PAYLOAD if max_payload is None else max_payload
        opts.max_payload = min(mp, max(opts.capacity // 2, 1)) \
            if max_payload is None else mp
        opts.max_messages = self._maxsize
        opts.mode = mode
        self.name, fl = _named.flags_for(name, unlink_on_last_close)
        opts.flags = fl | self._flags
        self._mode = mode
        self._setup(_named.create(lib.mproc_queue_create, self.name, opts))
        self._max_payload = opts.max_payload

    @classmethod
    def _attach(cls, name):
        """The queue under name, already open (mproc.attach)."""
        self = cls.__new__(cls)
        self.name = name
        self._setup(_named.attach_handle(lib.mproc_queue_attach, name))
        st = self._stats()
        self._max_payload = st.max_payload
        hdr = _named.queue_header(name)
        self._maxsize = hdr[0] if hdr else 0
        self._mode = 0o600
        return self

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, getattr(self, "name", "?"))

    def _describe(self):
        return "Queue %r" % (self,)

    # -- pickling: by name -------------------------------------------------

    def __getstate__(self):
        self._handle()
        _named.note_pickled(self.name)
        return {"name": self.name, "maxsize": self._maxsize,
                "max_payload": self._max_payload, "mode": self._mode}

    def __setstate__(self, state):
        self.name = state["name"]
        self._maxsize = state["maxsize"]
        self._max_payload = state["max_payload"]
        self._mode = state["mode"]
        self._setup(_named.attach_handle(lib.mproc_queue_attach, self.name))

    # -- put / get -----------------------------------------------------------

    def put(self, obj, block=True, timeout=None):
        """Put obj in the queue, waiting for room up to *timeout* seconds
        if *block* (None: for ever); ``block=False`` never waits.
        Raises :class:`queue.Full` when there was no room in time,
        ValueError if the queue was closed."""
        if self._closed:
            raise self._closed_error()
        np = _modules.get("numpy")
        if np is not None and type(obj) is np.ndarray:
            rc = self._put(obj, timeout if block else 0, 0)
        else:
            data = _dumps(obj, _HIGHEST)
            if len(data) > self._max_payload:
                rc = self._put(obj, timeout if block else 0, 0)
            elif timeout is None or not block:
                # one pickle, one native call, two fields
                if self._closed or self._gen != _channel._fork_gen:
                    self._handle()
                ms = SLICE_MS if block else 0
                with self._slock:
                    m = self._pmsg
                    m.size = len(data)
                    m.data = data
                    rc = _bare_send_msg(self._h, self._pmsg_ref, ms)
                    while rc == _ETIMEDOUT and block:
                        rc = _bare_send_msg(self._h, self._pmsg_ref, ms)
            else:
                rc = self._send_bytes(PICKLE, 0, data,
                                      timeout if block else 0)
        if rc != 0:  # no call on the hot path
            check_sent(rc)

    def _put(self, obj, timeout, recipient):
        if _codec.is_ndarray(obj):
            return self._put_array(obj, timeout, recipient)
        req, data = _codec.encode(obj)
        if len(data) > self._max_payload:
            return self._spill(req, data, timeout, recipient)
        return self._send_bytes(req, recipient, data, timeout)

    def _spill(self, req, payload, timeout, recipient):
        """Send a large object through a file; a failed send leaves no
        file behind."""
        self._handle()
        data = _codec.spill_write(self.name, req, payload, self._mode)
        try:
            rc = self._send_bytes(SPILL, recipient, data, timeout)
        except BaseException:
            _codec.spill_remove(data)
            raise
        if rc != 0:
            _codec.spill_remove(data)
        return rc

    def _put_array(self, arr, timeout, recipient):
        head, order = _codec.nd_header(arr)
        size = len(head) + arr.nbytes
        if size > self._max_payload:
            return self._spill(NDARRAY, arr, timeout, recipient)
        h = self._handle()
        buf = ctypes.c_void_p()
        ref = ctypes.byref(buf)
        with self._slock:
            rc = self._wait(lambda t: lib.mproc_send_reserve(h, size, ref, t),
                            timeout)
            if rc == _EINVAL:  # this kind cannot reserve: one message
                return self._send_bytes(NDARRAY, recipient,
                                        bytes(_codec.nd_encode(arr)), timeout)
            if rc != 0:
                return rc
            try:
                ctypes.memmove(buf.value, head, len(head))
                _codec.nd_fill(arr, order, buf.value + len(head), arr.nbytes)
            except BaseException:
                lib.mproc_send_cancel(h)
                raise
            return lib.mproc_send_commit(h, NDARRAY, recipient, size)

    def put_nowait(self, obj):
        """put(obj, False)."""
        return self.put(obj, False)

    def get(self, block=True, timeout=None, *, match=None):
        """Remove and return the oldest object, waiting up to *timeout*
        seconds if *block* (None: for ever); ``block=False`` never
        waits. Raises :class:`queue.Empty` when nothing came in time,
        ValueError if the queue was closed.

        *match* (an extension): a callable given each candidate object;
        the first one it accepts is taken, the others stay in place, in
        order. A message a C program sent (not an object put from
        Python) is returned as a :class:`mproc.Message`."""
        if match is None and timeout is None:
            # one native call into the standing buffer, unpickled there
            # (pickle.loads ignores the bytes after the pickle)
            if self._closed or self._gen != _channel._fork_gen:
                self._handle()
            ms = SLICE_MS if block else 0
            with self._rlock:
                m = self._rmsg
                rc = _bare_recv(self._h, self._rmsg_ref, None, None, ms)
                while rc == _ETIMEDOUT and block:
                    rc = _bare_recv(self._h, self._rmsg_ref, None, None, ms)
                if rc == 0:
                    if m.request == PICKLE:
                        return _loads(self._rbuf)
                    return _decode_obj(m.request, m.sender, m.recipient,
                                       self._rview[:m.size], False)
            if rc != _EMSGSIZE:
                self._recv_error(rc)
            timeout = None if block else 0  # a large one: the general path
        if not block:
            timeout = 0
        if match is None:
            return self._recv_into(None, None, timeout, _decode_obj)

        def obj_match(m):
            if m.request in (PICKLE, NDARRAY):
                return match(_codec.decode(m.request, memoryview(m.data),
                                           True))
            if m.request == SPILL:  # look at the file, leave it there
                try:
                    inner, buf = _codec.spill_read(memoryview(m.data), False)
                except FileNotFoundError:
                    return False  # taken meanwhile by another process
                return match(_codec.decode(inner, memoryview(buf), True))
            return match(m)
        keep = self._py_match(obj_match)
        fn = ctypes.cast(keep, ctypes.c_void_p).value
        try:
            return self._recv_into(fn, None, timeout, _decode_obj)
        finally:
            del keep

    def get_nowait(self):
        """get(False)."""
        return self.get(False)

    # -- sizes -----------------------------------------------------------------

    def _stats(self):
        st = _lib.Stats()
        check(lib.mproc_queue_stats(self._handle(), ctypes.byref(st)))
        return st

    def qsize(self):
        """The number of items in the queue now (exact for that moment;
        others may change it right after)."""
        return self._stats().queued

    def empty(self):
        """True if the queue holds no item now."""
        return self._stats().queued == 0

    def full(self):
        """True if the queue holds maxsize items now."""
        return self._maxsize > 0 and self._stats().queued >= self._maxsize

    def stats(self):
        """The native counters (``mproc_queue_stats``) as a dict."""
        st = self._stats()
        return {n: getattr(st, n) for n, _ in _lib.Stats._fields_}

    # -- ends ------------------------------------------------------------------

    def close(self):
        """Close this process's handle: no more put or get from it here
        (ValueError). Other processes keep theirs; what was put stays."""
        Channel.close(self)

    def join_thread(self):
        """Nothing to wait for: put() has no feeder thread (every object
        is in the queue when put returns). As in multiprocessing, only
        after close()."""
        if not self._closed:
            raise AssertionError("Queue %r not closed" % (self,))

    def cancel_join_thread(self):
        """Nothing to cancel (no feeder thread); kept for compatibility."""

    def shutdown(self):
        """Shut the queue down for every process: blocked and later puts
        and gets fail (mproc.Error ESHUTDOWN)."""
        check(lib.mproc_queue_shutdown(self._handle()))

    def purge(self):
        """Drop queued messages addressed to processes that no longer
        exist; returns how many."""
        return check(lib.mproc_queue_purge(self._handle()))

    # -- the four-field API: recipient on send ---------------------------------

    def put_to(self, recipient, obj, timeout=None):
        """Put obj addressed to process *recipient* (only it, or a
        predicate-less get in it, takes it)."""
        if self._closed:
            raise self._closed_error()
        check_sent(self._put(obj, timeout, recipient))


class JoinableQueue(Queue):
    """A :class:`Queue` with :meth:`task_done` and :meth:`join`, as
    :class:`multiprocessing.JoinableQueue`: every item put counts until
    some process calls task_done() for it. A process killed before its
    task_done() stops counting (its items no longer hold join())."""

    _flags = _lib.QUEUE_MANUAL_DONE

    def task_done(self):
        """Mark one taken item finished. ValueError when called more
        times than items were taken."""
        if self._closed:
            self._handle()
        rc = _bare_task_done(self._h)
        if rc == 0:
            return
        if rc == _EINVAL:
            raise ValueError("task_done() called too many times")
        check(rc)

    def join(self, timeout=None):
        """Wait until every item put has been taken and marked done.
        *timeout* (an extension; seconds, None: for ever): raises
        :class:`TimeoutError` if items remain when it runs out."""
        h = self._handle()
        rc = self._wait(lambda t: lib.mproc_queue_join(h, t), timeout)
        if rc == _EAGAIN:
            rc = _ETIMEDOUT
        check(rc)
