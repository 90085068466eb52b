"""numpy arrays through mproc's Queue, JoinableQueue, Pipe, Bus and Slot
between processes (DESIGN.md, "The Python module": "numpy arrays through
queue, bus and slot without pickling").

Arrays of many dtypes (int8..uint64, float16..float64, complex, bool,
byte orders, strings, datetimes, structured) and shapes (0-d, empty,
1-d, 3-d, Fortran-ordered, non-contiguous and negative-stride views,
broadcast and read-only arrays), and large ones (tens of MB), go to a
child and come back. The child rebuilds each expected array from its
case name and checks what it got; the parent checks the echo. Values,
dtype and shape must be equal; an ndarray subclass (a masked array) and
object arrays must come back as what they were. Every array received is
checked again at the end, so one that pointed into shared memory reused
by later messages would be caught.

Every kind runs under the fork and spawn start methods (forkserver hands
objects over as spawn does; test_dropin covers it); every wait is bounded
(TIMEOUT seconds).
"""
import copy
import multiprocessing
import os
import signal
import sys
import traceback
import zlib

import numpy as np
import pytest

import mproc

TIMEOUT = 60.0
METHODS = ("fork", "spawn")
KINDS = ("Queue", "JoinableQueue", "Pipe", "Bus", "Slot")

MiB = 1 << 20


# --- The arrays ----------------------------------------------------------


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def _rand(name, dtype, shape):
    """A deterministic array of dtype and shape for case name."""
    rng = _rng(name)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt,
                            endpoint=True)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) +
                1j * rng.standard_normal(shape)).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    raise ValueError(dtype)


NUMERIC = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
           "uint64", "float16", "float32", "float64", "complex64",
           "complex128", "bool"]

_builders = {}


def case(name):
    """Register a builder under name."""
    def reg(fn):
        _builders[name] = fn
        return fn
    return reg


for _dt in NUMERIC:
    _builders["1d-" + _dt] = (
        lambda dt=_dt: _rand("1d-" + dt, dt, (1001,)))
    _builders["3d-" + _dt] = (
        lambda dt=_dt: _rand("3d-" + dt, dt, (4, 5, 6)))
    _builders["0d-" + _dt] = (
        lambda dt=_dt: _rand("0d-" + dt, dt, (1,)).reshape(()))


@case("empty-1d")
def _():
    return np.zeros((0,), dtype=np.float64)


@case("empty-2d")
def _():
    return np.zeros((0, 5), dtype=np.int16)


@case("empty-3d")
def _():
    return np.ones((3, 0, 2), dtype=np.uint8)


@case("fortran-2d")
def _():
    return np.asfortranarray(_rand("fortran-2d", "float64", (30, 40)))


@case("fortran-3d")
def _():
    return np.asfortranarray(_rand("fortran-3d", "int16", (5, 6, 7)))


@case("slice-2d")
def _():
    return _rand("slice-2d", "float64", (40, 50))[::2, 1::3]


@case("reversed")
def _():
    return _rand("reversed", "int64", (999,))[::-1]


@case("transposed-3d")
def _():
    return _rand("transposed-3d", "uint16", (3, 4, 5)).transpose(2, 0, 1)


@case("column")
def _():
    return _rand("column", "float32", (20, 10))[:, 3]


@case("broadcast")
def _():
    return np.broadcast_to(np.arange(5, dtype=np.int64), (4, 5))


@case("readonly")
def _():
    a = _rand("readonly", "int32", (100,))
    a.flags.writeable = False
    return a


@case("big-endian-i4")
def _():
    return _rand("big-endian-i4", "int32", (300,)).astype(">i4")


@case("big-endian-f8")
def _():
    return _rand("big-endian-f8", "float64", (3, 100)).astype(">f8")


@case("bytes-S7")
def _():
    return np.array([b"", b"a", b"seven77", b"\x00\xff"] * 10, dtype="S7")


@case("unicode-U5")
def _():
    return np.array(["", "ä", "ünï", "✓✓✓✓✓"] * 10, dtype="<U5")


@case("datetime64")
def _():
    return np.arange("2020-01-01", "2020-03-01", dtype="datetime64[h]")


@case("timedelta64")
def _():
    return np.arange(0, 1000, 7, dtype="timedelta64[s]")


@case("structured")
def _():
    dt = np.dtype([("x", "<i4"), ("y", "<f8"), ("tag", "S3")])
    a = np.zeros(100, dtype=dt)
    a["x"] = np.arange(100)
    a["y"] = np.linspace(-1, 1, 100)
    a["tag"] = [b"t%02d" % (i % 100) for i in range(100)]
    return a


@case("structured-subarray-2d")
def _():
    dt = np.dtype([("pos", "<f4", (3,)), ("id", "<u8"), ("ok", "?")])
    a = np.zeros((2, 50), dtype=dt)
    a["pos"] = _rand("structured-subarray-2d", "float32", (2, 50, 3))
    a["id"] = np.arange(100, dtype=np.uint64).reshape(2, 50) * 2 ** 40
    a["ok"] = a["id"] % 3 == 0
    return a


