"""C <-> Python on named queues, buses and slots (DESIGN.md, "The Python
module": the four-field API, "the C side sees exactly the bytes sent").

The C side is check/python/cpeer (its path in $MPROC_CPEER), a program
started on its own with the object's name on its command line. The
Python side is this file run as a program (``python3 test_interop.py
ROLE ...``) when Python is the worker, or the test itself when Python is
the parent. Both sides build and check the same bytes (the protocol is
described at the top of cpeer.c and mirrored below), and both print what
they received, one line each, so every field of every message (request,
sender, recipient, payload) is checked on the side that received it and
again by the test.

Every wait is bounded (PEER_WAIT seconds on each side, TIMEOUT for a
whole program).
"""
import errno
import inspect
import json
import os
import queue
import struct
import subprocess
import sys
import threading

import mproc

if __name__ != "__main__":
    import pytest

# A whole program may take this long; one receive on either side waits
# at most PEER_WAIT.
TIMEOUT = 60.0
PEER_WAIT = 10.0

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# --- The protocol (the same as at the top of check/python/cpeer.c) -------

SIZES = [0, 1, 2, 3, 255, 256, 257, 1000, 4096, 60000]
ACK = mproc.USER + 1000000


def pattern(s, n):
    """n bytes: byte j = (s * 31 + j * 7 + (j >> 8)) & 0xff."""
    return bytes((s * 31 + j * 7 + (j >> 8)) & 0xFF for j in range(n))


_items = {}


def item(i):
    """Item i: its index (4 bytes, little-endian), then a pattern."""
    if i not in _items:
        _items[i] = struct.pack("<I", i) + pattern(i, SIZES[i % 10])
    return _items[i]


def reply_of(data):
    """A result's payload: the task's index, then the rest reversed."""
    return data[:4] + data[4:][::-1]


def task_request(i):
    return mproc.DO if i % 3 == 0 else mproc.USER + i


def reply_request(request):
    return mproc.FINISHED if request == mproc.DO else request + 1


def bus_request(i):
    return mproc.DO if i % 4 == 0 else mproc.USER + i


def bus_recipient(i):
    return mproc.ANYONE if i % 2 == 0 else 1


def slot_request(i):
    return mproc.USER + 1 + i


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


FNV_START = 1469598103934665603


def bus_sum(msgs):
    """FNV-1a 64 over each (request, recipient, size, payload)."""
    h = FNV_START
    for request, recipient, data in msgs:
        h = fnv(h, struct.pack("<iiI", request, recipient, len(data)))
        h = fnv(h, data)
    return h


def bus_expected(count, forme):
    """The (request, recipient, payload) a bus reader should take."""
    return [(bus_request(i), bus_recipient(i), item(i)) for i in range(count)
            if not forme or bus_recipient(i) == mproc.ANYONE]


# --- The Python side as a separate program --------------------------------


def emit(word, **fields):
    """Print one line of what this program received (JSON)."""
    fields["event"] = word
    print(json.dumps(fields), flush=True)


def emit_msg(word, m):
    assert isinstance(m, mproc.Message), type(m)
    assert type(m.data) is bytes, type(m.data)
    emit(word, request=m.request, sender=m.sender, recipient=m.recipient,
         data=m.data.hex())


def check(cond, what):
    """Exit 1 with a message unless cond."""
    if not cond:
        print("python peer %d: %s" % (os.getpid(), what), file=sys.stderr,
              flush=True)
        sys.exit(1)


def py_qworker(name, parent, mode):
    """Attach the queue, say hello to parent, answer each task for me
    (mode "forme": for_me=True; "match": a Python predicate) until DIE."""
    me = os.getpid()
    q = mproc.attach(name)
    check(isinstance(q, mproc.Queue), "attach gave %r" % (q,))
    q.send_msg(mproc.USER, b"hello %d" % me, recipient=parent,
               timeout=PEER_WAIT)
    emit("attached", pid=me)
    while True:
        if mode == "forme":
            m = q.recv_msg(for_me=True, timeout=PEER_WAIT)
        else:
            m = q.recv_msg(match=lambda m: m.recipient in (mproc.ANYONE, me),
                           timeout=PEER_WAIT)
        emit_msg("task", m)
        check(m.sender == parent, "task from %d" % m.sender)
        check(m.recipient in (mproc.ANYONE, me),
              "task for %d" % m.recipient)
        if m.request == mproc.DIE:
            check(m.data == b"" and m.recipient == me, "DIE %r" % (m,))
            break
        i = struct.unpack_from("<I", m.data)[0] if len(m.data) >= 4 else -1
        check(i >= 0 and m.data == item(i), "task %d payload" % i)
        check(m.request == task_request(i), "task %d request" % i)
        q.send_msg(reply_request(m.request), reply_of(m.data),
                   recipient=m.sender, timeout=PEER_WAIT)
    q.close()
    emit("ok")


