#!/bin/bash
# CA benchmark (issue 5): certificates per second signing a batch of CSRs in one openssl
# process vs one `keyward ca sign` per CSR, and CRL generation with 100,000 revoked entries.
# The CA key is on a fresh SoftHSM2 token. Usage: bench/ca/run.sh BUILD_DIR
#   BENCH_BATCH (1000) CSRs in the batch, BENCH_SINGLE (200) single signs, BENCH_REVOKED (100000)
set -eu
BUILD=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
KW=$BUILD/tools/keyward
export KEYWARD_PROVIDER_PATH=$BUILD/provider/keyward.so
export KEYWARD_MODULE=${KEYWARD_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
NB=${BENCH_BATCH:-1000} NS=${BENCH_SINGLE:-200} NR=${BENCH_REVOKED:-100000}
T=$(mktemp -d /tmp/kwt-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir "$T/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$T/tokens" > "$T/softhsm2.conf"
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label ca --so-pin 87654321 --pin 11112222 >/dev/null
printf 11112222 > "$T/pin"; chmod 600 "$T/pin"
now() { date +%s.%N; }
P=$T/pki
"$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=Bench CA" \
    --pin-source "file:$T/pin" >/dev/null
echo "making $((NB + NS)) CSRs (file keys; the CA side is measured)..."
OPENSSL_CONF=/dev/null openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/k.pem" 2>/dev/null
mkdir "$T/batch" "$T/single"
for i in $(seq 1 "$NB"); do
    OPENSSL_CONF=/dev/null openssl req -new -key "$T/k.pem" -subj "/CN=b$i" -out "$T/batch/b$i.csr"
done
for i in $(seq 1 "$NS"); do
    OPENSSL_CONF=/dev/null openssl req -new -key "$T/k.pem" -subj "/CN=s$i" -out "$T/single/s$i.csr"
done
t0=$(now)
"$KW" --dir "$P" ca sign --batch "$T/batch" --profile client >/dev/null
t1=$(now)
for i in $(seq 1 "$NS"); do "$KW" --dir "$P" ca sign "$T/single/s$i.csr" --profile client >/dev/null; done
t2=$(now)
python3 - "$t0" "$t1" "$t2" "$NB" "$NS" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:4]); nb, ns = int(sys.argv[4]), int(sys.argv[5])
b, s = nb / (t1 - t0), ns / (t2 - t1)
print(f"batch : {nb} certs in {t1-t0:.2f} s = {b:.1f} certs/s (one openssl ca process)")
print(f"single: {ns} certs in {t2-t1:.2f} s = {s:.1f} certs/s (one keyward ca sign each)")
print(f"ratio batch/single: {b/s:.1f}x")
PY
# CRL with NR revoked entries: fill the index directly (the CRL step only reads it)
python3 - "$P/state/index.txt" "$NR" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "a") as f:
    for i in range(n):
        f.write(f"R\t301231235959Z\t250101000000Z,keyCompromise\t{0x7A000000 + i:X}\tbulk{i}\t/CN=bulk{i}\n")
PY
t3=$(now)
"$KW" --dir "$P" ca crl >/dev/null
t4=$(now)
entries=$(openssl crl -in "$P/crl/crl.pem" -noout -text | grep -c "Serial Number:")
size=$(stat -c %s "$P/crl/crl.der")
"$KW" --dir "$P" ca revoke s1 --reason superseded >/dev/null
t5=$(now)
python3 - "$t3" "$t4" "$t5" "$entries" "$size" <<'PY'
import sys
t3, t4, t5 = map(float, sys.argv[1:4])
print(f"crl   : {sys.argv[4]} revoked entries, {int(sys.argv[5])/1e6:.1f} MB DER, generated in {t4-t3:.2f} s")
print(f"revoke: one revocation + CRL regeneration with that index: {t5-t4:.2f} s")
PY
