#!/bin/sh
# check_demo.sh - run examples/worker_pool on a small generated tree: with
# one worker, with several under --chaos (workers SIGKILLed as it runs) and
# with --verify. The digests must be sha256sum's (--list | sha256sum -c),
# and the combined checksum the documented recipe's:
#   worker_pool --list DIR | LC_ALL=C sort | sha256sum
#   find -H DIR -type f -exec sha256sum {} + | LC_ALL=C sort | sha256sum
#
# The tree holds a few hundred files of varied sizes (some empty), names
# with spaces, a backslash and a newline, a dangling symlink, a symlink to
# a file and a FIFO (none of which is a regular file to checksum). Then
# three files are made unreadable (chmod 000; as root, run without
# CAP_DAC_OVERRIDE via setpriv): exit 1, the others still listed. Last,
# arguments that are no directory (a FIFO, a file, a missing path) must
# fail at once, a symlink to the tree must work, an empty tree must give
# the SHA-256 of nothing. Every run is bounded by timeout.

set -u

top_builddir=${top_builddir:-.}
demo="$top_builddir/examples/worker_pool"
if [ ! -x "$demo" ]; then
	# configure leaves the demo out without libcrypto: a skip, not a failure.
	if grep -q '^S\["HAVE_CRYPTO_TRUE"\]="#"' "$top_builddir/config.status" 2>/dev/null; then
		echo "check_demo: SKIP: configure found no libcrypto, $demo not built" >&2
		exit 77
	fi
	echo "check_demo: $demo not built" >&2
	exit 99
fi
for tool in timeout sha256sum find sort; do
	command -v $tool >/dev/null 2>&1 || {
		echo "check_demo: $tool not found" >&2
		exit 99
	}
done

RUN_LIMIT=120 # seconds, per run of the demo (a few hundred files take < 2 s)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mproc-demo.XXXXXX") || exit 99
tmp=$(cd "$tmp" && pwd) || exit 99
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
# sha256sum escapes these names; --list must do the same.
printf 'back' >"$tree/j/back\\slash" || exit 99
printf 'new' >"$tree/j/new
line" || exit 99
i=$((i + 2))
nfiles=$i
ln -s "$tree/no such file" "$tree/a/dangling"
ln -s "$tree/b/file 1.dat" "$tree/b/link"
mkfifo "$tree/i/fifo" || exit 99

# --- helpers ----------------------------------------------------------------
# run OUT DIR ARGS...: the demo (prefixed by $as) on DIR, stdout in
# $tmp/OUT, stderr in $tmp/OUT.err, both echoed; returns its status.
as=""
run() {
	out=$1
	dir=$2
	shift 2
	$as timeout "$RUN_LIMIT" "$demo" -q "$@" "$dir" >"$tmp/$out" 2>"$tmp/$out.err"
	rc=$?
	[ $rc -eq 124 ] && fail "$out: no result in $RUN_LIMIT s (hung?)"
	sed 's/^/  | /' "$tmp/$out"
	[ -s "$tmp/$out.err" ] && sed 's/^/  ! /' "$tmp/$out.err"
	return $rc
}
checksum_of() {
	sed -n 's/^  checksum *\([0-9a-f]*\)$/\1/p' "$tmp/$1"
}
sha_of() {
	sha256sum | sed 's/ .*//'
}
# sha256sum's own lines for the regular files under $1 (that $as can
# read), sorted.
reference() {
	$as find -H "$1" -type f -exec sha256sum {} + 2>/dev/null | LC_ALL=C sort
}

echo "check_demo: $nfiles files"

# --- every file readable: exit 0 ------------------------------------------
echo "check_demo: -j 1"
run serial.out "$tree" -j 1 || fail "-j 1 exited $?"
echo "check_demo: -j 4 --chaos"
run chaos.out "$tree" -j 4 --chaos || fail "--chaos exited $?"
echo "check_demo: -j 3 --verify"
run verify.out "$tree" -j 3 --verify || fail "--verify exited $?"

for o in serial.out chaos.out verify.out; do
	grep -q "^  files        $nfiles (0 errors)$" "$tmp/$o" ||
		fail "$o: expected $nfiles files and 0 errors"
	[ -s "$tmp/$o.err" ] && fail "$o: said something on stderr"
done
grep -q "verify ok" "$tmp/verify.out" || fail "--verify did not say ok"
grep -q "chaos killed [1-9]" "$tmp/chaos.out" || fail "--chaos killed nobody"

a=$(checksum_of serial.out)
b=$(checksum_of chaos.out)
c=$(checksum_of verify.out)
echo "$a" | grep -q '^[0-9a-f]\{64\}$' || fail "no SHA-256 checksum in the output"
[ "$a" = "$b" ] || fail "checksum with --chaos $b differs from $a"
[ "$a" = "$c" ] || fail "checksum with -j 3 $c differs from $a"

reference "$tree" >"$tmp/ref.sums"
[ "$(wc -l <"$tmp/ref.sums")" -eq "$nfiles" ] ||
	fail "sha256sum listed $(wc -l <"$tmp/ref.sums") files, expected $nfiles"
d=$(sha_of <"$tmp/ref.sums")
echo "check_demo: find | sha256sum | sort | sha256sum gives $d"
[ "$a" = "$d" ] || fail "the recipe over sha256sum gives $d, the demo $a"

