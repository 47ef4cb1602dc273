#!/bin/bash
# curl as an mTLS client with its private key on the token: --key is the URI key file (curl
# 7.88 reads it as a PEM private key through OpenSSL; keyward's decoder gives the token key).
# The server is s_server with the default provider alone, a file key, and a required client
# certificate (-Verify) trusted only as the token key's self-signed certificate.
# RSA, P-256 and Ed25519 client keys, TLS 1.2 and 1.3; a request without the key must fail.
set -u
. "$(dirname "$0")/lib.sh"

kw_require_tools curl
# Under the asan setup curl gets the ASan runtime and the start-up shim from tests/asan-bin
# (without the shim Debian's curl hangs in setlocale() before keyward loads). Probe it, so a
# broken setup fails here in words and not at the test's timeout.
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ] &&
    ! OPENSSL_CONF=/dev/null kw_run timeout 20 curl --version >/dev/null 2>&1; then
    kw_fail "curl does not start under the asan setup (tests/asan-bin/asan-run and" \
        "KEYWARD_ASAN_EARLY=${KEYWARD_ASAN_EARLY:-unset})"
fi
kws_setup curl
failures=0
cases=0
kws_file_key p256 server

for spec in rsa:rsa:41 p256:ec:42 ed25519:ed:43; do
    IFS=: read -r type name id <<<"$spec"
    if ! (kws_genkey "$type" "$name" "$id" && kws_cert "$name" "client-$name"); then
        failures=$((failures + 1))
        continue
    fi
    port=$(kw_free_port)
    OPENSSL_CONF=$KW_DEFAULT_CNF kws_bg "$KW_TMP/srv-$name.log" openssl s_server \
        -accept "127.0.0.1:$port" -www -key "$KW_TMP/server.key" -cert "$KW_TMP/server.crt" \
        -Verify 1 -verify_return_error -CAfile "$KW_TMP/$name.crt"
    kws_started "$KWS_PID" "$port" "$KW_TMP/srv-$name.log"
    for tls in "--tlsv1.3" "--tlsv1.2 --tls-max 1.2"; do
        cases=$((cases + 1))
        out=$KW_TMP/curl.$cases
        # shellcheck disable=SC2086
        if kw_run timeout 30 curl -sS $tls --cacert "$KW_TMP/server.crt" \
            --cert "$KW_TMP/$name.crt" --key "$KW_TMP/$name.pem" \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >"$out" 2>"$out.err" &&
            grep -q '^Client certificate' "$out" && grep -q "CN *= *client-$name" "$out"; then
            kw_log "ok: curl $tls with token key $name ($(grep -m1 -o 'Protocol *: *TLSv1\.[23]' "$out"))"
        else
            echo "--- FAIL curl $tls --key $name.pem (URI key file)" >&2
            cat "$out.err" >&2
            head -5 "$out" >&2
            tail -5 "$KW_TMP/srv-$name.log" >&2
            failures=$((failures + 1))
        fi
    done
    kws_alive "$KWS_PID" "s_server for $name"
done

# Control: without the client key the server refuses, so the checks above can fail.
if [ -n "${port:-}" ] && kill -0 "$KWS_PID" 2>/dev/null; then
    if OPENSSL_CONF=$KW_DEFAULT_CNF timeout 30 curl -sS --cacert "$KW_TMP/server.crt" \
        --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >/dev/null 2>&1; then
        kw_log "FAIL: the server accepted a client without a certificate"
        failures=$((failures + 1))
    else
        kw_log "ok: without the token key the server refuses the client"
    fi
fi

echo "# curl mTLS: $cases cases, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures curl mTLS cases failed"
