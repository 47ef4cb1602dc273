#!/bin/bash
# keyward signing benchmark. One fresh SoftHSM2 token with RSA-2048, P-256, P-384 and Ed25519
# keys; each row signs N times on one key through
#   keyward  OpenSSL + keyward.so (sign_loop; the key opened once through OSSL_STORE)
#   raw      PKCS#11 C_SignInit + C_Sign on the same key, no OpenSSL (raw_sign): the floor
#   peer     OpenSSL + another provider on the same token (sign_loop), when one is given:
#            KEYWARD_BENCH_PEER=/path/to/pkcs11.so (pkcs11-provider's module; the benchmark
#            builds nothing of it), else its columns say "not measured"
# in two modes (sign_loop's): reuse (one EVP_PKEY_CTX per thread, EVP_PKEY_sign of a digest: a
# CA, a signing service) and fresh (EVP_DigestSignInit + EVP_DigestSign per signature: what a TLS
# server pays per handshake), with 1 and 2 threads. Raw has no modes: it is the same C_Sign.
#   bench/run.sh [--build DIR] [--src DIR]      (ninja -C build bench runs it)
# Env: BENCH_N_RSA (default 1000), BENCH_N_EC (default 4000) signatures per run, BENCH_ROUNDS
# (default 5), BENCH_MODES (default "reuse fresh"), BENCH_ROWS (default "pkcs1 pss p256 p384
# ed25519"), BENCH_INSTR=0 skips the callgrind table, BENCH_ONESHOT=0 the one-shot table
# (BENCH_ONESHOT_RUNS wall-clock runs each, default 15).
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
MODES=${BENCH_MODES:-reuse fresh}
ROWS=${BENCH_ROWS:-pkcs1 pss p256 p384 ed25519}
PEER=${KEYWARD_BENCH_PEER:-}
SIGN_LOOP=$BUILD/bench/sign_loop
RAW_SIGN=$BUILD/bench/raw_sign
for f in "$SIGN_LOOP" "$RAW_SIGN" "$BUILD/provider/keyward.so"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench: $f not built (ninja -C $BUILD)" >&2; exit 1; }
done
if [ -n "$PEER" ] && [ ! -f "$PEER" ]; then
    echo "bench: KEYWARD_BENCH_PEER=$PEER does not exist" >&2
    exit 1
fi

export KEYWARD_PROVIDER_DIR=$BUILD/provider
# shellcheck source=../tests/fixtures/softhsm.sh
. "$SRC/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init bench
kw_keygen bench rsa 01 rsa:2048
kw_keygen bench ec 02 EC:prime256v1
kw_keygen bench ec384 03 EC:secp384r1
kw_provider_cnf "$KW_TMP/openssl.cnf"
# pkcs11-tool of bookworm makes no EdDSA keys: keyward's genpkey does, on the same token.
OPENSSL_CONF=$KW_TMP/openssl.cnf openssl genpkey -propquery '?provider=keyward' \
    -algorithm ED25519 -pkeyopt "keyward_uri:pkcs11:token=bench;object=ed;id=%04" \
    -out "$KW_TMP/ed.pem" >/dev/null 2>&1 || ROWS=${ROWS/ed25519/}
if [ -n "$PEER" ]; then
    cat >"$KW_TMP/peer.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = $PEER
pkcs11-module-path = $KW_MODULE
pkcs11-module-token-pin = file:$KW_PIN_FILE
activate = 1
EOF
fi

echo "keyward bench: SoftHSM2 $(softhsm2-util --version), $(openssl version | cut -d' ' -f1-2)," \
    "$(nproc) CPUs; $ROUNDS rounds; peer: ${PEER:-none, set KEYWARD_BENCH_PEER to the pkcs11.so of pkcs11-provider}"

