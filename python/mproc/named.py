"""mproc.attach and mproc.unlink: named objects, whatever their kind."""

import errno

from . import _named
from ._lib import lib, check

__all__ = ["attach", "unlink"]


def attach(name):
    """Open the object named *name* (``"/jobs"``) that some program, in C
    or Python, created: a :class:`mproc.JoinableQueue` for a joinable
    queue (made by JoinableQueue, or in C with MPROC_QUEUE_MANUAL_DONE), a
    :class:`mproc.Queue` for another queue, a :class:`mproc.Bus` for a bus, a :class:`mproc.Slot` for
    a slot or an event (a slot has ``signal``/``wait`` too).

    Raises FileNotFoundError-like :class:`mproc.Error` ENOENT when there
    is none, EACCES when its mode forbids you, EPROTO when the file is no
    valid mproc object, EPERM for an unsafe directory, EINVAL for a bad
    name."""
    from .queues import Queue, JoinableQueue
    from .bus import Bus
    from .slot import Slot
    from ._lib import QUEUE_MANUAL_DONE
    hdr = _named.queue_header(name)
    q = JoinableQueue if hdr is None or hdr[1] & QUEUE_MANUAL_DONE else Queue
    last = None
    for cls in (q, Bus, Slot):
        try:
            return cls._attach(name)
        except OSError as e:
            if e.errno != errno.EPROTO:
                raise
            last = e
    raise last


def unlink(name):
    """Remove the name; holders keep using the object, which goes when
    the last one closes or exits. mproc.Error ENOENT, EACCES, EINVAL,
    EPERM."""
    check(lib.mproc_unlink(_named.encode_name(name)), name)
