#!/bin/bash
# A caller that expects a public key (OSSL_STORE_expect(ctx, OSSL_STORE_INFO_PUBKEY), as
# `openssl pkey -pubin` does) gets one from its first load of a URI that matches a private key,
# its public key and a certificate: with and without token=, with type=public, with type=private
# (the private key's public half, as from a private key file) and for a key whose token keeps
# no public key object.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 0001 EC:prime256v1
kw_keygen kwtest rsa 0002 rsa:2048
kw_keygen kwtest lone 0003 rsa:2048
kw_provider_setup
kw_pubkey_pem kwtest 0001 ec.pub
kw_pubkey_pem kwtest 0003 lone.pub
openssl req -new -x509 -key 'pkcs11:token=kwtest;object=ec' -subj /CN=pub -days 2 -out ec.crt
kw_import_cert kwtest ec 0001 ec.crt
# The third key's public object goes: only its private key (and its public values) remain.
_kw_p11 kwtest --delete-object --type pubkey --id 0003 >del.log 2>&1 || { cat del.log; kw_fail "delete pubkey"; }
kw_objects kwtest | grep -A3 '^Public Key' | grep -q 'label: *lone' && kw_fail "the public object of lone is still there"

LOAD=${KEYWARD_BUILD:-}/tests/provider/store_pubkey
[ -x "$LOAD" ] || kw_fail "$LOAD not built"

want() { # URI PUB.pem
    kw_ok "first load of $1 expecting a public key" "$LOAD" "$1" got.pem
    cmp -s got.pem "$2" || { cat got.pem; kw_fail "$1: not the public key of $2"; }
}
want 'pkcs11:token=kwtest;id=%00%01' ec.pub
want 'pkcs11:id=%00%01' ec.pub
want 'pkcs11:type=public;id=%00%01' ec.pub
want 'pkcs11:token=kwtest;id=%00%01;type=private' ec.pub
want 'pkcs11:token=kwtest;object=lone' lone.pub
kw_ok "pkey -pubin on type=private" openssl pkey -pubin -in 'pkcs11:token=kwtest;object=ec;type=private' \
    -out pkey.pem
cmp -s pkey.pem ec.pub || kw_fail "pkey -pubin on type=private: not the EC public key"

# A certificate is not a public key, and nothing there is nothing.
kw_expect_fail 'no public key' "$LOAD" 'pkcs11:token=kwtest;id=%00%01;type=cert' none.pem
kw_expect_fail 'no public key' "$LOAD" 'pkcs11:token=kwtest;object=absent' none.pem
echo "PASS: callers expecting public keys get them"
