#!/bin/bash
# Install what the tests need, build with -Werror, run the whole suite (meson test).
#   scripts/test.sh [meson test args...]      e.g. scripts/test.sh --suite unit
# KEYWARD_TEST_SETUP=asan|valgrind runs the suite under that meson test setup.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
SETUP=${KEYWARD_TEST_SETUP:-}
BUILD=${KEYWARD_BUILD_DIR:-$SRC/build-test${SETUP:+-$SETUP}}

"$SRC/scripts/deps.sh" test
if [ ! -f "$BUILD/build.ninja" ]; then
    opts=(--werror -Dtests=enabled)
    [ "$SETUP" = asan ] && opts+=(-Db_sanitize=address,undefined -Db_lundef=false)
    meson setup "$BUILD" "$SRC" "${opts[@]}"
fi
ninja -C "$BUILD"
setup=()
[ -n "$SETUP" ] && setup=(--setup "$SETUP")
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "${setup[@]}" "$@"
