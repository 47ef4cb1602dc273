#!/bin/bash
# openssl pkeyutl -sign on a SHA-256 digest with an RSA-2048 token key: PKCS#1 v1.5 and PSS with
# salt length digest, max and 32 (and digest with SHA-384); each signature checked by the default
# provider alone against the public key read by pkcs11-tool, with the exact salt length.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
KEY='pkcs11:token=kwtest;object=rsa;type=private'

head -c 1000 /dev/urandom >data
openssl dgst -sha256 -binary -out d256 data
openssl dgst -sha384 -binary -out d384 data

# PKCS#1 v1.5: a DigestInfo signature, so plain `dgst -verify` over the data must accept it too.
kw_ok "pkeyutl -sign PKCS#1 sha256" openssl pkeyutl -sign -inkey "$KEY" \
    -pkeyopt digest:sha256 -in d256 -out s.pkcs1
[ "$(stat -c %s s.pkcs1)" = 256 ] || kw_fail "PKCS#1 signature is not 256 bytes"
kw_ok "verify PKCS#1 (pkeyutl)" kw_default openssl pkeyutl -verify -pubin -inkey rsa.pub \
    -pkeyopt digest:sha256 -in d256 -sigfile s.pkcs1
kw_ok "verify PKCS#1 (dgst over data)" kw_default openssl dgst -sha256 -verify rsa.pub \
    -signature s.pkcs1 data
echo tampered >>data
kw_must_fail "verify PKCS#1 over changed data" kw_default openssl dgst -sha256 -verify rsa.pub \
    -signature s.pkcs1 data

# PSS: sign with the given salt option, verify requiring the salt length it implies
# (max for RSA-2048/SHA-256 is 256 - 32 - 2 = 222).
pss() {
    local md=$1 dfile=$2 sopt=$3 vlen=$4 sig=s.pss.$1.$3
    kw_ok "pkeyutl -sign PSS $md saltlen:$sopt" openssl pkeyutl -sign -inkey "$KEY" \
        -pkeyopt rsa_padding_mode:pss -pkeyopt digest:"$md" -pkeyopt rsa_pss_saltlen:"$sopt" \
        -in "$dfile" -out "$sig"
    kw_ok "verify PSS $md saltlen $vlen" kw_default openssl pkeyutl -verify -pubin -inkey rsa.pub \
        -pkeyopt rsa_padding_mode:pss -pkeyopt digest:"$md" -pkeyopt rsa_pss_saltlen:"$vlen" \
        -in "$dfile" -sigfile "$sig"
    # The salt length is really what was asked for: a different one must not verify.
    kw_must_fail "verify PSS $md with salt length $((vlen == 0 ? 1 : vlen - 1))" kw_default \
        openssl pkeyutl -verify -pubin -inkey rsa.pub -pkeyopt rsa_padding_mode:pss \
        -pkeyopt digest:"$md" -pkeyopt rsa_pss_saltlen:$((vlen == 0 ? 1 : vlen - 1)) \
        -in "$dfile" -sigfile "$sig"
}
pss sha256 d256 digest 32
pss sha256 d256 max 222
pss sha256 d256 32 32
pss sha384 d384 digest 48

# PSS signatures are randomised: two runs must differ (the salt is not constant).
openssl pkeyutl -sign -inkey "$KEY" -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 \
    -pkeyopt rsa_pss_saltlen:32 -in d256 -out s.again
cmp -s s.again s.pss.sha256.32 && kw_fail "two PSS signatures are identical"
echo "PASS: pkeyutl RSA PKCS#1 and PSS"
