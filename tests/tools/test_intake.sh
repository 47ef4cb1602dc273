#!/bin/bash
# CSR intake against a hostile requester (issue 14, items 1-7 and 14): CSRs made with stock
# `openssl req -addext` (raw DER for a NUL in a DNS name and a comma inside a URI), a CSR file
# rewritten while the CA reads it, a CN that is another certificate's serial, a device name in a
# client CSR, a rekey to another identity, one key under two names, export paths planted as
# symlinks, and the signing digest and key usage that follow the keys.
. "$(dirname "$0")/lib.sh"
need_softhsm
command -v python3 >/dev/null || skip "python3 missing"
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=Intake CA,O=Ex" \
    --key-type ec:P-384 --pin-source "file:$T/ca.pin"
DEVOID=$(sed -n 's/^device_id_oid = //p' "$P/keyward.conf")
# csr NAME [openssl req args...]: a CSR with a fresh key (file key: the requester's side)
csr() {
    local n=$1
    shift
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/$n.key" -out "$T/$n.csr" "$@" 2>"$T/req.err" || { cat "$T/req.err"; fail "csr $n"; }
}
# der_san HEX: the subjectAltName extension value for -addext from GeneralNames DER
san_der() { python3 -c '
import sys
def tlv(t, b):
    n = len(b)
    l = bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 255])
    return bytes([t]) + l + b
names = b"".join(tlv(int(t, 16), v.encode("latin-1").decode("unicode_escape").encode("latin-1"))
                 for t, v in (a.split("=", 1) for a in sys.argv[1:]))
print(tlv(0x30, names).hex())' "$@"; }
refused() { # LABEL PATTERN CMD...: exit 1, the message matches, nothing issued
    local label=$1 pat=$2
    shift 2
    local before
    before=$(wc -l <"$P/state/index.txt")
    expect_rc 1 "$@"
    grep -q -- "$pat" "$T/err" || { cat "$T/err" >&2; fail "$label: message does not say '$pat'"; }
    [ "$(wc -l <"$P/state/index.txt")" = "$before" ] || fail "$label: a certificate was issued"
}

# 1. SANs: every GeneralName type, NUL and separators, otherNames
csr upn -subj "/CN=upn/O=Ex" -addext "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:admin@corp.example"
refused "UPN otherName" "otherName name 1.3.6.1.4.1.311.20.2.3" "$KW" --dir "$P" ca sign "$T/upn.csr" --profile client
csr devo -subj "/CN=devo/O=Ex" -addext "subjectAltName=otherName:$DEVOID;UTF8:SN-1"
refused "device otherName in a client CSR" "otherName" "$KW" --dir "$P" ca sign "$T/devo.csr" --profile client
csr nul -subj "/CN=nul/O=Ex" -addext "subjectAltName=DER:$(san_der '82=good.example.com\x00.evil.com')"
refused "NUL in a DNS name" "NUL byte" "$KW" --dir "$P" ca sign "$T/nul.csr" --profile server
csr comma -subj "/CN=comma/O=Ex" -addext "subjectAltName=DER:$(san_der '86=http://a.example/,DNS:evil.com')"
refused "comma inside a URI" "contains one of" "$KW" --dir "$P" ca sign "$T/comma.csr" --profile client
csr rid -subj "/CN=rid/O=Ex" -addext "subjectAltName=RID:1.2.3.4"
refused "registeredID" "registeredID" "$KW" --dir "$P" ca sign "$T/rid.csr" --profile client
csr ctl -subj "/CN=ctl/O=Ex" -addext "subjectAltName=DER:$(san_der '82=ok.example\x01')"
refused "control byte" "control character" "$KW" --dir "$P" ca sign "$T/ctl.csr" --profile server
csr email -subj "/CN=email/O=Ex" -addext "subjectAltName=email:a@b.example"
refused "email in a server CSR" "email (rfc822Name) name, which the server profile" \
    "$KW" --dir "$P" ca sign "$T/email.csr" --profile server
