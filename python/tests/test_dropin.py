"""mproc.Queue, mproc.JoinableQueue and mproc.Pipe as drop-ins for
multiprocessing's classes (DESIGN.md, "The Python module").

Every test runs under the three start methods (fork, spawn, forkserver):
the mproc object is handed to a child started with
multiprocessing.get_context(method).Process, so under spawn and
forkserver it is pickled to the child. The behaviour checked is
multiprocessing 3.11's (Lib/multiprocessing/queues.py and connection.py):
the same exceptions, messages, blocking and timeout rules. Where mproc is
better than multiprocessing (a put is visible at once, a killed process
never wedges the queue, join can time out, an unpicklable object fails in
put), the better behaviour is tested and the test says so.

Every wait is bounded: a call that might block for ever runs in a child,
and the parent gives up on the child after TIMEOUT seconds (then kills it
and fails the test).
"""
import array
import dataclasses
import inspect
import multiprocessing
import multiprocessing.connection
import multiprocessing.queues
import os
import pickle
import queue
import select
import signal
import struct
import sys
import time
import traceback

import pytest

import mproc

# The bound on every wait in these tests, in seconds.
TIMEOUT = 30.0

METHODS = ("fork", "spawn", "forkserver")
# The fork server imports the test modules once (not every child).
multiprocessing.get_context("forkserver").set_forkserver_preload(
    ["test_dropin", "test_numpy"])
QUEUE_CLASSES = ("Queue", "JoinableQueue")


@dataclasses.dataclass(frozen=True)
class Point:
    """A user class, pickled by reference (module test_dropin)."""

    x: int
    y: float


class Unequal(Exception):
    """An exception instance travels too."""

    def __eq__(self, other):
        return type(other) is type(self) and other.args == self.args

    def __hash__(self):
        return hash(self.args)


def samples():
    """Objects of many types, small and large, that must come back equal."""
    return [
        0, -1, 2 ** 200, -(2 ** 63), 3.25, float("inf"), complex(1, -2),
        "", "plain", "ünïcodé ✓ \u0000 \U0001f600",
        b"", b"\x00", bytes(range(256)) * 3, bytearray(b"mutable"),
        None, True, False, Ellipsis,
        (), (1, "a", None), [1, [2, [3, [4]]]], {"k": [1, 2], 3: None},
        {1, 2, 3}, frozenset({"f"}), range(3, 30, 3), slice(1, 9, 2),
        Point(1, 2.5), [Point(i, -i) for i in range(50)],
        Unequal("boom", 7),
        "s" * 200_000,              # over a default 64 KiB payload
        b"\xab" * (5 << 20),        # 5 MiB
        list(range(100_000)),
    ]


# ---------------------------------------------------------------------
# Children: run a function in a child process of a given start method,
# report its traceback through a multiprocessing pipe, bound every wait.
# ---------------------------------------------------------------------


def _child_main(report, func, args):
    """Body of every child: run func(*args), send None or a traceback."""
    try:
        func(*args)
    except BaseException:  # noqa: B902 - the parent shows it
        report.send("child %d (%s):\n%s" % (
            os.getpid(), func.__name__, traceback.format_exc()))
    else:
        report.send(None)
    finally:
        report.close()


class Child:
    """A child process running func(*args) under one start method."""

    def __init__(self, ctx, func, *args):
        self.name = func.__name__
        # Keep the arguments alive while the child runs (Process.start
        # drops its own references; multiprocessing's Event, unlike an
        # mproc object, is gone for a spawned child once the parent's copy
        # is collected).
        self.args = args
        self._report, w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child_main, args=(w, func, args))
        self.proc.start()
        w.close()

    @property
    def pid(self):
        """The child's pid."""
        return self.proc.pid

    def finish(self, timeout=TIMEOUT):
        """Wait for the child's report and exit; fail on any error."""
        if not self._report.poll(timeout):
            self.kill()
            pytest.fail("child %s did not finish within %s s"
                        % (self.name, timeout))
        try:
            err = self._report.recv()
        except EOFError:
            err = "child %s died without a report" % self.name
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.kill()
            pytest.fail("child %s reported but did not exit" % self.name)
        if err:
            pytest.fail(err, pytrace=False)
        assert self.proc.exitcode == 0, (self.name, self.proc.exitcode)

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


@pytest.fixture(params=METHODS)
def ctx(request):
    """A multiprocessing context of each start method."""
    return multiprocessing.get_context(request.param)


@pytest.fixture
def start(ctx):
    """start(func, *args) -> Child; every child is killed and reaped at the
    end of the test whatever happened."""
    children = []

    def _start(func, *args):
        c = Child(ctx, func, *args)
        children.append(c)
        return c

    yield _start
    for c in children:
        c.kill()


@pytest.fixture(params=QUEUE_CLASSES)
def qcls(request):
    """mproc.Queue and mproc.JoinableQueue."""
    return getattr(mproc, request.param)


def wait_event(ev, what):
    """Wait for a multiprocessing Event, bounded."""
    assert ev.wait(TIMEOUT), "timed out waiting for " + what


# ---------------------------------------------------------------------
# Queue and JoinableQueue
# ---------------------------------------------------------------------


def _echo_queue(qin, qout, n):
    for _ in range(n):
        qout.put(qin.get(timeout=TIMEOUT))


def test_queue_objects_round_trip(start, qcls):
    """Pickled objects of many types go to a child and come back equal,
    in order (FIFO with one producer)."""
    objs = samples()
    qin, qout = qcls(), qcls()
    child = start(_echo_queue, qin, qout, len(objs))
    for o in objs:
        qin.put(o)
    for o in objs:
        got = qout.get(timeout=TIMEOUT)
        assert type(got) is type(o)
        assert got == o
    child.finish()
    assert qout.empty() and qin.empty()


def _put_many(q, tag, n):
    for i in range(n):
        q.put((tag, i))


def _take_and_report(q, out, n):
    got = [q.get(timeout=TIMEOUT) for _ in range(n)]
    out.put(got)


