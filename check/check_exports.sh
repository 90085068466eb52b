#!/bin/sh
# check_exports.sh - the shared library exports mproc_* and nothing else.
set -eu
lib="${top_builddir:-.}/.libs/libmproc.so"
if [ ! -f "$lib" ]; then
	echo "SKIP: no shared library at $lib"
	exit 77
fi
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[A-Z]$/ { print $3 }')
bad=$(printf '%s\n' "$syms" | grep -v '^mproc_[a-z]' | grep -v '^$' || true)
n=$(printf '%s\n' "$syms" | grep -c '^mproc_' || true)
if [ -n "$bad" ]; then
	echo "FAIL: symbols outside mproc_*:"; printf '%s\n' "$bad"; exit 1
fi
for want in mproc_send mproc_send_msg mproc_recv mproc_close mproc_for_me \
	mproc_pipe_open mproc_queue_open mproc_strerror mproc_version \
	mproc_request_name mproc_fd mproc_queue_join; do
	printf '%s\n' "$syms" | grep -qx "$want" || { echo "FAIL: $want not exported"; exit 1; }
done
echo "PASS: $n symbols, all mproc_*"
