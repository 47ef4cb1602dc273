#!/bin/bash
# CA rotation: new key and certificate with the same subject; old and new leaves verify; a
# client that trusts only the old root accepts a new leaf through the cross certificate; the
# old key keeps signing the CRL for its certificates.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=gen1" --subject "CN=Rot CA,O=Example" \
    --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=$1/O=Example" -out "$T/$1.csr" 2>/dev/null; }
csr old1; csr old2; csr new1
expect_rc 0 "$KW" --dir "$P" ca sign "$T/old1.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca sign "$T/old2.csr" --profile client
cp "$P/ca.crt" "$T/root-gen1.crt"
ski1=$(openssl x509 -in "$P/ca.crt" -noout -ext subjectKeyIdentifier | tail -1)
expect_rc 2 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen1"
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen2" --key-type ec:P-384
ski2=$(openssl x509 -in "$P/ca.crt" -noout -ext subjectKeyIdentifier | tail -1)
[ "$ski1" != "$ski2" ] || fail "rotation kept the SKI"
[ "$(openssl x509 -in "$P/ca.crt" -noout -subject)" = "$(openssl x509 -in "$T/root-gen1.crt" -noout -subject)" ] ||
    fail "rotation changed the subject"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/new1.csr" --profile client
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/old1.crt"
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/new1.crt"
openssl verify -CAfile "$T/root-gen1.crt" -untrusted "$P/ca/cross-2.crt" "$P/issued/new1.crt" >/dev/null 2>&1 ||
    fail "old root + cross certificate does not accept a new leaf"
openssl verify -CAfile "$T/root-gen1.crt" "$P/issued/new1.crt" >/dev/null 2>&1 &&
    fail "new leaf verifies against the old root without the cross certificate (test is wrong)"
ok "old and new leaves verify; cross certificate bridges from the old root"
expect_rc 0 "$KW" --dir "$P" ca revoke old2 --reason keyCompromise
expect_rc 1 "$KW" --dir "$P" verify "$P/issued/old2.crt"
grep -q "^FAIL revocation" "$T/out" || fail "old-generation revocation not seen"
openssl crl -in "$P/crl/gen-1.pem" -noout -verify -CAfile "$T/root-gen1.crt" 2>&1 | grep -q "verify OK" ||
    fail "gen-1.pem not signed by the old key"
expect_rc 2 "$KW" --dir "$P" ca revoke new1 --reason superseded --date 2099-01-01
expect_rc 0 "$KW" --dir "$P" ca revoke new1 --reason superseded
expect_rc 1 "$KW" --dir "$P" verify "$P/issued/new1.crt"
expect_rc 0 "$KW" --dir "$P" ca export new1 --format pem-bundle --out "$T/b.pem"
[ "$(grep -c BEGIN "$T/b.pem")" = 3 ] || fail "bundle after rotation lacks the cross certificate"
expect_rc 0 "$KW" --dir "$P" check
expect_rc 0 "$KW" --dir "$P" --json ca list
python3 -c 'import json,sys; assert len(json.load(open(sys.argv[1]))["result"]["certificates"])==3' "$T/out" || fail "list after rotation"
expect_rc 0 "$KW" --dir "$P" ca list --generations
for k in "1 *root .*ca-1.crt" "2 *root .*ca-2.crt" "2 *NewWithOld .*cross-2.crt" "2 *OldWithNew .*oldwithnew-2.crt"; do
    grep -q "^$k\$" "$T/out" || { cat "$T/out"; fail "ca list --generations lacks: $k"; }
done
expect_rc 0 "$KW" --dir "$P" check
grep -q "^OK   links .*oldwithnew-2.crt" "$T/out" || fail "check does not show the OldWithNew link"
ok "revocation in both generations, export, check, list"
echo PASS
