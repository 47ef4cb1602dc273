#!/bin/bash
# keyward verify/help without any token: a CA made with plain openssl file keys (test only), a
# client, a device and a revoked certificate; checks chain, purpose, device ID, CRL, dates.
. "$(dirname "$0")/lib.sh"
export OPENSSL_CONF=/dev/null
cd "$T"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -subj "/CN=File CA" -days 30 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null || fail "ca"
leaf() { # NAME EXT DAYS
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -subj "/CN=$1" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
        -days "$3" -extfile "$1.ext" -out "$1.crt" 2>/dev/null || fail "leaf $1"
}
leaf client "extendedKeyUsage=clientAuth" 20
leaf server "extendedKeyUsage=serverAuth
subjectAltName=DNS:s.example" 20
# keyward's default device-ID OID (no CA directory: verify looks for that one)
DEVOID=2.25.208833640913812316218453327405385622517
leaf dev "extendedKeyUsage=clientAuth
subjectAltName=DNS:device-AB12,otherName:$DEVOID;UTF8:AB12" 20
# a client certificate that only claims the device's DNS name, and one with another otherName
leaf devdns "extendedKeyUsage=clientAuth
subjectAltName=DNS:device-AB12" 20
leaf devother "extendedKeyUsage=clientAuth
subjectAltName=DNS:device-AB12,otherName:1.2.3.4;UTF8:AB12" 20
leaf gone "extendedKeyUsage=clientAuth" 20
mkdir -p db && : > db/index.txt && echo 01 > db/crlnumber
cat > ca.cnf <<EOC
[ca]
default_ca = d
[d]
database = $T/db/index.txt
crlnumber = $T/db/crlnumber
default_md = sha256
default_crl_days = 5
EOC
openssl ca -config ca.cnf -cert ca.crt -keyfile ca.key -revoke gone.crt -crl_reason keyCompromise 2>/dev/null || fail "revoke"
openssl ca -config ca.cnf -cert ca.crt -keyfile ca.key -gencrl -out crl.pem 2>/dev/null || fail "crl"
V() { "$KW" --dir "$T/none" verify --ca ca.crt --crl crl.pem "$@"; }
expect_rc 0 V client.crt --purpose client
grep -q "^OK   chain" "$T/out" && grep -q "^OK   revocation" "$T/out" && grep -q "^PASS" "$T/out" || fail "client verify"
expect_rc 1 V client.crt --purpose server
expect_rc 0 V server.crt --purpose server
expect_rc 0 V dev.crt --purpose device --device-id AB12
expect_rc 1 V dev.crt --purpose device --device-id AB13
expect_rc 1 V devdns.crt --purpose device --device-id AB12
grep -q "^FAIL device-id" "$T/out" || fail "a DNS name alone passed as a device ID"
expect_rc 1 V devother.crt --purpose device --device-id AB12
grep -q "^FAIL device-id" "$T/out" || fail "an otherName under another OID passed as a device ID"
expect_rc 1 V gone.crt
grep -q "^FAIL revocation .*keyCompromise" "$T/out" || fail "revocation reason not shown"
expect_rc 0 V client.crt --warn-days 60
grep -q "^WARN expiry" "$T/out" || fail "no expiry warning"
expect_rc 0 "$KW" --dir "$T/none" --json verify --ca ca.crt --crl crl.pem client.crt
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["result"]; assert d["result"]=="PASS" and len(d["checks"])>=3' "$T/out" || fail "verify --json"
# a certificate from another CA
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o.key \
    -subj "/CN=Other" -days 5 -out other.crt 2>/dev/null
expect_rc 1 V other.crt
grep -q "^FAIL chain" "$T/out" || fail "foreign cert not refused by chain"
head -c 300 /dev/urandom > junk.crt
expect_rc 1 V junk.crt
expect_rc 2 V client.crt --purpose admin
expect_rc 2 "$KW" verify client.crt --ca ca.crt --device-id 'x/y'
expect_rc 2 "$KW" --dir "$T/none" verify client.crt
grep -q "no --ca" "$T/err" || fail "missing CA not explained"
ok "verify without tokens"
for c in "" "ca" "ca init" "ca sign" "ca renew" "ca revoke" "ca crl" "ca rotate" "ca ocsp" \
    "ca list" "ca export" "req" "verify" "check" "uri2pem"; do
    # shellcheck disable=SC2086
    expect_rc 0 "$KW" help $c
    grep -q "usage: keyward" "$T/out" || fail "no usage for '$c'"
done
expect_rc 0 "$KW" ca sign --help
expect_rc 0 "$KW" --help
expect_rc 2 "$KW"
expect_rc 2 "$KW" help frobnicate
ok "help for every command"
echo PASS
