#!/bin/bash
# Bad key names: malformed pkcs11: URIs, a token that does not exist, a key that does not exist.
# Each must fail (non-zero exit, no output file) with a message naming the problem.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
echo data >data
openssl dgst -sha256 -binary -out d256 data

sign_dgst() { rm -f sig; openssl dgst -sha256 -sign "$1" -out sig data </dev/null; }
sign_pkeyutl() { rm -f sig; openssl pkeyutl -sign -inkey "$1" -in d256 -out sig </dev/null; }
no_output() { if [ -s sig ]; then kw_fail "a signature was written for $1"; fi; }

for sign in sign_dgst sign_pkeyutl; do
    # Malformed: bad percent-encoding, an attribute RFC 7512 does not have, a bad type value.
    for uri in 'pkcs11:token=kwtest;object=%zz' 'pkcs11:token=kwtest;id=%1' \
        'pkcs11:token=kwtest;colour=blue;object=ec' 'pkcs11:token=kwtest;object=ec;type=banana'; do
        kw_expect_fail 'malformed' "$sign" "$uri"
        no_output "$uri"
    done
    kw_expect_fail 'token not found' "$sign" 'pkcs11:token=nosuch;object=ec'
    # The message says which URI: the token label is in it.
    grep 'token not found' "$KW_FAIL_STDERR" | grep -q 'nosuch' || kw_fail "token not found without the URI"
    kw_expect_fail 'token not found' "$sign" 'pkcs11:serial=0000000000000000;object=ec'
    kw_expect_fail 'object not found|no key' "$sign" 'pkcs11:token=kwtest;object=nosuch'
    kw_expect_fail 'object not found|no key' "$sign" 'pkcs11:token=kwtest;id=%7f'
    kw_expect_fail 'object not found|no key' "$sign" 'pkcs11:token=kwtest;object=ec;type=cert'
    no_output nosuch
done

# The same through storeutl and pkey, which open the URI without signing.
kw_expect_fail 'malformed' openssl pkey -in 'pkcs11:token=kwtest;object=%zz' -pubout
# storeutl goes on after a failed load (OpenSSL 3.0 exits 0 when the open succeeded), so only
# the message is required of it.
openssl storeutl 'pkcs11:token=nosuch' >st.out 2>st.err || true
grep -q 'token not found' st.err || { cat st.err; kw_fail "storeutl on an unknown token: no 'token not found'"; }
grep -q '^Total found: [1-9]' st.out && kw_fail "storeutl found objects on an unknown token"
kw_expect_fail 'object not found|no key' openssl pkey -in 'pkcs11:token=kwtest;object=nosuch' -pubout

# After all that, the good URI still works in the same setup (the errors were about the URIs).
kw_ok "sign with the good URI" sign_dgst 'pkcs11:token=kwtest;object=ec'
echo "PASS: malformed URI, unknown token, unknown key are refused with clear messages"
