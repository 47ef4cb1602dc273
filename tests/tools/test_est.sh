#!/bin/bash
# EST (RFC 7030, issue 20): `keyward ca est` on 127.0.0.1 with its TLS key on the token, curl as
# the EST client (base64 PKCS#10 in, certs-only PKCS#7 out), and keyward's own `est enroll` /
# `est reenroll`. One-time secrets are consumed; hostile CSRs get 400 and nothing is issued; a
# 10 MB body gets 413 and a slow client does not hold up others; re-enrolment needs the current
# certificate in TLS and keeps the identity; a device's bootstrap certificate must carry the
# device ID its CSR asks for.
. "$(dirname "$0")/lib.sh"
need_softhsm
command -v curl >/dev/null || skip "curl not installed"
command -v python3 >/dev/null || skip "python3 missing"
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=EST CA,O=Example" --pin-source "file:$T/ca.pin"
csr() { # csr NAME CN [ADDEXT]: $T/NAME.csr (DER) and its key $T/NAME.key
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/$1.key" -subj "/CN=$2/O=Example" ${3:+-addext "$3"} -outform DER \
        -out "$T/$1.csr" 2>/dev/null || fail "csr $1"
    openssl base64 -in "$T/$1.csr" -out "$T/$1.b64"
}
issued() { awk -F'\t' '$1 == "V"' "$P/state/index.txt" | wc -l; }

# a bootstrap (manufacturer) CA and two device certificates from it, with device IDs
DEVOID=$(sed -n 's/^device_id_oid = //p' "$P/keyward.conf")
[ -n "$DEVOID" ] || fail "no device_oid in keyward.conf"
OPENSSL_CONF=/dev/null openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/mfg.key" -subj "/CN=Maker Device CA" -days 30 -out "$T/mfg.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign 2>/dev/null ||
    fail "bootstrap CA"
for d in SN-100 SN-200; do
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/boot-$d.key" -subj "/CN=boot $d" -out "$T/boot-$d.csr" 2>/dev/null
    printf 'subjectAltName=otherName:%s;UTF8:%s\n' "$DEVOID" "$d" > "$T/boot.ext"
    OPENSSL_CONF=/dev/null openssl x509 -req -in "$T/boot-$d.csr" -CA "$T/mfg.crt" \
        -CAkey "$T/mfg.key" -days 30 -extfile "$T/boot.ext" -out "$T/boot-$d.crt" 2>/dev/null ||
        fail "bootstrap certificate $d"
done
cat > "$T/est.conf" <<EOF
# labels: the default one (client profile) by one-time secret; devices by bootstrap certificate
label default profile client auth basic
label device profile device auth cert
label both profile client auth both
bootstrap_ca $T/mfg.crt
rate_limit 3 3600
EOF

port=$(free_port)
URL=https://localhost:$port/.well-known/est
EST_PID=""
start_server() {
    "$KW" -v --dir "$P" ca est --port "$port" --config "$T/est.conf" "$@" > "$T/est.log" 2>&1 &
    EST_PID=$!
    KWT_PIDS="$KWT_PIDS $EST_PID"
    for _ in $(seq 300); do
        grep -q listening "$T/est.log" && break
        kill -0 "$EST_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening on https://127.0.0.1:$port/" "$T/est.log" ||
        { cat "$T/est.log" >&2; fail "EST server did not start"; }
}
# the first start needs the server key's URI; it issues est-server from the CA
expect_rc 2 "$KW" --dir "$P" ca est --port "$port" --config "$T/est.conf"
grep -q -- "--key URI" "$T/err" || fail "first start without --key: no hint"
start_server --key "pkcs11:token=ca;object=est-key"
openssl x509 -in "$P/issued/est-server.crt" -noout -ext subjectAltName | grep -q "DNS:localhost" ||
    fail "est-server certificate lacks DNS:localhost"
C=(curl -sS --max-time 20 --cacert "$P/ca.crt")
# status CODE ARGS...: curl, require the HTTP status; the body in $T/body
status() {
    local want=$1
    shift
    local got
    got=$("${C[@]}" -o "$T/body" -w '%{http_code}' "$@") || true
    [ "$got" = "$want" ] || { cat "$T/body" >&2; tail -5 "$T/est.log" >&2; fail "expected HTTP $want, got $got: $*"; }
}
p7certs() { openssl base64 -d -in "$T/body" | openssl pkcs7 -inform DER -print_certs -out "$1" ||
    fail "not a certs-only PKCS#7"; }

# ---- cacerts: every generation
status 200 "$URL/cacerts"
p7certs "$T/cacerts.pem"
grep -c "BEGIN CERTIFICATE" "$T/cacerts.pem" | grep -qx 1 || fail "cacerts of a one-generation CA"
openssl x509 -in "$T/cacerts.pem" -noout -subject | grep -q "EST CA" || fail "cacerts: not the CA"
ok "TLS with the server key on the token; cacerts is a certs-only PKCS#7 of the CA"
