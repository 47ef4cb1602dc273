#!/bin/bash
# Signatures with any digest OpenSSL has (issue 17, item 7a), SHA-3 here, which neither SoftHSM2
# nor PKCS#11 2.40 has a combined mechanism for: the host hashes and the token signs the digest
# (CKM_ECDSA; CKM_RSA_PKCS over libcrypto's DigestInfo; PSS as an EMSA-PSS block signed raw).
# Each signature is verified by the default provider alone, one also through keyward with the
# token's public key.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
kw_pubkey_pem kwtest 02 ec.pub
head -c 3000 /dev/urandom >data

for md in sha3-256 sha3-512; do
    kw_default openssl dgst "-$md" -binary -out "d.$md" data
    for key in rsa ec; do
        uri="pkcs11:token=kwtest;object=$key"
        kw_ok "pkeyutl -sign -rawin -digest $md ($key)" openssl pkeyutl -sign -rawin \
            -digest "$md" -inkey "$uri" -in data -out "s.$key.$md"
        kw_ok "verify it ($key $md)" kw_default openssl pkeyutl -verify -rawin -digest "$md" \
            -pubin -inkey "$key.pub" -in data -sigfile "s.$key.$md"
        kw_ok "pkeyutl -sign on a $md digest ($key)" openssl pkeyutl -sign -inkey "$uri" \
            -pkeyopt "digest:$md" -in "d.$md" -out "p.$key.$md"
        kw_ok "verify it ($key $md digest)" kw_default openssl pkeyutl -verify -pubin \
            -inkey "$key.pub" -pkeyopt "digest:$md" -in "d.$md" -sigfile "p.$key.$md"
        kw_ok "dgst -$md -sign ($key)" openssl dgst "-$md" -sign "$uri" -out "g.$key.$md" data
        kw_ok "verify it ($key dgst $md)" kw_default openssl dgst "-$md" -verify "$key.pub" \
            -signature "g.$key.$md" data
    done
    kw_ok "dgst -$md -sign with PSS" openssl dgst "-$md" -sign 'pkcs11:token=kwtest;object=rsa' \
        -sigopt rsa_padding_mode:pss -out "pss.$md" data
    kw_ok "verify it (PSS $md)" kw_default openssl dgst "-$md" -verify rsa.pub \
        -sigopt rsa_padding_mode:pss -signature "pss.$md" data
done
# Against the other digest it must not verify: the signer really hashed with SHA3-256.
kw_must_fail "SHA3-256 signature checked as SHA-256" kw_default openssl dgst -sha256 -verify ec.pub \
    -signature g.ec.sha3-256 data
# Verification through keyward with the token's public key (hashed on the host too): the
# signature verifies, and the same one with a byte flipped is refused as a bad signature (not as
# an unsupported digest or key).
ecpub='pkcs11:token=kwtest;object=ec;type=public'
kw_ok "pkeyutl -verify -digest sha3-256 with the token public key" openssl pkeyutl -verify \
    -digest sha3-256 -rawin -pubin -inkey "$ecpub" -in data -sigfile s.ec.sha3-256
cp s.ec.sha3-256 bad.sig
b=$(od -An -tu1 -j10 -N1 bad.sig | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 1)))" | dd of=bad.sig bs=1 seek=10 conv=notrunc 2>/dev/null
cmp -s bad.sig s.ec.sha3-256 && kw_fail "byte 10 of the signature was not flipped"
rc=0
kw_run openssl pkeyutl -verify -digest sha3-256 -rawin -pubin -inkey "$ecpub" -in data \
    -sigfile bad.sig >bad.out 2>bad.err || rc=$?
[ "$rc" = 1 ] && grep -q "Signature Verification Failure" bad.out && ! grep -qi "not supported" bad.err ||
    { cat bad.out bad.err >&2; kw_fail "a flipped byte verified, or failed otherwise than as a bad signature (exit $rc)"; }
kw_log "ok: the signature with a flipped byte is refused through keyward"
echo "PASS: ECDSA and RSA (PKCS#1, PSS) with SHA-3, hashed on the host"
