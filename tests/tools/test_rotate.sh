#!/bin/bash
# CA rotation: new key and certificate with the same subject; old and new leaves verify; a
# client that trusts only the old root accepts a new leaf through the cross certificate; the
# old key keeps signing the CRL for its certificates.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
# under a strict umask: the CA certificates are published all the same (0644)
(umask 077 && expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=gen1" \
    --subject "CN=Rot CA,O=Example" --pin-source "file:$T/ca.pin") || exit 1
for f in ca.crt ca/ca-1.crt; do
    [ "$(stat -c %a "$P/$f")" = 644 ] || fail "ca init under umask 077: $f is mode $(stat -c %a "$P/$f"), not 0644"
done
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
grep -q "^OK   generation   generation 1: 1 unexpired certificates (the last until 20[0-9-]*); its key .* keeps signing crl/gen-1.pem" "$T/out" ||
    { cat "$T/out"; fail "check does not say that generation 1's key is still needed"; }
[ "$(stat -c %a "$P/ca.crt")" = 644 ] || fail "ca rotate under the default umask: ca.crt not 0644"
ok "revocation in both generations, export, check, list"

# retiring the old key (docs/ca-guide.md: remove it from old_keys): refused by check while a
# certificate of its generation is unexpired, reported as retired once none is
cp -a "$P" "$T/pki-noold"
sed -i 's/^old_keys = .*/old_keys = /' "$T/pki-noold/keyward.conf"
expect_rc 1 "$KW" --dir "$T/pki-noold" check
grep -q "^FAIL generation   generation 1: 1 unexpired certificates but its key is not in keyward.conf old_keys" "$T/out" ||
    { cat "$T/out"; fail "check accepts an old key removed while its certificates are unexpired"; }
Q=$T/pki-q
expect_rc 0 "$KW" --dir "$Q" ca init --key "pkcs11:token=ca;object=q1" --subject "CN=Q CA" --pin-source "file:$T/ca.pin"
expect_rc 0 "$KW" --dir "$Q" ca rotate --key "pkcs11:token=ca;object=q2"
expect_rc 0 "$KW" --dir "$Q" check
grep -q "^OK   generation   generation 1: no unexpired certificates; its key may be retired once relying parties trust generation 2" "$T/out" ||
    { cat "$T/out"; fail "check does not say when generation 1's key may be retired"; }
sed -i 's/^old_keys = .*/old_keys = /' "$Q/keyward.conf"
expect_rc 0 "$KW" --dir "$Q" check
grep -q "^OK   generation   generation 1: retired (no key, no unexpired certificates)" "$T/out" ||
    { cat "$T/out"; fail "check does not report the retired generation"; }
ok "keyward check: an old key still needed, removed too early (FAIL), retirable, retired"

# a CRL past its next update is no CRL: verify fails closed (a software CA made by openssl, whose
# CRL dates can be set)
S=$T/stale
mkdir -p "$S"
: >"$S/index.txt"
printf '[ca]\ndefault_ca = c\n[c]\ndatabase = %s/index.txt\ndefault_md = sha256\n' "$S" >"$S/ca.cnf"
export OPENSSL_CONF=/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$S/ca.key" \
    -subj "/CN=Stale CA" -days 30 -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$S/ca.crt" 2>/dev/null || fail "stale CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj "/CN=leaf" 2>/dev/null | openssl x509 -req -CA "$S/ca.crt" -CAkey "$S/ca.key" \
    -set_serial 7 -days 10 -out "$S/leaf.crt" 2>/dev/null || fail "stale CA leaf"
openssl ca -config "$S/ca.cnf" -gencrl -keyfile "$S/ca.key" -cert "$S/ca.crt" \
    -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out "$S/stale.crl" 2>/dev/null || fail "stale CRL"
openssl ca -config "$S/ca.cnf" -gencrl -keyfile "$S/ca.key" -cert "$S/ca.crt" -crldays 1 \
    -out "$S/fresh.crl" 2>/dev/null || fail "fresh CRL"
unset OPENSSL_CONF
expect_rc 0 "$KW" verify "$S/leaf.crt" --ca "$S/ca.crt" --crl "$S/fresh.crl"
expect_rc 1 "$KW" verify "$S/leaf.crt" --ca "$S/ca.crt" --crl "$S/stale.crl"
grep -q "^FAIL revocation .*past its next update" "$T/out" ||
    { cat "$T/out"; fail "verify with a stale CRL does not FAIL saying the CRL is past its next update"; }
ok "keyward verify with a CRL past its next update: FAIL (a fresh one from the same CA: PASS)"
echo PASS
