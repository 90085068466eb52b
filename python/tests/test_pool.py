"""Tests of mproc.Pool (python/mproc/pool.py).

Tasks that must be mid-run when something happens wait on a Gate (pipes
made before the pool, so every worker, replacements included, inherits
them): each run reports (index, pid) on one pipe, then waits for a byte on
the other. Every wait has a timeout.
"""

import gc
import itertools
import logging
import multiprocessing
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import reap

from mproc.pool import (Pool, WorkerDied, RemoteTraceback, TimeoutError,
                        PoolStats)

T = 30  # seconds: the bound on every wait in these tests
REC = struct.Struct("ii")


# ---- task functions (module level: pickled by name) ----------------------

def square(x):
    return x * x


def add(a, b):
    return a + b


def fail(x):
    raise ValueError(f"bad {x}")


def kill_self(_x=None):
    os.kill(os.getpid(), signal.SIGKILL)


def getpid(_x=None):
    return os.getpid()


def echo(*args, **kwargs):
    return args, kwargs


def exit_task(code):
    sys.exit(code)


def pool_in_task(n):
    with Pool(2) as p:
        return p.map(square, range(n))


def big_result(n):
    return b"x" * n


def unpicklable_result(_x=None):
    return threading.Lock()


class OddError(Exception):
    """An exception that pickles but does not unpickle (two required
    arguments, one passed to Exception)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_odd(_x=None):
    raise OddError("a", "b")


_init_value = None


def init(value, w):
    global _init_value
    _init_value = value
    os.write(w, REC.pack(-1, os.getpid()))


def init_value(_x=None):
    return os.getpid(), _init_value


def init_fails(*_a):
    raise KeyError("no init")


def gated(i, started_w, gate_r):
    """Report (i, pid), wait for a byte on the gate, return i."""
    os.write(started_w, REC.pack(i, os.getpid()))
    deadline = time.monotonic() + T
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("the gate never opened")
        r, _, _ = select.select([gate_r], [], [], left)
        if r:
            try:
                os.read(gate_r, 1)
                return i
            except BlockingIOError:
                pass  # another worker took that byte


# ---- helpers ---------------------------------------------------------------

class Gate:
    """Two pipes: workers report on started, then wait on the gate."""

    def __init__(self):
        self.started_r, self.started_w = os.pipe()
        self.gate_r, self.gate_w = os.pipe()
        os.set_blocking(self.gate_r, False)

    def args(self, i):
        return (i, self.started_w, self.gate_r)

    def wait_started(self, n, pool=None):
        """The next n (index, pid) reports. With pool: drive it meanwhile
        (the pool has no thread: it replaces a dead worker, and hands its
        task to another, only when called)."""
        out, buf = [], b""
        deadline = time.monotonic() + T
        while len(out) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(out)} of {n} tasks started"
            if pool is not None:
                pool.stats()
                left = min(left, 0.01)
            r, _, _ = select.select([self.started_r], [], [], left)
            if r:
                buf += os.read(self.started_r, REC.size * (n - len(out)))
                while len(buf) >= REC.size:
                    out.append(REC.unpack(buf[:REC.size]))
                    buf = buf[REC.size:]
        return out

    def open(self, n):
        os.write(self.gate_w, b"g" * n)

    def close(self):
        for fd in (self.started_r, self.started_w, self.gate_r, self.gate_w):
            os.close(fd)


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


def gone(pid):
    """Whether pid no longer names a live process of ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# ---- results and ordering ------------------------------------------------

def test_map_and_starmap_in_order():
    with Pool(3) as p:
        assert p.processes == 3
        assert p.map(square, range(100)) == [x * x for x in range(100)]
        for cs in (1, 7, 1000):
            assert p.map(square, range(50), chunksize=cs) == \
                [x * x for x in range(50)]
        assert p.map(square, iter(range(10))) == [x * x for x in range(10)]
        assert p.map(square, []) == []
        pairs = [(i, 10 * i) for i in range(40)]
        assert p.starmap(add, pairs) == [a + b for a, b in pairs]
        r = p.starmap_async(add, pairs, chunksize=3)
        assert r.get(timeout=T) == [a + b for a, b in pairs]
        with pytest.raises(ValueError):
            p.map(square, range(3), chunksize=0)


