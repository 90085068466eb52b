"""mproc.Slot and mproc.Event: the latest value, and a signal every
listener sees once (io_shared's SharedAssign / NumpyShare,
jk_interprocesssync's Event and JSONDataEvent), on mproc's slot.

``slot.put(value)`` replaces the value and never waits for readers;
``slot.get()`` returns the newest value this handle has not returned yet,
or waits for one; values written in between are skipped. numpy arrays
travel raw (written once into a buffer nobody reads, read without
pickling)::

    share = mproc.Slot(name="/cloud")       # or mproc.attach("/cloud")
    share.put(cloud)                        # in one program
    label = mproc.attach("/cloud").get()    # in another

An :class:`Event` is a slot of empty values: ``signal()`` wakes every
``wait()``.
"""

import ctypes
import errno

from . import _lib, _codec, _named
from ._lib import lib, check, NDARRAY
from ._channel import Channel, Empty, Message
from .queues import _decode_obj

__all__ = ["Slot", "Event"]

DEFAULT_MAX_PAYLOAD = 4 << 20


class Slot(Channel):
    """The latest value, shared.

    ``Slot(name=None, *, max_payload=4 MiB, mode=0o600,
    unlink_on_last_close=False)``: *max_payload* bounds one value
    (mproc.Error EMSGSIZE over it); the slot allocates several buffers of
    that size in the objects' directory (/dev/shm), so size it to the
    values you publish."""

    _kind = "slot"
    _default_max = DEFAULT_MAX_PAYLOAD

    def __init__(self, name=None, *, max_payload=None, mode=0o600,
                 unlink_on_last_close=False):
        opts = _lib.SlotOpts()
        opts.max_payload = self._default_max if max_payload is None \
            else max_payload
        self.name, fl = _named.flags_for(name, unlink_on_last_close)
        opts.flags = fl
        opts.mode = mode
        self._setup(_named.create(lib.mproc_slot_create, self.name, opts))
        self._max_payload = opts.max_payload

    @classmethod
    def _attach(cls, name):
        self = cls.__new__(cls)
        self.name = name
        self._setup(_named.attach_handle(lib.mproc_slot_attach, name))
        self._max_payload = self._counts().max_payload
        return self

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, getattr(self, "name", "?"))

    def __getstate__(self):
        self._handle()
        _named.note_pickled(self.name)
        return {"name": self.name, "max_payload": self._max_payload}

    def __setstate__(self, state):
        self.name = state["name"]
        self._max_payload = state["max_payload"]
        self._setup(_named.attach_handle(lib.mproc_slot_attach, self.name))

    def put(self, value):
        """Replace the value (numpy arrays raw, the rest pickled). Never
        waits for readers. mproc.Error EMSGSIZE over max_payload."""
        if _codec.is_ndarray(value):
            rc = self._put_array(value)
        else:
            req, data = _codec.encode(value)
            rc = self._send_bytes(req, 0, data, None)
        if rc == -errno.EMSGSIZE:
            raise _lib.Error(errno.EMSGSIZE, "the value is over this slot's "
                             "max_payload (%d bytes); make it with a larger "
                             "max_payload" % self._max_payload)
        check(rc)

    def _put_array(self, arr):
        head, order = _codec.nd_header(arr)
        size = len(head) + arr.nbytes
        h = self._handle()
        buf = ctypes.c_void_p()
        with self._slock:
            rc = self._wait(lambda t: lib.mproc_send_reserve(
                h, size, ctypes.byref(buf), t), None)
            if rc != 0:
                return rc
            try:
                ctypes.memmove(buf.value, head, len(head))
                _codec.nd_fill(arr, order, buf.value + len(head), arr.nbytes)
            except BaseException:
                lib.mproc_send_cancel(h)
                raise
            return lib.mproc_send_commit(h, NDARRAY, 0, size)

    def get(self, block=True, timeout=None):
        """The newest value this handle has not returned yet, waiting up
        to *timeout* seconds for one if *block* (None: for ever). Raises
        :class:`mproc.Empty` (both queue.Empty and TimeoutError) when
        none came in time."""
        if not block:
            timeout = 0
        return self._recv_into(None, None, timeout, _decode_obj)

    def values(self, timeout=None):
        """Iterate over new values as they come (jk_interprocesssync's
        ``waitG``), until none comes within *timeout* (None: for ever)."""
        while True:
            try:
                yield self.get(True, timeout)
            except Empty:
                return

    # -- as an event (any slot can be one) --

    def signal(self, data=None):
        """Signal every listener (with *data*, pickled, if given)."""
        if data is None:
            check(self._send_bytes(_lib.USER, 0, b"", None))
        else:
            self.put(data)

    set = signal

    def wait(self, timeout=None):
        """Wait for the next signal since this handle last saw one; True
        if it came, False if *timeout* seconds passed first."""
        try:
            got = self._recv_into(None, None, timeout, _decode_obj)
        except Empty:
            return False
        self.data = None if isinstance(got, Message) and \
            not got.data else got
        return True

    data = None

    def waitG(self):
        """Signals as they come, for ever (jk_interprocesssync's
        ``for _ in evt.waitG(): ...``); yields each one's data."""
        while True:
            if self.wait(None):
                yield self.data

    def _counts(self):
        st = _lib.SlotCounts()
        check(lib.mproc_slot_stats(self._handle(), ctypes.byref(st)))
        return st

    def stats(self):
        """The native counters (``mproc_slot_stats``) as a dict."""
        st = self._counts()
        return {n: getattr(st, n) for n, _ in _lib.SlotCounts._fields_
                if n != "reserved"}

    @property
    def version(self):
        """How many values were published so far."""
        return self._counts().version


class Event(Slot):
    """An event: ``signal()`` wakes every listener, each sees it once.

    ``signal(data=None)`` may carry a small object (jk_interprocesssync's
    JSONDataEvent); ``wait(timeout=None)`` returns True when a signal
    came (False when *timeout* ran out), and the data of the last one is
    then :attr:`data`."""

    _default_max = 64 << 10

