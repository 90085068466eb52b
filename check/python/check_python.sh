#!/bin/sh
# check_python.sh - the Python package's pytest suite (python/tests), with
# the interpreter configure chose ($PYTHON, one that has pytest and
# numpy), against the library just built (MPROC_LIBRARY) and the package
# in the source tree, each test session in a private MPROC_DIR.
# Skipped (77) when configure found no such interpreter or the library is
# built with sanitizers (their runtime cannot be loaded into python).
set -u
top="${top_builddir:-.}"
src="${top_srcdir:-.}"
if [ "${MPROC_PY_TESTS:-no}" != yes ] || [ -z "${PYTHON:-}" ]; then
	echo "SKIP: no Python 3 with pytest and numpy (configure: apt-get install python3-pytest python3-numpy)"
	exit 77
fi
if [ -n "${MPROC_SANITIZERS:-}" ]; then
	echo "SKIP: libmproc built with sanitizers; the Python suite runs in the plain build"
	exit 77
fi
lib=$(cd "$top" && pwd)/.libs/libmproc.so.0
[ -f "$lib" ] || { echo "FAIL: $lib not built"; exit 1; }
MPROC_LIBRARY=$lib
PYTHONPATH=$(cd "$src" && pwd)/python
MPROC_CPEER=$(cd "$top" && pwd)/check/python/cpeer
PYTHONDONTWRITEBYTECODE=1
export MPROC_LIBRARY PYTHONPATH MPROC_CPEER PYTHONDONTWRITEBYTECODE
# No cache in the (possibly read-only) source tree; every test bounded.
"$PYTHON" -m pytest -q -p no:cacheprovider --rootdir="$src/python" \
	"$src/python/tests"
rc=$?
case $rc in
0) exit 0 ;;
5) echo "FAIL: pytest collected no tests"; exit 1 ;;
*) exit 1 ;;
esac
