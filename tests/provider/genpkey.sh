#!/bin/bash
# Key generation on the token through the provider: openssl genpkey -algorithm RSA|EC with
# -pkeyopt keyward_uri:... writes a KEYWARD KEY URI PEM; the new private key is sensitive and
# not extractable (checked with pkcs11-tool, not keyward), signs via -inkey k.pem, and an
# existing key id is never overwritten.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwgen
kw_provider_setup
head -c 3000 /dev/urandom >data
GEN=(openssl genpkey -propquery '?provider=keyward')

kw_ok "genpkey RSA-2048 on the token" "${GEN[@]}" -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -pkeyopt 'keyward_uri:pkcs11:token=kwgen;object=gen-rsa;id=%10' -out rsa.pem
kw_ok "genpkey EC P-256 on the token" "${GEN[@]}" -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt 'keyward_uri:pkcs11:token=kwgen;object=gen-ec;id=%11' -out ec.pem
kw_ok "genpkey EC P-384 on the token" "${GEN[@]}" -algorithm EC -pkeyopt ec_paramgen_curve:P-384 \
    -pkeyopt 'keyward_uri:pkcs11:token=kwgen;object=gen-ec384;id=%12' -out ec384.pem

for f in rsa.pem ec.pem ec384.pem; do
    [ "$(head -1 "$f")" = "-----BEGIN KEYWARD KEY URI-----" ] || { cat "$f"; kw_fail "$f: not a KEYWARD KEY URI PEM"; }
    grep -q 'PRIVATE KEY' "$f" && kw_fail "$f holds a private key block"
    [ "$(grep -c -- '-----BEGIN' "$f")" = 1 ] || kw_fail "$f: more than one PEM block"
done

# The token's view, via pkcs11-tool (logged in): label, id, type and protection of each key.
kw_objects kwgen >objects.txt
check_private() {
    local label=$1 kind=$2
    awk -v l="$label" '/Object;/ { blk = $0 } /^  label:/ { if ($2 == l) print blk }' objects.txt |
        grep -q "^Private Key Object; $kind" || { cat objects.txt; kw_fail "no private $kind key labelled $label"; }
    awk -v l="$label" '/Object;/ { p = ($0 ~ /^Private/); lab = "" } /^  label:/ { lab = $2 }
        /^  Access:/ { if (p && lab == l) print }' objects.txt >access.txt
    grep -q 'sensitive' access.txt || kw_fail "$label: private key is not CKA_SENSITIVE"
    grep -q 'never extractable' access.txt || kw_fail "$label: private key is extractable"
    # pkcs11-tool lists "extractable" as an item of its own when CKA_EXTRACTABLE is true.
    sed 's/^ *Access: *//; s/, /\n/g' access.txt | grep -qx 'extractable' &&
        kw_fail "$label: private key is CKA_EXTRACTABLE"
    kw_log "$label: $(cat access.txt)"
}
check_private gen-rsa RSA
check_private gen-ec EC
check_private gen-ec384 EC
grep -q 'ID:         10' objects.txt || kw_fail "gen-rsa does not have id 10"

# Private objects are not visible without login (CKA_PRIVATE).
_kw_p11_public kwgen --list-objects --type privkey 2>/dev/null | grep 'Private Key Object' >/dev/null &&
    kw_fail "generated private keys are visible without login (not CKA_PRIVATE)"

# The PEM works where a key file is expected, and signatures verify with the public key that
# pkcs11-tool reads from the token (so the key in the PEM is the one that was generated).
kw_pubkey_pem kwgen 10 rsa.pub
kw_pubkey_pem kwgen 11 ec.pub
kw_ok "pkeyutl -sign -inkey rsa.pem" openssl pkeyutl -sign -inkey rsa.pem -pkeyopt digest:sha256 \
    -in <(openssl dgst -sha256 -binary data) -out rsa.sig
kw_ok "verify rsa.pem signature" kw_default openssl dgst -sha256 -verify rsa.pub -signature rsa.sig data
kw_ok "dgst -sign ec.pem" openssl dgst -sha256 -sign ec.pem -out ec.sig data
kw_ok "verify ec.pem signature" kw_default openssl dgst -sha256 -verify ec.pub -signature ec.sig data
kw_ok "pkey -pubout of ec.pem" openssl pkey -in ec.pem -pubout -out ec.pem.pub
cmp -s ec.pem.pub ec.pub || kw_fail "ec.pem's public key differs from the token's"
openssl pkey -in ec384.pem -pubout | kw_default openssl pkey -pubin -noout -text | grep 'NIST CURVE: P-384' >/dev/null ||
    kw_fail "ec384.pem is not a P-384 key"

# An existing id is never overwritten: refused, and the old key still signs as before.
n_before=$(grep -c 'Object;' objects.txt)
kw_expect_fail 'exist' "${GEN[@]}" -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt 'keyward_uri:pkcs11:token=kwgen;object=other;id=%11' -out again.pem
if [ -f again.pem ] && grep -q KEYWARD again.pem; then kw_fail "a key file was written for a refused key"; fi
[ "$(kw_objects kwgen | grep -c 'Object;')" = "$n_before" ] || kw_fail "refused genpkey changed the token"
kw_pubkey_pem kwgen 11 ec.pub.after
cmp -s ec.pub ec.pub.after || kw_fail "key id 11 was replaced"

# Generation on a token that does not exist names the problem.
kw_expect_fail 'token not found' "${GEN[@]}" -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt 'keyward_uri:pkcs11:token=nosuch;object=x;id=%20' -out nosuch.pem
# An RSA-PSS key (restricted by CKA_ALLOWED_MECHANISMS; its public object is plain RSA) is
# listed once by the store: the public object is recognised as its half.
kw_ok "genpkey RSA-PSS" "${GEN[@]}" -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 \
    -pkeyopt 'keyward_uri:pkcs11:token=kwgen;object=pss;id=%30' -out pss.pem
openssl storeutl 'pkcs11:token=kwgen;object=pss' >pss.list 2>pss.err ||
    { cat pss.err >&2; kw_fail "storeutl of the RSA-PSS key"; }
grep -q 'Total found: 1' pss.list || { cat pss.list >&2; kw_fail "the RSA-PSS key pair is listed twice"; }
echo "PASS: genpkey RSA/EC on the token, sensitive and not extractable, usable as key file"
