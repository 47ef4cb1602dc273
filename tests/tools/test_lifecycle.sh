#!/bin/bash
# End to end: CA token and client token (SoftHSM2); init, req on the client token, sign every
# profile, verify, mTLS handshake with token keys, revoke with each reason, CRL, renew, rekey,
# list/JSON, export, check, OCSP good/revoked/unknown.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
make_token client 33334444
P=$T/pki
CAURI="pkcs11:token=ca;object=ca-key"
cl() { echo "pkcs11:token=client;object=$1;pin-source=file:$T/client.pin"; }

expect_rc 0 "$KW" --dir "$P" ca init --key "$CAURI" --subject "CN=Test CA,O=Example" \
    --key-type ec:P-256 --pin-source "file:$T/ca.pin"
[ "$(stat -c %a "$P")" = 700 ] || fail "CA directory mode is not 0700"
for f in ca.crt crl/crl.pem crl/crl.der openssl.cnf keyward.conf audit.log; do
    [ -e "$P/$f" ] || fail "ca init did not create $f"
done
openssl x509 -in "$P/ca.crt" -noout -text > "$T/ca.txt"
grep -A1 "Basic Constraints: critical" "$T/ca.txt" | grep -q "CA:TRUE" || fail "CA cert lacks critical CA:TRUE"
grep -A1 "Key Usage: critical" "$T/ca.txt" | grep -q "Certificate Sign, CRL Sign" || fail "CA key usage"
grep -q "Subject Key Identifier" "$T/ca.txt" || fail "no SKI"
grep -q "Authority Key Identifier" "$T/ca.txt" || fail "no AKI"
grep -q '"op":"ca init".*"outcome":"ok"' "$P/audit.log" || fail "audit log has no ca init line"
ok "ca init"

# a second init without --force refuses and changes nothing
sum=$(tree_sum "$P")
expect_rc 1 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=other" --subject "CN=X"
grep -q "invalidate" "$T/err" || fail "refusal does not say why"
[ "$(tree_sum "$P")" = "$sum" ] || fail "refused init changed the CA"
ok "init refuses to overwrite"

# CSRs on the client token: the key is generated there, only the CSR leaves
expect_rc 0 "$KW" req --key "$(cl alice)" --subject "CN=alice,O=Example" --out "$T/alice.csr"
grep -q "generated key" "$T/out" || fail "req did not generate the key"
expect_rc 0 "$KW" req --key "$(cl alice)" --subject "CN=alice,O=Example" --out "$T/alice2.csr"
grep -q "using existing" "$T/out" || fail "req did not reuse the existing key"
expect_rc 0 "$KW" req --key "$(cl web)" --subject "CN=web.example.com,O=Example" \
    --san "DNS:web.example.com,IP:127.0.0.1" --key-type rsa:2048 --out "$T/web.csr"
expect_rc 0 "$KW" req --key "$(cl dev)" --subject "CN=sensor 7,O=Example" --device-id SN-0007 \
    --out "$T/dev.csr"
expect_rc 0 "$KW" req --key "$(cl ocsp)" --subject "CN=responder,O=Example" --out "$T/ocsp.csr"
expect_rc 0 "$KW" req --key "$(cl sub)" --subject "CN=Sub CA,O=Example" --out "$T/sub.csr"
ok "req on the client token"

