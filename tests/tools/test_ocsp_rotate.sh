#!/bin/bash
# OCSP across CA generations (issue 13): every live generation has its own responder certificate
# from its own key, so a stock `openssl ocsp -issuer ca/ca-K.crt -CAfile ca/ca-K.crt` verifies
# the answer for a certificate of generation K: good, revoked or unknown. A responder that runs
# through a rotation picks up the new generation; a request about another CA's certificate is
# refused (unauthorized), never answered good.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
OKEY="pkcs11:token=ca;object=ocsp-key"
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=gen1" \
    --subject "CN=Gen CA,O=Example" --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=$1/O=Example" -out "$T/$1.csr" 2>/dev/null || fail "csr $1"; }
for n in certa certb certc certd certe; do csr "$n"; done

port=$(free_port)
OCSP_PID=""
# start_responder [ARGS...]: keyward ca ocsp on 127.0.0.1:$port, stopped by lib.sh's cleanup
start_responder() {
    : > "$T/ocsp.log"
    "$KW" -v --dir "$P" ca ocsp --port "$port" "$@" > "$T/ocsp.log" 2>&1 &
    OCSP_PID=$!
    KWT_PIDS="$KWT_PIDS $OCSP_PID"
    for _ in $(seq 150); do
        grep -q listening "$T/ocsp.log" && break
        kill -0 "$OCSP_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening on http://127.0.0.1:$port" "$T/ocsp.log" ||
        { cat "$T/ocsp.log" >&2; fail "responder did not start"; }
}
# stop_responder: SIGTERM; it must exit 0 (under the valgrind setups: no memcheck errors)
stop_responder() {
    kill "$OCSP_PID" 2>/dev/null
    wait "$OCSP_PID" 2>/dev/null
    local rc=$?
    OCSP_PID=""
    [ "$rc" = 0 ] || { cat "$T/ocsp.log" >&2; fail "the responder exited $rc after SIGTERM"; }
}
# q GEN CERT: ask with a stock openssl client that trusts only generation GEN's root
q() {
    openssl ocsp -issuer "$P/ca/ca-$1.crt" -CAfile "$P/ca/ca-$1.crt" -cert "$2" \
        -url "http://127.0.0.1:$port/" -timeout 20 > "$T/q.out" 2>&1
}
# expect_status GEN NAME good|revoked|unknown
expect_status() {
    q "$1" "$P/issued/$2.crt"
    grep -q "^Response verify OK" "$T/q.out" ||
        { cat "$T/q.out" "$T/ocsp.log" >&2; fail "$2 (generation $1): response does not verify"; }
    grep -q "$2.crt: $3\$" "$T/q.out" ||
        { cat "$T/q.out" >&2; fail "$2 (generation $1): expected $3"; }
    [ "$3" != revoked ] || grep -q "Reason: keyCompromise" "$T/q.out" ||
        { cat "$T/q.out" >&2; fail "$2 (generation $1): no revocation reason"; }
}
valid_rows() { awk -F'\t' -v n="$1" '$1=="V" && $5==n' "$P/state/index.txt" | wc -l; }

# generation 1: A valid, B revoked (keyCompromise)
expect_rc 0 "$KW" --dir "$P" ca sign "$T/certa.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca sign "$T/certb.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca revoke certb --reason keyCompromise
start_responder --key "$OKEY"
grep -q "CA generation 1: responder issued/ocsp-responder.crt" "$T/ocsp.log" ||
    { cat "$T/ocsp.log" >&2; fail "startup does not name generation 1's responder"; }
openssl ocsp -issuer "$P/ca.crt" -CAfile "$P/ca.crt" -cert "$P/issued/certa.crt" \
    -url "http://127.0.0.1:$port/" > "$T/q.out" 2>&1
grep -q "certa.crt: good" "$T/q.out" && grep -q "^Response verify OK" "$T/q.out" ||
    { cat "$T/q.out" >&2; fail "generation 1 before any rotation: A is not good"; }
resp1=$(openssl x509 -in "$P/issued/ocsp-responder.crt" -noout -serial | cut -d= -f2)
ok "responder before rotation"

# generation 2, while the responder runs: C valid, D revoked
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen2"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/certc.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca sign "$T/certd.csr" --profile client
expect_rc 0 "$KW" --dir "$P" ca revoke certd --reason keyCompromise
[ -f "$P/ca/ca-1.crt" ] && [ -f "$P/ca/ca-2.crt" ] || fail "rotation left no ca/ca-1.crt, ca/ca-2.crt"
expect_status 2 certc good
expect_status 2 certd revoked
expect_status 1 certa good
expect_status 1 certb revoked
[ "$(openssl x509 -in "$P/issued/ocsp-responder-gen-1.crt" -noout -serial | cut -d= -f2)" = "$resp1" ] ||
    fail "generation 1's responder certificate was not kept as ocsp-responder-gen-1"
ok "a running responder answers for the new generation after a rotation, and still for the old"

# generation 3: E valid; a fresh start without --key reuses the responder key
stop_responder
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen3"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/certe.csr" --profile client
start_responder
for g in 1 2; do
    grep -q "CA generation $g: responder issued/ocsp-responder-gen-$g.crt" "$T/ocsp.log" ||
        { cat "$T/ocsp.log" >&2; fail "startup does not name generation $g's responder"; }
done
grep -q "CA generation 3: responder issued/ocsp-responder.crt" "$T/ocsp.log" ||
    { cat "$T/ocsp.log" >&2; fail "startup does not name generation 3's responder"; }
