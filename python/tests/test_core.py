"""The core of the package: errors, timeouts, named objects, the
four-field API, bus, slot and event, fork safety of handles."""

import errno
import os
import pickle
import queue
import signal
import time

import pytest

import mproc
from conftest import reap
from mproc import _lib


def test_constants_and_version():
    assert (mproc.DO, mproc.FINISHED, mproc.DIE, mproc.USER,
            mproc.ANYONE) == (1, 2, 3, 1024, 0)
    assert mproc.version().count(".") == 2
    assert os.path.exists(mproc.LIBRARY_PATH)


def test_to_ms():
    assert _lib.to_ms(None) == -1
    assert _lib.to_ms(0) == 0
    assert _lib.to_ms(-3) == 0
    assert _lib.to_ms(0.0001) == 1
    assert _lib.to_ms(1.5) == 1500
    assert _lib.to_ms(1e12) == 2**31 - 1


def test_error_is_oserror_with_errno():
    q = mproc.Queue()
    with pytest.raises(mproc.Error) as ei:
        q.send_msg(5, b"x")  # 4..1023 are no request code
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(mproc.Error) as ei:
        q.send_msg(mproc.USER, b"x", recipient=-1)
    assert ei.value.errno == errno.EINVAL
    q.close()


def test_empty_is_both_timeout_and_queue_empty():
    q = mproc.Queue()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        q.recv_msg(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.1
    q.close()


def test_long_wait_sees_signals():
    """A wait longer than a slice still lets a Python signal handler run
    (and raise) on time."""
    q = mproc.Queue()

    class Alarm(Exception):
        pass

    def on_alarm(*_):
        raise Alarm()
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.monotonic()
        with pytest.raises(Alarm):
            q.get(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        q.close()


def test_four_field_roundtrip_and_predicates():
    q = mproc.Queue()
    me = os.getpid()
    q.send_msg(mproc.DO, b"one")
    q.send_msg(mproc.USER + 7, b"\x00\xff" * 10, recipient=me)
    q.send_msg(mproc.FINISHED, bytearray(b"three"))
    m = q.recv_msg(match=lambda m: m.request == mproc.FINISHED, timeout=1)
    assert m == mproc.Message(mproc.FINISHED, me, 0, b"three")
    m = q.recv_msg(for_me=True, timeout=1)
    assert m.request == mproc.DO and m.data == b"one"
    m = q.recv_msg(timeout=1)
    assert (m.request, m.recipient, m.data) == (mproc.USER + 7, me,
                                                 b"\x00\xff" * 10)
    q.close()


def test_predicate_exception_propagates_and_keeps_message():
    q = mproc.Queue()
    q.put("kept")

    def boom(m):
        raise KeyError("boom")
    with pytest.raises(KeyError):
        q.recv_msg(match=boom, timeout=5)
    assert q.get(timeout=1) == "kept"
    q.close()


def test_named_create_attach_unlink():
    q = mproc.JoinableQueue(name="/jobs", mode=0o640)
    assert os.stat(os.path.join(os.environ["MPROC_DIR"], "jobs")).st_mode \
        & 0o777 == 0o640
    with pytest.raises(mproc.Error) as ei:
        mproc.Queue(name="/jobs")
    assert ei.value.errno == errno.EEXIST
    q.put({"n": 1})
    other = mproc.attach("/jobs")
    assert isinstance(other, mproc.JoinableQueue)
    assert other.get(timeout=1) == {"n": 1}
    other.task_done()
    q.join(timeout=1)
    b = mproc.Bus(name="/news")
    s = mproc.Slot(name="/latest")
    assert isinstance(mproc.attach("/news"), mproc.Bus)
    assert isinstance(mproc.attach("/latest"), mproc.Slot)
    for n in ("/jobs", "/news", "/latest"):
        mproc.unlink(n)
    with pytest.raises(mproc.Error) as ei:
        mproc.attach("/jobs")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(mproc.Error) as ei:
        mproc.unlink("/jobs")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(mproc.Error) as ei:
        mproc.attach("no-slash")
    assert ei.value.errno == errno.EINVAL
    # Holders go on after the unlink.
    q.put(2)
    assert q.get(timeout=1) == 2
    q.task_done()
    for o in (q, other, b, s):
        o.close()


def test_attach_foreign_file_is_eproto():
    with open(os.path.join(os.environ["MPROC_DIR"], "junk"), "wb") as f:
        f.write(os.urandom(8192))
    with pytest.raises(mproc.Error) as ei:
        mproc.attach("/junk")
    assert ei.value.errno == errno.EPROTO
    os.unlink(os.path.join(os.environ["MPROC_DIR"], "junk"))


def test_private_names_go_with_last_holder():
    d = os.environ["MPROC_DIR"]
    before = set(os.listdir(d))
    q = mproc.Queue()
    b = mproc.Bus()
    s = mproc.Event()
    assert len(set(os.listdir(d)) - before) == 3
    for o in (q, b, s):
        o.close()
    assert set(os.listdir(d)) == before


def test_pickle_by_name():
    q = mproc.Queue()
    q.put("x")
    q2 = pickle.loads(pickle.dumps(q))
    assert q2.get(timeout=1) == "x"
    q.close()
    q2.close()


def test_fork_child_uses_inherited_handle():
    q = mproc.Queue()
    pid = os.fork()
    if pid == 0:
        try:
            q.put(("child", os.getpid()))
            q.close()
        finally:
            os._exit(0)
    assert q.get(timeout=10) == ("child", pid)
    assert reap(pid) == 0
    q.close()


def test_bus_every_reader_sees_every_message():
    bus = mproc.Bus(capacity=1 << 20)
    ready = mproc.Queue()
    kids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                bus.subscribe()
                ready.put(os.getpid())
                got = list(bus.iter(timeout=5))[:3]
                ready.put((os.getpid(), got))
                code = 0
            finally:
                os._exit(code)
        kids.append(pid)
    bus.wait_readers(2, timeout=10)
    with pytest.raises(mproc.Error) as ei:
        bus.get(timeout=0)
    assert ei.value.errno == errno.ENOTCONN
    for v in ("a", b"b", {"c": 3}):
        bus.put(v)
    seen = {ready.get(timeout=10) for _ in range(2)}
    assert seen == set(kids)
    res = dict(ready.get(timeout=10) for _ in range(2))
    assert res == {k: ["a", b"b", {"c": 3}] for k in kids}
    for k in kids:
        assert reap(k) == 0
    bus.close()
    ready.close()


def test_bus_overwrite_overrun():
    bus = mproc.Bus(capacity=64 << 10, max_payload=1024, overwrite=True)
    bus.subscribe()
    for i in range(1000):
        bus.put(b"x" * 500)
    with pytest.raises(mproc.Overrun):
        bus.get(timeout=1)
    assert bus.get(timeout=1) == b"x" * 500
    assert bus.stats()["lost"] > 0
    bus.close()


def test_slot_latest_value_coalesces():
    s = mproc.Slot()
    with pytest.raises(mproc.Empty):
        s.get(timeout=0.01)
    for i in range(5):
        s.put(i)
    assert s.get(timeout=1) == 4
    with pytest.raises(queue.Empty):
        s.get(block=False)
    assert s.version == 5
    s.close()


def test_event_signal_wait():
    e = mproc.Event()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if e.wait(10) else 2
        finally:
            os._exit(code)
    # The child waits; a signal wakes it (it has seen nothing yet, so a
    # signal sent before it waits counts too).
    e.signal()
    assert reap(pid) == 0
    assert e.wait(1) is True
    assert e.wait(0.05) is False
    e.signal({"frame": 7})
    assert e.wait(1) and e.data == {"frame": 7}
    e.close()


def test_fileno_polls_readable():
    import select
    q = mproc.Queue()
    fd = q.fileno()
    p = select.poll()
    p.register(fd, select.POLLIN)
    # Readable from the start (so a first look never misses anything).
    q.get_nowait() if False else None
    q.put(1)
    assert p.poll(1000)
    assert q.get_nowait() == 1
    q.close()


def test_stat_module_runs():
    import subprocess
    import sys
    q = mproc.Queue(name="/statme")
    r = subprocess.run([sys.executable, "-m", "mproc.stat", "--json",
                        "/statme"], capture_output=True, timeout=30,
                       env=os.environ)
    assert r.returncode == 0, r.stderr
    import json
    d = json.loads(r.stdout)
    assert d["name"] == "/statme" and d["kind"] == "queue"
    q.close()
    mproc.unlink("/statme")


def test_large_objects_spill_and_match():
    """Objects over max_payload travel through a file that the taker
    removes; a predicate sees them too."""
    d = os.environ["MPROC_DIR"]
    q = mproc.Queue(capacity=1 << 20)
    before = set(os.listdir(d))
    big = os.urandom(3 << 20)
    q.put(big)
    q.put("small")
    assert any(f.startswith(".spill-") for f in os.listdir(d))
    assert q.get(match=lambda o: o == "small", timeout=5) == "small"
    assert q.get(match=lambda o: isinstance(o, bytes), timeout=5) == big
    assert set(os.listdir(d)) == before
    q.close()


def test_python_objects_as_c_sees_them():
    """put() of an object is a PICKLE message of the pickle's bytes; get()
    hands a C program's message back as a Message."""
    q = mproc.Queue()
    q.put({"k": 1})
    m = q.recv_msg(timeout=1)
    assert m.request == mproc.PICKLE == 0x6D700000
    assert pickle.loads(m.data) == {"k": 1}
    q.send_msg(mproc.DO, b"raw")
    got = q.get(timeout=1)
    assert isinstance(got, mproc.Message) and got.request == mproc.DO
    assert got.data == b"raw"
    q.close()
