"""The ctypes binding of libmproc: loading, prototypes, errors, timeouts.

Internal: the public names are re-exported by :mod:`mproc`.

The library is found, in this order, at ``$MPROC_LIBRARY``; at the path
``make install`` recorded in :mod:`mproc._config`; by
:func:`ctypes.util.find_library`; as ``libmproc.so.0`` on the loader's path.
"""

import ctypes
import ctypes.util
import errno as _errno
import os
import time

__all__ = ["Error", "LIBRARY_PATH", "lib", "check", "to_ms"]


def _find_library():
    env = os.environ.get("MPROC_LIBRARY")
    if env:
        return env
    try:
        from . import _config  # written by make install
        path = os.path.join(_config.LIBDIR, "libmproc.so.0")
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    return ctypes.util.find_library("mproc") or "libmproc.so.0"


#: The path libmproc was loaded from.
LIBRARY_PATH = _find_library()
#: The library; the GIL is released during every call.
lib = ctypes.CDLL(LIBRARY_PATH, use_errno=True)

# Request codes and addresses (mproc.h).
DO = 1
FINISHED = 2
DIE = 3
USER = 1024
ANYONE = 0

# The Python package's own request codes, for what put()/send() encode:
# application codes, so a C program sees an ordinary message.
PICKLE = 0x6D700000  # a pickled object
NDARRAY = 0x6D700001  # a numpy array: header and raw data
SPILL = 0x6D700002  # an object too large for the ring, in a file
BYTES = 0x6D700003  # Connection.send_bytes
LARGE = 0x6D700004  # a pipe message in chunks: header
CHUNK = 0x6D700005  # ... and its chunks

UNLINK_ON_LAST_CLOSE = 1 << 16
QUEUE_MANUAL_DONE = 1 << 0
BUS_OVERWRITE = 1 << 0
PIPE_MAX_PAYLOAD = 16 << 20

#: The slice of a long native wait: a wait for longer is made of such
#: calls, so that signals (KeyboardInterrupt) are seen between them.
SLICE_MS = 200
FOREVER = -1
INT_MAX_MS = 2**31 - 1

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_int32 = ctypes.c_int32
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p


class Msg(ctypes.Structure):
    """struct mproc_msg, the payload pointer as an address."""
    _fields_ = [("request", c_int32), ("sender", c_int32),
                ("recipient", c_int32), ("size", c_uint32),
                ("data", c_void_p), ("capacity", c_uint32)]


class SendMsg(ctypes.Structure):
    """struct mproc_msg with the payload a bytes object (sends)."""
    _fields_ = [("request", c_int32), ("sender", c_int32),
                ("recipient", c_int32), ("size", c_uint32),
                ("data", c_char_p), ("capacity", c_uint32)]


class QueueOpts(ctypes.Structure):
    _fields_ = [("capacity", c_size_t), ("max_messages", c_uint32),
                ("max_payload", c_uint32), ("flags", c_uint32),
                ("mode", c_uint32)]


class Stats(ctypes.Structure):
    _fields_ = [(n, c_uint64) for n in (
        "queued", "bytes", "unfinished", "sent", "received", "recoveries",
        "orphans", "purged", "capacity", "max_payload")]


class BusOpts(ctypes.Structure):
    _fields_ = [("capacity", c_size_t), ("max_payload", c_uint32),
                ("max_readers", c_uint32), ("flags", c_uint32),
                ("mode", c_uint32)]


class BusCounts(ctypes.Structure):
    _fields_ = [("sent", c_uint64), ("queued", c_uint64),
                ("bytes", c_uint64), ("capacity", c_uint64),
                ("max_payload", c_uint64), ("recoveries", c_uint64),
                ("reclaimed", c_uint64), ("readers", c_uint32),
                ("max_readers", c_uint32), ("subscribed", c_int32),
                ("reserved", c_uint32), ("lag", c_uint64),
                ("lost", c_uint64), ("received", c_uint64)]


class SlotOpts(ctypes.Structure):
    _fields_ = [("max_payload", c_uint32), ("flags", c_uint32),
                ("mode", c_uint32)]


class SlotCounts(ctypes.Structure):
    _fields_ = [("version", c_uint64), ("seen", c_uint64),
                ("recoveries", c_uint64), ("size", c_uint32),
                ("max_payload", c_uint32), ("buffers", c_uint32),
                ("readers", c_uint32), ("readers_waiting", c_uint32),
                ("reserved", c_uint32)]


MATCH_FN = ctypes.CFUNCTYPE(c_int, ctypes.POINTER(Msg), c_void_p)

