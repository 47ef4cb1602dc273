#!/bin/bash
# OSSL_STORE searches (OSSL_STORE_SEARCH(3)) on pkcs11: URIs, through openssl storeutl: by
# subject name, by issuer and serial, by key fingerprint (a certificate's own or its key's; a
# key's SubjectPublicKeyInfo) and by alias (the label). Each finds what it names and nothing
# else, and a search that names nothing finds nothing.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 0001 EC:prime256v1
kw_keygen kwtest rsa 0002 rsa:2048
kw_provider_setup
REQ=(openssl req -new -x509 -days 2)
"${REQ[@]}" -key 'pkcs11:token=kwtest;object=ec' -subj '/O=keyward/CN=ec cert' -set_serial 4660 \
    -out ec.crt 2>req.err || { cat req.err; kw_fail "self-signed EC certificate"; }
"${REQ[@]}" -key 'pkcs11:token=kwtest;object=rsa' -subj '/O=keyward/CN=rsa cert' -set_serial 4661 \
    -out rsa.crt 2>req.err || { cat req.err; kw_fail "self-signed RSA certificate"; }
kw_import_cert kwtest ec 0001 ec.crt
kw_import_cert kwtest rsa 0002 rsa.crt

count() { grep -c "^[0-9]*: $1\$" "$2" || true; }
total() { sed -n 's/^Total found: //p' "$1"; }
fp() { kw_default openssl x509 -in "$1" -noout -fingerprint "-$2" | sed 's/.*=//; s/://g'; }
spki_fp() {
    kw_default openssl x509 -in "$1" -noout -pubkey | kw_default openssl pkey -pubin -outform DER |
        kw_default openssl dgst "-$2" -r | cut -d' ' -f1
}
# find NAME EXPECTED_TOTAL ARGS...: storeutl ARGS into NAME.txt; the total must be as expected.
# OpenSSL 3.0's storeutl exits 0 after a failed load, so "not supported" counts by its words.
find() {
    local name=$1 want=$2
    shift 2
    kw_run openssl storeutl "$@" >"$name.txt" 2>"$name.err" || true
    if grep -q "support the given search" "$name.err"; then
        cat "$name.err" >&2
        kw_fail "storeutl $*: search not supported"
    fi
    [ "$(total "$name.txt")" = "$want" ] || {
        cat "$name.txt" "$name.err" >&2
        kw_fail "storeutl $*: expected $want found"
    }
    kw_log "ok: storeutl $* found $want"
}
same_cert() { # LISTING CERT.pem
    kw_default openssl x509 -in "$1" -noout -fingerprint -sha256 >a.fp 2>/dev/null || kw_fail "$1 holds no certificate"
    kw_default openssl x509 -in "$2" -noout -fingerprint -sha256 >b.fp
    cmp -s a.fp b.fp || kw_fail "$1 is not $2"
}

find subject 1 -certs -subject '/O=keyward/CN=ec cert' 'pkcs11:type=cert'
same_cert subject.txt ec.crt
find subject-any 1 -subject '/O=keyward/CN=rsa cert' 'pkcs11:'
same_cert subject-any.txt rsa.crt
[ "$(count Pkey subject-any.txt)" = 0 ] || kw_fail "a subject search returned a key"
find subject-none 0 -certs -subject '/O=keyward/CN=nobody' 'pkcs11:'

find issuer 1 -certs -issuer '/O=keyward/CN=rsa cert' -serial 4661 'pkcs11:'
same_cert issuer.txt rsa.crt
find issuer-wrong-serial 0 -certs -issuer '/O=keyward/CN=rsa cert' -serial 4660 'pkcs11:'

find cert-fp 1 -sha256 -fingerprint "$(fp ec.crt sha256)" 'pkcs11:'
same_cert cert-fp.txt ec.crt
find key-fp 2 -noout -text -sha1 -fingerprint "$(spki_fp rsa.crt sha1)" 'pkcs11:token=kwtest'
[ "$(count Pkey key-fp.txt)" = 1 ] && [ "$(count Certificate key-fp.txt)" = 1 ] ||
    { cat key-fp.txt; kw_fail "key fingerprint: expected the RSA key and its certificate"; }
grep -q 'URI: .*object=rsa' key-fp.txt || { cat key-fp.txt; kw_fail "key fingerprint found another key"; }
find key-fp-pub 1 -sha256 -fingerprint "$(spki_fp ec.crt sha256)" 'pkcs11:type=public'
find fp-none 0 -sha256 -fingerprint "$(printf '%064d' 0)" 'pkcs11:'

find alias 2 -alias rsa 'pkcs11:'
[ "$(count Pkey alias.txt)" = 1 ] && [ "$(count Certificate alias.txt)" = 1 ] ||
    { cat alias.txt; kw_fail "alias rsa: expected the RSA key and its certificate"; }
same_cert alias.txt rsa.crt
find alias-certs 1 -certs -alias ec 'pkcs11:'
same_cert alias-certs.txt ec.crt
# The URI's object= and the alias both name the label: different ones match nothing.
find alias-vs-object 0 -alias rsa 'pkcs11:object=ec'
echo "PASS: storeutl searches by subject, issuer and serial, fingerprint and alias"