csr devdns -subj "/CN=devdns/O=Ex" -addext "subjectAltName=DNS:device-SN-9"
refused "device DNS name outside the device profile" "reserved for device" \
    "$KW" --dir "$P" ca sign "$T/devdns.csr" --profile client
csr good -subj "/CN=good/O=Ex" -addext "subjectAltName=DNS:good.example.com,IP:10.0.0.1"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/good.csr" --profile server
openssl x509 -in "$P/issued/good.crt" -noout -ext subjectAltName >"$T/san.txt"
grep -q "DNS:good.example.com, IP Address:10.0.0.1" "$T/san.txt" || { cat "$T/san.txt"; fail "checked SAN not written"; }
grep -q "^copy_extensions = none" "$P/openssl.cnf" || fail "openssl.cnf copies extensions from requests"
ok "SANs: UPN and foreign otherNames, NUL, comma, control byte, registeredID, wrong type, device-* refused; checked SAN written"

# 2. the CSR file rewritten while the CA reads it: what is issued is what was checked
csr bobok -subj "/CN=bob/O=Ex"
csr bobevil -subj "/CN=admin/O=Ex" -addext "certificatePolicies=1.2.3.4.5" \
    -addext "authorityInfoAccess=caIssuers;URI:http://attacker.example/x" -addext "nsCertType=server,objsign"
cp "$T/bobok.csr" "$T/swap.csr"
( while :; do cp "$T/bobevil.csr" "$T/swap.tmp" && mv -f "$T/swap.tmp" "$T/swap.csr"
      cp "$T/bobok.csr" "$T/swap.tmp2" && mv -f "$T/swap.tmp2" "$T/swap.csr"; done ) &
SWAPPER=$!
KWT_PIDS="$KWT_PIDS $SWAPPER"
issued=0
for i in $(seq 1 12); do
    "$KW" --dir "$P" ca sign "$T/swap.csr" --profile client --name "bob$i" --allow-same-key --allow-same-subject \
        >/dev/null 2>&1 && issued=$((issued + 1))
done
kill "$SWAPPER" 2>/dev/null
wait "$SWAPPER" 2>/dev/null
for i in $(seq 1 12); do
    [ -e "$P/issued/bob$i.crt" ] || continue
    openssl x509 -in "$P/issued/bob$i.crt" -noout -text >"$T/bob.txt"
    grep -q "CN *= *bob" "$T/bob.txt" || fail "swap: bob$i issued with another subject"
    grep -q -E "Certificate Policies|Authority Information Access|Netscape Cert Type|1\.2\.3\.4\.5" \
        "$T/bob.txt" && fail "swap: bob$i carries an extension from the swapped-in CSR"
done
echo "swap: $issued of 12 signing runs issued (each either the checked CSR or refused)"
mkfifo "$T/fifo.csr"
refused "FIFO as CSR" "not a regular file" timeout 20 "$KW" --dir "$P" ca sign "$T/fifo.csr" --profile client
ok "a CSR rewritten during signing: only the checked request is issued; a FIFO is refused at once"

# 3. a CN that is another certificate's serial; revoke by name or serial unambiguous
gserial=$(openssl x509 -in "$P/issued/good.crt" -noout -serial | cut -d= -f2)
csr decoy -subj "/CN=$gserial/O=Ex"
refused "CN that looks like a serial" "looks like a serial" "$KW" --dir "$P" ca sign "$T/decoy.csr" --profile client
csr carol -subj "/CN=carol/O=Ex"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/carol.csr" --profile client
cserial=$(openssl x509 -in "$P/issued/carol.crt" -noout -serial | cut -d= -f2)
expect_rc 1 "$KW" --dir "$P" ca revoke --name "$cserial"
grep -q "no certificate named $cserial" "$T/err" || fail "--name took a serial"
expect_rc 0 "$KW" --dir "$P" ca revoke --name carol --reason superseded
grep -q "serial $cserial" "$T/out" || fail "revoke --name carol"
# a bare argument that is both a NAME and another certificate's serial (an index from before
# the check at signing: erin's NAME set to dave's serial) is refused with both listed
csr dave -subj "/CN=dave/O=Ex"
csr erin -subj "/CN=erin/O=Ex"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/dave.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca sign "$T/erin.csr" --profile client
dserial=$(openssl x509 -in "$P/issued/dave.crt" -noout -serial | cut -d= -f2)
eserial=$(openssl x509 -in "$P/issued/erin.crt" -noout -serial | cut -d= -f2)
awk -F'\t' -v OFS='\t' -v d="$dserial" '$5 == "erin" { $5 = d } 1' "$P/state/index.txt" >"$T/ix" &&
    cat "$T/ix" >"$P/state/index.txt"
