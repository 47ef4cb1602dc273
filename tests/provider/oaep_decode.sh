#!/bin/bash
# OAEP decryption through keyward (issue 17, item 1). A block whose leading byte is 0x5a, not
# 0x00 (RFC 8017 7.1.2 step 3g), is refused whichever path decodes it: the token's own OAEP
# (SHA-1 on SoftHSM2), or the raw decryption decoded by libcrypto (SHA-256, SHA3-256, which
# SoftHSM2 lacks). A bad ciphertext costs one private-key operation (no second try through the
# raw path), and a parameter set the token lacks is asked of it once per key, not per ciphertext.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048 --usage-decrypt
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
EDGE=${KEYWARD_BUILD:-}/tests/provider/crypto_edge
[ -x "$EDGE" ] || kw_fail "$EDGE not built"
URI='pkcs11:token=kwtest;object=rsa'

# count WHAT LOG: how many logged PKCS#11 calls match WHAT (e.g. 'C_Decrypt -> CKR_OK').
count() { grep -c -- "$1" "$2" || true; }

for md in SHA1 SHA256 SHA3-256; do
    log=$KW_TMP/debug.$md
    out=$(KEYWARD_DEBUG=file:$log,2 kw_run "$EDGE" oaep-lead "$URI" rsa.pub "$md" 2>edge.err) ||
        { echo "$out"; cat edge.err; kw_fail "OAEP $md: a block starting 0x5a was accepted or a good one refused"; } >&2
    grep -q 'block starting 0x5a: refused' <<<"$out" || kw_fail "OAEP $md: no refusal reported"
    # Three decryptions (good, bad, good): three C_Decrypt calls, one per ciphertext.
    n=$(count 'C_Decrypt -> ' "$log")
    [ "$n" = 3 ] || { grep 'C_Decrypt' "$log" >&2; kw_fail "OAEP $md: $n C_Decrypt calls for 3 ciphertexts"; }
    refused=$(count 'C_DecryptInit -> CKR_\(ARGUMENTS_BAD\|MECHANISM\)' "$log")
    case $md in
    SHA1) [ "$refused" = 0 ] || kw_fail "OAEP SHA1: the token's own OAEP was refused" ;;
    # SoftHSM2 refuses OAEP with SHA-256 at C_DecryptInit: asked once, then raw for this key.
    SHA256) [ "$refused" = 1 ] || { grep 'C_DecryptInit' "$log" >&2; kw_fail "OAEP SHA256: token asked $refused times"; } ;;
    # PKCS#11 names no SHA-3 here: straight to the raw path.
    SHA3-256) [ "$refused" = 0 ] || kw_fail "OAEP SHA3-256: the token was asked for OAEP" ;;
    esac
    kw_log "OAEP $md: 3 ciphertexts, 3 C_Decrypt, $refused refused C_DecryptInit"
done

# openssl pkeyutl round trip with the default provider encrypting (label and all).
echo "a secret" >msg
kw_default openssl pkeyutl -encrypt -pubin -inkey rsa.pub -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_oaep_label:0102 -in msg -out ct
kw_ok "pkeyutl -decrypt OAEP SHA-256 with a label" openssl pkeyutl -decrypt -inkey "$URI" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_oaep_label:0102 \
    -in ct -out pt
cmp -s msg pt || kw_fail "OAEP SHA-256 round trip gave other bytes"
kw_expect_fail 'OAEP decoding failed|decoding error' openssl pkeyutl -decrypt -inkey "$URI" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_oaep_label:0103 \
    -in ct -out pt
echo "PASS: OAEP decoding checks the leading byte; one private operation per ciphertext"
