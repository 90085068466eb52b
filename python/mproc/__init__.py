"""mproc for Python: messaging between processes on one Linux machine.

A pure-Python package over the C library libmproc (ctypes; no compiler
needed). What it offers:

- :class:`Queue`, :class:`JoinableQueue` and :func:`Pipe`: drop-ins for
  multiprocessing's, on mproc's crash-safe shared-memory queue and pipe
  (fork, spawn and forkserver; a killed process never wedges them).
- the four-field API on every channel: ``send_msg(request, data=b"",
  recipient=0, timeout=None)`` and ``recv_msg(match=None, timeout=None,
  for_me=False)`` returning a :class:`Message`; the constants
  :data:`DO`, :data:`FINISHED`, :data:`DIE`, :data:`USER`,
  :data:`ANYONE`. A C program sees exactly the bytes sent.
- named objects: ``name="/jobs"`` on the constructors, :func:`attach`,
  :func:`unlink`, shared with C programs.
- :class:`Bus` (every reader sees every message), :class:`Slot` (the
  latest value), :class:`Event`; numpy arrays go through queue, bus,
  slot and pipe without pickling.
- :class:`Pool`: workers for Python functions over the C pool; every
  task gets exactly one result even when workers are SIGKILLed.
- :mod:`mproc.pymulproc`: pymulproc 0.1.2's API on mproc.

What ``put``/``send`` of a Python object looks like to a C program: a
message with request :data:`PICKLE` (0x6D700000, the pickle's bytes),
:data:`NDARRAY` (0x6D700001, a numpy array: a header and the raw data)
or :data:`SPILL` (0x6D700002, an object too large for the ring: the name
of a file in the objects' directory); ``get`` returns any other message
as a :class:`Message`.

Timeouts are seconds (float); None waits for ever. Errors from the
library are :class:`Error` (an OSError with ``errno``); a native wait
that ran out raises TimeoutError (:class:`Empty` and :class:`Full` are
both TimeoutError and queue.Empty / queue.Full).
"""

from ._lib import Error, DO, FINISHED, DIE, USER, ANYONE, version, \
    LIBRARY_PATH, PICKLE, NDARRAY, SPILL
from ._channel import Message, Empty, Full
from .queues import Queue, JoinableQueue
from .connection import Pipe, Connection, BufferTooShort
from .bus import Bus, Overrun
from .slot import Slot, Event
from .named import attach, unlink

__all__ = ["Error", "DO", "FINISHED", "DIE", "USER", "ANYONE", "Message",
           "Empty", "Full", "Queue", "JoinableQueue", "Pipe", "Connection",
           "BufferTooShort", "Bus", "Overrun", "Slot", "Event", "attach",
           "unlink", "version", "LIBRARY_PATH", "PICKLE", "NDARRAY", "SPILL"]

try:
    from .pool import Pool, WorkerDied  # noqa: F401
    __all__ += ["Pool", "WorkerDied"]
except ImportError:  # pragma: no cover - the pool module not built yet
    pass

__version__ = version()