def test_imap_ordered_and_unordered():
    with Pool(3) as p:
        assert list(p.imap(square, range(60))) == [x * x for x in range(60)]
        assert list(p.imap(square, range(60), chunksize=7)) == \
            [x * x for x in range(60)]
        got = list(p.imap_unordered(square, range(60), chunksize=4))
        assert sorted(got) == [x * x for x in range(60)]
        it = p.imap(square, range(3))
        assert [it.next(timeout=T) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(StopIteration):
            it.next(timeout=T)
        assert list(p.imap(square, [])) == []
        with pytest.raises(ValueError):
            p.imap(square, range(3), chunksize=0)


def test_imap_reads_an_endless_iterable_lazily():
    with Pool(2) as p:
        it = p.imap(square, itertools.count())
        assert [next(it) for _ in range(200)] == [x * x for x in range(200)]
        it = p.imap_unordered(square, itertools.count(), chunksize=3)
        assert len({next(it) for _ in range(100)}) == 100


def test_imap_error_in_iterable_comes_at_its_place():
    def source():
        yield from range(5)
        raise KeyError("source")

    with Pool(2) as p:
        it = p.imap(square, source())
        assert [it.next(timeout=T) for _ in range(5)] == [0, 1, 4, 9, 16]
        with pytest.raises(KeyError):
            it.next(timeout=T)
        with pytest.raises(StopIteration):
            it.next(timeout=T)


def test_apply_async_callbacks_and_state(gate):
    with Pool(2) as p:
        assert p.apply(add, (2, 3)) == 5
        assert p.apply(echo, (1, 2), {"k": 3}) == ((1, 2), {"k": 3})
        got, errs = [], []
        r = p.apply_async(square, (9,), callback=got.append,
                          error_callback=errs.append)
        assert r.get(timeout=T) == 81
        assert got == [81] and errs == []
        assert r.ready() and r.successful()

        r = p.apply_async(fail, (1,), callback=got.append,
                          error_callback=errs.append)
        r.wait(timeout=T)
        assert r.ready() and not r.successful()
        assert len(errs) == 1 and isinstance(errs[0], ValueError)

        slow = p.apply_async(gated, gate.args(0))
        gate.wait_started(1)
        assert not slow.ready()
        with pytest.raises(ValueError):
            slow.successful()
        with pytest.raises(TimeoutError):
            slow.get(timeout=0.05)
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0)
        slow.wait(timeout=0.01)
        gate.open(1)
        assert slow.get(timeout=T) == 0


def test_callback_exception_is_logged_not_raised(caplog):
    def bad_callback(_v):
        raise RuntimeError("callback broke")

    with Pool(1) as p:
        with caplog.at_level(logging.ERROR, logger="mproc.pool"):
            r = p.apply_async(square, (3,), callback=bad_callback)
            assert r.get(timeout=T) == 9
        assert "callback broke" in caplog.text


def test_callbacks_run_once_per_task():
    with Pool(3) as p:
        seen = []
        rs = [p.apply_async(square, (i,), callback=seen.append)
              for i in range(200)]
        assert [r.get(timeout=T) for r in rs] == [i * i for i in range(200)]
        assert sorted(seen) == [i * i for i in range(200)]
        m = []
        p.map_async(square, range(10), callback=m.append).get(timeout=T)
        assert m == [[i * i for i in range(10)]]


# ---- exceptions ----------------------------------------------------------

def test_exceptions_propagate_with_remote_traceback():
    with Pool(2) as p:
        with pytest.raises(ValueError, match="bad 1") as ei:
            p.apply(fail, (1,))
        assert isinstance(ei.value.__cause__, RemoteTraceback)
        assert "in fail" in str(ei.value.__cause__)
        with pytest.raises(ValueError, match="bad"):
            p.map(fail, range(10))
        it = p.imap(fail, range(3))
        for i in range(3):
            with pytest.raises(ValueError, match=f"bad {i}"):
                it.next(timeout=T)
        # The pool is fine afterwards.
        assert p.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_results_and_errors_that_do_not_travel():
    with Pool(1, max_payload=4096) as p:
        with pytest.raises(TypeError, match="pickle"):
            p.apply(unpicklable_result)
        with pytest.raises(RuntimeError, match="OddError"):
            p.apply(raise_odd)
        with pytest.raises(ValueError, match="max_payload"):
            p.apply(big_result, (10000,))
        with pytest.raises(ValueError, match="max_payload"):
            p.apply(square, (b"y" * 10000,))
        with pytest.raises(Exception):   # a lambda does not pickle
            p.apply(lambda: 1)
        with pytest.raises(RuntimeError, match="SystemExit"):
            p.apply(exit_task, (3,))
        assert p.apply(big_result, (1000,)) == b"x" * 1000


