#!/bin/sh
# check_demo.sh - run examples/worker_pool on a small generated tree: with
# one worker, with several under --chaos (workers SIGKILLed as it runs) and
# with --verify. The combined checksums must agree with each other and
# with an independent serial computation (python3, when present).
#
# The tree holds a few hundred files of varied sizes (some empty), names
# with spaces, files made unreadable with chmod 000 (still readable when
# the tests run as root: the expected error count follows `test -r`), a
# dangling symlink, a symlink to a file and a FIFO (none of which is a
# regular file to checksum).

set -u

top_builddir=${top_builddir:-.}
demo="$top_builddir/examples/worker_pool"
if [ ! -x "$demo" ]; then
	echo "check_demo: $demo not built" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mproc-demo.XXXXXX") || exit 99
cleanup() {
	chmod -R u+rwx "$tmp" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP
tree="$tmp/tree"

fail() {
	echo "check_demo: FAIL: $*" >&2
	exit 1
}

# --- the tree -------------------------------------------------------------
i=0
for d in a b "c d" e/f e/g h i j; do
	mkdir -p "$tree/$d" || exit 99
	n=0
	while [ $n -lt 40 ]; do
		size=$(( (i * 7919) % 20000 ))
		[ $((i % 37)) -eq 0 ] && size=$((size * 6))
		[ $((i % 53)) -eq 0 ] && size=0
		head -c "$size" /dev/urandom >"$tree/$d/file $n.dat" || exit 99
		i=$((i + 1))
		n=$((n + 1))
	done
done
nfiles=$i
chmod 000 "$tree/a/file 3.dat" "$tree/b/file 17.dat" "$tree/h/file 39.dat"
unreadable=0
for f in "$tree/a/file 3.dat" "$tree/b/file 17.dat" "$tree/h/file 39.dat"; do
	[ -r "$f" ] || unreadable=$((unreadable + 1))
done
ln -s "$tree/no such file" "$tree/a/dangling"
ln -s "$tree/b/file 1.dat" "$tree/b/link"
mkfifo "$tree/i/fifo" 2>/dev/null || true

# --- runs -------------------------------------------------------------------
run() {
	out=$1
	shift
	"$demo" -q "$@" "$tree" >"$tmp/$out" 2>"$tmp/$out.err"
	rc=$?
	sed 's/^/  | /' "$tmp/$out"
	[ -s "$tmp/$out.err" ] && sed 's/^/  ! /' "$tmp/$out.err"
	return $rc
}
checksum_of() {
	sed -n 's/^  checksum *\([0-9a-f]*\)$/\1/p' "$tmp/$1"
}

echo "check_demo: $nfiles files, $unreadable unreadable"

echo "check_demo: -j 1"
run serial.out -j 1 || fail "-j 1 exited $?"
echo "check_demo: -j 4 --chaos"
run chaos.out -j 4 --chaos || fail "--chaos exited $?"
echo "check_demo: -j 3 --verify"
run verify.out -j 3 --verify || fail "--verify exited $?"

for o in serial.out chaos.out verify.out; do
	grep -q "^  files        $nfiles ($unreadable errors)" "$tmp/$o" ||
		fail "$o: expected $nfiles files and $unreadable errors"
done
# Each unreadable file is reported once, by name.
for o in serial.out chaos.out verify.out; do
	n=$(grep -c '^worker_pool: .*/file [0-9]*\.dat: ' "$tmp/$o.err")
	[ "$n" -eq "$unreadable" ] ||
		fail "$o: $n files reported unreadable, expected $unreadable"
done
grep -q "verify ok" "$tmp/verify.out" || fail "--verify did not say ok"
grep -q "chaos killed [1-9]" "$tmp/chaos.out" || fail "--chaos killed nobody"

a=$(checksum_of serial.out)
b=$(checksum_of chaos.out)
c=$(checksum_of verify.out)
[ -n "$a" ] || fail "no checksum in the output"
[ "$a" = "$b" ] || fail "checksum with --chaos $b differs from $a"
[ "$a" = "$c" ] || fail "checksum with -j 3 $c differs from $a"

# --- an independent serial computation ----------------------------------
if command -v python3 >/dev/null 2>&1; then
	d=$(python3 - "$tree" <<'EOF'
import os, stat, sys

M = (1 << 64) - 1
OFF = 0xcbf29ce484222325


def fnv(b, h=OFF):
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & M
    return h


def mix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)


root = sys.argv[1]
total = 0
for dirpath, dirs, files in os.walk(root):
    for name in files:
        p = os.path.join(dirpath, name)
        if not stat.S_ISREG(os.lstat(p).st_mode):
            continue
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        rel = os.path.relpath(p, root).encode()
        total = (total + mix(fnv(rel) ^ mix((fnv(data) + len(data)) & M))) & M
print("%016x" % total)
EOF
)
	echo "check_demo: python3 serial checksum $d"
	[ "$a" = "$d" ] || fail "python3 computes $d, the demo $a"
fi

echo "check_demo: ok, combined checksum $a"
exit 0
