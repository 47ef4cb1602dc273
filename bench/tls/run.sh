#!/bin/bash
# TLS handshakes per second with keys on a SoftHSM token (through keyward) against the same
# servers with ordinary PEM key files. Not part of `meson test`; run by hand:
#
#   bench/tls/run.sh [BUILDDIR]          (default: $KEYWARD_BUILD or ./build)
#   BENCH_SECONDS=5 (per measurement)
#
# 1. openssl s_server, token key vs PEM key file, TLS 1.3 and 1.2, RSA-2048 and P-256: full
#    handshakes (no resumption) measured with openssl s_time -new from one client process.
# 2. nginx (conf/nginx-keyward.conf.example, 4 workers) on the token key and on a PEM file key,
#    with 1 and with 2 client processes (s_time -new, TLS 1.3, P-256 and RSA-2048).
# Prints handshakes/s and the ratios token/file and 2 clients/1 client. The clients run with
# the default provider alone and verify nothing (they measure the server). SoftHSM runs with its
# default reset_on_fork = false here, as most installations do.
set -u
here=$(cd "$(dirname "$0")" && pwd)
KEYWARD_SRC=$(cd "$here/../.." && pwd)
export KEYWARD_SRC
KEYWARD_BUILD=${1:-${KEYWARD_BUILD:-$KEYWARD_SRC/build}}
KEYWARD_BUILD=$(cd "$KEYWARD_BUILD" && pwd) || { echo "no build dir" >&2; exit 2; }
export KEYWARD_BUILD KEYWARD_PROVIDER_DIR=$KEYWARD_BUILD/provider
export KWS_RESET_ON_FORK=false
secs=${BENCH_SECONDS:-5}

. "$KEYWARD_SRC/tests/servers/lib.sh"
kw_require_tools nginx
kws_setup bench early

# Token keys and, of the same types, ordinary key files (the file variants are read by the
# default provider: keyward is loaded in the same server but not used for them).
kws_genkey rsa tok-rsa 01 >/dev/null 2>&1
kws_cert tok-rsa >/dev/null 2>&1
kws_genkey p256 tok-ec 02 >/dev/null 2>&1
kws_cert tok-ec >/dev/null 2>&1
kws_file_key rsa file-rsa >/dev/null 2>&1
kws_file_key p256 file-ec >/dev/null 2>&1
cp "$KW_TMP/file-rsa.key" "$KW_TMP/file-rsa.pem"
cp "$KW_TMP/file-ec.key" "$KW_TMP/file-ec.pem"
for f in tok-rsa tok-ec file-rsa file-ec; do
    [ -s "$KW_TMP/$f.pem" ] && [ -s "$KW_TMP/$f.crt" ] || kw_fail "could not make key $f"
done

# median3 PORT PROTO: the median of three stime runs (the machine may be busy).
median3() {
    { stime "$1" "$2"; stime "$1" "$2"; stime "$1" "$2"; } | sort -n | sed -n 2p
}

# s_time PORT PROTO: full handshakes per second from one client process.
stime() {
    local port=$1 proto=$2 out
    out=$(OPENSSL_CONF=$KW_DEFAULT_CNF openssl s_time -connect "127.0.0.1:$port" -new \
        -time "$secs" "$proto" -www / 2>/dev/null)
    # "N connections in T real seconds, B bytes read per connection"
    echo "$out" | awk '/connections in [0-9.]+ real seconds/ {
        for (i = 1; i <= NF; i++) if ($(i) == "connections") { n = $(i - 1); t = $(i + 2) }
        if (t > 0) printf "%.1f\n", n / t }' | tail -1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "keyward TLS benchmark: $(nproc) CPUs, ${secs}s per measurement, $(openssl version)"
echo
echo "1. openssl s_server, full handshakes/s from one s_time client (median of 3)"
printf '%-10s %-8s %12s %12s %12s\n' key TLS token/s file/s token/file
for alg in rsa ec; do
    for proto in -tls1_3 -tls1_2; do
        declare -A rate=()
        for src in tok file; do
            port=$(kw_free_port)
            kws_bg "$KW_TMP/s_server.$src-$alg.log" openssl s_server -accept "127.0.0.1:$port" \
                -www -key "$KW_TMP/$src-$alg.pem" -cert "$KW_TMP/$src-$alg.crt" -num_tickets 0
            pid=$KWS_PID
            kws_started "$pid" "$port" "$KW_TMP/s_server.$src-$alg.log"
            rate[$src]=$(median3 "$port" "$proto")
            kill "$pid"
            wait "$pid" 2>/dev/null
        done
        name=$([ "$alg" = rsa ] && echo RSA-2048 || echo P-256)
        printf '%-10s %-8s %12s %12s %12s\n' "$name" "${proto#-}" "${rate[tok]:-0}" \
            "${rate[file]:-0}" "$(ratio "${rate[tok]:-0}" "${rate[file]:-0}")"
    done
done

echo
echo "2. nginx, 4 workers, TLS 1.3 full handshakes/s (sum over client processes)"
printf '%-10s %-6s %12s %12s %12s\n' key source 1-client 2-clients 2/1
for alg in ec rsa; do
    declare -A one=()
    for src in tok file; do
        dir=$KW_TMP/nginx-$src-$alg
        port=$(kw_free_port)
        # Workers as root here (nginx would pick "nobody", which cannot open the test token).
        kws_nginx_conf "$dir" "$port" "$src-$alg" "$([ "$(id -u)" = 0 ] && echo root)"
        sed -i 's|^error_log \(.*\) info;|error_log \1 warn;|; s|access_log [^;]*;|access_log off;|' "$dir/nginx.conf"
        kws_bg "$dir/stdout" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
        pid=$KWS_PID
        kws_started "$pid" "$port" "$dir/logs/error.log"
        r1=$(stime "$port" -tls1_3)
        stime "$port" -tls1_3 >"$dir/c1" &
        c1=$!
        stime "$port" -tls1_3 >"$dir/c2" &
        c2=$!
        wait "$c1" "$c2"
        r2=$(awk '{ s += $1 } END { printf "%.1f", s }' "$dir/c1" "$dir/c2")
        one[$src]=$r1
        name=$([ "$alg" = rsa ] && echo RSA-2048 || echo P-256)
        printf '%-10s %-6s %12s %12s %12s\n' "$name" "$src" "${r1:-0}" "$r2" "$(ratio "$r2" "${r1:-0}")"
        if grep -Eq '\[(alert|crit|emerg)\]' "$dir/logs/error.log"; then
            echo "   (nginx logged errors: $(grep -Ec '\[(alert|crit|emerg)\]' "$dir/logs/error.log"))"
        fi
        kill "$pid"
        wait "$pid" 2>/dev/null
    done
    printf '%-10s token/file with 1 client: %s\n' "" "$(ratio "${one[tok]:-0}" "${one[file]:-0}")"
done
