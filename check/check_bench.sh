#!/bin/sh
# check_bench.sh - bench/mproc-bench --quick --named runs every workload
# over every transport and verifies every message; any verification
# failure, hang or nonzero exit fails the test, and so does a missing row
# or ratio: W1w's six rows (W1, W1w1ms, W1wloop, anonymous and named), the
# named queue beside the anonymous one (W1..W6d), W1p's poller, W8's bus
# and its pipes and mqs, W9's slot and seqlock, W1's zero-copy queue and
# spsc ring, W7a's and W7b's rows (copy, zero-copy, raw pipe, spsc ring,
# 2 x memcpy), their ratios and targets. Targets are printed, not
# enforced. The private MPROC_DIR must be gone at the end, and the JSON
# must say ok. Transports not built yet print "n/a (not built yet)" and
# are not a failure.
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
json="${TMPDIR:-/tmp}/check_bench.$$.json"
trap 'rm -f "$json"' EXIT
out=$($to "$bench" --quick --named --json "$json" 2>&1)
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

# has SECTION LINE: the table of workload SECTION has a line starting LINE
has() {
	printf '%s\n' "$out" | sed -n "/^$1 /,/^\$/p" | grep -q "^    $2"
}
need() {
	if ! has "$1" "$2"; then
		echo "FAIL: mproc-bench --quick: no \"$2\" in $1"
		exit 1
	fi
}
for r in W1 W1w1ms W1wloop; do
	need W1w "$r "
	need W1w "$r named "
	need W1w "ratio $r named / $r "
done
for w in W1 W2 W3 W4 W5 W6 W6d; do
	need "$w" 'mproc queue (named) '
	need "$w" 'ratio mproc queue (named) / mproc queue '
done
need W1 'mproc queue (zero-copy) '
need W1 'spsc ring (limit) '
need W1 'raw pipe '
need W1 'POSIX mq '
need W1 'ratio mproc queue (zero-copy) / raw pipe '
need W1 'ratio mproc queue / spsc ring (limit) '
need W1 'target zero-copy at least 3.0x a raw pipe'
for w in W7a W7b; do
	need "$w" 'mproc queue  '
	need "$w" 'mproc queue (zero-copy) '
	need "$w" 'raw pipe '
	need "$w" 'spsc ring (limit) '
	need "$w" '2 x memcpy '
	need "$w" 'ratio mproc queue (zero-copy) / raw pipe '
	need "$w" 'ratio mproc queue / 2 x memcpy '
	need "$w" 'ratio mproc queue / spsc ring (limit) '
	need "$w" 'ratio mproc queue (zero-copy) / spsc ring (limit) '
	need "$w" 'target zero-copy at least '
	need "$w" 'target copy path within 1.5x of 2 x memcpy'
done
need W1p 'mproc queue  '
need W1p 'mproc queue + poll '
need W1p 'ratio mproc queue + poll / mproc queue '
need W1p 'target at most one sender system call'
need W8 'mproc bus '
need W8 'raw pipe x'
need W8 'POSIX mq'
need W8 'ratio mproc bus / raw pipe '
need W8 'target bus at least 3x'
need W9 'mproc slot '
need W9 'seqlock '
need W9 'ratio mproc slot / seqlock '
need W9 'target within 2x of the seqlock'

dir=$(printf '%s\n' "$out" | sed -n 's/^named queues: MPROC_DIR=\([^ ]*\) .*/\1/p')
if [ -z "$dir" ]; then
	echo "FAIL: mproc-bench --named did not say its MPROC_DIR"
	exit 1
fi
if [ -e "$dir" ]; then
	echo "FAIL: mproc-bench --named left $dir behind"
	exit 1
fi
for k in '"ok": true' '"mproc queue (named)"' '"mproc queue + poll"' \
	'"mproc bus"' '"mproc slot"' '"seqlock"' '"poll_wakeups_per_1000"' \
	'"latency_median_us"' '"mproc queue (zero-copy)"' \
	'"spsc ring (limit)"' '"2 x memcpy"' '"W7a"' '"W7b"' '"GB/s"'; do
	if ! grep -q "$k" "$json"; then
		echo "FAIL: mproc-bench --json: no $k"
		exit 1
	fi
done
if ! printf '%s\n' "$out" | grep -q '^all runs verified'; then
	echo "FAIL: mproc-bench --quick did not finish"
	exit 1
fi
echo "PASS: mproc-bench --quick --named"
