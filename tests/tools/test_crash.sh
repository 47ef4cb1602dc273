#!/bin/bash
# Crash consistency: kill -9 keyward at random moments during sign and revoke, then the CA must
# be consistent: index parses, the serial file is above every issued serial, the CRL lists
# exactly the revoked serials, issued/ links point at valid certificates, and the CA still
# works (sign, revoke, check).
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Crash CA" --pin-source "file:$T/ca.pin"
# CSRs with file keys: the CA side is what is under test
for i in $(seq 1 40); do
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/CN=c$i" -out "$T/c$i.csr" 2>/dev/null || fail "csr $i"
done

consistent() {
    python3 - "$P" <<'PY' || fail "CA inconsistent after a crash (round $1)"
import os, subprocess, sys
P = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(f"{P}/state/index.txt")]
assert all(len(r) == 6 and r[0] in "VRE" for r in rows), "index malformed"
serials = [int(r[3], 16) for r in rows]
assert len(set(serials)) == len(serials), "duplicate serial in index"
nxt = int(open(f"{P}/state/serial").read().strip(), 16)
assert all(s < nxt for s in serials), "serial file not above issued serials"
crl = subprocess.run(["openssl", "crl", "-in", f"{P}/crl/crl.pem", "-noout", "-text"],
                     capture_output=True, text=True, check=True).stdout
on_crl = {int(l.split(":")[1].strip(), 16) for l in crl.splitlines() if "Serial Number:" in l}
revoked = {int(r[3], 16) for r in rows if r[0] == "R"}
assert on_crl == revoked, f"CRL {len(on_crl)} != index revoked {len(revoked)}"
for r in rows:
    assert os.path.exists(f"{P}/certs/{r[3]}.pem"), "index row without certificate"
for n in os.listdir(f"{P}/issued"):
    assert n.endswith(".crt"), f"stray file issued/{n}"
    assert os.path.exists(f"{P}/issued/{n}"), f"dangling issued/{n}"
valid = {r[4] for r in rows if r[0] == "V"}
for name in valid:
    assert os.path.exists(f"{P}/issued/{name}.crt"), f"valid {name} has no issued link"
st = [d for d in os.listdir(P) if d.startswith("state.")]
PY
}

killed=0
for round in $(seq 1 40); do
    if [ $((round % 3)) = 0 ]; then
        n=$(awk -F'\t' '$1=="V"{print $5}' "$P/state/index.txt" | shuf -n1)
        [ -n "$n" ] || continue
        "$KW" --dir "$P" ca revoke "$n" --reason keyCompromise >/dev/null 2>&1 &
    else
        "$KW" --dir "$P" ca sign "$T/c$round.csr" --profile client >/dev/null 2>&1 &
    fi
    pid=$!
    sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
    if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
    wait "$pid" 2>/dev/null
    # the next writer recovers (drops unfinished state); readers see the committed state
    expect_rc 0 "$KW" --dir "$P" ca crl
    consistent "$round"
done
echo "killed $killed of 40 operations mid-way"
[ "$killed" -ge 5 ] || skip "too few operations were interrupted to test anything ($killed)"
ls -d "$P"/state.* | wc -l | grep -qx 1 || fail "stale staging states left behind"
# still fully working
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=after" -out "$T/after.csr" 2>/dev/null
expect_rc 0 "$KW" --dir "$P" ca sign "$T/after.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca revoke after --reason superseded
consistent final
# every index row's certificate file holds that certificate (no orphan overwrote it)
awk -F'\t' '{print $4 "\t" $6}' "$P/state/index.txt" | while IFS=$'\t' read -r serial subj; do
    got=$(openssl x509 -in "$P/certs/$serial.pem" -noout -serial -subject -nameopt compat | tr '\n' ' ')
    [ "$got" = "serial=$serial subject=$subj " ] || fail "certs/$serial.pem is not the index's ($got)"
done || exit 1
expect_rc 0 "$KW" --dir "$P" check
ok "consistent after $killed crashes"
echo PASS
