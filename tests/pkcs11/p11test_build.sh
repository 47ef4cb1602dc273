#!/bin/bash
# Build OpenSC's p11test (src/tests/p11test, not shipped in any Debian binary package) from
# Debian's opensc source package of the installed opensc version, once, into a cache outside the
# build tree; later calls (and the asan/valgrind stages) reuse the binary.
# Usage: p11test_build.sh [--no-build]
#   Prints the path of the p11test binary on stdout. Exit 77 with the reason on stderr when it
#   cannot be had: no opensc, no deb-src line (scripts/deps.sh test adds one), a missing build
#   tool, or --no-build and nothing cached.
# Cache: $KEYWARD_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/keyward), one directory
# per opensc version and version of this script, so a new recipe or opensc builds afresh.
set -u -o pipefail
no_build=
[ "${1:-}" = --no-build ] && no_build=1
skip() {
    echo "$*" >&2
    exit 77
}

ver=$(dpkg-query -W -f='${Version}' opensc 2>/dev/null) && [ -n "$ver" ] ||
    skip "opensc is not installed (scripts/deps.sh test installs it)"
recipe=$(sha256sum "$0" | cut -c1-12)
base=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/keyward}
dir=$base/p11test-opensc-$ver-$recipe
bin=$dir/p11test
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
[ -z "$no_build" ] || skip "no p11test built for opensc $ver in $base (the main stage builds it; this stage does not)"

for t in apt-get dpkg-source autoreconf make gcc pkg-config flock; do
    command -v $t >/dev/null 2>&1 || skip "$t missing: cannot build p11test (scripts/deps.sh test installs it)"
done
pkg-config --exists cmocka libcrypto || skip "libcmocka-dev or libssl-dev missing: cannot build p11test"

mkdir -p "$base" || skip "cannot create the cache directory $base"
# One build at a time; a second caller waits for it and then finds the binary.
exec 9>"$base/.p11test.lock"
flock 9
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
t0=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/kw-p11test.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# apt-get source runs as the invoking user; as root apt warns that _apt cannot write here.
if ! apt-get source -q "opensc=$ver" >fetch.log 2>&1; then
    tail -3 fetch.log >&2
    skip "apt-get source opensc=$ver failed: no deb-src line for Debian (scripts/deps.sh test adds /etc/apt/sources.list.d/keyward-deb-src.sources) or the archive is unreachable"
fi
src=$(find . -maxdepth 1 -type d -name 'opensc-*' | head -1)
[ -n "$src" ] && [ -d "$src/src/tests/p11test" ] || skip "the opensc source package has no src/tests/p11test"
cd "$src" || exit 1
# A reader driver must be chosen: CT-API needs no library (pcsc would need libpcsclite-dev);
# p11test links libcrypto and cmocka only, so everything else is off.
if ! { autoreconf -fi >"$work/build.log" 2>&1 &&
    ./configure --disable-pcsc --enable-ctapi --enable-cmocka --enable-openssl --disable-doc \
        --disable-man --disable-notify --disable-zlib --disable-readline --disable-sm \
        --disable-openpace --disable-strict >>"$work/build.log" 2>&1 &&
    make -C src/tests/p11test -j"$(nproc)" p11test >>"$work/build.log" 2>&1; }; then
    tail -20 "$work/build.log" >&2
    echo "p11test_build: building p11test from opensc $ver failed" >&2
    exit 1
fi
mkdir -p "$dir" && cp src/tests/p11test/p11test "$dir/p11test.tmp" && mv "$dir/p11test.tmp" "$bin" || exit 1
echo "p11test_build: built p11test from Debian's opensc $ver source in $((SECONDS - t0)) s: $bin" >&2
echo "$bin"
