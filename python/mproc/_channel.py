"""The base of every mproc object: a native handle, the four-field API.

Internal: :class:`Channel` is subclassed by Queue, Connection, Bus, Slot.
"""

import collections
import ctypes
import errno
import os
import queue as _queue
import threading

from . import _lib
from ._lib import lib, check, error, to_ms, SLICE_MS

__all__ = ["Message", "Channel", "Empty", "Full"]


class Message(collections.namedtuple(
        "Message", ["request", "sender", "recipient", "data"])):
    """One message of the four-field API: ``request`` (an int code:
    :data:`mproc.DO`, :data:`FINISHED`, :data:`DIE` or at least
    :data:`USER`), ``sender`` (the sending pid), ``recipient`` (a pid, or
    :data:`ANYONE`), ``data`` (the payload, ``bytes``: exactly the bytes a
    C program sent or receives)."""
    __slots__ = ()


class Empty(TimeoutError, _queue.Empty):
    """Nothing to receive in the time allowed. It is both
    :class:`queue.Empty` (what multiprocessing's ``get`` raises) and
    :class:`TimeoutError` (what a native wait that ran out raises)."""

    def __init__(self, *args):
        if not args:
            args = (errno.ETIMEDOUT, "nothing to receive in the time allowed")
        super().__init__(*args)


class Full(TimeoutError, _queue.Full):
    """No room in the time allowed: both :class:`queue.Full` and
    :class:`TimeoutError`."""

    def __init__(self, *args):
        if not args:
            args = (errno.ETIMEDOUT, "no room in the time allowed")
        super().__init__(*args)


# Bumped in every child after fork(): objects re-create their Python-side
# locks and buffers (the native handle itself is fork-safe).
_fork_gen = 0


def _after_fork():
    global _fork_gen
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork)

RECV_BUF = 64 << 10
_bare_recv = _lib.bare_recv
_bare_send_msg = _lib.bare_send_msg
_ETIMEDOUT = -errno.ETIMEDOUT
_EAGAIN = -errno.EAGAIN
_EMSGSIZE = -errno.EMSGSIZE


