#!/bin/bash
# Keys whose CKA_ALLOWED_MECHANISMS name one mechanism (issue 17, item 7a): keyward signs with a
# mechanism the key allows. Only the combined hash-and-sign one (SHA256-RSA-PKCS-PSS,
# SHA256-RSA-PKCS): the data goes to the token with it; only the raw one (RSA-PKCS-PSS): the host
# hashes. A digest the key cannot sign with is refused naming its CKA_ALLOWED_MECHANISMS, and so
# is a precomputed digest for a key that only hashes on the token.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest pss256 01 rsa:2048 --allowed-mechanisms SHA256-RSA-PKCS-PSS
kw_keygen kwtest rawpss 02 rsa:2048 --allowed-mechanisms RSA-PKCS-PSS
kw_keygen kwtest pkcs256 03 rsa:2048 --allowed-mechanisms SHA256-RSA-PKCS
kw_provider_setup
head -c 5000 /dev/urandom >data
openssl dgst -sha256 -binary -out d256 data
for id in 01:pss256 02:rawpss 03:pkcs256; do kw_pubkey_pem kwtest "${id%%:*}" "${id#*:}.pub"; done

# The certificate request the issue names, on the key that allows SHA256-RSA-PKCS-PSS alone.
kw_ok "req -x509 with PSS-SHA256 on a SHA256-RSA-PKCS-PSS-only key" openssl req -new -x509 \
    -key 'pkcs11:token=kwtest;object=pss256' -subj /CN=pss256 -days 1 \
    -sigopt rsa_padding_mode:pss -sigopt digest:sha256 -out pss256.crt
kw_ok "its certificate verifies" kw_default openssl verify -CAfile pss256.crt pss256.crt

# sign KEY MD [pss]: digest-sign, then verify with the public key read by pkcs11-tool.
sign() {
    local key=$1 md=$2 opts=()
    [ "${3:-}" = pss ] && opts=(-sigopt rsa_padding_mode:pss)
    kw_ok "dgst -$md -sign with $key" \
        openssl dgst "-$md" -sign "pkcs11:token=kwtest;object=$key" "${opts[@]}" -out "s.$key" data
    kw_ok "verify $key $md" kw_default openssl dgst "-$md" -verify "$key.pub" "${opts[@]}" \
        -signature "s.$key" data
}
sign pss256 sha256 pss # the token hashes (SHA256-RSA-PKCS-PSS)
sign rawpss sha384 pss # the host hashes (RSA-PKCS-PSS)
sign pkcs256 sha256    # the token hashes (SHA256-RSA-PKCS)

# Not allowed: another digest, or a digest made elsewhere for a key that hashes on the token.
kw_expect_fail 'CKA_ALLOWED_MECHANISMS' openssl dgst -sha384 -sign 'pkcs11:token=kwtest;object=pkcs256' \
    -out s data
kw_expect_fail 'sign the data' openssl pkeyutl -sign -inkey 'pkcs11:token=kwtest;object=pkcs256' \
    -pkeyopt digest:sha256 -in d256 -out s
kw_expect_fail 'sign the data' openssl pkeyutl -sign -inkey 'pkcs11:token=kwtest;object=pss256' \
    -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 -in d256 -out s
echo "PASS: keys sign with the mechanisms their CKA_ALLOWED_MECHANISMS allow"
