#!/bin/sh
# check_pybench.sh - bench/mproc-bench.py --quick runs W1, W4, W6, W7 and
# the floor (F) once each, mproc's Python drop-ins against
# multiprocessing's, every message verified; a verification failure, a
# hang or a nonzero exit fails the test, and so does a missing row, ratio
# or target line. Targets are printed, not enforced (speed is for the
# bench, not for make check). mproc.Pool's rows may be n/a (not there
# yet); every other mproc row must have run.
#
# Needs $PYTHON (an interpreter with numpy); MPROC_LIBRARY and PYTHONPATH
# point at the built library and python/ (the Makefile sets them; unset,
# they default to $top_builddir/.libs/libmproc.so.0 and
# $top_srcdir/python). Skips (exit 77) without $PYTHON, when the library
# is built with sanitizers (their runtime cannot be loaded into python),
# or when `import mproc, numpy` fails.
set -u
srcdir="${top_srcdir:-$(dirname "$0")/..}"
builddir="${top_builddir:-.}"
script="$srcdir/bench/mproc-bench.py"
if [ -z "${PYTHON:-}" ]; then
	echo "SKIP: PYTHON not set (no Python 3 with numpy)"
	exit 77
fi
if [ -n "${MPROC_SANITIZERS:-}" ]; then
	echo "SKIP: libmproc built with sanitizers"
	exit 77
fi
if [ -z "${MPROC_LIBRARY:-}" ]; then
	MPROC_LIBRARY=$(cd "$builddir" && pwd)/.libs/libmproc.so.0
fi
if [ -z "${PYTHONPATH:-}" ]; then
	PYTHONPATH=$(cd "$srcdir" && pwd)/python
fi
PYTHONDONTWRITEBYTECODE=1
export MPROC_LIBRARY PYTHONPATH PYTHONDONTWRITEBYTECODE
if ! "$PYTHON" -c 'import mproc, numpy' >/dev/null 2>&1; then
	echo "SKIP: $PYTHON cannot import mproc and numpy"
	exit 77
fi
if [ ! -f "$script" ]; then
	echo "FAIL: no $script"
	exit 1
fi
to=
if command -v timeout >/dev/null 2>&1; then
	to="timeout -k 5 120"
fi
json="${TMPDIR:-/tmp}/check_pybench.$$.json"
trap 'rm -f "$json"' EXIT
out=$($to "$PYTHON" "$script" --quick --json "$json" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
	echo "FAIL: mproc-bench.py --quick exited $rc"
	exit 1
fi
if printf '%s\n' "$out" | grep -q 'FAIL'; then
	echo "FAIL: mproc-bench.py --quick reported a failure"
	exit 1
fi

# section SECTION: the lines of workload SECTION's table
section() {
	printf '%s\n' "$out" | sed -n "/^$1 /,/^\$/p"
}
# need SECTION LINE: a line of SECTION starts with LINE followed by a
# number (a rate, a ratio or a time): not n/a
need() {
	if ! section "$1" | grep -q "^    $2 *[0-9]"; then
		echo "FAIL: mproc-bench.py --quick: no \"$2\" figure in $1"
		exit 1
	fi
}
# target SECTION TEXT: the target line is there with a ratio
target() {
	if ! section "$1" | grep -q "^    target $2: [0-9.]*x: \(met\|missed\)"; then
		echo "FAIL: mproc-bench.py --quick: no target \"$2\" in $1"
		exit 1
	fi
}
Q=mproc.Queue JQ=mproc.JoinableQueue P=mproc.Pipe
mQ=multiprocessing.Queue mJQ=multiprocessing.JoinableQueue
mP=multiprocessing.Pipe
for r in $Q $JQ $P $mQ $mJQ $mP; do
	need W1 "$r "
done
need W1 "ratio $Q / $mQ "
need W1 "ratio $JQ / $mJQ "
need W1 "ratio $P / $mP "
need W1 "ratio $Q / $mP "
target W1 "$Q at least 5x $mQ"
target W1 "$JQ at least 5x $mJQ"
for r in $Q $JQ $mQ $mJQ; do
	need W4 "$r "
done
need W4 "ratio $Q / $mQ "
need W4 "ratio $JQ / $mJQ "
need W6 'mproc JoinableQueue + Queue '
need W6 'multiprocessing JoinableQueue + Queue '
need W6 'multiprocessing.Pool '
need W6 'ratio mproc JoinableQueue + Queue / multiprocessing JoinableQueue + Queue '
target W6 'mproc JoinableQueue + Queue at least 5x multiprocessing JoinableQueue + Queue'
if ! section W6 | grep -q '^    mproc.Pool  *n/a (mproc has no Pool yet)'; then
	need W6 'mproc.Pool '
	need W6 'ratio mproc.Pool / multiprocessing.Pool '
fi
for r in $Q $P $mQ $mP; do
	need W7 "$r "
done
need W7 "ratio $Q / $mQ "
need W7 "ratio $P / $mP "
target W7 "$Q at least 3x $mQ"
need F 'pure-Python call f() '
need F 'ctypes mproc_version() (restype c_void_p) '
need F 'ctypes mproc_recv(empty, NOWAIT) -> -EAGAIN, argtypes set '
need F 'mproc.Queue put + get, one process '
need F 'ratio ctypes mproc_recv NOWAIT / Python call '

for k in '"ok": true' '"W1"' '"W4"' '"W6"' '"W7"' '"F"' \
	'"start_method": "fork"'; do
	if ! grep -q "$k" "$json"; then
		echo "FAIL: mproc-bench.py --json: no $k"
		exit 1
	fi
done
dir=$(printf '%s\n' "$out" | sed -n 's/^MPROC_DIR=\([^ ]*\) .*/\1/p')
if [ -z "$dir" ] || [ -e "$dir" ]; then
	echo "FAIL: mproc-bench.py left its MPROC_DIR (${dir:-?}) behind"
	exit 1
fi
if ! printf '%s\n' "$out" | grep -q '^all runs verified'; then
	echo "FAIL: mproc-bench.py --quick did not finish"
	exit 1
fi
echo "PASS: mproc-bench.py --quick"