def test_queue_many_producers_many_consumers(start, qcls, ctx):
    """2 producers, 2 consumers: every object once, each producer's objects
    in the order it put them."""
    q = qcls(maxsize=16)
    out = ctx.Queue()
    n, producers = 800, 2
    takes = [n * producers // 2, n * producers - n * producers // 2]
    cons = [start(_take_and_report, q, out, k) for k in takes]
    prods = [start(_put_many, q, "p%d" % t, n) for t in range(producers)]
    results = [out.get(timeout=TIMEOUT) for _ in cons]
    for c in prods + cons:
        c.finish()
    seen = [x for r in results for x in r]
    assert sorted(seen) == sorted(("p%d" % t, i) for t in range(producers)
                                  for i in range(n))
    for r in results:
        for t in range(producers):
            mine = [i for tag, i in r if tag == "p%d" % t]
            assert mine == sorted(mine)


def _check_get_rules_empty(q):
    # Nothing queued: every non-blocking or timed get raises queue.Empty.
    # multiprocessing: block=False ignores the timeout; a timeout of 0 or
    # below does not wait (and is no error, unlike queue.Queue).
    calls = {
        "get(False)": lambda: q.get(False),
        "get(block=False)": lambda: q.get(block=False),
        "get_nowait()": q.get_nowait,
        "get(False, 3600)": lambda: q.get(False, 3600),
        "get(block=False, timeout=3600)":
            lambda: q.get(block=False, timeout=3600),
        "get(timeout=0)": lambda: q.get(timeout=0),
        "get(timeout=0.0)": lambda: q.get(timeout=0.0),
        "get(timeout=-1)": lambda: q.get(timeout=-1),
        "get(True, -0.5)": lambda: q.get(True, -0.5),
        "get(timeout=0.05)": lambda: q.get(timeout=0.05),
        "get(True, 0.01)": lambda: q.get(True, 0.01),
    }
    for what, call in calls.items():
        try:
            call()
        except queue.Empty:
            pass
        else:
            raise AssertionError(what + " on an empty queue did not raise "
                                 "queue.Empty")
    # Something queued: the same calls return it at once.
    for what, call in calls.items():
        q.put(what)
        got = call()
        assert got == what, (what, got)
    assert q.empty()


def test_queue_get_timeout_rules(start, qcls):
    """get's block/timeout rules, as multiprocessing's."""
    q = qcls()
    start(_check_get_rules_empty, q).finish()
    q.put("after")
    assert q.get(timeout=TIMEOUT) == "after"


def _check_put_rules_full(q, maxsize):
    for i in range(maxsize):
        q.put(i, timeout=0)
    assert q.full() and q.qsize() == maxsize and not q.empty()
    calls = {
        "put_nowait(x)": lambda: q.put_nowait("x"),
        "put(x, False)": lambda: q.put("x", False),
        "put(x, block=False)": lambda: q.put("x", block=False),
        "put(x, False, 3600)": lambda: q.put("x", False, 3600),
        "put(x, block=False, timeout=3600)":
            lambda: q.put("x", block=False, timeout=3600),
        "put(x, timeout=0)": lambda: q.put("x", timeout=0),
        "put(x, timeout=-1)": lambda: q.put("x", timeout=-1),
        "put(x, True, -0.5)": lambda: q.put("x", True, -0.5),
        "put(x, timeout=0.05)": lambda: q.put("x", timeout=0.05),
        "put(x, True, 0.01)": lambda: q.put("x", True, 0.01),
    }
    for what, call in calls.items():
        try:
            call()
        except queue.Full:
            pass
        else:
            raise AssertionError(what + " on a full queue did not raise "
                                 "queue.Full")
        assert q.qsize() == maxsize, what
    # Room for one: the same calls put at once.
    for what, call in calls.items():
        assert q.get(timeout=0) is not None
        assert not q.full()
        call()
        assert q.full() and q.qsize() == maxsize, what


def test_queue_put_timeout_rules(start, qcls):
    """put's block/timeout rules on a full queue, as multiprocessing's."""
    q = qcls(maxsize=3)
    start(_check_put_rules_full, q, 3).finish()
    assert q.full() and q.qsize() == 3
    assert [q.get(timeout=0) for _ in range(3)] == ["x"] * 3
    assert q.empty() and not q.full()


def _get_blocking(q, ready, out):
    ready.set()
    out.put(("get()", q.get()))
    out.put(("get(True)", q.get(True)))
    out.put(("get(True, None)", q.get(True, None)))
    out.put(("get(timeout=None)", q.get(timeout=None)))
    out.put(("get(timeout=TIMEOUT)", q.get(timeout=TIMEOUT)))


def test_queue_get_none_waits(start, qcls, ctx):
    """get() and timeout=None wait until something is put."""
    q, out, ready = qcls(), ctx.Queue(), ctx.Event()
    child = start(_get_blocking, q, ready, out)
    wait_event(ready, "the child to start")
    for i in range(5):
        q.put(i)
        what, got = out.get(timeout=TIMEOUT)
        assert got == i, what
    child.finish()


def _put_blocking(q, ready, done):
    ready.set()
    q.put("second")              # waits for room
    done.set()
    q.put("third", True, None)
    q.put("fourth", timeout=None)
    q.put("fifth", timeout=TIMEOUT)


def test_queue_put_none_waits_for_room(start, qcls, ctx):
    """put() on a full queue waits for room (maxsize=1)."""
    q, ready, done = qcls(maxsize=1), ctx.Event(), ctx.Event()
    q.put("first")
    child = start(_put_blocking, q, ready, done)
    wait_event(ready, "the child to start")
    assert not done.wait(0.2), "put on a full queue returned without room"
    for want in ("first", "second", "third", "fourth", "fifth"):
        assert q.get(timeout=TIMEOUT) == want
    child.finish()
    assert q.empty()


def _put_three(q):
    for i in range(3):
        q.put(i)
    # mproc is better than multiprocessing here: a put is in the queue when
    # it returns (multiprocessing's feeder thread may lag behind).
    assert q.qsize() == 3 and q.full() and not q.empty()


def test_queue_qsize_empty_full(start, qcls):
    """qsize/empty/full with maxsize, seen across processes."""
    q = qcls(maxsize=3)
    assert q.qsize() == 0 and q.empty() and not q.full()
    start(_put_three, q).finish()
    assert q.qsize() == 3 and q.full() and not q.empty()
    assert q.get(timeout=0) == 0
    assert q.qsize() == 2 and not q.full() and not q.empty()
    q.get(timeout=0), q.get(timeout=0)
    assert q.qsize() == 0 and q.empty() and not q.full()


def _fill_unbounded(qs, n):
    for q in qs:
        for i in range(n):
            q.put_nowait(i)
            assert not q.full()
        assert q.qsize() == n


def test_queue_maxsize_zero_or_negative_is_unbounded(start, qcls):
    """maxsize <= 0 (0, -1, -100) means no limit on the number of
    objects, as multiprocessing's."""
    qs = [qcls(), qcls(0), qcls(-1), qcls(maxsize=-100)]
    start(_fill_unbounded, qs, 2000).finish()
    for q in qs:
        assert [q.get(timeout=0) for _ in range(2000)] == list(range(2000))


def _put_and_die(q, n):
    for i in range(n):
        q.put(("last words", i))
    os.kill(os.getpid(), signal.SIGKILL)


def test_queue_put_then_killed_loses_nothing(ctx, qcls):
    """Better than multiprocessing (whose feeder thread dies with the
    process, taking what it had not written): a process SIGKILLed right
    after its puts returned loses none of them."""
    q = qcls()
    p = ctx.Process(target=_put_and_die, args=(q, 500))
    p.start()
    p.join(TIMEOUT)
    if p.is_alive():
        p.kill()
        p.join(TIMEOUT)
        pytest.fail("the child did not die")
    assert p.exitcode == -signal.SIGKILL
    assert [q.get(timeout=TIMEOUT) for _ in range(500)] == [
        ("last words", i) for i in range(500)]
    assert q.empty()


def _get_original(q):
    assert q.get(timeout=TIMEOUT) == [1, 2, 3]


def test_queue_put_takes_a_snapshot(start, qcls):
    """Better than multiprocessing (whose feeder thread pickles later): the
    object is pickled by put, so changing it afterwards changes nothing."""
    q = qcls()
    obj = [1, 2, 3]
    q.put(obj)
    obj.append(4)
    obj[0] = "changed"
    start(_get_original, q).finish()


def test_queue_put_visible_at_once(start, qcls):
    """Better than multiprocessing: put_nowait then get_nowait in the same
    process never raises Empty (no feeder thread in between)."""
    q = qcls()
    start(_put_get_at_once, q).finish()


def _put_get_at_once(q):
    for i in range(200):
        q.put_nowait(i)
        assert not q.empty() and q.qsize() == 1
        assert q.get_nowait() == i
        assert q.empty()


def _check_closed(q):
    q.put("kept")
    q.close()
    msg = "Queue %r is closed" % (q,)
    calls = {
        "put": lambda: q.put(1),
        "put(timeout)": lambda: q.put(1, timeout=1),
        "put_nowait": lambda: q.put_nowait(1),
        "get": q.get,
        "get(timeout)": lambda: q.get(timeout=1),
        "get(False)": lambda: q.get(False),
        "get_nowait": q.get_nowait,
    }
    for what, call in calls.items():
        try:
            call()
        except ValueError as e:
            assert str(e) == msg, (what, str(e), msg)
        else:
            raise AssertionError(what + " after close() did not raise "
                                 "ValueError")
    q.close()           # a second close is harmless
    q.join_thread()     # returns at once after close
    q.cancel_join_thread()


def test_queue_closed_raises_valueerror(start, qcls):
    """After close(): ValueError "Queue <...> is closed" (multiprocessing's
    message) from put/get; close twice is fine. Closing the child's copy
    changes nothing for the parent."""
    q = qcls()
    start(_check_closed, q).finish()
    assert q.get(timeout=TIMEOUT) == "kept"
    q.put("still")
    assert q.get(timeout=TIMEOUT) == "still"
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)


