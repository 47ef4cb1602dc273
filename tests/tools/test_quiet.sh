#!/bin/bash
# Quieter and more helpful defaults (issue 14, item 13): -q for cron (errors only), a note while
# a key is generated on the token, `keyward help keyring` and `keyward keyring import --help`,
# the keyring commands in keyward(1), every error line starting "keyward:".
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --key-type rsa:2048 \
    --subject "CN=Quiet CA,O=Example" --pin-source "file:$T/ca.pin"
grep -q "^keyward: generating RSA-2048 on token ca" "$T/err" ||
    { cat "$T/err"; fail "no note while the key is generated"; }
ok "a note names the key type and token while generating"

expect_rc 0 "$KW" -q --dir "$P" ca crl
[ -s "$T/out" ] || [ -s "$T/err" ] && { cat "$T/out" "$T/err"; fail "-q ca crl is not silent"; }
expect_rc 0 "$KW" --dir "$P" -q check
[ -s "$T/out" ] || [ -s "$T/err" ] && { cat "$T/out" "$T/err"; fail "-q check (all fine) is not silent"; }
expect_rc 0 "$KW" -q --dir "$P" ca rotate --key "pkcs11:token=ca;object=ca-key-2"
[ -s "$T/out" ] || [ -s "$T/err" ] && { cat "$T/out" "$T/err"; fail "-q ca rotate is not silent"; }
chmod 644 "$P/keyward.conf"
expect_rc 1 "$KW" -q --dir "$P" check
[ -s "$T/out" ] && fail "-q check wrote to stdout"
grep -q "^keyward: FAIL.*keyward.conf" "$T/err" || { cat "$T/err"; fail "-q check hides what failed"; }
grep -v "^keyward:" "$T/err" && fail "-q: an error line does not start with keyward:"
chmod 600 "$P/keyward.conf"
expect_rc 1 "$KW" -q --dir "$P" ca revoke nosuchname
grep -q "^keyward: " "$T/err" || fail "-q hides errors"
expect_rc 0 "$KW" -q --dir "$P" --json ca list
python3 -m json.tool "$T/out" >/dev/null || fail "-q --json dropped the JSON"
ok "-q: silent when fine, errors (and check's FAIL lines) when not"

expect_rc 0 "$KW" help keyring
grep -q "keyward keyring import" "$T/out" && grep -q "keyward keyring list" "$T/out" || fail "help keyring"
expect_rc 0 "$KW" help keyring import
grep -q "usage: keyward keyring import KEYFILE --label NAME" "$T/out" || fail "help keyring import"
expect_rc 0 "$KW" keyring import --help
grep -q "usage: keyward keyring import" "$T/out" || fail "keyring import --help"
expect_rc 0 "$KW" keyring remove -h
grep -q "usage: keyward keyring remove" "$T/out" || fail "keyring remove -h"
expect_rc 1 "$KW" keyring import "$T/missing.pem" --label x
grep -q "^keyward: keyring: " "$T/err" || { cat "$T/err"; fail "keyring error line prefix"; }
ok "keyring help works and its errors start keyward:"

MAN=${KEYWARD_SRC:-$(dirname "$0")/../..}/docs/keyward.1.md
for w in "keyring import" "keyring list" "keyring remove" "### show" "-q"; do
    grep -q -- "$w" "$MAN" || fail "keyward(1) does not document '$w'"
done
ok "keyward(1) has the keyring commands, show and -q"
echo PASS
