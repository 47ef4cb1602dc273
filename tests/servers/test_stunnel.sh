#!/bin/bash
# stunnel4 (5.68) fronting a tiny HTTP backend (python3 http.server) with key= the URI key file:
# conf/stunnel-keyward.conf.example with only paths and ports rewritten. Single requests with
# TLS 1.2 and 1.3 checked by s_client (default provider alone), then KWS_CLIENTS parallel
# clients x KWS_REQUESTS curl runs: stunnel serves each connection in its own thread, so the
# token key signs from many threads at once. Every request must come back from the backend.
# RSA-2048 and P-256 keys.
set -u
. "$(dirname "$0")/lib.sh"

clients=${KWS_CLIENTS:-8}
requests=${KWS_REQUESTS:-10}
example=$KEYWARD_SRC/conf/stunnel-keyward.conf.example

kw_require_tools stunnel4 curl python3
kws_setup tun
[ -f "$example" ] || kw_fail "$example is missing"
failures=0
total=0

# The backend: a page with a random marker, so an answer can only come through the tunnel.
mkdir "$KW_TMP/www"
marker=backend-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$marker" >"$KW_TMP/www/index.html"
backend=$(kw_free_port)
kws_bg "$KW_TMP/backend.log" python3 -m http.server --bind 127.0.0.1 --directory "$KW_TMP/www" "$backend"
kws_started "$KWS_PID" "$backend" "$KW_TMP/backend.log"

run() {
    local name=$1 dir=$KW_TMP/stunnel-$1 port n c pid
    mkdir -p "$dir"
    port=$(kw_free_port)
    sed -e "s|/run/stunnel-keyward.pid|$dir/stunnel.pid|" \
        -e "s|/var/log/stunnel4/keyward.log|$dir/stunnel.log|" \
        -e "s|^accept = 443$|accept = 127.0.0.1:$port|" \
        -e "s|^connect = 127.0.0.1:8080$|connect = 127.0.0.1:$backend|" \
        -e "s|/etc/keyward/www.crt|$KW_TMP/$name.crt|" \
        -e "s|/etc/keyward/www-key.pem|$KW_TMP/$name.pem|" \
        -e "s|^debug = notice|debug = info|" \
        "$example" >"$dir/stunnel.conf"
    grep -q "127.0.0.1:$port" "$dir/stunnel.conf" && grep -q "$KW_TMP/$name.pem" "$dir/stunnel.conf" ||
        kw_fail "the stunnel example no longer has the lines this test rewrites"

    kws_bg "$dir/stdout" stunnel4 "$dir/stunnel.conf"
    pid=$KWS_PID
    kws_started "$pid" "$port" "$dir/stdout"

    local proto
    for proto in -tls1_3 -tls1_2; do
        total=$((total + 1))
        if kws_tls_get "$dir/client$proto.out" -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$KW_TMP/$name.crt" "$proto" && grep -q "$marker" "$dir/client$proto.out"; then
            kw_log "ok: stunnel $name $proto"
        else
            echo "--- FAIL stunnel $name $proto" >&2
            cat "$dir/client$proto.out" >&2
            tail -20 "$dir/stunnel.log" >&2
            failures=$((failures + 1))
        fi
    done

    mkdir -p "$dir/load"
    local -a cpids=()
    for c in $(seq "$clients"); do
        (
            ok=0
            for _ in $(seq "$requests"); do
                OPENSSL_CONF=$KW_DEFAULT_CNF timeout 20 curl -sS --cacert "$KW_TMP/$name.crt" \
                    --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" \
                    2>>"$dir/load/err.$c" | grep -q "$marker" && ok=$((ok + 1))
            done
            echo "$ok" >"$dir/load/ok.$c"
        ) &
        cpids+=($!)
    done
    # Only the clients: a bare "wait" would wait for the servers too.
    wait "${cpids[@]}"
    n=$(cat "$dir"/load/ok.* | awk '{ s += $1 } END { print s + 0 }')
    total=$((total + clients * requests))
    kw_log "stunnel $name: $n of $((clients * requests)) parallel requests through the tunnel"
    if [ "$n" != $((clients * requests)) ]; then
        echo "--- FAIL stunnel $name load: $((clients * requests - n)) failed" >&2
        cat "$dir"/load/err.* | sort | uniq -c | head -5 >&2
        grep -iE 'error|fail' "$dir/stunnel.log" | sort | uniq -c | sort -rn | head -5 >&2
        failures=$((failures + 1))
    fi
    kws_alive "$pid" "stunnel ($name)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

kws_genkey rsa rsa 51
kws_cert rsa
run rsa
kws_genkey p256 ec 52
kws_cert ec
run ec

echo "# stunnel: $total TLS connections checked, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures stunnel checks failed"
