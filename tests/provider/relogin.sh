#!/bin/bash
# The token logs keyward out (another user of the module in the same process calls C_Logout):
# the next signature logs in again with the PIN keyward has, and succeeds.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
for key in rsa ec; do
    kw_ok "$key: sign, logged out behind keyward's back, sign again" \
        "$KEYWARD_BUILD/tests/provider/relogin" "pkcs11:token=kwtest;object=$key" "$KW_MODULE"
done
echo "PASS: keyward logs in again after the token logged it out"
