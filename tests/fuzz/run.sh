#!/bin/bash
# Build the libFuzzer targets (clang, ASan+UBSan) and run each for a bounded time.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      default 60 s, every target
# Environment: KEYWARD_FUZZ_BUILD  build dir (default BUILD-ROOT/build-fuzz)
#              KEYWARD_FUZZ_JOBS   targets run at once (default: the number of CPUs)
#              KEYWARD_FUZZ_OUT    where crash inputs and logs go (default BUILD/fuzz-out)
# Prints execs per target and the total; exits 1 when a target crashed, leaked, hit UB, timed
# out or failed a property (the input is kept in KEYWARD_FUZZ_OUT), 77 when clang or libFuzzer
# is missing. The committed corpus is only read: new inputs go to a scratch directory.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-60}
[ $# -gt 0 ] && shift
BUILD=${KEYWARD_FUZZ_BUILD:-$SRC/build-fuzz}
OUT=${KEYWARD_FUZZ_OUT:-$BUILD/fuzz-out}
ALL="uri keyfile_der key_uri keyfile_pem cli pkcs11"
TARGETS=${*:-$ALL}

case "$SECS" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac
CC_FUZZ=${CC_FUZZ:-$(command -v clang || command -v clang-14 || echo clang)}
if ! command -v "$CC_FUZZ" >/dev/null; then
    echo "SKIP: $CC_FUZZ not installed (scripts/deps.sh test installs clang-14)" >&2
    exit 77
fi
if [ ! -e "$("$CC_FUZZ" -print-runtime-dir)/libclang_rt.fuzzer-x86_64.a" ]; then
    echo "SKIP: libFuzzer runtime missing (apt-get install libfuzzer-14-dev libclang-rt-14-dev)" >&2
    exit 77
fi

if [ ! -f "$BUILD/build.ninja" ]; then
    CC="$CC_FUZZ" meson setup "$BUILD" "$SRC" -Dfuzz=true -Dtests=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_link_args=-shared-libsan >/dev/null
fi
# ninja prints compiler errors on stdout: keep them for the console when the build fails.
if ! blog=$(ninja -C "$BUILD" 2>&1); then
    printf '%s\n' "$blog" | grep -v '^\[[0-9]*/[0-9]*\] ' | tail -n 40 >&2
    echo "fuzz build failed (clang: $CC_FUZZ)" >&2
    exit 1
fi

mkdir -p "$OUT"
export ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=0
# Stacks with function names and lines: Debian's clang-14 alone has no llvm-symbolizer in PATH.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null &&
    [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
    export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in $TARGETS; do
    if [ ! -x "$BUILD/tests/fuzz/fuzz-$t" ] || [ ! -d "$SRC/tests/fuzz/corpus/$t" ]; then
        echo "no such fuzz target: $t" >&2
        exit 2
    fi
done

# One target: its libFuzzer log in OUT/T.log, its exit status in OUT/T.rc.
fuzz_one() {
    local t=$1 work rc=0
    work=$(mktemp -d)
    "$BUILD/tests/fuzz/fuzz-$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 -artifact_prefix="$OUT/$t-" \
        "$work" "$SRC/tests/fuzz/corpus/$t" >"$OUT/$t.log" 2>&1 || rc=$?
    rm -rf "$work"
    echo "$rc" >"$OUT/$t.rc"
}

# Targets run JOBS at a time (default: one per CPU); each still gets SECS seconds.
JOBS=${KEYWARD_FUZZ_JOBS:-$(nproc)}
running=0
for t in $TARGETS; do
    rm -f "$OUT/$t.rc" "$OUT/$t.log" "$OUT/$t"-*
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    running=$((running + 1))
done
wait || true

total=0
failed=""
printf '%-14s %12s %8s  %s\n' target execs exec/s result
for t in $TARGETS; do
    log="$OUT/$t.log"
    rc=$(cat "$OUT/$t.rc" 2>/dev/null || echo 99)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    execs=${execs:-0}
    total=$((total + execs))
    if [ "$rc" -eq 0 ]; then
        res=ok
    else
        res="FAILED (exit $rc; see $log, input $OUT/$t-*)"
        failed="$failed $t"
    fi
    printf '%-14s %12s %8s  %s\n' "$t" "$execs" "${rate:-?}" "$res"
done
echo "total execs: $total"
if [ -n "$failed" ]; then
    # CI keeps only the console, so the finding itself goes there: the report's first lines and
    # the input, base64, to replay with: base64 -d > in; BUILD/tests/fuzz/fuzz-T in
    for t in $failed; do
        echo "---- fuzz-$t: what it found"
        grep -m1 -A24 -E '^==[0-9]+== *ERROR|runtime error|property failed|deadly signal|ALARM|out-of-memory|^==[0-9]+== *WARNING: [^F]' \
            "$OUT/$t.log" || tail -n 30 "$OUT/$t.log"
        for a in "$OUT/$t"-*; do
            [ -f "$a" ] && [ "${a%.replay}" = "$a" ] || continue
            echo "input $a ($(stat -c %s "$a") bytes), base64:"
            head -c 8192 "$a" | base64 -w 76
            # Whether the input alone brings it back tells a plain bug from one that needs the
            # state earlier inputs left.
            if "$BUILD/tests/fuzz/fuzz-$t" -timeout=10 -rss_limit_mb=2048 "$a" >"$a.replay" 2>&1; then
                echo "replayed alone: passes (the finding needs what earlier inputs did)"
            else
                echo "replayed alone: fails again"
            fi
        done
    done
    echo "fuzz targets that failed:$failed" >&2
    exit 1
fi
