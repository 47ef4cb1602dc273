#!/bin/bash
# The keyward provider on a keyring token: `openssl genpkey -algorithm RSA-PSS` sends
# CKA_ALLOWED_MECHANISMS (the PSS mechanisms) in the private template, which keyward-pkcs11.so
# refused with CKR_ATTRIBUTE_TYPE_INVALID (issue 17). Now the key is made, signs PSS with SHA-256
# and SHA-384 (verified by the default provider alone), makes a self-signed certificate, and the
# module itself refuses a PKCS#1 v1.5 signature with it (CKR_MECHANISM_INVALID, through
# pkcs11-tool, not the provider, whose own check comes first). Software mode on this host.
#   provider_pss.sh MODULE
set -euo pipefail
MOD=${1:?usage: $0 MODULE}
[ -n "${KWK_IN_SESSION:-}" ] || { KWK_IN_SESSION=1 exec keyctl session - "$0" "$@" 2>/dev/null; }
SRC=${KEYWARD_SRC:?run through meson test}
for t in openssl pkcs11-tool keyctl; do
    command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
echo "token keyring session:kwk-pss-$$" >conf
export KEYWARD_PKCS11_CONF=$W/conf
. "$SRC/tests/fixtures/provider-cnf.sh"
kw_write_provider_cnf keyward.cnf "${KEYWARD_PROVIDER_DIR:?}" "keyward-module = $MOD"
printf 'openssl_conf = init\n[init]\n' >default.cnf
fail() { echo "FAIL: $*"; exit 1; }
# Programs that are not ours need the ASan runtime to load ASan-built libraries (asan setup).
run() {
    if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
        LD_PRELOAD=$KEYWARD_ASAN_PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 "$@"
    else
        "$@"
    fi
}
kw() { OPENSSL_CONF=$W/keyward.cnf run openssl "$@"; }
dflt() { OPENSSL_CONF=$W/default.cnf openssl "$@"; }
head -c 2000 /dev/urandom >data

kw genpkey -propquery '?provider=keyward' -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 \
    -pkeyopt 'keyward_uri:pkcs11:token=keyring;object=pss;id=%50' -out pss.pem 2>err ||
    { cat err; fail "genpkey -algorithm RSA-PSS on the keyring token"; }
echo "ok   genpkey -algorithm RSA-PSS on the keyring token"
kw pkey -in pss.pem -pubout -out pss.pub 2>err || { cat err; fail "public key of pss.pem"; }
for h in sha256 sha384; do
    kw dgst -$h -sign pss.pem -out s.bin data 2>err || { cat err; fail "dgst -$h -sign pss.pem"; }
    dflt dgst -$h -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto -verify pss.pub \
        -signature s.bin data >/dev/null 2>err || { cat err; fail "PSS-$h signature verifies"; }
    echo "ok   PSS-$h signature verifies with the default provider"
done
kw req -new -x509 -key pss.pem -subj /CN=keyring-pss -days 2 -out cert.pem 2>err ||
    { cat err; fail "req -x509 with pss.pem"; }
dflt verify -CAfile cert.pem cert.pem >/dev/null 2>err || { cat err; fail "self-signed certificate verifies"; }
dflt x509 -in cert.pem -noout -text | grep -q 'Signature Algorithm: rsassaPss' ||
    fail "the certificate is not signed with RSASSA-PSS"
echo "ok   req -x509: an RSASSA-PSS certificate that verifies"

# The token keeps and enforces the list (not only the provider).
run pkcs11-tool --module "$MOD" --list-objects --type privkey >objs 2>&1 || { cat objs; fail "pkcs11-tool -O"; }
grep -q 'Allowed mechanisms: RSA-PKCS-PSS,.*SHA256-RSA-PKCS-PSS' objs ||
    { cat objs; fail "CKA_ALLOWED_MECHANISMS not read back from the token"; }
if run pkcs11-tool --module "$MOD" --sign --id 50 -m SHA256-RSA-PKCS -i data -o bad.bin >out 2>&1; then
    fail "the token signed PKCS#1 v1.5 with a key that allows PSS only"
fi
grep -q CKR_MECHANISM_INVALID out || { cat out; fail "PKCS#1 v1.5 refused, but not with CKR_MECHANISM_INVALID"; }
run pkcs11-tool --module "$MOD" --sign --id 50 -m SHA256-RSA-PKCS-PSS -i data -o ok.bin >out 2>&1 ||
    { cat out; fail "pkcs11-tool SHA256-RSA-PKCS-PSS"; }
echo "ok   the token refuses SHA256-RSA-PKCS (CKR_MECHANISM_INVALID) and signs SHA256-RSA-PKCS-PSS"
echo PASS
