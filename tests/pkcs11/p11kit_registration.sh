#!/bin/bash
# conf/keyward.module registers keyward-pkcs11.so with p11-kit: p11-kit list-modules, pkcs11-tool
# through p11-kit-proxy.so and GnuTLS's p11tool see the token "keyring", and the keyward provider
# with its default module (the proxy) signs with a key on it.
# p11-kit reads per-user module configs (~/.config/pkcs11/modules) but not for root, and the
# system directory is not ours to change in a test: so the test runs as `nobody` with a temporary
# HOME holding the installed file's content. nobody may not enter the checkout or the build tree
# (a clone in /root is root's alone), so the module and the provider it loads are copies in that
# HOME, as are, under the asan setup, the wrappers, start-up shim and suppression files
# (tests/fixtures/other-user.sh); the test fails when what nobody is given names the checkout.
#   p11kit_registration.sh MODULE
set -euo pipefail
MOD=${1:?usage: $0 MODULE}
SRC=${KEYWARD_SRC:?run through meson test}
skip() { echo "SKIP: $*"; exit 77; }
for t in p11-kit pkcs11-tool p11tool keyctl setpriv openssl; do
    command -v $t >/dev/null || skip "$t missing"
done
id nobody >/dev/null 2>&1 || skip "no user nobody to run as"
[ "$(id -u)" = 0 ] || skip "must start as root to switch to nobody"
PROXY=$(ls /usr/lib/*/p11-kit-proxy.so /usr/lib/p11-kit-proxy.so 2>/dev/null | head -1 || true)
[ -n "$PROXY" ] || skip "p11-kit-proxy.so missing"

H=$(mktemp -d)
trap 'rm -rf "$H"' EXIT
. "$SRC/tests/fixtures/other-user.sh"
kw_other_user_copy "$H/lib" "$MOD" "${KEYWARD_PROVIDER_DIR:?}/keyward.so" ||
    { echo "FAIL: copying the module and the provider into $H/lib"; exit 1; }
kw_other_user_env "$H/env" || { echo "FAIL: copying the test setup's files into $H/env"; exit 1; }
MOD=$H/lib/$(basename "$MOD")
mkdir -p "$H/.config/pkcs11/modules"
sed "s|^module: .*|module: $MOD|" "$SRC/conf/keyward.module" >"$H/.config/pkcs11/modules/keyward.module"
grep -q "^module: $MOD\$" "$H/.config/pkcs11/modules/keyward.module" ||
    { echo "FAIL: conf/keyward.module has no module: line"; exit 1; }
printf 'token keyring session:kwk-reg\n' >"$H/pkcs11.conf"
. "$SRC/tests/fixtures/provider-cnf.sh"
kw_write_provider_cnf "$H/openssl.cnf" "$H/lib"
cat >"$H/run.sh" <<'RUN'
set -eu
fail() { echo "FAIL: $*"; exit 1; }
# Under the asan setup p11-kit and p11tool are the tests/asan-bin wrappers (runtime and shim).
p11-kit list-modules >mods.txt 2>/dev/null || true
grep -A6 '^keyward:' mods.txt | grep -q 'token: keyring' ||
    { cat mods.txt; fail "p11-kit list-modules does not show the keyring token"; }
echo "ok: p11-kit list-modules shows keyward and its token"
pkcs11-tool --module "$PROXY" -L >slots.txt 2>/dev/null || true
grep -q 'token label *: keyring' slots.txt || { cat slots.txt; fail "pkcs11-tool via p11-kit-proxy"; }
echo "ok: pkcs11-tool --module p11-kit-proxy.so -L shows the token"
p11tool --list-tokens >tokens.txt 2>/dev/null || true
grep -q 'Label: keyring' tokens.txt || { cat tokens.txt; fail "p11tool --list-tokens"; }
echo "ok: p11tool (GnuTLS) lists the token"
pkcs11-tool --module "$PROXY" --token-label keyring --keypairgen --key-type EC:prime256v1 \
    --label reg --id 01 >/dev/null 2>&1 || fail "key generation through the proxy"
echo data >data
OPENSSL_CONF=$HOME/openssl.cnf openssl dgst -sha256 -sign 'pkcs11:token=keyring;object=reg' \
    -out sig data || fail "the provider (default module: p11-kit proxy) cannot sign"
OPENSSL_CONF=$HOME/openssl.cnf openssl pkey -pubin -in 'pkcs11:token=keyring;object=reg;type=public' \
    -out pub.pem || fail "public key through the provider"
OPENSSL_CONF=/dev/null openssl dgst -sha256 -verify pub.pem -signature sig data >/dev/null ||
    fail "signature does not verify"
echo "ok: the keyward provider, on p11-kit's proxy, signs with a key on the registered token"
RUN
chmod -R a+rX "$H"
chown nobody "$H"
cd "$H"
# Under the asan setup the module is an ASan build; the setup's PATH wrappers (tests/asan-bin)
# give pkcs11-tool, p11-kit, p11tool and openssl the runtime, so pass what they read.
ASAN_ENV=()
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ]; then
    ASAN_ENV=(KEYWARD_ASAN_PRELOAD="$KEYWARD_ASAN_PRELOAD"
        KEYWARD_ASAN_EARLY="${KEYWARD_ASAN_EARLY:-}" ASAN_OPTIONS="${ASAN_OPTIONS:-}"
        LSAN_OPTIONS="${LSAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}")
fi
kw_other_user_check_files "$H" || exit 1
kw_other_user_check_values "$PATH" ${ASAN_ENV[@]+"${ASAN_ENV[@]}"} || exit 1
setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env \
    env HOME="$H" PROXY="$PROXY" KEYWARD_PKCS11_CONF="$H/pkcs11.conf" PATH="$PATH" \
    ${ASAN_ENV[@]+"${ASAN_ENV[@]}"} keyctl session - bash "$H/run.sh" 2>&1 | grep -v 'Joined session keyring'
echo PASS