def _get_expect(q, want):
    got = [q.get(timeout=TIMEOUT) for _ in want]
    assert got == want, got
    q.put("from child")
    assert q.get(timeout=TIMEOUT) == "from child"


def test_queue_parent_closes_right_after_start(start, qcls):
    """The parent puts, starts a child with the queue and closes its own
    copy at once: the child still gets everything (under spawn too, where
    the child unpickles the queue after the parent closed it)."""
    q = qcls()
    want = ["a", "b", "c"]
    for x in want:
        q.put(x)
    child = start(_get_expect, q, want)
    q.close()
    q.join_thread()
    child.finish()


def _join_thread_rules(q):
    q.cancel_join_thread()      # allowed before close, as multiprocessing
    try:
        q.join_thread()         # multiprocessing: an assert, before close
    except AssertionError:
        pass
    else:
        raise AssertionError("join_thread() before close() did not raise "
                             "AssertionError")
    q.put(1)
    q.close()
    assert q.join_thread() is None
    assert q.join_thread() is None


def test_queue_join_thread_cancel_join_thread(start, qcls):
    """close()/join_thread()/cancel_join_thread() exist and never hang; what
    was put before close() stays for the other processes."""
    q = qcls()
    start(_join_thread_rules, q).finish()
    assert q.get(timeout=TIMEOUT) == 1
    q.close()
    assert q.join_thread() is None


def _put_unpicklable(q):
    q.put("before")
    # multiprocessing raises this in its feeder thread (printed, the object
    # silently lost); mproc is better: put raises, the queue is unchanged.
    local = lambda: 0  # noqa: E731 - a local lambda cannot be pickled
    try:
        q.put(local)
    except (pickle.PicklingError, AttributeError, TypeError):
        pass
    else:
        raise AssertionError("put of an unpicklable object did not raise")
    assert q.qsize() == 1
    q.put("after")


def test_queue_unpicklable_object_raises_in_put(start, qcls):
    """Better than multiprocessing: pickling errors come from put itself."""
    q = qcls()
    start(_put_unpicklable, q).finish()
    assert q.get(timeout=TIMEOUT) == "before"
    assert q.get(timeout=TIMEOUT) == "after"
    assert q.empty()


# --- JoinableQueue ----------------------------------------------------


def _consume_on_go(q, n, go):
    items = [q.get(timeout=TIMEOUT) for _ in range(n)]
    assert items == list(range(n))
    wait_event(go, "go")
    for _ in range(n):
        q.task_done()


def _join_and_tell(q, joined):
    q.join()
    joined.set()


def test_joinable_task_done_join(start, ctx):
    """join() waits until every object put had its task_done()."""
    q = mproc.JoinableQueue()
    go, joined = ctx.Event(), ctx.Event()
    for i in range(10):
        q.put(i)
    consumer = start(_consume_on_go, q, 10, go)
    joiner = start(_join_and_tell, q, joined)
    assert not joined.wait(0.3), "join() returned with tasks unfinished"
    go.set()
    wait_event(joined, "join() to return")
    consumer.finish()
    joiner.finish()
    start(_join_and_tell, q, ctx.Event()).finish()  # nothing left: at once


