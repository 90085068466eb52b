#!/bin/sh
# check_bench.sh - bench/mproc-bench --quick runs every workload over every
# transport and verifies every message; any verification failure, hang or
# nonzero exit fails the test, and so does a missing W1w row (W1, W1w1ms,
# W1wloop; their targets are printed, not enforced). Transports not built
# yet print "n/a (not built yet)" and are not a failure.
set -u
bench="${top_builddir:-.}/bench/mproc-bench"
if [ ! -x "$bench" ]; then
	echo "SKIP: $bench not built"
	exit 77
fi
to=
if command -v timeout >/dev/null 2>&1; then
	to="timeout -k 5 120"
fi
out=$($to "$bench" --quick 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
	echo "FAIL: mproc-bench --quick exited $rc"
	exit 1
fi
if printf '%s\n' "$out" | grep -q 'FAIL'; then
	echo "FAIL: mproc-bench --quick reported a verification failure"
	exit 1
fi
for r in W1 W1w1ms W1wloop; do
	if ! printf '%s\n' "$out" | sed -n '/^W1w /,/^$/p' | grep -q "^    $r "; then
		echo "FAIL: mproc-bench --quick printed no W1w row $r"
		exit 1
	fi
done
if ! printf '%s\n' "$out" | grep -q '^all runs verified'; then
	echo "FAIL: mproc-bench --quick did not finish"
	exit 1
fi
echo "PASS: mproc-bench --quick"
