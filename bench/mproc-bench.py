#!/usr/bin/env python3
"""mproc-bench.py - mproc's Python drop-ins against multiprocessing's, in
the same run: W1, W4, W6 and W7 of bench/mproc-bench, and the cost of one
bare ctypes call into libmproc.

  W1  stream 1:1, pickled small objects                        msgs/s
      mproc.Queue, mproc.JoinableQueue, mproc.Pipe against
      multiprocessing.Queue, multiprocessing.JoinableQueue,
      multiprocessing.Pipe
  W4  4 producers : 4 consumers on one queue                    msgs/s
  W6  task pool: a dispatcher puts tasks on a JoinableQueue, 4 workers
      take them (task_done) and put results on a Queue; at most 256
      tasks in flight; and mproc.Pool against multiprocessing.Pool
      (imap_unordered, chunksize 1) when mproc has a Pool     tasks/s
  W7  1 MiB numpy arrays (uint64) through Queue and Pipe        GB/s
  F   the floor: one bare ctypes call into libmproc (mproc_version, a
      MPROC_NOWAIT mproc_recv on an empty queue) against a pure-Python
      call, pickling the W1 object, and mproc's own calls in one process

The small object is the tuple (seq, sender index, 64-byte bytes). Every
receiver checks every message: its sequence number (in order per sender,
no gap with one consumer), its sender and its body; W7 checks the dtype,
the shape, the first and last element and one element per 4 KiB (all of
them equal to seq), and every element of every 64th array. The
coordinator checks the totals: every message delivered exactly once. A
wrong answer prints FAIL and the script exits 1.

Processes are started with the fork start method, for multiprocessing
(multiprocessing.get_context("fork")) and mproc alike: the queues and
pipes are made in the coordinator before the fork and inherited. Every
role starts on one Event; time is time.monotonic() from the Event to the
last role's end; CPU is getrusage(SELF + CHILDREN) over the run, process
start-up included. Calls block without a timeout, the fastest path of
multiprocessing's get(); the coordinator bounds every run (it kills the
roles and fails after --deadline seconds) and joins every child.

Rows run interleaved (run 1 of every row, then run 2, ...); each row's
message count is sized from a short pilot run so that a run lasts about
--seconds. Ratios are mproc / multiprocessing throughput, run by run,
median [min - max]: quote those, the absolute rates move with the load of
this shared machine.

  /usr/bin/python3 bench/mproc-bench.py [--quick] [--seconds S] [--runs N]
        [--only W1,W4,W6,W7,F] [--workers 4] [--rows ROW,...] [--json FILE]

--quick: one short run of every row (correctness, not speed; make check).
The mproc rows need `import mproc` to work (PYTHONPATH=python and
MPROC_LIBRARY=.libs/libmproc.so.0 in the build tree); without it they
print n/a and the multiprocessing rows still run.
"""

import argparse
import atexit
import ctypes
import ctypes.util
import json
import multiprocessing as mp
import os
import pickle
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

# A private MPROC_DIR before mproc is imported: whatever the package makes
# by name goes there and is removed at exit.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
MPROC_DIR = tempfile.mkdtemp(prefix="mproc-pybench-", dir=_SHM)
os.environ["MPROC_DIR"] = MPROC_DIR
_OWNER = os.getpid()


def _remove_dir():
    if os.getpid() == _OWNER:
        shutil.rmtree(MPROC_DIR, ignore_errors=True)


atexit.register(_remove_dir)

try:
    import numpy as np
    NUMPY_WHY = None
except ImportError as e:  # W7 needs it
    np = None
    NUMPY_WHY = "numpy not importable: %s" % e

try:
    import mproc
    MPROC_WHY = None
except Exception as e:  # noqa: BLE001 - any reason: the mproc rows are n/a
    mproc = None
    MPROC_WHY = "mproc not importable: %s" % (str(e).splitlines() or [e])[0]

BODY = bytes(range(64))           # the W1/W4/W6 object's payload
ARRAY_BYTES = 1 << 20              # W7
ARRAY_LEN = ARRAY_BYTES // 8       # uint64 elements
ARRAY_STRIDE = 4096 // 8           # one checked element per 4 KiB
ARRAY_FULL_EVERY = 64              # every element of every 64th array
W7_MAXSIZE = 8                     # W7 queues: 8 arrays in flight at most
WINDOW = 256                       # W6: tasks in flight at most
TARGETS = {"W1": 5.0, "W6": 5.0, "W7": 3.0}

# Pilot (and --quick) counts, and the smallest sized count.
PILOT = {"W1": 3000, "W4": 3000, "W6": 1000, "W7": 30}


