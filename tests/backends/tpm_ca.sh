#!/bin/bash
# A CA whose key lives on the TPM: keyward ca init generates the CA key on the tpm2-pkcs11 token,
# signs a server certificate from a CSR, revokes it and publishes the CRL. Chain and CRL are
# checked by OpenSSL's default provider alone.
set -euo pipefail
. "${KEYWARD_SRC:?run through meson test}/tests/fixtures/tpm.sh"
KW=${KEYWARD_BUILD:?}/tools/keyward
[ -x "$KW" ] || { echo "FAIL: keyward tool not built at $KW" >&2; exit 1; }
export KEYWARD_PROVIDER_PATH=$KEYWARD_PROVIDER_DIR/keyward.so
kw_tpm_start
cd "$KW_TPM_DIR"
printf 'openssl_conf = plain_init\n[plain_init]\n' >plain.cnf
plain() { OPENSSL_CONF=$KW_TPM_DIR/plain.cnf openssl "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { # run CMD...: show the command (never a PIN: PINs come from files), require success
    echo "+ keyward ${*:2}"
    "$@" >out.txt 2>err.txt || { cat out.txt err.txt >&2; fail "exit $?: $*"; }
}
P=$KW_TPM_DIR/pki

run "$KW" --dir "$P" ca init --key "pkcs11:token=$KW_TPM_TOKEN;object=ca-key" \
    --subject "CN=TPM Test CA,O=keyward" --key-type ec:P-256 \
    --module "$KW_TPM_MODULE" --pin-source "file:$KW_TPM_PIN_FILE"
plain x509 -in "$P/ca.crt" -noout -text | grep 'CA:TRUE' >/dev/null || fail "ca.crt is not a CA"
plain verify -check_ss_sig -CAfile "$P/ca.crt" "$P/ca.crt" >/dev/null || fail "CA self-signature"
# The CA key is on the TPM token (tpm2-pkcs11's store lists it).
tpm2_ptool listobjects --label "$KW_TPM_TOKEN" --path "$TPM2_PKCS11_STORE" >objects.yaml
grep -q 'CKA_LABEL: ca-key' objects.yaml || fail "ca-key not on the TPM token"

plain req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout web.key \
    -subj /CN=web.example -out web.csr 2>/dev/null
export KEYWARD_MODULE=$KW_TPM_MODULE
run "$KW" --dir "$P" ca sign web.csr --profile server --name web --san DNS:web.example
plain verify -CAfile "$P/ca.crt" "$P/issued/web.crt" >/dev/null || fail "web.crt does not verify"
plain verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/crl/crl.pem" "$P/issued/web.crt" \
    >/dev/null || fail "web.crt rejected before revocation"

run "$KW" --dir "$P" ca revoke web --reason keyCompromise
plain crl -in "$P/crl/crl.pem" -CAfile "$P/ca.crt" -noout 2>&1 | grep 'verify OK' >/dev/null ||
    fail "CRL signature does not verify"
if plain verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/crl/crl.pem" "$P/issued/web.crt" \
    >verify.txt 2>&1; then
    fail "revoked web.crt still verifies"
fi
grep -q 'certificate revoked' verify.txt || { cat verify.txt; fail "not rejected as revoked"; }
run "$KW" --dir "$P" ca crl --days 7
plain crl -in "$P/crl/crl.pem" -CAfile "$P/ca.crt" -noout 2>&1 | grep 'verify OK' >/dev/null ||
    fail "regenerated CRL does not verify"
echo PASS
