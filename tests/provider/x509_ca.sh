#!/bin/bash
# openssl x509 -req -CA ca.pem -CAkey 'pkcs11:...': a CA whose key is on the token signs a
# certificate for a software key; the chain verifies with the default provider alone.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwca
kw_keygen kwca ca-rsa 01 rsa:2048
kw_keygen kwca ca-ec 02 EC:secp384r1
kw_provider_setup

cat >ext.cnf <<EOC
[ca_ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:leaf.test
authorityKeyIdentifier = keyid
EOC

kw_default openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key
kw_default openssl req -new -key leaf.key -subj /CN=leaf.test -out leaf.csr

for ca in ca-rsa ca-ec; do
    kw_ok "$ca: self-signed CA certificate" openssl req -new -x509 -key "pkcs11:token=kwca;object=$ca" \
        -subj "/CN=keyward test $ca" -days 2 -config ext.cnf -extensions ca_ext -out "$ca.pem"
    kw_ok "$ca: x509 -req -CAkey pkcs11:" openssl x509 -req -in leaf.csr -CA "$ca.pem" \
        -CAkey "pkcs11:token=kwca;object=$ca" -CAcreateserial -days 1 -sha256 \
        -extfile ext.cnf -extensions leaf_ext -out "leaf.$ca.pem"
    kw_ok "$ca: leaf verifies against the CA" kw_default openssl verify -x509_strict \
        -CAfile "$ca.pem" "leaf.$ca.pem"
    kw_default openssl x509 -in "leaf.$ca.pem" -noout -issuer | grep -q "keyward test $ca" ||
        kw_fail "$ca: wrong issuer in leaf.$ca.pem"
done

# RSA-PSS issued certificate.
kw_ok "ca-rsa: x509 -req with PSS" openssl x509 -req -in leaf.csr -CA ca-rsa.pem \
    -CAkey 'pkcs11:token=kwca;object=ca-rsa' -CAcreateserial -days 1 -sha256 \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -out leaf.pss.pem
kw_ok "ca-rsa: PSS leaf verifies" kw_default openssl verify -CAfile ca-rsa.pem leaf.pss.pem

# Wrong CA: the checker can fail.
kw_must_fail "leaf from ca-rsa does not verify against ca-ec" kw_default openssl verify \
    -CAfile ca-ec.pem leaf.ca-rsa.pem
echo "PASS: x509 -req -CAkey on the token (RSA, RSA-PSS, ECDSA P-384)"
