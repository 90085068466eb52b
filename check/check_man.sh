#!/bin/sh
# check_man.sh - the manual pages (man1, man3, man7) render without a
# warning, every symbol the shared library exports has a page of its name
# in man/man3 (a page or a .so link), every installed program (tools/) has
# one in man/man1, and every page is in dist_man_MANS (mk/man.am).
#
# Functions with a page but not (yet) in the library are fine: the check is
# library symbols <= pages. Exit 77 (skip) when man or the library is
# missing and nothing failed.
set -u
srcdir="${top_srcdir:-.}"
lib="${top_builddir:-.}/.libs/libmproc.so"
mandir="$srcdir/man"
fail=0
skip=0

if [ ! -d "$mandir/man3" ] || [ ! -f "$mandir/man7/mproc.7" ]; then
	echo "FAIL: no pages under $mandir"
	exit 1
fi

# Every page is installed and distributed.
pages=$(cd "$mandir" && ls man1/*.1 man3/*.3 man7/*.7 2>/dev/null)
for p in $pages; do
	grep -qE "(^|[[:space:]])man/$p([[:space:]]|\$)" "$srcdir/mk/man.am" ||
		{ echo "FAIL: man/$p is not in dist_man_MANS (mk/man.am)"; fail=1; }
done

# Every exported symbol has a page.
if [ -f "$lib" ]; then
	syms=$(${NM:-nm} -D --defined-only "$lib" | awk '$2 ~ /^[A-Z]$/ { print $3 }')
	if [ -z "$syms" ]; then
		echo "FAIL: no symbols read from $lib"; fail=1
	fi
	n=0
	for s in $syms; do
		n=$((n + 1))
		[ -f "$mandir/man3/$s.3" ] ||
			{ echo "FAIL: $s is exported but has no man/man3/$s.3"; fail=1; }
	done
	echo "symbols: $n exported, each checked for a page"
else
	echo "SKIP (symbols): no shared library at $lib"; skip=1
fi

# Every installed program has a page.
for t in "$srcdir"/tools/*.c; do
	[ -f "$t" ] || continue
	prog=$(basename "$t" .c)
	[ -f "$mandir/man1/$prog.1" ] ||
		{ echo "FAIL: $prog is installed but has no man/man1/$prog.1"; fail=1; }
done

# Every page renders silently. man -l resolves ".so man3/x.3" against the
# current directory, so render from man/.
if command -v man >/dev/null 2>&1; then
	n=0
	for p in $pages; do
		n=$((n + 1))
		out=$(cd "$mandir" && LC_ALL=C MANWIDTH=80 \
			man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null)
		if [ -n "$out" ]; then
			echo "FAIL: man/$p:"; printf '%s\n' "$out"; fail=1
		fi
		lines=$(cd "$mandir" && LC_ALL=C MANWIDTH=80 \
			man -E UTF-8 -l "$p" 2>/dev/null | wc -l)
		[ "$lines" -gt 5 ] ||
			{ echo "FAIL: man/$p renders to $lines lines"; fail=1; }
	done
	echo "pages: $n rendered"
else
	echo "SKIP (render): man is not installed"; skip=1
fi

[ "$fail" -eq 0 ] || exit 1
[ "$skip" -eq 0 ] || exit 77
echo "PASS"