_P = ctypes.POINTER
_protos = {
    "mproc_pipe_open": (c_int, [_P(c_void_p), _P(c_void_p)]),
    "mproc_pipe_adopt": (c_int, [_P(c_void_p), c_int]),
    "mproc_queue_open": (c_int, [_P(c_void_p), _P(QueueOpts)]),
    "mproc_queue_create": (c_int, [_P(c_void_p), c_char_p, _P(QueueOpts)]),
    "mproc_queue_attach": (c_int, [_P(c_void_p), c_char_p]),
    "mproc_bus_open": (c_int, [_P(c_void_p), _P(BusOpts)]),
    "mproc_bus_create": (c_int, [_P(c_void_p), c_char_p, _P(BusOpts)]),
    "mproc_bus_attach": (c_int, [_P(c_void_p), c_char_p]),
    "mproc_bus_subscribe": (c_int, [c_void_p]),
    "mproc_bus_unsubscribe": (c_int, [c_void_p]),
    "mproc_bus_wait_readers": (c_int, [c_void_p, ctypes.c_uint, c_int]),
    "mproc_bus_stats": (c_int, [c_void_p, _P(BusCounts)]),
    "mproc_slot_open": (c_int, [_P(c_void_p), _P(SlotOpts)]),
    "mproc_slot_create": (c_int, [_P(c_void_p), c_char_p, _P(SlotOpts)]),
    "mproc_slot_attach": (c_int, [_P(c_void_p), c_char_p]),
    "mproc_slot_stats": (c_int, [c_void_p, _P(SlotCounts)]),
    "mproc_unlink": (c_int, [c_char_p]),
    "mproc_send": (c_int, [c_void_p, c_int32, c_int32, c_char_p, c_size_t]),
    "mproc_send_msg": (c_int, [c_void_p, c_void_p, c_int]),
    "mproc_recv": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_int]),
    "mproc_send_reserve": (c_int, [c_void_p, c_size_t, _P(c_void_p), c_int]),
    "mproc_send_commit": (c_int, [c_void_p, c_int32, c_int32, c_size_t]),
    "mproc_send_cancel": (c_int, [c_void_p]),
    "mproc_close": (c_int, [c_void_p]),
    "mproc_fd": (c_int, [c_void_p]),
    "mproc_queue_empty": (c_int, [c_void_p]),
    "mproc_queue_join": (c_int, [c_void_p, c_int]),
    "mproc_queue_shutdown": (c_int, [c_void_p]),
    "mproc_task_done": (c_int, [c_void_p]),
    "mproc_queue_stats": (c_int, [c_void_p, _P(Stats)]),
    "mproc_queue_purge": (c_int, [c_void_p]),
    "mproc_strerror": (c_char_p, [c_int]),
    "mproc_err_name": (c_char_p, [c_int]),
    "mproc_version": (c_char_p, []),
}
for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

#: The hot calls once more without argtypes: ctypes then converts
#: nothing (callers pass the c_void_p handle, a byref() and small ints;
#: never a Python int for a pointer), about 40 ns less per argument.
_bare = ctypes.CDLL(LIBRARY_PATH)
bare_send_msg = _bare.mproc_send_msg
bare_recv = _bare.mproc_recv
bare_task_done = _bare.mproc_task_done

#: mproc_for_me, as a match function pointer for mproc_recv.
FOR_ME = ctypes.cast(lib.mproc_for_me, c_void_p).value


class Error(OSError):
    """An error from libmproc: an :class:`OSError` whose ``errno`` is the
    (positive) errno value the C call returned negated, and whose
    ``strerror`` is mproc's wording for it."""


def error(rc, what=None):
    """The exception for the negative errno *rc* (not raised)."""
    e = -rc
    text = lib.mproc_strerror(rc).decode("utf-8", "replace")
    if e == _errno.ETIMEDOUT:
        exc = TimeoutError(e, text)
    else:
        exc = Error(e, text)
    if what:
        exc.filename = what
    return exc


def check(rc, what=None):
    """Return *rc* if it is not negative, else raise :func:`error` of it."""
    if rc < 0:
        raise error(rc, what)
    return rc


def to_ms(timeout):
    """Seconds (float, or None for ever) to the C milliseconds: None is
    MPROC_FOREVER (-1), zero or negative is MPROC_NOWAIT (0), any positive
    time at least 1 ms (rounded up)."""
    if timeout is None:
        return FOREVER
    if timeout <= 0:
        return 0
    ms = int(timeout * 1000.0)
    if ms < timeout * 1000.0:
        ms += 1
    return min(ms, INT_MAX_MS)


def wait(call, timeout):
    """Run ``call(ms)`` (a native call that waits up to ms) until it returns
    something other than -ETIMEDOUT or *timeout* (seconds; None: for ever)
    has run out, waiting at most SLICE_MS per call so that Python sees its
    signals in between. Returns the last return code."""
    if timeout is not None and timeout <= 0:
        return call(0)
    if timeout is None:
        while True:
            rc = call(SLICE_MS)
            if rc != -_errno.ETIMEDOUT:
                return rc
    deadline = time.monotonic() + timeout
    ms = to_ms(timeout)
    while True:
        rc = call(ms if ms < SLICE_MS else SLICE_MS)
        if rc != -_errno.ETIMEDOUT:
            return rc
        left = deadline - time.monotonic()
        if left <= 0:
            return rc
        ms = to_ms(left)


def version():
    """The version of the loaded libmproc, as a string."""
    return lib.mproc_version().decode()
