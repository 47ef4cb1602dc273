#!/bin/bash
# ECDH into a buffer shorter than the shared secret (issue 17, item 7a): the default provider
# gives the secret's first bytes; keyward failed with nothing on the error stack. Now it gives
# the same bytes; the full secret equals the peer's (default provider, software key).
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 01 EC:prime256v1 --usage-derive
kw_keygen kwtest ec384 02 EC:secp384r1 --usage-derive
kw_provider_setup
EDGE=${KEYWARD_BUILD:-}/tests/provider/crypto_edge
[ -x "$EDGE" ] || kw_fail "$EDGE not built"

for spec in ec:01:P-256 ec384:02:P-384; do
    IFS=: read -r key id curve <<<"$spec"
    kw_pubkey_pem kwtest "$id" "$key.pub"
    kw_default openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$curve" -out "peer.$key"
    out=$(kw_run "$EDGE" ecdh-short "pkcs11:token=kwtest;object=$key" "peer.$key" "$key.pub" 2>edge.err) ||
        { echo "$out"; cat edge.err; kw_fail "$key: ECDH into a short buffer"; } >&2
    grep -q "16-byte buffer: the secret's first 16 bytes" <<<"$out" || kw_fail "$key: no short derive"
    kw_log "$key: $(tr '\n' ';' <<<"$out")"
done
echo "PASS: ECDH truncates to a short buffer as the default provider does"
