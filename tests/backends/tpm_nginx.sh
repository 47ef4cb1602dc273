#!/bin/bash
# nginx with 4 worker processes on TPM keys (through keyward) under parallel TLS load: every
# handshake must succeed. Session caches and tickets are off, so each handshake is a full one
# with a signature on the TPM. `listen ... reuseport` spreads connections over all workers, and
# the access log records the worker pid, so the test checks that several workers signed.
# Prints the handshake rate (ECDSA P-256 key made by genpkey; RSA-2048 key from tpm2_ptool).
# Argument "p11-kit-server": tpm2-pkcs11 runs behind `p11-kit server` (one process owns the TPM)
# and nginx uses p11-kit-client.so. Without it each worker has tpm2-pkcs11 loaded itself.
# Argument "single": one nginx process (master_process off), no fork: the TPM's own rate.
# Without an argument ("direct"), each forked worker would use tpm2-pkcs11 loaded in the master:
# tpm2-pkcs11 keeps its parent's state (TPM connection, sessions, login) across fork, which is
# what breaks other integrations. keyward detects that and refuses in the workers instead of
# sharing; the test checks every handshake is refused that way (reason in keyward's debug log),
# that no worker dies, and that the same nginx serves once the token sits behind p11-kit server
# (the "p11-kit-server" variant, a separate test).
#   KW_TPM_LOAD_CLIENTS (16) parallel clients x KW_TPM_LOAD_EACH (25) handshakes per key.
set -euo pipefail
. "${KEYWARD_SRC:?run through meson test}/tests/fixtures/tpm.sh"
command -v nginx >/dev/null || kw_skip "nginx missing (nginx-light)"
command -v curl >/dev/null || kw_skip "curl missing"
kw_tpm_start
cd "$KW_TPM_DIR"
VIA=${1:-${KW_TPM_VIA:-direct}}
if [ "$VIA" = p11-kit-server ]; then
    # The TPM token behind `p11-kit server`; nginx reaches it through p11-kit-client.so.
    p11-kit server -f --provider "$KW_TPM_MODULE" -n "$KW_TPM_DIR/p11.sock" \
        "pkcs11:token=$KW_TPM_TOKEN" </dev/null >p11-server.log 2>&1 &
    P11SRV=$!
    kw_at_exit "kill $P11SRV \$(pgrep -P $P11SRV)"
    for _ in $(seq 100); do [ -S p11.sock ] && break; sleep 0.05; done
    export P11_KIT_SERVER_ADDRESS="unix:path=$KW_TPM_DIR/p11.sock"
    KW_TPM_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so kw_tpm_openssl_cnf kw.cnf
else
    kw_tpm_openssl_cnf kw.cnf
fi
printf 'openssl_conf = plain_init\n[plain_init]\n' >plain.cnf
export OPENSSL_CONF=$KW_TPM_DIR/kw.cnf
fail() { echo "FAIL: $*" >&2; exit 1; }
CLIENTS=${KW_TPM_LOAD_CLIENTS:-16}
EACH=${KW_TPM_LOAD_EACH:-25}

# Keys: a new EC key generated on the TPM, and a URI key file for the existing RSA key.
openssl genpkey -propquery '?provider=keyward' -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt "keyward_uri:pkcs11:token=$KW_TPM_TOKEN;object=web;id=%01" -out ec.key
openssl pkey -in "$KW_TPM_RSA_URI" -out rsa.key
for k in ec rsa; do
    grep -q 'BEGIN KEYWARD KEY URI' $k.key || fail "$k.key is not a URI key file"
    openssl req -new -x509 -key $k.key -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -days 2 -out $k.crt
done

MASTER=on
WORKERS=4
[ "$VIA" = single ] && { MASTER=off; WORKERS=1; }
EC_PORT=$(kw_free_port)
RSA_PORT=$(kw_free_port)
mkdir -p ng/logs ng/tmp
# nginx clears the environment of its workers except what `env` lists; tpm2-pkcs11 in a worker
# needs its TCTI, store and the private D-Bus bus of tpm2-abrmd. Workers run as the test's user
# (root would otherwise switch to nobody, who can read neither the PIN file nor the store).
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >ng/nginx.conf <<CONF
$user_line
daemon off;
master_process $MASTER;
worker_processes $WORKERS;
pid $KW_TPM_DIR/ng/nginx.pid;
error_log $KW_TPM_DIR/ng/logs/error.log info;
env OPENSSL_CONF;
env TPM2_PKCS11_TCTI;
env TPM2_PKCS11_STORE;
env DBUS_SESSION_BUS_ADDRESS;
env TSS2_LOG;
env KEYWARD_DEBUG;
env P11_KIT_SERVER_ADDRESS;
events { worker_connections 512; }
http {
    log_format w '\$pid \$ssl_protocol \$status';
    access_log $KW_TPM_DIR/ng/logs/access.log w;
    client_body_temp_path $KW_TPM_DIR/ng/tmp/body;
    proxy_temp_path $KW_TPM_DIR/ng/tmp/proxy;
    fastcgi_temp_path $KW_TPM_DIR/ng/tmp/fastcgi;
    uwsgi_temp_path $KW_TPM_DIR/ng/tmp/uwsgi;
    scgi_temp_path $KW_TPM_DIR/ng/tmp/scgi;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_timeout 0;
    server {
        listen 127.0.0.1:$EC_PORT ssl reuseport;
        ssl_certificate $KW_TPM_DIR/ec.crt;
        ssl_certificate_key $KW_TPM_DIR/ec.key;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:$RSA_PORT ssl reuseport;
        ssl_certificate $KW_TPM_DIR/rsa.crt;
        ssl_certificate_key $KW_TPM_DIR/rsa.key;
        location / { return 200 "ok\n"; }
    }
}
CONF
if [ "$VIA" = direct ]; then
    export KEYWARD_DEBUG=file:$KW_TPM_DIR/kw-debug.log