def _task_done_too_often(q):
    msg = "task_done() called too many times"
    try:
        q.task_done()
    except ValueError as e:
        assert str(e) == msg, str(e)
    else:
        raise AssertionError("task_done() on a fresh queue did not raise")
    q.put("t")
    assert q.get(timeout=TIMEOUT) == "t"
    q.task_done()
    try:
        q.task_done()
    except ValueError as e:
        assert str(e) == msg, str(e)
    else:
        raise AssertionError("a second task_done() did not raise")
    q.join()    # all done: returns at once


def test_joinable_task_done_too_many_times(start):
    """task_done() more often than objects taken: ValueError, with
    multiprocessing's message."""
    start(_task_done_too_often, mproc.JoinableQueue()).finish()


def _take_and_hold(q, taken, release):
    assert q.get(timeout=TIMEOUT) == "job"
    taken.set()
    wait_event(release, "release")


def test_joinable_task_done_from_another_process(start, ctx):
    """As multiprocessing allows, the parent may call task_done() for an
    object a (live) child took."""
    q = mproc.JoinableQueue()
    taken, release = ctx.Event(), ctx.Event()
    q.put("job")
    child = start(_take_and_hold, q, taken, release)
    wait_event(taken, "the child to take the job")
    q.task_done()
    start(_join_and_tell, q, ctx.Event()).finish()
    with pytest.raises(ValueError):
        q.task_done()
    release.set()
    child.finish()


def _take_one_and_wait(q, taken):
    q.get(timeout=TIMEOUT)
    taken.set()
    time.sleep(TIMEOUT)          # killed long before this ends


def test_joinable_killed_consumer_does_not_wedge_join(start, ctx):
    """Better than multiprocessing (where join() then hangs for ever): a
    consumer SIGKILLed after get() and before task_done() does not hold
    join()."""
    q = mproc.JoinableQueue()
    taken = ctx.Event()
    q.put("job")
    victim = start(_take_one_and_wait, q, taken)
    wait_event(taken, "the victim to take its job")
    victim.kill()
    start(_join_and_tell, q, ctx.Event()).finish()


def _joined_in_time(q, done):
    # What join(timeout) returns is checked by the parent.
    r = q.join(timeout=TIMEOUT)
    done.set()
    assert r is None or r is True, r


def test_joinable_join_with_timeout(start, ctx):
    """Extension: join(timeout) gives up after timeout seconds with
    unfinished tasks (TimeoutError), and returns when they are done."""
    q = mproc.JoinableQueue()
    assert q.join(timeout=0) in (None, True)        # nothing put
    q.put("job")
    for t in (0, 0.05, -1):
        with pytest.raises(TimeoutError):
            q.join(timeout=t)
    done = ctx.Event()
    joiner = start(_joined_in_time, q, done)
    assert q.get(timeout=TIMEOUT) == "job"
    q.task_done()
    joiner.finish()
    assert q.join(timeout=0.01) in (None, True)


# --- A process killed while it uses the queue --------------------------

# The victims write what they took to a raw pipe as fixed-size records
# (one os.write of 8 bytes is atomic, so a kill never leaves half a record).
_REC = struct.Struct("<HHI")     # tag code, whole (1/0), seq
_TAGS = {"p": 1, "v1": 2, "v2": 3, "v3": 4}
_CODES = {v: k for k, v in _TAGS.items()}


def _payload(tag, i):
    return (tag.encode() * 5000)[: i % 5000]


def _whole(x):
    tag, i, b = x
    return b == _payload(tag, i)


def _victim_loop(q, tag, started):
    # put/get in a loop until killed.
    deadline = time.monotonic() + TIMEOUT
    i = 0
    while time.monotonic() < deadline:
        q.put((tag, i, _payload(tag, i)))
        assert _whole(q.get(timeout=TIMEOUT))
        i += 1
        if i == 300:
            started.set()


def _victim_putter(q, tag, started):
    deadline = time.monotonic() + TIMEOUT
    i = 0
    while time.monotonic() < deadline:
        q.put((tag, i, _payload(tag, i)))
        i += 1
        if i == 100:
            started.set()


def _victim_taker(q, report, started):
    # Takes objects and reports each one taken, until killed.
    fd = report.fileno()
    deadline = time.monotonic() + TIMEOUT
    n = 0
    while time.monotonic() < deadline:
        try:
            x = q.get(timeout=0.05)
        except queue.Empty:
            continue
        os.write(fd, _REC.pack(_TAGS.get(x[0], 0), _whole(x), x[1]))
        n += 1
        if n == 50:
            started.set()


def _producer(q, n, halfway):
    for i in range(n):
        q.put(("p", i, _payload("p", i)))
        if i == n // 2:
            halfway.set()


def _consume_until_stop(q, out):
    got = []
    while True:
        x = q.get(timeout=TIMEOUT)
        if x[0] == "stop":
            break
        got.append((x[0], x[1], _whole(x)))
    out.put(got)


def _drain(q):
    """Everything left in q, taken without waiting."""
    left = []
    while True:
        try:
            left.append(q.get(timeout=0))
        except queue.Empty:
            return left


def _read_records(r):
    data = b""
    while r.poll(0):
        chunk = os.read(r.fileno(), 1 << 16)
        if not chunk:
            break
        data += chunk
    assert len(data) % _REC.size == 0, "a torn report record"
    return [(_CODES.get(c, "?"), i, bool(w))
            for c, w, i in _REC.iter_unpack(data)]


