#!/bin/bash
# Fleet benchmark (issue 16): a CA of N certificates issued once with `ca sign --batch` and
# cached, then the fleet commands timed on a copy of it, at each size (default 3,000 and
# 30,000), with the ratio of the largest size to the smallest (10 = linear in N).
#   bench/ca/fleet.sh BUILD_DIR          (ninja -C build bench-ca-fleet runs it)
# Env: BENCH_SIZES ("3000 30000"); KEYWARD_BENCH_CACHE (/var/tmp): the CA of size N is kept in
# $KEYWARD_BENCH_CACHE/keyward-bench-ca-N and reused while it is younger than 7 days (1,000
# of its certificates are issued for 20 days: due for `ca renew --due` within 30), remove it to
# issue again; BENCH_DUE (1000); BENCH_ROUNDS (3): the read-only commands are timed that many
# times (median); renew, revoke and check run once, in that order, on the copy.
# The CA key is on a SoftHSM2 token made in the cache; CSRs come from python3-cryptography when
# it is installed (one key each), else from openssl req with one key (--allow-same-key).
set -euo pipefail
BUILD=$(cd "${1:?usage: fleet.sh BUILD_DIR}" && pwd)
KW=$BUILD/tools/keyward
export KEYWARD_PROVIDER_PATH=$BUILD/provider/keyward.so
export KEYWARD_MODULE=${KEYWARD_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SIZES=${BENCH_SIZES:-3000 30000}
DUE=${BENCH_DUE:-1000}
ROUNDS=${BENCH_ROUNDS:-3}
CACHE=${KEYWARD_BENCH_CACHE:-/var/tmp}
[ -x "$KW" ] && [ -f "$KEYWARD_PROVIDER_PATH" ] || { echo "fleet.sh: build $BUILD first" >&2; exit 1; }
[ -f "$KEYWARD_MODULE" ] || { echo "fleet.sh: SoftHSM2 module $KEYWARD_MODULE missing" >&2; exit 1; }
RES=$(mktemp /tmp/kw-fleet-bench.XXXXXX)
WORK=""
trap 'rm -f "$RES"; [ -z "$WORK" ] || rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
HAVE_REPORT=0
"$KW" help 2>&1 | grep -q '^ *ca report ' && HAVE_REPORT=1

# make_csrs DIR FIRST COUNT: CSRs DIR/cFIRST.csr ... (CN = file name)
make_csrs() {
    if python3 -c 'import cryptography' 2>/dev/null; then
        python3 - "$@" <<'PY'
import sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + count):
    k = ec.generate_private_key(ec.SECP256R1())
    n = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench"),
                   x509.NameAttribute(NameOID.COMMON_NAME, f"c{i}")])
    r = x509.CertificateSigningRequestBuilder().subject_name(n).sign(k, hashes.SHA256())
    open(f"{d}/c{i}.csr", "wb").write(r.public_bytes(serialization.Encoding.PEM))
PY
    else
        [ -f "$C/k.pem" ] || OPENSSL_CONF=/dev/null openssl genpkey -algorithm EC \
            -pkeyopt ec_paramgen_curve:P-256 -out "$C/k.pem" 2>/dev/null
        for i in $(seq "$2" $(($2 + $3 - 1))); do
            OPENSSL_CONF=/dev/null openssl req -new -key "$C/k.pem" -subj "/O=Bench/CN=c$i" -out "$1/c$i.csr"
        done
    fi
}

# build_ca N: the cached CA of N certificates (DUE of them for 20 days), tags by thirds
build_ca() {
    local n=$1 done=0 b=0 first count days tag same=""
    rm -rf "$C"
    mkdir -p "$C/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$C/tokens" >"$C/softhsm2.conf"
    softhsm2-util --init-token --free --label ca --so-pin 87654321 --pin 11112222 >/dev/null
    printf 11112222 >"$C/pin"
    chmod 600 "$C/pin"
    "$KW" --dir "$C/pki" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=Bench CA,O=Bench" \
        --pin-source "file:$C/pin" >/dev/null
    python3 -c 'import cryptography' 2>/dev/null || same=--allow-same-key
    local t0 t1 tcsr=0 tsign=0
    while [ "$done" -lt "$n" ]; do
        count=4000
        days=""
        # the first batch is the due one
        if [ "$done" -eq 0 ]; then count=$DUE; days="--days 20"; fi
        [ $((done + count)) -le "$n" ] || count=$((n - done))
        first=$((done + 1))
        case $((b % 3)) in 0) tag=usage=vpn ;; 1) tag=usage=api-mtls ;; *) tag=usage=wifi ;; esac
        rm -rf "$C/csr"
        mkdir "$C/csr"
        t0=$(now)
        make_csrs "$C/csr" "$first" "$count"
        t1=$(now)
        tcsr=$(echo "$tcsr + $t1 - $t0" | bc)
        # shellcheck disable=SC2086
        "$KW" --dir "$C/pki" -q ca sign --batch "$C/csr" --profile client --tag "$tag" $days $same >/dev/null
        t0=$(now)
        tsign=$(echo "$tsign + $t0 - $t1" | bc)
        done=$((done + count))
        b=$((b + 1))
        printf '  issued %d of %d (CSRs %.0f s, ca sign --batch %.0f s so far)\n' "$done" "$n" "$tcsr" "$tsign"
    done
    rm -rf "$C/csr"
    printf 'issue\t%s\t%s\n' "$n" "$tsign" >>"$RES"
    date +%s >"$C/created"
}