expect_rc 0 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
grep -q "sha256: [0-9A-F:]\{95\}" "$T/out" || fail "sign does not print the SHA-256 fingerprint"
serial=$(sed -n 's/.*serial: //p' "$T/out")
[ -e "$P/certs/$serial.pem" ] || fail "no certs/SERIAL.pem"
[ ${#serial} -ge 30 ] || fail "serial $serial is not a random 128-bit value"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/web.csr" --profile server --name web
expect_rc 0 "$KW" --dir "$P" ca sign "$T/dev.csr" --profile device --device-id SN-0007 --name dev7
expect_rc 0 "$KW" --dir "$P" ca sign "$T/ocsp.csr" --profile ocsp --name responder
expect_rc 0 "$KW" --dir "$P" ca sign "$T/sub.csr" --profile subca --name subca
ok "sign every profile"

chk_ext() { openssl x509 -in "$P/issued/$1.crt" -noout -text | grep -q "$2" || fail "$1 lacks $2"; }
chk_ext alice "TLS Web Client Authentication"
chk_ext web "TLS Web Server Authentication"
chk_ext web "DNS:web.example.com"
chk_ext web "IP Address:127.0.0.1"
chk_ext dev7 "DNS:device-SN-0007"
chk_ext dev7 "othername"
chk_ext responder "OCSP Signing"
chk_ext subca "CA:TRUE, pathlen:0"
openssl x509 -in "$P/issued/alice.crt" -noout -text | grep -q "CA:TRUE" && fail "client cert is a CA"
ok "profile extensions"

expect_rc 0 "$KW" --dir "$P" verify "$P/issued/alice.crt" --purpose client
grep -q "^PASS" "$T/out" || fail "verify output lacks PASS"
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/web.crt" --purpose server
expect_rc 1 "$KW" --dir "$P" verify "$P/issued/alice.crt" --purpose server
grep -q "^FAIL purpose" "$T/out" || fail "wrong purpose not reported"
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/dev7.crt" --purpose device --device-id SN-0007
expect_rc 1 "$KW" --dir "$P" verify "$P/issued/dev7.crt" --purpose device --device-id SN-0008
expect_rc 0 "$KW" verify "$P/issued/alice.crt" --ca "$P/ca.crt" --crl "$P/crl/crl.pem"
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/alice.crt" --warn-days 400
grep -q "^WARN expiry" "$T/out" || fail "no expiry warning within 400 days"
ok "verify"

# mTLS handshake: server and client keys on the client token, certs from the CA
cat > "$T/tls.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
keyward = keyward_sect
[default_sect]
activate = 1
[keyward_sect]
module = $KEYWARD_PROVIDER_PATH
activate = 1
EOF
port=$(free_port)
OPENSSL_CONF=$T/tls.cnf openssl s_server -accept "127.0.0.1:$port" -naccept 1 \
    -cert "$P/issued/web.crt" -key "$(cl web)" -CAfile "$P/ca.crt" -Verify 1 \
    -verify_return_error -www > "$T/s_server.log" 2>&1 &
KWT_PIDS="$KWT_PIDS $!"
for _ in $(seq 50); do grep -q ACCEPT "$T/s_server.log" && break; sleep 0.1; done
echo "GET / HTTP/1.0" | OPENSSL_CONF=$T/tls.cnf timeout 20 openssl s_client \
    -connect "127.0.0.1:$port" -cert "$P/issued/alice.crt" -key "$(cl alice)" \
    -CAfile "$P/ca.crt" -verify_return_error -servername web.example.com > "$T/s_client.log" 2>&1 ||
    { cat "$T/s_server.log" "$T/s_client.log"; fail "mTLS handshake with token keys failed"; }
grep -q "Verify return code: 0" "$T/s_client.log" || fail "client did not verify the server"
ok "mTLS handshake with issued certs and token keys"

# revoke with each reason; each one is on the CRL and verify fails
i=0
for reason in unspecified keyCompromise cACompromise affiliationChanged superseded \
    cessationOfOperation certificateHold; do
    i=$((i + 1))
    expect_rc 0 "$KW" req --key "$(cl r$i)" --subject "CN=r$i,O=Example" --out "$T/r$i.csr"
    expect_rc 0 "$KW" --dir "$P" ca sign "$T/r$i.csr" --profile client
    expect_rc 0 "$KW" --dir "$P" ca revoke "r$i" --reason "$reason"
    expect_rc 1 "$KW" --dir "$P" verify "$P/issued/r$i.crt"
    grep -q "^FAIL revocation" "$T/out" || fail "verify does not report revocation ($reason)"
    s=$(openssl x509 -in "$P/issued/r$i.crt" -noout -serial | cut -d= -f2)
    openssl crl -in "$P/crl/crl.pem" -noout -text > "$T/crl.txt"
    grep -q "Serial Number: $s" "$T/crl.txt" || fail "serial $s ($reason) not on the CRL"
    case $reason in
    unspecified) ;;
    cACompromise) grep -qi "CA Compromise" "$T/crl.txt" || fail "CRL lacks reason $reason" ;;
    certificateHold) grep -qi "Certificate Hold" "$T/crl.txt" || fail "CRL lacks reason $reason" ;;
    *) grep -qi "$(echo "$reason" | sed 's/\([A-Z]\)/ \1/g')" "$T/crl.txt" ||
        fail "CRL lacks reason $reason" ;;
    esac
