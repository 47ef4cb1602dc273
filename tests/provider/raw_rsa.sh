#!/bin/bash
# Raw RSA with token keys as with file keys (issue 17, item 7a): a raw signature takes exactly
# one modulus-sized block ("data too small for key size" otherwise, as stock OpenSSL says, not a
# 256-byte "signature" of 64 bytes), and the public-key side of raw and PKCS#1 signing works on
# a token public key: rsautl -verify and pkeyutl -verifyrecover recover what was signed.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_provider_setup
PRIV='pkcs11:token=kwtest;object=rsa;type=private'
PUB='pkcs11:token=kwtest;object=rsa;type=public'
kw_pubkey_pem kwtest 01 rsa.pub

head -c 64 /dev/urandom >d64
kw_expect_fail 'data too small for key size' openssl pkeyutl -sign -inkey "$PRIV" \
    -pkeyopt pad-mode:none -in d64 -out s64
[ -s s64 ] && kw_fail "a 64-byte raw input was signed"
# The default provider refuses the same input in the same words (the control).
kw_default openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sw.key 2>/dev/null
kw_expect_fail 'data too small for key size' kw_default openssl pkeyutl -sign -inkey sw.key \
    -pkeyopt pad-mode:none -in d64 -out s64

# A full block (below the modulus: first byte 0) signs raw and is recovered with the public key.
(printf '\000'; head -c 255 /dev/urandom) >block
kw_ok "rsautl -sign -raw with the token key" openssl rsautl -sign -raw -inkey "$PRIV" -in block -out sraw
kw_ok "rsautl -verify -raw with the token public key" openssl rsautl -verify -raw -pubin \
    -inkey "$PUB" -in sraw -out rec
cmp -s block rec || kw_fail "rsautl -verify -raw recovered other bytes"
kw_ok "pkeyutl -verifyrecover raw with the token public key" openssl pkeyutl -verifyrecover \
    -pubin -inkey "$PUB" -pkeyopt pad-mode:none -in sraw -out rec2
cmp -s block rec2 || kw_fail "pkeyutl -verifyrecover recovered other bytes"
kw_ok "the raw signature is RSA with this key (default provider)" kw_default openssl pkeyutl \
    -verifyrecover -pubin -inkey rsa.pub -pkeyopt pad-mode:none -in sraw -out rec3
cmp -s block rec3 || kw_fail "the default provider recovered other bytes"

# PKCS#1 v1.5: the padded message comes back without its padding.
echo "hello, token" >msg
kw_ok "rsautl -sign (PKCS#1) with the token key" openssl rsautl -sign -inkey "$PRIV" -in msg -out spk
kw_ok "rsautl -verify (PKCS#1) with the token public key" openssl rsautl -verify -pubin \
    -inkey "$PUB" -in spk -out rec4
cmp -s msg rec4 || kw_fail "rsautl -verify recovered other bytes"
echo "PASS: raw RSA takes a modulus-sized block; verify-recover works on token public keys"
