#!/bin/sh
# bootstrap.sh - set up a fresh Debian 12 machine and build mproc.
# Installs what is missing (non-interactive apt-get), then runs
# autoreconf, configure and make. A second run installs nothing and
# rebuilds only what changed.
set -eu
cd "$(dirname "$0")"

need=""
# check: the tests; libssl-dev: the demo's SHA-256; man-db, groff-base: man --warnings;
# python3, python3-pytest, python3-numpy: the Python package and its tests
for pkg in gcc make autoconf automake libtool pkg-config check libssl-dev man-db groff-base \
	python3 python3-pytest python3-numpy; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		need="$need $pkg"
	fi
done
if [ -n "$need" ]; then
	echo "bootstrap: installing$need"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
			echo "bootstrap: need root (or sudo) to install:$need" >&2; exit 1
		fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq </dev/null
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $need </dev/null
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
	autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
	./configure ${MPROC_CONFIGURE_FLAGS:-}
fi
make -j"$(nproc 2>/dev/null || echo 2)"
