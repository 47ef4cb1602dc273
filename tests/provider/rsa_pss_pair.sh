#!/bin/bash
# An RSA key whose CKA_ALLOWED_MECHANISMS are all PSS (pkcs11-tool sets them on the private key
# only) is typed alike as a private and as a public key (issue 17, item 7a), so that
# EVP_PKEY_eq matches the two halves and `s_server -key URI -cert CERT` accepts the pair:
#   - both halves RSA-PSS (the private key's allowed mechanisms decide the public key's type
#     when the private key is visible);
#   - a certificate on the token with the key's CKA_ID decides for both halves: RSASSA-PSS or
#     rsaEncryption, so the private key matches the certificate whichever it is.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_require_tools timeout
kw_token_init kwtest
kw_keygen kwtest pss 01 rsa:2048 --allowed-mechanisms RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS
kw_keygen kwtest pss2 02 rsa:2048 --allowed-mechanisms RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS
kw_provider_setup
EDGE=${KEYWARD_BUILD:-}/tests/provider/crypto_edge
[ -x "$EDGE" ] || kw_fail "$EDGE not built"
uri() { echo "pkcs11:token=kwtest;object=$1;type=$2"; }

# edge_match PRIV PUB [CERT] TYPE: both halves typed TYPE, EVP_PKEY_eq, the certificate matches.
edge_match() {
    local want=$1 out
    shift
    out=$(kw_run "$EDGE" match "$@" 2>edge.err) ||
        { echo "$out"; cat edge.err; kw_fail "no match: $*"; } >&2
    grep -q "private: $want, public: $want" <<<"$out" || { echo "$out" >&2; kw_fail "not both $want: $*"; }
    kw_log "$(tr '\n' ';' <<<"$out")"
}

# server_starts KEY CERT: s_server takes the pair and listens (still running after 3 s) rather
# than stopping with "Private key does not match the certificate public key".
server_starts() {
    local rc=0
    kw_run timeout 3 openssl s_server -accept 127.0.0.1:0 -naccept 1 -key "$1" -cert "$2" \
        </dev/null >srv.out 2>srv.err || rc=$?
    [ "$rc" = 124 ] || { cat srv.out srv.err >&2; kw_fail "s_server stopped (exit $rc) with $1 and $2"; }
    kw_log "s_server listens with $1 and $2"
}

edge_match RSA-PSS "$(uri pss private)" "$(uri pss public)"

# A certificate on the token made with the key itself: RSASSA-PSS. Now even a process that never
# logs in (the private key invisible) types the public key RSA-PSS.
kw_ok "req -x509 with the PSS-only key" openssl req -new -x509 -key "$(uri pss private)" \
    -subj /CN=pss -days 1 -sigopt rsa_padding_mode:pss -sigopt digest:sha256 -out pss.crt
kw_default openssl x509 -in pss.crt -noout -text | grep -q 'Public Key Algorithm: rsassaPss' ||
    kw_fail "the certificate's key is not RSASSA-PSS"
kw_import_cert kwtest pss 01 pss.crt
kw_ok "public key alone" openssl pkey -pubin -in "$(uri pss public)" -noout -text
openssl pkey -pubin -in "$(uri pss public)" -noout -text 2>/dev/null | grep -q 'RSA-PSS' ||
    kw_fail "the public key alone is not typed RSA-PSS with an RSASSA-PSS certificate beside it"
edge_match RSA-PSS "$(uri pss private)" "$(uri pss public)" pss.crt
server_starts "$(uri pss private)" pss.crt

# A certificate with an rsaEncryption key (made from the public key by a software CA): the pair
# is typed RSA, so it matches that certificate.
kw_pubkey_pem kwtest 02 pss2.pub
kw_default openssl req -new -x509 -newkey rsa:2048 -nodes -keyout ca.key -subj /CN=ca -days 1 \
    -out ca.crt 2>/dev/null
kw_default openssl req -new -key ca.key -subj /CN=pss2 -out pss2.csr
kw_default openssl x509 -req -in pss2.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -force_pubkey pss2.pub -out pss2.crt 2>/dev/null
kw_import_cert kwtest pss2 02 pss2.crt
edge_match RSA "$(uri pss2 private)" "$(uri pss2 public)" pss2.crt
server_starts "$(uri pss2 private)" pss2.crt
echo "PASS: both halves of a PSS-only RSA key are typed alike and match their certificate"