def py_busreader(name, writer, count, mode):
    """Attach the bus, subscribe, take writer's messages (mode "all": a
    predicate on the sender; "forme": for_me=True), check them, ack."""
    me = os.getpid()
    bus = mproc.attach(name)
    check(isinstance(bus, mproc.Bus), "attach gave %r" % (bus,))
    bus.subscribe()
    emit("subscribed", pid=me)
    want = bus_expected(count, mode == "forme")
    got = []
    for request, recipient, data in want:
        if mode == "forme":
            m = bus.recv_msg(for_me=True, timeout=PEER_WAIT)
        else:
            m = bus.recv_msg(match=lambda m: m.sender == writer,
                             timeout=PEER_WAIT)
        emit_msg("recv", m)
        check(m.sender == writer, "from %d" % m.sender)
        check((m.request, m.recipient, m.data) == (request, recipient, data),
              "message %d" % len(got))
        got.append((m.request, m.recipient, m.data))
    bus.send_msg(ACK, b"ack %d %016x" % (len(got), bus_sum(got)),
                 recipient=writer, timeout=PEER_WAIT)
    bus.close()
    emit("ok")


def py_slotreader(name, writer, count):
    """Attach both slots, take value 0, reply "seen 0", take newer values
    until count-1, reply "seen count-1 k"."""
    s = mproc.attach(name)
    r = mproc.attach(name + ".r")
    check(isinstance(s, mproc.Slot) and isinstance(r, mproc.Slot),
          "attach gave %r, %r" % (s, r))
    last, k = -1, 0
    while last < count - 1:
        m = s.recv_msg(timeout=PEER_WAIT)
        emit_msg("value", m)
        i = struct.unpack_from("<I", m.data)[0] if len(m.data) >= 4 else -1
        check(last < i < count and (last >= 0 or i == 0),
              "value %d after %d" % (i, last))
        check(m == (slot_request(i), writer, mproc.ANYONE, item(i)),
              "value %d fields" % i)
        last, k = i, k + 1
        if i == 0:
            r.send_msg(mproc.USER, b"seen 0", recipient=writer)
    r.send_msg(mproc.USER, b"seen %d %d" % (last, k), recipient=writer)
    s.close()
    r.close()
    emit("ok", values=k)


def worker_main(argv):
    """python3 test_interop.py qworker NAME PARENT MODE |
    busreader NAME WRITER COUNT MODE | slotreader NAME WRITER COUNT"""
    role, name = argv[0], argv[1]
    if role == "qworker":
        py_qworker(name, int(argv[2]), argv[3])
    elif role == "busreader":
        py_busreader(name, int(argv[2]), int(argv[3]), argv[4])
    elif role == "slotreader":
        py_slotreader(name, int(argv[2]), int(argv[3]))
    else:
        print("unknown role " + role, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))


# --- Running the programs --------------------------------------------------

CPEER = os.environ.get("MPROC_CPEER",
                       os.path.join(REPO, "check", "python", "cpeer"))


