"""mproc.Pipe: multiprocessing.Pipe on mproc's pipe.

``Pipe(duplex=True)`` returns two :class:`Connection` objects with the
whole API of :class:`multiprocessing.connection.Connection`: ``send``,
``recv``, ``poll``, ``send_bytes``, ``recv_bytes``, ``recv_bytes_into``,
``fileno``, ``close``, ``closed``, ``readable``, ``writable`` and the
context manager; messages of any size multiprocessing's pipe takes
(those over 16 MiB travel in chunks). A Connection pickles to a process
started with spawn or forkserver as its descriptor, as multiprocessing's
does. Plus the four-field API (``send_msg``, ``recv_msg``).
"""

import ctypes
import errno
import os
import pickle
import select
import struct

from . import _lib, _codec
from ._lib import lib, check, error, PICKLE, NDARRAY, BYTES, \
    LARGE, CHUNK, PIPE_MAX_PAYLOAD
from ._channel import Channel, Message

__all__ = ["Pipe", "Connection", "BufferTooShort"]

from multiprocessing import BufferTooShort  # the same class users catch

_EPIPE = -errno.EPIPE
_EMSGSIZE = -errno.EMSGSIZE
_ETIMEDOUT = -errno.ETIMEDOUT
_EAGAIN = -errno.EAGAIN
_loads = pickle.loads
_LARGE_HDR = struct.Struct("<iQ")  # inner request, total size
_CHUNK = PIPE_MAX_PAYLOAD


def Pipe(duplex=True):
    """Return a pair ``(conn1, conn2)`` of :class:`Connection` objects
    joined by an mproc pipe. With ``duplex=False``, conn1 only receives
    and conn2 only sends, as multiprocessing's."""
    a = ctypes.c_void_p()
    b = ctypes.c_void_p()
    check(lib.mproc_pipe_open(ctypes.byref(a), ctypes.byref(b)))
    c1 = Connection._wrap(a, True, duplex)
    c2 = Connection._wrap(b, duplex, True)
    return c1, c2


