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
# the script records NAME as keyward does (openssl writes "unknown"), links issued/NAME.crt and
# keeps the request, so keyward knows the name afterwards and will not issue it twice
awk -F'\t' '$6 ~ /CN=byhand/ { print $5 }' "$P/state/index.txt" | grep -qx byhand ||
    { cat "$P/state/index.txt"; fail "hand-run sign recorded no NAME"; }
[ -e "$P/issued/byhand.crt" ] || fail "hand-run sign did not link issued/byhand.crt"
cmp -s <(openssl x509 -in "$P/issued/byhand.crt" -outform DER) <(openssl x509 -in "$P/new.crt" -outform DER) ||
    fail "issued/byhand.crt is not the certificate the script made"
expect_rc 1 "$KW" --dir "$P" ca sign "$T/byhand.csr" --profile server --san DNS:h.example
grep -q "byhand already has a valid certificate" "$T/err" || { cat "$T/err"; fail "a second byhand"; }
hs0=$(openssl x509 -in "$P/new.crt" -noout -serial | cut -d= -f2)
grep -q "^name=byhand" "$P/certs/$hs0.meta" && [ -s "$P/certs/$hs0.csr" ] ||
    fail "hand-run sign kept no signing record (renew needs it)"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/bykw.csr" --profile server --san DNS:k.example --name bykw
ext() { openssl x509 -in "$1" -noout -text | sed -n '/X509v3 extensions/,/Signature Algorithm/p' |
    grep -v -e "keyid:" -e "^ *[0-9A-F][0-9A-F]:" -e "DNS:" ; }
ext "$P/new.crt" > "$T/e1"
ext "$P/issued/bykw.crt" > "$T/e2"
diff "$T/e1" "$T/e2" || fail "hand-run and keyward certificates differ in extensions"
ok "ca sign --dry-run runs by hand with the same certificate profile"

# renew --dry-run: the script names the new row too (a second "unknown" would follow otherwise)
expect_rc 0 "$KW" --dir "$P" --dry-run ca renew bykw
cp "$T/out" "$T/renew.sh"
bash -e "$T/renew.sh" > "$T/renew.log" 2>&1 || { cat "$T/renew.log"; fail "dry-run script of ca renew fails"; }
[ "$(awk -F'\t' '$5 == "bykw"' "$P/state/index.txt" | wc -l)" = 2 ] ||
    { cat "$P/state/index.txt"; fail "hand-run renew did not record NAME bykw"; }
awk -F'\t' '$5 == "unknown"' "$P/state/index.txt" | grep -q . && fail "hand-run renew left an unknown row"
# batch --dry-run signs with the batch's own configuration: the SANs come out as in a real run
mkdir -p "$T/bd"
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=bd1/O=Example" -addext "subjectAltName=DNS:bd1.example" \
    -out "$T/bd/bd1.csr" 2>/dev/null
expect_rc 0 "$KW" --dir "$P" --dry-run ca sign --batch "$T/bd" --profile server
cp "$T/out" "$T/batch.sh"
bash -e "$T/batch.sh" > "$T/batch.log" 2>&1 || { cat "$T/batch.log"; fail "dry-run script of a batch fails"; }
openssl x509 -in "$P/issued/bd1.crt" -noout -ext subjectAltName | grep -q "DNS:bd1.example" ||
    fail "hand-run batch lost the CSR's subjectAltName"
ok "ca renew and ca sign --batch --dry-run run by hand as the real run"

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
# rotate --use-existing --dry-run: the key is on the token already, so the script makes none
OPENSSL_CONF=$P/openssl.cnf openssl genpkey -propquery '?provider=keyward' -algorithm EC \
    -pkeyopt ec_paramgen_curve:P-256 -pkeyopt "keyward_uri:pkcs11:token=ca;object=next" \
    -out /dev/null 2>"$T/gen.err" || { cat "$T/gen.err"; fail "cannot make the next CA key"; }
expect_rc 0 "$KW" --dir "$P" --dry-run ca rotate --key "pkcs11:token=ca;object=next" --use-existing
grep -q "openssl genpkey" "$T/out" && { cat "$T/out"; fail "rotate --use-existing --dry-run prints genpkey"; }
grep -q "openssl pkey -in 'pkcs11:token=ca;object=next'" "$T/out" || fail "dry-run rotate lost the key file step"
expect_rc 0 "$KW" --dir "$P" --dry-run ca rotate --key "pkcs11:token=ca;object=absent"
grep -q "openssl genpkey .*object=absent" "$T/out" || fail "dry-run rotate to a new key makes none"
ok "ca rotate --dry-run makes a key only when the real run would"
echo PASS
