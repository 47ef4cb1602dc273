#!/bin/bash
# TPM token (swtpm + tpm2-pkcs11) through keyward: pkeyutl sign (RSA PKCS#1 v1.5, RSA-PSS, ECDSA),
# dgst -sign, req -x509 and key generation on the TPM. Every signature is checked by OpenSSL's
# default provider alone (a config that does not load keyward), and a tampered input must fail.
set -euo pipefail
. "${KEYWARD_SRC:?run through meson test}/tests/fixtures/tpm.sh"
kw_tpm_start
cd "$KW_TPM_DIR"
kw_tpm_openssl_cnf kw.cnf
printf 'openssl_conf = plain_init\n[plain_init]\n' >plain.cnf

kw() { OPENSSL_CONF=$KW_TPM_DIR/kw.cnf LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-} openssl "$@"; }
plain() { OPENSSL_CONF=$KW_TPM_DIR/plain.cnf openssl "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

head -c 3000 /dev/urandom >data
plain dgst -sha256 -binary -out dig data
cp data bad && printf 'x' >>bad
plain dgst -sha256 -binary -out badd bad

step "public keys from the token"
kw pkey -in "$KW_TPM_RSA_URI" -pubout -out rsa.pub
kw pkey -in "$KW_TPM_EC_URI" -pubout -out ec.pub
plain pkey -pubin -in rsa.pub -noout -text | grep 'Public-Key: (2048 bit)' >/dev/null || fail "RSA key not 2048"
plain pkey -pubin -in ec.pub -noout -text | grep 'prime256v1' >/dev/null || fail "EC key not P-256"

# verify PUB SIG DIGESTFILE [pkeyopts...]: default provider only; the tampered digest must fail.
verify() {
    local pub=$1 sig=$2 dig=$3
    shift 3
    plain pkeyutl -verify -pubin -inkey "$pub" -sigfile "$sig" -in "$dig" "$@" >/dev/null ||
        fail "signature $sig does not verify"
    if plain pkeyutl -verify -pubin -inkey "$pub" -sigfile "$sig" -in badd "$@" >/dev/null 2>&1
    then fail "signature $sig verifies over another digest"; fi
}

step "RSA PKCS#1 v1.5 (pkeyutl -sign)"
kw pkeyutl -sign -inkey "$KW_TPM_RSA_URI" -pkeyopt digest:sha256 -in dig -out rsa1.sig
verify rsa.pub rsa1.sig dig -pkeyopt digest:sha256

step "RSA-PSS, salt = digest length"
kw pkeyutl -sign -inkey "$KW_TPM_RSA_URI" -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
    -pkeyopt rsa_pss_saltlen:digest -in dig -out pss.sig
verify rsa.pub pss.sig dig -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
    -pkeyopt rsa_pss_saltlen:digest
# PSS is randomised: two signatures over the same digest differ (a fixed one would be a bug).
kw pkeyutl -sign -inkey "$KW_TPM_RSA_URI" -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
    -pkeyopt rsa_pss_saltlen:digest -in dig -out pss2.sig
cmp -s pss.sig pss2.sig && fail "two PSS signatures are identical"

step "ECDSA P-256"
kw pkeyutl -sign -inkey "$KW_TPM_EC_URI" -in dig -out ec.sig
verify ec.pub ec.sig dig

step "dgst -sign (digest-sign through the token) RSA and ECDSA"
kw dgst -sha384 -sign "$KW_TPM_RSA_URI" -out d-rsa.sig data
plain dgst -sha384 -verify rsa.pub -signature d-rsa.sig data >/dev/null || fail "dgst RSA"
kw dgst -sha256 -sign "$KW_TPM_EC_URI" -out d-ec.sig data
plain dgst -sha256 -verify ec.pub -signature d-ec.sig data >/dev/null || fail "dgst ECDSA"
plain dgst -sha256 -verify ec.pub -signature d-ec.sig bad >/dev/null 2>&1 && fail "dgst tamper"

step "req -x509 with the TPM keys"
for k in rsa ec; do
    uri=KW_TPM_${k^^}_URI
    kw req -new -x509 -key "${!uri}" -subj "/CN=keyward tpm $k" -days 2 -sha256 -out "$k.crt"
    plain verify -check_ss_sig -CAfile "$k.crt" "$k.crt" >/dev/null || fail "$k.crt self-signature"
    cmp <(plain x509 -in "$k.crt" -noout -pubkey) "$k.pub" || fail "$k.crt holds another key"
done

step "key generation on the TPM (EC P-256) and a URI key file"
# Through OpenSC's pkcs11-spy (a pass-through module that logs calls) to see the template keyward
# sends: tpm2-pkcs11 keeps its own idea of some attributes (it stores CKA_SENSITIVE false for a
# generated key even when asked for true; the key never leaves the TPM either way).
spy=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
[ -r "$spy" ] || kw_skip "OpenSC pkcs11-spy.so missing (opensc-pkcs11)"
KW_TPM_MODULE=$spy kw_tpm_openssl_cnf spy.cnf
PKCS11SPY=$KW_TPM_MODULE PKCS11SPY_OUTPUT=$KW_TPM_DIR/spy.txt OPENSSL_CONF=$KW_TPM_DIR/spy.cnf \
    openssl genpkey -propquery '?provider=keyward' -algorithm EC \
    -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt "keyward_uri:pkcs11:token=$KW_TPM_TOKEN;object=gen;id=%47" -out gen.pem
grep -q 'BEGIN KEYWARD KEY URI' gen.pem || fail "gen.pem is not a URI key file"
grep -q 'PRIVATE KEY' gen.pem && fail "gen.pem holds a private key"
sed -n '/pPrivateKeyTemplate/,/^\[out\]/p' spy.txt >tmpl.txt
for a in 'CKA_TOKEN *True' 'CKA_PRIVATE *True' 'CKA_SENSITIVE *True' 'CKA_EXTRACTABLE *False'; do
    grep -q "$a" tmpl.txt || { cat tmpl.txt; fail "private key template lacks $a"; }
done
kw pkey -in gen.pem -pubout -out gen.pub
kw pkeyutl -sign -inkey gen.pem -in dig -out gen.sig
verify gen.pub gen.sig dig
# The key is on the token (tpm2-pkcs11's store), not extractable
# (CKA_EXTRACTABLE 0x162 = 354, CKA_NEVER_EXTRACTABLE 0x164 = 356).
oid=$(tpm2_ptool listobjects --label "$KW_TPM_TOKEN" --path "$TPM2_PKCS11_STORE" | python3 -c '
import sys, yaml
for o in yaml.safe_load(sys.stdin):
    if (o.get("CKA_CLASS"), o.get("CKA_LABEL"), o.get("CKA_ID")) == ("CKO_PRIVATE_KEY", "gen", ["47"]):
        print(o["id"])')
[ -n "$oid" ] || fail "generated key (object=gen, id=%47) not on the token"
tpm2_ptool objmod --id "$oid" --path "$TPM2_PKCS11_STORE" >gen.attrs
grep -qx '354: false' gen.attrs || fail "generated key is CKA_EXTRACTABLE"
grep -qx '356: true' gen.attrs || fail "generated key is not CKA_NEVER_EXTRACTABLE"
echo "PASS"
