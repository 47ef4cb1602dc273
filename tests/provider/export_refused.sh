#!/bin/bash
# The private key value never leaves: asking openssl to write a token private key in any
# private-key encoding either fails with "cannot be exported" or yields only the KEYWARD KEY URI
# reference (the documented key-file form) — never key material. pkey -text shows public numbers
# only. The public half exports and equals what pkcs11-tool reads.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
kw_pubkey_pem kwtest 02 ec.pub

# No key material in FILE: no private-key PEM block; if DER/PEM, no INTEGERs but the version.
no_material() {
    local f=$1
    [ -e "$f" ] || return 0
    grep -aq -- '-----BEGIN .*PRIVATE KEY-----' "$f" && kw_fail "$f holds a private key block"
    grep -aq 'ENCRYPTED' "$f" && kw_fail "$f holds an encrypted private key"
    if grep -aq -- '-----BEGIN KEYWARD KEY URI-----' "$f"; then
        kw_default openssl asn1parse -in "$f" >"$f.asn1" 2>/dev/null || kw_fail "$f: bad key URI PEM"
    elif [ -s "$f" ]; then
        kw_default openssl asn1parse -inform DER -in "$f" >"$f.asn1" 2>/dev/null || return 0
    else
        return 0
    fi
    # A key URI holds one small INTEGER (version) and the URI; a private key has big integers
    # (RSA) or an OCTET STRING of the scalar (EC).
    [ "$(grep -c 'INTEGER' "$f.asn1")" -le 1 ] || { cat "$f.asn1"; kw_fail "$f has key numbers"; }
    grep -q 'OCTET STRING' "$f.asn1" && { cat "$f.asn1"; kw_fail "$f has an OCTET STRING"; }
    return 0
}

for k in rsa ec; do
    URI="pkcs11:token=kwtest;object=$k;type=private"
    # Traditional (PKCS#1 / SEC1) encodings need the private value: must be refused.
    rm -f "$k.trad.pem"
    kw_expect_fail 'cannot be exported' openssl pkey -in "$URI" -traditional -out "$k.trad.pem"
    no_material "$k.trad.pem"
    # PKCS#8 PEM and DER, plain and encrypted: refused, or the URI reference only.
    for args in "-out $k.p8.pem" "-outform DER -out $k.p8.der" \
        "-aes256 -passout pass:testpass -out $k.enc.pem"; do
        out=${args##* }
        rm -f "$out"
        # shellcheck disable=SC2086
        if openssl pkey -in "$URI" $args 2>err.txt; then
            no_material "$out"
            kw_log "pkey $args: wrote only the key URI reference"
        else
            grep -qi 'cannot be exported' err.txt || { cat err.txt; kw_fail "pkey $args failed without saying why"; }
            no_material "$out"
        fi
    done
    # -text: public numbers only.
    kw_ok "pkey -text $k" openssl pkey -in "$URI" -text -noout >"$k.txt"
    grep -Eqi 'privateExponent:|prime1:|prime2:|exponent1:|exponent2:|coefficient:|^priv:' "$k.txt" &&
        { cat "$k.txt"; kw_fail "pkey -text printed private numbers of $k"; }
    grep -Eqi 'modulus|^pub:' "$k.txt" || { cat "$k.txt"; kw_fail "pkey -text shows no public key for $k"; }
    # The public half exports and is the token's public key.
    kw_ok "pkey -pubout $k" openssl pkey -in "$URI" -pubout -out "$k.out.pub"
    cmp -s "$k.out.pub" "$k.pub" || kw_fail "$k: exported public key differs from the token's"
done
echo "PASS: private keys never exported; public halves exported correctly"
