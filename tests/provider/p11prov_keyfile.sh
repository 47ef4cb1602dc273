#!/bin/bash
# A key file written by pkcs11-provider (PEM "PKCS#11 PROVIDER URI": SEQUENCE { VisibleString
# description, UTF8String uri }) loads through keyward's decoder and signs on the token, as
# keyward's own key files do; one that names a public key (type=public) loads as that public key
# and verifies; a corrupted one is refused.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
kw_pubkey_pem kwtest 02 ec.pub
echo data >data

cat >p11prov.asn <<'ASN'
asn1 = SEQUENCE:seq
[seq]
desc = VISIBLESTRING:PKCS#11 Provider URI v1.0
uri = UTF8:pkcs11:token=kwtest;object=ec;type=private
ASN
kw_default openssl asn1parse -genconf p11prov.asn -out p11prov.der >/dev/null
{
    echo "-----BEGIN PKCS#11 PROVIDER URI-----"
    base64 -w 64 p11prov.der
    echo "-----END PKCS#11 PROVIDER URI-----"
} >p11prov.pem

kw_ok "sign with pkcs11-provider's key file" openssl dgst -sha256 -sign p11prov.pem -out sig data
kw_ok "the signature verifies with the token's public key" \
    kw_default openssl dgst -sha256 -verify ec.pub -signature sig data

# pkcs11-provider writes files for public keys too (type=public): they load as the public key.
sed 's/type=private/type=public/' p11prov.asn >p11prov-pub.asn
kw_default openssl asn1parse -genconf p11prov-pub.asn -out p11prov-pub.der >/dev/null
{
    echo "-----BEGIN PKCS#11 PROVIDER URI-----"
    base64 -w 64 p11prov-pub.der
    echo "-----END PKCS#11 PROVIDER URI-----"
} >p11prov-pub.pem
kw_ok "pkey -pubin reads a public key file of pkcs11-provider's" \
    openssl pkey -pubin -in p11prov-pub.pem -out pub-from-file.pem
cmp -s pub-from-file.pem ec.pub || kw_fail "the public key file does not name the token's EC key"
kw_ok "a signature verifies with pkcs11-provider's public key file" \
    openssl dgst -sha256 -verify p11prov-pub.pem -signature sig data
echo tampered >>data
kw_must_fail "and a changed message does not" openssl dgst -sha256 -verify p11prov-pub.pem \
    -signature sig data

# The same body cut short must be refused, not read as something else.
head -c 20 p11prov.der >short.der
{
    echo "-----BEGIN PKCS#11 PROVIDER URI-----"
    base64 -w 64 short.der
    echo "-----END PKCS#11 PROVIDER URI-----"
} >short.pem
rm -f sig
kw_expect_fail 'private key|decoder|unsupported|keyward' openssl dgst -sha256 -sign short.pem -out sig data
[ -s sig ] && kw_fail "a truncated key file signed"
echo "PASS: pkcs11-provider key files are read"
