#!/bin/bash
# Benchmark of keyward-pkcs11.so in kernel mode: one VM boot (tests/fixtures/vm-run.sh) running
# kwk_bench. Usage: run.sh KWK_BENCH MODULE [SECONDS]
set -u -o pipefail
BENCH=$(readlink -f "${1:?kwk_bench}")
MOD=$(readlink -f "${2:?module}")
SECS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/kwk-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -outform DER -out "$W/key.der"
echo "token keyring session:kwk-bench" >"$W/conf"
chmod -R a+rX "$W"
echo "== host (software mode unless the host kernel has the PKCS#8 parser)"
keyctl session - env KEYWARD_PKCS11_CONF="$W/conf" "$BENCH" "$MOD" "$W/key.der" 1 2>/dev/null
echo "== VM, Debian 6.1 kernel (kernel mode)"
"$HERE/../../tests/fixtures/vm-run.sh" -t 300 -- env KEYWARD_PKCS11_CONF="$W/conf" "$BENCH" "$MOD" "$W/key.der" "$SECS"
