#!/bin/bash
# Bad input: clear message, exit 1 (operation) or 2 (usage), and the CA directory unchanged.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
make_token client 33334444
make_token other 55556666
P=$T/pki
cl() { echo "pkcs11:token=client;object=$1;pin-source=file:$T/client.pin"; }
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Test CA,O=Example" --pin-source "file:$T/ca.pin" --policy-match O
expect_rc 0 "$KW" req --key "$(cl good)" --subject "CN=good,O=Example" --out "$T/good.csr"

# unchanged CODE MESSAGE-REGEX CMD...: exit CODE, stderr matches, CA tree unchanged
unchanged() {
    local code=$1 msg=$2; shift 2
    local before; before=$(tree_sum "$P")
    expect_rc "$code" "$@"
    grep -qiE "$msg" "$T/err" || { cat "$T/err"; fail "message for '$*' does not match '$msg'"; }
    [ "$(tree_sum "$P")" = "$before" ] || fail "CA directory changed by: $*"
}

# CSRs: garbage, bad signature, CA:TRUE on a client profile, policy mismatch
head -c 500 /dev/urandom > "$T/garbage.csr"
unchanged 1 "not a certificate request" "$KW" --dir "$P" ca sign "$T/garbage.csr" --profile client
python3 - "$T/good.csr" "$T/badsig.csr" <<'PY'
import base64, sys
pem = open(sys.argv[1]).read().split("\n")
der = bytearray(base64.b64decode("".join(l for l in pem if l and not l.startswith("-----"))))
der[-5] ^= 0x55  # inside the signature
b = base64.b64encode(bytes(der)).decode()
open(sys.argv[2], "w").write("-----BEGIN CERTIFICATE REQUEST-----\n" +
    "\n".join(b[i:i+64] for i in range(0, len(b), 64)) + "\n-----END CERTIFICATE REQUEST-----\n")
PY
unchanged 1 "signature does not verify" "$KW" --dir "$P" ca sign "$T/badsig.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/f.key" -subj "/CN=sneaky/O=Example" -addext "basicConstraints=critical,CA:TRUE" \
    -out "$T/ca-true.csr" 2>/dev/null
unchanged 1 "CA:TRUE" "$KW" --dir "$P" ca sign "$T/ca-true.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -key "$T/f.key" -subj "/CN=outsider/O=Other" \
    -out "$T/other-o.csr" 2>/dev/null
unchanged 1 "refused|policy" "$KW" --dir "$P" ca sign "$T/other-o.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -key "$T/f.key" -subj "/O=Example" -out "$T/nocn.csr" 2>/dev/null
unchanged 1 "no CN" "$KW" --dir "$P" ca sign "$T/nocn.csr" --profile client
unchanged 1 "subjectAltName" "$KW" --dir "$P" ca sign "$T/good.csr" --profile server
unchanged 2 "unknown profile" "$KW" --dir "$P" ca sign "$T/good.csr" --profile admin
unchanged 2 "device-id" "$KW" --dir "$P" ca sign "$T/good.csr" --profile device
unchanged 1 "No such file" "$KW" --dir "$P" ca sign "$T/missing.csr" --profile client
ok "bad CSRs refused, nothing changed"

# names, SANs, device IDs, days, reasons, dates
unchanged 2 "must not start" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name ../evil
unchanged 2 "name may contain only" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name a/../../evil
unchanged 2 "name may contain only" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name 'a b'
unchanged 2 "name may contain only" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --name 'x;rm -rf'
unchanged 2 "DNS SAN" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --san 'DNS:bad_host!'
unchanged 2 "not allowed" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --san 'DNS:a.com,URI:x:$(id)'
unchanged 2 "IP SAN" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --san 'IP:300.1.1.1'
unchanged 2 "device ID" "$KW" --dir "$P" ca sign "$T/good.csr" --profile device --device-id 'a/b'
unchanged 2 "days" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --days 0
unchanged 2 "days" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --days 12x
unchanged 2 "unknown option" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client --frobnicate
expect_rc 0 "$KW" --dir "$P" ca sign "$T/good.csr" --profile client
unchanged 1 "already has a valid certificate" "$KW" --dir "$P" ca sign "$T/good.csr" --profile client
unchanged 2 "unknown reason" "$KW" --dir "$P" ca revoke good --reason because
unchanged 2 "date" "$KW" --dir "$P" ca revoke good --date 2026-02-30
unchanged 2 "future" "$KW" --dir "$P" ca revoke good --date 2099-01-01
unchanged 1 "no certificate named" "$KW" --dir "$P" ca revoke nobody
unchanged 1 "hold" "$KW" --dir "$P" ca revoke good --reason removeFromCRL
unchanged 1 "no certificate named" "$KW" --dir "$P" ca renew nobody
ok "bad names, SANs, device IDs, days, reasons, dates refused"

