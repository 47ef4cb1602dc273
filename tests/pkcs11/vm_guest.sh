#!/bin/bash
# Runs inside the VM (see vm.sh): MOD, API, TOOL, W, KEYWARD_PKCS11_CONF and KW_VM_OUT are set.
set -u -o pipefail
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
P() { pkcs11-tool --module "$MOD" "$@"; }
# Under the asan setup the module is an ASan build: pkcs11-tool gets the runtime (its own
# allocations not leak-checked; the module's are, through api_test).
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
    P() {
        LD_PRELOAD=$KEYWARD_ASAN_PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 \
            pkcs11-tool --module "$MOD" "$@"
    }
fi
echo "guest kernel $(uname -r); PKCS#8 parser: $(grep -c '^pkcs8_key_parser' /proc/modules)"

model=$(P -L 2>/dev/null | sed -n 's/ *token model *: //p')
[ "$model" = kernel ] && ok "token model: kernel" || bad "token model is '$model', want kernel"

id=1
for b in 2048 3072 4096; do
    if [ $b = 3072 ] && [ -n "$TOOL" ]; then
        "$TOOL" import "$W/rsa$b.pem" --label rsa$b --id 0$id >/tmp/imp.log 2>&1 ||
            { bad "keyward keyring import RSA-$b"; cat /tmp/imp.log; }
    else
        P --write-object "$W/rsa$b.pem" --type privkey --id 0$id --label rsa$b >/dev/null 2>&1 ||
            bad "pkcs11-tool import RSA-$b"
    fi
    P --sign --id 0$id -m SHA256-RSA-PKCS -i "$W/data" -o "$KW_VM_OUT/sig$b.pkcs1" >/dev/null 2>&1 || bad "sign PKCS#1 RSA-$b"
    P --sign --id 0$id -m SHA256-RSA-PKCS-PSS -i "$W/data" -o "$KW_VM_OUT/sig$b.pss" >/dev/null 2>&1 || bad "sign PSS RSA-$b"
    P --decrypt --id 0$id -m RSA-PKCS -i "$W/ct$b.pkcs1" -o "$KW_VM_OUT/pt$b.pkcs1" >/dev/null 2>&1 || bad "decrypt PKCS#1 RSA-$b"
    P --decrypt --id 0$id -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i "$W/ct$b.oaep" \
        -o "$KW_VM_OUT/pt$b.oaep" >/dev/null 2>&1 || bad "decrypt OAEP RSA-$b"
    id=$((id + 1))
done

# Every private operation goes through the blinded raw path, PKCS#1 v1.5 signatures included
# (issue 17: enc=pkcs1 signed a block the caller chose, unblinded).
KEYWARD_DEBUG=file:/tmp/trace.log,2 P --sign --id 01 -m SHA256-RSA-PKCS -i "$W/data" -o /tmp/s.bin >/dev/null 2>&1 ||
    bad "sign PKCS#1 with the trace log on"
if grep -q "enc=raw, blinded" /tmp/trace.log && ! grep -q "enc=pkcs1" /tmp/trace.log; then
    ok "PKCS#1 signature in the kernel is blinded (enc=raw, never enc=pkcs1)"
else
    bad "PKCS#1 signature blinded"; grep "private operation" /tmp/trace.log | head -3
fi

# The kernel holds the private keys: asymmetric keys, and they cannot be read back.
keyctl show @s >/tmp/ks
n=$(grep -c 'asymmetric: keyward:priv:' /tmp/ks)
[ "$n" = 3 ] && ok "3 private keys are kernel asymmetric keys" || { bad "asymmetric keys: $n"; cat /tmp/ks; }
for k in $(awk '/asymmetric: keyward:priv:/{print $1}' /tmp/ks); do
    if keyctl read "$k" >/dev/null 2>/tmp/read.err; then
        bad "keyctl read of private key $k succeeded"
    else
        ok "keyctl read of private key $k fails: $(head -1 /tmp/read.err)"
    fi
done
if [ -n "$TOOL" ]; then
    "$TOOL" list >/tmp/list 2>&1
    grep rsa2048 /tmp/list | grep -qw kernel && ok "keyward keyring list says kernel" || { bad "keyring list"; cat /tmp/list; }
fi

"$API" "$MOD" kernel >/tmp/api.log 2>&1 && ok "api_test in kernel mode (templates, threads, fork)" ||
    { bad "api_test in kernel mode"; grep FAIL /tmp/api.log | head -20; }
echo "$FAILS failure(s) in the guest"
[ $FAILS = 0 ]