def test_queue_sigkill_mid_loop(start, qcls, ctx):
    """Processes SIGKILLed in the middle of put/get loops: the queue goes
    on working for the others, nothing wedges, nothing torn is seen, and
    every object put is delivered (at most the one the killed taker had
    taken and not yet reported is unaccounted for)."""
    q = qcls(maxsize=32)
    # 1. Two processes in a put/get loop, killed in the middle of it.
    s1, s2 = ctx.Event(), ctx.Event()
    victims = [start(_victim_loop, q, "v1", s1),
               start(_victim_loop, q, "v2", s2)]
    wait_event(s1, "victim 1")
    wait_event(s2, "victim 2")
    for v in victims:
        v.kill()
    left = _drain(q)
    assert all(x[0] in ("v1", "v2") and _whole(x) for x in left)
    assert q.qsize() == 0 and q.empty()

    # 2. A producer and a consumer at work while a taker and another
    # producer are killed in the middle of their loops.
    n = 3000
    s3, s4, half = ctx.Event(), ctx.Event(), ctx.Event()
    rep_r, rep_w = ctx.Pipe(duplex=False)
    out = ctx.Queue()
    taker = start(_victim_taker, q, rep_w, s3)
    putter = start(_victim_putter, q, "v3", s4)
    rep_w.close()
    cons = start(_consume_until_stop, q, out)
    prod = start(_producer, q, n, half)
    for ev, what in ((s3, "the taker"), (s4, "the putter"),
                     (half, "the producer")):
        wait_event(ev, what)
    taker.kill()
    putter.kill()
    prod.finish()
    q.put(("stop", 0, b""), timeout=TIMEOUT)
    got = out.get(timeout=TIMEOUT)
    cons.finish()
    stolen = _read_records(rep_r)
    left = [(t, i, _whole((t, i, b))) for t, i, b in _drain(q)]
    assert all(w for _, _, w in got + stolen + left), "a torn object"
    assert all(t in ("p", "v3") for t, _, _ in got + stolen + left)
    mine = [i for t, i, _ in got + left if t == "p"]
    assert len(mine) == len(set(mine)), "an object was delivered twice"
    theirs = {i for t, i, _ in stolen if t == "p"}
    missing = set(range(n)) - set(mine) - theirs
    assert len(missing) <= 1, sorted(missing)[:10]

    # 3. The queue still works, for the parent and for a new child.
    q.put("alive")
    assert q.get(timeout=TIMEOUT) == "alive"
    prod = start(_producer, q, 200, ctx.Event())
    assert [q.get(timeout=TIMEOUT)[1] for _ in range(200)] == list(range(200))
    prod.finish()
    assert q.empty()


# ---------------------------------------------------------------------
# Pipe and Connection
# ---------------------------------------------------------------------

STOP = "--stop--"


def _echo_conn(c):
    while True:
        assert c.poll(TIMEOUT), "nothing to echo"
        obj = c.recv()
        if obj == STOP:
            break
        c.send(obj)
    c.close()


def test_pipe_objects_round_trip(start):
    """send/recv of many types to a child and back (duplex=True)."""
    a, b = mproc.Pipe()
    child = start(_echo_conn, b)
    b.close()
    for o in samples():
        a.send(o)
        got = a.recv()
        assert type(got) is type(o) and got == o
    a.send(STOP)
    child.finish()
    a.close()


def _one_way_child(r, w):
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv()
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv_bytes()
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv_bytes_into(bytearray(8))
    with pytest.raises(OSError, match="connection is write-only"):
        w.poll()
    with pytest.raises(OSError, match="connection is read-only"):
        r.send(1)
    with pytest.raises(OSError, match="connection is read-only"):
        r.send_bytes(b"x")
    for o in samples():
        w.send(o)
    w.send_bytes(b"raw")
    w.close()


def test_pipe_one_way(start):
    """Pipe(duplex=False): (reader, writer), readable/writable and the
    OSErrors on the wrong direction as multiprocessing's."""
    r, w = mproc.Pipe(duplex=False)
    assert r.readable and not r.writable and w.writable and not w.readable
    child = start(_one_way_child, r, w)
    w.close()
    for o in samples():
        assert r.poll(TIMEOUT)
        assert r.recv() == o
    assert r.recv_bytes() == b"raw"
    child.finish()
    with pytest.raises(EOFError):
        r.recv()
    r.close()


def test_pipe_checks_in_multiprocessing_order():
    """As multiprocessing: a closed handle, then the direction, are checked
    before the arguments (OSError, not ValueError)."""
    r, w = mproc.Pipe(duplex=False)
    with pytest.raises(OSError, match="connection is read-only"):
        r.send_bytes(b"x", 5)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv_bytes_into(bytearray(2), -1)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv_bytes(-1)
    r.close()
    w.close()
    with pytest.raises(OSError, match="handle is closed"):
        r.recv_bytes(-1)
    with pytest.raises(OSError, match="handle is closed"):
        w.send_bytes(b"x", 5)


def _poll_child(c, ready):
    # Nothing there yet: poll() and poll(t <= 0) answer at once, poll(t)
    # after t seconds.
    assert c.poll() is False
    assert c.poll(0) is False
    assert c.poll(0.0) is False
    assert c.poll(-1) is False
    assert c.poll(0.05) is False
    ready.set()
    assert c.poll(None) is True          # waits for the parent's send
    assert c.poll() is True              # poll consumes nothing
    assert c.poll(0) is True
    assert c.recv() == "one"
    assert c.poll(TIMEOUT) is True
    assert c.recv() == "two"
    assert c.poll() is False
    c.send("done")


def test_pipe_poll_timeout_rules(start, ctx):
    """poll() does not wait, poll(None) waits, poll(t) waits t seconds."""
    a, b = mproc.Pipe()
    ready = ctx.Event()
    child = start(_poll_child, b, ready)
    b.close()
    wait_event(ready, "the child to poll")
    a.send("one")
    a.send("two")
    assert a.poll(TIMEOUT) and a.recv() == "done"
    child.finish()


def _bytes_child(c):
    m = bytes(range(256))
    c.send_bytes(m)
    c.send_bytes(m, 10)
    c.send_bytes(m, 10, 20)
    c.send_bytes(m, 0, 0)
    c.send_bytes(m, 256)
    c.send_bytes(b"")
    c.send_bytes(bytearray(b"bytearray"), 1, 3)
    c.send_bytes(memoryview(m)[100:120], 5)
    c.send_bytes(array.array("i", [1, 2, 3, 4]), 4, 8)  # bytes, not items
    for args in ((m, -1), (m, 257), (m, 10, -1), (m, 250, 7)):
        with pytest.raises(ValueError):
            c.send_bytes(*args)
    c.send_bytes(b"end")


def test_pipe_send_bytes_offset_size(start):
    """send_bytes(buf, offset, size) with multiprocessing's rules (offset
    and size in bytes, ValueError outside the buffer)."""
    a, b = mproc.Pipe()
    child = start(_bytes_child, b)
    b.close()
    m = bytes(range(256))
    want = [m, m[10:], m[10:30], b"", b"", b"", b"yte", m[105:120],
            array.array("i", [2, 3]).tobytes(), b"end"]
    for w in want:
        assert a.poll(TIMEOUT)
        assert a.recv_bytes() == w
    child.finish()