# DNs with odd characters: handled exactly or refused
expect_rc 0 "$KW" req --key "$(cl odd)" --subject '/CN=o\/dd "quoted" = ünïcødé, x/O=Example' --out "$T/odd.csr"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/odd.csr" --profile client --name odd
openssl x509 -in "$P/issued/odd.crt" -noout -subject -nameopt utf8,sep_multiline | grep -qx ' *CN=o/dd "quoted" = ünïcødé, x' ||
    { openssl x509 -in "$P/issued/odd.crt" -noout -subject -nameopt utf8,sep_multiline; fail "odd CN not kept exactly"; }
expect_rc 2 "$KW" req --key "$(cl nl)" --subject "$(printf 'CN=a\nb')" --out "$T/nl.csr"
grep -q "control character" "$T/err" || fail "newline in DN not refused clearly"
expect_rc 2 "$KW" req --key "$(cl x)" --subject "CN=a,BOGUS=b" --out "$T/x.csr"
expect_rc 2 "$KW" req --key "$(cl x)" --subject "CN=" --out "$T/x.csr"
ok "odd DNs handled or refused"

# PINs never on a command line
expect_rc 2 "$KW" req --key "pkcs11:token=client;object=p;pin-value=33334444" --subject CN=p --out "$T/p.csr"
grep -q "pin-value" "$T/err" || fail "pin-value not refused"
expect_rc 2 "$KW" --dir "$T/pki2" ca init --key "pkcs11:token=ca;object=k" --subject CN=x --pin-source 11112222
[ -e "$T/pki2" ] && fail "refused init created a directory"
chmod 644 "$T/ca.pin"
expect_rc 2 "$KW" --dir "$T/pki2" ca init --key "pkcs11:token=ca;object=k" --subject CN=x --pin-source "file:$T/ca.pin"
chmod 600 "$T/ca.pin"
ok "PINs only from files with safe modes"

# missing CA, wrong token, expired CA
expect_rc 1 "$KW" --dir "$T/nothere" ca sign "$T/good.csr" --profile client
grep -q "no CA directory" "$T/err" || fail "missing CA not reported"
expect_rc 1 "$KW" --dir "$T/nothere" ca list
expect_rc 2 "$KW" --dir "$P" ca
expect_rc 2 "$KW" --dir "$P" frobnicate
# wrong token: the CA key URI names a token that is not there
cp -a "$P" "$T/wrong"
sed -i 's/^ca_key = .*/ca_key = pkcs11:token=nosuchtoken;object=ca-key/' "$T/wrong/keyward.conf"
# a writer regenerates openssl.cnf for the moved directory first (revoking nobody fails early)
expect_rc 1 "$KW" --dir "$T/wrong" ca revoke nobody
before=$(tree_sum "$T/wrong")
expect_rc 0 "$KW" req --key "$(cl w)" --subject "CN=w,O=Example" --out "$T/w.csr"
expect_rc 1 "$KW" --dir "$T/wrong" ca sign "$T/w.csr" --profile client
[ "$(tree_sum "$T/wrong")" = "$before" ] || fail "failed sign on a wrong token changed the CA"
expect_rc 1 "$KW" --dir "$T/wrong" check
grep -q "^FAIL ca-key" "$T/out" || fail "check does not report the wrong token"
# a different token holding a different key with the same label: check says it does not match
sed -i 's/^ca_key = .*/ca_key = pkcs11:token=other;object=ca-key/' "$T/wrong/keyward.conf"
OPENSSL_CONF=$T/wrong/openssl.cnf openssl genpkey -propquery '?provider=keyward' -algorithm EC \
    -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt "keyward_uri:pkcs11:token=other;object=ca-key;pin-source=file:$T/other.pin" \
    -out /dev/null 2>/dev/null || fail "cannot make the other token's key"