class Failure(Exception):
    """A run that did not verify, or did not finish."""


class NotAvailable(Exception):
    """A row that cannot run here (its implementation is missing)."""


# ------------------------------------------------------------ shared state

class Board:
    """One run's shared state: the go Event, end times, counts, a seen
    array (W4) and an error text per role, all in shared memory made
    before the fork."""
    W = 200

    def __init__(self, ctx, nroles, nseen):
        self.go = ctx.Event()
        self.t_end = ctx.RawArray("d", nroles)
        self.counts = ctx.RawArray("q", nroles)
        self.seen = ctx.RawArray("B", max(1, nseen))
        self.err = ctx.RawArray("c", nroles * self.W)

    def fail(self, idx, text):
        b = text.encode("utf-8", "replace")[:self.W - 1]
        self.err[idx * self.W:idx * self.W + len(b)] = b

    def error(self, idx):
        raw = bytes(self.err[idx * self.W:(idx + 1) * self.W])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def role_main(idx, board, fn, args):
    """Runs one role in a forked child; any exception is a FAIL."""
    try:
        fn(idx, board, *args)
    except BaseException as e:  # noqa: BLE001 - report, never hang
        board.fail(idx, "role %d (pid %d): %s: %s" % (
            idx, os.getpid(), type(e).__name__, e))
        sys.stderr.write("mproc-bench.py: FAIL: %s\n" % board.error(idx))
        sys.stderr.flush()
        os._exit(1)


# ------------------------------------------------------------------ roles

def check_array(a, seq):
    """W7: raises Failure unless a is the array the producer made for seq."""
    if not isinstance(a, np.ndarray):
        raise Failure("got %s, not an ndarray" % type(a).__name__)
    if a.dtype != np.uint64 or a.shape != (ARRAY_LEN,):
        raise Failure("array %s %s" % (a.dtype, a.shape))
    if int(a[0]) != seq or int(a[-1]) != seq:
        raise Failure("array %d..%d, expected %d" % (a[0], a[-1], seq))
    if not (a[::ARRAY_STRIDE] == seq).all():
        raise Failure("array %d: a page is not its own" % seq)
    if seq % ARRAY_FULL_EVERY == 0 and not (a == seq).all():
        raise Failure("array %d: an element is not its own" % seq)


def producer(idx, board, nprod, n, arrays, put, join, finish):
    """Sends seq = idx, idx + nprod, ... < n; a lone producer then sends
    the end (None) itself; a JoinableQueue's producer then joins."""
    board.go.wait()
    if arrays:
        full, u64 = np.full, np.uint64
        for seq in range(idx, n, nprod):
            put(full(ARRAY_LEN, seq, dtype=u64))
    else:
        body = BODY
        for seq in range(idx, n, nprod):
            put((seq, idx, body))
    if nprod == 1:
        put(None)
    if join is not None:
        join()
    finish()
    board.t_end[idx] = time.monotonic()


def consumer(idx, board, nprod, single, n, arrays, get, done, finish):
    """Takes messages until None; checks each (in order per sender; with
    a single consumer, no gap)."""
    board.go.wait()
    last = [-1] * nprod
    seen = board.seen
    count = 0
    body = BODY
    while True:
        m = get()
        if done is not None:
            done()
        if m is None:
            break
        if arrays:
            seq = count
            check_array(m, seq)
            src = 0
        else:
            seq, src, b = m
            if b != body:
                raise Failure("message %r: body is not BODY" % (seq,))
            if not 0 <= src < nprod or seq % nprod != src:
                raise Failure("seq %d from source %d" % (seq, src))
        if seq >= n or seq <= last[src]:
            raise Failure("seq %d from %d after %d: repeated, out of order "
                          "or foreign" % (seq, src, last[src]))
        if single and seq != (src if last[src] < 0 else last[src] + nprod):
            raise Failure("seq %d from %d after %d: lost one" % (
                seq, src, last[src]))
        last[src] = seq
        if not single:
            seen[seq] = 1
        count += 1
    board.counts[idx] = count
    finish()
    board.t_end[idx] = time.monotonic()


def dispatcher(idx, board, nw, n, tput, tjoin, rget, finish):
    """W6: keeps at most WINDOW tasks in flight, takes every result,
    then one None per worker and joins the task queue."""
    board.go.wait()
    seen = bytearray(n)
    sent = got = 0
    body = BODY
    while got < n:
        while sent < n and sent - got < WINDOW:
            tput((sent, 0, body))
            sent += 1
        seq, widx = rget()
        if not 1 <= widx <= nw or not 0 <= seq < sent or seen[seq]:
            raise Failure("result %r from worker %r: never sent or twice"
                          % (seq, widx))
        seen[seq] = 1
        got += 1
    for _ in range(nw):
        tput(None)
    tjoin()
    board.counts[idx] = got
    finish()
    board.t_end[idx] = time.monotonic()


