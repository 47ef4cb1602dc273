#!/bin/bash
# EST (RFC 7030, issue 20): `keyward ca est` on 127.0.0.1 with its TLS key on the token, curl as
# the EST client (base64 PKCS#10 in, certs-only PKCS#7 out), and keyward's own `est enroll` /
# `est reenroll`. One-time secrets are consumed; hostile CSRs get 400 and nothing is issued; a
# 10 MB body gets 413 and a slow client does not hold up 50 parallel ones (racing enrolments on
# shared secrets issue exactly one certificate each); re-enrolment needs the current certificate
# in TLS and keeps the identity; a device's bootstrap certificate must carry the device ID its CSR
# asks for; a CSR's TLS channel binding must be its connection's; after ca rotate the running
# server serves a certificate of the new generation.
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
# csr_cb NAME CN VALUE: a CSR whose challengePassword (where RFC 7030 puts the TLS channel
# binding) is VALUE
csr_cb() {
    printf '[req]\nprompt = no\ndistinguished_name = dn\nattributes = at\n[dn]\nCN = %s\nO = Example\n[at]\nchallengePassword = %s\n' \
        "$2" "$3" > "$T/$1.cnf"
    OPENSSL_CONF=/dev/null openssl req -new -config "$T/$1.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -nodes -keyout "$T/$1.key" -outform DER -out "$T/$1.csr" 2>/dev/null || fail "csr $1"
    openssl base64 -in "$T/$1.csr" -out "$T/$1.b64"
}

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
label bound profile client auth basic require_channel_binding
bootstrap_ca $T/mfg.crt
rate_limit 2 3600
EOF
# under valgrind (the valgrindcli setup) or ASan a TLS handshake alone can take seconds: a longer
# deadline, and the slow client is only checked to end
SLOWMAX=20
if grep -q vgpreload /proc/$$/maps 2>/dev/null || [ -n "${KEYWARD_ASAN_PRELOAD:-}" ]; then
    echo "deadline 60" >> "$T/est.conf"
    SLOWMAX=100
fi

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

# a slow client (one byte every 2 s, started below) holds only its own connection: cut at the
# deadline
cat > "$T/slow.py" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                    server_hostname="localhost")
t = time.time()
try:
    for ch in b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n":
        s.send(bytes([ch]))
        time.sleep(2)
        if time.time() - t > 40:
            break
except OSError:
    pass
print(int(time.time() - t))
PY
# and a 10 MB body: 413, at once
head -c 10000000 /dev/zero > "$T/big"
(status 413 -u alice:alice-secret-1 -H "Content-Type: application/pkcs10" \
    --data-binary @"$T/big" "$URL/simpleenroll"; echo done > "$T/big.done") 2>"$T/big.err" &
BIG=$!

# ---- one-time secrets: from stdin or a 0600 file, never argv
printf 'alice-secret-1\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret alice
printf 'bob-secret-22\n' > "$T/bob.secret"
chmod 600 "$T/bob.secret"
expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret bob --secret-file "$T/bob.secret"
printf 'mallory-secret\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret mallory
chmod 644 "$T/bob.secret"
expect_rc 2 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret bob --secret-file "$T/bob.secret"
printf 'short\n' | expect_rc 2 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret eve
printf 'eve-secret-12\n' | expect_rc 2 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret 'eve
x'
grep -q "alice-secret\|bob-secret" "$P/est/secrets" && fail "a secret stored in clear"
[ "$(stat -c %a "$P/est/secrets")" = 600 ] || fail "secrets file not 0600"
ok "add-secret: stdin or a 0600 file; salted hashes in a 0600 file; a short secret or a bad user refused"

E=(-H "Content-Type: application/pkcs10" "$URL/simpleenroll")
csr alice alice
n0=$(issued)
status 401 --data-binary @"$T/alice.b64" "${E[@]}"
"${C[@]}" -o /dev/null -D "$T/hdr" --data-binary @"$T/alice.b64" "${E[@]}"
grep -qi '^WWW-Authenticate: Basic' "$T/hdr" || fail "401 without WWW-Authenticate"
status 401 -u alice:wrong-secret --data-binary @"$T/alice.b64" "${E[@]}"
status 200 -u alice:alice-secret-1 --data-binary @"$T/alice.b64" "${E[@]}"
p7certs "$T/alice.pem"
openssl verify -CAfile "$P/ca.crt" "$T/alice.pem" >/dev/null || fail "enrolled certificate does not verify"
openssl x509 -in "$T/alice.pem" -noout -subject | grep -q "CN *= *alice" || fail "enrolled subject"
[ "$(issued)" = $((n0 + 1)) ] || fail "one enrolment, not one certificate"
csr alice2 alice-two
status 401 -u alice:alice-secret-1 --data-binary @"$T/alice2.b64" "${E[@]}"
grep -q '"op":"est simpleenroll".*"client":"user:alice".*"status":200' "$P/audit.log" ||
    fail "enrolment not audited with client, label and status"