# row -> key label, sign_loop/raw_sign ALG, signatures per run, name
row_key() { case $1 in pkcs1 | pss) echo rsa ;; p256) echo ec ;; p384) echo ec384 ;; ed25519) echo ed ;; esac; }
row_alg() { case $1 in pkcs1) echo pkcs1 ;; pss) echo pss ;; p256 | p384) echo ecdsa ;; ed25519) echo eddsa ;; esac; }
row_n() { case $1 in pkcs1 | pss) echo "$N_RSA" ;; *) echo "$N_EC" ;; esac; }
row_name() { case $1 in pkcs1) echo RSA-2048 ;; pss) echo RSA-PSS ;; p256) echo P-256 ;; p384) echo P-384 ;; ed25519) echo Ed25519 ;; esac; }
uri() { echo "pkcs11:token=bench;object=$1;type=private"; }

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.3f", a / b; else print "-" }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# run_row ROW MODE THREADS: ROUNDS rounds, the programs alternating within each round so that a
# burst of other load hits them alike. Sets best_{kw,raw,rk,peer} (ops/s, best round) and
# r_raw/r_rk/r_peer (median over rounds of keyward/raw, keyward/raw+kw and keyward/peer in the
# same round). raw+kw: raw_sign with keyward loaded but unused (see the instruction table).
run_row() {
    local row=$1 mode=$2 t=$3 key alg n r kw raw rk peer
    local -a rr=() rk_=() rp=()
    key=$(row_key "$row") alg=$(row_alg "$row") n=$(row_n "$row")
    best_kw=0 best_raw=0 best_rk=0 best_peer=0
    for ((r = 1; r <= ROUNDS; r++)); do
        kw=$(OPENSSL_CONF=$KW_TMP/openssl.cnf "$SIGN_LOOP" "$(uri "$key")" "$n" "$t" "$alg" "$mode" |
            field ops_per_sec) || { echo "bench: sign_loop failed ($row $mode, $t threads)" >&2; exit 1; }
        raw=$("$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" "$n" "$t" "$alg" |
            field ops_per_sec) || { echo "bench: raw_sign failed ($row, $t threads)" >&2; exit 1; }
        rk=$(OPENSSL_CONF=$KW_TMP/openssl.cnf "$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" \
            "$n" "$t" "$alg" | field ops_per_sec) || { echo "bench: raw_sign failed ($row, $t threads)" >&2; exit 1; }
        best_kw=$(max "$kw" "$best_kw")
        best_raw=$(max "$raw" "$best_raw")
        best_rk=$(max "$rk" "$best_rk")
        rr+=("$(ratio "$kw" "$raw")")
        rk_+=("$(ratio "$kw" "$rk")")
        if [ -n "$PEER" ]; then
            peer=$(OPENSSL_CONF=$KW_TMP/peer.cnf "$SIGN_LOOP" "$(uri "$key")" "$n" "$t" "$alg" "$mode" |
                field ops_per_sec) || { echo "bench: sign_loop failed with the peer ($row $mode)" >&2; exit 1; }
            best_peer=$(max "$peer" "$best_peer")
            rp+=("$(ratio "$kw" "$peer")")
        fi
    done
    r_raw=$(median "${rr[@]}")
    r_rk=$(median "${rk_[@]}")
    r_peer=$([ -n "$PEER" ] && median "${rp[@]}" || echo "not measured")
}

printf '%-9s %-6s %3s %6s | %10s %10s %10s %10s | %7s %7s %12s\n' row mode thr N \
    'keyward/s' 'raw/s' 'raw+kw/s' 'peer/s' 'kw/raw' 'kw/r+k' 'kw/peer'
below=0
for row in $ROWS; do
    for mode in $MODES; do
        for t in 1 2; do
            run_row "$row" "$mode" "$t"
            printf '%-9s %-6s %3s %6s | %10s %10s %10s %10s | %7s %7s %12s\n' "$(row_name "$row")" \
                "$mode" "$t" "$(row_n "$row")" "$best_kw" "$best_raw" "$best_rk" \
                "$([ -n "$PEER" ] && echo "$best_peer" || echo -)" "$r_raw" "$r_rk" "$r_peer"
            [ "$mode" = reuse ] && awk -v r="$r_raw" 'BEGIN { exit !(r < 0.97) }' && below=1
        done
    done