def _send_sizes(c, sizes):
    for n in sizes:
        c.send_bytes(b"m" * n)


def test_pipe_recv_bytes_maxlength(start):
    """recv_bytes(maxlength): the message if it fits, OSError over it,
    ValueError for a negative maxlength."""
    a, b = mproc.Pipe()
    child = start(_send_sizes, b, [10, 10, 10, 100])
    b.close()
    with pytest.raises(ValueError, match="negative maxlength"):
        a.recv_bytes(-1)
    assert a.recv_bytes(10) == b"m" * 10
    assert a.recv_bytes(11) == b"m" * 10
    assert a.recv_bytes(None) == b"m" * 10
    child.finish()
    with pytest.raises(OSError, match="bad message length"):
        a.recv_bytes(99)
    # Better than multiprocessing (whose connection is then unusable):
    # the message stays, for a large enough buffer.
    assert a.recv_bytes(100) == b"m" * 100
    a.close()


def test_pipe_recv_bytes_into(start):
    """recv_bytes_into(buf, offset): the size read, the bytes at offset;
    multiprocessing.BufferTooShort (holding the message) when it does not
    fit; ValueError for a bad offset."""
    a, b = mproc.Pipe()
    child = start(_send_sizes, b, [6, 6, 6, 6])
    b.close()
    buf = bytearray(10)
    assert a.recv_bytes_into(buf) == 6
    assert buf == b"mmmmmm\0\0\0\0"
    buf = bytearray(10)
    assert a.recv_bytes_into(buf, 4) == 6
    assert buf == b"\0\0\0\0mmmmmm"
    mv = memoryview(bytearray(8))
    assert a.recv_bytes_into(mv, 1) == 6 and bytes(mv) == b"\0mmmmmm\0"
    with pytest.raises(ValueError, match="negative offset"):
        a.recv_bytes_into(bytearray(10), -1)
    with pytest.raises(ValueError, match="offset too large"):
        a.recv_bytes_into(bytearray(10), 11)
    with pytest.raises(multiprocessing.BufferTooShort) as e:
        a.recv_bytes_into(bytearray(5))
    assert e.value.args[0] == b"m" * 6
    child.finish()


def _send_on_go(c, go):
    wait_event(go, "go")
    c.send("ping")
    assert c.poll(TIMEOUT) and c.recv() == "pong"


def test_pipe_fileno_select_and_wait(start, ctx):
    """fileno() is a descriptor that select() and
    multiprocessing.connection.wait() see readable when a message came."""
    a, b = mproc.Pipe()
    go = ctx.Event()
    child = start(_send_on_go, b, go)
    b.close()
    fd = a.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert select.select([fd], [], [], 0)[0] == []
    assert multiprocessing.connection.wait([a], 0) == []
    go.set()
    assert select.select([fd], [], [], TIMEOUT)[0] == [fd]
    assert multiprocessing.connection.wait([a], TIMEOUT) == [a]
    assert a.recv() == "ping"
    a.send("pong")
    child.finish()


def _send_burst(c, n, sent):
    for i in range(n):
        c.send(("burst", i))
    c.send_bytes(b"raw end")
    sent.set()
    assert c.poll(TIMEOUT) and c.recv() == "bye"


def test_pipe_wait_sees_every_message(start, ctx):
    """The multiprocessing loop "wait for readable, recv one" gets every
    message: after a recv, the connection still polls readable (select
    on fileno(), multiprocessing.connection.wait) while messages are
    left, however many arrived at once."""
    a, b = mproc.Pipe()
    sent = ctx.Event()
    child = start(_send_burst, b, 5, sent)
    b.close()
    wait_event(sent, "the burst")
    # Everything was sent: each wait should answer at once; 2 s bounds a
    # failure.
    got = []
    for _ in range(5):
        ready = multiprocessing.connection.wait([a], 2)
        assert ready == [a], "wait() missed a message after %d" % len(got)
        got.append(a.recv())
    assert got == [("burst", i) for i in range(5)]
    ready = select.select([a.fileno()], [], [], 2)[0]
    assert ready == [a.fileno()], "select() on fileno() missed a message"
    assert a.recv_bytes() == b"raw end"
    assert multiprocessing.connection.wait([a], 0) == []
    a.send("bye")
    child.finish()


def _use_passed_end(c):
    d = c.recv()                    # a Connection, sent over a Connection
    d.send("through the passed end")
    assert d.recv() == "back"
    d.close()


def test_pipe_end_sent_over_a_pipe(start):
    """As multiprocessing's, a Connection can be sent over another
    Connection to a running process, which then uses it."""
    a, b = mproc.Pipe()
    c, d = mproc.Pipe()
    child = start(_use_passed_end, b)
    b.close()
    a.send(d)
    d.close()
    assert c.poll(TIMEOUT)
    assert c.recv() == "through the passed end"
    c.send("back")
    child.finish()


def _all_ops_closed(c):
    assert c.closed
    ops = {
        "send": lambda: c.send(1), "recv": c.recv, "poll": c.poll,
        "send_bytes": lambda: c.send_bytes(b"x"), "recv_bytes": c.recv_bytes,
        "recv_bytes_into": lambda: c.recv_bytes_into(bytearray(4)),
        "fileno": c.fileno,
    }
    for what, op in ops.items():
        try:
            op()
        except OSError as e:
            assert "handle is closed" in str(e), (what, str(e))
        else:
            raise AssertionError(what + " on a closed connection did not "
                                 "raise OSError")
    c.close()        # twice: harmless
    assert c.closed


def _close_and_check(c):
    assert not c.closed
    assert c.readable and c.writable
    c.close()
    _all_ops_closed(c)
    assert c.readable and c.writable   # the properties stay, as in mp


def test_pipe_close_closed_oserror(start):
    """close(), closed, and OSError "handle is closed" from every call on a
    closed connection; the peer then sees EOFError."""
    a, b = mproc.Pipe()
    child = start(_close_and_check, b)
    b.close()
    child.finish()
    assert a.poll(TIMEOUT)
    with pytest.raises(EOFError):
        a.recv()
    a.close()
    _all_ops_closed(a)


def _with_child(c):
    with c as same:
        assert same is c
        c.send("inside")
    assert c.closed