def worker(idx, board, n, tget, tdone, rput, finish):
    """W6: takes a task, checks it, puts (seq, idx), task_done; None ends."""
    board.go.wait()
    last = -1
    count = 0
    body = BODY
    while True:
        t = tget()
        if t is None:
            tdone()
            break
        seq, src, b = t
        if src != 0 or b != body or not last < seq < n:
            raise Failure("task %r after %d" % (seq, last))
        last = seq
        rput((seq, idx))
        tdone()
        count += 1
    board.counts[idx] = count
    finish()
    board.t_end[idx] = time.monotonic()


def pool_task(x):
    """W6 pool rows: the task function (module level, so both pools can
    name it)."""
    return x * 2 + 1


# ------------------------------------------------------------------- rows

def _nothing():
    pass


def _finisher(q):
    """A queue user's last step: multiprocessing's queues flush their
    feeder thread (close, join_thread); mproc's do what theirs do."""
    def finish():
        q.close()
        q.join_thread()
    return finish


class Row:
    """One transport of one workload: name, implementation ('mproc' or
    'multiprocessing'), class ('Queue', 'JoinableQueue', 'Pipe', 'Pool')."""

    def __init__(self, name, impl, cls):
        self.name, self.impl, self.cls = name, impl, cls
        self.samples = []
        self.why = None      # n/a reason
        self.failed = None   # FAIL reason
        self.count = None    # sized message count

    def module(self):
        if self.impl == "mproc":
            if mproc is None:
                raise NotAvailable(MPROC_WHY)
            if not hasattr(mproc, self.cls):
                raise NotAvailable("mproc has no %s yet" % self.cls)
            return mproc
        return CTX

    def make(self, maxsize=0):
        """The channel of one run: a queue, or a (end, end) pair."""
        mod = self.module()
        if self.cls == "Pipe":
            return mod.Pipe()
        return getattr(mod, self.cls)(maxsize)


def close_channel(row, ch):
    """The coordinator's own handles, after its children are joined."""
    try:
        if row.cls == "Pipe":
            ch[0].close()
            ch[1].close()
        else:
            ch.close()
            ch.join_thread()
    except Exception:  # noqa: BLE001 - a run's result is already in
        pass


def cpu_s():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_procs(board, specs, deadline, between=None):
    """Forks one process per (fn, args), starts them together on the go
    Event, runs between() (the coordinator's part, after the go), joins
    them all by the deadline (killing the rest on a failure or a timeout).
    Returns (t0, cpu seconds)."""
    procs = [CTX.Process(target=role_main, args=(i, board, fn, args))
             for i, (fn, args) in enumerate(specs)]
    c0 = cpu_s()
    started = []
    why = None
    try:
        for p in procs:
            p.start()
            started.append(p)
        t0 = time.monotonic()
        board.go.set()
        end = t0 + deadline
        if between is not None:
            why = between(procs, end)
        for i, p in enumerate(procs):
            p.join(max(0.0, end - time.monotonic()))
            if p.exitcode is None:
                why = why or "role %d (pid %d) not done after %.0f s" % (
                    i, p.pid, deadline)
                break
            if p.exitcode != 0:
                why = why or "role %d exit %d: %s" % (i, p.exitcode,
                                                      board.error(i))
                break
    finally:
        for p in started:
            if p.exitcode is None:
                p.kill()
        for p in started:
            p.join(10)
    c1 = cpu_s()
    if why is not None:
        raise Failure(why)
    return t0, c1 - c0


