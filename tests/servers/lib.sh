# shellcheck shell=bash
# Helpers shared by the real-server tests (tests/servers/*.sh) and bench/tls/run.sh.
# Built on tests/fixtures/softhsm.sh: one fresh SoftHSM token per test, keyward's openssl.cnf.
#
#   . "$KEYWARD_SRC/tests/servers/lib.sh"
#   kws_setup T                       # temp dir, token T, $KW_TMP/openssl.cnf, OPENSSL_CONF set
#   kws_genkey rsa web 01             # token key via genpkey -> $KW_TMP/web.pem (URI key file)
#   kws_cert web                      # self-signed cert made on the token key -> $KW_TMP/web.crt
#   kws_file_key ec other             # ordinary PEM key + cert (default provider) for peers
#   port=$(kw_free_port); openssl s_server ... & kws_started $! $port srv.log
#   kws_tls_get OUT TLSARGS...        # s_client (default provider alone), HTTP GET, checks
#
# Clients that check the token's signatures run with the default provider alone, so they verify
# independently of keyward.

set -u

: "${KEYWARD_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
if [ -z "${KEYWARD_BUILD:-}" ] && [ -d "$KEYWARD_SRC/build/provider" ]; then
    KEYWARD_BUILD=$KEYWARD_SRC/build
fi
export KEYWARD_SRC
[ -n "${KEYWARD_BUILD:-}" ] && export KEYWARD_BUILD

# shellcheck source=../fixtures/softhsm.sh
. "$KEYWARD_SRC/tests/fixtures/softhsm.sh"

KWS_TOKEN=""

# kws_setup TOKEN [LOAD]: fixture, one token, keyward config (keyward-load = LOAD when given).
kws_setup() {
    KWS_TOKEN=$1
    kw_softhsm_init
    kw_require_tools timeout
    kw_token_init "$KWS_TOKEN"
    # Reset SoftHSM in a forked child as a hardware token would lose its sessions: otherwise
    # SoftHSM carries the parent's state into children and hides fork bugs in the provider.
    [ "${KWS_RESET_ON_FORK:-true}" = true ] && echo "library.reset_on_fork = true" >>"$SOFTHSM2_CONF"
    kw_provider_cnf "$KW_TMP/openssl.cnf"
    if [ -n "${2:-}" ]; then
        echo "keyward-load = $2" >>"$KW_TMP/openssl.cnf"
    fi
    export OPENSSL_CONF=$KW_TMP/openssl.cnf
}

# kws_genkey TYPE NAME ID: key generated on the token by keyward (genpkey), key file
# $KW_TMP/NAME.pem carries its URI. TYPE: rsa rsa3072 rsa-pss p256 p384 p521 ed25519 ed448.
kws_genkey() {
    local type=$1 name=$2 id=$3 alg
    local -a opts=()
    case $type in
    rsa) alg=RSA opts=(-pkeyopt rsa_keygen_bits:2048) ;;
    rsa3072) alg=RSA opts=(-pkeyopt rsa_keygen_bits:3072) ;;
    rsa-pss) alg=RSA-PSS opts=(-pkeyopt rsa_keygen_bits:2048) ;;
    p256) alg=EC opts=(-pkeyopt ec_paramgen_curve:P-256) ;;
    p384) alg=EC opts=(-pkeyopt ec_paramgen_curve:P-384) ;;
    p521) alg=EC opts=(-pkeyopt ec_paramgen_curve:P-521) ;;
    ed25519) alg=ED25519 ;;
    ed448) alg=ED448 ;;
    *) kw_fail "kws_genkey: unknown key type $type" ;;
    esac
    kw_ok "genpkey $type on the token ($name)" \
        openssl genpkey -propquery '?provider=keyward' -algorithm "$alg" "${opts[@]}" \
        -pkeyopt "keyward_uri:pkcs11:token=$KWS_TOKEN;object=$name;id=%$id" -out "$KW_TMP/$name.pem"
    grep -q -- '-----BEGIN KEYWARD KEY URI-----' "$KW_TMP/$name.pem" ||
        kw_fail "genpkey wrote no URI key file for $name"
    # The file names the key; it must not hold key material.
    grep -q 'PRIVATE KEY' "$KW_TMP/$name.pem" && kw_fail "$name.pem holds a private key"
    return 0
}

# kws_cert NAME [CN]: self-signed certificate signed on the token (req -x509 with the key file).
kws_cert() {
    local name=$1 cn=${2:-localhost}
    kw_ok "req -x509 on token key $name" \
        openssl req -x509 -new -key "$KW_TMP/$name.pem" -subj "/CN=$cn" -days 2 \
        -addext "subjectAltName=DNS:$cn,IP:127.0.0.1" -out "$KW_TMP/$name.crt"
    # The default provider alone must accept the token's self-signature.
    kw_ok "certificate $name verifies with the default provider" \
        kws_quiet kw_default openssl verify -CAfile "$KW_TMP/$name.crt" "$KW_TMP/$name.crt"
}

# kws_file_key TYPE NAME [CN]: an ordinary key file + self-signed cert (default provider only),
# for the peer that is not under test.
kws_file_key() {
    local type=$1 name=$2 cn=${3:-localhost}
    local -a alg
    case $type in
    rsa) alg=(-newkey rsa:2048) ;;
    p256) alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    ed25519) alg=(-newkey ed25519) ;;
    *) kw_fail "kws_file_key: unknown type $type" ;;
    esac
    kw_ok "file key $name" kw_default openssl req -x509 "${alg[@]}" -nodes -subj "/CN=$cn" -days 2 \
        -addext "subjectAltName=DNS:$cn,IP:127.0.0.1" \
        -keyout "$KW_TMP/$name.key" -out "$KW_TMP/$name.crt"
}