# timed LABEL N CMD...: one run, its wall time into the results
timed() {
    local label=$1 n=$2 t0 t1
    shift 2
    t0=$(now)
    "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/out" "$WORK/err" >&2; echo "fleet.sh: failed: $*" >&2; exit 1; }
    t1=$(now)
    printf '%s\t%s\t%s\n' "$label" "$n" "$(echo "$t1 - $t0" | bc)" >>"$RES"
}

# median LABEL N CMD...: ROUNDS runs, the median
median() {
    local label=$1 n=$2 t0 t1 ts=()
    shift 2
    for _ in $(seq "$ROUNDS"); do
        t0=$(now)
        "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/out" "$WORK/err" >&2; echo "fleet.sh: failed: $*" >&2; exit 1; }
        t1=$(now)
        ts+=("$(echo "$t1 - $t0" | bc)")
    done
    printf '%s\t%s\t%s\n' "$label" "$n" "$(printf '%s\n' "${ts[@]}" | sort -g | sed -n "$(((ROUNDS + 1) / 2))p")" >>"$RES"
}

for N in $SIZES; do
    C=$CACHE/keyward-bench-ca-$N
    export SOFTHSM2_CONF=$C/softhsm2.conf
    if [ -f "$C/created" ] && [ $(($(date +%s) - $(cat "$C/created"))) -lt $((7 * 86400)) ]; then
        echo "N=$N: reusing the CA in $C"
    else
        echo "N=$N: issuing $N certificates into $C (cached for the next runs)..."
        build_ca "$N"
    fi
    WORK=$C.work
    rm -rf "$WORK"
    mkdir -p "$WORK"
    cp -a "$C/pki" "$WORK/pki"
    P=$WORK/pki
    echo "N=$N: timing (read-only commands: median of $ROUNDS)"
    median "ca list" "$N" "$KW" --dir "$P" ca list
    median "ca list --json" "$N" "$KW" --dir "$P" --json ca list
    median "ca stats" "$N" "$KW" --dir "$P" ca stats
    if [ "$HAVE_REPORT" = 1 ]; then
        median "ca report --html" "$N" "$KW" --dir "$P" ca report --html "$WORK/report.html"
    else
        printf 'ca report --html\t%s\tnot built\n' "$N" >>"$RES"
    fi
    median "ca metrics --textfile" "$N" "$KW" --dir "$P" ca metrics --textfile "$WORK/keyward.prom"
    timed "ca renew --due ($DUE due)" "$N" "$KW" --dir "$P" ca renew --due 30
    grep -q "^$DUE due within 30 days: $DUE renewed, 0 failed" "$WORK/out" ||
        { tail -3 "$WORK/out"; echo "fleet.sh: renew --due did not renew $DUE" >&2; exit 1; }
    timed "ca revoke (with its CRL)" "$N" "$KW" --dir "$P" ca revoke "c$((N - 7))" --reason keyCompromise
    timed "keyward check" "$N" "$KW" --dir "$P" check
    rm -rf "$WORK"
    WORK=""
done

python3 - "$RES" "$(nproc)" "$(uptime | sed 's/.*load average: //')" <<'PY'
import sys, collections
rows = collections.OrderedDict()
sizes = []
for line in open(sys.argv[1]):
    label, n, t = line.rstrip("\n").split("\t")
    n = int(n)
    if n not in sizes:
        sizes.append(n)
    rows.setdefault(label, {})[n] = t
sizes.sort()
def fmt(t):
    try:
        return f"{float(t):.2f} s"
    except ValueError:
        return t
w = max(len(l) for l in rows) + 2
head = f"{'command':<{w}}" + "".join(f"{'N=' + str(n):>14}" for n in sizes)
if len(sizes) > 1:
    head += f"{str(sizes[-1]) + '/' + str(sizes[0]):>14}"
print(f"\n{sys.argv[2]} CPUs, load average at the end: {sys.argv[3]}")
print(head)
for label, by in rows.items():
    line = f"{label:<{w}}" + "".join(f"{fmt(by.get(n, '-')):>14}" for n in sizes)
    if len(sizes) > 1:
        try:
            line += f"{float(by[sizes[-1]]) / float(by[sizes[0]]):>14.1f}"
        except (KeyError, ValueError, ZeroDivisionError):
            line += f"{'-':>14}"
    print(line)
if "issue" in rows:
    print("(issue: only when the cache was (re)built, ca sign --batch time without CSR generation)")
PY