def test_pipe_context_manager(start):
    """with conn: ... closes it; __enter__ returns the connection."""
    a, b = mproc.Pipe()
    child = start(_with_child, b)
    b.close()
    with a:
        assert a.recv() == "inside"
        child.finish()
        with pytest.raises(EOFError):
            a.recv()
    assert a.closed
    r, w = mproc.Pipe(duplex=False)
    with r, w:
        w.send(1)
        assert r.recv() == 1
    assert r.closed and w.closed


def _send_three_and_exit(c):
    for i in range(3):
        c.send(i)
    c.send_bytes(b"last")
    # exit without close(): the process going closes it


def test_pipe_eof_when_peer_closed(start):
    """What the peer sent before it went is still read; then poll() is
    true and recv/recv_bytes raise EOFError; send raises OSError."""
    a, b = mproc.Pipe()
    child = start(_send_three_and_exit, b)
    b.close()
    child.finish()
    assert [a.recv() for _ in range(3)] == [0, 1, 2]
    assert a.recv_bytes() == b"last"
    assert a.poll() is True
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(EOFError):
        a.recv_bytes()
    with pytest.raises(EOFError):
        a.recv_bytes_into(bytearray(8))
    with pytest.raises(OSError):
        a.send("nobody there")
    a.close()


def _recv_expect_eof(c, other, ready):
    other.close()    # this process's copy of the other end (fork: inherited)
    ready.set()
    try:
        c.recv()
    except EOFError:
        pass
    else:
        raise AssertionError("recv did not raise EOFError")


def test_pipe_blocked_recv_wakes_on_peer_close(start, ctx):
    """A child blocked in recv() gets EOFError when the last other copy of
    the peer end closes: nothing wedges."""
    a, b = mproc.Pipe()
    ready = ctx.Event()
    child = start(_recv_expect_eof, b, a, ready)
    b.close()
    wait_event(ready, "the child to wait")
    a.close()
    child.finish()


def _big_echo(c, n):
    buf = bytearray(n + 16)
    assert c.recv_bytes_into(buf, 16) == n
    c.send_bytes(buf, 16)
    obj = c.recv()
    c.send(obj)


def test_pipe_large_messages(start):
    """A 64 MiB message through the pipe both ways (send_bytes with an
    offset, recv_bytes_into and recv_bytes), and a 20 MiB pickled object
    (multiprocessing's pipe takes them; the C pipe's frames stop at
    16 MiB)."""
    n = 64 << 20
    big = bytes(range(256)) * (n // 256)
    a, b = mproc.Pipe()
    child = start(_big_echo, b, n)
    b.close()
    a.send_bytes(b"head" + big, 4)
    assert a.recv_bytes(n) == big
    obj = {"blob": big[: 20 << 20], "list": list(range(1000))}
    a.send(obj)
    assert a.recv() == obj
    child.finish()
    a.close()


def _ping_pong(c, n):
    for i in range(n):
        assert c.recv() == ("ping", i)
        c.send(("pong", i))


def test_pipe_both_ends_duplex(start):
    """Both ends send and receive (duplex=True), many round trips."""
    a, b = mproc.Pipe(duplex=True)
    child = start(_ping_pong, b, 500)
    b.close()
    for i in range(500):
        a.send(("ping", i))
        assert a.poll(TIMEOUT)
        assert a.recv() == ("pong", i)
    child.finish()


# ---------------------------------------------------------------------
# Same methods and signatures as multiprocessing's
# ---------------------------------------------------------------------

def _same_signature(ours, theirs, what):
    """Every parameter of theirs is in ours, with its name, kind and
    default, in the same order; ours may add parameters with defaults
    (after theirs), so every call that works on theirs works on ours."""
    a = inspect.signature(ours).parameters
    b = inspect.signature(theirs).parameters
    for name, p in b.items():
        if name in ("self", "ctx"):
            continue
        assert name in a, "%s: no parameter %r" % (what, name)
        q = a[name]
        assert q.kind == p.kind, "%s(%s): kind %s" % (what, name, q.kind)
        assert q.default == p.default, "%s(%s): default %r, not %r" % (
            what, name, q.default, p.default)
    extra = [n for n in a if n not in b and n != "self"]
    for n in extra:
        assert a[n].default is not inspect.Parameter.empty or a[n].kind in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD), \
            "%s: extra parameter %r has no default" % (what, n)
    names = list(a)
    for n in extra:
        if a[n].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert all(names.index(n) > names.index(m) for m in b
                       if m in a and b[m].kind ==
                       inspect.Parameter.POSITIONAL_OR_KEYWORD), \
                "%s: extra parameter %r before theirs" % (what, n)
    order = [n for n in a if n in b]
    assert order == [n for n in b if n in a], "%s: order %s" % (what, order)


@pytest.mark.parametrize("ours,theirs", [
    ("Queue", multiprocessing.queues.Queue),
    ("JoinableQueue", multiprocessing.queues.JoinableQueue)])
def test_queue_methods_and_signatures(ours, theirs):
    """mproc's queues have every public method of multiprocessing's, with
    the same parameters (names, kinds, defaults)."""
    cls = getattr(mproc, ours)
    _same_signature(cls.__init__, theirs.__init__, ours)
    public = [n for n in dir(theirs) if not n.startswith("_")]
    for n in public:
        assert hasattr(cls, n), "%s has no %s" % (ours, n)
        _same_signature(getattr(cls, n), getattr(theirs, n),
                        "%s.%s" % (ours, n))
    assert issubclass(mproc.JoinableQueue, mproc.Queue)


def test_pipe_methods_and_signatures():
    """mproc.Pipe(duplex=True) and its Connection have multiprocessing's
    API: every public method with the same parameters, and the closed,
    readable and writable properties."""
    _same_signature(mproc.Pipe, multiprocessing.connection.Pipe, "Pipe")
    a, b = mproc.Pipe()
    theirs = multiprocessing.connection.Connection
    for n in [n for n in dir(theirs) if not n.startswith("_")]:
        assert hasattr(a, n), "Connection has no " + n
        if callable(getattr(theirs, n)):
            _same_signature(getattr(a, n), getattr(theirs, n),
                            "Connection." + n)
    for n in ("__enter__", "__exit__"):
        assert hasattr(a, n)
    assert (a.closed, a.readable, a.writable) == (False, True, True)
    a.close()
    b.close()


