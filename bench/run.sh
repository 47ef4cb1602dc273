#!/bin/bash
# keyward benchmark: a fresh SoftHSM2 token with an RSA-2048 and a P-256 key; signs SHA-256
# digests N times through OpenSSL + keyward (sign_loop, key opened once via OSSL_STORE) and
# through raw PKCS#11 C_Sign (raw_sign), with 1 and 2 threads, and prints ops/s and the ratio
# provider/raw (aim: >= 0.97). Each figure is the best of ROUNDS runs, taken alternately.
#   bench/run.sh [--build DIR] [--src DIR]      (ninja -C build bench runs it)
# Env: BENCH_N_RSA (default 3000), BENCH_N_EC (default 10000), BENCH_ROUNDS (default 3).
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
N_RSA=${BENCH_N_RSA:-3000}
N_EC=${BENCH_N_EC:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
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
    "$(nproc) CPUs; best of $ROUNDS rounds"

# Best (highest) ops/s and ops per CPU-second of each program over ROUNDS runs, the two
# programs alternating so that a burst of other load hits both alike.
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
declare -A best
run_pair() {
    local key=$1 n=$2 t=$3 r out
    for ((r = 1; r <= ROUNDS; r++)); do
        out=$(OPENSSL_CONF=$KW_TMP/openssl.cnf "$SIGN_LOOP" \
            "pkcs11:token=bench;object=$key;type=private" "$n" "$t") ||
            { echo "bench: sign_loop failed ($key, $t threads)" >&2; exit 1; }
        best[pw$key$t]=$(max "$(echo "$out" | field ops_per_sec)" "${best[pw$key$t]:-0}")
        best[pc$key$t]=$(max "$(echo "$out" | field ops_per_cpu_sec)" "${best[pc$key$t]:-0}")
        out=$("$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" "$n" "$t") ||
            { echo "bench: raw_sign failed ($key, $t threads)" >&2; exit 1; }
        best[rw$key$t]=$(max "$(echo "$out" | field ops_per_sec)" "${best[rw$key$t]:-0}")
        best[rc$key$t]=$(max "$(echo "$out" | field ops_per_cpu_sec)" "${best[rc$key$t]:-0}")
    done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

printf '%-9s %3s %6s | %12s %12s %6s | %12s %12s %6s\n' key thr N \
    'provider/s' 'raw/s' ratio 'prov/cpu-s' 'raw/cpu-s' ratio
below=0
for spec in "rsa:$N_RSA" "ec:$N_EC"; do
    key=${spec%%:*}
    n=${spec#*:}
    name=$([ "$key" = rsa ] && echo RSA-2048 || echo P-256)
    for t in 1 2; do
        run_pair "$key" "$n" "$t"
        rw=$(ratio "${best[pw$key$t]}" "${best[rw$key$t]}")
        rc=$(ratio "${best[pc$key$t]}" "${best[rc$key$t]}")
        printf '%-9s %3s %6s | %12s %12s %6s | %12s %12s %6s\n' "$name" "$t" "$n" \
            "${best[pw$key$t]}" "${best[rw$key$t]}" "$rw" "${best[pc$key$t]}" "${best[rc$key$t]}" "$rc"
        awk -v r="$rw" 'BEGIN { exit !(r < 0.97) }' && below=1
    done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (wall-clock ratios are only meaningful on an idle machine)"
if [ "$below" = 0 ]; then echo "all wall-clock ratios >= 0.97"; else echo "some wall-clock ratio below 0.97"; fi
