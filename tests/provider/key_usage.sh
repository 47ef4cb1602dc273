#!/bin/bash
# Keys that cannot sign: a public-key-only object (no private key beside it) and private keys
# whose CKA_ALLOWED_MECHANISMS exclude signing. Signing fails, names the problem, writes nothing.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest oaep-only 03 rsa:2048 --allowed-mechanisms RSA-PKCS-OAEP
kw_keygen kwtest derive-only 04 EC:prime256v1 --allowed-mechanisms ECDH1-DERIVE
kw_provider_setup
echo data >data
openssl dgst -sha256 -binary -out d256 data

# A public key alone on the token (made in software; its private half is not on the token).
kw_default openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sw.key
kw_default openssl pkey -in sw.key -pubout -out sw.pub
kw_import_pubkey kwtest pub-only 05 sw.pub

# openssl itself may refuse first ("Could not read private key", "A private key is needed")
# when the store hands it the public key it was asked for.
PUBMSG='not usable|object not found|no key|private key is needed|could not read private key'
for uri in 'pkcs11:token=kwtest;object=pub-only' 'pkcs11:token=kwtest;object=pub-only;type=public' \
    'pkcs11:token=kwtest;id=%05'; do
    rm -f sig
    kw_expect_fail "$PUBMSG" openssl dgst -sha256 -sign "$uri" -out sig data
    [ -s sig ] && kw_fail "signed with $uri"
    kw_expect_fail "$PUBMSG" openssl pkeyutl -sign -inkey "$uri" -in d256 -out sig
    [ -s sig ] && kw_fail "signed with $uri (pkeyutl)"
done
# Without type=, the reason names what is there: a public key, no private one.
kw_expect_fail 'only a public key matches' openssl dgst -sha256 -sign 'pkcs11:token=kwtest;object=pub-only' -out sig data
# Loaded explicitly as a public key, it still cannot sign.
kw_expect_fail "$PUBMSG" openssl pkeyutl -sign -pubin -inkey 'pkcs11:token=kwtest;object=pub-only;type=public' \
    -in d256 -out sig
# But it is a usable public key: it verifies what the software key signed.
kw_default openssl dgst -sha256 -sign sw.key -out sw.sig data
kw_ok "verify with the token's public-only key" openssl dgst -sha256 \
    -verify 'pkcs11:token=kwtest;object=pub-only;type=public' -signature sw.sig data

# Past the openssl command line's own check: the public key the store yields, asked to sign
# through the API, must be refused by the provider (or by OpenSSL) naming the problem.
STORE_SIGN=${KEYWARD_BUILD:-}/tests/provider/store_sign
[ -x "$STORE_SIGN" ] || kw_fail "$STORE_SIGN not built"
kw_expect_fail 'not usable' "$STORE_SIGN" \
    'pkcs11:token=kwtest;object=pub-only;type=public'
kw_log "store_sign pub-only: $(grep -Ei 'not usable' "$KW_FAIL_STDERR" | head -1)"
# The private key of a usable pair signs through the same helper (the helper can succeed).
kw_keygen kwtest good 06 EC:prime256v1
kw_ok "store_sign with a private key" "$STORE_SIGN" 'pkcs11:token=kwtest;object=good;type=private'

for k in oaep-only derive-only; do
    rm -f sig
    kw_expect_fail 'not usable for this operation' openssl dgst -sha256 -sign "pkcs11:token=kwtest;object=$k" \
        -out sig data
    [ -s sig ] && kw_fail "$k signed"
done
echo "PASS: keys that cannot sign are refused with a message"
