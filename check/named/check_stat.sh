#!/bin/sh
# check_stat.sh - mproc-stat on the states a named queue can be in: live
# with messages, its receive lock held by a stopped process, stale (its
# holder killed), corrupt files of several kinds, a missing name; --json
# fields, --watch with --count, exit statuses. Then a named bus (two
# readers at different lags, its send lock held by a stopped process,
# stale) and a named slot (a reader asleep for a newer value), and bus and
# slot files scribbled on. check/named/named_peer makes the states. JSON is
# parsed with python3 when there is one, else grepped.
set -u
top="${top_builddir:-.}"
stat="$top/tools/mproc-stat"
peer="$top/check/named/named_peer"
fail=0
pids=""

for p in "$stat" "$peer"; do
	[ -x "$p" ] || { echo "FAIL: $p not built"; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/check-stat.XXXXXX") || exit 1
chmod 700 "$dir"
MPROC_DIR="$dir"
export MPROC_DIR
cleanup() {
	for p in $pids; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

bad() { echo "FAIL: $*"; fail=1; }

# flat FILE: FILE.kv gets one KEY=VALUE line per field of the JSON object
# in FILE (strings bare, the rest as written); fails if FILE is no JSON.
# jnames FILE: the names in the JSON array in FILE, one a line. jsubs
# FILE: a bus's subscribers in FILE, one a line: pid live cursor lag
# lag_bytes lost received. (One python3 per document: it takes a quarter
# second to start.)
py="${PYTHON:-python3}"
if command -v "$py" >/dev/null 2>&1; then
	flat() {
		"$py" -c 'import json, sys
d = json.load(open(sys.argv[1]))
if isinstance(d, dict):
    for k, v in d.items():
        print("%s=%s" % (k, v if isinstance(v, str) else json.dumps(v)))' "$1" > "$1.kv"
	}
	jnames() {
		"$py" -c 'import json, sys
for o in json.load(open(sys.argv[1])): print(o["name"])' "$1"
	}
	jsubs() {
		"$py" -c 'import json, sys
for r in json.load(open(sys.argv[1]))["subscribers"]:
    print(r["pid"], json.dumps(r["live"]), r["cursor"], r["lag"], r["lag_bytes"], r["lost"], r["received"])' "$1"
	}
else
	flat() {
		grep -q '^[[{].*[]}]$' "$1" || return 1
		tr -d '{}' < "$1" | sed 's/,"/\n"/g' | tr -d '"' | sed 's/:/=/' > "$1.kv"
	}
	jnames() { grep -o '"name":"[^"]*"' "$1" | cut -d'"' -f4; }
	jsubs() {
		grep -o '{"pid":[^}]*}' "$1" | sed 's/[{}"]//g; s/[a-z_]*://g; s/,/ /g' |
			cut -d' ' -f1-7
	}
fi
jcheck() { flat "$1"; }

# expect FILE KEY VALUE WHAT (after flat FILE)
expect() {
	got=$(sed -n "s/^$2=//p" "$1.kv" | head -n 1)
	[ -n "$got" ] || got=MISSING
	[ "$got" = "$3" ] || bad "$4: $2 is $got, expected $3"
}

# wait_line FILE TEXT: up to 20 s for TEXT to appear in FILE.
wait_line() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -lt 2000 ] || return 1
		sleep 0.01
	done
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

live="/live-$$"
out="$dir/.out"

# 1. A live queue: 10 sent, 3 taken, one holder.
"$peer" hold "$live" 10 3 120 > "$dir/.hold" 2>&1 &
hold=$!
pids="$pids $hold"
wait_line "$dir/.hold" ready || { bad "the holder did not start"; cat "$dir/.hold"; exit 1; }
"$stat" --json "$live" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "live: exit $rc"
jcheck "$out" || bad "live: not JSON: $(cat "$out")"
expect "$out" name "$live" live
expect "$out" kind queue live
expect "$out" mode 0640 live
expect "$out" holders 1 live
expect "$out" stale false live
expect "$out" corrupt false live
expect "$out" queued 7 live
expect "$out" unfinished 7 live
expect "$out" sent 10 live
expect "$out" received 3 live
expect "$out" recoveries 0 live
expect "$out" orphans 0 live
expect "$out" capacity 65536 live
expect "$out" max_payload 1024 live
expect "$out" max_messages 0 live
expect "$out" shutdown false live
b=$(sed -n 's/^bytes=//p' "$out.kv")
[ "$b" -ge 700 ] 2>/dev/null && [ "$b" -le 65536 ] || bad "live: bytes $b (7 records of 100 bytes)"

# The listing shows it; dot files (the library's temporaries) are not.
: > "$dir/.tmp-1-2-3"
"$stat" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "list: exit $rc"
grep -q "^queue  *$live  *0640  *1  *7 " "$out" || bad "list: no line for $live: $(cat "$out")"
grep -q "tmp-1-2-3" "$out" && bad "list: shows a dot file"
"$stat" --json > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "list --json: exit $rc"
jcheck "$out" || bad "list --json: not JSON"
[ "$(jnames "$out")" = "$live" ] || bad "list --json: names $(jnames "$out")"
"$stat" "$live" > "$out"
grep -q "^sent: *10$" "$out" && grep -q "^holders: *1$" "$out" ||
	bad "full view: $(cat "$out")"

# 2. Its receive lock held by a stopped process, first between commits,
# then inside one (its journal pending): answered at once, all the same.
for how in "" pending; do
	what="stopped locker${how:+ ($how)}"
	# shellcheck disable=SC2086
	"$peer" lockstop "$live" $how > "$dir/.lock" 2>&1 &
	locker=$!
	pids="$pids $locker"
	wait_line "$dir/.lock" locked || bad "$what: did not lock"
	i=0
	until grep -q '^State:.*T' "/proc/$locker/status" 2>/dev/null; do
		i=$((i + 1)); [ "$i" -lt 2000 ] || { bad "$what: did not stop"; break; }
		sleep 0.01
	done
	t0=$(now_ms)
	timeout 5 "$stat" --json "$live" > "$out"; rc=$?
	t1=$(now_ms)
	[ "$rc" -eq 0 ] || bad "$what: exit $rc"
	[ $((t1 - t0)) -lt 3000 ] || bad "$what: took $((t1 - t0)) ms"
	flat "$out" || bad "$what: not JSON"
	expect "$out" queued 7 "$what"
	expect "$out" holders 2 "$what"
	if [ -n "$how" ]; then
		expect "$out" pending true "$what"
	else
		expect "$out" pending false "$what"
		expect "$out" consistent true "$what"
	fi
	timeout 5 "$stat" "$live" > /dev/null || bad "$what: full view failed"
	timeout 5 "$stat" > /dev/null || bad "$what: list failed"
	kill -CONT "$locker"
	wait "$locker"; rc=$?
	[ "$rc" -eq 0 ] || bad "$what: the locker ended with $rc"
done

# 3. --watch with --count: that many documents, then exit.
timeout 10 "$stat" --json --watch 0.1 --count 2 "$live" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "watch: exit $rc"
[ "$(wc -l < "$out")" -eq 2 ] || bad "watch: $(wc -l < "$out") lines, expected 2"
head -n 1 "$out" > "$out.1" && jcheck "$out.1" || bad "watch: not JSON"
timeout 10 "$stat" --watch 0.1 --count 3 > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "watch list: exit $rc"
[ "$(grep -c '^KIND' "$out")" -eq 3 ] || bad "watch list: $(grep -c '^KIND' "$out") tables"

# 4. Stale: the only holder killed.
kill -9 "$hold"
wait "$hold" 2>/dev/null
"$stat" --json "$live" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "stale: exit $rc"
flat "$out" || bad "stale: not JSON"
expect "$out" stale true stale
expect "$out" holders 0 stale
expect "$out" corrupt false stale
expect "$out" queued 7 stale
"$stat" > "$out"
grep -q "^queue  *$live  *0640  *0  *7 .* yes" "$out" || bad "stale list: $(cat "$out")"

# 5. Corrupt files: random bytes, empty, a queue cut short, a directory,
# a FIFO, a symlink. Exit 0, corrupt true, never a hang.
head -c 4096 /dev/urandom > "$dir/rand"
: > "$dir/empty"
head -c 40000 "$dir/${live#/}" > "$dir/short"
mkdir "$dir/adir"
mkfifo "$dir/afifo"
ln -s "$dir/${live#/}" "$dir/alink"
for n in rand empty short adir afifo alink; do
	timeout 5 "$stat" --json "/$n" > "$out"; rc=$?
	[ "$rc" -eq 0 ] || bad "corrupt $n: exit $rc"
	flat "$out" || bad "corrupt $n: not JSON"
	expect "$out" corrupt true "corrupt $n"
	expect "$out" queued MISSING "corrupt $n"
done
timeout 5 "$stat" > "$out" || bad "list with corrupt files failed"
[ "$(grep -c ' corrupt$' "$out")" -eq 6 ] || bad "list: corrupt lines: $(cat "$out")"
timeout 5 "$stat" --json > "$out" && jcheck "$out" || bad "list --json with corrupt files"

# 6. Missing names: exit 1 (also when another name is there).
"$stat" "/missing-$$" > "$out" 2>&1; rc=$?
[ "$rc" -eq 1 ] || bad "missing: exit $rc"
"$stat" --json "/missing-$$" > "$out" 2>/dev/null; rc=$?
[ "$rc" -eq 1 ] || bad "missing --json: exit $rc"
[ -s "$out" ] && bad "missing --json printed $(cat "$out")"
"$stat" --json "$live" "/missing-$$" > "$out" 2>/dev/null; rc=$?
[ "$rc" -eq 1 ] || bad "one of two missing: exit $rc"
[ "$(jnames "$out")" = "$live" ] || bad "one of two missing: $(cat "$out")"

# 7. Usage errors: 2. An unsafe directory: 1.
for args in "--bogus" "jobs" "/a/b" "--watch 0" "--watch x" "--count 0"; do
	# shellcheck disable=SC2086
	"$stat" $args > /dev/null 2>&1; rc=$?
	[ "$rc" -eq 2 ] || bad "usage '$args': exit $rc"
done
chmod 777 "$dir"
"$stat" > /dev/null 2>&1; rc=$?
chmod 700 "$dir"
[ "$rc" -eq 1 ] || bad "o+w directory: exit $rc"
MPROC_DIR="$dir/none" "$stat" --json > "$out"; rc=$?
[ "$rc" -eq 0 ] && [ "$(cat "$out")" = "[]" ] || bad "no directory: exit $rc, $(cat "$out")"
[ -e "$dir/none" ] && bad "mproc-stat made the directory"

# 8. A named bus: 10 messages, two subscribers (forked by its creator)
# that took 2 and 7 of them. In a directory of its own.
dir="$dir/bs"
mkdir "$dir" && chmod 700 "$dir" || exit 1
MPROC_DIR="$dir"
out="$dir/.out"
bus="/bus-$$"
"$peer" bus "$bus" 10 2 7 120 > "$dir/.bus" 2>&1 &
bhold=$!
pids="$pids $bhold"
wait_line "$dir/.bus" ready || { bad "the bus did not start"; cat "$dir/.bus"; exit 1; }
read -r _ r1 r2 < "$dir/.bus"
pids="$pids $r1 $r2"
"$stat" --json "$bus" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "bus: exit $rc"
jcheck "$out" || bad "bus: not JSON: $(cat "$out")"
for kv in name="$bus" kind=bus mode=0640 holders=3 stale=false corrupt=false \
	sent=10 queued=10 bytes=1600 capacity=65536 max_payload=1024 \
	recoveries=0 reclaimed=0 readers=2 max_readers=8 subscribed=2 \
	max_lag=8 max_lag_bytes=1280 overwrite=false pending=false \
	consistent=true; do
	expect "$out" "${kv%%=*}" "${kv#*=}" bus
done
# Each record is 160 bytes (a 56-byte header and 100, padded to 8).
jsubs "$out" | sort > "$out.subs"
printf '%s true 320 8 1280 0 2\n%s true 1120 3 480 0 7\n' "$r1" "$r2" | sort > "$out.want"
cmp -s "$out.subs" "$out.want" || bad "bus subscribers: $(cat "$out.subs")"
"$stat" > "$out"
grep -q "^bus  *$bus  *0640  *3  *8  *1600 *no *$" "$out" || bad "bus list: $(cat "$out")"
"$stat" "$bus" > "$out"
grep -q "^  $r1  *yes  *320  *8  *1280  *0  *2$" "$out" &&
	grep -q "^  $r2  *yes  *1120  *3  *480  *0  *7$" "$out" &&
	grep -q "^readers: *2 live of 2 subscribed" "$out" ||
	bad "bus full view: $(cat "$out")"

# Its send lock held by a stopped process, between commits and inside one.
for how in "" pending; do
	what="bus: stopped writer${how:+ ($how)}"
	# shellcheck disable=SC2086
	"$peer" buslockstop "$bus" $how > "$dir/.lock" 2>&1 &
	locker=$!
	pids="$pids $locker"
	wait_line "$dir/.lock" locked || bad "$what: did not lock"
	i=0
	until grep -q '^State:.*T' "/proc/$locker/status" 2>/dev/null; do
		i=$((i + 1)); [ "$i" -lt 2000 ] || { bad "$what: did not stop"; break; }
		sleep 0.01
	done
	t0=$(now_ms)
	timeout 5 "$stat" --json "$bus" > "$out"; rc=$?
	t1=$(now_ms)
	[ "$rc" -eq 0 ] || bad "$what: exit $rc"
	[ $((t1 - t0)) -lt 3000 ] || bad "$what: took $((t1 - t0)) ms"
	flat "$out" || bad "$what: not JSON"
	expect "$out" sent 10 "$what"
	expect "$out" max_lag 8 "$what"
	expect "$out" holders 4 "$what"
	if [ -n "$how" ]; then
		expect "$out" pending true "$what"
	else
		expect "$out" pending false "$what"
		expect "$out" consistent true "$what"
	fi
	timeout 5 "$stat" > /dev/null || bad "$what: list failed"
	kill -CONT "$locker"
	wait "$locker"; rc=$?
	[ "$rc" -eq 0 ] || bad "$what: the locker ended with $rc"
done

# Stale: the creator and both readers killed; their entries stay (a
# writer would take them back), marked not live.
# The readers first, dead before their parent: a reader that saw its
# parent go first would close the bus, unsubscribing cleanly.
kill -9 "$r1" "$r2"
i=0
# (A zombie counts as dead: nobody may reap them if PID 1 does not.)
gone() {
	st=$(sed -n 's/^State:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)
	case "$st" in '' | Z* | X*) return 0 ;; esac
	return 1
}
while ! gone "$r1" || ! gone "$r2"; do
	i=$((i + 1)); [ "$i" -lt 500 ] || { bad "bus readers did not die"; break; }
	sleep 0.01
done
kill -9 "$bhold"
wait "$bhold" 2>/dev/null
"$stat" --json "$bus" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "stale bus: exit $rc"
flat "$out" || bad "stale bus: not JSON"
for kv in stale=true holders=0 corrupt=false readers=0 subscribed=2 max_lag=8; do
	expect "$out" "${kv%%=*}" "${kv#*=}" "stale bus"
done
[ "$(jsubs "$out" | cut -d' ' -f2 | sort -u)" = false ] ||
	bad "stale bus: readers live: $(jsubs "$out")"

# 9. A named slot: 5 values published, the last of 300 bytes; a reader
# took it and sleeps for a newer one, another holds it borrowed, and the
# creator holds a reservation.
slot="/slot-$$"
"$peer" slot "$slot" 5 300 120 > "$dir/.slot" 2>&1 &
shold=$!
pids="$pids $shold"
wait_line "$dir/.slot" ready || { bad "the slot did not start"; cat "$dir/.slot"; exit 1; }
read -r _ sr sl < "$dir/.slot"
pids="$pids $sr $sl"
"$stat" --json "$slot" > "$out"; rc=$?
[ "$rc" -eq 0 ] || bad "slot: exit $rc"
jcheck "$out" || bad "slot: not JSON: $(cat "$out")"
for kv in name="$slot" kind=slot mode=0600 holders=3 stale=false \
	corrupt=false version=5 value_size=300 max_payload=4096 buffers=8 \
	recoveries=0 readers=2 request=1025 sender="$shold" recipient=0 \
	copying=0 borrowed=1 writing=1; do
	expect "$out" "${kv%%=*}" "${kv#*=}" slot
done
# Asleep: the reader wakes every 200 ms to look again, so ask a few times.
i=0
until "$stat" --json "$slot" > "$out" && flat "$out" &&
	grep -q '^readers_waiting=1$' "$out.kv"; do
	i=$((i + 1)); [ "$i" -lt 50 ] || { bad "slot: readers_waiting never 1"; break; }
done
"$stat" > "$out"
grep -q "^slot  *$slot  *0600  *3  *5  *300 *no *$" "$out" || bad "slot list: $(cat "$out")"
"$stat" "$slot" > "$out"
grep -q "^version: *5$" "$out" && grep -q "^value: *300 bytes, request 1025" "$out" ||
	bad "slot full view: $(cat "$out")"
kill -9 "$sr" "$sl"
kill -9 "$shold"
wait "$shold" 2>/dev/null

# 10. Bus and slot files scribbled on: exit 0, corrupt true, none of the
# kind's figures, never a hang. A plain copy is no corruption.
b="$dir/${bus#/}"
s="$dir/${slot#/}"
cp "$b" "$dir/bus-copy" && cp "$s" "$dir/slot-copy" || bad "copies"
for w in bus-words bus-cursor bus-record; do
	cp "$b" "$dir/$w" && "$peer" scribble "$dir/$w" "$w" || bad "scribble $w"
done
for w in slot-index slot-size slot-geometry; do
	cp "$s" "$dir/$w" && "$peer" scribble "$dir/$w" "$w" || bad "scribble $w"
done
head -c 4096 "$b" > "$dir/bus-short"
head -c 20000 "$s" > "$dir/slot-short"
for n in bus-copy slot-copy; do
	timeout 5 "$stat" --json "/$n" > "$out"; rc=$?
	[ "$rc" -eq 0 ] || bad "$n: exit $rc"
	flat "$out" || bad "$n: not JSON"
	expect "$out" corrupt false "$n"
done
expect "$out" version 5 slot-copy
for n in bus-words bus-cursor bus-record bus-short slot-index slot-size \
	slot-geometry slot-short; do
	timeout 5 "$stat" --json "/$n" > "$out"; rc=$?
	[ "$rc" -eq 0 ] || bad "corrupt $n: exit $rc"
	flat "$out" || bad "corrupt $n: not JSON"
	expect "$out" corrupt true "corrupt $n"
	expect "$out" sent MISSING "corrupt $n"
	expect "$out" version MISSING "corrupt $n"
	timeout 5 "$stat" "/$n" > /dev/null; rc=$?
	[ "$rc" -eq 0 ] || bad "corrupt $n: full view exit $rc"
done
timeout 5 "$stat" > "$out" || bad "list with corrupt buses and slots failed"
[ "$(grep -c ' corrupt$' "$out")" -eq 8 ] || bad "bus/slot list: corrupt lines: $(cat "$out")"
timeout 5 "$stat" --json > "$out" && jcheck "$out" || bad "list --json with corrupt buses and slots"

[ "$fail" -eq 0 ] || exit 1
echo "PASS"
