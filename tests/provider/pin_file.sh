#!/bin/bash
# PIN files that must be refused with a message naming the PIN file: missing, readable by group,
# readable by others, a symlink, a directory — from the config and from the URI's pin-source.
# Nothing is signed, and the PIN is not used from such a file.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
echo data >data
KEY='pkcs11:token=kwtest;object=ec'

cp "$KW_PIN_FILE" group.pin && chmod 640 group.pin
cp "$KW_PIN_FILE" world.pin && chmod 604 world.pin
cp "$KW_PIN_FILE" gwrite.pin && chmod 620 gwrite.pin
ln -s "$KW_PIN_FILE" link.pin
mkdir -m 700 dir.pin

refused() {
    local pinfile=$1
    kw_provider_cnf bad.cnf "file:$pinfile"
    rm -f sig
    kw_expect_fail 'PIN file' env OPENSSL_CONF=bad.cnf openssl dgst -sha256 -sign "$KEY" -out sig data
    [ -s sig ] && kw_fail "signed with PIN file $pinfile"
    # The message names the file.
    grep -q "$(basename "$pinfile")" "$KW_FAIL_STDERR" || kw_fail "message does not name $pinfile"
    # Same file named by the URI (config has the good PIN file: the URI's must still be refused).
    rm -f sig
    kw_expect_fail 'PIN file' openssl dgst -sha256 -sign "$KEY;pin-source=file:$pinfile" -out sig data
    [ -s sig ] && kw_fail "signed with URI pin-source $pinfile"
    return 0
}
refused "$KW_TMP/missing.pin"
refused "$KW_TMP/group.pin"
refused "$KW_TMP/world.pin"
refused "$KW_TMP/gwrite.pin"
refused "$KW_TMP/link.pin"
refused "$KW_TMP/dir.pin"
# A group/world-readable file: the message says why.
kw_provider_cnf bad.cnf "file:$KW_TMP/world.pin"
kw_expect_fail 'PIN file' env OPENSSL_CONF=bad.cnf openssl dgst -sha256 -sign "$KEY" -out sig data
grep -Eqi 'group|other|mode|permission' "$KW_FAIL_STDERR" || kw_fail "no reason given for refusing world.pin"

# 0400 and 0600 are fine.
chmod 400 group.pin
kw_provider_cnf ok.cnf "file:$KW_TMP/group.pin"
kw_ok "sign with a 0400 PIN file" env OPENSSL_CONF=ok.cnf openssl dgst -sha256 -sign "$KEY" -out sig data
kw_ok "sign with a 0600 PIN file from the URI" openssl dgst -sha256 \
    -sign "$KEY;pin-source=file:$KW_PIN_FILE" -out sig data
echo "PASS: unusable PIN files refused with a message"