# kws_started PID PORT LOG: wait until PID listens on 127.0.0.1:PORT; stop it on exit.
kws_started() {
    local pid=$1 port=$2 log=$3 i
    kw_kill_on_exit "$pid"
    for i in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "--- $log" >&2
            cat "$log" >&2
            kw_fail "server (pid $pid) exited before listening on port $port"
        fi
        if awk -v p=":$(printf '%04X' "$port")" \
            'NR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' \
            /proc/net/tcp 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    cat "$log" >&2
    kw_fail "server (pid $pid) does not listen on port $port after 15 s"
}

# kws_alive PID WHAT: fail when the server died.
kws_alive() {
    kill -0 "$1" 2>/dev/null || kw_fail "$2 (pid $1) died"
}

# kws_tls_get OUT ARGS...: openssl s_client (default provider alone, or $KWS_CLIENT_CNF when
# set; -brief, certificate verification errors fatal) sends an HTTP GET; stdout+stderr in OUT.
# Returns s_client's status, and 1 unless the handshake was made, verified and answered 200.
kws_tls_get() {
    local out=$1 rc=0
    shift
    printf 'GET / HTTP/1.0\r\n\r\n' |
        OPENSSL_CONF=${KWS_CLIENT_CNF:-$KW_DEFAULT_CNF} kw_run timeout 30 openssl s_client -brief -ign_eof -verify_return_error "$@" \
            >"$out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || return "$rc"
    grep -q '^CONNECTION ESTABLISHED' "$out" || return 1
    grep -q '^Verification: OK' "$out" || return 1
    grep -qi '^HTTP/1.0 200' "$out" || return 1
    return 0
}

# kws_expect_in OUT PATTERN WHAT: OUT must contain PATTERN (extended regex).
kws_expect_in() {
    if ! grep -Eq -- "$2" "$1"; then
        echo "--- $1" >&2
        cat "$1" >&2
        kw_fail "$3: no /$2/"
    fi
}

# kws_pubkey NAME ID: $KW_TMP/NAME.pub, the public key read by pkcs11-tool (not through keyward).
# OpenSC's pkcs11-tool does not write EdDSA public keys as SubjectPublicKeyInfo; for those
# the public half comes through keyward (openssl pkey -pubout), still checked by the default
# provider alone.
kws_pubkey() {
    local name=$1 id=$2
    (kw_pubkey_pem "$KWS_TOKEN" "$id" "$KW_TMP/$name.pub") 2>/dev/null && return 0
    kw_ok "public key of $name through keyward" \
        openssl pkey -in "$KW_TMP/$name.pem" -pubout -out "$KW_TMP/$name.pub"
}

# kws_quiet CMD...: CMD with its stdout dropped (stderr kept for kw_ok's report).
kws_quiet() {
    "$@" >/dev/null
}

# kws_bg LOG CMD...: start CMD in the background (stdout+stderr to LOG) as a direct child whose
# pid is $KWS_PID, so signals reach it and not a subshell (with the asan preload when set).
kws_bg() {
    local log=$1
    shift
    if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
        env LD_PRELOAD="$KEYWARD_ASAN_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}" "$@" >"$log" 2>&1 &
    else
        "$@" >"$log" 2>&1 &
    fi
    KWS_PID=$!
}

# kws_nginx_conf DIR PORT KEYNAME [WORKER-USER]: conf/nginx-keyward.conf.example with this
# test's paths, port, key and certificate ($KW_TMP/KEYNAME.pem/.crt), reuseport, $pid logged.
# Without WORKER-USER the workers run as the test's user: as root, "user root;" (nginx would
# otherwise switch them to nobody, who can read neither $KW_TMP nor the build tree).
kws_nginx_conf() {
    local dir=$1 port=$2 name=$3 worker_user=${4:-} example=$KEYWARD_SRC/conf/nginx-keyward.conf.example
    mkdir -p "$dir/logs" "$dir/tmp"
    sed -e "s|/etc/keyward/www.crt|$KW_TMP/$name.crt|" \
        -e "s|/etc/keyward/www-key.pem|$KW_TMP/$name.pem|" \
        -e "s|/run/nginx-keyward.pid|$dir/nginx.pid|" \
        -e "s|error_log /var/log/nginx/keyward-error.log;|error_log $dir/logs/error.log info;|" \
        -e "s|access_log /var/log/nginx/keyward-access.log;|log_format kw '\$pid \$ssl_protocol \$status'; access_log $dir/logs/access.log kw;|" \
        -e "s|listen 443 ssl;|listen 127.0.0.1:$port ssl reuseport;|" \
        -e "s|^http {|http {\\n    client_body_temp_path $dir/tmp/body;\\n    proxy_temp_path $dir/tmp/proxy;\\n    fastcgi_temp_path $dir/tmp/fastcgi;\\n    uwsgi_temp_path $dir/tmp/uwsgi;\\n    scgi_temp_path $dir/tmp/scgi;|" \
        "$example" >"$dir/nginx.conf"
    if [ -n "$worker_user" ]; then
        sed -i "s|^user www-data;|user $worker_user;|" "$dir/nginx.conf"
    elif [ "$(id -u)" = 0 ]; then
        sed -i "s|^user www-data;|user root;|" "$dir/nginx.conf"
    else
        sed -i "/^user /d" "$dir/nginx.conf"
    fi
    grep -q "127.0.0.1:$port" "$dir/nginx.conf" || kw_fail "the example has no 'listen 443 ssl;' to rewrite"
    grep -q "$KW_TMP/$name.pem" "$dir/nginx.conf" || kw_fail "the example has no ssl_certificate_key to rewrite"
}
