#!/bin/bash
# Errors that name the real cause (issue 14, item 9): a wrong or missing CA PIN was reported as a
# policy refusal (and audit.log recorded that), a wrong PIN through a key file as "STORE
# routines::unsupported", a keyring this process does not possess without a hint, a missing
# keyward.so as a "token or PIN problem". Each error says what failed and what to do, every
# error line starts "keyward:", and audit.log records the same reason.
. "$(dirname "$0")/lib.sh"
need_softhsm
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" \
    --subject "CN=Err CA,O=Example" --pin-source "file:$T/ca.pin"
OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=alice/O=Example" -out "$T/alice.csr" 2>/dev/null
only_keyward_lines() { # every line of stderr is a keyward error line
    # (under the valgrind setups memcheck's own "--PID--"/"==PID==" lines are not keyward's)
    if grep -v -e '^keyward:' -e '^--[0-9]*--' -e '^==[0-9]*==' "$T/err"; then
        fail "$1: an error line does not start with keyward:"
    fi
}

printf 99999999 > "$T/ca.pin"
expect_rc 1 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
grep -q "PIN incorrect" "$T/err" && grep -q "$T/ca.pin" "$T/err" ||
    { cat "$T/err"; fail "wrong PIN: the cause and the PIN file are not named"; }
grep -qi "policy" "$T/err" && { cat "$T/err"; fail "wrong PIN reported as a policy refusal"; }
only_keyward_lines "wrong PIN"
tail -1 "$P/audit.log" | grep -q '"error":"[^"]*PIN incorrect' ||
    { tail -1 "$P/audit.log"; fail "audit.log does not record the PIN as the reason"; }
tail -1 "$P/audit.log" | grep -qi policy && fail "audit.log records a policy refusal"
ok "wrong CA PIN: named, with the PIN file, in stderr and audit.log"

rm "$T/ca.pin"
expect_rc 1 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
grep -q "PIN file.*$T/ca.pin.*No such file" "$T/err" && ! grep -qi policy "$T/err" ||
    { cat "$T/err"; fail "missing PIN file"; }
only_keyward_lines "missing PIN file"
tail -1 "$P/audit.log" | grep -q "PIN file" || fail "audit.log: missing PIN file"
# no PIN source at all
sed -i '/^pin_source/d' "$P/keyward.conf"
expect_rc 1 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client </dev/null
grep -q "PIN required" "$T/err" && grep -q -- "--pin-source file:" "$T/err" && ! grep -qi policy "$T/err" ||
    { cat "$T/err"; fail "no PIN source"; }
ok "missing PIN file and missing PIN source are named"

# a key file (the KEYWARD KEY URI PEM that ca init keeps) as the CA key, with a wrong PIN
printf 'pin_source = file:%s\n' "$T/ca.pin" >> "$P/keyward.conf"
printf 99999999 > "$T/ca.pin"
chmod 600 "$T/ca.pin"
sed -i "s|^ca_key = .*|ca_key = $P/ca/ca-key-1.pem|" "$P/keyward.conf"
grep -q "^ca_key = $P/ca/ca-key-1.pem" "$P/keyward.conf" || skip "keyward.conf format changed"
expect_rc 1 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
grep -q "PIN incorrect" "$T/err" || { cat "$T/err"; fail "key file: the PIN reason is lost"; }
only_keyward_lines "key file"
printf 11112222 > "$T/ca.pin"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client
ok "wrong PIN through a key file is named"

# keyward.so missing (a build tree without KEYWARD_PROVIDER_PATH)
make_token ca2 1234
KEYWARD_PROVIDER_PATH=$T/nowhere/keyward.so expect_rc 1 "$KW" --dir "$T/pki2" ca init \
    --key "pkcs11:token=ca2;object=k" --subject CN=x --pin-source "file:$T/ca2.pin"
grep -q "keyward.so not found at $T/nowhere/keyward.so" "$T/err" &&
    grep -q "KEYWARD_PROVIDER_PATH" "$T/err" && ! grep -q "token or PIN problem" "$T/err" ||
    { cat "$T/err"; fail "missing provider"; }
only_keyward_lines "missing provider"
ok "a missing keyward.so is named with KEYWARD_PROVIDER_PATH"

# a user: keyring that this process does not possess (a fresh session keyring without @u)
KMOD=$KEYWARD_BUILD/pkcs11/keyward-pkcs11.so
if [ -f "$KMOD" ] && command -v keyctl >/dev/null && keyctl session - true 2>/dev/null; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/k.pem" 2>/dev/null
    echo "token kr user:kwt-errors-$$" > "$T/kr.conf"
    KEYWARD_PKCS11_CONF=$T/kr.conf KEYWARD_PKCS11_MODULE=$KMOD \
        keyctl session - "$KW" keyring import "$T/k.pem" --label e >"$T/out" 2>"$T/err" &&
        skip "the keyring was possessed in a new session (cannot test the hint)"
    sed -i '/^Joined session keyring/d' "$T/err" # keyctl's own line
    grep -q "keyctl link @u @s" "$T/err" && grep -q "session: token" "$T/err" ||
        { cat "$T/err"; fail "keyring possession: no hint"; }
    only_keyward_lines "keyring"
    keyctl unlink "%keyring:kwt-errors-$$" @u >/dev/null 2>&1 || true
    ok "a keyring not possessed: the hint names keyctl link @u @s and session: tokens"
else
    echo "# keyring part skipped: keyward-pkcs11.so or keyctl sessions unavailable"
fi
echo PASS
