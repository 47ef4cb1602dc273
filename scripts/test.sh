#!/bin/bash
# Install what the tests need, build with -Werror, run the whole suite (meson test).
#   scripts/test.sh [meson test args...]      e.g. scripts/test.sh --suite unit
# KEYWARD_TEST_SETUP=asan|valgrind runs the suite under that meson test setup.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${KEYWARD_BUILD_DIR:-$SRC/build-test}

"$SRC/scripts/deps.sh" test
if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$SRC" --werror -Dtests=enabled
fi
ninja -C "$BUILD"
setup=()
[ -n "${KEYWARD_TEST_SETUP:-}" ] && setup=(--setup "$KEYWARD_TEST_SETUP")
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "${setup[@]}" "$@"
