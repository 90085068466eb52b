#!/usr/bin/env python3
"""jq_bench.py - W1, W4 and W6 of mproc-bench through Python's
multiprocessing.JoinableQueue (the queue pymulproc is built on).

Messages have pymulproc's shape, [request, sender pid, recipient pid,
payload bytes], and the same payload as mproc-bench: a sequence number, the
sender's role index and a checksum over a body that depends on the sequence
number. Every receiver checks them (and the sender pid), takers call
task_done(), and the totals are checked: each message delivered exactly
once. A wrong answer prints FAIL and exits 1.

  W1  stream 1:1                 msgs/s
  W4  N producers : N consumers  msgs/s
  W6  task pool: DO to N workers on one JoinableQueue, FINISHED back on
      another, DIE at the end    tasks/s

Time is time.monotonic() from the start event to the last role's end; CPU
is getrusage(SELF + CHILDREN) over the run, per message (W6: per task).
Standard library only.

  python3 bench/jq_bench.py [--runs 3] [--quick] [--workers 4] [--size 64]
        [--messages N] [--only W1,W6] [--json FILE] [--compare BENCH.json]

--compare reads the --json output of bench/mproc-bench and prints mproc's
ratio to JoinableQueue for the same workloads.
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import struct
import sys
import time
import zlib

DO, FINISHED, DIE = "DO", "FINISHED", "DIE"
PL_HDR = struct.Struct("<QII")  # seq, src, check
TIMEOUT = 30.0                  # every blocking get: a bug fails, never hangs
WINDOW = 256                    # W6: tasks in flight at most


class Failure(Exception):
    pass


def payload(seq, src, size):
    """seq, src and a checksum, then a body that depends on seq."""
    n = size - PL_HDR.size
    stamp = seq.to_bytes(8, "little")
    body = (stamp * (n // 8 + 1))[:n]
    check = zlib.crc32(body, zlib.crc32(stamp + src.to_bytes(4, "little")))
    return PL_HDR.pack(seq, src, check) + body


def verify(data, size):
    """Returns (seq, src); raises Failure on a bad size or checksum."""
    if len(data) != size:
        raise Failure("payload of %d bytes, expected %d" % (len(data), size))
    seq, src, check = PL_HDR.unpack_from(data)
    body = data[PL_HDR.size:]
    want = zlib.crc32(body, zlib.crc32(data[:8] + data[8:12]))
    if check != want:
        raise Failure("checksum mismatch (seq field %d)" % seq)
    n = size - PL_HDR.size
    if body != (data[:8] * (n // 8 + 1))[:n]:
        raise Failure("body of seq %d is not its own" % seq)
    return seq, src


def fail_child(errors, idx, exc):
    errors[idx] = ("role %d (pid %d): %s" % (idx, os.getpid(), exc))[:200]
    sys.stderr.write("jq_bench: FAIL: %s\n" % errors[idx])
    sys.stderr.flush()
    os._exit(1)


# -------------------------------------------------------------------- roles

def producer(idx, nprod, n, size, q, go, pids, t_end, errors):
    try:
        go.wait()
        me = os.getpid()
        for k in range(n // nprod):
            q.put([DO, me, None, payload(k * nprod + idx, idx, size)])
        q.close()
        q.join_thread()  # everything handed to the pipe
        t_end[idx] = time.monotonic()
    except Exception as e:  # noqa: BLE001 - any failure is a FAIL
        fail_child(errors, idx, e)
    os._exit(0)


def consumer(idx, nprod, n, size, single, q, go, pids, t_end, seen, counts,
             errors):
    try:
        go.wait()
        last = [-1] * nprod
        count = 0
        while not (single and count == n):
            msg = q.get(timeout=TIMEOUT)
            q.task_done()
            req, sender, recipient, data = msg
            if req == DIE:
                if single:
                    raise Failure("DIE with a single consumer")
                break
            if req != DO:
                raise Failure("request %r" % (req,))
            seq, src = verify(data, size)
            if src >= nprod or sender != pids[src]:
                raise Failure("sender %d, source %d" % (sender, src))
            if recipient is not None:
                raise Failure("recipient %r" % (recipient,))
            if seq >= n or seq % nprod != src or seq <= last[src]:
                raise Failure("seq %d from %d after %d: out of order, "
                              "repeated or foreign" % (seq, src, last[src]))
            if single and seq != (src if last[src] < 0 else last[src] + nprod):
                raise Failure("seq %d from %d: lost one" % (seq, src))
            last[src] = seq
            if not single:
                seen[seq] = 1
            count += 1
        counts[idx] = count
        t_end[idx] = time.monotonic()
    except Exception as e:  # noqa: BLE001
        fail_child(errors, idx, e)
    os._exit(0)


def dispatcher(nw, n, size, tasks, results, go, pids, t_end, counts, errors):
    try:
        go.wait()
        me = os.getpid()
        seen = bytearray(n)
        sent = got = 0
        while got < n:
            while sent < n and sent - got < WINDOW:
                tasks.put([DO, me, None, payload(sent, 0, size)])
                sent += 1
            req, sender, recipient, data = results.get(timeout=TIMEOUT)
            results.task_done()
            if req != FINISHED or recipient != me:
                raise Failure("result %r to %r" % (req, recipient))
            seq, src = verify(data, PL_HDR.size)
            if not 1 <= src <= nw or sender != pids[src]:
                raise Failure("result from %d (worker %d)" % (sender, src))
            if seq >= sent or seen[seq]:
                raise Failure("result for task %d: never sent or twice" % seq)
            seen[seq] = 1
            got += 1
        for _ in range(nw):
            tasks.put([DIE, me, None, None])
        tasks.join()  # every task and pill taken (task_done)
        counts[0] = got
        t_end[0] = time.monotonic()
        tasks.close()
        results.close()
        tasks.join_thread()
    except Exception as e:  # noqa: BLE001
        fail_child(errors, 0, e)
    os._exit(0)


def worker(idx, n, size, tasks, results, go, pids, t_end, counts, errors):
    try:
        go.wait()
        me = os.getpid()
        last = -1
        count = 0
        while True:
            req, sender, recipient, data = tasks.get(timeout=TIMEOUT)
            tasks.task_done()
            if req == DIE:
                break
            if req != DO or sender != pids[0]:
                raise Failure("task %r from %d" % (req, sender))
            seq, src = verify(data, size)
            if src != 0 or seq >= n or seq <= last:
                raise Failure("task %d after %d" % (seq, last))
            last = seq
            results.put([FINISHED, me, pids[0], payload(seq, idx, PL_HDR.size)])
            count += 1
        counts[idx] = count
        t_end[idx] = time.monotonic()
        results.close()
        results.join_thread()
    except Exception as e:  # noqa: BLE001
        fail_child(errors, idx, e)
    os._exit(0)


# --------------------------------------------------------------- the runs

def cpu_s():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_once(ctx, wl, size, n, nw):
    """One run; returns a dict (rate, cpu_us, elapsed_s)."""
    if wl == "W1":
        nprod, ncons = 1, 1
    elif wl == "W4":
        nprod, ncons = nw, nw
    else:
        nprod, ncons = 0, 0
    if wl in ("W1", "W4"):
        n -= n % nprod
        nroles = nprod + ncons
    else:
        nroles = 1 + nw
    go = ctx.Event()
    pids = ctx.RawArray("i", nroles)
    t_end = ctx.RawArray("d", nroles)
    counts = ctx.RawArray("q", nroles)
    seen = ctx.RawArray("B", n if ncons > 1 else 1)
    errors = _ErrorBoard(ctx, nroles)
    procs = []
    if wl in ("W1", "W4"):
        q = ctx.JoinableQueue()
        for i in range(nprod):
            procs.append(ctx.Process(target=producer, args=(
                i, nprod, n, size, q, go, pids, t_end, errors)))
        for i in range(nprod, nroles):
            procs.append(ctx.Process(target=consumer, args=(
                i, nprod, n, size, ncons == 1, q, go, pids, t_end, seen,
                counts, errors)))
    else:
        q = ctx.JoinableQueue()
        res = ctx.JoinableQueue()
        procs.append(ctx.Process(target=dispatcher, args=(
            nw, n, size, q, res, go, pids, t_end, counts, errors)))
        for i in range(1, nroles):
            procs.append(ctx.Process(target=worker, args=(
                i, n, size, q, res, go, pids, t_end, counts, errors)))
    c0 = cpu_s()
    for i, p in enumerate(procs):
        p.start()
        pids[i] = p.pid
    t0 = time.monotonic()
    go.set()
    why = None
    if wl == "W4":
        # One DIE per consumer once every producer is done: their data is
        # queued first.
        deadline = time.monotonic() + 600
        for p in procs[:nprod]:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode != 0:
                why = why or "producer %d exit %r" % (p.pid, p.exitcode)
        if why is None:
            for _ in range(ncons):
                q.put([DIE, os.getpid(), None, None])
    deadline = time.monotonic() + 600
    for i, p in enumerate(procs):
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            why = why or "role %d (pid %d): not done after 600 s" % (i, p.pid)
            for r in procs:
                if r.exitcode is None:
                    r.kill()
            p.join()
        elif p.exitcode != 0:
            why = why or "role %d (pid %d) exit %d: %s" % (
                i, p.pid, p.exitcode, errors.get(i))
            for r in procs:
                if r.exitcode is None:
                    r.kill()
    c1 = cpu_s()
    if wl == "W4":
        q.close()
        q.join_thread()
    if why is None:
        if wl in ("W1", "W4"):
            total = sum(counts[nprod:])
            if total != n:
                why = "consumers took %d of %d" % (total, n)
            elif ncons > 1 and 0 in bytes(seen):
                why = "message %d never arrived" % bytes(seen).index(0)
        else:
            if counts[0] != n or sum(counts[1:]) != n:
                why = "dispatcher %d, workers %d, of %d tasks" % (
                    counts[0], sum(counts[1:]), n)
    if why is not None:
        raise Failure("%s: %s" % (wl, why))
    elapsed = max(t_end) - t0
    return {"rate": n / elapsed, "cpu_us": (c1 - c0) * 1e6 / n,
            "elapsed_s": elapsed, "count": n}


class _ErrorBoard:
    """Per-role error text in shared memory (200 bytes each)."""
    W = 200

    def __init__(self, ctx, n):
        self.buf = ctx.RawArray("c", n * self.W)

    def __setitem__(self, i, text):
        b = text.encode("utf-8", "replace")[:self.W - 1]
        self.buf[i * self.W:i * self.W + len(b)] = b

    def get(self, i):
        raw = bytes(self.buf[i * self.W:(i + 1) * self.W])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def fmt_rate(v):
    if v >= 1e6:
        return "%.2f M" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k" % (v / 1e3)
    return "%.0f" % v


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
            "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--only", default="W1,W4,W6")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--compare", metavar="BENCH_JSON",
                    help="mproc-bench --json output: print mproc's ratios")
    a = ap.parse_args()
    if a.size < PL_HDR.size or a.size > (1 << 20):
        ap.error("--size must be %d..%d" % (PL_HDR.size, 1 << 20))
    if not 1 <= a.workers <= 64:
        ap.error("--workers must be 1..64")
    runs = a.runs or (1 if a.quick else 3)
    wls = [w.strip().upper() for w in a.only.split(",") if w.strip()]
    for w in wls:
        if w not in ("W1", "W4", "W6"):
            ap.error("unknown workload %s (W1, W4, W6)" % w)
    default_n = {"W1": 100000, "W4": 100000, "W6": 20000}
    if a.quick:
        default_n = {"W1": 2000, "W4": 2000, "W6": 500}
    ctx = mp.get_context("fork")
    m = machine()
    print("jq_bench (Python %s multiprocessing.JoinableQueue)%s"
          % (m["python"], " --quick: correctness, not speed"
             if a.quick else ""))
    print("machine: %s, %s cores online, %s" % (m["cpu"], m["cores"],
                                                m["kernel"]))
    out = {"bench": "jq_bench", "machine": m,
           "options": {"runs": runs, "workers": a.workers, "size": a.size,
                       "quick": a.quick},
           "workloads": [], "ok": True}
    failed = False
    for wl in wls:
        n = a.messages or default_n[wl]
        title = {"W1": "stream 1:1",
                 "W4": "%d:%d" % (a.workers, a.workers),
                 "W6": "task pool, %d workers" % a.workers}[wl]
        unit = "tasks/s" if wl == "W6" else "msgs/s"
        samples = []
        why = None
        for _ in range(runs):
            try:
                samples.append(run_once(ctx, wl, a.size, n, a.workers))
            except Failure as e:
                why = str(e)
                break
        print("\n%s  %s, %d B payload, %d %s, %d run%s (median [min - max])"
              % (wl, title, a.size, n, "tasks" if wl == "W6" else "messages",
                 runs, "" if runs == 1 else "s"))
        entry = {"id": wl, "title": title, "size": a.size, "count": n,
                 "unit": unit}
        if why is not None:
            failed = True
            print("    JoinableQueue            FAIL: %s" % why)
            sys.stderr.write("jq_bench: FAIL: %s\n" % why)
            entry["status"] = "failed"
            entry["why"] = why
            out["workloads"].append(entry)
            continue
        rates = [s["rate"] for s in samples]
        cpus = [s["cpu_us"] for s in samples]
        print("    %-24s %-12s %-24s %s" % ("transport", unit, "[min - max]",
                                            "CPU us/task" if wl == "W6"
                                            else "CPU us/msg"))
        print("    %-24s %-12s %-24s %.3f" % (
            "JoinableQueue", fmt_rate(statistics.median(rates)),
            "[%s - %s]" % (fmt_rate(min(rates)), fmt_rate(max(rates))),
            statistics.median(cpus)))
        entry.update({
            "status": "ok",
            "rate": {"median": statistics.median(rates), "min": min(rates),
                     "max": max(rates)},
            "cpu_us": {"median": statistics.median(cpus), "min": min(cpus),
                       "max": max(cpus)},
            "runs": samples})
        out["workloads"].append(entry)
    if a.compare:
        compare(a.compare, out)
    out["ok"] = not failed
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    print("\n%s" % ("FAIL: a run did not verify (above)" if failed
                    else "all runs verified"))
    return 1 if failed else 0


def compare(path, out):
    """Prints mproc-bench's rows over JoinableQueue's, workload by workload."""
    with open(path) as f:
        mb = json.load(f)
    print("\nmproc-bench (%s) over JoinableQueue, medians:" % path)
    for e in out["workloads"]:
        if e.get("status") != "ok":
            continue
        for w in mb.get("workloads", []):
            if w["id"] != e["id"] or w["size"] != e["size"]:
                continue
            for r in w["rows"]:
                if r.get("status") != "ok":
                    continue
                ratio = r["rate"]["median"] / e["rate"]["median"]
                print("    %-4s %-24s %12s  %8.1fx" % (
                    e["id"], r["transport"], fmt_rate(r["rate"]["median"]),
                    ratio))
                e.setdefault("mproc_ratios", {})[r["transport"]] = ratio


if __name__ == "__main__":
    sys.exit(main())