st() { awk -F'\t' -v s="$1" '$4 == s { print $1 }' "$P/state/index.txt"; }
expect_rc 1 "$KW" --dir "$P" ca revoke "$dserial"
grep -q "is both a certificate name and another certificate's serial" "$T/err" &&
    grep -q "serial $dserial *name dave" "$T/err" && grep -q "serial $eserial *name $dserial" "$T/err" ||
    { cat "$T/err"; fail "an ambiguous bare argument not refused with both listed"; }
[ "$(st "$dserial")$(st "$eserial")" = VV ] || fail "an ambiguous revoke revoked something"
expect_rc 0 "$KW" --dir "$P" ca revoke --serial "$dserial"
[ "$(st "$dserial")$(st "$eserial")" = RV ] || fail "--serial did not revoke exactly that serial"
expect_rc 0 "$KW" --dir "$P" ca revoke --name "$dserial"
[ "$(st "$eserial")" = R ] || fail "--name did not revoke the certificate of that NAME"
ok "a requester's CN cannot pose as a serial; a bare NAME-and-serial is refused; --name and --serial say which"

# 4/5/6. identity: device names, rekey to another identity, one key under two names
refused "same key under another name" "already holds a valid certificate, good" \
    "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name good3
expect_rc 0 "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name good3 --allow-same-key --allow-same-subject
csr alice -subj "/CN=alice/O=Ex" -addext "subjectAltName=email:alice@ex.example"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
csr rootadmin -subj "/CN=root-admin/O=Ex" -addext "subjectAltName=DNS:admin.corp.example"
refused "rekey to another identity" "another identity" "$KW" --dir "$P" ca renew alice --csr "$T/rootadmin.csr"
expect_rc 0 "$KW" --dir "$P" ca renew alice --csr "$T/rootadmin.csr" --allow-subject-change
grep -q "identity changed: subject CN=alice,O=Ex -> O=Ex,CN=root-admin" "$T/err" || { cat "$T/err"; fail "identity change not printed"; }
grep -q '"op":"ca renew (rekey, identity changed: subject' "$P/audit.log" || fail "identity change not audited"
# the identity is the current certificate's: a SAN added with --san at signing is part of it
csr frank -subj "/CN=frank/O=Ex"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/frank.csr" --profile client --san DNS:frank.example
csr frank2 -subj "/CN=frank/O=Ex" -addext "subjectAltName=DNS:frank.example"
expect_rc 0 "$KW" --dir "$P" ca renew frank --csr "$T/frank2.csr"
grep -q "identity changed" "$T/err" && fail "a rekey CSR with the certificate's SANs taken as a change"
csr frank3 -subj "/CN=frank/O=Ex" -addext "subjectAltName=DNS:other.example"
refused "rekey adding a SAN" "subjectAltName DNS:frank.example.* -> DNS:other.example, DNS:frank.example" \
    "$KW" --dir "$P" ca renew frank --csr "$T/frank3.csr"
ok "rekey keeps the current certificate's identity unless --allow-subject-change (shown and audited); one key, one NAME"