printf '%s' 55556666 > "$T/ca.pin.other"
sed -i "s|^ca_key = .*|ca_key = pkcs11:token=other;object=ca-key;pin-source=file:$T/other.pin|" "$T/wrong/keyward.conf"
expect_rc 1 "$KW" --dir "$T/wrong" check
grep -q "does not match ca.crt" "$T/out" || { cat "$T/out"; fail "check does not detect the wrong key"; }
# expired CA: a CA directory whose ca.crt has expired refuses to sign
mkdir -p "$T/exp"
expect_rc 0 "$KW" --dir "$T/exp/pki" ca init --key "pkcs11:token=ca;object=exp-key" \
    --subject "CN=Old CA,O=Example" --pin-source "file:$T/ca.pin" --days 1
# an expired self-signed CA certificate for the same key: openssl ca -selfsign can backdate
OPENSSL_CONF=$T/exp/pki/openssl.cnf openssl req -new -key "pkcs11:token=ca;object=exp-key" \
    -subj "/CN=Old CA/O=Example" -out "$T/exp.csr" 2>/dev/null || fail "exp CSR"
OPENSSL_CONF=$T/exp/pki/openssl.cnf openssl ca -batch -selfsign -in "$T/exp.csr" \
    -keyfile "pkcs11:token=ca;object=exp-key" -startdate 20200101000000Z -enddate 20200102000000Z \
    -extensions ext_ca -notext -out "$T/expired.crt" 2>/dev/null || fail "cannot make an expired CA cert"
openssl x509 -in "$T/expired.crt" -noout -checkend 0 >/dev/null 2>&1 && fail "test CA cert is not expired"
cp "$T/expired.crt" "$T/exp/pki/ca.crt"
before=$(tree_sum "$T/exp/pki")
expect_rc 1 "$KW" --dir "$T/exp/pki" ca sign "$T/w.csr" --profile client
grep -q "expired" "$T/err" || fail "expired CA not reported"
[ "$(tree_sum "$T/exp/pki")" = "$before" ] || fail "expired CA changed"
expect_rc 1 "$KW" --dir "$T/exp/pki" check
grep -q "^FAIL ca-cert.*expired" "$T/out" || fail "check does not report the expired CA"
ok "missing CA, wrong token, wrong key, expired CA"
# keyward.conf: a bad value, an unknown or repeated key, a line without '=', NUL, control bytes,
# a very long line: refused by readers and writers with PATH:LINE, nothing changed
cp "$P/keyward.conf" "$T/conf.saved"
# badconf 'PYTHON EXPRESSION OF THE NEW FILE (c: the saved text)' LINE MESSAGE-REGEX
badconf() {
    python3 -c "import sys; c = open(sys.argv[1], 'rb').read(); open(sys.argv[2], 'wb').write($1)" \
        "$T/conf.saved" "$P/keyward.conf"
    for cmd in "ca list" "ca revoke odd"; do
        # shellcheck disable=SC2086
        unchanged 1 "^keyward: .*/keyward.conf:$2: $3" "$KW" --dir "$P" $cmd
    done
    cp "$T/conf.saved" "$P/keyward.conf"
}
cline() { grep -n "^$1 = " "$T/conf.saved" | cut -d: -f1; }
dd=$(cline default_days)
badconf "c.replace(b'default_days = 365', b'default_days = 3x')" "$dd" "default_days = 3x: not a whole number \(give"
badconf "c.replace(b'default_days = 365', b'default_days = -5')" "$dd" "default_days = -5: negative"
badconf "c.replace(b'default_days = 365', b'default_days = 99999999999')" "$dd" "default_days = 99999999999: out of range \(give .*, 1 to 36500\)"
badconf "c.replace(b'crl_days = 30', b'crl_days = 0')" "$(cline crl_days)" "crl_days = 0: out of range"
badconf "c.replace(b'renew_due_days = 30', b'renew_due_days = ')" "$(cline renew_due_days)" "renew_due_days = : empty"
badconf "c.replace(b'generation = 1', b'generation = 1.0')" "$(cline generation)" "generation = 1.0: not a whole number"
badconf "c + b'default_days = 30\n'" "$(($(wc -l < "$T/conf.saved") + 1))" "default_days is set again, first on line $dd \(keep one"
badconf "c + b'default_dayz = 30\n'" "$(($(wc -l < "$T/conf.saved") + 1))" "unknown key \"default_dayz\""
badconf "c + b'crl_days 7\n'" "$(($(wc -l < "$T/conf.saved") + 1))" "no '=' in \"crl_days 7\""
badconf "c.replace(b'default_days = 365', b'default_days = 3\x00\x36\x35')" "$dd" "NUL byte in the line"
badconf "c.replace(b'default_days = 365', b'default_days = 365\x1b[2J')" "$dd" "control character 0x1b"
badconf "c + b'old_keys = ' + b'x' * 100000 + b'\n'" "$(($(wc -l < "$T/conf.saved") + 1))" "line of 100011 bytes, longer than 16384"
# CRLF line ends (a file edited on Windows) are read as LF
python3 -c "import sys; open(sys.argv[2], 'wb').write(open(sys.argv[1], 'rb').read().replace(b'\n', b'\r\n'))" \
    "$T/conf.saved" "$P/keyward.conf"