@case("object")
def _():
    return np.array([1, "a", None, [2, 3], {"k": 1.5}], dtype=object)


@case("masked")
def _():
    return np.ma.masked_array(np.arange(10.0),
                              mask=[i % 3 == 0 for i in range(10)])


@case("nested")
def _():
    return {"a": np.arange(6).reshape(2, 3),
            "list": [np.float32(1.5), np.zeros(3, dtype=np.complex64)],
            "scalar": np.int16(-7)}


@case("scalar-float64")
def _():
    return np.float64(2.5)


@case("big-f8-20MiB")
def _():
    return _rand("big-f8-20MiB", "float64", (20 * MiB // 8,))


@case("big-u1-3d-fortran-24MB")
def _():
    a = np.asfortranarray(_rand("big-u1-3d-fortran-24MB", "uint8",
                                (300, 400, 200)))
    return a


@case("big-f4-slice-12MB")
def _():
    return _rand("big-f4-slice-12MB", "float32", (6_000_000,))[::2]


CASES = sorted(_builders)


_made = {}


def make(name):
    """The object of case name (the same in every process; built once per
    process: treat it as read-only)."""
    if name not in _made:
        _made[name] = _builders[name]()
    return _made[name]


def snapshot(x):
    """A copy of x to compare with later (x must not change)."""
    return copy.deepcopy(x)


def same(a, b):
    """True when b is a as the tests require: the same type; for arrays
    the same dtype, shape and values (masks too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ma.MaskedArray):
        return (a.dtype == b.dtype and a.shape == b.shape and
                np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
                and np.array_equal(a.data, b.data))
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return a.tolist() == b.tolist()
        return a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return a == b


def describe(x):
    if isinstance(x, np.ndarray):
        return "%s %s %s" % (type(x).__name__, x.dtype, x.shape)
    return type(x).__name__


def expect(name, got):
    want = make(name)
    assert same(want, got), "case %s: got %s, want %s" % (
        name, describe(got), describe(want))


# --- Children --------------------------------------------------------------


def _child_main(report, func, args):
    try:
        func(*args)
    except BaseException:
        report.send("child %d (%s):\n%s" % (os.getpid(), func.__name__,
                                            traceback.format_exc()))
    else:
        report.send(None)
    finally:
        report.close()


class Child:
    """A child process running func(*args), reporting its traceback."""

    def __init__(self, ctx, func, *args):
        self.name = func.__name__
        self.args = args  # alive while the child runs
        self._report, w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child_main, args=(w, func, args))
        self.proc.start()
        w.close()

    def finish(self):
        if not self._report.poll(TIMEOUT):
            self.kill()
            pytest.fail("child %s did not finish" % self.name)
        try:
            err = self._report.recv()
        except EOFError:
            err = "child %s died without a report" % self.name
        self.proc.join(TIMEOUT)
        if err:
            pytest.fail(err, pytrace=False)
        assert self.proc.exitcode == 0

    def kill(self):
        """SIGKILL the child (if it still runs) and reap it; print what
        it reported if it failed (shown with the test's failure)."""
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(TIMEOUT)
        try:
            err = self._report.recv() if self._report.poll(0) else None
        except (EOFError, OSError):
            err = None
        if err:
            print(err, file=sys.stderr)


def _echo(get, put, names, done=None):
    kept = []
    for name in names:
        got = get()
        expect(name, got)
        kept.append(got)
        put(got)
    if done is not None:
        done()
    # Everything received is still whole after the later messages.
    for name, got in zip(names, kept):
        expect(name, got)


def _echo_queue(qin, qout, names):
    def get():
        x = qin.get(timeout=TIMEOUT)
        if isinstance(qin, mproc.JoinableQueue):
            qin.task_done()
        return x
    _echo(get, lambda x: qout.put(x, timeout=TIMEOUT), names)


def _echo_pipe(conn, names):
    _echo(conn.recv, conn.send, names)


def _echo_bus(bin_, bout, names, ready):
    bin_.subscribe()
    ready.set()
    _echo(lambda: bin_.get(timeout=TIMEOUT),
          lambda x: bout.put(x, timeout=TIMEOUT), names)


def _echo_slot(sin, sout, names):
    _echo(lambda: sin.get(timeout=TIMEOUT), sout.put, names)


@pytest.fixture(params=METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


@pytest.mark.parametrize("kind", KINDS)
def test_arrays_round_trip(kind, ctx):
    """Every case goes to a child and back through one kind of channel,
    one at a time (a slot coalesces: the next value is written only once
    the echo of the last came back). Bus and slot are made with room for
    the largest array (32 MiB); queues and pipes take any size."""
    names = CASES
    children = []
    try:
        if kind in ("Queue", "JoinableQueue"):
            cls = getattr(mproc, kind)
            a, b = cls(), cls()
            children.append(Child(ctx, _echo_queue, a, b, names))
            send = lambda x: a.put(x, timeout=TIMEOUT)  # noqa: E731
            recv = lambda: b.get(timeout=TIMEOUT)  # noqa: E731
            objs = (a, b)
        elif kind == "Pipe":
            a, b = mproc.Pipe()
            children.append(Child(ctx, _echo_pipe, b, names))
            b.close()

            def recv():
                assert a.poll(TIMEOUT), "no echo"
                return a.recv()
            send = a.send
            objs = (a,)
        elif kind == "Bus":
            a = mproc.Bus(capacity=128 * MiB, max_payload=32 * MiB)
            b = mproc.Bus(capacity=128 * MiB, max_payload=32 * MiB)
            b.subscribe()
            ready = ctx.Event()
            children.append(Child(ctx, _echo_bus, a, b, names, ready))
            assert ready.wait(TIMEOUT)
            a.wait_readers(1, timeout=TIMEOUT)
            send = lambda x: a.put(x, timeout=TIMEOUT)  # noqa: E731
            recv = lambda: b.get(timeout=TIMEOUT)  # noqa: E731
            objs = (a, b)
        else:
            a = mproc.Slot(max_payload=32 * MiB)
            b = mproc.Slot(max_payload=32 * MiB)
            children.append(Child(ctx, _echo_slot, a, b, names))
            send = a.put
            recv = lambda: b.get(timeout=TIMEOUT)  # noqa: E731
            objs = (a, b)
        kept = []
        for name in names:
            x = make(name)
            before = snapshot(x)
            send(x)
            assert same(before, x), "sending changed " + name
            got = recv()
            expect(name, got)
            kept.append(got)
            if kind == "JoinableQueue":
                b.task_done()
        for c in children:
            c.finish()
        for name, got in zip(names, kept):
            expect(name, got)
        if kind == "JoinableQueue":
            a.join(timeout=TIMEOUT)
            b.join(timeout=TIMEOUT)
        for o in objs:
            o.close()
    finally:
        for c in children:
            c.kill()


def _send_many(q, n):
    for i in range(n):
        q.put(np.full((1000,), i, dtype=np.int32), timeout=TIMEOUT)


def test_queue_many_arrays_kept(ctx):
    """Many arrays through a queue, all kept by the receiver: each stays
    its own (none is a view of memory a later message reuses)."""
    q = mproc.Queue()
    c = Child(ctx, _send_many, q, 2000)
    try:
        got = [q.get(timeout=TIMEOUT) for _ in range(2000)]
        c.finish()
        for i, a in enumerate(got):
            assert a.dtype == np.int32 and a.shape == (1000,)
            assert (a == i).all(), i
    finally:
        c.kill()
        q.close()


def test_received_array_is_usable():
    """A received array is an ordinary array: it can be written (a copy of
    its own) and outlives the channel."""
    q = mproc.Queue()
    q.put(np.arange(10, dtype=np.float64))
    a = q.get(timeout=TIMEOUT)
    q.close()
    a2 = a.copy()
    a2 += 1
    assert np.array_equal(a2, np.arange(1, 11, dtype=np.float64))
    assert np.array_equal(a, np.arange(10, dtype=np.float64))


def _no_unpickling(*args):
    raise AssertionError("a numpy array was unpickled")


RAW_CASES = ["1d-float64", "3d-int16", "0d-complex128", "fortran-3d",
             "slice-2d", "reversed", "broadcast", "structured",
             "big-endian-f8", "empty-3d", "big-f8-20MiB"]


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "Bus", "Slot"])
def test_arrays_not_pickled(kind, monkeypatch):
    """numpy arrays go through queue, bus and slot without pickling: with
    numpy's unpickling functions replaced (so pickling an array fails, and
    unpickling one would too), arrays still go and arrive."""
    import pickle
    import numpy.core.multiarray
    import numpy.core.numeric
    monkeypatch.setattr(numpy.core.multiarray, "_reconstruct",
                        _no_unpickling)
    monkeypatch.setattr(numpy.core.numeric, "_frombuffer", _no_unpickling)
    with pytest.raises((AssertionError, pickle.PicklingError)):
        pickle.loads(pickle.dumps(np.arange(3)))      # the trap works
    if kind == "Bus":
        c = mproc.Bus(capacity=128 * MiB, max_payload=32 * MiB)
        c.subscribe()
    elif kind == "Slot":
        c = mproc.Slot(max_payload=32 * MiB)
    else:
        c = getattr(mproc, kind)()
    try:
        for name in RAW_CASES:
            if kind == "Slot":
                c.put(make(name))
            else:
                c.put(make(name), timeout=TIMEOUT)
            expect(name, c.get(timeout=TIMEOUT))
    finally:
        c.close()
