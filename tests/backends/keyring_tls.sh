#!/bin/bash
# The keyring token (keyward-pkcs11.so) through the keyward provider, with real programs:
# an RSA-2048 key imported with `keyward keyring import`, then
#   openssl dgst -sign with PSS, verified by the default provider alone;
#   openssl s_server, TLS 1.3 with rsa_pss_rsae_sha256, key as the URI key file; s_client verifies;
#   nginx (2 workers) with the URI key file as ssl_certificate_key; curl verifies.
# Mode "host": on this machine's kernel (software mode unless it has the PKCS#8 parser), in a
# session keyring of its own. Mode "vm": the same inside QEMU on Debian's 6.1 kernel (which has
# the parser), where the test also requires kernel mode and, from the module's debug log, that
# the handshake's signatures were made by the kernel-resident key.
#   keyring_tls.sh host|vm MODULE KEYWARD-BINARY
set -u -o pipefail
MODE=${1:?usage: $0 host|vm MODULE KEYWARD}
MOD=$(readlink -f "${2:?module}")
KW=$(readlink -f "${3:?keyward binary}")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../fixtures/provider-cnf.sh"
: "${KEYWARD_PROVIDER_DIR:?run through meson test}"
skip() { echo "SKIP: $*"; exit 77; }
for t in openssl keyctl nginx curl; do command -v $t >/dev/null || skip "$t missing"; done

if [ "$MODE" = host ] || [ "$MODE" = vm ]; then
    W=$(mktemp -d /tmp/kw-keyring-tls.XXXXXX)
    trap 'rm -rf "$W"' EXIT
    # Key, certificate and configs are made here (RSA key generation is slow under emulation).
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/tls.key" -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 -out "$W/tls.crt" 2>/dev/null ||
        { echo "FAIL: test key"; exit 1; }
    echo "token keyring session:kw-tls" >"$W/pkcs11.conf"
    printf 'openssl_conf = d\n[d]\nproviders = p\n[p]\ndefault = q\n[q]\nactivate = 1\n' >"$W/default.cnf"
    kw_write_provider_cnf "$W/kw.cnf" "$KEYWARD_PROVIDER_DIR" "keyward-module = $MOD"
    chmod -R a+rX "$W"
    if [ "$MODE" = vm ]; then
        # An ASan build of openssl's provider stack under TCG emulation (no KVM) does not get
        # its TLS servers up within the VM's time: measured 300 s and out. The same provider
        # code runs under asan in keyring-tls-host, and the module's kernel paths in pkcs11-vm.
        if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && ! { [ -w /dev/kvm ] && grep -qwE "vmx|svm" /proc/cpuinfo; }; then
            echo "SKIP: under the asan setup without KVM the VM's TLS servers do not start in time"
            exit 77
        fi
        mkdir -p "$W/out"
        KW_VM_OUT_HOST=$W/out "$HERE/../fixtures/vm-run.sh" -t 300 -- env W="$W" MOD="$MOD" \
            KW="$KW" WANT=kernel KEYWARD_PROVIDER_DIR="$KEYWARD_PROVIDER_DIR" PATH="$PATH" \
            KEYWARD_ASAN_PRELOAD="${KEYWARD_ASAN_PRELOAD:-}" ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
            LSAN_OPTIONS="${LSAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" bash "$HERE/keyring_tls.sh" run "$MOD" "$KW"
        rc=$?
        [ $rc = 77 ] && exit 77
        exit $rc
    fi
    exec env W="$W" WANT=any keyctl session kw-tls-test bash "$0" run "$MOD" "$KW"
fi

# ---- "run": the test itself, in its own session keyring (host) or in the guest (vm) ----------
export KEYWARD_PKCS11_CONF=$W/pkcs11.conf KEYWARD_PKCS11_MODULE=$MOD KEYWARD_MODULE=$MOD
export KEYWARD_PROVIDER_PATH=$KEYWARD_PROVIDER_DIR/keyward.so
export OPENSSL_CONF=$W/kw.cnf
LOG=${KW_VM_OUT:-$W}/kw-debug.log
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
cd "$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done' EXIT
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+)
        (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
    done
}

"$KW" keyring import "$W/tls.key" --label tls --id 0a >import.out 2>&1 ||
    { cat import.out; echo "FAIL keyward keyring import"; exit 1; }