done
echo "kw/raw, kw/r+k, kw/peer = median over rounds of the two in the same round; ops/s = best round;"
echo "raw+kw = raw C_Sign with keyward loaded in the process but unused (the token's own OpenSSL work then costs more)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (wall-clock ratios are only meaningful on an idle machine)"
if [ "$below" = 0 ]; then echo "reuse rows: every kw/raw >= 0.97"; else echo "reuse rows: some kw/raw below 0.97"; fi

# Instructions per signature under callgrind: deterministic, so they still mean something on a
# busy machine. Two runs of each program (S and 6S signatures, 1 thread); the difference / 5S
# leaves out start-up. "keyward.so" is keyward's own code (provider + common, self cost);
# "libcrypto" holds OpenSSL's EVP layer and the token's maths alike (SoftHSM2 signs with it),
# which is why the overhead column is what matters: keyward - raw, split by where it is spent.
if [ "${BENCH_INSTR:-1}" != 0 ] && command -v valgrind >/dev/null 2>&1 &&
    command -v callgrind_annotate >/dev/null 2>&1; then
    # by_obj OUT: "object self-instructions" per shared object, from callgrind's per-function list
    by_obj() {
        callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null | awk '
            /^ *[0-9][0-9,]* \( *[0-9.]+%\)  / && !/PROGRAM TOTALS/ {
                ir = $1; gsub(",", "", ir); obj = "other"
                if (match($0, /\[[^]]*\]$/)) { obj = substr($0, RSTART + 1, RLENGTH - 2); sub(/.*\//, "", obj) }
                if (obj ~ /^libcrypto/) obj = "libcrypto"; else if (obj ~ /^libc\.so/) obj = "libc"
                else if (obj != "keyward.so") obj = "other"
                o[obj] += ir; o["total"] += ir
            } END { for (k in o) print k, o[k] }'
    }
    # instr NAME S CONF CMD...: per-signature instructions by object into $KW_TMP/NAME.per, CMD
    # run with OPENSSL_CONF=CONF; the word @N@ in CMD becomes the number of signatures (S, 6S)
    instr() {
        local name=$1 s=$2 conf=$3 k a
        shift 3
        for k in 1 6; do
            local -a cmd=()
            for a in "$@"; do cmd+=("${a/@N@/$((k * s))}"); done
            OPENSSL_CONF=$conf valgrind --tool=callgrind --callgrind-out-file="$KW_TMP/cg.$k" "${cmd[@]}" \
                >/dev/null 2>"$KW_TMP/cg.err" ||
                { cat "$KW_TMP/cg.err" >&2; echo "bench: callgrind run failed: ${cmd[*]}" >&2; exit 1; }
            by_obj "$KW_TMP/cg.$k" | sort >"$KW_TMP/cg.$k.obj"
        done
        join -a2 -e0 -o 0,1.2,2.2 "$KW_TMP/cg.1.obj" "$KW_TMP/cg.6.obj" |
            awk -v d=$((5 * s)) '{ printf "%s %d\n", $1, ($3 - $2) / d }' >"$KW_TMP/$name.per"
    }
    get() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$KW_TMP/$1.per"; }
    echo
    echo "instructions per signature (callgrind, 1 thread); overhead = keyward - raw+kw, by object:"
    printf '%-9s %-6s | %10s %10s %10s %10s %6s %6s %6s | %8s %9s %7s %7s\n' row mode keyward raw \
        raw+kw peer raw/kw r+k/kw peer/kw 'ovh:kw.so' libcrypto libc other
    for row in $ROWS; do
        key=$(row_key "$row") alg=$(row_alg "$row")
        s=$([ "$key" = rsa ] && echo 10 || echo 40)
        instr raw "$s" /dev/null "$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" @N@ 1 "$alg"
        # raw+kw: the same C_Sign loop with keyward merely loaded into the process's OpenSSL (the
        # token reads OPENSSL_CONF when it initialises OpenSSL): what SoftHSM2's own per-signature
        # OpenSSL work costs once a second provider's key types are registered (see below)
        instr rawkw "$s" "$KW_TMP/openssl.cnf" "$RAW_SIGN" "$KW_MODULE" bench "$key" "$KW_PIN_FILE" @N@ 1 "$alg"
        for mode in $MODES; do
            instr kw "$s" "$KW_TMP/openssl.cnf" "$SIGN_LOOP" "$(uri "$key")" @N@ 1 "$alg" "$mode"
            pt=-
            if [ -n "$PEER" ]; then
                instr peer "$s" "$KW_TMP/peer.cnf" "$SIGN_LOOP" "$(uri "$key")" @N@ 1 "$alg" "$mode"
                pt=$(get peer total)
            fi
            kt=$(get kw total) rt=$(get raw total) rk=$(get rawkw total)
            printf '%-9s %-6s | %10s %10s %10s %10s %6s %6s %6s | %8s %9s %7s %7s\n' "$(row_name "$row")" \
                "$mode" "$kt" "$rt" "$rk" "$pt" "$(ratio "$rt" "$kt")" "$(ratio "$rk" "$kt")" \
                "$([ "$pt" = - ] && echo - || ratio "$pt" "$kt")" \
                $(($(get kw keyward.so) - $(get rawkw keyward.so))) \
                $(($(get kw libcrypto) - $(get rawkw libcrypto))) \
                $(($(get kw libc) - $(get rawkw libc))) $(($(get kw other) - $(get rawkw other)))
        done
    done
    echo "(raw/kw 0.97: the keyward path costs 3% more instructions per signature than C_Sign alone."
    echo " r+k/kw against the same loop with keyward loaded but unused: SoftHSM2 decodes the key with"
    echo " d2i_PrivateKey for each EdDSA (and some ECDSA) signature, and OpenSSL 3.0 builds a decoder"
    echo " context over every provider's key types each time; a second provider of the same types,"
    echo " keyward or any other, doubles that. A token that does not use OpenSSL does not pay it.)"
fi

# One-shot commands: what `openssl pkeyutl -sign` costs in all (start-up, key load, login, one
# signature) with a token key against the same command with a PEM key file. Instructions under
# callgrind (deterministic) and wall-clock medians of alternating runs. "token" is the part of the
# URI command spent inside the token module (its C_* functions, inclusive, and loading it:
# SoftHSM2's C_Login stretches the PIN, its C_Initialize reads the token directory), which any
# provider pays; share = (URI - token) / PEM is what OpenSSL and keyward cost around it.
if [ "${BENCH_ONESHOT:-1}" != 0 ]; then
    runs=${BENCH_ONESHOT_RUNS:-15}
    echo
    echo "one-shot openssl pkeyutl -sign (instructions, callgrind; wall ms, median of $runs alternating runs):"
    head -c 32 /dev/urandom >"$KW_TMP/dgst"
    # total_instr NAME CMD...: whole-process instructions; the profile is kept as $KW_TMP/NAME.cg
    total_instr() {
        local name=$1
        shift
        valgrind --tool=callgrind --callgrind-out-file="$KW_TMP/$name.cg" "$@" >/dev/null 2>"$KW_TMP/os.err" ||
            { cat "$KW_TMP/os.err" >&2; echo "bench: one-shot run failed: $*" >&2; exit 1; }
        sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$KW_TMP/$name.cg" | head -1
    }
    # token_instr NAME: inclusive instructions of the module's C_* entry points and of loading it
    token_instr() {
        local mod
        mod=$(basename "$(readlink -f "$KW_MODULE")")
        callgrind_annotate --inclusive=yes --threshold=100 "$KW_TMP/$1.cg" 2>/dev/null | awk -v m="$mod" '
            /^ *[0-9][0-9,]* / {
                ir = $1; gsub(",", "", ir)
                if ($0 ~ (":C_[A-Za-z]+ \\[.*" m "\\]$") || $0 ~ /:p11_kit_module_load( |$)/) t += ir
            } END { print t + 0 }'
    }
    oneshot() { openssl pkeyutl -sign -inkey "$1" -in "$KW_TMP/dgst" -out /dev/null; }
    printf '%-9s | %10s %10s %10s %10s %10s | %7s %8s %6s | %6s %6s %6s\n' key PEM PEM+kw URI \
        URI-file token URI/PEM file/PEM share ms:PEM ms:URI ratio
    for row in pkcs1 p256; do
        key=$(row_key "$row")
        if [ "$key" = rsa ]; then
            openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KW_TMP/os-$key.pem" 2>/dev/null
        else
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KW_TMP/os-$key.pem" 2>/dev/null
        fi
        OPENSSL_CONF=$KW_TMP/openssl.cnf openssl pkey -in "$(uri "$key")" -out "$KW_TMP/os-$key-uri.pem" ||
            { echo "bench: could not write the key file of $key" >&2; exit 1; }
        pem=$(OPENSSL_CONF=$KW_DEFAULT_CNF total_instr pem openssl pkeyutl -sign -inkey "$KW_TMP/os-$key.pem" -in "$KW_TMP/dgst")
        pemkw=$(OPENSSL_CONF=$KW_TMP/openssl.cnf total_instr pemkw openssl pkeyutl -sign -inkey "$KW_TMP/os-$key.pem" -in "$KW_TMP/dgst")
        u=$(OPENSSL_CONF=$KW_TMP/openssl.cnf total_instr uri openssl pkeyutl -sign -inkey "$(uri "$key")" -in "$KW_TMP/dgst")
        uf=$(OPENSSL_CONF=$KW_TMP/openssl.cnf total_instr urifile openssl pkeyutl -sign -inkey "$KW_TMP/os-$key-uri.pem" -in "$KW_TMP/dgst")
        tok=$(token_instr uri)
        # wall: the two commands alternate, so that a burst of other load hits both alike
        for ((i = 0; i < runs; i++)); do
            for v in pem uri; do
                if [ "$v" = pem ]; then c=$KW_DEFAULT_CNF k=$KW_TMP/os-$key.pem; else c=$KW_TMP/openssl.cnf k=$(uri "$key"); fi
                t0=$(date +%s%N)
                OPENSSL_CONF=$c oneshot "$k" >/dev/null 2>&1 || { echo "bench: one-shot $v failed" >&2; exit 1; }
                t1=$(date +%s%N)
                echo "$v $(((t1 - t0) / 1000))"
            done
        done >"$KW_TMP/os.wall"
        med() { awk -v v="$1" '$1 == v { print $2 }' "$KW_TMP/os.wall" | sort -n |
            awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] / 1000 }'; }
        wp=$(med pem) wu=$(med uri)
        printf '%-9s | %10s %10s %10s %10s %10s | %7s %8s %6s | %6s %6s %6s\n' "$(row_name "$row")" \
            "$pem" "$pemkw" "$u" "$uf" "$tok" "$(ratio "$u" "$pem")" "$(ratio "$uf" "$pem")" \
            "$(ratio $((u - tok)) "$pem")" "$wp" "$wu" "$(ratio "$wu" "$wp")"
    done
    echo "(PEM+kw: the PEM command with keyward loaded as well; URI-file: the token key through a PEM"
    echo " file carrying its URI; token: the URI command's instructions inside the module and its loading)"
fi
