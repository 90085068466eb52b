#!/bin/sh
# check_examples.sh - the named-queue examples as a user runs them: each
# program started by the shell on its own (none forked from another),
# meeting by name. named_consumer before named_producer and after it;
# epoll_consumer (queue, timer and stdin in one epoll) with a producer,
# and quitting on end of input. Every run is bounded by timeout.
set -u
top="${top_builddir:-.}"
ex="$top/examples"
fail=0
pids=""

for p in named_producer named_consumer epoll_consumer; do
	[ -x "$ex/$p" ] || { echo "FAIL: $ex/$p not built"; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/check-examples.XXXXXX") || exit 1
mkdir -m 700 "$dir/shm" || exit 1
MPROC_DIR="$dir/shm"
export MPROC_DIR
cleanup() {
	exec 3>&- 2>/dev/null
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

bad() { echo "FAIL: $*"; fail=1; }

wait_line() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -lt 1000 ] || return 1
		sleep 0.01
	done
}

# consumer_ok OUT N: N jobs, in order, then DIE.
consumer_ok() {
	n=$(grep -c '^job [0-9]* from pid [0-9]*$' "$1")
	[ "$n" -eq "$2" ] || bad "$3: the consumer printed $n jobs, not $2"
	grep -q "DIE from pid [0-9]* after $2 jobs (in order)" "$1" ||
		bad "$3: no summary: $(tail -n 2 "$1")"
	[ -z "$(ls -A "$MPROC_DIR")" ] ||
		bad "$3: the name is left behind: $(ls -A "$MPROC_DIR")"
}

# 1. The consumer first, then the producer.
name="/jobs-$$"
timeout 30 "$ex/named_consumer" "$name" > "$dir/c.out" 2>&1 &
cons=$!
pids="$pids $cons"
wait_line "$dir/c.out" waiting || bad "consumer first: it did not start"
timeout 30 "$ex/named_producer" "$name" 1000 > "$dir/p.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "consumer first: producer exit $rc: $(cat "$dir/p.out")"
wait "$cons"; rc=$?
[ "$rc" -eq 0 ] || bad "consumer first: consumer exit $rc"
consumer_ok "$dir/c.out" 1000 "consumer first"

# 2. The producer first: it waits (join) until the consumer took all.
timeout 30 "$ex/named_producer" "$name" 1000 > "$dir/p.out" 2>&1 &
prod=$!
pids="$pids $prod"
wait_line "$dir/p.out" "sent 1000 jobs" || bad "producer first: it did not send"
timeout 30 "$ex/named_consumer" "$name" > "$dir/c.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "producer first: consumer exit $rc"
wait "$prod"; rc=$?
[ "$rc" -eq 0 ] || bad "producer first: producer exit $rc"
grep -q "all taken" "$dir/p.out" || bad "producer first: $(cat "$dir/p.out")"
consumer_ok "$dir/c.out" 1000 "producer first"

# 3. epoll_consumer: stdin a FIFO kept open; a tick, 50 messages, DIE.
mkfifo "$dir/in"
timeout 30 "$ex/epoll_consumer" "$name" < "$dir/in" > "$dir/e.out" 2>&1 &
epc=$!
pids="$pids $epc"
exec 3> "$dir/in"
wait_line "$dir/e.out" waiting || bad "epoll: it did not start"
wait_line "$dir/e.out" "^tick 1:" || bad "epoll: no tick: $(cat "$dir/e.out")"
printf 'hello\n' >&3
wait_line "$dir/e.out" "you typed 6 bytes" || bad "epoll: stdin not seen"
timeout 30 "$ex/named_producer" "$name" 50 > "$dir/p.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "epoll: producer exit $rc"
wait "$epc"; rc=$?
[ "$rc" -eq 0 ] || bad "epoll: exit $rc"
exec 3>&-
n=$(grep -c '^message: job [0-9]* from pid' "$dir/e.out")
[ "$n" -eq 50 ] || bad "epoll: $n messages, not 50"
grep -q '^DIE from pid' "$dir/e.out" || bad "epoll: no DIE"
grep -q ': 50 messages$' "$dir/e.out" || bad "epoll: $(tail -n 1 "$dir/e.out")"

# 4. epoll_consumer quits on end of input.
printf 'x\n' | timeout 10 "$ex/epoll_consumer" "/eof-$$" > "$dir/e.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || bad "eof: exit $rc"
grep -q '^end of input$' "$dir/e.out" || bad "eof: $(cat "$dir/e.out")"
[ -z "$(ls -A "$MPROC_DIR")" ] || bad "names left behind: $(ls -A "$MPROC_DIR")"

[ "$fail" -eq 0 ] || exit 1
echo "PASS"