# ---- initializer -----------------------------------------------------------

def test_initializer_runs_in_each_worker(gate):
    n = 3
    with Pool(n, initializer=init, initargs=("ready", gate.started_w)) as p:
        rs = [p.apply_async(gated, gate.args(i)) for i in range(n)]
        reports = gate.wait_started(2 * n)
        inits = {pid for i, pid in reports if i == -1}
        runs = {pid for i, pid in reports if i >= 0}
        assert inits == runs == set(p.worker_pids())
        gate.open(n)
        assert sorted(r.get(timeout=T) for r in rs) == list(range(n))
        for pid, value in p.map(init_value, range(30)):
            assert value == "ready"


def test_initializer_failure_fails_that_workers_tasks():
    with Pool(1, initializer=init_fails) as p:
        with pytest.raises(KeyError) as ei:
            p.apply(square, (2,))
        assert "initializer" in "".join(getattr(ei.value, "__notes__", []))


# ---- killed workers --------------------------------------------------------

def test_sigkill_mid_task_redelivers_exactly_once(gate):
    n, ntasks = 3, 30
    with Pool(n) as p:
        results = []
        rs = [p.apply_async(gated, gate.args(i), callback=results.append,
                            error_callback=results.append)
              for i in range(ntasks)]
        first = gate.wait_started(n)
        for _, pid in first:
            os.kill(pid, signal.SIGKILL)
        # The killed tasks run again on replacement workers.
        again = gate.wait_started(n, p)
        assert sorted(i for i, _ in again) == sorted(i for i, _ in first)
        assert not {pid for _, pid in again} & {pid for _, pid in first}
        gate.open(ntasks)
        assert [r.get(timeout=T) for r in rs] == list(range(ntasks))
        assert sorted(results) == list(range(ntasks))
        st = p.stats()
        assert isinstance(st, PoolStats)
        assert st.submitted == ntasks and st.finished == ntasks
        assert st.failed == 0 and st.pending == 0
        assert st.restarts >= n and st.redelivered >= n
        assert st.workers_alive == n
        assert p.map(square, range(10)) == [x * x for x in range(10)]


def test_fail_on_death_gives_worker_died(gate):
    n = 3
    with Pool(n, fail_on_death=True) as p:
        rs = [p.apply_async(gated, gate.args(i)) for i in range(2 * n)]
        first = dict(gate.wait_started(n))
        for pid in first.values():
            os.kill(pid, signal.SIGKILL)
        for i, pid in first.items():
            with pytest.raises(WorkerDied) as ei:
                rs[i].get(timeout=T)
            assert ei.value.pid == pid and ei.value.attempts == 1
            assert isinstance(ei.value, RuntimeError)
        gate.open(2 * n)
        for i, r in enumerate(rs):
            if i not in first:
                assert r.get(timeout=T) == i
        assert p.apply(square, (4,), ) == 16
        st = p.stats()
        assert st.failed == n and st.redelivered == 0


def test_task_that_always_kills_its_worker():
    with Pool(2, max_attempts=2) as p:
        with pytest.raises(WorkerDied) as ei:
            p.apply_async(kill_self).get(timeout=T)
        assert ei.value.attempts == 2
        with pytest.raises(WorkerDied):
            p.map(kill_self, range(4), chunksize=1)
        assert p.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_no_worker_left_fails_instead_of_hanging():
    with Pool(2, max_restarts=1, max_attempts=5) as p:
        with pytest.raises(WorkerDied):
            p.apply_async(kill_self).get(timeout=T)
        r = p.apply_async(square, (3,))
        with pytest.raises(WorkerDied, match="no worker"):
            r.get(timeout=T)
        assert p.stats().workers_alive == 0


