#!/bin/bash
# openssl s_server with its key on the token (URI key file from genpkey, certificate made by
# req -x509 on the same key), TLS 1.2 and 1.3, RSA (PKCS#1, PSS, RSA key exchange), RSA-PSS keys,
# ECDSA P-256/P-384, Ed25519, Ed448. The client is s_client with the default provider alone:
# it verifies the token's handshake signatures independently. Every case forces the signature
# scheme it claims to test (-sigalgs / -cipher) and checks what was negotiated.
set -u
. "$(dirname "$0")/lib.sh"

kws_setup srv
kw_require_tools openssl

failures=0
cases=0

# one NAME KEY-TYPE ARGS... : s_client case against the server on $port; extra checks after --
# are "PATTERN" lines that must be in the client's output.
check() {
    local what=$1 out=$KW_TMP/client.$cases.out
    shift
    local -a args=() pats=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    pats=("$@")
    cases=$((cases + 1))
    if ! kws_tls_get "$out" -connect "127.0.0.1:$port" -servername localhost \
        -CAfile "$KW_TMP/$cur.crt" -verify_hostname localhost "${args[@]}"; then
        echo "--- FAIL $what: s_client ${args[*]}" >&2
        cat "$out" >&2
        echo "--- server log ($cur)" >&2
        tail -20 "$KW_TMP/$cur.srv.log" >&2
        failures=$((failures + 1))
        return 0
    fi
    local p
    for p in "${pats[@]}"; do
        if ! grep -Eqi -- "$p" "$out"; then
            echo "--- FAIL $what: negotiated something else (no /$p/)" >&2
            cat "$out" >&2
            failures=$((failures + 1))
            return 0
        fi
    done
    kw_log "ok: $what"
}

# serve NAME [KEY-ARG] [CERT-ARG]: s_server on the token key NAME (until the test ends).
serve() {
    cur=$1
    local key=${2:-$KW_TMP/$1.pem} cert=${3:-$KW_TMP/$1.crt}
    port=$(kw_free_port)
    kws_bg "$KW_TMP/$cur.srv.log" openssl s_server -accept "127.0.0.1:$port" -www \
        -key "$key" -cert "$cert" -num_tickets 0
    srv_pid=$KWS_PID
    kws_started "$srv_pid" "$port" "$KW_TMP/$cur.srv.log"
}

# Keys are made (and certified) before any server starts, so a failure to generate one type
# does not hide the results of the others.
declare -A have=()
for spec in rsa:rsa:01 rsa-pss:rsapss:02 p256:ec256:03 p384:ec384:04 ed25519:ed25519:05 ed448:ed448:06; do
    IFS=: read -r type name id <<<"$spec"
    if (kws_genkey "$type" "$name" "$id" && kws_cert "$name"); then
        have[$name]=1
    else
        echo "--- FAIL: no $type token key/certificate, its TLS cases are not run" >&2
        failures=$((failures + 1))
    fi
done

if [ -n "${have[rsa]:-}" ]; then
    serve rsa
    check "RSA TLS1.3 (rsa_pss_rsae)" -tls1_3 -sigalgs rsa_pss_rsae_sha256 -- \
        '^Protocol version: TLSv1.3' '^Signature type: RSA-PSS' '^Hash used: SHA256'
    check "RSA TLS1.2 ECDHE PKCS#1 v1.5 SHA-256" -tls1_2 -sigalgs RSA+SHA256 -- \
        '^Protocol version: TLSv1.2' '^Signature type: RSA$' '^Hash used: SHA256'
    check "RSA TLS1.2 ECDHE PKCS#1 v1.5 SHA-512" -tls1_2 -sigalgs RSA+SHA512 -- \
        '^Signature type: RSA$' '^Hash used: SHA512'
    check "RSA TLS1.2 ECDHE PSS SHA-384" -tls1_2 -sigalgs rsa_pss_rsae_sha384 -- \
        '^Signature type: RSA-PSS' '^Hash used: SHA384'
    # Static RSA key exchange: the premaster secret is decrypted on the token.
    check "RSA TLS1.2 RSA key exchange (token decrypts)" -tls1_2 -cipher AES128-GCM-SHA256 -- \
        '^Ciphersuite: AES128-GCM-SHA256'
    check "RSA TLS1.2 RSA key exchange AES256-SHA256" -tls1_2 -cipher AES256-SHA256 -- \
        '^Ciphersuite: AES256-SHA256'

    # The certificate from the token through the store: -cert 'pkcs11:...;type=cert'.
    kw_import_cert srv rsa-cert 01 "$KW_TMP/rsa.crt"
    serve rsa "pkcs11:token=srv;object=rsa;type=private" "pkcs11:token=srv;object=rsa-cert;type=cert"
    cur=rsa
    check "RSA TLS1.3, key and certificate given as pkcs11: URIs" -tls1_3 -- \
        '^Signature type: RSA-PSS'
fi

if [ -n "${have[rsapss]:-}" ]; then
    serve rsapss
    check "RSA-PSS key TLS1.3 (rsa_pss_pss)" -tls1_3 -- '^Signature type: RSA-PSS'
    check "RSA-PSS key TLS1.2" -tls1_2 -- '^Protocol version: TLSv1.2' '^Signature type: RSA-PSS'
fi

if [ -n "${have[ec256]:-}" ]; then
    serve ec256
    check "ECDSA P-256 TLS1.3" -tls1_3 -- '^Protocol version: TLSv1.3' '^Signature type: ECDSA' \
        '^Hash used: SHA256'
    check "ECDSA P-256 TLS1.2 SHA-256" -tls1_2 -sigalgs ECDSA+SHA256 -- \
        '^Protocol version: TLSv1.2' '^Signature type: ECDSA' '^Hash used: SHA256'
    check "ECDSA P-256 TLS1.2 SHA-384" -tls1_2 -sigalgs ECDSA+SHA384 -- '^Hash used: SHA384'
fi

if [ -n "${have[ec384]:-}" ]; then
    serve ec384
    check "ECDSA P-384 TLS1.3" -tls1_3 -- '^Signature type: ECDSA' '^Hash used: SHA384'
    check "ECDSA P-384 TLS1.2" -tls1_2 -- '^Signature type: ECDSA'
fi

if [ -n "${have[ed25519]:-}" ]; then
    serve ed25519
    check "Ed25519 TLS1.3" -tls1_3 -- '^Protocol version: TLSv1.3' '^Signature type: Ed25519'
    check "Ed25519 TLS1.2" -tls1_2 -- '^Protocol version: TLSv1.2' '^Signature type: Ed25519'
fi

if [ -n "${have[ed448]:-}" ]; then
    serve ed448
    check "Ed448 TLS1.3" -tls1_3 -- '^Signature type: Ed448'
    check "Ed448 TLS1.2" -tls1_2 -- '^Signature type: Ed448'
fi

# Every server is still running after all its handshakes (no crash in the provider).
echo "# $cases TLS cases, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures of the s_server cases failed"
