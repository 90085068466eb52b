"""mproc.Bus: every subscribed reader sees every message (pysyncq's
queue), on mproc's shared-memory bus.

A reader subscribes (:meth:`Bus.subscribe`) and from then on receives
every message sent, in one order for all writers, at its own pace;
messages it screens out with ``match`` are skipped for it only. Iterating
over a bus yields what it receives::

    bus = mproc.Bus(name="/news")          # or mproc.attach("/news")
    bus.subscribe()
    for obj in bus.iter(timeout=1.0):      # until 1 s passes with nothing
        ...

A full ring makes writers wait for the slowest live reader, or, with
``overwrite=True``, never wait: an overrun reader gets :class:`Overrun`
(an mproc.Error, EOVERFLOW) once, then goes on from the oldest message
left. A dead reader holds nothing.
"""

import ctypes
import errno

from . import _lib, _codec, _named
from ._lib import lib, check, error, NDARRAY
from ._channel import Channel, Empty, check_sent
from .queues import _decode_obj

__all__ = ["Bus", "Overrun"]

DEFAULT_CAPACITY = 16 << 20
DEFAULT_MAX_PAYLOAD = 8 << 20


class Overrun(_lib.Error):
    """A bus reader was overrun (overwrite mode): messages were lost."""


class Bus(Channel):
    """A broadcast channel of Python objects (and four-field messages).

    ``Bus(name=None, *, capacity=16 MiB, max_payload=capacity / 2 (8 MiB),
    max_readers=64, overwrite=False, mode=0o600,
    unlink_on_last_close=False)``. The ring is allocated in the objects'
    directory (/dev/shm) when the bus is made; one object must fit in
    max_payload (mproc.Error EMSGSIZE otherwise: make the bus larger).
    Without a name it gets a private one (so it pickles to spawned
    processes, which attach it)."""

    _kind = "bus"

    def __init__(self, name=None, *, capacity=None, max_payload=None,
                 max_readers=None, overwrite=False, mode=0o600,
                 unlink_on_last_close=False):
        opts = _lib.BusOpts()
        opts.capacity = DEFAULT_CAPACITY if capacity is None else capacity
        if max_payload is None:
            max_payload = min(DEFAULT_MAX_PAYLOAD, opts.capacity // 2)
        opts.max_payload = max_payload
        opts.max_readers = max_readers or 0
        self.name, fl = _named.flags_for(name, unlink_on_last_close)
        opts.flags = fl | (_lib.BUS_OVERWRITE if overwrite else 0)
        opts.mode = mode
        self._setup(_named.create(lib.mproc_bus_create, self.name, opts))

    @classmethod
    def _attach(cls, name):
        self = cls.__new__(cls)
        self.name = name
        self._setup(_named.attach_handle(lib.mproc_bus_attach, name))
        return self

    def __repr__(self):
        return "<Bus %s>" % getattr(self, "name", "?")

    def __getstate__(self):
        self._handle()
        _named.note_pickled(self.name)
        return {"name": self.name}

    def __setstate__(self, state):
        self.name = state["name"]
        self._setup(_named.attach_handle(lib.mproc_bus_attach, self.name))

    def subscribe(self):
        """Receive, in this process, every message sent from now on. A
        forked child does not inherit its parent's subscription."""
        check(lib.mproc_bus_subscribe(self._handle()))

    def unsubscribe(self):
        """Stop receiving (what was not read is released)."""
        check(lib.mproc_bus_unsubscribe(self._handle()))

    def wait_readers(self, n, timeout=None):
        """Wait until at least *n* live readers have subscribed; raises
        TimeoutError when *timeout* seconds pass first."""
        h = self._handle()
        rc = self._wait(lambda t: lib.mproc_bus_wait_readers(h, n, t),
                        timeout)
        if rc == -errno.EAGAIN:
            rc = -errno.ETIMEDOUT
        check(rc)

    def put(self, obj, block=True, timeout=None):
        """Send obj to every subscribed reader (numpy arrays raw, the
        rest pickled). Waits for room up to *timeout* if *block*; raises
        :class:`queue.Full` when there was none in time, mproc.Error
        EMSGSIZE for an object over max_payload."""
        if not block:
            timeout = 0
        if _codec.is_ndarray(obj):
            req, data = NDARRAY, bytes(_codec.nd_encode(obj))
        else:
            req, data = _codec.encode(obj)
        rc = self._send_bytes(req, 0, data, timeout)
        if rc == -errno.EMSGSIZE:
            raise _lib.Error(errno.EMSGSIZE, "a %d-byte payload is over this "
                             "bus's max_payload; make it with a larger "
                             "max_payload (and capacity)" % len(data))
        check_sent(rc)

    send = put

    def get(self, block=True, timeout=None):
        """The next object at this reader's place, waiting up to
        *timeout* if *block*. Raises :class:`queue.Empty` when nothing
        came, :class:`Overrun` once after messages were lost, mproc.Error
        ENOTCONN when this process has not subscribed."""
        if not block:
            timeout = 0
        return self._recv_into(None, None, timeout, _decode_obj)

    recv = get

    def _recv_error(self, rc):
        if rc == -errno.EOVERFLOW:
            e = error(rc)
            raise Overrun(e.errno, e.strerror)
        Channel._recv_error(self, rc)

    def iter(self, block=True, timeout=None):
        """Iterate over received objects until one does not come within
        *timeout* seconds (None: for ever; ``block=False``: until none is
        waiting), like pysyncq's ``q(block=, timer=)``."""
        while True:
            try:
                yield self.get(block, timeout)
            except Empty:
                return

    def __iter__(self):
        """Iterate over the objects waiting now (never blocks)."""
        return self.iter(False)

    def stats(self):
        """The native counters (``mproc_bus_stats``) as a dict."""
        st = _lib.BusCounts()
        check(lib.mproc_bus_stats(self._handle(), ctypes.byref(st)))
        return {n: getattr(st, n) for n, _ in _lib.BusCounts._fields_
                if n != "reserved"}
