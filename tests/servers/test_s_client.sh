#!/bin/bash
# mTLS, client side: openssl s_client authenticates with its key on the token (-key URI key
# file, and -key pkcs11: URI). The server is s_server with an ordinary key file and the default
# provider alone; it requires a client certificate (-Verify), trusts only the token key's
# self-signed certificate and restricts the client's signature scheme (-client_sigalgs), so
# each case fails unless the token produced exactly that kind of valid signature.
set -u
. "$(dirname "$0")/lib.sh"

kws_setup cli
kw_require_tools openssl

failures=0
cases=0
kws_file_key p256 server

# client NAME SERVER-CLIENT-SIGALGS CLIENT-ARGS...: one s_server (default provider) requiring a
# certificate signed by NAME, one s_client with the token key.
client() {
    local name=$1 sigalgs=$2 port srv_log out pid
    shift 2
    cases=$((cases + 1))
    port=$(kw_free_port)
    srv_log=$KW_TMP/srv.$cases.log
    out=$KW_TMP/cli.$cases.out
    OPENSSL_CONF=$KW_DEFAULT_CNF openssl s_server -accept "127.0.0.1:$port" -www -naccept 1 \
        -key "$KW_TMP/server.key" -cert "$KW_TMP/server.crt" \
        -Verify 1 -verify_return_error -CAfile "$KW_TMP/$name.crt" \
        -client_sigalgs "$sigalgs" >"$srv_log" 2>&1 &
    pid=$!
    kws_started "$pid" "$port" "$srv_log"
    if KWS_CLIENT_CNF=$OPENSSL_CONF kws_tls_get "$out" -connect "127.0.0.1:$port" \
        -CAfile "$KW_TMP/server.crt" -cert "$KW_TMP/$name.crt" "$@" &&
        grep -q '^Client certificate' "$out" && grep -q "CN *= *client-$name" "$out"; then
        kw_log "ok: mTLS client key $name, server allows $sigalgs: $*"
    else
        echo "--- FAIL client key $name ($sigalgs): s_client $*" >&2
        cat "$out" >&2
        echo "--- server" >&2
        cat "$srv_log" >&2
        failures=$((failures + 1))
    fi
    wait "$pid" 2>/dev/null || true
}

declare -A have=()
for spec in rsa:rsa:11 rsa-pss:rsapss:12 p256:ec256:13 p384:ec384:14 ed25519:ed25519:15 ed448:ed448:16; do
    IFS=: read -r type name id <<<"$spec"
    if (kws_genkey "$type" "$name" "$id" && kws_cert "$name" "client-$name"); then
        have[$name]=1
    else
        echo "--- FAIL: no $type token key/certificate, its mTLS cases are not run" >&2
        failures=$((failures + 1))
    fi
done

if [ -n "${have[rsa]:-}" ]; then
    client rsa rsa_pss_rsae_sha256 -tls1_3 -key "$KW_TMP/rsa.pem"
    client rsa RSA+SHA256 -tls1_2 -key "$KW_TMP/rsa.pem"
    client rsa RSA+SHA384 -tls1_2 -key "$KW_TMP/rsa.pem"
    client rsa rsa_pss_rsae_sha512 -tls1_2 -key "$KW_TMP/rsa.pem"
    # The key by URI instead of the key file.
    client rsa rsa_pss_rsae_sha256 -tls1_3 -key "pkcs11:token=cli;object=rsa;type=private"
fi
[ -n "${have[rsapss]:-}" ] && client rsapss rsa_pss_pss_sha256 -tls1_3 -key "$KW_TMP/rsapss.pem"
if [ -n "${have[ec256]:-}" ]; then
    client ec256 ECDSA+SHA256 -tls1_3 -key "$KW_TMP/ec256.pem"
    client ec256 ECDSA+SHA256 -tls1_2 -key "$KW_TMP/ec256.pem"
    client ec256 ECDSA+SHA512 -tls1_2 -key "pkcs11:token=cli;object=ec256"
fi
[ -n "${have[ec384]:-}" ] && client ec384 ECDSA+SHA384 -tls1_3 -key "$KW_TMP/ec384.pem"
if [ -n "${have[ed25519]:-}" ]; then
    client ed25519 ed25519 -tls1_3 -key "$KW_TMP/ed25519.pem"
    client ed25519 ed25519 -tls1_2 -key "$KW_TMP/ed25519.pem"
fi
[ -n "${have[ed448]:-}" ] && client ed448 ed448 -tls1_3 -key "$KW_TMP/ed448.pem"

echo "# $cases mTLS client cases, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures of the s_client mTLS cases failed"