# 7. output paths in a shared directory with planted symlinks (and a FIFO): refused (exit 2,
# the path and why named), never written through nor replaced; a regular file is replaced
mkdir -p "$T/shared" && echo precious >"$T/victim"
linkref() { # LABEL CMD...: exit 2 naming the link, the victim and the link untouched
    local label=$1 l=${*: -1}
    shift
    ln -sfn "$T/victim" "$l"
    expect_rc 2 "$@"
    grep -q "$l is a symbolic link" "$T/err" || { cat "$T/err" >&2; fail "$label: link not named"; }
    [ "$(cat "$T/victim")" = precious ] || fail "$label: wrote through a planted symlink"
    [ -L "$l" ] || fail "$label: replaced the planted symlink"
}
linkref "package" "$KW" --dir "$P" ca export alice --package "$T/shared/pkg"
linkref "p12" "$KW" --dir "$P" ca export alice --format p12 --out "$T/shared/a.p12"
linkref "pem-bundle" "$KW" --dir "$P" ca export alice --format pem-bundle --out "$T/shared/a.pem"
linkref "metrics" "$KW" --dir "$P" ca metrics --textfile "$T/shared/m.prom"
linkref "req" "$KW" req --key "pkcs11:token=ca;object=x" --subject "CN=x" --out "$T/shared/x.csr"
linkref "uri2pem" "$KW" uri2pem "pkcs11:token=ca;object=ca" --out "$T/shared/x.key"
mkfifo "$T/shared/f.pem"
expect_rc 2 timeout 20 "$KW" --dir "$P" ca export alice --format pem-bundle --out "$T/shared/f.pem"
grep -q "not a regular file" "$T/err" || fail "a FIFO at --out not refused"
echo old >"$T/shared/b.pem"
expect_rc 0 "$KW" --dir "$P" ca export alice --format pem-bundle --out "$T/shared/b.pem"
grep -q "BEGIN CERTIFICATE" "$T/shared/b.pem" || fail "an existing regular file was not replaced"
ok "export, metrics, req and uri2pem refuse a symlink or FIFO at their output path"

# 14. the digest follows the CA key; keyEncipherment only for RSA server keys
openssl x509 -in "$P/issued/good.crt" -noout -text | grep -q "Signature Algorithm: ecdsa-with-SHA384" ||
    fail "a P-384 CA does not sign with SHA-384"
openssl crl -in "$P/crl/crl.pem" -noout -text | grep -q "ecdsa-with-SHA384" || fail "CRL not SHA-384"
openssl x509 -in "$P/issued/good.crt" -noout -ext keyUsage | grep -q "Key Encipherment" &&
    fail "an EC server key got keyEncipherment"
OPENSSL_CONF=/dev/null openssl req -new -newkey rsa:2048 -nodes -keyout "$T/rsa.key" -subj "/CN=rsa/O=Ex" \
    -addext "subjectAltName=DNS:rsa.example.com" -out "$T/rsa.csr" 2>/dev/null
expect_rc 0 "$KW" --dir "$P" ca sign "$T/rsa.csr" --profile server
openssl x509 -in "$P/issued/rsa.crt" -noout -ext keyUsage | grep -q "Key Encipherment" ||
    fail "an RSA server key lacks keyEncipherment"
expect_rc 0 "$KW" --dir "$P" check
# a P-521 CA signs with SHA-512
expect_rc 0 "$KW" --dir "$T/p521" ca init --key "pkcs11:token=ca;object=ca521" --subject "CN=P521 CA,O=Ex" \
    --key-type ec:P-521 --pin-source "file:$T/ca.pin"
expect_rc 0 "$KW" --dir "$T/p521" ca sign "$T/dave.csr" --profile client
openssl x509 -in "$T/p521/issued/dave.crt" -noout -text | grep -q "Signature Algorithm: ecdsa-with-SHA512" ||
    fail "a P-521 CA does not sign with SHA-512"
