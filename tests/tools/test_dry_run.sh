#!/bin/bash
# --dry-run prints every step as a shell script (openssl commands with their config); running
# that script by hand gives the same result as keyward itself.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" --dry-run ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Hand CA,O=Example" --pin-source "file:$T/ca.pin"
[ -e "$P" ] && fail "--dry-run created the CA directory"
grep -q "^OPENSSL_CONF=.* openssl genpkey .*keyward_uri:pkcs11:token=ca;object=ca-key" "$T/out" ||
    fail "dry-run does not show the key generation"
grep -q "^OPENSSL_CONF=.* openssl req -new -x509" "$T/out" || fail "dry-run does not show req -x509"
grep -q "11112222" "$T/out" && fail "dry-run output contains the PIN"
cp "$T/out" "$T/init.sh"
bash -e "$T/init.sh" > "$T/init.log" 2>&1 || { cat "$T/init.log"; fail "dry-run script of ca init fails"; }
openssl x509 -in "$P/ca.crt" -noout -text | grep -q "CA:TRUE" || fail "hand-made CA cert"
expect_rc 0 "$KW" --dir "$P" check
ok "ca init --dry-run runs by hand"

OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=byhand/O=Example" -out "$T/byhand.csr" 2>/dev/null
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=bykw/O=Example" -out "$T/bykw.csr" 2>/dev/null
before=$(tree_sum "$P")
expect_rc 0 "$KW" --dir "$P" --dry-run ca sign "$T/byhand.csr" --profile server --san DNS:h.example
[ "$(tree_sum "$P")" = "$before" ] || fail "--dry-run sign changed the CA"
cp "$T/out" "$T/sign.sh"
bash -e "$T/sign.sh" > "$T/sign.log" 2>&1 || { cat "$T/sign.log"; fail "dry-run script of ca sign fails"; }
grep -q "CN=byhand" "$P/state/index.txt" || fail "hand-run sign did not update the index"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/bykw.csr" --profile server --san DNS:k.example --name bykw
ext() { openssl x509 -in "$1" -noout -text | sed -n '/X509v3 extensions/,/Signature Algorithm/p' |
    grep -v -e "keyid:" -e "^ *[0-9A-F][0-9A-F]:" -e "DNS:" ; }
ext "$P/new.crt" > "$T/e1"
ext "$P/issued/bykw.crt" > "$T/e2"
diff "$T/e1" "$T/e2" || fail "hand-run and keyward certificates differ in extensions"
ok "ca sign --dry-run runs by hand with the same certificate profile"

hs=$(openssl x509 -in "$P/new.crt" -noout -serial | cut -d= -f2)
expect_rc 0 "$KW" --dir "$P" --dry-run ca revoke "$hs" --reason keyCompromise
bash -e "$T/out" > "$T/rev.log" 2>&1 || { cat "$T/rev.log"; fail "dry-run script of revoke fails"; }
openssl crl -in "$P/crl/crl.pem" -noout -text | grep -q "Serial Number: $hs" || fail "hand revoke not on CRL"
expect_rc 1 "$KW" --dir "$P" verify "$P/new.crt"
expect_rc 0 "$KW" --dir "$P" check
ok "ca revoke --dry-run runs by hand"

# --force replaces the CA and keeps the old directory aside
oldca=$(openssl x509 -in "$P/ca.crt" -noout -fingerprint -sha256)
expect_rc 0 "$KW" --dir "$P" ca init --force --key "pkcs11:token=ca;object=ca-key-2" \
    --subject "CN=New CA" --pin-source "file:$T/ca.pin"
grep -q "moved to $P.replaced-" "$T/err" || fail "--force does not say where the old CA went"
kept=$(ls -d "$P".replaced-* | head -1)
[ "$(openssl x509 -in "$kept/ca.crt" -noout -fingerprint -sha256)" = "$oldca" ] || fail "old CA not kept"
[ -s "$P/state/index.txt" ] && fail "new CA has a non-empty index"
expect_rc 0 "$KW" --dir "$P" check
ok "init --force keeps the replaced CA"
echo PASS
