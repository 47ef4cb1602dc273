#!/bin/bash
# The digest of a digest-sign cannot change once it has begun (issue 17, item 2): OpenSSL's own
# providers refuse a different digest after init ("digest SHA512 != SHA256"); keyward let it
# change after data was fed and signed a DigestInfo naming SHA-512 over a SHA-256 hash. Naming
# the same digest again is accepted, and the signature is a SHA-256 one.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
EDGE=${KEYWARD_BUILD:-}/tests/provider/crypto_edge
[ -x "$EDGE" ] || kw_fail "$EDGE not built"

for key in rsa ec; do
    out=$(kw_run "$EDGE" md-change "pkcs11:token=kwtest;object=$key" 2>edge.err) ||
        { echo "$out"; cat edge.err; kw_fail "$key: the digest changed in the middle of a digest-sign"; } >&2
    grep -q 'cannot change during a digest-sign' <<<"$out" ||
        { echo "$out" >&2; kw_fail "$key: the refusal gives no reason"; }
    grep -q 'signature: SHA-256, verified' <<<"$out" || kw_fail "$key: no SHA-256 signature"
    kw_log "$key: digest change refused, SHA-256 signature verified"
done
echo "PASS: the digest of a digest-sign cannot change once begun"
