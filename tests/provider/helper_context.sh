#!/bin/bash
# keyward's helper crypto (hashing, verification, DigestInfo, public-key operations) comes from
# the application's library context, under its default properties, and never from keyward
# itself (issue 17, item 5). Proof: an application whose default properties say fips=yes (and
# which fetches keyward's own algorithms with "-fips") gets no SHA-256 from keyward when no
# FIPS provider is loaded (the default provider's is fips=no), where a private default-provider
# context used to hash anyway; with no properties, or with "?provider=keyward" (which must not
# lead the helpers into keyward), it signs and verifies.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
EDGE=${KEYWARD_BUILD:-}/tests/provider/crypto_edge
[ -x "$EDGE" ] || kw_fail "$EDGE not built"
# A FIPS provider would satisfy fips=yes and sign: this check needs it absent.
if kw_default openssl list -providers -provider fips >/dev/null 2>&1; then
    kw_skip "a FIPS provider is installed: the fips=yes refusal cannot be shown here"
fi

for key in rsa ec; do
    uri="pkcs11:token=kwtest;object=$key"
    kw_ok "$key: signs with no default properties" "$EDGE" sign-props "$uri" ''
    kw_ok "$key: signs with ?provider=keyward (helpers stay out of keyward)" \
        "$EDGE" sign-props "$uri" '?provider=keyward'
    kw_expect_fail 'digest "SHA256" is not available' "$EDGE" sign-props "$uri" 'fips=yes'
done
echo "PASS: helper crypto follows the application's library context and properties"