def test_random_sigkills_every_task_gets_one_result():
    n, ntasks = 4, 400
    with Pool(n, max_restarts=100) as p:
        outcome = {}

        def record(i):
            def ok(v):
                assert i not in outcome
                outcome[i] = v
            return ok

        rs = [p.apply_async(square, (i,), callback=record(i),
                            error_callback=record(i)) for i in range(ntasks)]
        kills = 0
        for k, r in enumerate(rs):
            if k % 40 == 0 and kills < 8:
                pids = p.worker_pids()
                if pids:
                    os.kill(pids[k % len(pids)], signal.SIGKILL)
                    kills += 1
            try:
                assert r.get(timeout=T) == k * k
            except WorkerDied:
                pass
        assert sorted(outcome) == list(range(ntasks))
        for i, v in outcome.items():
            assert v == i * i or isinstance(v, WorkerDied)
        st = p.stats()
        assert st.submitted == st.finished + st.failed
        assert st.pending == 0
        assert p.map(square, range(10)) == [x * x for x in range(10)]


# ---- close, join, terminate -------------------------------------------------

def test_close_then_join_waits_for_everything(gate):
    p = Pool(2)
    rs = [p.apply_async(gated, gate.args(i)) for i in range(6)]
    m = p.map_async(square, range(20))
    it = p.imap(square, range(500))
    with pytest.raises(ValueError):
        p.join()
    p.close()
    with pytest.raises(ValueError):
        p.apply_async(square, (1,))
    with pytest.raises(ValueError):
        p.map(square, range(3))
    gate.wait_started(2)
    with pytest.raises(TimeoutError):
        p.join(timeout=0.1)
    pids = p.worker_pids()
    gate.open(6)
    p.join(timeout=T)
    assert [r.get(timeout=0) for r in rs] == list(range(6))
    assert m.get(timeout=0) == [x * x for x in range(20)]
    assert list(it) == [x * x for x in range(500)]
    assert p.worker_pids() == []
    assert all(gone(pid) for pid in pids)
    assert p.stats().pending == 0
    p.join()      # again: nothing to do
    p.terminate()


def test_terminate_fails_unfinished_tasks(gate):
    p = Pool(2)
    it = p.imap(square, itertools.count())
    assert next(it) == 0
    rs = [p.apply_async(gated, gate.args(i)) for i in range(5)]
    gate.wait_started(2)
    pids = p.worker_pids()
    p.terminate()
    for r in rs:
        with pytest.raises(WorkerDied):
            r.get(timeout=T)
    with pytest.raises(WorkerDied):
        for _ in range(10**6):
            it.next(timeout=T)
    assert all(gone(pid) for pid in pids)
    with pytest.raises(ValueError):
        p.apply_async(square, (1,))
    p.join(timeout=T)
    p.terminate()


def test_context_manager_terminates():
    with Pool(2) as p:
        pids = p.worker_pids()
        assert len(pids) == 2
        assert p.map(square, range(4)) == [0, 1, 4, 9]
    assert p.worker_pids() == []
    assert all(gone(pid) for pid in pids)
    with pytest.raises(ValueError):
        with p:
            pass


def test_unclosed_pool_is_terminated_by_gc():
    p = Pool(2)
    pids = p.worker_pids()
    with pytest.warns(ResourceWarning):
        del p
        gc.collect()
    assert all(gone(pid) for pid in pids)


def test_pool_does_not_pickle_and_is_not_used_by_other_processes():
    import pickle
    with Pool(1) as p:
        with pytest.raises(NotImplementedError):
            pickle.dumps(p)
        pid = os.fork()
        if pid == 0:
            try:
                p.apply(square, (2,))
                code = 1
            except RuntimeError:
                code = 0
            except BaseException:
                code = 2
            os._exit(code)
        status = reap(pid)
        assert os.waitstatus_to_exitcode(status) == 0
        assert p.apply(square, (2,)) == 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        Pool(0)
    with pytest.raises(TypeError):
        Pool(1, initializer=3)
    with pytest.raises(ValueError):
        Pool(1, max_payload=10)
    with pytest.raises(ValueError):
        Pool(1, max_attempts=0)