def run_stream(row, wl, nprod, ncons, n, deadline):
    """W1, W4, W7: nprod producers, ncons consumers on one channel."""
    arrays = wl == "W7"
    n -= n % nprod
    nroles = nprod + ncons
    ch = row.make(W7_MAXSIZE if arrays else 0)
    board = Board(CTX, nroles, n if ncons > 1 else 0)
    jq = row.cls == "JoinableQueue"
    if row.cls == "Pipe":
        put, get = ch[0].send, ch[1].recv
        pfin = cfin = _nothing
        join = done = None
    else:
        put, get = ch.put, ch.get
        pfin = cfin = _finisher(ch)
        join = ch.join if jq and nprod == 1 else None
        done = ch.task_done if jq else None
    specs = [(producer, (nprod, n, arrays, put, join, pfin))
             for _ in range(nprod)]
    specs += [(consumer, (nprod, ncons == 1, n, arrays, get, done, cfin))
              for _ in range(ncons)]

    def between(procs, end):
        if nprod == 1:
            return None
        # One None per consumer once every producer is done: their
        # messages are queued first.
        for i, p in enumerate(procs[:nprod]):
            p.join(max(0.0, end - time.monotonic()))
            if p.exitcode != 0:
                return "producer %d exit %r: %s" % (i, p.exitcode,
                                                    board.error(i))
        for _ in range(ncons):
            ch.put(None)
        return None

    try:
        t0, cpu = run_procs(board, specs, deadline, between)
    finally:
        close_channel(row, ch)
    total = sum(board.counts[nprod:])
    if total != n:
        raise Failure("consumers took %d of %d" % (total, n))
    if ncons > 1:
        seen = bytes(board.seen)
        if 0 in seen[:n]:
            raise Failure("message %d never arrived" % seen.index(0))
    return sample(board, t0, cpu, n, arrays)


def run_pool_queues(row, nw, n, deadline):
    """W6 over queues: tasks on a JoinableQueue, results on a Queue."""
    mod = row.module()
    tasks = mod.JoinableQueue()
    try:
        results = mod.Queue()
    except BaseException:
        close_channel(row, tasks)
        raise
    board = Board(CTX, 1 + nw, 0)
    specs = [(dispatcher, (nw, n, tasks.put, tasks.join, results.get,
                           _finisher(tasks)))]
    specs += [(worker, (n, tasks.get, tasks.task_done, results.put,
                        _finisher(results))) for _ in range(nw)]
    try:
        t0, cpu = run_procs(board, specs, deadline)
    finally:
        close_channel(row, tasks)
        close_channel(row, results)
    if board.counts[0] != n or sum(board.counts[1:]) != n:
        raise Failure("dispatcher %d, workers %d, of %d tasks" % (
            board.counts[0], sum(board.counts[1:]), n))
    return sample(board, t0, cpu, n, False)


def run_pool_api(row, nw, n, deadline):
    """W6 over a Pool: imap_unordered(pool_task, range(n), chunksize=1),
    timed from the first submission to the last result (the pool started
    and warmed up before)."""
    mod = row.module()
    c0 = cpu_s()
    pool = mod.Pool(nw)
    ok = False
    try:
        for _ in pool.imap_unordered(pool_task, range(4 * nw)):
            pass
        seen = bytearray(n)
        t0 = time.monotonic()
        end = t0 + deadline
        it = pool.imap_unordered(pool_task, range(n), chunksize=1)
        nxt = getattr(it, "next", None)
        for _ in range(n):
            left = max(0.001, end - time.monotonic())
            r = nxt(left) if nxt is not None else next(it)
            x, odd = divmod(r - 1, 2)
            if odd or not 0 <= x < n or seen[x]:
                raise Failure("result %r: not a task's, or twice" % (r,))
            seen[x] = 1
        t1 = time.monotonic()
        ok = True
    except mp.TimeoutError:
        raise Failure("no result after %.0f s" % deadline) from None
    finally:
        if ok:
            pool.close()
        else:
            pool.terminate()
        pool.join()
    return {"rate": n / (t1 - t0), "cpu_us": (cpu_s() - c0) * 1e6 / n,
            "elapsed_s": t1 - t0, "count": n}


def sample(board, t0, cpu, n, arrays):
    elapsed = max(board.t_end) - t0
    if elapsed <= 0:
        raise Failure("no end time")
    rate = n / elapsed
    if arrays:
        rate = rate * ARRAY_BYTES / 1e9   # GB/s
    return {"rate": rate, "cpu_us": cpu * 1e6 / n, "elapsed_s": elapsed,
            "count": n}


# --------------------------------------------------------------- workloads