echo "check_demo: --list -j 2 --chaos"
$as timeout "$RUN_LIMIT" "$demo" -q --list -j 2 --chaos "$tree" \
	>"$tmp/list.sums" 2>"$tmp/list.err" || fail "--list exited $?"
grep -q "^  checksum     $a$" "$tmp/list.err" ||
	fail "--list: no summary with checksum $a on stderr"
LC_ALL=C sort "$tmp/list.sums" | cmp -s - "$tmp/ref.sums" ||
	fail "--list differs from sha256sum's lines"
sha256sum --strict --quiet -c "$tmp/list.sums" || fail "sha256sum -c rejects --list"
d=$(LC_ALL=C sort "$tmp/list.sums" | sha_of)
[ "$a" = "$d" ] || fail "--list | LC_ALL=C sort | sha256sum gives $d, the demo $a"

# --- three files unreadable: exit 1, the others still counted -------------
unread="$tree/a/file 3.dat
$tree/b/file 17.dat
$tree/h/file 39.dat"
chmod 000 "$tree/a/file 3.dat" "$tree/b/file 17.dat" "$tree/h/file 39.dat"
if [ "$(id -u)" -eq 0 ]; then
	# root reads mode 000; without these capabilities it cannot.
	as="setpriv --bounding-set=-dac_override,-dac_read_search"
	$as true 2>/dev/null || as="no-setpriv"
fi
if [ "$as" != "no-setpriv" ] && ! $as cat "$tree/a/file 3.dat" >/dev/null 2>&1; then
	echo "check_demo: 3 files unreadable${as:+ (running as: $as)}"
	run unread.out "$tree" -j 3 --verify
	rc=$?
	[ $rc -eq 1 ] || fail "unreadable files: exit $rc, expected 1"
	grep -q "^  files        $nfiles (3 errors)$" "$tmp/unread.out" ||
		fail "unread.out: expected $nfiles files and 3 errors"
	grep -q "verify ok" "$tmp/unread.out" || fail "unread.out: --verify did not say ok"
	echo "$unread" | while IFS= read -r f; do
		n=$(grep -c -F -x "worker_pool: $f: Permission denied" "$tmp/unread.out.err")
		[ "$n" -eq 1 ] || fail "unread.out: $f reported $n times, expected once"
	done || exit 1
	grep -q "^worker_pool: 3 of $nfiles files not read$" "$tmp/unread.out.err" ||
		fail "unread.out: no count of the files not read"
	reference "$tree" >"$tmp/ref3.sums"
	[ "$(wc -l <"$tmp/ref3.sums")" -eq $((nfiles - 3)) ] ||
		fail "sha256sum read $(wc -l <"$tmp/ref3.sums") files, expected $((nfiles - 3))"
	d=$(sha_of <"$tmp/ref3.sums")
	[ "$(checksum_of unread.out)" = "$d" ] ||
		fail "unread.out: checksum $(checksum_of unread.out), the recipe $d"

	run unread.sums "$tree" -j 2 --chaos --list
	rc=$?
	[ $rc -eq 1 ] || fail "unreadable files, --list: exit $rc, expected 1"
	LC_ALL=C sort "$tmp/unread.sums" | cmp -s - "$tmp/ref3.sums" ||
		fail "unreadable files: --list differs from sha256sum's lines"
	sha256sum --strict --quiet -c "$tmp/unread.sums" ||
		fail "unreadable files: sha256sum -c rejects --list"
else
	echo "check_demo: SKIP the unreadable-file case: chmod 000 does not" \
		"stop reads here (as root: setpriv missing or refused)"
fi
as=""
chmod 644 "$tree/a/file 3.dat" "$tree/b/file 17.dat" "$tree/h/file 39.dat"

# --- arguments that are no directory --------------------------------------
mkfifo "$tmp/fifo" || exit 99
printf 'x' >"$tmp/plain" || exit 99
for arg in fifo plain missing; do
	echo "check_demo: argument $arg"
	run "arg-$arg.out" "$tmp/$arg"
	rc=$?
	[ $rc -eq 2 ] || fail "argument $arg: exit $rc, expected 2"
	[ -s "$tmp/arg-$arg.out" ] && fail "argument $arg: printed results"
	case $arg in
	missing) want="worker_pool: $tmp/$arg: No such file or directory" ;;
	*) want="worker_pool: $tmp/$arg: not a directory" ;;
	esac
	grep -q -F -x "$want" "$tmp/arg-$arg.out.err" ||
		fail "argument $arg: expected \"$want\" on stderr"
done

# A symlink to the tree is walked (the links inside it still are not).
ln -s "$tree" "$tmp/link" || exit 99
echo "check_demo: argument link (to the tree)"
run link.out "$tmp/link/" -j 2 || fail "symlink argument exited $?"
grep -q "^  files        $nfiles (0 errors)$" "$tmp/link.out" ||
	fail "link.out: expected $nfiles files and 0 errors"
d=$(reference "$tmp/link" | sha_of)
[ "$(checksum_of link.out)" = "$d" ] ||
	fail "link.out: checksum $(checksum_of link.out), the recipe $d"

mkdir "$tmp/empty" || exit 99
echo "check_demo: an empty directory"
run empty.out "$tmp/empty" || fail "empty directory exited $?"
d=$(sha_of </dev/null)
[ "$(checksum_of empty.out)" = "$d" ] ||
	fail "empty.out: checksum $(checksum_of empty.out), expected $d"

echo "check_demo: ok, combined checksum $a"
exit 0