# 50 clients at once while the slow one still holds its connection: 40 fetch cacerts, 10 enrol
# with five one-time secrets, each secret sent by two clients at once (different keys). All are
# answered; each secret is used exactly once (one 200, one 401), and the CA issued exactly the
# five certificates that were answered 200.
for i in 1 2 3 4 5; do
    printf 'par-secret-%s\n' "$i" | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret par$i
    csr par$i-a par$i
    csr par$i-b par$i
done
n0=$(issued)
python3 "$T/slow.py" "$port" "$P/ca.crt" > "$T/slow.out" 2>/dev/null &
SLOW=$!
sleep 1
pids=""
for i in $(seq 40); do
    "${C[@]}" -o "$T/par$i.out" -w '%{http_code}' "$URL/cacerts" > "$T/par$i.code" 2>&1 &
    pids="$pids $!"
done
for i in 1 2 3 4 5; do
    for k in a b; do
        "${C[@]}" -o "$T/pe$i$k.out" -w '%{http_code}' -u par$i:par-secret-$i \
            --data-binary @"$T/par$i-$k.b64" "${E[@]}" > "$T/pe$i$k.code" 2>&1 &
        pids="$pids $!"
    done
done
wait $pids
for i in $(seq 40); do grep -qx 200 "$T/par$i.code" || { grep "keyward" "$T/est.log" | sort | uniq -c | tail -30; fail "parallel client $i: $(cat "$T/par$i.code")"; }; done
# per secret: one 200 and one 401 (the second request waits for the first on the secrets lock,
# then finds the secret used). SoftHSM2 (the test's token) rewrites its token file on each login,
# and a fresh `openssl ca` that reads it half-written now and then finds no CA token: that
# signing fails with 500 (audited, nothing issued, the secret kept), and then the other request
# may use the secret. Never two certificates for one secret, never an unanswered client.
ok200=0 raced=0 n500=0
for i in 1 2 3 4 5; do
    codes=$( (cat "$T/pe${i}a.code"; echo; cat "$T/pe${i}b.code"; echo) | sort | tr '\n' ' ')
    case $codes in
    "200 401 ") raced=$((raced + 1)) ;;
    "200 500 " | "500 500 ") ;;
    *) grep "keyward" "$T/est.log" | sort | uniq -c | tail; cat "$T/pe${i}a.out" "$T/pe${i}b.out"
       fail "secret par$i sent twice at once: HTTP $codes (want one 200 and one 401)" ;;
    esac
    ok200=$((ok200 + $(grep -c "^200 " <<<"$codes")))
    n500=$((n500 + $(grep -o "500" <<<"$codes" | wc -l)))
