#!/bin/bash
# keyward benchmark: a fresh SoftHSM2 token with an RSA-2048 and a P-256 key; signs SHA-256
# digests N times through OpenSSL + keyward (sign_loop, key opened once via OSSL_STORE) and
# through raw PKCS#11 C_Sign (raw_sign), with 1 and 2 threads, and prints ops/s and the ratio
# provider/raw (aim: >= 0.97), from ROUNDS alternating runs of each.
#   bench/run.sh [--build DIR] [--src DIR]      (ninja -C build bench runs it)
# Env: BENCH_N_RSA (default 1000), BENCH_N_EC (default 4000) signatures per run,
# BENCH_ROUNDS (default 5).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${KEYWARD_BUILD:-$SRC/build}
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --src) SRC=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
N_RSA=${BENCH_N_RSA:-1000}
N_EC=${BENCH_N_EC:-4000}
ROUNDS=${BENCH_ROUNDS:-5}
SIGN_LOOP=$BUILD/bench/sign_loop
RAW_SIGN=$BUILD/bench/raw_sign
for f in "$SIGN_LOOP" "$RAW_SIGN" "$BUILD/provider/keyward.so"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench: $f not built (ninja -C $BUILD)" >&2; exit 1; }
done

export KEYWARD_PROVIDER_DIR=$BUILD/provider
# shellcheck source=../tests/fixtures/softhsm.sh
. "$SRC/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init bench
kw_keygen bench rsa 01 rsa:2048
kw_keygen bench ec 02 EC:prime256v1
kw_provider_cnf "$KW_TMP/openssl.cnf"

echo "keyward bench: SoftHSM2 $(softhsm2-util --version), $(openssl version | cut -d' ' -f1-2)," \
    "$(nproc) CPUs; $ROUNDS rounds"

# Best (highest) ops/s and ops per CPU-second of each program over ROUNDS runs, the two
# programs alternating so that a burst of other load hits both alike; the ratio shown is the
# median of the per-round ratios (each round's pair ran back to back under similar load).
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
declare -A best
rounds_w=()
rounds_c=()
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
run_pair() {
    local key=$1 n=$2 t=$3 r out pw pc
    rounds_w=()
    rounds_c=()
    for ((r = 1; r <= ROUNDS; r++)); do
        out=$(OPENSSL_CONF=$KW_TMP/openssl.cnf "$SIGN_LOOP" \
            "pkcs11:token=bench;object=$key;type=private" "$n" "$t") ||
            { echo "bench: sign_loop failed ($key, $t threads)" >&2; exit 1; }
        pw=$(echo "$out" | field ops_per_sec)
        pc=$(echo "$out" | field ops_per_cpu_sec)
        best[pw$key$t]=$(max "$pw" "${best[pw$key$t]:-0}")
        best[pc$key$t]=$(max "$pc" "${best[pc$key$t]:-0}")
        out=$("$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" "$n" "$t") ||
            { echo "bench: raw_sign failed ($key, $t threads)" >&2; exit 1; }
        best[rw$key$t]=$(max "$(echo "$out" | field ops_per_sec)" "${best[rw$key$t]:-0}")
        best[rc$key$t]=$(max "$(echo "$out" | field ops_per_cpu_sec)" "${best[rc$key$t]:-0}")
        rounds_w+=("$(ratio "$pw" "$(echo "$out" | field ops_per_sec)")")
        rounds_c+=("$(ratio "$pc" "$(echo "$out" | field ops_per_cpu_sec)")")
    done
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

printf '%-9s %3s %6s | %12s %12s %6s | %12s %12s %6s\n' key thr N \
    'provider/s' 'raw/s' ratio 'prov/cpu-s' 'raw/cpu-s' ratio
below=0
for spec in "rsa:$N_RSA" "ec:$N_EC"; do
    key=${spec%%:*}
    n=${spec#*:}
    name=$([ "$key" = rsa ] && echo RSA-2048 || echo P-256)
    for t in 1 2; do
        run_pair "$key" "$n" "$t"
        rw=$(median "${rounds_w[@]}")
        rc=$(median "${rounds_c[@]}")
        printf '%-9s %3s %6s | %12s %12s %6s | %12s %12s %6s\n' "$name" "$t" "$n" \
            "${best[pw$key$t]}" "${best[rw$key$t]}" "$rw" "${best[pc$key$t]}" "${best[rc$key$t]}" "$rc"
        awk -v r="$rw" 'BEGIN { exit !(r < 0.97) }' && below=1
    done
done
echo "ratio = median over rounds of provider/raw in the same round; op/s columns = best round"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (wall-clock ratios are only meaningful on an idle machine)"
if [ "$below" = 0 ]; then echo "all wall-clock ratios >= 0.97"; else echo "some wall-clock ratio below 0.97"; fi

# Instructions per signature under callgrind: deterministic, so it still means something when
# the machine is busy. Runs of 20 and 220 signatures; the difference / 200 leaves out start-up.
if [ "${BENCH_INSTR:-1}" != 0 ] && command -v valgrind >/dev/null 2>&1; then
    instr() {
        valgrind --tool=callgrind --callgrind-out-file="$KW_TMP/cg.out" "$@" >/dev/null 2>"$KW_TMP/cg.err" ||
            { cat "$KW_TMP/cg.err" >&2; echo "bench: callgrind run failed: $*" >&2; exit 1; }
        sed -n 's/^summary: //p' "$KW_TMP/cg.out"
    }
    echo
    echo "instructions per signature (callgrind, 1 thread):"
    printf '%-9s | %14s %14s %22s\n' key provider raw 'ratio (raw/provider)'
    for key in rsa ec; do
        uri="pkcs11:token=bench;object=$key;type=private"
        p1=$(OPENSSL_CONF=$KW_TMP/openssl.cnf instr "$SIGN_LOOP" "$uri" 20 1)
        p2=$(OPENSSL_CONF=$KW_TMP/openssl.cnf instr "$SIGN_LOOP" "$uri" 220 1)
        r1=$(instr "$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" 20 1)
        r2=$(instr "$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" 220 1)
        name=$([ "$key" = rsa ] && echo RSA-2048 || echo P-256)
        printf '%-9s | %14s %14s %22s\n' "$name" $(((p2 - p1) / 200)) $(((r2 - r1) / 200)) \
            "$(ratio $((r2 - r1)) $((p2 - p1)))"
    done
    echo "(a ratio of 0.97 means the provider path costs 3% more instructions per signature)"
fi
