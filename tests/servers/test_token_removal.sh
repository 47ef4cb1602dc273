#!/bin/bash
# The token goes away and comes back while a server runs on its key: the SoftHSM token
# directory is moved away and back under a running openssl s_server (RSA key, TLS 1.3 and 1.2;
# and a P-256 key), then under nginx with 4 workers (P-256 key, conf/nginx-keyward.conf.example). While it is gone handshakes must fail cleanly (the server answers with an
# alert, logs keyward's reason, keeps running); once it is back, handshakes must succeed again
# without restarting the server (KWS_RECOVER_TRIES attempts, 1 s apart, default 3).
set -u
. "$(dirname "$0")/lib.sh"

tries=${KWS_RECOVER_TRIES:-3}
kws_setup gone
failures=0

hs() { # hs PORT CRT PROTO: one handshake + request; 0 when it worked
    kws_tls_get "$KW_TMP/hs.out" -connect "127.0.0.1:$1" -CAfile "$2" "$3"
}

scenario() {
    local name=$1 port log pid i ok proto
    port=$(kw_free_port)
    log=$KW_TMP/srv-$name.log
    kws_bg "$log" openssl s_server -accept "127.0.0.1:$port" -www -key "$KW_TMP/$name.pem" \
        -cert "$KW_TMP/$name.crt" -num_tickets 0
    pid=$KWS_PID
    kws_started "$pid" "$port" "$log"

    for proto in -tls1_3 -tls1_2; do
        if ! hs "$port" "$KW_TMP/$name.crt" "$proto"; then
            cat "$KW_TMP/hs.out" >&2
            kw_fail "$name: handshake $proto fails before the token was touched"
        fi
    done
    kw_log "ok: $name: handshakes work with the token present"

    mv "$KW_TMP/tokens" "$KW_TMP/tokens.away"
    for proto in -tls1_3 -tls1_2 -tls1_3; do
        if hs "$port" "$KW_TMP/$name.crt" "$proto"; then
            echo "--- FAIL $name: handshake $proto succeeded with the token gone" >&2
            failures=$((failures + 1))
        elif ! grep -q '^CONNECTION ESTABLISHED' "$KW_TMP/hs.out" &&
            ! grep -Eqi 'alert|handshake failure' "$KW_TMP/hs.out"; then
            echo "--- FAIL $name: no TLS alert from the server with the token gone" >&2
            cat "$KW_TMP/hs.out" >&2
            failures=$((failures + 1))
        fi
    done
    kws_alive "$pid" "s_server ($name) with the token gone"
    if grep -Eqi 'keyward.*(not present|removed|gone|not found|PKCS#11 error)' "$log"; then
        kw_log "ok: $name: token gone, handshakes refused, reason logged: $(grep -Eio 'keyward:[^:]*:[^:]*' "$log" | sort -u | head -2 | tr '\n' ' ')"
    else
        echo "--- FAIL $name: the server logged no keyward reason while the token was gone" >&2
        tail -10 "$log" >&2
        failures=$((failures + 1))
    fi

    mv "$KW_TMP/tokens.away" "$KW_TMP/tokens"
    # Control: the token itself is fine again (a new process can sign).
    echo control >"$KW_TMP/m"
    kw_ok "$name: a new process signs with the token back" \
        openssl dgst -sha256 -sign "$KW_TMP/$name.pem" -out "$KW_TMP/m.sig" "$KW_TMP/m"

    ok=0
    for i in $(seq "$tries"); do
        if hs "$port" "$KW_TMP/$name.crt" -tls1_3 && hs "$port" "$KW_TMP/$name.crt" -tls1_2; then
            ok=$i
            break
        fi
        sleep 1
    done
    kws_alive "$pid" "s_server ($name) after the token came back"
    if [ "$ok" = 0 ]; then
        echo "--- FAIL $name: token back, the running server still fails after $tries tries:" >&2
        cat "$KW_TMP/hs.out" >&2
        echo "--- server log" >&2
        grep -v '^ *[0-9]* ' "$log" | tail -6 >&2
        failures=$((failures + 1))
    else
        kw_log "ok: $name: token back, handshakes succeed again (attempt $ok), no restart"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

# nginx_round PORT N: N curl requests (new handshake each); prints how many succeeded.
nginx_round() {
    local port=$1 n=$2 ok=0 i
    for i in $(seq "$n"); do
        OPENSSL_CONF=$KW_DEFAULT_CNF timeout 20 curl -s --cacert "$KW_TMP/ec.crt" \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" 2>/dev/null |
            grep -q '^served with a token key' && ok=$((ok + 1))
    done
    echo "$ok"
}

nginx_scenario() {
    local dir=$KW_TMP/nginx port pid n i ok=0
    command -v nginx >/dev/null 2>&1 || { kw_log "SKIP nginx part: nginx not installed"; return 0; }
    port=$(kw_free_port)
    kws_nginx_conf "$dir" "$port" ec "$([ "$(id -u)" = 0 ] && echo root)"
    kws_bg "$dir/logs/stdout" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
        -g 'daemon off;'
    pid=$KWS_PID
    kws_started "$pid" "$port" "$dir/logs/error.log"
    n=$(nginx_round "$port" 8)
    if [ "$n" != 8 ]; then
        echo "--- FAIL nginx: $n of 8 requests before the token was touched" >&2
        grep -E '\[(crit|alert|emerg)\]' "$dir/logs/error.log" | tail -3 >&2
        failures=$((failures + 1))
        kill "$pid"
        return 0
    fi
    mv "$KW_TMP/tokens" "$KW_TMP/tokens.away"
    n=$(nginx_round "$port" 8)
    kws_alive "$pid" "nginx master with the token gone"
    if [ "$n" != 0 ]; then
        echo "--- FAIL nginx: $n of 8 requests succeeded with the token gone" >&2
        failures=$((failures + 1))
    fi
    if grep -q 'exited on signal' "$dir/logs/error.log"; then
        echo "--- FAIL nginx: a worker crashed with the token gone" >&2
        grep 'exited on signal' "$dir/logs/error.log" | head -3 >&2
        failures=$((failures + 1))
    else
        kw_log "ok: nginx: token gone, 0 of 8 handshakes, no worker crashed"
    fi
    mv "$KW_TMP/tokens.away" "$KW_TMP/tokens"
    for i in $(seq "$tries"); do
        n=$(nginx_round "$port" 8)
        [ "$n" = 8 ] && { ok=$i; break; }
        sleep 1
    done
    kws_alive "$pid" "nginx master after the token came back"
    if [ "$ok" = 0 ]; then
        echo "--- FAIL nginx: token back, still $n of 8 after $tries tries (no restart):" >&2
        grep -E '\[(crit|alert|emerg)\]' "$dir/logs/error.log" | tail -2 | cut -c1-400 >&2
        failures=$((failures + 1))
    else
        kw_log "ok: nginx: token back, 8 of 8 handshakes (attempt $ok), no restart"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

kws_genkey rsa rsa 81
kws_cert rsa
kws_genkey p256 ec 82
kws_cert ec
scenario rsa
scenario ec
nginx_scenario

[ "$failures" = 0 ] || kw_fail "$failures token-removal checks failed"