def child_env():
    """The environment of the programs: this one, with mproc importable
    and libmproc found (MPROC_DIR, MPROC_LIBRARY as set for the tests)."""
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(mproc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    lib = env.get("MPROC_LIBRARY")
    if lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [os.path.dirname(lib)] +
            [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    return env


class Program:
    """A program started with subprocess. A thread of the test drains its
    stdout and stderr as they come (a program must never block on a full
    pipe while the test waits for it), so its lines can be read with a
    deadline."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=child_env())
        self._lines = queue.Queue()
        self._err = []
        self.lines = []
        self._threads = [
            threading.Thread(target=self._drain, daemon=True,
                             args=(self.proc.stdout, self._lines.put)),
            threading.Thread(target=self._drain, daemon=True,
                             args=(self.proc.stderr, self._err.append))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(f, put):
        for line in f:
            put(line.decode(errors="replace").rstrip("\n"))
        put(None)

    def readline(self, timeout=PEER_WAIT):
        """The next line of stdout (without the newline); fails the test
        when none comes in time."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail("%s: no line within %s s; stderr: %s"
                        % (self.argv, timeout, self.stderr()))
        if line is None:
            self.proc.wait(TIMEOUT)
            pytest.fail("%s ended (status %s) before a line; stderr: %s"
                        % (self.argv, self.proc.returncode, self.stderr()))
        self.lines.append(line)
        return line

    def stderr(self):
        return "\n".join(x for x in self._err if x is not None)

    def finish(self, timeout=TIMEOUT):
        """Wait for the end; fail unless it exited 0. Returns all lines."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("%s did not finish within %s s" % (self.argv,
                                                           timeout))
        for t in self._threads:
            t.join(TIMEOUT)
        while True:
            line = self._lines.get(timeout=TIMEOUT)
            if line is None:
                break
            self.lines.append(line)
        if self.proc.returncode != 0:
            pytest.fail("%s exited with %s; stderr:\n%s"
                        % (self.argv, self.proc.returncode, self.stderr()),
                        pytrace=False)
        return self.lines

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)


@pytest.fixture
def programs():
    """run(argv) -> Program; every program is killed and reaped at the
    end of the test whatever happened."""
    started = []

    def run(argv):
        p = Program([str(a) for a in argv])
        started.append(p)
        return p

    yield run
    for p in started:
        p.kill()


@pytest.fixture
def cpeer():
    """The C peer's path; skip when it was not built."""
    if not os.access(CPEER, os.X_OK):
        pytest.skip("the C peer %s was not built (make check builds it; "
                    "or set MPROC_CPEER)" % CPEER)
    return CPEER


_names = iter(range(1, 1 << 30))


@pytest.fixture
def name():
    """A fresh object name for the test."""
    return "/interop-%d-%d" % (os.getpid(), next(_names))


def python_peer(*args):
    return [sys.executable, os.path.abspath(__file__)] + list(args)


def fields(line):
    """The key=value fields of a C peer line, as a dict (after the word
    in "word")."""
    word, *rest = line.split()
    d = dict(kv.split("=", 1) for kv in rest)
    for k in ("request", "sender", "recipient", "size", "pid"):
        if k in d:
            d[k] = int(d[k])
    if "data" in d:
        d["data"] = bytes.fromhex(d["data"])
        assert len(d["data"]) == d["size"]
    d["word"] = word
    return d


def c_events(lines, word):
    return [fields(x) for x in lines if x.split(" ", 1)[0] == word]


def py_events(lines, word):
    out = []
    for x in lines:
        d = json.loads(x)
        if d["event"] == word:
            if "data" in d:
                d["data"] = bytes.fromhex(d["data"])
            out.append(d)
    return out


def ready_pid(prog, word="ready"):
    """Read the program's first line, "WORD pid=N"; returns N."""
    f = fields(prog.readline())
    assert f["word"] == word, f
    return f["pid"]


# --- The four-field API itself ----------------------------------------------


def test_constants_and_message():
    """The constants are mproc.h's; Message is (request, sender,
    recipient, data)."""
    assert (mproc.DO, mproc.FINISHED, mproc.DIE, mproc.USER,
            mproc.ANYONE) == (1, 2, 3, 1024, 0)
    m = mproc.Message(mproc.DO, 12, 34, b"x")
    assert (m.request, m.sender, m.recipient, m.data) == (1, 12, 34, b"x")
    assert tuple(m) == (1, 12, 34, b"x")
    assert issubclass(mproc.Error, OSError)


KINDS = ["queue", "joinable", "pipe", "bus", "slot"]


_EMPTY = inspect.Parameter.empty


def _params(fn):
    return [(p.name, p.default) for p in
            inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("cls", ["Queue", "JoinableQueue", "Connection",
                                 "Bus", "Slot", "Event"])
def test_four_field_signatures(cls):
    """send_msg(request, data=b"", recipient=0, timeout=None) and
    recv_msg(match=None, timeout=None, for_me=False) on every class, to
    the letter (names, order, defaults)."""
    c = getattr(mproc, cls)
    assert _params(c.send_msg) == [
        ("self", _EMPTY), ("request", _EMPTY), ("data", b""),
        ("recipient", 0), ("timeout", None)]
    assert _params(c.recv_msg) == [
        ("self", _EMPTY), ("match", None), ("timeout", None),
        ("for_me", False)]


def test_bus_slot_event_methods():
    """The methods DESIGN.md names: Bus.subscribe(), unsubscribe(),
    wait_readers(n, timeout), iteration; Slot.put, get; Event.signal,
    wait."""
    assert [n for n, _ in _params(mproc.Bus.subscribe)] == ["self"]
    assert [n for n, _ in _params(mproc.Bus.unsubscribe)] == ["self"]
    assert [n for n, _ in _params(mproc.Bus.wait_readers)][:3] == [
        "self", "n", "timeout"]
    assert hasattr(mproc.Bus, "__iter__")
    for n in ("put", "get"):
        assert callable(getattr(mproc.Slot, n))
    for n in ("signal", "wait"):
        assert callable(getattr(mproc.Event, n))


class Channel:
    """A sending and a receiving end of one kind (the same object but for
    the pipe), closed and unlinked by close()."""

    def __init__(self, kind, name, **kw):
        self.kind, self.name = kind, name
        if kind == "pipe":
            self.tx, self.rx = mproc.Pipe()
            self.name = None
        else:
            cls = {"queue": mproc.Queue, "joinable": mproc.JoinableQueue,
                   "bus": mproc.Bus, "slot": mproc.Slot}[kind]
            self.tx = self.rx = cls(name=name, **kw)
            if kind == "bus":
                self.tx.subscribe()

    def close(self):
        self.tx.close()
        self.rx.close()
        if self.name:
            mproc.unlink(self.name)


@pytest.fixture
def channel(name):
    made = []

    def make(kind, **kw):
        c = Channel(kind, name, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_four_fields_on_every_kind(kind, channel):
    """send_msg/recv_msg carry request, sender (this process), recipient
    and the payload bytes exactly, on every kind; the payload comes back
    as bytes (bytes-like payloads are sent as their bytes)."""
    c = channel(kind)
    me = os.getpid()
    cases = [(mproc.DO, b"", mproc.ANYONE), (mproc.FINISHED, b"\x00", me),
             (mproc.DIE, bytes(range(256)), 12345),
             (mproc.USER, b"\xff" * 60000, mproc.ANYONE),
             (mproc.USER + 1, bytearray(b"bytearray"), me),
             (mproc.USER + 2, memoryview(b"memoryview"), 0),
             (2 ** 31 - 1, b"largest code", 2 ** 22)]
    for request, data, recipient in cases:
        c.tx.send_msg(request, data, recipient=recipient, timeout=PEER_WAIT)
        m = c.rx.recv_msg(timeout=PEER_WAIT)
        assert isinstance(m, mproc.Message) and type(m.data) is bytes
        assert m == (request, me, recipient, bytes(data))
    c.tx.send_msg(mproc.USER)          # the defaults: no data, to anyone
    assert c.rx.recv_msg(timeout=PEER_WAIT) == (mproc.USER, me, 0, b"")


@pytest.mark.parametrize("kind", KINDS)
def test_send_msg_bad_arguments_and_timeouts(kind, channel):
    """A request code that is not DO, FINISHED, DIE or >= USER, and a
    recipient below 0, are mproc.Error EINVAL and send nothing; a native
    wait that ran out raises TimeoutError."""
    c = channel(kind)
    for request, recipient in ((0, 0), (-1, 0), (4, 0), (1023, 0),
                               (mproc.DO, -1), (mproc.USER, -5)):
        with pytest.raises(mproc.Error) as e:
            c.tx.send_msg(request, b"x", recipient=recipient, timeout=1)
        assert isinstance(e.value, OSError)
        assert e.value.errno == errno.EINVAL, (request, recipient)
    for t in (0, 0.05):
        with pytest.raises(TimeoutError):
            c.rx.recv_msg(timeout=t)
    c.tx.send_msg(mproc.USER + 7, b"\x00\xff", recipient=os.getpid())
    m = c.rx.recv_msg(timeout=PEER_WAIT)
    assert m == (mproc.USER + 7, os.getpid(), os.getpid(), b"\x00\xff")


@pytest.mark.parametrize("kind", ["queue", "joinable", "bus"])
def test_send_msg_full_times_out(kind, channel):
    """A send that finds no room in time raises TimeoutError (a queue of
    maxsize 1; a small bus whose reader does not read)."""
    if kind == "bus":
        c = channel(kind, capacity=64 << 10, max_payload=1 << 10)
        with pytest.raises(TimeoutError):
            for _ in range(1000):
                c.tx.send_msg(mproc.USER, b"b" * 1000, timeout=0.01)
        return
    cls = mproc.Queue if kind == "queue" else mproc.JoinableQueue
    q = cls(1)
    try:
        q.send_msg(mproc.USER, b"one", timeout=0)
        for t in (0, 0.05):
            with pytest.raises(TimeoutError):
                q.send_msg(mproc.USER, b"two", timeout=t)
        assert q.recv_msg(timeout=0).data == b"one"
    finally:
        q.close()


@pytest.mark.parametrize("kind", ["queue", "joinable", "pipe", "bus"])
def test_match_and_for_me(kind, channel):
    """match= gets each candidate as a Message and takes the first it
    accepts; on a queue or a pipe what it rejects keeps its place, in
    order; on a bus it is passed for this reader only. for_me=True takes
    messages to this process or to ANYONE only."""
    c = channel(kind)
    me = os.getpid()
    for k in (1, 2, 3):
        c.tx.send_msg(mproc.USER + k, b"%d" % k)
    seen = []

    def want2(m):
        assert isinstance(m, mproc.Message) and type(m.data) is bytes
        seen.append(m.request)
        return m.request == mproc.USER + 2
    m = c.rx.recv_msg(match=want2, timeout=PEER_WAIT)
    assert m == (mproc.USER + 2, me, 0, b"2")
    assert seen[0] == mproc.USER + 1
    if kind == "bus":
        rest = [mproc.USER + 3]
    else:
        rest = [mproc.USER + 1, mproc.USER + 3]
    assert [c.rx.recv_msg(timeout=PEER_WAIT).request for _ in rest] == rest
    with pytest.raises(TimeoutError):
        c.rx.recv_msg(timeout=0)
    # for_me: to someone else (pid 1), to me, to anyone.
    for request, to in ((mproc.USER + 10, 1), (mproc.USER + 11, me),
                        (mproc.USER + 12, mproc.ANYONE)):
        c.tx.send_msg(request, b"", recipient=to)
    got = [c.rx.recv_msg(for_me=True, timeout=PEER_WAIT) for _ in range(2)]
    assert [(m.request, m.recipient) for m in got] == [
        (mproc.USER + 11, me), (mproc.USER + 12, 0)]
    with pytest.raises(TimeoutError):
        c.rx.recv_msg(for_me=True, timeout=0.05)
    if kind == "bus":
        with pytest.raises(TimeoutError):     # passed for this reader
            c.rx.recv_msg(timeout=0)
    else:
        m = c.rx.recv_msg(timeout=PEER_WAIT)  # it kept its place
        assert (m.request, m.recipient) == (mproc.USER + 10, 1)


@pytest.mark.parametrize("kind", ["queue", "joinable", "pipe"])
def test_match_that_raises_loses_nothing(kind, channel):
    """An exception in match= comes out of recv_msg; the message stays."""
    c = channel(kind)
    c.tx.send_msg(mproc.USER, b"kept")

    def boom(m):
        raise ZeroDivisionError("in the predicate")
    with pytest.raises(ZeroDivisionError):
        c.rx.recv_msg(match=boom, timeout=PEER_WAIT)
    assert c.rx.recv_msg(timeout=PEER_WAIT).data == b"kept"


def test_slot_match_counts_as_seen(channel):
    """On a slot a value match= rejects counts as seen; a newer one is
    taken; values written in between are skipped (the latest wins)."""
    c = channel("slot")
    c.tx.send_msg(mproc.USER + 1, b"v1")
    with pytest.raises(TimeoutError):
        c.rx.recv_msg(match=lambda m: False, timeout=0.05)
    with pytest.raises(TimeoutError):
        c.rx.recv_msg(timeout=0.05)
    for k in (2, 3, 4):
        c.tx.send_msg(mproc.USER + k, b"v%d" % k)
    assert c.rx.recv_msg(timeout=PEER_WAIT) == (mproc.USER + 4, os.getpid(),
                                                0, b"v4")
    with pytest.raises(TimeoutError):
        c.rx.recv_msg(timeout=0)


def mproc_dir():
    return os.environ.get("MPROC_DIR") or "/dev/shm/mproc-%d" % os.geteuid()


@pytest.mark.parametrize("cls,base", [
    ("Queue", "Queue"), ("JoinableQueue", "Queue"), ("Bus", "Bus"),
    ("Slot", "Slot"), ("Event", "Slot")])
def test_named_create_attach_unlink(cls, base, name):
    """name= creates the object (a file in the directory); mproc.attach
    returns an object of the right class; a second create while it is
    held is EEXIST; mproc.unlink removes the name (ENOENT after)."""
    path = os.path.join(mproc_dir(), name[1:])
    obj = getattr(mproc, cls)(name=name)
    try:
        assert os.path.exists(path)
        a = mproc.attach(name)
        assert isinstance(a, getattr(mproc, base)), type(a)
        a.close()
        with pytest.raises(mproc.Error) as e:
            getattr(mproc, cls)(name=name)
        assert e.value.errno == errno.EEXIST
        mproc.unlink(name)
        assert not os.path.exists(path)
        with pytest.raises(mproc.Error) as e:
            mproc.attach(name)
        assert e.value.errno == errno.ENOENT
        with pytest.raises(mproc.Error) as e:
            mproc.unlink(name)
        assert e.value.errno == errno.ENOENT
    finally:
        obj.close()


@pytest.mark.parametrize("cls", ["Queue", "JoinableQueue"])
def test_named_queue_attached_keeps_maxsize(cls, name):
    """A queue attached by name is the same queue: maxsize holds for its
    puts, and qsize/full/empty say so, as on the creator's handle."""
    q = getattr(mproc, cls)(2, name=name)
    a = mproc.attach(name)
    try:
        a.put(1)
        a.put(2)
        assert q.full() and q.qsize() == 2
        assert a.qsize() == 2 and not a.empty()
        with pytest.raises(queue.Full):
            a.put_nowait(3)
        assert a.full()
        assert q.get(timeout=0) == 1
        assert not a.full() and a.qsize() == 1
    finally:
        a.close()
        q.close()
        mproc.unlink(name)


@pytest.mark.parametrize("bad", ["jobs", "/", "/.hidden", "/a b", "/a/b",
                                 "/" + "x" * 201, "/é"])
def test_named_bad_names(bad):
    """A name that is not "/" and 1 to 200 of [A-Za-z0-9._-] (not starting
    with ".") is mproc.Error EINVAL."""
    for make in (lambda: mproc.Queue(name=bad), lambda: mproc.attach(bad),
                 lambda: mproc.unlink(bad)):
        with pytest.raises(mproc.Error) as e:
            make()
        assert e.value.errno == errno.EINVAL


# --- Queue -------------------------------------------------------------------


def check_queue_exchange(parent, workers, tasks, results, worker_tasks):
    """The whole exchange on a queue, seen from both sides.

    parent: the parent's pid; workers: the workers' pids in hello order;
    results: (request, sender, recipient, data) the parent took;
    worker_tasks: {pid: [(request, sender, recipient, data)]} each worker
    took (DIE included)."""
    w = len(workers)
    seen = set()
    for request, sender, recipient, data in results:
        i = struct.unpack_from("<I", data)[0]
        assert i < tasks and i not in seen, i
        seen.add(i)
        assert request == reply_request(task_request(i)), i
        assert recipient == parent, i
        assert data == reply_of(item(i)), i
        to = i % (w + 1)
        assert sender == (workers[to] if to < w else sender), i
        assert sender in workers, i
    assert seen == set(range(tasks))
    taken = {}
    for pid, msgs in worker_tasks.items():
        assert msgs[-1] == (mproc.DIE, parent, pid, b""), msgs[-1]
        for request, sender, recipient, data in msgs[:-1]:
            i = struct.unpack_from("<I", data)[0]
            assert i not in taken, i
            taken[i] = pid
            assert (request, sender, data) == (task_request(i), parent,
                                               item(i)), i
            to = i % (w + 1)
            assert recipient == (workers[to] if to < w else mproc.ANYONE), i
            if to < w:
                assert pid == workers[to], i
    assert set(taken) == set(range(tasks))


def test_queue_c_parent_python_workers(cpeer, programs, name):
    """A C parent creates a named queue; two Python programs attach it, say
    hello, answer the tasks addressed to them or to anyone (one with
    for_me=True, one with a Python match=), and die on DIE."""
    tasks = 60
    parent = programs([cpeer, "qparent", name, 2, tasks])
    ppid = ready_pid(parent)
    workers = [programs(python_peer("qworker", name, ppid, mode))
               for mode in ("forme", "match")]
    wpids = [json.loads(w.readline())["pid"] for w in workers]
    assert sorted(wpids) == sorted(w.proc.pid for w in workers)
    clines = parent.finish()
    wlines = {pid: w.finish() for pid, w in zip(wpids, workers)}
    hellos = c_events(clines, "hello")
    order = [h["sender"] for h in hellos]
    assert sorted(order) == sorted(wpids)
    for h in hellos:
        assert (h["request"], h["recipient"], h["data"]) == (
            mproc.USER, ppid, b"hello %d" % h["sender"])
    results = [(r["request"], r["sender"], r["recipient"], r["data"])
               for r in c_events(clines, "result")]
    worker_tasks = {
        pid: [(t["request"], t["sender"], t["recipient"], t["data"])
              for t in py_events(lines, "task")]
        for pid, lines in wlines.items()}
    check_queue_exchange(ppid, order, tasks, results, worker_tasks)
    assert clines[-1] == "ok tasks=%d" % tasks


def test_queue_python_parent_c_workers(cpeer, programs, name):
    """A Python parent creates a named queue (mproc.Queue(name=...)); two C
    programs attach it, say hello, answer the tasks for them or for anyone
    (mproc_for_me) and die on DIE. The parent takes only what is addressed
    to it (match=), never its own tasks for anyone."""
    me = os.getpid()
    tasks = 60
    q = mproc.Queue(name=name)
    try:
        a = mproc.attach(name)
        assert isinstance(a, mproc.Queue)
        a.close()
        workers = [programs([cpeer, "qworker", name, me]) for _ in range(2)]
        hellos = []
        for _ in workers:
            m = q.recv_msg(match=lambda m: m.recipient == me,
                           timeout=PEER_WAIT)
            assert isinstance(m, mproc.Message) and type(m.data) is bytes
            assert (m.request, m.recipient, m.data) == (
                mproc.USER, me, b"hello %d" % m.sender)
            hellos.append(m.sender)
        cpids = sorted(ready_pid(w, "attached") for w in workers)
        assert sorted(hellos) == cpids
        for i in range(tasks):
            to = i % 3
            q.send_msg(task_request(i), item(i),
                       recipient=hellos[to] if to < 2 else mproc.ANYONE,
                       timeout=PEER_WAIT)
        results = []
        for _ in range(tasks):
            m = q.recv_msg(match=lambda m: m.recipient == me,
                           timeout=PEER_WAIT)
            assert type(m.data) is bytes
            results.append(tuple(m))
        for pid in hellos:
            q.send_msg(mproc.DIE, recipient=pid, timeout=PEER_WAIT)
        worker_tasks = {}
        for w in workers:
            lines = w.finish()
            pid = fields(lines[0])["pid"]
            worker_tasks[pid] = [
                (t["request"], t["sender"], t["recipient"], t["data"])
                for t in c_events(lines, "task")]
            assert lines[-1] == "ok"
        check_queue_exchange(me, hellos, tasks, results, worker_tasks)
        assert q.empty()
    finally:
        q.close()
        mproc.unlink(name)


# --- Bus ---------------------------------------------------------------------


def test_bus_c_writer_python_readers(cpeer, programs, name):
    """A C program creates a named bus and sends messages; two Python
    programs subscribe and take all of them (match= on the sender) or the
    ones for them (for_me=True), every field checked, and ack with a sum."""
    count = 80
    writer = programs([cpeer, "busparent", name, 2, count])
    wpid = ready_pid(writer)
    modes = ("all", "forme")
    readers = [programs(python_peer("busreader", name, wpid, count, mode))
               for mode in modes]
    rpids = [json.loads(r.readline())["pid"] for r in readers]
    clines = writer.finish()
    for pid, r, mode in zip(rpids, readers, modes):
        lines = r.finish()
        got = [(m["request"], m["recipient"], m["data"])
               for m in py_events(lines, "recv")]
        assert got == bus_expected(count, mode == "forme")
        assert all(m["sender"] == wpid for m in py_events(lines, "recv"))
    acks = c_events(clines, "ack")
    assert sorted(a["sender"] for a in acks) == sorted(rpids)
    for a in acks:
        mode = modes[rpids.index(a["sender"])]
        want = bus_expected(count, mode == "forme")
        assert (a["request"], a["recipient"]) == (ACK, wpid)
        assert a["data"] == b"ack %d %016x" % (len(want), bus_sum(want))
    assert clines[-1] == "ok"


def test_bus_python_writer_c_readers(cpeer, programs, name):
    """A Python program creates a named bus (mproc.Bus(name=...)),
    subscribes and sends; two C programs subscribe and take all of the
    writer's messages or only those for them (mproc_for_me), every field
    checked, and ack; the writer takes the acks and skips its own
    messages with match=."""
    me = os.getpid()
    count = 80
    bus = mproc.Bus(name=name, capacity=8 << 20, max_payload=64 << 10)
    try:
        bus.subscribe()
        modes = ("all", "forme")
        readers = [programs([cpeer, "busreader", name, me, count] +
                            (["forme"] if mode == "forme" else []))
                   for mode in modes]
        rpids = [ready_pid(r, "subscribed") for r in readers]
        bus.wait_readers(3, timeout=PEER_WAIT)
        for i in range(count):
            bus.send_msg(bus_request(i), item(i), recipient=bus_recipient(i),
                         timeout=PEER_WAIT)
        acks = []
        for _ in readers:
            m = bus.recv_msg(match=lambda m: m.request == ACK,
                             timeout=PEER_WAIT)
            acks.append(m)
        assert sorted(a.sender for a in acks) == sorted(rpids)
        for a in acks:
            mode = modes[rpids.index(a.sender)]
            want = bus_expected(count, mode == "forme")
            assert a.recipient == me
            assert a.data == b"ack %d %016x" % (len(want), bus_sum(want))
        for r, mode in zip(readers, modes):
            lines = r.finish()
            got = c_events(lines, "recv")
            assert [(m["request"], m["recipient"], m["data"]) for m in got] \
                == bus_expected(count, mode == "forme")
            assert all(m["sender"] == me for m in got)
            assert lines[-1] == "ok"
    finally:
        bus.close()
        mproc.unlink(name)


# --- Slot --------------------------------------------------------------------


def test_slot_c_writer_python_reader(cpeer, programs, name):
    """A C program creates a named slot, publishes value 0, then (once the
    Python reader replied on NAME.r) many more at once; the Python program
    sees value 0, then only newer values, ending with the last, every
    field checked; the C side checks the replies' fields."""
    count = 200
    writer = programs([cpeer, "slotparent", name, count])
    wpid = ready_pid(writer)
    reader = programs(python_peer("slotreader", name, wpid, count))
    rlines = reader.finish()
    clines = writer.finish()
    values = py_events(rlines, "value")
    idx = [struct.unpack_from("<I", v["data"])[0] for v in values]
    assert idx[0] == 0 and idx[-1] == count - 1
    assert idx == sorted(set(idx)), "a value seen twice or out of order"
    for i, v in zip(idx, values):
        assert (v["request"], v["sender"], v["recipient"], v["data"]) == (
            slot_request(i), wpid, mproc.ANYONE, item(i))
    replies = c_events(clines, "reply")
    assert [r["data"] for r in replies] == [
        b"seen 0", b"seen %d %d" % (count - 1, len(values))]
    for r in replies:
        assert (r["request"], r["sender"], r["recipient"]) == (
            mproc.USER, reader.proc.pid, wpid)
    assert clines[-1] == "ok"


def test_slot_python_writer_c_reader(cpeer, programs, name):
    """A Python program creates the slots (mproc.Slot(name=...)) and
    publishes; the C program takes value 0, replies, then takes only newer
    values up to the last; every field checked on both sides."""
    me = os.getpid()
    count = 200
    s = mproc.Slot(name=name)
    r = mproc.Slot(name=name + ".r")
    try:
        s.send_msg(slot_request(0), item(0))
        reader = programs([cpeer, "slotreader", name, me, count])
        m = r.recv_msg(timeout=PEER_WAIT)
        assert m.request == mproc.USER and m.recipient == me
        assert m.data == b"seen 0"
        cpid = m.sender
        for i in range(1, count):
            s.send_msg(slot_request(i), item(i))
        m = r.recv_msg(timeout=PEER_WAIT)
        assert (m.request, m.sender, m.recipient) == (mproc.USER, cpid, me)
        words = m.data.split()
        assert words[:2] == [b"seen", b"%d" % (count - 1)], m.data
        lines = reader.finish()
        values = c_events(lines, "value")
        idx = [struct.unpack_from("<I", v["data"])[0] for v in values]
        assert idx[0] == 0 and idx[-1] == count - 1
        assert idx == sorted(set(idx))
        assert int(words[2]) == len(values)
        for i, v in zip(idx, values):
            assert (v["request"], v["sender"], v["recipient"], v["data"]) \
                == (slot_request(i), me, mproc.ANYONE, item(i))
        assert lines[-1] == "ok values=%d" % len(values)
        assert cpid == reader.proc.pid
    finally:
        s.close()
        r.close()
        mproc.unlink(name)
        mproc.unlink(name + ".r")
