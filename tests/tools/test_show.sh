#!/bin/bash
# Fingerprints for the out-of-band check (issue 14, item 8): `keyward req` prints the SHA-256 of
# the CSR's public key (SPKI), `ca sign` the same before issuing and in --json, `keyward show`
# a certificate's or CSR's subject, SANs, key, SPKI and certificate fingerprints, validity,
# serial and status in the CA directory.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
make_token cl 3333
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Show CA,O=Example" --pin-source "file:$T/ca.pin"
expect_rc 0 "$KW" req --key "pkcs11:token=cl;object=alice" --subject "CN=alice,O=Example" \
    --san DNS:alice.example.com --out "$T/alice.csr" --pin-source "file:$T/cl.pin"
# the reference: SHA-256 over the DER SubjectPublicKeyInfo, as openssl computes it
want=$(openssl req -in "$T/alice.csr" -noout -pubkey | openssl pkey -pubin -outform DER |
    openssl dgst -sha256 -binary | od -An -tx1 | tr -d ' \n' | tr a-f A-F | sed 's/../&:/g; s/:$//')
[ ${#want} = 95 ] || fail "cannot compute the reference SPKI fingerprint"
grep -q "SPKI): $want" "$T/out" || { cat "$T/out"; fail "req does not print the CSR's SPKI SHA-256"; }
expect_rc 0 "$KW" --json req --key "pkcs11:token=cl;object=alice" --subject "CN=alice,O=Example" \
    --out "$T/alice2.csr" --pin-source "file:$T/cl.pin"
# (the JSON shape may grow an envelope: look for the member, and that the output parses)
python3 -m json.tool "$T/out" >/dev/null && grep -q "\"spki_sha256\": *\"$want\"" "$T/out" ||
    { cat "$T/out"; fail "req --json has no spki_sha256"; }
ok "req prints the SPKI fingerprint"

expect_rc 0 "$KW" --dir "$P" show "$T/alice.csr"
grep -q "SPKI sha256: $want" "$T/out" || { cat "$T/out"; fail "show CSR: SPKI"; }
grep -q "subject: .*CN=alice" "$T/out" && grep -q "DNS:alice.example.com" "$T/out" &&
    grep -q "key: *EC P-256" "$T/out" && grep -q "not signed by this CA" "$T/out" ||
    { cat "$T/out"; fail "show CSR: subject, SAN, key type or status"; }
ok "show CSR"

expect_rc 0 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
grep -q "alice.csr: public key SHA-256 (SPKI) $want" "$T/out" ||
    { cat "$T/out"; fail "ca sign does not print the SPKI before issuing"; }
grep -q "(SPKI): $want" "$T/out" || { cat "$T/out"; fail "ca sign report lacks the SPKI"; }
expect_rc 0 "$KW" --dir "$P" ca revoke alice
expect_rc 0 "$KW" --dir "$P" --json ca sign "$T/alice2.csr" --profile client --name alice2
python3 -m json.tool "$T/out" >/dev/null && grep -q "\"spki_sha256\": *\"$want\"" "$T/out" ||
    { cat "$T/out"; fail "ca sign --json lacks spki_sha256"; }
ok "ca sign prints the SPKI (text and --json)"

crt=$P/issued/alice2.crt
fp=$(openssl x509 -in "$crt" -noout -fingerprint -sha256 | cut -d= -f2)
serial=$(openssl x509 -in "$crt" -noout -serial | cut -d= -f2)
expect_rc 0 "$KW" --dir "$P" show "$crt"
for w in "subject: *CN=alice,O=Example" "issuer: .*CN=Show CA" "key: *EC P-256" \
    "SPKI sha256: $want" "cert sha256: $fp" "serial: *$serial" "not before: *20" "not after: *20" \
    "name: *alice2" "status: *valid"; do
    grep -q "$w" "$T/out" || { cat "$T/out"; fail "show certificate: no '$w'"; }
done
expect_rc 0 "$KW" --dir "$P" show "$P/issued/alice.crt"
grep -q "status: *revoked" "$T/out" || { cat "$T/out"; fail "show: revoked status"; }
expect_rc 0 "$KW" --dir "$P" --json show "$crt"
python3 -m json.tool "$T/out" >/dev/null && grep -q "\"sha256\": *\"$fp\"" "$T/out" &&
    grep -q "\"status\": *\"valid\"" "$T/out" || { cat "$T/out"; fail "show --json"; }
# DER works too; a certificate of another CA has no status here
openssl x509 -in "$crt" -outform DER -out "$T/alice2.der"
expect_rc 0 "$KW" --dir "$P" show "$T/alice2.der"
grep -q "cert sha256: $fp" "$T/out" || fail "show DER"
OPENSSL_CONF=/dev/null openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=other" -days 2 -out "$T/other.crt" 2>/dev/null
expect_rc 0 "$KW" --dir "$P" show "$T/other.crt"
grep -q "not issued by the CA in this directory" "$T/out" || { cat "$T/out"; fail "foreign cert status"; }
ok "show certificate: subject, issuer, key, fingerprints, validity, serial, status"

expect_rc 1 "$KW" --dir "$P" show "$T/missing.crt"
grep -q "^keyward: .*missing.crt: No such file or directory" "$T/err" || { cat "$T/err"; fail "missing file"; }
echo garbage > "$T/garbage"
expect_rc 1 "$KW" --dir "$P" show "$T/garbage"
grep -q "neither a certificate nor a certificate request" "$T/err" || fail "garbage file"
ok "show names a missing or unreadable file"
echo PASS