done
[ "$raced" -ge 1 ] || fail "no secret was both used once and refused once"
[ "$(grep -c '"client":"user:par[1-5]".*"status":500}},"outcome":"failed","error":"' "$P/audit.log")" = "$n500" ] ||
    fail "a 500 of the parallel enrolments is not in the audit log with its reason"
[ "$(issued)" = $((n0 + ok200)) ] || fail "50 parallel clients: $(( $(issued) - n0 )) certificates issued for $ok200 successful enrolments"
[ "$(awk -F'\t' '$1 == "V" && $6 ~ /CN *= *par[1-5]([,/]|$)/' "$P/state/index.txt" | wc -l)" = "$ok200" ] ||
    fail "50 parallel clients: the index does not hold exactly the certificates answered 200"
kill -0 "$SLOW" 2>/dev/null || fail "the slow client had already finished"
ok "enrol with a one-time secret: 200, verifies with openssl verify; the secret's second use 401; 50 parallel clients (10 racing enrolments on 5 secrets) served, exactly the $ok200 certificates answered 200 issued ($n500 token-busy 500s)"

# ---- hostile CSRs (the intake checks of ca sign): 400 with the reason, nothing issued, the
# secret not used up
der() { python3 -c '
import sys
def tlv(t, b):
    return bytes([t, len(b)]) + b
t, v = sys.argv[1].split("=", 1)
b = v.encode("latin-1").decode("unicode_escape").encode("latin-1")
print(tlv(0x30, tlv(int(t, 16), b[2:] if t == "a0" else b)).hex())' "$1"; }
csr nul nul "subjectAltName=DER:$(der '82=good.example.com\x00.evil.com')"
csr upn upn "subjectAltName=DER:$(der 'a0=0\x18\x06\x0a+\x06\x01\x04\x01\x827\x14\x02\x03\xa0\x0a\x0c\x08admin@ex')"
n0=$(issued)
status 400 -u mallory:mallory-secret --data-binary @"$T/nul.b64" "${E[@]}"
grep -q "NUL byte" "$T/body" || { cat "$T/body"; fail "400 without the reason (NUL)"; }
grep -q "$P/est" "$T/body" && fail "the reason names the CA's private file"
status 400 -u mallory:mallory-secret --data-binary @"$T/upn.b64" "${E[@]}"
grep -q "otherName" "$T/body" || { cat "$T/body"; fail "400 without the reason (UPN)"; }
echo 'not base64 at all!' > "$T/junk.b64"
status 400 -u mallory:mallory-secret --data-binary @"$T/junk.b64" "${E[@]}"
[ "$(issued)" = "$n0" ] || fail "a hostile CSR was issued"
# the per-client rate limit (2 an hour in est.conf): the third attempt gets 429
csr m3 mallory3
"${C[@]}" -o "$T/body" -D "$T/hdr" -w '%{http_code}' -u mallory:mallory-secret \
    --data-binary @"$T/m3.b64" "${E[@]}" > "$T/code"
grep -qx 429 "$T/code" && grep -qi '^Retry-After: [0-9]' "$T/hdr" || { cat "$T/code" "$T/hdr"; fail "rate limit: no 429 with Retry-After"; }
ok "hostile CSRs (NUL in a DNS name, UPN otherName, junk) 400 with the reason, nothing issued; rate limit 429 + Retry-After"

# ---- the TLS channel binding (RFC 7030 section 3.5) in the challengePassword: a value that is
# not this connection's is refused (403) under TLS 1.2 (tls-unique) and 1.3 (tls-exporter);
# nothing issued, the secret not used up. The tls-unique of another TLS 1.2 connection:
python3 - "$port" "$P/ca.crt" > "$T/other.cb" <<'PY' || fail "python: no tls-unique of a TLS 1.2 connection"
import base64, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                     server_hostname="localhost") as s:
    print(base64.b64encode(s.get_channel_binding("tls-unique")).decode())
PY
printf 'cb-secret-1234\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret cbuser
csr_cb cbother cbuser "$(cat "$T/other.cb")"
csr_cb cbrand cbuser "$(openssl rand -base64 32)"
n0=$(issued)
status 403 --tls-max 1.2 -u cbuser:cb-secret-1234 --data-binary @"$T/cbother.b64" "${E[@]}"
grep -q "channel binding" "$T/body" || { cat "$T/body"; fail "binding mismatch without the reason"; }
status 403 --tls-max 1.2 -u cbuser:cb-secret-1234 --data-binary @"$T/cbrand.b64" "${E[@]}"
status 403 --tlsv1.3 -u cbuser:cb-secret-1234 --data-binary @"$T/cbother.b64" "${E[@]}"
status 403 --tlsv1.3 -u cbuser:cb-secret-1234 --data-binary @"$T/cbrand.b64" "${E[@]}"
[ "$(issued)" = "$n0" ] || fail "a request with a wrong channel binding was issued"
grep -q '"client":"user:cbuser".*"status":403' "$P/audit.log" || fail "binding refusal not audited"
grep -q "not this TLS connection" "$P/audit.log" || fail "binding refusal without its reason in the audit log"
# a label with require_channel_binding refuses a request without one; the secret still works
csr cbnone cbuser
status 403 -u cbuser:cb-secret-1234 --data-binary @"$T/cbnone.b64" -H "Content-Type: application/pkcs10" "$URL/bound/simpleenroll"
grep -q "requires the TLS channel binding" "$T/body" || { cat "$T/body"; fail "require_channel_binding without the reason"; }
status 200 -u cbuser:cb-secret-1234 --data-binary @"$T/cbnone.b64" "${E[@]}"
grep -q '"client":"user:cbuser".*"channel_binding":"none","status":200' "$P/audit.log" || fail "enrolment without binding: audit"
# another implementation's tls-unique (Python's ssl, RFC 5929) for the request on its own TLS 1.2
# connection: accepted, also under require_channel_binding
PYC=""
for p in /usr/bin/python3 python3; do "$p" -c 'import cryptography.x509' 2>/dev/null && { PYC=$p; break; }; done
if [ -n "$PYC" ]; then
    printf 'cbpy-secret-123\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret cbpy
    "$PYC" - "$port" "$P/ca.crt" > "$T/cbpy.out" 2>&1 <<'PY' || { cat "$T/cbpy.out"; fail "python EST client with tls-unique"; }
import base64, socket, ssl, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
cb = base64.b64encode(s.get_channel_binding("tls-unique"))
key = ec.generate_private_key(ec.SECP256R1())
csr = (x509.CertificateSigningRequestBuilder()
       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cbpy"),
                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]))
       .add_attribute(AttributeOID.CHALLENGE_PASSWORD, cb)
       .sign(key, hashes.SHA256()))