done
openssl crl -in "$P/crl/crl.der" -inform DER -noout -CAfile "$P/ca.crt" 2>&1 | grep -q "verify OK" ||
    fail "crl.der does not verify"
# a hold can be lifted
expect_rc 0 "$KW" --dir "$P" ca revoke r7 --reason removeFromCRL
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/r7.crt"
expect_rc 1 "$KW" --dir "$P" ca revoke r1 --reason keyCompromise
grep -q "already revoked" "$T/err" || fail "re-revocation not refused clearly"
# a date before the certificate was issued is refused; one after it is recorded
expect_rc 2 "$KW" --dir "$P" ca revoke "$serial" --reason affiliationChanged --date 2020-01-02T03:04:05Z
grep -q "before serial" "$T/err" || fail "revocation date before notBefore not refused clearly"
sleep 1
past=$(date -u -d '-1 second' +%Y%m%d%H%M%SZ)
expect_rc 0 "$KW" --dir "$P" ca revoke "$serial" --reason affiliationChanged --date "$past"
grep -q "$serial" "$T/out" || fail "revoke by serial"
grep -q "^R.*${past#20},affiliationChanged.*$serial" "$P/state/index.txt" ||
    fail "revocation date not recorded"
ok "revoke with every reason, CRL, hold lifted, by serial with a date"

# renew (same key) and rekey
old=$(openssl x509 -in "$P/issued/web.crt" -noout -serial | cut -d= -f2)
oldpub=$(openssl x509 -in "$P/issued/web.crt" -noout -pubkey)
expect_rc 0 "$KW" --dir "$P" ca renew web --days 30
new=$(openssl x509 -in "$P/issued/web.crt" -noout -serial | cut -d= -f2)
[ "$new" != "$old" ] || fail "renew kept the serial"
[ "$(openssl x509 -in "$P/issued/web.crt" -noout -pubkey)" = "$oldpub" ] || fail "renew changed the key"
openssl x509 -in "$P/issued/web.crt" -noout -text | grep -q "DNS:web.example.com" || fail "renew lost the SAN"
expect_rc 1 "$KW" --dir "$P" verify "$P/certs/$old.pem"
grep -q "superseded" "$T/out" || fail "old cert not revoked as superseded"
expect_rc 0 "$KW" req --key "$(cl web2)" --subject "CN=web.example.com,O=Example" \
    --san DNS:web.example.com --out "$T/web2.csr"
# the rekey CSR drops a SAN the first one had: refused without --allow-subject-change
expect_rc 1 "$KW" --dir "$P" ca renew web --csr "$T/web2.csr"
grep -q "another identity.*subjectAltName" "$T/err" || fail "identity change on rekey not explained"
expect_rc 0 "$KW" --dir "$P" ca renew web --csr "$T/web2.csr" --allow-subject-change
grep -q "identity changed: subjectAltName" "$T/err" || fail "identity change not shown"
grep -q '"op":"ca renew (rekey, identity changed: subjectAltName' "$P/audit.log" ||
    fail "identity change not in the audit log"
[ "$(openssl x509 -in "$P/issued/web.crt" -noout -pubkey)" != "$oldpub" ] || fail "rekey kept the key"
expect_rc 0 "$KW" --dir "$P" verify "$P/issued/web.crt" --purpose server
ok "renew and rekey"

