#!/bin/bash
# openssl dgst -sha256|-sha384|-sha512 -sign 'pkcs11:...' (digest-sign: hashing on the host or
# the token) with RSA PKCS#1, RSA-PSS (-sigopt) and ECDSA; verified by the default provider alone.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
kw_keygen kwtest ec384 03 EC:secp384r1
kw_provider_setup
kw_pubkey_pem kwtest 01 rsa.pub
kw_pubkey_pem kwtest 02 ec.pub
kw_pubkey_pem kwtest 03 ec384.pub
# Bigger than one digest block, so multi-update hashing is exercised.
head -c 200000 /dev/urandom >data

for md in sha256 sha384 sha512; do
    kw_ok "dgst -$md -sign RSA" openssl dgst -"$md" -sign 'pkcs11:token=kwtest;object=rsa' \
        -out "rsa.$md" data
    kw_ok "verify RSA $md" kw_default openssl dgst -"$md" -verify rsa.pub -signature "rsa.$md" data

    kw_ok "dgst -$md -sign RSA-PSS" openssl dgst -"$md" -sigopt rsa_padding_mode:pss \
        -sign 'pkcs11:token=kwtest;object=rsa' -out "pss.$md" data
    # Like the default provider, PSS signing defaults to the maximum salt length
    # (256 - digest length - 2 bytes for RSA-2048); require exactly that.
    case $md in sha256) max=222 ;; sha384) max=206 ;; sha512) max=190 ;; esac
    kw_ok "verify RSA-PSS $md (salt length $max)" kw_default openssl dgst -"$md" \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:"$max" -verify rsa.pub \
        -signature "pss.$md" data
    kw_must_fail "RSA-PSS $md is not a PKCS#1 v1.5 signature" kw_default openssl dgst -"$md" \
        -verify rsa.pub -signature "pss.$md" data

    for k in ec ec384; do
        kw_ok "dgst -$md -sign ECDSA $k" openssl dgst -"$md" -sign "pkcs11:token=kwtest;object=$k" \
            -out "$k.$md" data
        kw_ok "verify ECDSA $k $md" kw_default openssl dgst -"$md" -verify "$k.pub" \
            -signature "$k.$md" data
    done
done

# PSS with an explicit salt length.
kw_ok "dgst -sha256 PSS saltlen 20" openssl dgst -sha256 -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:20 -sign 'pkcs11:token=kwtest;object=rsa' -out pss.20 data
kw_ok "verify PSS saltlen 20" kw_default openssl dgst -sha256 -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:20 -verify rsa.pub -signature pss.20 data

# A signature over the data must not verify over other data (checker sanity).
echo x >>data
kw_must_fail "RSA sha256 over changed data" kw_default openssl dgst -sha256 -verify rsa.pub \
    -signature rsa.sha256 data
kw_must_fail "ECDSA sha256 over changed data" kw_default openssl dgst -sha256 -verify ec.pub \
    -signature ec.sha256 data
echo "PASS: dgst -sign RSA, RSA-PSS, ECDSA with SHA-256/384/512"