body = base64.b64encode(csr.public_bytes(serialization.Encoding.DER))
auth = base64.b64encode(b"cbpy:cbpy-secret-123").decode()
s.sendall(b"POST /.well-known/est/bound/simpleenroll HTTP/1.1\r\nHost: localhost\r\n"
          b"Content-Type: application/pkcs10\r\nAuthorization: Basic " + auth.encode() +
          b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
resp = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    resp += d
print(resp.split(b"\r\n", 1)[0].decode())
sys.exit(0 if b" 200 " in resp.split(b"\r\n", 1)[0] else 1)
PY
    grep '"client":"user:cbpy"' "$P/audit.log" | grep -q '"channel_binding":"tls-unique","status":200' ||
        fail "python's tls-unique: not audited as a matching binding"
    ok "channel binding: Python's tls-unique (TLS 1.2) on the request's own connection accepted under require_channel_binding"
else
    echo "SKIP: python3 without cryptography: no independent tls-unique client"
fi
ok "channel binding: another connection's tls-unique and random bytes 403 under TLS 1.2 and 1.3 (audited, nothing issued); require_channel_binding refuses a request without one"

# ---- re-enrolment: the current certificate in TLS, same identity, a new key
csr alice-new alice
status 401 --data-binary @"$T/alice-new.b64" -H "Content-Type: application/pkcs10" "$URL/simplereenroll"
old_serial=$(openssl x509 -in "$T/alice.pem" -noout -serial | cut -d= -f2)
R=(-H "Content-Type: application/pkcs10" "$URL/simplereenroll")
# bob's certificate cannot re-enrol alice
csr bob bob
status 200 -u bob:bob-secret-22 --data-binary @"$T/bob.b64" "${E[@]}"
p7certs "$T/bob.pem"
status 403 --cert "$T/bob.pem" --key "$T/bob.key" --data-binary @"$T/alice-new.b64" "${R[@]}"
grep -q "another identity" "$T/body" || { cat "$T/body"; fail "403 without the reason"; }
# a certificate of another CA (the bootstrap one) is not this CA's
status 403 --cert "$T/boot-SN-100.crt" --key "$T/boot-SN-100.key" --data-binary @"$T/alice-new.b64" "${R[@]}"
n0=$(issued)
status 200 --cert "$T/alice.pem" --key "$T/alice.key" --data-binary @"$T/alice-new.b64" "${R[@]}"
p7certs "$T/alice-new.pem"
new_serial=$(openssl x509 -in "$T/alice-new.pem" -noout -serial | cut -d= -f2)
[ "$new_serial" != "$old_serial" ] || fail "re-enrolment kept the serial"
[ "$(openssl x509 -in "$T/alice-new.pem" -noout -subject)" = "$(openssl x509 -in "$T/alice.pem" -noout -subject)" ] ||
    fail "re-enrolment changed the subject"
openssl verify -CAfile "$P/ca.crt" "$T/alice-new.pem" >/dev/null || fail "re-enrolled certificate does not verify"
awk -F'\t' -v s="$old_serial" '$4 == s && $1 == "R" && $3 ~ /superseded/' "$P/state/index.txt" | grep -q . ||
    fail "the old certificate is not revoked as superseded"
[ "$(issued)" = "$n0" ] || fail "re-enrolment changed the number of valid certificates"
# the superseded certificate cannot re-enrol again
status 403 --cert "$T/alice.pem" --key "$T/alice.key" --data-binary @"$T/alice-new.b64" "${R[@]}"
ok "re-enrolment with the current certificate: new serial, same subject, old one superseded; another client's, a foreign and a superseded certificate 403"

# ---- a device by its bootstrap (manufacturer) certificate: the device ID must match
D=(-H "Content-Type: application/pkcs10" "$URL/device/simpleenroll")
csr dev100 dev100 "subjectAltName=otherName:$DEVOID;UTF8:SN-100"
status 401 --data-binary @"$T/dev100.b64" "${D[@]}"
status 403 --cert "$T/boot-SN-200.crt" --key "$T/boot-SN-200.key" --data-binary @"$T/dev100.b64" "${D[@]}"
grep -q "SN-200, not SN-100" "$T/body" || { cat "$T/body"; fail "device mismatch without the reason"; }
status 200 --cert "$T/boot-SN-100.crt" --key "$T/boot-SN-100.key" --data-binary @"$T/dev100.b64" "${D[@]}"
p7certs "$T/dev100.pem"
openssl x509 -in "$T/dev100.pem" -noout -ext subjectAltName | grep -q "SN-100" || fail "device ID not in the certificate"
openssl verify -CAfile "$P/ca.crt" "$T/dev100.pem" >/dev/null || fail "device certificate does not verify"
# a client certificate from this CA is no bootstrap certificate
csr dev200 dev200 "subjectAltName=otherName:$DEVOID;UTF8:SN-200"
status 403 --cert "$T/bob.pem" --key "$T/bob.key" --data-binary @"$T/dev200.b64" "${D[@]}"
status 200 "$URL/device/csrattrs"
openssl base64 -d -in "$T/body" | openssl asn1parse -inform DER | grep -q "$DEVOID" || fail "csrattrs lacks the device OID"
status 404 "$URL/nolabel/simpleenroll"
status 501 "$URL/serverkeygen"
ok "device enrolment by bootstrap certificate: matching ID 200, another ID 403; csrattrs names the device OID; serverkeygen 501"

# ---- the 10 MB body and the slow client, sent at the start
wait "$BIG"
[ -f "$T/big.done" ] || { cat "$T/big.err"; fail "10 MB body: no 413"; }
wait "$SLOW"
s=$(cat "$T/slow.out")
[ -n "$s" ] && [ "$s" -lt "$SLOWMAX" ] || fail "the slow client was not cut at the deadline ($s s)"
ok "a 10 MB body 413 and a slow client cut after ${s}s, while the others were served"

# ---- after a rotation: cacerts serves both generations and the links; enrolment issues from
# the new generation; the running server (not restarted) takes a TLS certificate from the new
# generation at its next connection, and sends the NewWithOld link with it, so that clients
# that trust only generation 1 still reach it
cp "$P/ca.crt" "$T/gen1.crt"
srv0=$(openssl x509 -in "$P/issued/est-server.crt" -noout -serial)
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=ca-key2"
status 200 --cacert "$T/gen1.crt" "$URL/cacerts"
# a client that trusts only the new generation: the served certificate chains to it
status 200 --cacert "$P/ca.crt" "$URL/cacerts"
openssl s_client -connect "127.0.0.1:$port" -servername localhost -showcerts </dev/null 2>/dev/null |
    sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' > "$T/served.pem"
openssl x509 -in "$T/served.pem" -out "$T/served-leaf.pem" 2>/dev/null || fail "s_client got no server certificate"
openssl verify -CAfile "$P/ca.crt" "$T/served-leaf.pem" >/dev/null || fail "after rotation: the served TLS certificate is not from the new generation"
openssl verify -CAfile "$T/gen1.crt" "$T/served-leaf.pem" >/dev/null 2>&1 && fail "after rotation: the served TLS certificate is from generation 1"
grep -q "TLS certificate reloaded (CA generation 2)" "$T/est.log" || { cat "$T/est.log"; fail "the EST server did not reload its certificate after ca rotate"; }
[ "$(openssl x509 -in "$P/issued/est-server.crt" -noout -serial)" != "$srv0" ] || fail "no new est-server certificate after ca rotate"
p7certs "$T/cacerts2.pem"
[ "$(grep -c "BEGIN CERTIFICATE" "$T/cacerts2.pem")" -ge 3 ] || fail "cacerts after a rotation: not both generations and a link"
ls "$P"/ca/cross-2.crt "$P"/ca/oldwithnew-2.crt >/dev/null 2>&1 || fail "no link certificates after ca rotate"
python3 - "$T/cacerts2.pem" "$T/gen1.crt" "$P/ca.crt" "$P"/ca/cross-2.crt "$P"/ca/oldwithnew-2.crt <<'PY' || fail "cacerts after a rotation lacks a generation or link certificate"
import re, ssl, sys
def ders(path):
    return {ssl.PEM_cert_to_DER_cert(m) for m in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", open(path).read(), re.S)}
have = ders(sys.argv[1])
for f in sys.argv[2:]:
    assert ders(f) <= have, f
PY
printf 'carol-secret-3\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret carol
csr carol carol
status 200 --cacert "$T/cacerts2.pem" -u carol:carol-secret-3 --data-binary @"$T/carol.b64" "${E[@]}"
p7certs "$T/carol.pem"
openssl verify -CAfile "$P/ca.crt" "$T/carol.pem" >/dev/null || fail "after rotation: not issued by the new generation"
openssl verify -CAfile "$T/gen1.crt" "$T/carol.pem" >/dev/null 2>&1 && fail "after rotation: issued by the old generation"
ok "after ca rotate: the running server serves a TLS certificate of the new generation (and the link for generation-1 clients); cacerts has every generation and link certificate; enrolment issues from the new one"

# ---- keyward's own client: the key made on the client's token, TLS in-process
make_token cli 33334444
printf 'dave-secret-44\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret dave
printf 'dave-secret-44\n' > "$T/dave.pw"
chmod 600 "$T/dave.pw"
K1="pkcs11:token=cli;object=dave-1"
CL=(--cacert "$T/cacerts2.pem" --pin-source "file:$T/cli.pin")
ln -s "$T/elsewhere" "$T/link.crt"
expect_rc 2 "$KW" est enroll "https://localhost:$port" --key "$K1" --subject "CN=dave,O=Example" \
    --user dave --password-file "$T/dave.pw" "${CL[@]}" --out "$T/link.crt"
[ -e "$T/elsewhere" ] && fail "est enroll wrote through a symbolic link"
chmod 644 "$T/dave.pw"
expect_rc 2 "$KW" est enroll "https://localhost:$port" --key "$K1" --subject "CN=dave,O=Example" \
    --user dave --password-file "$T/dave.pw" "${CL[@]}" --out "$T/dave.crt"
chmod 600 "$T/dave.pw"
expect_rc 1 "$KW" est enroll "https://localhost:$port" --key "$K1" --subject "CN=dave,O=Example" \
    --user dave --password-file "$T/alice.key" "${CL[@]}" --out "$T/dave.crt" 2>/dev/null
grep -q "answered 401" "$T/err" || { cat "$T/err"; fail "est enroll with a wrong secret: no 401"; }
expect_rc 0 "$KW" est enroll "https://localhost:$port" --key "$K1" --subject "CN=dave,O=Example" \
    --user dave --password-file "$T/dave.pw" "${CL[@]}" --out "$T/dave.crt"
openssl verify -CAfile "$P/ca.crt" "$T/dave.crt" >/dev/null || fail "est enroll: certificate does not verify"
grep '"op":"est simpleenroll"' "$P/audit.log" | grep -q '"client":"user:dave".*"channel_binding":"tls-exporter","status":200' ||
    fail "est enroll (TLS 1.3): no matching tls-exporter channel binding"
s1=$(openssl x509 -in "$T/dave.crt" -noout -serial)
# re-enrol: TLS client authentication with the current certificate and its key on the token,
# a new key for the new certificate
expect_rc 0 "$KW" est reenroll "https://localhost:$port/.well-known/est" --key "$K1" --tls-max 1.2 \
    --new-key "pkcs11:token=cli;object=dave-2" --cert "$T/dave.crt" "${CL[@]}" --out "$T/dave.crt"
grep '"op":"est simplereenroll"' "$P/audit.log" | grep -q '"client":"cert:.*dave.*"channel_binding":"tls-unique","status":200' ||
    fail "est reenroll --tls-max 1.2: no matching tls-unique channel binding"
s2=$(openssl x509 -in "$T/dave.crt" -noout -serial)
[ "$s1" != "$s2" ] || fail "est reenroll: same serial"
openssl x509 -in "$T/dave.crt" -noout -subject | grep -q "CN *= *dave" || fail "est reenroll: subject"
awk -F'\t' -v s="${s1#serial=}" '$4 == s && $1 == "R"' "$P/state/index.txt" | grep -q . ||
    fail "est reenroll: the old certificate is not superseded"
# --due (as a daily timer runs it): while the certificate has more than DAYS (default 30) left,
# nothing happens and the server is not asked; twice in a row the same
n_re=$(grep -c '"op":"est simplereenroll"' "$P/audit.log")
for _ in 1 2; do
    expect_rc 0 "$KW" est reenroll "https://localhost:$port" --due --key "pkcs11:token=cli;object=dave-2" \
        --cert "$T/dave.crt" "${CL[@]}" --out "$T/dave.crt"
    grep -q "^not due: .*dave.crt" "$T/out" || { cat "$T/out"; fail "est reenroll --due: no 'not due'"; }
done
[ "$(openssl x509 -in "$T/dave.crt" -noout -serial)" = "$s2" ] || fail "est reenroll --due re-enrolled a certificate that is not due"
[ "$(grep -c '"op":"est simplereenroll"' "$P/audit.log")" = "$n_re" ] || fail "est reenroll --due asked the server although nothing was due"
# the example unit keyward-est-reenroll@.service: its ExecStart, with the variables of its
# environment file (${VAR} is one word) and this build's keyward, run twice: not due, nothing done
UNIT=$KEYWARD_BUILD/conf/keyward-est-reenroll@.service
[ -f "$UNIT" ] || fail "meson did not configure $UNIT"
python3 - "$UNIT" "$KW" "EST_URL=https://localhost:$port" "EST_KEY=pkcs11:token=cli;object=dave-2" \
    "EST_CERT=$T/dave.crt" "EST_CACERT=$T/cacerts2.pem" "EST_PIN_SOURCE=file:$T/cli.pin" \
    > "$T/unit.argv" <<'PY' || fail "cannot read the ExecStart of $UNIT"
import re, sys
env = dict(a.split("=", 1) for a in sys.argv[3:])
line = [l for l in open(sys.argv[1]) if l.startswith("ExecStart=")][0][len("ExecStart="):].split()
argv = [re.sub(r"^\$\{(\w+)\}$", lambda m: env[m.group(1)], w) for w in line]
assert argv[0].endswith("/keyward") and all("$" not in w for w in argv), argv
argv[0] = sys.argv[2]
sys.stdout.write("\0".join(argv) + "\0")
PY
mapfile -d '' uargv < "$T/unit.argv"
for _ in 1 2; do
    expect_rc 0 "${uargv[@]}"
    grep -q "^not due: " "$T/out" || { cat "$T/out"; fail "keyward-est-reenroll@.service's ExecStart: not 'not due'"; }
done
[ "$(openssl x509 -in "$T/dave.crt" -noout -serial)" = "$s2" ] || fail "the unit's ExecStart re-enrolled a certificate that is not due"
expect_rc 2 "$KW" est enroll "https://localhost:$port" --due --key "$K1" --subject "CN=x" "${CL[@]}" --out "$T/x.crt"
expect_rc 2 "$KW" est reenroll "https://localhost:$port" --due=abc --key "$K1" --cert "$T/dave.crt" "${CL[@]}" --out "$T/x.crt"
ok "keyward est enroll (key on the client's token, one-time secret, tls-exporter binding) and est reenroll (TLS 1.2 with the token key, new key, tls-unique binding); est reenroll --due twice when not due (and the example unit's ExecStart): nothing; --out symlink and a loose password file refused"

# ---- the issued certificates serve an mTLS handshake with nginx: its server certificate
# enrolled over EST (label web, server profile), the client one is dave's, key on the token
if command -v nginx >/dev/null; then
    sed -i '1a label web profile server auth basic' "$T/est.conf"
    printf 'web-secret-77\n' | expect_rc 0 "$KW" --dir "$P" ca est --config "$T/est.conf" --add-secret web
    csr web localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
    # the server reads its config at start: a second server for the new label
    port2=$(free_port)
    "$KW" --dir "$P" ca est --port "$port2" --config "$T/est.conf" > "$T/est2.log" 2>&1 &
    EST2=$!
    KWT_PIDS="$KWT_PIDS $EST2"
    for _ in $(seq 300); do grep -q listening "$T/est2.log" && break; sleep 0.1; done
    status 200 --cacert "$T/cacerts2.pem" -u web:web-secret-77 --data-binary @"$T/web.b64" \
        -H "Content-Type: application/pkcs10" "https://localhost:$port2/.well-known/est/web/simpleenroll"
    p7certs "$T/web.pem"
    d=$T/nginx
    NP=$(free_port)
    nginx_conf "$d" "$NP" "$T/web.pem" "$T/web.key" "$P/ca.crt"
    OPENSSL_CONF=/dev/null nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
        > "$d/logs/stdout" 2>&1 &
    NGX=$!
    KWT_PIDS="$KWT_PIDS $NGX"
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 --cacert "$P/ca.crt" "https://localhost:$NP/" && break
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --cacert "$P/ca.crt" "https://localhost:$NP/")" = 400 ] && break
        sleep 0.1
    done
    "$KW" uri2pem "pkcs11:token=cli;object=dave-2" --module "$SOFTHSM_MODULE" \
        --pin-source "file:$T/cli.pin" --out "$T/dave2.key" > /dev/null 2>&1 || fail "uri2pem"
    printf 'openssl_conf = openssl_init\n[openssl_init]\nproviders = ps\n[ps]\ndefault = ds\nkeyward = ks\n[ds]\nactivate = 1\n[ks]\nmodule = %s\nactivate = 1\nkeyward-module = %s\nkeyward-pin-source = file:%s\n' \
        "$KEYWARD_PROVIDER_PATH" "$SOFTHSM_MODULE" "$T/cli.pin" > "$T/client.cnf"
    # curl loads keyward.so: under the asan setup it needs the ASan runtime first
    OPENSSL_CONF=$T/client.cnf LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-}${LD_PRELOAD:+:$LD_PRELOAD} curl -sS --max-time 20 --cacert "$P/ca.crt" --cert "$T/dave.crt" \
        --key "$T/dave2.key" "https://localhost:$NP/" > "$T/ngx.out" 2>&1
    grep -q "verify=SUCCESS dn=.*CN=dave" "$T/ngx.out" || { cat "$T/ngx.out" "$d/logs/error.log"; fail "nginx mTLS with the EST certificates"; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$P/ca.crt" "https://localhost:$NP/")" = 400 ] ||
        fail "nginx accepted a client without certificate"
    kill "$NGX" "$EST2" 2>/dev/null
    ok "nginx serves mTLS with an EST-enrolled server certificate, to dave's EST certificate (key on the token)"
fi

# ---- --json: the envelope and docs/keyward-json.schema.json
if python3 -c 'import jsonschema' 2>/dev/null; then
    need_jsonschema
    printf 'erin-secret-55\n' > "$T/erin.pw"
    chmod 600 "$T/erin.pw"
    J 0 --dir "$P" ca est --config "$T/est.conf" --add-secret erin --secret-file "$T/erin.pw"
    # --due 400: a certificate of 365 days is due
    J 0 est reenroll "https://localhost:$port" --due 400 --key "pkcs11:token=cli;object=dave-2" \
        --cert "$T/dave.crt" "${CL[@]}" --out "$T/dave3.crt"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; assert r["operation"]=="simplereenroll" and r["cert"].endswith("dave3.crt") and r["due"] is True, r' "$T/out" ||
        fail "est reenroll --json result"
    J 0 est reenroll "https://localhost:$port" --due --key "pkcs11:token=cli;object=dave-2" \
        --cert "$T/dave3.crt" "${CL[@]}" --out "$T/dave3.crt"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; assert r["due"] is False and r["not_after"], r' "$T/out" ||
        fail "est reenroll --due --json when not due"
    J 1 est enroll "https://localhost:$port" --key "pkcs11:token=cli;object=erin" --subject "CN=erin,O=Example" \
        --user erin --password-file "$T/dave.pw" "${CL[@]}" --out "$T/erin.crt"
    J 2 est enroll "http://localhost:$port" --key "$K1" --subject "CN=x" "${CL[@]}" --out "$T/x.crt"
    check_json_docs 5
    ok "--json of ca est --add-secret, est enroll and est reenroll match the schema"
fi