# list / JSON
expect_rc 0 "$KW" --dir "$P" --json ca list
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["result"]["certificates"]; assert any(r["name"]=="alice" and r["status"]=="revoked" for r in d), d; assert all(len(r["sha256"])==95 for r in d)' "$T/out" ||
    fail "list --json is not the expected JSON"
expect_rc 0 "$KW" --dir "$P" ca list --status revoked
grep -q "keyCompromise" "$T/out" || fail "list does not show reasons"
grep -q "^dev7 " "$T/out" && fail "list --status revoked shows a valid cert"
expect_rc 0 "$KW" --dir "$P" ca list --within 60
grep -q "^web " "$T/out" || fail "list --within 60 misses the 30-day cert"
grep -q "^dev7 " "$T/out" && fail "list --within 60 shows a one-year cert"
ok "list and JSON"

# export: no key in any of them
expect_rc 0 "$KW" --dir "$P" ca export dev7 --format pem-bundle --out "$T/dev7.pem"
# one CA generation: the leaf alone (no self-signed root: the relying party has its own)
[ "$(grep -c BEGIN "$T/dev7.pem")" = 1 ] || fail "bundle is not the certificate alone"
grep -q PRIVATE "$T/dev7.pem" && fail "bundle has a key"
expect_rc 0 "$KW" --dir "$P" ca export dev7 --format p12 --out "$T/dev7.p12"
openssl pkcs12 -in "$T/dev7.p12" -passin pass: -nodes -info > "$T/p12.txt" 2>&1 || fail "p12 unreadable"
grep -q "PRIVATE KEY" "$T/p12.txt" && fail "p12 has a key"
grep -q "BEGIN CERTIFICATE" "$T/p12.txt" || fail "p12 has no certificate"
expect_rc 0 "$KW" --dir "$P" ca export dev7 --package "$T/pkg"
for f in dev7.crt chain.pem ca.crt crl.pem README; do [ -s "$T/pkg/$f" ] || fail "package lacks $f"; done
ok "export"

# OCSP: good, revoked, unknown
port=$(free_port)
"$KW" --dir "$P" ca ocsp --port "$port" --key "pkcs11:token=ca;object=ocsp-key" --count 3 \
    > "$T/ocsp.log" 2>&1 &
KWT_PIDS="$KWT_PIDS $!"
for _ in $(seq 100); do grep -q listening "$T/ocsp.log" && break; sleep 0.1; done
grep -q "listening on http://127.0.0.1:$port" "$T/ocsp.log" || { cat "$T/ocsp.log"; fail "responder did not start"; }
ss -ltn 2>/dev/null | grep -q "0.0.0.0:$port\|\*:$port" && fail "responder listens on every address"
q() { openssl ocsp -issuer "$P/ca.crt" -CAfile "$P/ca.crt" -url "http://127.0.0.1:$port/" "$@" 2>&1; }
q -cert "$P/issued/dev7.crt" | grep -q "dev7.crt: good" || fail "OCSP good"
q -cert "$P/issued/r2.crt" | grep -q "r2.crt: revoked" || fail "OCSP revoked"
q -serial 0x0123456789 | grep -q ": unknown" || fail "OCSP unknown"
ok "OCSP good/revoked/unknown from a token-held responder key"

expect_rc 0 "$KW" --dir "$P" check
grep -q "^PASS" "$T/out" || fail "check"
expect_rc 0 "$KW" --dir "$P" --json check
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] and d["result"]["result"]=="PASS"' "$T/out" || fail "check --json"
ok "check"
n=$(wc -l < "$P/audit.log")
[ "$n" -ge 20 ] || fail "audit log has only $n lines"
python3 -c '
import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l)
    assert {"time","op","outcome","uid","user"} <= d.keys(), d
' "$P/audit.log" || fail "audit log lines are not complete JSON"
grep -q "33334444\|11112222" "$P/audit.log" && fail "a PIN is in the audit log"
ok "audit log"
echo PASS
