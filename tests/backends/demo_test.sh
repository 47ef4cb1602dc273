#!/bin/bash
# The README's main command, scripts/demo.sh, for one backend of the client's token, on the
# suite's build: it must end with exit 0, the mTLS request served (HTTP 200) and, after the
# revocation, the same client refused (no HTTP 200, nginx logging "certificate revoked").
#   demo_test.sh softhsm|tpm|keyring
set -euo pipefail
backend=${1:?usage: $0 softhsm|tpm|keyring}
: "${KEYWARD_SRC:?run through meson test}" "${KEYWARD_BUILD:?}"
# Under the asan setup the demo's curl gets the ASan runtime and the start-up shim from
# tests/asan-bin (see tests/servers/test_curl.sh). Probe it, so a broken setup fails in words.
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ] &&
    ! OPENSSL_CONF=/dev/null timeout 20 curl --version >/dev/null 2>&1; then
    echo "FAIL: curl does not start under the asan setup (tests/asan-bin/asan-run and" \
        "KEYWARD_ASAN_EARLY=${KEYWARD_ASAN_EARLY:-unset})"
    exit 1
fi
dir=$(mktemp -d /tmp/kw-demo-test.XXXXXX)
trap 'rm -rf "$dir"' EXIT
rc=0
KEYWARD_DEMO_BUILD=$KEYWARD_BUILD bash "$KEYWARD_SRC/scripts/demo.sh" --backend "$backend" \
    --state "$dir/state" >"$dir/out" 2>&1 </dev/null || rc=$?
sed 's/\x1b\[[0-9;]*m//g' "$dir/out"
[ $rc = 77 ] && { echo "SKIP: the $backend backend cannot run here (see above)"; exit 77; }
[ $rc = 0 ] || { echo "FAIL: demo --backend $backend exited $rc"; exit 1; }
served=$(grep -n '(HTTP 200)' "$dir/out" | head -1 | cut -d: -f1)
refused=$(grep -n '== curl again: refused' "$dir/out" | cut -d: -f1)
[ -n "$served" ] && [ -n "$refused" ] && [ "$served" -lt "$refused" ] ||
    { echo "FAIL: no mTLS success before the revocation"; exit 1; }
tail -n +"$refused" "$dir/out" | grep -q '(HTTP 200)' && { echo "FAIL: revoked client served"; exit 1; }
# nginx 1.22 serves TLS 1.2 at most unless ssl_protocols says otherwise: the demo's says so
grep -q 'over TLSv1.3' "$dir/out" || { echo "FAIL: the demo's mTLS was not TLS 1.3"; exit 1; }
grep -q 'certificate revoked' "$dir/state/nginx/logs/error.log" ||
    { echo "FAIL: nginx did not refuse the client for revocation"; exit 1; }
[ -f "$dir/state/pki/ca.crt" ] || { echo "FAIL: the state directory was not left"; exit 1; }
echo "PASS: demo --backend $backend: mTLS over TLS 1.3 served, revoked client refused"
