#!/bin/bash
# tpm2-pkcs11 itself uses libcrypto (hashing, public-key checks, ECDSA encoding). With keyward
# loaded from OPENSSL_CONF for every program, libcrypto inside tpm2-pkcs11 must not call back
# into keyward (which would call tpm2-pkcs11 again: recursion, a deadlock on a lock held by
# C_Initialize, or a crash). Every command runs under a timeout: a hang fails as "hangs", a
# signal as "crashed". Both load modes: early (module loaded while OpenSSL reads its config)
# and lazy. The KEYWARD_DEBUG log must show one provider initialisation per process.
set -euo pipefail
. "${KEYWARD_SRC:?run through meson test}/tests/fixtures/tpm.sh"
command -v pkcs11-tool >/dev/null || kw_skip "pkcs11-tool missing (opensc)"
kw_tpm_start
cd "$KW_TPM_DIR"
printf 'openssl_conf = plain_init\n[plain_init]\n' >plain.cnf
kw_tpm_openssl_cnf early.cnf "keyward-load = early"
kw_tpm_openssl_cnf lazy.cnf "keyward-load = lazy"
plain() { OPENSSL_CONF=$KW_TPM_DIR/plain.cnf openssl "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
head -c 1000 /dev/urandom >data

# bounded MODE NAME CMD...: run CMD with keyward loaded globally in MODE, debug log to dbg.MODE.
bounded() {
    local mode=$1 name=$2 rc=0
    shift 2
    OPENSSL_CONF=$KW_TPM_DIR/$mode.cnf KEYWARD_DEBUG="file:$KW_TPM_DIR/dbg.$mode,1" \
        LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-} timeout 60 "$@" >out.txt 2>err.txt || rc=$?
    [ $rc = 124 ] && fail "$mode: $name hangs (recursion or deadlock?)"
    [ $rc -ge 128 ] && { cat err.txt >&2; fail "$mode: $name crashed (exit $rc)"; }
    [ $rc = 0 ] || { cat out.txt err.txt >&2; fail "$mode: $name failed (exit $rc)"; }
    echo "ok - $mode: $name"
}

# pkcs11-tool takes the PIN from the environment (never argv).
export KW_PIN
KW_PIN=$(cat "$KW_TPM_PIN_FILE")
P11=(pkcs11-tool --module "$KW_TPM_MODULE" --login --pin env:KW_PIN)
for mode in early lazy; do
    rm -f "dbg.$mode"
    # tpm2-pkcs11 used directly by a program whose libcrypto loads keyward (on tpm2-pkcs11).
    bounded $mode "pkcs11-tool ECDSA-SHA256 sign" "${P11[@]}" --id 3032 --sign \
        --mechanism ECDSA-SHA256 --signature-format openssl -i data -o p11.$mode.ec.sig
    bounded $mode "pkcs11-tool SHA256-RSA-PKCS sign (hash in tpm2-pkcs11)" "${P11[@]}" \
        --id 3031 --sign --mechanism SHA256-RSA-PKCS -i data -o p11.$mode.rsa.sig
    bounded $mode "pkcs11-tool verify (public key op in tpm2-pkcs11)" "${P11[@]}" --id 3031 \
        --verify --mechanism SHA256-RSA-PKCS -i data --signature-file p11.$mode.rsa.sig
    grep -q 'Signature is valid' out.txt || fail "$mode: tpm2-pkcs11 verify did not validate"
    # keyward calling tpm2-pkcs11, which calls libcrypto inside the same process.
    bounded $mode "openssl dgst -sign RSA via keyward" openssl dgst -sha256 \
        -sign "$KW_TPM_RSA_URI" -out kw.$mode.rsa.sig data
    bounded $mode "openssl dgst -sign ECDSA via keyward" openssl dgst -sha256 \
        -sign "$KW_TPM_EC_URI" -out kw.$mode.ec.sig data
    bounded $mode "openssl pkey -pubout via keyward" openssl pkey -in "$KW_TPM_RSA_URI" \
        -pubout -out rsa.pub
    bounded $mode "openssl pkey -pubout EC via keyward" openssl pkey -in "$KW_TPM_EC_URI" \
        -pubout -out ec.pub

    # The signatures are real (checked by the default provider alone).
    plain dgst -sha256 -verify rsa.pub -signature p11.$mode.rsa.sig data >/dev/null ||
        fail "$mode: pkcs11-tool RSA signature invalid"
    plain dgst -sha256 -verify ec.pub -signature p11.$mode.ec.sig data >/dev/null ||
        fail "$mode: pkcs11-tool ECDSA signature invalid"
    plain dgst -sha256 -verify rsa.pub -signature kw.$mode.rsa.sig data >/dev/null ||
        fail "$mode: keyward RSA signature invalid"
    plain dgst -sha256 -verify ec.pub -signature kw.$mode.ec.sig data >/dev/null ||
        fail "$mode: keyward ECDSA signature invalid"

    # One provider initialisation per process: a nested load would show a second one.
    [ -s "dbg.$mode" ] || fail "$mode: no KEYWARD_DEBUG log (provider not loaded?)"
    nested=$(grep ' prov\] init:' "dbg.$mode" | awk '{print $2}' | sort | uniq -d)
    [ -z "$nested" ] || fail "$mode: provider initialised twice in process(es) $nested"
    nproc=$(grep ' prov\] init:' "dbg.$mode" | awk '{print $2}' | sort -u | wc -l)
    [ "$nproc" -ge 7 ] || fail "$mode: keyward was loaded in only $nproc of 7 processes"
    grep -q "load=$mode" "dbg.$mode" || fail "$mode: provider did not run with load=$mode"
done
echo PASS
