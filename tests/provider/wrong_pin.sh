#!/bin/bash
# A wrong PIN (from the config's keyward-pin-source and from the URI's pin-source) fails with a
# message saying the PIN is incorrect; keyward tries it once per command (one C_Login, never a
# retry loop) so it cannot lock the token; afterwards the right PIN still works. The debug log
# never contains either PIN.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
kw_pubkey_pem kwtest 02 ec.pub
echo data >data
KEY='pkcs11:token=kwtest;object=ec'

(umask 077 && printf '%s' 999999 >wrong.pin)
[ "$(cat wrong.pin)" != "$(cat "$KW_PIN_FILE")" ] || kw_fail "wrong PIN equals the right one"
kw_provider_cnf wrongpin.cnf "file:$KW_TMP/wrong.pin"

for attempt in 1 2; do
    kw_expect_fail 'PIN incorrect|wrong PIN' env OPENSSL_CONF=wrongpin.cnf KEYWARD_DEBUG=file:"$KW_TMP/debug.$attempt.log",2 \
        openssl dgst -sha256 -sign "$KEY" -out sig data
    [ -s sig ] && kw_fail "a signature was written with a wrong PIN"
    # Exactly one login attempt per command: no retry loop.
    logins=$(grep -c 'C_Login' "debug.$attempt.log" || true)
    [ "$logins" = 1 ] || { grep C_Login "debug.$attempt.log" >&2 || true; kw_fail "attempt $attempt: $logins C_Login calls (want 1)"; }
done

# The URI's own pin-source, wrong, with the config's (right) one present: the URI wins and fails.
kw_expect_fail 'PIN incorrect|wrong PIN' openssl dgst -sha256 \
    -sign "$KEY;pin-source=file:$KW_TMP/wrong.pin" -out sig data

# Not locked: the token still reports the PIN usable and a correct-PIN signature works.
_kw_p11_public kwtest --list-token-slots >slots.txt 2>/dev/null
grep -qi 'pin locked' slots.txt && { cat slots.txt; kw_fail "user PIN is locked"; }
kw_ok "sign with the right PIN after three wrong attempts" openssl dgst -sha256 -sign "$KEY" -out sig data
kw_ok "the signature verifies" kw_default openssl dgst -sha256 -verify ec.pub -signature sig data

# Neither PIN appears in the debug logs.
for f in debug.*.log; do
    grep -qF "$(cat wrong.pin)" "$f" && kw_fail "$f contains the (wrong) PIN"
    grep -qF "$(cat "$KW_PIN_FILE")" "$f" && kw_fail "$f contains the user PIN"
done
KEYWARD_DEBUG=file:"$KW_TMP/debug.ok.log",2 openssl dgst -sha256 -sign "$KEY" -out sig data
grep -q 'C_Login' debug.ok.log || kw_fail "debug log has no C_Login line: the login count check above is void"
grep -qF "$(cat "$KW_PIN_FILE")" debug.ok.log && kw_fail "debug log of a good login contains the PIN"
# A PIN given in the URI (pin-value) is not repeated by keyward's errors that name the URI: not
# on stderr, not in the debug log (a wrong token and a wrong object both print the URI).
pin=$(cat "$KW_PIN_FILE")
for uri in "pkcs11:token=nope;object=ec?pin-value=$pin" "pkcs11:token=kwtest;object=nope?pin-value=$pin"; do
    rm -f pinv.log
    if KEYWARD_DEBUG=file:"$KW_TMP/pinv.log",2 openssl dgst -sha256 -sign "$uri" -out sig data \
        >pinv.out 2>&1; then
        kw_fail "signing with $uri (no such key) succeeded"
    fi
    grep -q 'pin-value=\*\*\*' pinv.out || { cat pinv.out >&2; kw_fail "the error does not name the (redacted) URI"; }
    # (openssl's own "Could not read private key from URI" repeats its argument: not ours.)
    grep keyward pinv.out | grep -qF "$pin" && kw_fail "keyward's error repeats the URI's pin-value"
    grep -qF "$pin" pinv.log && kw_fail "the debug log repeats the URI's pin-value"
    [ "$(stat -c %a pinv.log)" = 600 ] || kw_fail "the debug log is not created 0600"
done
echo "PASS: wrong PIN refused once per command, token not locked, PIN never logged"