openssl crl -in "$T/p521/crl/crl.pem" -noout -text | grep -q "ecdsa-with-SHA512" || fail "P-521 CRL not SHA-512"
ok "P-384 CA signs certificates and CRLs with SHA-384, P-521 with SHA-512; keyEncipherment for RSA server keys only"
# review findings: two CNs, weak keys and digests, a compromised key, a copied subject, a
# critical SAN, a bidirectional override in the subject, a wildcard TLD, a javascript: URI
csr twocn -subj "/O=Ex/CN=zed/CN=alice"
refused "two CNs" "more than one CN" "$KW" --dir "$P" ca sign "$T/twocn.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -newkey rsa:1024 -nodes -keyout /dev/null -subj "/CN=weak/O=Ex" \
    -out "$T/weak.csr" 2>/dev/null
refused "RSA-1024" "RSA key of 1024 bits" "$KW" --dir "$P" ca sign "$T/weak.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -sha1 -subj "/CN=sha1/O=Ex" -out "$T/sha1.csr" 2>/dev/null
refused "SHA-1 CSR" "signed with SHA1" "$KW" --dir "$P" ca sign "$T/sha1.csr" --profile client
csr kc -subj "/CN=kc/O=Ex"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/kc.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca revoke kc --reason keyCompromise
refused "a compromised key again" "revoked for keyCompromise" \
    "$KW" --dir "$P" ca sign "$T/kc.csr" --profile client --name kc2 --allow-same-key
csr copycat -subj "/CN=alice-copy/O=Ex"
csr same -subj "/CN=good/O=Ex"
refused "another NAME's subject" "its subject is that of good" \
    "$KW" --dir "$P" ca sign "$T/same.csr" --profile client --name mallory
csr crit -subj "/CN=crit/O=Ex" -addext "subjectAltName=critical,DNS:crit.example.com"
refused "critical SAN" "critical" "$KW" --dir "$P" ca sign "$T/crit.csr" --profile server
csr bidi -subj "/CN=bidi/O=Ex/OU=abc$(printf '\u202e')gpj.exe" -utf8
refused "bidi override" "bidirectional" "$KW" --dir "$P" ca sign "$T/bidi.csr" --profile client
csr wild -subj "/CN=wild/O=Ex" -addext "subjectAltName=DNS:*.com"
refused "wildcard TLD" "not a valid host name" "$KW" --dir "$P" ca sign "$T/wild.csr" --profile server
csr js -subj "/CN=js/O=Ex" -addext "subjectAltName=URI:javascript:alert(1)"
refused "javascript: URI" "javascript" "$KW" --dir "$P" ca sign "$T/js.csr" --profile client
ok "two CNs, weak keys/digests, compromised keys, copied subjects, critical SAN, bidi, *.com, javascript: refused"

# the operator's side: an existing key of another type is named, a missing file is "missing"
make_token cl 55556666
expect_rc 0 "$KW" req --key "pkcs11:token=cl;object=k" --module "$SOFTHSM_MODULE" \
    --pin-source "file:$T/cl.pin" --key-type ec:P-256 --subject "CN=k,O=Ex" --out "$T/k1.csr"
expect_rc 2 "$KW" req --key "pkcs11:token=cl;object=k" --module "$SOFTHSM_MODULE" \
    --pin-source "file:$T/cl.pin" --key-type rsa:2048 --subject "CN=k,O=Ex" --out "$T/k2.csr"
grep -q "is ec:P-256, not rsa:2048" "$T/err" || { cat "$T/err"; fail "key type mismatch not named"; }
[ -e "$T/k2.csr" ] && fail "a CSR was written for the wrong key type"
expect_rc 0 "$KW" req --key "pkcs11:token=cl;object=k" --module "$SOFTHSM_MODULE" \
    --pin-source "file:$T/cl.pin" --subject "CN=k,O=Ex" --out "$T/k3.csr"
expect_rc 1 "$KW" --dir "$P" verify "$T/no-such.crt"
grep -q "No such file" "$T/err" || fail "a missing file is not called missing"
ok "req names an existing key's other type; verify names a missing file"
echo PASS