class Connection(Channel):
    """One end of an mproc :func:`Pipe`."""

    _kind = "pipe"

    @classmethod
    def _wrap(cls, handle, readable, writable):
        self = cls.__new__(cls)
        self._setup(handle)
        self._readable = readable
        self._writable = writable
        self._stash = None  # a message poll() took in
        self._peek_size = None
        self._ep = None  # fileno()'s epoll set, per process
        self._ep_pid = 0
        return self

    def __repr__(self):
        return "<mproc.Connection %s>" % ("closed" if self._closed else
                                          "fd %d" % self._fd_or(-1))

    def _fd_or(self, dflt):
        try:
            return lib.mproc_fd(self._hv)
        except Exception:
            return dflt

    def fileno(self):
        """A descriptor that polls readable when :meth:`recv` would not
        wait (a message, or the other end gone), for :mod:`select`,
        :mod:`selectors` and :func:`multiprocessing.connection.wait`.

        The pipe end reads ahead, so its socket alone would not show
        messages already read in; the descriptor is an epoll set of the
        socket and an event this end raises while it holds such messages
        (made on first use, one per process, owned by the connection)."""
        h = self._handle()
        if self._ep is None or self._ep_pid != os.getpid():
            if self._ep is not None:  # a forked child's copies: its own
                self._ep_close()
            sock = check(lib.mproc_fd(h))
            ep = select.epoll()
            ev = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            ep.register(sock, select.EPOLLIN)
            ep.register(ev, select.EPOLLIN)
            self._ep, self._ev, self._ep_pid = ep, ev, os.getpid()
            self._ev_set = False
            self._sync_ready()
        return self._ep.fileno()

    def _ep_close(self):
        ep, self._ep = self._ep, None
        try:
            ep.close()
            os.close(self._ev)
        except OSError:
            pass

    def _sync_ready(self):
        """Raise or lower fileno()'s event: is a message (or the end of
        the stream) already read in?"""
        if self._ep is None or self._ep_pid != os.getpid():
            return
        ready = self._stash is not None or self._peek(0) is not None
        if ready and not self._ev_set:
            os.eventfd_write(self._ev, 1)
            self._ev_set = True
        elif not ready and self._ev_set:
            try:
                os.eventfd_read(self._ev)
            except BlockingIOError:
                pass
            self._ev_set = False

    @property
    def readable(self):
        """True if this end may receive."""
        return self._readable

    @property
    def writable(self):
        """True if this end may send."""
        return self._writable

    def _closed_error(self):
        return OSError("handle is closed")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    # -- pickling (spawn / forkserver): the descriptor -----------------------

    def __reduce__(self):
        from multiprocessing import reduction
        fd = check(lib.mproc_fd(self._handle()))
        return _rebuild, (reduction.DupFd(fd), self._readable,
                          self._writable)

    # -- sending ----------------------------------------------------------------

    def _send(self, request, data, off=0, n=None):
        """Send n bytes of data (bytes-like) from off with request, in
        chunks when over the pipe's 16 MiB frame: straight from the
        object's memory, no copy on the Python side."""
        self._check_writable()
        if isinstance(data, bytes) and off == 0 and \
                (n is None or n == len(data)) and len(data) <= _CHUNK:
            rc = self._send_bytes(request, 0, data, None)
            if rc == _EPIPE:
                raise BrokenPipeError(errno.EPIPE, "the other end is closed")
            check(rc)
            return
        if isinstance(data, bytes):
            keep = data
            base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        else:
            mv = memoryview(data)
            if mv.readonly or not mv.c_contiguous:
                keep = bytes(mv.cast("B") if mv.c_contiguous else
                             mv.tobytes())
                base = ctypes.cast(ctypes.c_char_p(keep),
                                   ctypes.c_void_p).value
            else:
                mv = mv.cast("B")
                keep = (ctypes.c_char * len(mv)).from_buffer(mv) \
                    if len(mv) else None
                base = ctypes.addressof(keep) if len(mv) else 0
        if n is None:
            n = len(keep) if isinstance(keep, bytes) else len(memoryview(
                data).cast("B")) - off
        with self._slock:  # the frames of one message stay together
            if n <= _CHUNK:
                rc = self._frame(request, base + off, n)
            else:
                hdr = _LARGE_HDR.pack(request, n)
                rc = self._frame(LARGE, ctypes.cast(
                    ctypes.c_char_p(hdr), ctypes.c_void_p).value, len(hdr))
                done = 0
                while rc == 0 and done < n:
                    k = min(_CHUNK, n - done)
                    rc = self._frame(CHUNK, base + off + done, k)
                    done += k
        del keep
        if rc == _EPIPE:
            raise BrokenPipeError(errno.EPIPE, "the other end is closed")
        check(rc)

    def _frame(self, request, addr, n):
        m = _lib.Msg(request, 0, 0, n, addr if n else None, 0)
        ref = ctypes.byref(m)
        h = self._hv
        return self._wait(lambda t: lib.mproc_send_msg(h, ref, t), None)

    def send(self, obj):
        """Send a picklable object (numpy arrays travel raw)."""
        self._handle()
        self._check_writable()
        if _codec.is_ndarray(obj):
            self._send(NDARRAY, _codec.nd_encode(obj))
        else:
            self._send(PICKLE, _codec.encode(obj)[1])

    def send_bytes(self, buf, offset=0, size=None):
        """Send bytes from a bytes-like *buf* (from *offset*, *size*
        bytes), to be received whole by recv_bytes()."""
        self._handle()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = len(m)
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send(BYTES, buf if isinstance(buf, bytes) else m, offset, size)

    # -- receiving --------------------------------------------------------------

    def _take(self, timeout):
        try:
            return self._take_one(timeout)
        finally:
            if self._ep is not None:
                self._sync_ready()

    def _take_one(self, timeout, got=None):
        """(request, payload bytes-like, fresh) of the next message, chunks
        joined; EOFError when the peer is gone and all was read. got: its
        first frame, already received."""
        self._check_readable()
        if got is not None:
            pass
        elif self._stash is not None:
            got, self._stash = self._stash, None
        else:
            try:
                got = self._recv_into(None, None, timeout, _raw)
            except Error_EPIPE:
                raise EOFError from None
        req, data, fresh = got
        if req == LARGE:
            inner, total = _LARGE_HDR.unpack_from(data, 0)
            out = bytearray(total)
            base = ctypes.addressof((ctypes.c_char * total).from_buffer(out)) \
                if total else 0
            off = 0
            m = _lib.Msg()
            while off < total:
                m.data = base + off
                m.capacity = total - off
                rc = self._wait(lambda t: lib.mproc_recv(
                    self._hv, ctypes.byref(m), None, None, t), None)
                if rc == _EPIPE:
                    raise EOFError("the other end closed mid-message")
                check(rc)
                if m.request != CHUNK:
                    raise error(-errno.EPROTO)
                off += m.size
            return inner, memoryview(out), True
        return req, data, fresh

    def recv(self):
        """Receive an object sent with send() (EOFError when the other end
        is closed and nothing is left)."""
        self._handle()
        self._check_readable()
        if self._stash is None and self._ep is None:
            # The common case: unpickled where it was received.
            try:
                got = self._recv_into(None, None, None, _pipe_obj)
            except Error_EPIPE:
                raise EOFError from None
            if type(got) is not tuple or len(got) != 4 or got[0] is not _AGAIN:
                return got
            req, data, fresh = self._take_one(None, got[1:])
        else:
            req, data, fresh = self._take(None)
        if req == NDARRAY:
            return _codec.nd_decode(memoryview(data), fresh)
        if req == PICKLE or req == BYTES:
            import pickle
            return pickle.loads(data)
        return Message(req, 0, 0, bytes(data))

    def recv_bytes(self, maxlength=None):
        """Receive one message's bytes (sent with send_bytes). OSError
        when it is longer than *maxlength* (the message stays)."""
        self._handle()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        if maxlength is not None and self._stash is None:
            self.poll(None)
            size = self._peek_size
            if self._stash is None and size is not None and size > maxlength:
                raise OSError("bad message length")
        req, data, fresh = self._take(None)
        if maxlength is not None and len(data) > maxlength:
            self._stash = (req, data, fresh)
            raise OSError("bad message length")
        return bytes(data)

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message's bytes into the writable buffer *buf* at
        *offset*; returns their number. BufferTooShort (with the whole
        message as its argument) when it does not fit."""
        self._handle()
        self._check_readable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        if offset < 0:
            raise ValueError("negative offset")
        if offset > len(m):
            raise ValueError("offset too large")
        req, data, fresh = self._take(None)
        n = len(data)
        if offset + n > len(m):
            raise BufferTooShort(bytes(data))
        m[offset:offset + n] = data
        return n

    def poll(self, timeout=0.0):
        """True if there is something to receive (or the other end is
        gone), waiting up to *timeout* seconds (0: do not wait, None: for
        ever)."""
        self._handle()
        self._check_readable()
        if self._stash is not None:
            return True
        return self._peek(timeout) is not None

    def _peek(self, timeout):
        """Wait up to timeout for a message without taking it: its size,
        -1 for the end of the stream, 0 for an empty message (taken, and
        kept for the next receive), None when nothing came."""
        if self._stash is not None:
            return 0
        self._peek_size = None
        h = self._hv
        m = _lib.Msg()
        m.data = None
        m.capacity = 0
        ref = ctypes.byref(m)
        rc = self._wait(lambda t: lib.mproc_recv(h, ref, None, None, t),
                        timeout)
        if rc == _EMSGSIZE:
            self._peek_size = m.size
            return m.size  # it stayed where it was
        if rc == 0:  # an empty message, taken: keep it for the next recv
            self._stash = (m.request, memoryview(b""), True)
            self._stash_meta = (m.sender, m.recipient)
            return 0
        if rc == _EPIPE:
            return -1
        if rc == _ETIMEDOUT or rc == _EAGAIN:
            return None
        raise error(rc)

    def recv_msg(self, match=None, timeout=None, for_me=False):
        """The four-field receive (see :meth:`mproc.Queue.recv_msg`)."""
        self._check_readable()
        if self._stash is not None and match is None and not for_me:
            req, data, _ = self._stash
            self._stash = None
            sender, recipient = getattr(self, "_stash_meta", (0, 0))
            return Message(req, sender, recipient, bytes(data))
        try:
            return Channel.recv_msg(self, match, timeout, for_me)
        except Error_EPIPE:
            raise EOFError from None
        finally:
            if self._ep is not None:
                self._sync_ready()

    def close(self):
        """Close this end (in this process)."""
        if self._ep is not None and self._ep_pid == os.getpid():
            self._ep_close()
        Channel.close(self)


class Error_EPIPE(_lib.Error):
    """Internal: the peer is gone."""


_AGAIN = object()


def _pipe_obj(request, sender, recipient, view, fresh):
    # recv()'s decoder, run on the receive buffer: objects as they are
    # sent, anything else handed back to recv (the first frame kept).
    if request == PICKLE or request == BYTES:
        return _loads(view)
    if request == NDARRAY:
        return _codec.nd_decode(view, fresh)
    return (_AGAIN, request, view if fresh else memoryview(bytes(view)),
            True)


def _raw(request, sender, recipient, view, fresh):
    return request, (view if fresh else bytes(view)), True


def _recv_error(self, rc):
    if rc == _EPIPE:
        raise Error_EPIPE(errno.EPIPE, "the other end is closed")
    Channel._recv_error(self, rc)


Connection._recv_error = _recv_error


def _rebuild(dupfd, readable, writable):
    fd = dupfd.detach()
    h = ctypes.c_void_p()
    rc = lib.mproc_pipe_adopt(ctypes.byref(h), fd)
    if rc < 0:
        import os
        os.close(fd)
        check(rc)
    return Connection._wrap(h, readable, writable)
