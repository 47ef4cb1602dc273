#!/bin/bash
# openssl storeutl on pkcs11: URIs: listing a token, -keys, -certs, public keys by type=public,
# and that what it returns matches the token's objects (compared with pkcs11-tool's view).
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_token_init other
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_keygen other elsewhere 09 EC:prime256v1
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
kw_pubkey_pem kwtest 02 ec.pub

# A certificate for the EC key, made in software from the token's public key is not possible
# without the private key, so use the provider to self-sign and put it on the token.
openssl req -new -x509 -key 'pkcs11:token=kwtest;object=ec' -subj /CN=stored -days 2 -out ec.crt
kw_import_cert kwtest ec 02 ec.crt

count() { grep -c "^[0-9]*: $1" "$2" || true; }
total() { sed -n 's/^Total found: //p' "$1"; }

kw_ok "storeutl token listing" openssl storeutl 'pkcs11:token=kwtest' >all.txt
[ "$(count Pkey all.txt)" = 2 ] || { cat all.txt; kw_fail "token listing: expected 2 private keys"; }
[ "$(count Certificate all.txt)" = 1 ] || { cat all.txt; kw_fail "token listing: expected 1 certificate"; }
grep -q -- '-----BEGIN .*PRIVATE KEY-----' all.txt && kw_fail "token listing printed a private key"
grep -q 'elsewhere' all.txt && kw_fail "token listing shows an object of another token"

kw_ok "storeutl -keys" openssl storeutl -keys 'pkcs11:token=kwtest' >keys.txt
[ "$(count Certificate keys.txt)" = 0 ] || kw_fail "-keys returned a certificate"
[ "$(count Pkey keys.txt)" = 2 ] || { cat keys.txt; kw_fail "-keys: expected 2 private keys"; }

kw_ok "storeutl -certs" openssl storeutl -certs 'pkcs11:token=kwtest' >certs.txt
[ "$(total certs.txt)" = 1 ] || { cat certs.txt; kw_fail "-certs: expected exactly 1"; }
kw_default openssl x509 -in certs.txt -noout -fingerprint -sha256 >got.fp
kw_default openssl x509 -in ec.crt -noout -fingerprint -sha256 >want.fp
cmp -s got.fp want.fp || kw_fail "-certs returned a different certificate"

kw_ok "storeutl public keys (type=public)" openssl storeutl 'pkcs11:token=kwtest;type=public' >pub.txt
[ "$(count 'Public key' pub.txt)" = 2 ] || { cat pub.txt; kw_fail "type=public: expected 2"; }
[ "$(count Pkey pub.txt)" = 0 ] || kw_fail "type=public returned a private key"
for p in rsa.pub ec.pub; do
    grep -qF "$(sed -n 2p "$p")" pub.txt || kw_fail "type=public: $p not among the keys returned"
done

kw_ok "storeutl one key by id" openssl storeutl -keys 'pkcs11:token=kwtest;id=%01;type=private' >one.txt
[ "$(total one.txt)" = 1 ] || { cat one.txt; kw_fail "id=%01: expected exactly 1 key"; }
# Its public half, as OpenSSL sees it, is the RSA key's.
kw_ok "pkey -pubout of the stored key" openssl pkey -in 'pkcs11:token=kwtest;id=%01;type=private' \
    -pubout -out one.pub
cmp -s one.pub rsa.pub || kw_fail "key id=%01 is not the RSA key"

kw_ok "storeutl -text shows no private numbers" openssl storeutl -keys -text \
    'pkcs11:token=kwtest;object=rsa' >text.txt
grep -Eqi 'privateExponent:|prime1:|prime2:|exponent1:|exponent2:|coefficient:' text.txt &&
    kw_fail "storeutl -text printed private RSA numbers"
grep -qi 'modulus' text.txt || { cat text.txt; kw_fail "storeutl -text shows no public modulus"; }

# Nothing there: no error, zero found (a listing, not a lookup of one key).
kw_ok "storeutl on an empty match" openssl storeutl 'pkcs11:token=kwtest;object=absent' >none.txt
[ "$(total none.txt)" = 0 ] || { cat none.txt; kw_fail "object=absent: expected 0"; }
echo "PASS: storeutl lists token keys, public keys and certificates"