def test_a_signal_interrupts_a_wait_and_the_pool_goes_on(gate):
    """An exception from a signal handler (Ctrl-C's KeyboardInterrupt)
    gets out of a wait within a slice; the results still come."""
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        with Pool(2) as p:
            rs = [p.apply_async(gated, gate.args(i)) for i in range(4)]
            m = p.map_async(square, range(100), chunksize=1)
            gate.wait_started(2)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                rs[0].get(timeout=T)
            gate.open(4)
            assert [r.get(timeout=T) for r in rs] == [0, 1, 2, 3]
            assert m.get(timeout=T) == [x * x for x in range(100)]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- threads ---------------------------------------------------------------

def test_pool_in_a_process_with_a_busy_thread():
    """Workers are forked (at start and at each restart) while another
    thread runs Python code: none may hang."""
    stop = threading.Event()
    spins = [0]

    def spin():
        while not stop.is_set():
            spins[0] += 1
            sum(range(100))

    t = threading.Thread(target=spin)
    t.start()
    try:
        with Pool(3, max_restarts=50) as p:
            killed = set()
            for _ in range(5):
                for pid in p.worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                assert p.map(square, range(30), chunksize=2) == \
                    [x * x for x in range(30)]
            # A worker killed may still be listed until it has ended.
            deadline = time.monotonic() + T
            while not all(gone(pid) for pid in killed):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert p.stats().restarts == len(killed) >= 7
    finally:
        stop.set()
        t.join(T)
    assert not t.is_alive() and spins[0] > 0


def test_two_threads_share_a_pool():
    with Pool(2) as p:
        out = {}

        def run(k):
            out[k] = p.map(square, range(k, k + 100))

        ts = [threading.Thread(target=run, args=(k,)) for k in (0, 1000)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(T)
        assert out[0] == [x * x for x in range(100)]
        assert out[1000] == [x * x for x in range(1000, 1100)]


def test_a_task_may_run_a_pool_of_its_own():
    with Pool(2) as p:
        assert p.map(pool_in_task, [3, 4, 5], chunksize=1) == \
            [[x * x for x in range(n)] for n in (3, 4, 5)]


# ---- a whole program -------------------------------------------------------

def test_output_is_neither_lost_nor_doubled(tmp_path):
    """A program with block-buffered stdout: the parent's pending output is
    not copied into workers forked later, workers' output is not lost."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from mproc.pool import Pool, WorkerDied

        def chatty(i):
            sys.stdout.write(f"task {i}\\n")  # one write: lines stay whole
            return i

        def kill_self(_x=None):
            os.kill(os.getpid(), signal.SIGKILL)

        if __name__ == "__main__":
            print("parent before")
            with Pool(2, max_attempts=1) as p:
                print("parent during")
                try:
                    p.apply(kill_self)      # a restart: a fork
                except WorkerDied:
                    print("died")
                assert p.map(chatty, range(10), chunksize=1) == list(range(10))
                p.close()
                p.join(30)
            print("parent after")
    """))
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)  # stdout to a pipe: block-buffered
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script)], env=env,
                         stdout=subprocess.PIPE, timeout=T, check=True).stdout
    lines = out.decode().splitlines()
    for line in ("parent before", "parent during", "died", "parent after"):
        assert lines.count(line) == 1, out
    assert sorted(l for l in lines if l.startswith("task ")) == \
        sorted(f"task {i}" for i in range(10))


def test_pool_running_at_exit_is_terminated(tmp_path):
    """A program that exits with a task still running: its worker does not
    run on (multiprocessing terminates such pools at exit too)."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from mproc.pool import Pool

        def forever(_x=None):
            time.sleep(600)

        if __name__ == "__main__":
            p = Pool(1)
            r = p.apply_async(forever)
            print(p.worker_pids()[0], flush=True)
            sys.exit(0)
    """))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script)], env=env,
                         stdout=subprocess.PIPE, timeout=T, check=True).stdout
    pid = int(out.split()[0])
    try:
        deadline = time.monotonic() + T
        while not gone(pid):
            assert time.monotonic() < deadline, "the worker lives on"
            time.sleep(0.01)
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
