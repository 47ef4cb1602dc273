#!/bin/bash
# RSA-PSS with an MGF1 digest other than the message digest (rsa_mgf1_md), which OpenSSL passes
# and some tokens (SoftHSM2) do not accept as a PKCS#11 parameter: the signature must either be
# made (and verify with exactly those parameters) or be refused naming the mechanism, not with
# a generic error.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
head -c 5000 /dev/urandom >data

for spec in sha256:sha1 sha384:sha256 sha256:sha256; do
    IFS=: read -r md mgf <<<"$spec"
    if openssl dgst -"$md" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 \
        -sigopt rsa_mgf1_md:"$mgf" -sign 'pkcs11:token=kwtest;object=rsa' -out "s.$md.$mgf" data \
        2>err.txt </dev/null; then
        kw_ok "verify PSS $md mgf1 $mgf" kw_default openssl dgst -"$md" \
            -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 -sigopt rsa_mgf1_md:"$mgf" \
            -verify rsa.pub -signature "s.$md.$mgf" data
        if [ "$mgf" != "$md" ]; then
            kw_must_fail "PSS $md mgf1 $mgf is not a signature with mgf1 $md" kw_default \
                openssl dgst -"$md" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 \
                -verify rsa.pub -signature "s.$md.$mgf" data
        fi
    else
        [ "$mgf" = "$md" ] && { cat err.txt >&2; kw_fail "PSS $md with mgf1 $md (matching) failed"; }
        grep -qi 'mechanism' err.txt ||
            { cat err.txt >&2; kw_fail "PSS $md mgf1 $mgf refused without naming the mechanism"; }
        kw_log "PSS $md mgf1 $mgf refused: $(grep -i mechanism err.txt | head -1)"
    fi
done
echo "PASS: PSS with a separate MGF1 digest"