def workloads(nw):
    """The workloads: id, title, unit, rows, ratio pairs, runner."""
    def rows(*spec):
        return [Row(*s) for s in spec]
    Q = ("mproc.Queue", "mproc", "Queue")
    JQ = ("mproc.JoinableQueue", "mproc", "JoinableQueue")
    P = ("mproc.Pipe", "mproc", "Pipe")
    mQ = ("multiprocessing.Queue", "multiprocessing", "Queue")
    mJQ = ("multiprocessing.JoinableQueue", "multiprocessing",
           "JoinableQueue")
    mP = ("multiprocessing.Pipe", "multiprocessing", "Pipe")
    same = [("mproc.Queue", "multiprocessing.Queue"),
            ("mproc.JoinableQueue", "multiprocessing.JoinableQueue")]
    pipes = [("mproc.Pipe", "multiprocessing.Pipe"),
             ("mproc.Queue", "multiprocessing.Pipe")]
    return [
        {"id": "W1", "title": "stream 1:1, pickled small objects",
         "unit": "msgs/s", "rows": rows(Q, JQ, P, mQ, mJQ, mP),
         "ratios": same + pipes,
         "targets": [("mproc.Queue", "multiprocessing.Queue"),
                     ("mproc.JoinableQueue",
                      "multiprocessing.JoinableQueue")],
         "run": lambda r, n, d: run_stream(r, "W1", 1, 1, n, d)},
        {"id": "W4", "title": "%d:%d on one queue, pickled small objects"
         % (nw, nw), "unit": "msgs/s", "rows": rows(Q, JQ, mQ, mJQ),
         "ratios": same, "targets": [],
         "run": lambda r, n, d: run_stream(r, "W4", nw, nw, n, d)},
        {"id": "W6", "title": "task pool, %d workers, pickled small objects"
         % nw, "unit": "tasks/s",
         "rows": [Row("mproc JoinableQueue + Queue", "mproc", "Queue"),
                  Row("multiprocessing JoinableQueue + Queue",
                      "multiprocessing", "Queue"),
                  Row("mproc.Pool", "mproc", "Pool"),
                  Row("multiprocessing.Pool", "multiprocessing", "Pool")],
         "ratios": [("mproc JoinableQueue + Queue",
                     "multiprocessing JoinableQueue + Queue"),
                    ("mproc.Pool", "multiprocessing.Pool")],
         "targets": [("mproc JoinableQueue + Queue",
                      "multiprocessing JoinableQueue + Queue")],
         "run": lambda r, n, d: (run_pool_api(r, nw, n, d)
                                 if r.cls == "Pool"
                                 else run_pool_queues(r, nw, n, d))},
        {"id": "W7", "title": "stream 1:1, 1 MiB numpy arrays (uint64)",
         "unit": "GB/s", "rows": rows(Q, P, mQ, mP),
         "ratios": [("mproc.Queue", "multiprocessing.Queue"),
                    ("mproc.Pipe", "multiprocessing.Pipe"),
                    ("mproc.Queue", "multiprocessing.Pipe")],
         "targets": [("mproc.Queue", "multiprocessing.Queue")],
         "run": lambda r, n, d: run_stream(r, "W7", 1, 1, n, d)},
    ]


def fmt_rate(v, unit):
    if unit == "GB/s":
        return "%.2f" % v
    if v >= 1e6:
        return "%.2f M" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k" % (v / 1e3)
    return "%.0f" % v


def run_workload(w, a):
    """Sizes each row from a pilot, runs the rows interleaved, prints the
    table, the ratios and the targets. Returns its JSON entry."""
    rows = w["rows"]
    runner = w["run"]
    pilot = PILOT[w["id"]]
    if w["id"] == "W7" and np is None:
        for r in rows:
            r.why = NUMPY_WHY
    for r in rows:
        if a.rows and r.name not in a.rows:
            r.why = "not in --rows"
        if r.why is not None:
            continue
        try:
            r.module()
        except NotAvailable as e:
            r.why = str(e)
            continue
        if a.quick:
            r.count = pilot
            continue
        try:
            s = runner(r, pilot, a.deadline)
        except Failure as e:
            r.failed = str(e)
            continue
        r.count = max(pilot, int(s["count"] / s["elapsed_s"] * a.seconds))
    for _ in range(a.runs):
        for r in rows:
            if r.why is not None or r.failed is not None:
                continue
            try:
                r.samples.append(runner(r, r.count, a.deadline))
            except Failure as e:
                r.failed = str(e)
    return report(w, a)