# ---------------------------------------------------------------------
# Threads, fork with a thread inside a call, large objects, leftovers
# ---------------------------------------------------------------------


def _thread_puts_and_gets(q, out, n, nthreads):
    import threading
    got = []
    lock = threading.Lock()

    def producer(t):
        for i in range(n):
            q.put((t, i))

    def consumer():
        for _ in range(n):
            x = q.get(timeout=TIMEOUT)
            with lock:
                got.append(x)
    threads = [threading.Thread(target=producer, args=(t,))
               for t in range(nthreads)]
    threads += [threading.Thread(target=consumer) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a thread hung"
    out.put(sorted(got))


def test_queue_threads_in_processes(start, qcls, ctx):
    """As multiprocessing's, the queue may be used by several threads of
    each process at once: 4 producer and 4 consumer threads in the parent
    and in a child, every object once."""
    q, out = qcls(maxsize=64), ctx.Queue()
    n, nt = 300, 4
    child = start(_thread_puts_and_gets, q, out, n, nt)
    _thread_puts_and_gets(q, out, n, nt)
    both = out.get(timeout=TIMEOUT) + out.get(timeout=TIMEOUT)
    child.finish()
    assert sorted(both) == sorted([(t, i) for t in range(nt)
                                   for i in range(n)] * 2)


def _use_after_go(q_empty, q_full, go):
    wait_event(go, "go")
    q_empty.put("c", timeout=TIMEOUT)
    assert q_empty.get(timeout=TIMEOUT) == "c"
    assert q_full.get(timeout=TIMEOUT) == "second"
    q_full.put("third", timeout=TIMEOUT)


def test_queue_fork_while_threads_wait_inside(qcls):
    """fork while other threads of the parent are blocked inside get() and
    put(): the forked child's own get and put on the same objects work
    (no lock is inherited held)."""
    import threading
    ctx = multiprocessing.get_context("fork")
    q_empty, q_full = qcls(), qcls(maxsize=1)
    q_full.put("first")
    got = []
    t1 = threading.Thread(target=lambda: got.append(
        q_empty.get(timeout=TIMEOUT)))
    t2 = threading.Thread(target=lambda: q_full.put("second",
                                                    timeout=TIMEOUT))
    t1.start()
    t2.start()
    # Give the threads time to enter their calls (the test is right
    # either way; this only makes the case it is about likely).
    time.sleep(0.2)
    go = ctx.Event()
    child = Child(ctx, _use_after_go, q_empty, q_full, go)
    try:
        q_empty.put("for the thread")
        assert q_full.get(timeout=TIMEOUT) == "first"
        t1.join(TIMEOUT)
        t2.join(TIMEOUT)
        assert not t1.is_alive() and not t2.is_alive()
        assert got == ["for the thread"]
        go.set()
        child.finish()
        assert q_full.get(timeout=TIMEOUT) == "third"
    finally:
        child.kill()
        if t1.is_alive():
            q_empty.put("unblock")
        if t2.is_alive():
            q_full.get(timeout=TIMEOUT)
        t1.join(TIMEOUT)
        t2.join(TIMEOUT)


def _spill_files():
    d = os.environ.get("MPROC_DIR") or "/dev/shm/mproc-%d" % os.geteuid()
    try:
        return sorted(n for n in os.listdir(d) if "spill" in n)
    except FileNotFoundError:
        return []


BIG = 12 << 20     # over the queue's largest in-ring payload


def _put_big(q, n, size):
    for i in range(n):
        q.put(bytes([i]) * size, timeout=TIMEOUT)


def test_queue_large_objects(start, qcls):
    """Objects of tens of MB (larger than the shared ring takes at once)
    go through the queue whole, in order, and leave no file behind."""
    before = _spill_files()
    q = qcls()
    child = start(_put_big, q, 3, BIG)
    for i in range(3):
        x = q.get(timeout=TIMEOUT)
        assert len(x) == BIG and x == bytes([i]) * BIG
    child.finish()
    assert _spill_files() == before


def _failed_puts(q):
    q.put("small")
    try:
        q.put(b"x" * BIG, timeout=0)
    except queue.Full:
        pass
    else:
        raise AssertionError("put into a full queue did not raise Full")
    try:
        q.put(b"x" * BIG, block=False)
    except queue.Full:
        pass
    else:
        raise AssertionError("put into a full queue did not raise Full")
    assert q.qsize() == 1
    q.close()
    try:
        q.put(b"x" * BIG)
    except ValueError as e:
        assert "is closed" in str(e)
    else:
        raise AssertionError("put after close did not raise")


def _put_unpicklable_after_close(q):
    q.close()
    try:
        q.put(lambda: 0)
    except ValueError as e:
        assert str(e) == "Queue %r is closed" % (q,)
    else:
        raise AssertionError("put after close did not raise ValueError")


def test_queue_closed_checked_before_pickling(start, qcls):
    """As multiprocessing: put on a closed queue raises ValueError "is
    closed" whatever the object (even one that cannot be pickled)."""
    start(_put_unpicklable_after_close, qcls()).finish()


def test_queue_failed_put_of_large_object_leaves_nothing(start, qcls):
    """A put that raised (queue.Full, or ValueError after close) changes
    nothing: no object, and no file left behind for a large one."""
    before = _spill_files()
    q = qcls(maxsize=1)
    start(_failed_puts, q).finish()
    assert q.get(timeout=TIMEOUT) == "small" and q.empty()
    assert _spill_files() == before


def test_queue_closed_with_large_objects_leaves_nothing(start, qcls):
    """Large objects left in a queue when its last handle closes go with
    it: no file is left behind (as nothing outlives the queue)."""
    before = _spill_files()
    q = qcls()
    start(_put_big, q, 2, BIG).finish()
    assert q.qsize() == 2
    q.close()
    assert _spill_files() == before


def _get_and_put_back(qq):
    inner = qq.get(timeout=TIMEOUT)
    inner.put(("via", inner.get(timeout=TIMEOUT)))


def test_queue_through_a_queue(start, qcls):
    """Better than multiprocessing (RuntimeError there): a queue can be
    sent through another queue, and works in the receiving process."""
    outer, inner = qcls(), qcls()
    child = start(_get_and_put_back, outer)
    inner.put("hello")
    outer.put(inner)
    child.finish()
    assert inner.get(timeout=TIMEOUT) == ("via", "hello")
