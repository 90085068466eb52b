"""``python3 -m mproc.stat [--json] [--watch S [--count N]] [NAME...]``:
the named objects of the directory, as the C ``mproc-stat`` shows them.

It runs the ``mproc-stat`` installed with the library (found beside
libmproc's prefix, then on PATH). Without one, it prints a listing of its
own through the library: kind, name, mode and the kind's counters (that
listing attaches each object, so it counts as a holder while it looks).
"""

import json
import os
import shutil
import stat as _stat
import sys


def _tool():
    from . import _lib
    cands = []
    try:
        from . import _config
        cands.append(os.path.join(_config.BINDIR, "mproc-stat"))
    except ImportError:
        pass
    libdir = os.path.dirname(os.path.abspath(_lib.LIBRARY_PATH))
    cands += [os.path.join(libdir, "..", "bin", "mproc-stat"),
              os.path.join(libdir, "..", "tools", "mproc-stat")]
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("mproc-stat")


def _fallback(args):
    from . import _codec, named
    as_json = "--json" in args
    names = [a for a in args if a.startswith("/")]
    one = len(names) == 1  # mproc-stat --json NAME: one object, else a list
    d = _codec.objects_dir()
    if not names:
        try:
            names = ["/" + f for f in sorted(os.listdir(d))
                     if not f.startswith(".")]
        except FileNotFoundError:
            names = []
    out = []
    status = 0
    for n in names:
        try:
            st = os.lstat(os.path.join(d, n[1:]))
        except FileNotFoundError:
            status = 1
            continue
        rec = {"name": n, "mode": "%04o" % _stat.S_IMODE(st.st_mode)}
        try:
            o = named.attach(n)
            rec["kind"] = o._kind
            rec.update(o.stats())
            rec["corrupt"] = False
            o.close()
        except OSError as e:
            rec["corrupt"] = True
            rec["error"] = e.strerror
        out.append(rec)
    if as_json:
        if not (one and not out):  # a missing NAME prints nothing
            print(json.dumps(out[0] if one else out))
    else:
        for r in out:
            print(" ".join("%s=%s" % kv for kv in r.items()))
    return status


def main(argv=None):
    """Run the inspector; returns its exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    tool = _tool()
    if tool:
        os.execv(tool, [tool] + args)
    return _fallback(args)


if __name__ == "__main__":
    sys.exit(main())