mode=$("$KW" keyring list | awk '$1 == "tls" {print $5}')
echo "keyring token mode: $mode (kernel $(uname -r))"
[ "$WANT" = any ] || [ "$mode" = "$WANT" ] && ok "key tls is in $mode mode" || bad "key mode $mode, want $WANT"
"$KW" uri2pem 'pkcs11:token=keyring;object=tls' --out key-uri.pem >/dev/null 2>&1 ||
    bad "keyward uri2pem"
grep -q 'BEGIN KEYWARD KEY URI' key-uri.pem && ok "URI key file written" || bad "no URI key file"

# 1. openssl sign (PSS), verified without keyward.
echo "keyring tls test" >data
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sign key-uri.pem -out data.sig data 2>err.txt ||
    { cat err.txt; bad "openssl dgst -sign on the keyring key"; }
openssl x509 -in "$W/tls.crt" -pubkey -noout >pub.pem
OPENSSL_CONF=$W/default.cnf openssl dgst -sha256 -sigopt rsa_padding_mode:pss -verify pub.pem \
    -signature data.sig data >/dev/null 2>&1 && ok "PSS signature verifies" || bad "PSS signature"

# 2. s_server TLS 1.3, RSA-PSS, debug log of the module and provider at trace level.
port=$(free_port)
KEYWARD_DEBUG=file:$LOG,2 openssl s_server -accept "127.0.0.1:$port" -key key-uri.pem \
    -cert "$W/tls.crt" -tls1_3 -sigalgs rsa_pss_rsae_sha256 -www -naccept 1 >srv.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q ACCEPT srv.log && break; sleep 0.1; done
: >"$LOG.mark"
echo Q | OPENSSL_CONF=$W/default.cnf timeout 60 openssl s_client -connect "127.0.0.1:$port" \
    -servername localhost -CAfile "$W/tls.crt" -verify_return_error -tls1_3 >cli.log 2>&1
if grep -q 'Verify return code: 0' cli.log && grep -q 'Peer signature type: RSA-PSS' cli.log; then
    ok "TLS 1.3 handshake, server signature RSA-PSS by the keyring key, verified by s_client"
else
    cat cli.log srv.log; bad "s_server TLS 1.3 on the keyring key"
fi
wait "${PIDS[0]}" 2>/dev/null
if [ "$WANT" = kernel ]; then
    grep -q 'RSA private operation in the kernel' "$LOG" &&
        ok "the handshake's signature ran in the kernel: $(grep -m1 -o 'RSA private operation in the kernel[^;]*' "$LOG")" ||
        bad "no kernel RSA operation in the debug log"
fi

# 3. nginx with the URI key file, 2 workers; curl verifies.
port=$(free_port)
mkdir -p ng/logs ng/tmp
cat >ng/nginx.conf <<CONF
user root;
worker_processes 2;
daemon off;
pid $PWD/ng/nginx.pid;
error_log $PWD/ng/logs/error.log info;
env OPENSSL_CONF;
env KEYWARD_PKCS11_CONF;
events { worker_connections 32; }
http {
    access_log $PWD/ng/logs/access.log;
    client_body_temp_path $PWD/ng/tmp/b; proxy_temp_path $PWD/ng/tmp/p;
    fastcgi_temp_path $PWD/ng/tmp/f; uwsgi_temp_path $PWD/ng/tmp/u; scgi_temp_path $PWD/ng/tmp/s;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $W/tls.crt;
        ssl_certificate_key $PWD/key-uri.pem;
        location / { return 200 "keyring key over \$ssl_protocol\n"; }
    }
}
CONF
nginx -p "$PWD/ng" -c "$PWD/ng/nginx.conf" -e "$PWD/ng/logs/error.log" >ng/out.log 2>&1 &
PIDS+=($!)
# Up to 30 s: a loaded machine can take a while to start nginx and load the key.
for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null ||
    { cat ng/out.log; tail -20 ng/logs/error.log; bad "nginx is not listening on $port after 30 s"; }
good=0
for i in $(seq 6); do
    OPENSSL_CONF=$W/default.cnf timeout 60 curl -sS --cacert "$W/tls.crt" \
        --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" >body 2>curl.err &&
        grep -q 'keyring key over TLSv1' body && good=$((good + 1))
done
[ $good = 6 ] && ok "nginx (2 workers, URI key file): $good of 6 requests over TLS on the keyring key" ||
    { cat curl.err ng/logs/error.log | tail -20; bad "nginx on the keyring key: $good of 6"; }
echo "$FAILS failure(s)"
[ $FAILS = 0 ]
