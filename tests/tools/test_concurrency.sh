#!/bin/bash
# Parallel signers and revokers on one CA: every certificate gets a unique serial, the index
# has every one, and the CRL matches the index.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Busy CA" --pin-source "file:$T/ca.pin"
N=24
for i in $(seq 1 $N); do
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/CN=p$i" -out "$T/p$i.csr" 2>/dev/null || fail "csr $i"
done
pids=""
for i in $(seq 1 $N); do
    "$KW" --dir "$P" ca sign "$T/p$i.csr" --profile client > "$T/sign$i.out" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a parallel signer failed"; done
serials=$(for i in $(seq 1 $N); do sed -n 's/.*serial: //p' "$T/sign$i.out"; done | sort)
[ "$(echo "$serials" | wc -l)" = $N ] || fail "not $N serials printed"
[ "$(echo "$serials" | uniq | wc -l)" = $N ] || fail "duplicate serials among parallel signers"
[ "$(grep -c '^V' "$P/state/index.txt")" = $N ] || fail "index does not have $N valid rows"
ok "$N parallel signers got unique serials"
pids=""
for i in $(seq 1 2 $N); do
    "$KW" --dir "$P" ca revoke "p$i" --reason cessationOfOperation > /dev/null 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a parallel revoker failed"; done
revoked=$(grep -c '^R' "$P/state/index.txt")
[ "$revoked" = $((N / 2)) ] || fail "expected $((N / 2)) revoked, index has $revoked"
oncrl=$(openssl crl -in "$P/crl/crl.pem" -noout -text | grep -c "Serial Number:")
[ "$oncrl" = "$revoked" ] || fail "CRL has $oncrl entries, index $revoked"
ok "parallel revokers: CRL matches the index"
echo PASS
