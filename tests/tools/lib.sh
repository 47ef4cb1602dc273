# Shared set-up of the keyward tools tests (sourced). Fresh SoftHSM2 tokens in a temp dir,
# PIN files (0600), the build's provider and keyward binary; everything removed on exit.
set -u
KEYWARD_BUILD=${KEYWARD_BUILD:?run through meson test (KEYWARD_BUILD unset)}
KW="$KEYWARD_BUILD/tools/keyward"
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export KEYWARD_PROVIDER_PATH="${KEYWARD_PROVIDER_DIR:-$KEYWARD_BUILD/provider}/keyward.so"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

[ -x "$KW" ] || fail "keyward binary missing at $KW"
command -v openssl >/dev/null || skip "openssl not installed"

T=$(mktemp -d /tmp/kwt-test.XXXXXX)
KWT_PIDS=""
cleanup() {
    for p in $KWT_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

# Under the asan test setup keyward.so is built with ASan: the openssl that keyward runs (and the
# tests' own openssl calls) need the ASan runtime first in line. A wrapper named openssl first in
# PATH does it, so dry-run output still reads "openssl ...".
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
    mkdir -p "$T/asan-bin"
    printf '#!/bin/sh\nLD_PRELOAD=%s${LD_PRELOAD:+:$LD_PRELOAD} exec %s "$@"\n' \
        "$KEYWARD_ASAN_PRELOAD" "$(command -v openssl)" >"$T/asan-bin/openssl"
    chmod 755 "$T/asan-bin/openssl"
    export PATH="$T/asan-bin:$PATH"
fi

need_softhsm() {
    [ -f "$SOFTHSM_MODULE" ] || skip "SoftHSM2 module $SOFTHSM_MODULE not installed"
    command -v softhsm2-util >/dev/null || skip "softhsm2-util not installed"
    [ -f "$KEYWARD_PROVIDER_PATH" ] || skip "provider not built at $KEYWARD_PROVIDER_PATH"
    mkdir -p "$T/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$T/tokens" > "$T/softhsm2.conf"
    export SOFTHSM2_CONF="$T/softhsm2.conf"
    export KEYWARD_MODULE="$SOFTHSM_MODULE"
}

# make_token LABEL PIN -> PIN file $T/LABEL.pin
make_token() {
    softhsm2-util --init-token --free --label "$1" --so-pin 87654321 --pin "$2" >/dev/null ||
        fail "cannot create token $1"
    printf '%s' "$2" > "$T/$1.pin"
    chmod 600 "$T/$1.pin"
}

# expect_rc CODE CMD...: run CMD, require exit CODE
expect_rc() {
    local want=$1; shift
    "$@" > "$T/out" 2> "$T/err"
    local rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$T/out" "$T/err" >&2
        fail "expected exit $want, got $rc: $*"
    fi
}

# tree_sum DIR: checksum of the CA state (for "nothing changed" assertions)
tree_sum() {
    (cd "$1" && find . -path ./audit.log -prune -o -type f -print -o -type l -print | LC_ALL=C sort |
        while read -r f; do
            if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else sha256sum "$f"; fi
        done) | sha256sum
}

free_port() {
    python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# need_jsonschema: a python3 with jsonschema in $PY (else SKIP), the schema in $SCHEMA and an
# empty $T/j for the documents J keeps.
need_jsonschema() {
    PY=python3
    local p
    for p in /usr/bin/python3 python3; do
        if "$p" -c 'import jsonschema' 2>/dev/null; then PY=$p; break; fi
    done
    "$PY" -c 'import jsonschema' 2>/dev/null ||
        skip "python3-jsonschema not installed (scripts/deps.sh test installs it)"
    SCHEMA=${KEYWARD_SRC:?}/docs/keyward-json.schema.json
    mkdir -p "$T/j"
    KWT_JN=0
}

# J EXIT CMD...: keyward --json CMD, require EXIT, keep the document (and the command) in $T/j
# for check_json_docs, and a copy in $T/out
J() {
    local want=$1
    shift
    KWT_JN=$((KWT_JN + 1))
    "$KW" --json "$@" >"$T/j/$KWT_JN.json" 2>"$T/j/$KWT_JN.err"
    local rc=$?
    [ "$rc" = "$want" ] || {
        cat "$T/j/$KWT_JN.json" "$T/j/$KWT_JN.err" >&2
        fail "expected exit $want, got $rc: keyward --json $*"
    }
    printf '%s\n' "$*" >"$T/j/$KWT_JN.cmd"
    cp "$T/j/$KWT_JN.json" "$T/out"
}

# check_json_docs MIN: every document in $T/j is exactly one JSON value that the schema
# accepts, and there are at least MIN of them
check_json_docs() {
    "$PY" - "$SCHEMA" "$T/j" "$1" <<'PY' || fail "--json output does not match docs/keyward-json.schema.json"
import glob, json, os, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
bad = 0
files = sorted(glob.glob(os.path.join(sys.argv[2], "*.json")))
for f in files:
    text = open(f).read()
    cmd = open(f[:-5] + ".cmd").read().strip()
    try:
        doc = json.loads(text)  # exactly one value: json.loads refuses trailing data
    except ValueError as e:
        print(f"{cmd}: not one JSON document ({e}): {text!r}")
        bad += 1
        continue
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    for e in errs:
        print(f"{cmd}: {'/'.join(map(str, e.path))}: {e.message}")
    bad += bool(errs)
print(f"{len(files)} documents, {bad} invalid")
sys.exit(1 if bad or len(files) < int(sys.argv[3]) else 0)
PY
}

# nginx_conf DIR PORT CERT KEY CLIENT_CA [DIRECTIVE...]: DIR/nginx.conf (and DIR/logs, DIR/tmp) for
# an nginx that runs unprivileged with everything under DIR: TLS on 127.0.0.1:PORT with CERT and
# KEY, client certificates required and verified against CLIENT_CA, each DIRECTIVE (e.g.
# "ssl_crl FILE;") added to the server block; it answers every request with the verification
# result and the client's subject. Start it with
#   OPENSSL_CONF=/dev/null nginx -p DIR -e DIR/logs/error.log -c DIR/nginx.conf -g 'daemon off;'
nginx_conf() {
    local d=$1 port=$2 cert=$3 key=$4 ca=$5 extra=""
    shift 5
    local x
    for x in "$@"; do extra="$extra        $x"$'\n'; done
    mkdir -p "$d/logs" "$d/tmp"
    cat >"$d/nginx.conf" <<NGX
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_client_certificate $ca;
        ssl_verify_client on;
$extra        location / { return 200 "verify=\$ssl_client_verify dn=\$ssl_client_s_dn\n"; }
    }
}
NGX
}
