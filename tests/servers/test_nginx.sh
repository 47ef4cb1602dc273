#!/bin/bash
# nginx (Debian 1.22) serving TLS with its key on the token: conf/nginx-keyward.conf.example
# with only paths, port and user rewritten; ssl_certificate_key is the URI key file; 4 worker
# processes (the master loads the key, the workers sign after fork); OPENSSL_CONF in the
# master's environment plus "env OPENSSL_CONF;". Load: KWS_CLIENTS parallel clients x
# KWS_REQUESTS curl runs each (a new TLS handshake per run, TLS 1.2 and 1.3 alternating);
# every handshake must succeed, every worker must have served, none may die. Then a reload
# (HUP: new workers) must keep serving. Runs for an RSA and a P-256 key with keyward-load=early
# and for P-256 with keyward-load=lazy. When run as root the workers run as www-data while the
# PIN file stays root-only (0600).
set -u
. "$(dirname "$0")/lib.sh"

clients=${KWS_CLIENTS:-8}
requests=${KWS_REQUESTS:-25}
example=$KEYWARD_SRC/conf/nginx-keyward.conf.example

kw_require_tools nginx curl
kws_setup web
[ -f "$example" ] || kw_fail "$example is missing"
failures=0
total_ok=0

# Workers as www-data when we are root: they must reach the token (SoftHSM: its directory and
# config) but not the PIN file. They may not enter the checkout or the build tree (a clone in
# /root is root's alone), so the provider the configurations load is a copy in $KW_TMP/lib
# (tests/fixtures/other-user.sh; the master loads it before forking them, and an ASan report in
# a worker reads it to symbolize). Without www-data the workers stay root (lib.sh).
worker_user=""
cnf_provider_dir=$KEYWARD_PROVIDER_DIR
if [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1; then
    worker_user=www-data
    chmod 711 "$KW_TMP"
    chmod 644 "$SOFTHSM2_CONF"
    . "$KEYWARD_SRC/tests/fixtures/other-user.sh"
    kw_other_user_copy "$KW_TMP/lib" "$KEYWARD_PROVIDER_DIR/keyward.so" ||
        kw_fail "copying the provider into $KW_TMP/lib"
    cnf_provider_dir=$KW_TMP/lib
elif [ "$(id -u)" = 0 ]; then
    kw_log "note: no user www-data here; the workers run as root"
fi

for load in lazy early; do
    sed "s|^module = $KEYWARD_PROVIDER_DIR/keyward.so\$|module = $cnf_provider_dir/keyward.so|" \
        "$KW_TMP/openssl.cnf" >"$KW_TMP/$load.cnf"
    grep -qx "module = $cnf_provider_dir/keyward.so" "$KW_TMP/$load.cnf" ||
        kw_fail "$load.cnf does not load $cnf_provider_dir/keyward.so"
    echo "keyward-load = $load" >>"$KW_TMP/$load.cnf"
done
chmod 644 "$KW_TMP"/*.cnf

kws_genkey rsa web-rsa 31
kws_cert web-rsa
kws_genkey p256 web-ec 32
kws_cert web-ec
chmod 644 "$KW_TMP"/web-*.pem "$KW_TMP"/web-*.crt
# After the keys exist: SoftHSM writes one file per object.
[ -n "$worker_user" ] && chown -R "$worker_user" "$KW_TMP/tokens"

# load PORT CRT OUTDIR: clients x requests curl runs; prints the number that succeeded.
load() {
    local port=$1 crt=$2 out=$3 c
    mkdir -p "$out"
    for c in $(seq "$clients"); do
        (
            ok=0
            for r in $(seq "$requests"); do
                if [ $(((c + r) % 2)) = 0 ]; then v=(--tlsv1.3); else v=(--tlsv1.2 --tls-max 1.2); fi
                if OPENSSL_CONF=$KW_DEFAULT_CNF timeout 20 curl -sS --no-progress-meter "${v[@]}" \
                    --cacert "$crt" --resolve "localhost:$port:127.0.0.1" \
                    "https://localhost:$port/" >"$out/body.$c" 2>>"$out/err.$c" &&
                    grep -q '^served with a token key over TLSv1\.[23]$' "$out/body.$c"; then
                    ok=$((ok + 1))
                fi
            done
            echo "$ok" >"$out/ok.$c"
        ) &
    done
    wait
    cat "$out"/ok.* | awk '{ s += $1 } END { print s + 0 }'
}

# run LABEL CNF KEYNAME
run() {
    local label=$1 cnf=$2 name=$3 dir=$KW_TMP/nginx-$1 port pid n want pids workers before after
    port=$(kw_free_port)
    kws_nginx_conf "$dir" "$port" "$name" "$worker_user"
    if [ -n "$worker_user" ]; then
        kw_other_user_check_files "$cnf" "$dir/nginx.conf" "$KW_TMP/$name.pem" "$KW_TMP/$name.crt" ||
            kw_fail "the $worker_user workers would read the checkout or the build tree"
    fi
    OPENSSL_CONF=$cnf kws_bg "$dir/logs/stdout" \
        nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
    pid=$KWS_PID
    kws_started "$pid" "$port" "$dir/logs/error.log"
    # Counted a few times: a worker that is being replaced, or a busy /proc, can miss once.
    for _ in 1 2 3; do
        workers=$(pgrep -P "$pid" | wc -l)
        [ "$workers" = 4 ] && break
        sleep 0.5
    done

    want=$((clients * requests))
    n=$(load "$port" "$KW_TMP/$name.crt" "$dir/load")
    total_ok=$((total_ok + n))
    pids=$(awk '{ print $1 }' "$dir/logs/access.log" 2>/dev/null | sort -u | wc -l)
    kw_log "nginx $label: $n of $want handshakes+requests succeeded ($workers workers, $pids served)"
    if [ "$n" != "$want" ]; then
        echo "--- FAIL nginx $label: $((want - n)) of $want failed; first client errors:" >&2
        cat "$dir"/load/err.* 2>/dev/null | sort | uniq -c | head -5 >&2
        tail -20 "$dir/logs/error.log" >&2
        failures=$((failures + 1))
    fi
    if [ "$workers" != 4 ] || [ "$pids" != 4 ]; then
        echo "--- FAIL nginx $label: $workers workers running, $pids of them served (want 4 and 4)" >&2
        failures=$((failures + 1))
    fi
    if grep -Eq '\[(alert|crit|emerg)\]|exited on signal' "$dir/logs/error.log"; then
        echo "--- FAIL nginx $label: errors in its log" >&2
        grep -E '\[(alert|crit|emerg)\]|exited on signal' "$dir/logs/error.log" | head -10 >&2
        failures=$((failures + 1))
    fi

    # Reload: the master re-reads the configuration and the key, new workers are forked.
    before=$(pgrep -P "$pid" | sort | tr '\n' ' ')
    kill -HUP "$pid"
    for _ in $(seq 100); do
        after=$(pgrep -P "$pid" | sort | tr '\n' ' ')
        [ -n "$after" ] && ! grep -qw -- "$(echo "$after" | awk '{ print $1 }')" <<<"$before" && break
        sleep 0.1
    done
    sleep 0.5
    n=$(clients=2 requests=5 load "$port" "$KW_TMP/$name.crt" "$dir/reload")
    kw_log "nginx $label after reload: $n of 10"
    total_ok=$((total_ok + n))
    if [ "$n" != 10 ]; then
        echo "--- FAIL nginx $label after HUP: $((10 - n)) of 10 failed" >&2
        cat "$dir"/reload/err.* 2>/dev/null | sort | uniq -c | head -5 >&2
        tail -20 "$dir/logs/error.log" >&2
        failures=$((failures + 1))
    fi
    kws_alive "$pid" "nginx master ($label)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

run early-rsa "$KW_TMP/early.cnf" web-rsa
run early-ec "$KW_TMP/early.cnf" web-ec
run lazy-ec "$KW_TMP/lazy.cnf" web-ec

# What the guide says: "env OPENSSL_CONF=...;" in nginx.conf does not replace OPENSSL_CONF in the
# master's environment (nginx loads OpenSSL's configuration before it reads nginx.conf).
dir=$KW_TMP/nginx-envline
kws_nginx_conf "$dir" "$(kw_free_port)" web-ec "$worker_user"
sed -i "s|^env OPENSSL_CONF;|env OPENSSL_CONF=$KW_TMP/early.cnf;|" "$dir/nginx.conf"
if env -u OPENSSL_CONF OPENSSL_CONF=/dev/null nginx -t -p "$dir" -e "$dir/logs/error.log" \
    -c "$dir/nginx.conf" >"$dir/t.out" 2>&1; then
    kw_log "note: nginx loaded the URI key file with only 'env OPENSSL_CONF=...;' (docs say it cannot)"
    failures=$((failures + 1))
else
    kw_log "ok: without OPENSSL_CONF in the master's environment nginx cannot load the key file"
fi

echo "# nginx: $total_ok TLS handshakes served on token keys, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures nginx checks failed"