expect_status 1 certa good
expect_status 1 certb revoked
expect_status 2 certc good
expect_status 2 certd revoked
expect_status 3 certe good
ok "A, B, C, D, E: good, revoked, good, revoked, good, each verified against its own root"

# each responder certificate is issued by its generation's key, recorded under its own NAME
for g in 1 2 3; do
    n=ocsp-responder-gen-$g
    [ "$g" = 3 ] && n=ocsp-responder
    [ "$(valid_rows "$n")" = 1 ] || fail "$n: not exactly one valid index row"
    openssl verify -CAfile "$P/ca/ca-$g.crt" -purpose ocsphelper "$P/issued/$n.crt" >/dev/null 2>&1 ||
        fail "$n is not issued by generation $g"
    openssl x509 -in "$P/issued/$n.crt" -noout -ext extendedKeyUsage | grep -q "OCSP Signing" ||
        fail "$n lacks OCSPSigning"
done
spki() { openssl x509 -in "$1" -noout -pubkey | sha256sum; }
[ "$(spki "$P/issued/ocsp-responder-gen-1.crt")" = "$(spki "$P/issued/ocsp-responder.crt")" ] ||
    fail "the generations' responder certificates are for different keys"
ok "one responder key, a certificate per generation (ocsp-responder, ocsp-responder-gen-K)"

# unknown serial of a live generation
openssl ocsp -issuer "$P/ca/ca-2.crt" -CAfile "$P/ca/ca-2.crt" -serial 0x0123456789 \
    -url "http://127.0.0.1:$port/" > "$T/q.out" 2>&1
grep -q "^Response verify OK" "$T/q.out" && grep -q ": unknown" "$T/q.out" ||
    { cat "$T/q.out" >&2; fail "unknown serial of generation 2"; }
# generation 3 never issued A: asked with generation 3 as issuer, A's serial (in the shared
# index) is unknown, not good
q 3 "$P/issued/certa.crt"
grep -q "^Response verify OK" "$T/q.out" && grep -q "certa.crt: unknown" "$T/q.out" ||
    { cat "$T/q.out" "$T/ocsp.log" >&2; fail "a gen-1 certificate asked with generation 3 as issuer is not unknown"; }
ok "unknown serial; a certificate asked with the wrong generation is unknown"

# a certificate from a different CA (same subject, other key): unauthorized, never good
OPENSSL_CONF=/dev/null openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/other.key" -subj "/CN=Gen CA/O=Example" -days 30 -out "$T/other.crt" 2>/dev/null ||
    fail "other CA"
OPENSSL_CONF=/dev/null openssl x509 -req -in "$T/certa.csr" -CA "$T/other.crt" -CAkey "$T/other.key" \
    -set_serial "0x$(openssl x509 -in "$P/issued/certa.crt" -noout -serial | cut -d= -f2)" \
    -days 30 -out "$T/foreign.crt" 2>/dev/null || fail "foreign certificate"
openssl ocsp -issuer "$T/other.crt" -CAfile "$T/other.crt" -cert "$T/foreign.crt" \
    -url "http://127.0.0.1:$port/" > "$T/q.out" 2>&1
grep -q "foreign.crt: good" "$T/q.out" && { cat "$T/q.out" >&2; fail "a foreign certificate is good"; }
grep -qi "unauthorized" "$T/q.out" || { cat "$T/q.out" >&2; fail "a foreign certificate is not unauthorized"; }
# raw request check: the response status is unauthorized (6), over HTTP 200
openssl ocsp -issuer "$T/other.crt" -cert "$T/foreign.crt" -no_nonce -reqout "$T/foreign.req" >/dev/null 2>&1
python3 - "$port" "$T/foreign.req" <<'PY' || fail "unauthorized response not delivered over HTTP 200"
import sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/" % sys.argv[1], data=open(sys.argv[2], "rb").read(),
                             headers={"Content-Type": "application/ocsp-request"})
with urllib.request.urlopen(req, timeout=20) as r:
    body = r.read()
    assert r.status == 200, r.status
# OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } -> 30 03 0a 01 06
assert body == bytes.fromhex("3003" "0a0106"), body.hex()
PY
# garbage is malformedRequest (1), not a server error
python3 - "$port" <<'PY' || fail "garbage request not answered malformedRequest"
import sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/" % sys.argv[1], data=b"\x30\x03garbage",
                             headers={"Content-Type": "application/ocsp-request"})
with urllib.request.urlopen(req, timeout=20) as r:
    body = r.read()
assert body == bytes.fromhex("30030a0101"), body.hex()
PY
kill -0 "$OCSP_PID" 2>/dev/null || fail "responder died"
ok "a different CA's certificate: unauthorized; garbage: malformedRequest"

# a restart issues nothing new; a missing generation's responder is issued again
before=$(wc -l < "$P/state/index.txt")
stop_responder
start_responder
[ "$(wc -l < "$P/state/index.txt")" = "$before" ] || fail "a restart issued responder certificates again"
stop_responder
old2=$(openssl x509 -in "$P/issued/ocsp-responder-gen-2.crt" -noout -serial | cut -d= -f2)
expect_rc 0 "$KW" --dir "$P" ca revoke ocsp-responder-gen-2 --reason superseded
start_responder
new2=$(openssl x509 -in "$P/issued/ocsp-responder-gen-2.crt" -noout -serial | cut -d= -f2)
[ -n "$new2" ] && [ "$new2" != "$old2" ] || fail "a revoked generation-2 responder was not replaced"
expect_status 2 certc good
stop_responder
ok "restart reuses the responder certificates; a revoked one is replaced"
expect_rc 0 "$KW" --dir "$P" check
echo PASS
