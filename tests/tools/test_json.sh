#!/bin/bash
# --json: every subcommand, when it works and when it fails, prints exactly one document on
# stdout, and every document validates against docs/keyward-json.schema.json (the one envelope:
# ok, command, exit, result, error; RFC 4514 subjects; errors in JSON too).
. "$(dirname "$0")/lib.sh"
need_softhsm
need_jsonschema
make_token ca 11112222
make_token cl 22223333
P=$T/pki
J 0 --dir "$P" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=JSON CA,O=Ex" --pin-source "file:$T/ca.pin"
J 1 --dir "$P" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=JSON CA,O=Ex" --pin-source "file:$T/ca.pin"
J 2 --dir "$P" ca init --subject "CN=x"
J 0 req --key "pkcs11:token=cl;object=a" --subject "CN=alice,O=Ex" --pin-source "file:$T/cl.pin" \
    --module "$SOFTHSM_MODULE" --out "$T/alice.csr"
J 2 req --key "pkcs11:token=cl;object=a" --out "$T/x.csr"
J 0 --dir "$P" ca sign "$T/alice.csr" --profile client
# RFC 4514 as openssl's -nameopt RFC2253 prints it: most specific RDN first
RFC=$(openssl x509 -in "$P/issued/alice.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
[ "$RFC" = "CN=alice,O=Ex" ] || fail "openssl prints alice's subject as $RFC"
"$PY" -c 'import json, sys; s = json.load(open(sys.argv[1]))["result"]["issued"][0]["subject"]
assert s == "CN=alice,O=Ex", s' "$T/out" || fail "ca sign: subject not RFC 4514"
J 1 --dir "$P" ca sign "$T/alice.csr" --profile client
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj "/CN=upn/O=Ex" -addext "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:a@b" \
    -out "$T/upn.csr" 2>/dev/null
J 1 --dir "$P" ca sign "$T/upn.csr" --profile client
mkdir -p "$T/b"
for h in h1 h2; do
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/CN=$h/O=Ex" -addext "subjectAltName=DNS:$h.example" \
        -out "$T/b/$h.csr" 2>/dev/null
done
J 0 --dir "$P" ca sign --batch "$T/b" --profile server
J 0 --dir "$P" ca renew h1
J 1 --dir "$P" ca renew nobody
J 0 --dir "$P" ca revoke h2 --reason keyCompromise
grep '"op":"ca revoke keyCompromise"' "$P/audit.log" | grep -q '"subject":"CN=h2,O=Ex"' ||
    fail "audit.log: the revoked subject is not RFC 4514"
J 1 --dir "$P" ca revoke h2 --reason keyCompromise
J 2 --dir "$P" ca revoke h2 --reason bogus
J 0 --dir "$P" ca crl
J 0 --dir "$P" ca list
"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))["result"]["certificates"]
assert all(not c["subject"].startswith("/") for c in d), d
assert any(c["subject"] == "CN=alice,O=Ex" for c in d), d' "$T/out" || fail "ca list subjects are not RFC 4514"
J 0 --dir "$P" ca stats
J 0 --dir "$P" ca stats --help
J 0 --dir "$P" ca export alice --format pem-bundle --out "$T/alice.pem"
J 0 --dir "$P" ca export alice --package "$T/pkg"
J 2 --dir "$P" ca export alice --for gen-7 --format pem-bundle --out "$T/x.pem"
J 0 --dir "$P" verify "$P/issued/alice.crt"
grep -q '"CN=alice,O=Ex issued by CN=JSON CA,O=Ex' "$T/out" || fail "verify: subjects not RFC 4514"
J 1 --dir "$P" verify "$P/certs/$(awk -F'\t' '$1 == "R" && $5 == "h2" { print $4 }' "$P/state/index.txt").pem"
J 1 --dir "$P" verify "$T/missing.crt"
J 0 --dir "$P" check
J 0 --dir "$P" show "$P/issued/alice.crt"
J 0 --dir "$P" show "$T/alice.csr"
J 1 --dir "$P" show "$T/missing.crt"
J 0 uri2pem "pkcs11:token=cl;object=a" --module "$SOFTHSM_MODULE" --pin-source "file:$T/cl.pin" --out "$T/a.key"
J 0 --dir "$P" ca rotate --key "pkcs11:token=ca;object=ca2"
J 0 --dir "$P" ca list --generations
J 0 help ca sign
J 0 version
J 2 frobnicate
J 2
J 0 --help
J 0 ca sign --help
J 2 --dry-run --dir "$P" ca crl
# the OCSP responder: its result comes when it stops
port=$(free_port)
"$KW" --json --dir "$P" ca ocsp --port "$port" --key "pkcs11:token=ca;object=ocsp" --count 1 \
    >"$T/j/ocsp.json" 2>"$T/j/ocsp.err" &
KWT_PIDS="$KWT_PIDS $!"
ocsp_pid=$!
for _ in $(seq 150); do grep -q listening "$T/j/ocsp.err" && break; sleep 0.1; done
grep -q listening "$T/j/ocsp.err" || { cat "$T/j/ocsp.err"; fail "ca ocsp --json did not start"; }
openssl ocsp -issuer "$P/ca/ca-1.crt" -CAfile "$P/ca/ca-1.crt" -cert "$P/issued/alice.crt" \
    -url "http://127.0.0.1:$port/" >/dev/null 2>&1
wait "$ocsp_pid" || fail "ca ocsp --json exit"
echo "ca ocsp" >"$T/j/ocsp.cmd"
# the keyring token (when built in): import, list, remove in a fresh session keyring of its own
KMOD=$KEYWARD_BUILD/pkcs11/keyward-pkcs11.so
if "$KW" help keyring >/dev/null 2>&1 && [ -f "$KMOD" ] && command -v keyctl >/dev/null &&
    keyctl session - true >/dev/null 2>&1; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/kr.pem" 2>/dev/null
    echo "token kr session:kwt-json-$$" >"$T/kr.conf"
    KEYWARD_PKCS11_CONF=$T/kr.conf KEYWARD_PKCS11_MODULE=$KMOD keyctl session - bash -c '
        i=0
        for c in "keyring import $3 --label kj" "keyring list" "keyring remove kj"; do
            i=$((i + 1))
            # shellcheck disable=SC2086
            "$1" --json $c >"$2/kr$i.json" 2>>"$2/kr.err"
            echo $? >"$2/kr$i.rc"
            echo "$c" >"$2/kr$i.cmd"
        done' - "$KW" "$T/j" "$T/kr.pem" >/dev/null 2>&1
    [ "$(cat "$T/j/kr1.rc" "$T/j/kr2.rc" "$T/j/kr3.rc" 2>/dev/null)" = "$(printf '0\n0\n0')" ] ||
        { cat "$T/j"/kr*.json "$T/j/kr.err"; fail "keyring import/list/remove --json"; }
    "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["result"]
assert [o["label"] for o in r if o["object"] == "private"] == ["kj"], r' "$T/j/kr2.json" ||
        fail "keyring list --json does not list the imported key"
else
    echo "# keyring part skipped: keyring not built in, keyward-pkcs11.so missing, or no keyctl sessions"
fi
# every document: one JSON value, valid against the schema
check_json_docs 30
ok "every subcommand's --json output (ok and failing) is one document that the schema accepts"
echo PASS
