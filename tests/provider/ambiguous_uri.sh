#!/bin/bash
# A URI that matches more than one private key must not sign with an arbitrary one of them: it
# is refused naming the ambiguity; listing (storeutl) still shows them all.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest twin 01 EC:prime256v1
kw_keygen kwtest twin 02 EC:prime256v1
kw_provider_setup
echo data >data

kw_ok "storeutl lists both keys" openssl storeutl -keys 'pkcs11:token=kwtest;object=twin' >list.txt
[ "$(grep -c '^[0-9]*: Pkey' list.txt)" = 2 ] || { cat list.txt; kw_fail "expected two keys listed"; }
kw_expect_fail 'more than one' openssl dgst -sha256 -sign 'pkcs11:token=kwtest;object=twin' \
    -out sig data
# Naming one of them by id works.
kw_ok "sign with object=twin;id=%02" openssl dgst -sha256 -sign 'pkcs11:token=kwtest;object=twin;id=%02' \
    -out sig data
echo "PASS: ambiguous key URI refused"