fi
LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-} nginx -p "$KW_TPM_DIR/ng" -c "$KW_TPM_DIR/ng/nginx.conf" \
    -e "$KW_TPM_DIR/ng/logs/error.log" </dev/null >ng/logs/stdout.log 2>&1 &
NGINX=$!
kw_at_exit "kill $NGINX; wait $NGINX"
for _ in $(seq 100); do
    kill -0 $NGINX 2>/dev/null || { cat ng/logs/error.log >&2; fail "nginx exited at start"; }
    if [ "$VIA" = direct ]; then
        [ "$(pgrep -c -P $NGINX)" = 4 ] && break
        sleep 0.1
        continue
    fi
    OPENSSL_CONF=$KW_TPM_DIR/plain.cnf curl -sf --cacert ec.crt "https://localhost:$EC_PORT/" \
        --resolve "localhost:$EC_PORT:127.0.0.1" -o /dev/null && break
    sleep 0.1
done
nworkers() { if [ $MASTER = on ]; then pgrep -c -P $NGINX; else echo 1; fi; }
[ "$(nworkers)" = $WORKERS ] || fail "nginx does not run $WORKERS workers"

# One client: EACH sequential connections (Connection: close, no session reuse), printing the
# HTTP status of each; 000 is a failed connection or handshake.
client() {
    local port=$1 crt=$2 i urls=()
    for ((i = 0; i < EACH; i++)); do urls+=("https://localhost:$port/"); done
    OPENSSL_CONF=$KW_TPM_DIR/plain.cnf curl -s --cacert "$crt" --resolve "localhost:$port:127.0.0.1" \
        --tlsv1.2 --no-sessionid -H 'Connection: close' -o /dev/null -w '%{http_code}\n' \
        "${urls[@]}" || true
}

load() {
    local name=$1 port=$2 crt=$3 want=$((CLIENTS * EACH)) t0 t1 ok n pids=()
    : >ng/logs/access.log
    t0=$(date +%s%N)
    for ((n = 0; n < CLIENTS; n++)); do
        client "$port" "$crt" >"res.$name.$n" &
        pids+=($!)
    done
    wait "${pids[@]}"
    t1=$(date +%s%N)
    ok=$(cat res.$name.* | grep -cx 200 || true)
    workers=$(awk '{print $1}' ng/logs/access.log | sort -u | wc -l)
    printf 'RESULT tpm-nginx (%s) %s: %d/%d handshakes ok, %d clients, %d workers served, %.1f handshakes/s\n' \
        "$VIA" "$name" "$ok" "$want" "$CLIENTS" "$workers" "$(awk -v n="$want" -v ns="$((t1 - t0))" 'BEGIN { print n * 1e9 / ns }')"
    [ "$ok" = "$want" ] || { sort res.$name.* | uniq -c >&2; tail -20 ng/logs/error.log >&2; \
        fail "$((want - ok)) of $want $name handshakes failed"; }
    [ "$workers" -ge $((WORKERS > 1 ? 2 : 1)) ] || fail "only $workers nginx worker served the $name load"
}
if [ "$VIA" = direct ]; then
    for port in "$EC_PORT" "$RSA_PORT"; do
        crt=ec.crt
        [ "$port" = "$RSA_PORT" ] && crt=rsa.crt
        codes=$(CLIENTS=4 EACH=3 client "$port" "$crt")
        [ "$(echo "$codes" | grep -cx 200 || true)" = 0 ] ||
            fail "a forked worker signed with the master's tpm2-pkcs11 state (shared TPM sessions)"
    done
    grep -q "kept its parent's state across fork" kw-debug.log ||
        { tail -20 kw-debug.log >&2; fail "the workers' refusal does not say why"; }
    echo "ok: workers refuse the master's tpm2-pkcs11 state: $(grep -m1 -o "PKCS#11 module .*refused" kw-debug.log)"
    kill -0 $NGINX || fail "nginx died"
    [ "$(nworkers)" = $WORKERS ] || fail "a worker died: $(nworkers) left"
    echo PASS
    exit 0
fi
load ecdsa-p256 "$EC_PORT" ec.crt
load rsa-2048 "$RSA_PORT" rsa.crt

kill -0 $NGINX || fail "nginx died"
[ "$(nworkers)" = $WORKERS ] || fail "a worker died: $(nworkers) left"
if grep -E '\[(alert|emerg|crit)\]|exited on signal' ng/logs/error.log; then
    fail "nginx logged errors"
fi
echo PASS