class Channel:
    """What every mproc object shares: the native handle, ``close()``,
    ``fileno()``, ``send_msg()`` and ``recv_msg()``."""

    _kind = "channel"

    def _setup(self, handle):
        """Adopt the native handle (a c_void_p)."""
        self._h = handle
        self._hv = handle.value
        self._closed = False
        self._local()

    def _local(self):
        # Per-process state: locks, the receive buffer and messages.
        self._gen = _fork_gen
        self._rlock = threading.Lock()
        self._slock = threading.Lock()
        self._rbuf = bytearray(RECV_BUF)
        self._rbuf_addr = ctypes.addressof(
            (ctypes.c_char * RECV_BUF).from_buffer(self._rbuf))
        self._rview = memoryview(self._rbuf)
        self._rmsg = _lib.Msg()
        self._rmsg_ref = ctypes.byref(self._rmsg)
        self._rmsg.data = self._rbuf_addr
        self._rmsg.capacity = RECV_BUF
        self._smsg = _lib.SendMsg()
        self._smsg_ref = ctypes.byref(self._smsg)
        # put()'s own message: request PICKLE, sender and recipient 0 set
        # once; per message only size and data change.
        self._pmsg = _lib.SendMsg(_lib.PICKLE, 0, 0, 0, None, 0)
        self._pmsg_ref = ctypes.byref(self._pmsg)
        self._match_exc = None

    # -- state --------------------------------------------------------

    def _closed_error(self):
        return ValueError("%s is closed" % (self._describe(),))

    def _describe(self):
        return "%s %r" % (type(self).__name__, self)

    def _handle(self):
        """The native handle, or raise when closed."""
        if self._closed:
            raise self._closed_error()
        if self._gen != _fork_gen:
            self._local()
        return self._hv

    @property
    def closed(self):
        """True once :meth:`close` was called in this process."""
        return self._closed

    def close(self):
        """Close this process's handle (other processes keep theirs).
        Calling it twice does nothing."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        h, self._hv = self._hv, None
        lib.mproc_close(h)
        name = getattr(self, "name", None)
        if name is not None:
            from . import _named
            _named.released(name)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        """A descriptor that polls readable when something was sent since
        this handle's last receive began (``mproc_fd``): for
        :mod:`select`, :mod:`selectors` and asyncio. Owned by the object."""
        return check(lib.mproc_fd(self._handle()))

    # -- native calls with timeouts ---------------------------------------

    def _wait(self, call, timeout):
        """call(ms) until it does not time out or *timeout* ran out, in
        slices of SLICE_MS so signals are seen; a predicate's exception
        ends the wait."""
        ms = to_ms(timeout)
        if 0 <= ms <= SLICE_MS:
            return call(ms)
        rc = call(SLICE_MS)
        if rc != _ETIMEDOUT or self._match_exc is not None:
            return rc
        if ms < 0:
            while True:
                rc = call(SLICE_MS)
                if rc != _ETIMEDOUT or self._match_exc is not None:
                    return rc
        return _lib.wait(call, timeout - SLICE_MS / 1000.0)

    def _send_bytes(self, request, recipient, data, timeout, sender=0):
        """Send one message (data: bytes). Returns the C return code."""
        if self._closed or self._gen != _fork_gen:
            self._handle()
        h = self._hv
        m = self._smsg
        ref = self._smsg_ref
        ms = to_ms(timeout)
        with self._slock:
            m.request = request
            m.sender = sender
            m.recipient = recipient
            m.size = len(data)
            m.data = data
            rc = lib.mproc_send_msg(h, ref,
                                    ms if 0 <= ms <= SLICE_MS else SLICE_MS)
            if rc == _ETIMEDOUT and (ms < 0 or ms > SLICE_MS):
                rc = self._wait(lambda t: lib.mproc_send_msg(h, ref, t),
                                None if ms < 0 else
                                timeout - SLICE_MS / 1000.0)
        return rc

    def _recv_into(self, match, arg, timeout, decode):
        """Receive one message and return decode(request, sender,
        recipient, view, fresh): view a memoryview of the payload, fresh
        true when its buffer is the caller's to keep (else it is valid
        only during decode). Raises Empty when nothing came in time."""
        if self._closed or self._gen != _fork_gen:
            self._handle()
        h = self._hv
        with self._rlock:
            m = self._rmsg
            ref = self._rmsg_ref
            ms = to_ms(timeout)
            if match is None:
                rc = _bare_recv(self._h, ref, None, None,
                                ms if 0 <= ms <= SLICE_MS else SLICE_MS)
            else:
                rc = lib.mproc_recv(h, ref, match, arg,
                                    ms if 0 <= ms <= SLICE_MS else SLICE_MS)
            if rc == _ETIMEDOUT and (ms < 0 or ms > SLICE_MS) and \
                    self._match_exc is None:
                rc = self._wait(
                    lambda t: lib.mproc_recv(h, ref, match, arg, t),
                    None if ms < 0 else timeout - SLICE_MS / 1000.0)
            if rc == 0:
                exc = self._match_exc
                if exc is None:
                    return decode(m.request, m.sender, m.recipient,
                                  self._rview[:m.size], False)
            if rc == _EMSGSIZE and m.size > m.capacity:
                return self._recv_large(h, match, arg, timeout, decode)
            exc, self._match_exc = self._match_exc, None
            if exc is not None:
                raise exc
            self._recv_error(rc)

    def _recv_large(self, h, match, arg, timeout, decode):
        # Larger than the buffer: one of its own size (the message stayed
        # where it was; another one may come instead).
        m = self._rmsg
        ref = self._rmsg_ref
        try:
            rc = _EMSGSIZE
            while rc == _EMSGSIZE and m.size > m.capacity:
                buf = bytearray(m.size)
                m.data = ctypes.addressof(
                    (ctypes.c_char * m.size).from_buffer(buf))
                m.capacity = m.size
                rc = self._wait(
                    lambda t: lib.mproc_recv(h, ref, match, arg, t), timeout)
            exc, self._match_exc = self._match_exc, None
            if exc is not None:
                raise exc
            if rc != 0:
                self._recv_error(rc)
            return decode(m.request, m.sender, m.recipient,
                          memoryview(buf)[:m.size], True)
        finally:
            m.data = self._rbuf_addr
            m.capacity = RECV_BUF

    def _recv_error(self, rc):
        if rc == _ETIMEDOUT or rc == _EAGAIN:
            raise Empty()
        raise error(rc)

    def _py_match(self, match):
        """A native match function calling match(Message)."""
        def cb(mp, _arg):
            if self._match_exc is not None:
                return 0
            try:
                m = mp.contents
                data = ctypes.string_at(m.data, m.size) if m.size else b""
                return 1 if match(Message(m.request, m.sender, m.recipient,
                                          data)) else 0
            except BaseException as e:  # raised after the native call
                self._match_exc = e
                return 0
        return _lib.MATCH_FN(cb)

    # -- the four-field API ---------------------------------------------

    def send_msg(self, request, data=b"", recipient=0, timeout=None):
        """Send one message: *request* (an int code), *data* (bytes-like,
        sent as is), *recipient* (a pid or :data:`mproc.ANYONE`), waiting
        up to *timeout* seconds for room (None: for ever). Raises
        :class:`Full` (a TimeoutError) when there was no room in time,
        :class:`mproc.Error` for anything else (EINVAL for a bad request
        code or recipient, EMSGSIZE over the channel's limit)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        if not isinstance(request, int) or not isinstance(recipient, int):
            raise TypeError("request and recipient must be int")
        check_sent(self._send_bytes(request, recipient, data, timeout))

    def recv_msg(self, match=None, timeout=None, for_me=False):
        """Receive one message as a :class:`Message`. *match* is called
        with each candidate :class:`Message` and returns true to take it
        (what it rejects stays in place, in order); ``for_me=True`` takes
        only messages addressed to this process or to ANYONE (the C
        ``mproc_for_me``, without calling back into Python). Waits up to
        *timeout* seconds (None: for ever); raises :class:`Empty` (a
        TimeoutError) when nothing came."""
        arg = None
        keep = None
        if match is not None:
            if for_me:
                user = match
                me = os.getpid()

                def match(m, user=user, me=me):  # noqa: E731
                    return m.recipient in (0, me) and user(m)
            keep = self._py_match(match)
            fn = ctypes.cast(keep, ctypes.c_void_p).value
        elif for_me:
            fn = _lib.FOR_ME
        else:
            fn = None
        msg = self._recv_into(fn, arg, timeout, _as_message)
        del keep
        return msg


def check_sent(rc):
    """Raise for a send's return code: :class:`Full` when there was no
    room in time (-ETIMEDOUT, -EAGAIN), mproc.Error for the rest."""
    if rc != 0:
        if rc == _ETIMEDOUT or rc == _EAGAIN:
            raise Full()
        raise error(rc)


def _as_message(request, sender, recipient, view, fresh):
    return Message(request, sender, recipient, view.tobytes())