def report(w, a):
    unit = w["unit"]
    per = "task" if unit == "tasks/s" else "msg"
    print("\n%s  %s, %d run%s (median [min - max])" % (
        w["id"], w["title"], a.runs, "" if a.runs == 1 else "s"))
    if w["id"] == "W6":
        print("    at most %d tasks in flight; pools: imap_unordered, "
              "chunksize 1, timed after a warm-up" % WINDOW)
    if w["id"] == "W7":
        print("    GB/s: 1e9 payload bytes a second; queues made with "
              "maxsize %d; a new array per message (np.full)" % W7_MAXSIZE)
    print("    %-38s %-10s %-22s %-11s %s" % (
        "transport", unit, "[min - max]", "CPU us/" + per, per + "s/run"))
    entry = {"id": w["id"], "title": w["title"], "unit": unit, "rows": [],
             "ratios": [], "targets": []}
    byname = {r.name: r for r in w["rows"]}
    failed = False
    for r in w["rows"]:
        je = {"transport": r.name, "impl": r.impl, "class": r.cls}
        entry["rows"].append(je)
        if r.why is not None:
            print("    %-38s n/a (%s)" % (r.name, r.why))
            je.update(status="n/a", why=r.why)
            continue
        if r.failed is not None:
            failed = True
            print("    %-38s FAIL: %s" % (r.name, r.failed))
            sys.stderr.write("mproc-bench.py: FAIL: %s %s: %s\n" % (
                w["id"], r.name, r.failed))
            je.update(status="failed", why=r.failed)
            continue
        rates = [s["rate"] for s in r.samples]
        cpus = [s["cpu_us"] for s in r.samples]
        print("    %-38s %-10s %-22s %-11.3f %d" % (
            r.name, fmt_rate(statistics.median(rates), unit),
            "[%s - %s]" % (fmt_rate(min(rates), unit),
                           fmt_rate(max(rates), unit)),
            statistics.median(cpus), r.count))
        je.update(status="ok", count=r.count, runs=r.samples,
                  rate={"median": statistics.median(rates),
                        "min": min(rates), "max": max(rates)},
                  cpu_us={"median": statistics.median(cpus),
                          "min": min(cpus), "max": max(cpus)})
    ratios = {}
    for top, bottom in w["ratios"]:
        t, b = byname[top], byname[bottom]
        if not (t.samples and b.samples and t.failed is None
                and b.failed is None):
            print("    ratio %s / %s  n/a" % (top, bottom))
            continue
        k = min(len(t.samples), len(b.samples))
        rr = [t.samples[i]["rate"] / b.samples[i]["rate"] for i in range(k)]
        cr = [t.samples[i]["cpu_us"] / b.samples[i]["cpu_us"]
              for i in range(k)]
        med = statistics.median(rr)
        ratios[(top, bottom)] = med
        print("    ratio %s / %s  %.2fx [%.2f - %.2f]  CPU/%s %.2fx" % (
            top, bottom, med, min(rr), max(rr), per, statistics.median(cr)))
        entry["ratios"].append({"top": top, "bottom": bottom, "median": med,
                                "min": min(rr), "max": max(rr),
                                "cpu": statistics.median(cr)})
    goal = TARGETS.get(w["id"])
    for top, bottom in w["targets"]:
        got = ratios.get((top, bottom))
        verdict = ("n/a" if got is None else
                   "%.2fx: %s" % (got, "met" if got >= goal else "missed"))
        print("    target %s at least %.0fx %s: %s" % (top, goal, bottom,
                                                        verdict))
        entry["targets"].append({"top": top, "bottom": bottom, "min": goal,
                                 "ratio": got,
                                 "met": None if got is None else got >= goal})
    entry["failed"] = failed
    return entry


# ------------------------------------------------------------------ floor

def library_path():
    """libmproc as mproc loads it: MPROC_LIBRARY, else the CDLL mproc's
    _lib holds, else the linker's search."""
    p = os.environ.get("MPROC_LIBRARY")
    if p:
        return p
    lib = getattr(mproc, "_lib", None) if mproc is not None else None
    for v in vars(lib).values() if lib is not None else ():
        if isinstance(v, ctypes.CDLL):
            return v._name
    return ctypes.util.find_library("mproc")


class _Msg(ctypes.Structure):
    _fields_ = [("request", ctypes.c_int32), ("sender", ctypes.c_int32),
                ("recipient", ctypes.c_int32), ("size", ctypes.c_uint32),
                ("data", ctypes.c_void_p), ("capacity", ctypes.c_uint32)]


def per_call_ns(fn, n, repeat=5):
    """Best of `repeat` timings of fn(n) (a loop of n calls), in ns per
    iteration: the floor, least disturbed by the machine's other load."""
    best = None
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn(n)
        t = time.perf_counter_ns() - t
        best = t if best is None else min(best, t)
    return best / n


