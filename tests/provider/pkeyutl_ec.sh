#!/bin/bash
# openssl pkeyutl -sign on a digest with ECDSA token keys on P-256, P-384 and P-521; every
# signature checked by the default provider alone with the public key read by pkcs11-tool.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest p256 01 EC:prime256v1
kw_keygen kwtest p384 02 EC:secp384r1
kw_keygen kwtest p521 03 EC:secp521r1
kw_provider_setup
head -c 1000 /dev/urandom >data

for spec in p256:01:sha256 p384:02:sha384 p521:03:sha512 p256:01:sha512 p521:03:sha256; do
    IFS=: read -r key id md <<<"$spec"
    kw_pubkey_pem kwtest "$id" "$key.pub"
    openssl dgst -"$md" -binary -out "d.$md" data
    kw_ok "pkeyutl -sign ECDSA $key $md" openssl pkeyutl -sign \
        -inkey "pkcs11:token=kwtest;object=$key" -in "d.$md" -out "s.$key.$md"
    kw_ok "verify ECDSA $key $md (pkeyutl)" kw_default openssl pkeyutl -verify -pubin \
        -inkey "$key.pub" -in "d.$md" -sigfile "s.$key.$md"
    kw_ok "verify ECDSA $key $md (dgst over data)" kw_default openssl dgst -"$md" \
        -verify "$key.pub" -signature "s.$key.$md" data
    # The signature is DER (SEQUENCE of two INTEGERs), as OpenSSL callers expect.
    kw_default openssl asn1parse -inform DER -in "s.$key.$md" | grep 'cons: SEQUENCE' >/dev/null ||
        kw_fail "ECDSA signature $key $md is not DER"
done

# Another key's public half must not verify: the signer really used the named key.
kw_must_fail "P-256 signature against the P-384 key" kw_default openssl pkeyutl -verify -pubin \
    -inkey p384.pub -in d.sha256 -sigfile s.p256.sha256
echo "PASS: pkeyutl ECDSA P-256/P-384/P-521"