expect_rc 0 "$KW" --dir "$P" ca list
grep -q "good" "$T/out" || fail "ca list with a CRLF keyward.conf"
cp "$T/conf.saved" "$P/keyward.conf"
ok "bad keyward.conf values, keys and lines refused with PATH:LINE; CRLF read"

# index.txt: what openssl ca wrote is read and written back byte for byte (TXT_DB both ways);
# a damaged row is refused with PATH:LINE, nothing changed
ix=$P/state/index.txt
oserial=$(openssl x509 -in "$P/issued/odd.crt" -noout -serial | cut -d= -f2)
OPENSSL_CONF=$P/openssl.cnf openssl ca -batch -revoke "$P/issued/odd.crt" \
    -crl_hold holdInstructionNone -keyfile "pkcs11:token=ca;object=ca-key" 2>"$T/ossl.err" ||
    { cat "$T/ossl.err"; fail "openssl ca -revoke -crl_hold"; }
grep -q "^R.*holdInstruction.*$oserial" "$ix" || { cat "$ix"; fail "openssl ca did not hold odd"; }
# the same file with odd's row lifted (V, no revocation date): what keyward must write
awk -F'\t' -v OFS='\t' -v s="$oserial" '$4 == s { $1 = "V"; $3 = "" } 1' "$ix" > "$T/ix.want"
cp "$ix" "$T/ix.openssl"
expect_rc 0 "$KW" --dir "$P" ca revoke odd --reason removeFromCRL
cmp "$ix" "$T/ix.want" || { diff "$T/ix.want" "$ix"; fail "index not written back byte for byte"; }
cp "$ix" "$T/ix.good"
nl=$(($(wc -l < "$ix") + 1))
printf 'V\t271122222940Z\t\t0A\tbroken\n' >> "$ix"
unchanged 1 "index.txt:$nl: row has 5 tab-separated fields where openssl ca's index has 6: status" "$KW" --dir "$P" ca list
unchanged 1 "index.txt:$nl: row has 5 tab-separated fields" "$KW" --dir "$P" ca revoke good
cp "$T/ix.good" "$ix"
printf 'V\t271122222940Z\t\t0A\tcut\t/CN=cut' >> "$ix"
unchanged 1 "index.txt:$nl: the last line has no newline" "$KW" --dir "$P" ca list
cp "$T/ix.good" "$ix"
expect_rc 0 "$KW" --dir "$P" ca list
ok "index.txt written by openssl ca read and written back byte for byte; damaged rows refused with PATH:LINE"
grep -q '"outcome":"failed"' "$P/audit.log" || fail "failures are not in the audit log"
echo PASS
