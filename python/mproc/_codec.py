"""How put()/send() turn Python objects into payloads and back.

- numpy arrays (exactly ``numpy.ndarray``, no object fields) travel raw:
  a small header (dtype, shape, order) and the array's bytes, never
  pickled. The sender copies the array once (into the shared ring where
  the channel can reserve room, else into the message); the receiver gets
  an array over the received bytes (no second copy for large arrays).
- everything else is pickled with the highest protocol.
- an object too large for a queue's ring goes through a file in the
  objects' directory (SPILL): the message names it, the receiver reads
  it and removes it.

Internal.
"""

import ast
import ctypes
import os
import pickle
import re
import struct
import sys

from ._lib import PICKLE, NDARRAY, SPILL

_HDR = struct.Struct("<4sBBHI")  # magic, version, order, ndim, descr len
_MAGIC = b"MPNA"
_ALIGN = 64


def is_ndarray(obj):
    """True for a plain numpy array that can travel raw."""
    np = sys.modules.get("numpy")
    return (np is not None and type(obj) is np.ndarray
            and not obj.dtype.hasobject)


def nd_header(arr):
    """(header bytes padded to 64, order) for arr."""
    np = sys.modules["numpy"]
    order = b"F" if (arr.flags.f_contiguous and not arr.flags.c_contiguous
                     and arr.ndim > 1) else b"C"
    descr = repr(np.lib.format.dtype_to_descr(arr.dtype)).encode()
    head = _HDR.pack(_MAGIC, 1, order[0], arr.ndim, len(descr)) + descr + \
        struct.pack("<%dQ" % arr.ndim, *arr.shape)
    pad = (-len(head)) % _ALIGN
    return head + b"\0" * pad, order.decode()


def nd_fill(arr, order, dest_addr, nbytes):
    """Copy arr's elements into memory at dest_addr (nbytes long) in the
    given order: one copy, whatever arr's strides."""
    np = sys.modules["numpy"]
    if nbytes == 0:
        return
    if (order == "C" and arr.flags.c_contiguous) or \
            (order == "F" and arr.flags.f_contiguous):
        ctypes.memmove(dest_addr, arr.ctypes.data, nbytes)
        return
    raw = (ctypes.c_char * nbytes).from_address(dest_addr)
    view = np.frombuffer(raw, dtype=arr.dtype).reshape(arr.shape, order=order)
    np.copyto(view, arr)


def nd_encode(arr):
    """The whole NDARRAY payload as one bytearray (for channels that
    cannot reserve room)."""
    head, order = nd_header(arr)
    out = bytearray(len(head) + arr.nbytes)
    out[:len(head)] = head
    if arr.nbytes:
        addr = ctypes.addressof((ctypes.c_char * len(out)).from_buffer(out))
        nd_fill(arr, order, addr + len(head), arr.nbytes)
    return out


def nd_decode(view, fresh):
    """The array in an NDARRAY payload. view: a memoryview of it; fresh:
    the buffer under view is the caller's to keep (no copy is made)."""
    import numpy as np
    if len(view) < _HDR.size:
        raise ValueError("mproc: truncated array header")
    magic, ver, order, ndim, dlen = _HDR.unpack_from(view, 0)
    if magic != _MAGIC or ver != 1 or order not in (67, 70) or ndim > 64:
        raise ValueError("mproc: not an mproc array payload")
    off = _HDR.size
    if off + dlen + 8 * ndim > len(view):
        raise ValueError("mproc: truncated array header")
    descr = ast.literal_eval(bytes(view[off:off + dlen]).decode())
    dtype = np.lib.format.descr_to_dtype(descr)
    off += dlen
    shape = struct.unpack_from("<%dQ" % ndim, view, off)
    off += 8 * ndim
    off += (-off) % _ALIGN
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if off + nbytes != len(view):
        raise ValueError("mproc: array payload of the wrong size")
    if nbytes == 0:
        return np.empty(shape, dtype=dtype, order=chr(order))
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=off)
    arr = arr.reshape(shape, order=chr(order))
    return arr if fresh else arr.copy(order="K")


def encode(obj):
    """(request, payload bytes-like) for a non-array object."""
    return PICKLE, pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


# -- spill files ---------------------------------------------------------

_SPILL_NAME = re.compile(r"\A\.spill-[A-Za-z0-9._-]{1,200}-[0-9a-f]{16}\Z")


from ._named import objects_dir  # noqa: E402


def spill_write(qname, inner, payload, mode=0o600):
    """Write payload (bytes-like, or an ndarray: header + data) to a new
    file in the objects' directory, named after the queue qname; returns
    the SPILL message payload."""
    d = objects_dir()
    name = ".spill-%s-%s" % (qname[1:], os.urandom(8).hex())
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o666,
                     dir_fd=dfd)
        try:
            os.fchmod(fd, mode & 0o666)
            if is_ndarray(payload):
                head, order = nd_header(payload)
                os.write(fd, head)
                arr = payload if (payload.flags.c_contiguous or
                                  payload.flags.f_contiguous) \
                    else payload.copy(order=order)
                with open(fd, "wb", closefd=False) as f:
                    f.write(memoryview(arr.reshape(-1, order="A"))
                            .cast("B"))
            else:
                with open(fd, "wb", closefd=False) as f:
                    f.write(payload)
        except BaseException:
            os.unlink(name, dir_fd=dfd)
            raise
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
    return struct.pack("<i", inner) + name.encode()


def spill_read(view, remove=True):
    """(inner request, bytearray) of the file a SPILL payload names; the
    file is removed unless *remove* is false (a predicate's look). Only a
    plain file of the library's naming in the objects' directory is
    read."""
    if len(view) < 5:
        raise ValueError("mproc: bad spill message")
    inner = struct.unpack_from("<i", view, 0)[0]
    name = bytes(view[4:]).decode("ascii", "replace")
    if not _SPILL_NAME.match(name):
        raise ValueError("mproc: bad spill file name")
    dfd = os.open(objects_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dfd)
        try:
            if remove:
                os.unlink(name, dir_fd=dfd)
            st = os.fstat(fd)
            import stat as _st
            if not _st.S_ISREG(st.st_mode):
                raise ValueError("mproc: spill file is not a file")
            buf = bytearray(st.st_size)
            with open(fd, "rb", closefd=False) as f:
                n = f.readinto(buf)
            if n != st.st_size:
                raise ValueError("mproc: spill file cut short")
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
    return inner, buf


def decode(request, view, fresh):
    """The object a put()/send() payload carries, or None when request is
    not one of the package's codes (the caller then returns a Message)."""
    if request == PICKLE:
        return pickle.loads(view)
    if request == NDARRAY:
        return nd_decode(view, fresh)
    if request == SPILL:
        inner, buf = spill_read(view)
        return decode(inner, memoryview(buf), True)
    raise KeyError(request)


def spill_remove(payload):
    """Remove the file a SPILL payload (from spill_write) names: its send
    failed."""
    name = bytes(payload[4:]).decode("ascii", "replace")
    if _SPILL_NAME.match(name):
        try:
            os.unlink(os.path.join(objects_dir(), name))
        except OSError:
            pass