def floor(a):
    """F: what one call costs, in one process (no scheduling noise)."""
    n = 20000 if a.quick else 400000
    res = []

    def add(name, ns, base=None, note=""):
        net = ns - base if base is not None else ns
        res.append({"name": name, "ns": ns, "net_ns": net, "note": note})

    def loop_empty(k):
        for _ in range(k):
            pass

    def nop():
        return 0

    def loop_call(k):
        f = nop
        for _ in range(k):
            f()

    empty = per_call_ns(loop_empty, n)
    add("empty for loop (per iteration)", empty)
    add("pure-Python call f()", per_call_ns(loop_call, n), empty)

    why = None
    path = library_path()
    lib = None
    if not path:
        why = "libmproc not found (set MPROC_LIBRARY)"
    else:
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            why = "libmproc: %s" % e
    if lib is not None:
        ver = lib.mproc_version
        ver.argtypes = []
        ver.restype = ctypes.c_void_p

        def loop_ver(k):
            f = ver
            for _ in range(k):
                f()
        add("ctypes mproc_version() (restype c_void_p)",
            per_call_ns(loop_ver, n), empty)
        ver_s = ctypes.CDLL(path).mproc_version
        ver_s.argtypes = []
        ver_s.restype = ctypes.c_char_p

        def loop_ver_s(k):
            f = ver_s
            for _ in range(k):
                f()
        add("ctypes mproc_version() (restype c_char_p: bytes)",
            per_call_ns(loop_ver_s, n), empty)

        q = ctypes.c_void_p()
        lib.mproc_queue_open.argtypes = [ctypes.POINTER(ctypes.c_void_p),
                                         ctypes.c_void_p]
        lib.mproc_queue_open.restype = ctypes.c_int
        rc = lib.mproc_queue_open(ctypes.byref(q), None)
        if rc != 0:
            why = "mproc_queue_open: %d" % rc
        else:
            m = _Msg()
            pm = ctypes.byref(m)
            recv = ctypes.CDLL(path).mproc_recv
            recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            recv.restype = ctypes.c_int
            rc = recv(q, pm, None, None, 0)
            if rc != -11:
                why = "mproc_recv on an empty queue: %d, not -EAGAIN" % rc
            qv = q.value

            def loop_recv(k):
                f = recv
                for _ in range(k):
                    f(qv, pm, None, None, 0)
            add("ctypes mproc_recv(empty, NOWAIT) -> -EAGAIN, argtypes set",
                per_call_ns(loop_recv, n), empty)
            recv_na = ctypes.CDLL(path).mproc_recv
            recv_na.restype = ctypes.c_int
            qp = ctypes.c_void_p(qv)

            def loop_recv_na(k):
                f = recv_na
                for _ in range(k):
                    f(qp, pm, None, None, 0)
            add("ctypes mproc_recv(empty, NOWAIT), no argtypes",
                per_call_ns(loop_recv_na, n), empty)
            lib.mproc_close.argtypes = [ctypes.c_void_p]
            lib.mproc_close(qv)

    obj = (12345, 0, BODY)
    dumps, loads = pickle.dumps, pickle.loads

    def loop_pickle(k):
        o = obj
        for _ in range(k):
            loads(dumps(o))
    add("pickle.dumps + loads of the W1 object",
        per_call_ns(loop_pickle, n), empty, "%d bytes pickled"
        % len(dumps(obj)))

    def both(name, make, put, get, close):
        try:
            ch = make()
        except Exception as e:  # noqa: BLE001
            res.append({"name": name, "ns": None, "net_ns": None,
                        "note": "n/a (%s)" % e})
            return
        try:
            p, g = put(ch), get(ch)

            def loop(k):
                o = obj
                for _ in range(k):
                    p(o)
                    g()
            add(name, per_call_ns(loop, n // 10), empty)
        finally:
            close(ch)

    def empty_get(name, make, close, exc):
        try:
            ch = make()
        except Exception as e:  # noqa: BLE001
            res.append({"name": name, "ns": None, "net_ns": None,
                        "note": "n/a (%s)" % e})
            return
        try:
            g = ch.get_nowait

            def loop(k):
                for _ in range(k):
                    try:
                        g()
                    except exc:
                        pass
            add(name, per_call_ns(loop, n // 10), empty)
        finally:
            close(ch)

    import queue as stdq

    def qclose(q):
        q.close()
        q.join_thread()

    def pclose(ends):
        ends[0].close()
        ends[1].close()

    if mproc is not None:
        for cls in ("Queue", "JoinableQueue"):
            if hasattr(mproc, cls):
                empty_get("mproc.%s.get_nowait() on empty (queue.Empty)"
                          % cls, getattr(mproc, cls), qclose, stdq.Empty)
                both("mproc.%s put + get, one process" % cls,
                     getattr(mproc, cls), lambda q: q.put,
                     lambda q: q.get, qclose)
        if hasattr(mproc, "Pipe"):
            both("mproc.Pipe send + recv, one process", mproc.Pipe,
                 lambda e: e[0].send, lambda e: e[1].recv, pclose)
    else:
        res.append({"name": "mproc's own calls", "ns": None,
                    "net_ns": None, "note": "n/a (%s)" % MPROC_WHY})
    empty_get("multiprocessing.Queue.get_nowait() on empty",
              CTX.Queue, qclose, stdq.Empty)
    both("multiprocessing.Pipe send + recv, one process", CTX.Pipe,
         lambda e: e[0].send, lambda e: e[1].recv, pclose)

    print("\nF  the floor: one call, in one process, best of 5 loops of "
          "%d (ns per call, net of the empty loop)" % n)
    if lib is not None:
        print("    libmproc: %s" % path)
    for r in res:
        if r["ns"] is None:
            print("    %-58s %s" % (r["name"], r["note"]))
        else:
            print("    %-58s %8.1f ns%s" % (
                r["name"], r["net_ns"],
                "  (%s)" % r["note"] if r["note"] else ""))
    if why is not None:
        print("    ctypes: n/a (%s)" % why)
    call = {r["name"]: r["net_ns"] for r in res if r["ns"] is not None}
    py = call.get("pure-Python call f()")
    cv = call.get("ctypes mproc_version() (restype c_void_p)")
    cr = call.get("ctypes mproc_recv(empty, NOWAIT) -> -EAGAIN, argtypes set")
    if py and cv and cr:
        print("    ratio ctypes mproc_version / Python call  %.1fx" % (cv / py))
        print("    ratio ctypes mproc_recv NOWAIT / Python call  %.1fx"
              % (cr / py))
    return {"id": "F", "loops": n, "library": path, "calls": res,
            "failed": False, "why": why}


# ------------------------------------------------------------------- main

def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(),
            "kernel": "%s %s %s" % (platform.system(), platform.release(),
                                    platform.machine()),
            "python": platform.python_version(),
            "numpy": np.__version__ if np is not None else None,
            "mproc": getattr(mproc, "__version__", "?") if mproc else None}


CTX = mp.get_context("fork")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="one short run of every row (correctness)")
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="about how long one run of one row lasts (1.0)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per row (3; --quick: 1)")
    ap.add_argument("--only", default="W1,W4,W6,W7,F")
    ap.add_argument("--workers", type=int, default=4,
                    help="W4: producers and consumers; W6: workers (4)")
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="a run not done after this many seconds fails")
    ap.add_argument("--rows", default="",
                    help="only these rows (names as printed, comma "
                    "separated; for profiling one transport)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    a.rows = [x.strip() for x in a.rows.split(",") if x.strip()]
    a.runs = a.runs or (1 if a.quick else 3)
    if not 1 <= a.runs <= 50:
        ap.error("--runs must be 1..50")
    if not 1 <= a.workers <= 64:
        ap.error("--workers must be 1..64")
    if not 0.01 <= a.seconds <= 600:
        ap.error("--seconds must be 0.01..600")
    if a.quick:
        a.deadline = min(a.deadline, 60.0)
    wanted = [x.strip().upper() for x in a.only.split(",") if x.strip()]
    known = ("W1", "W4", "W6", "W7", "F")
    for x in wanted:
        if x not in known:
            ap.error("unknown workload %s (%s)" % (x, ", ".join(known)))
    t_start = time.monotonic()
    m = machine()
    print("mproc-bench.py (Python %s, numpy %s, mproc %s)%s" % (
        m["python"], m["numpy"] or "n/a",
        m["mproc"] or "n/a", " --quick: correctness, not speed"
        if a.quick else ""))
    print("machine: %s, %s cores online, %s" % (m["cpu"], m["cores"],
                                                m["kernel"]))
    if mproc is None:
        print("mproc rows: n/a (%s)" % MPROC_WHY)
    print("start method: fork, for multiprocessing and mproc alike "
          "(channels made before the fork)")
    print("runs: %d per row, interleaved; %s; calls block without a "
          "timeout, every run bounded by %.0f s" % (
              a.runs, "one pilot-sized run each" if a.quick else
              "each about %.2g s (count sized by a pilot run)" % a.seconds,
              a.deadline))
    print("MPROC_DIR=%s (made for this run, removed at exit)" % MPROC_DIR)
    sys.stdout.flush()
    out = {"bench": "mproc-bench.py", "machine": m,
           "options": {"runs": a.runs, "seconds": a.seconds,
                       "workers": a.workers, "quick": a.quick,
                       "start_method": "fork"},
           "workloads": []}
    failed = False
    for w in workloads(a.workers):
        if w["id"] not in wanted:
            continue
        e = run_workload(w, a)
        failed = failed or e["failed"]
        out["workloads"].append(e)
        sys.stdout.flush()
    if "F" in wanted:
        out["workloads"].append(floor(a))
    out["ok"] = not failed
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    print("\n%s in %.1f s" % ("FAIL: a run did not verify (above)" if failed
                              else "all runs verified",
                              time.monotonic() - t_start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
