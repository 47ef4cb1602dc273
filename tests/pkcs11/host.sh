#!/bin/bash
# Host test of keyward-pkcs11.so through pkcs11-tool, verified with openssl: listing, key
# generation, import, every signature mechanism, decryption, ECDH through the keyward provider,
# deletion, pkcs11-tool --test.
# Runs in a fresh session keyring, so nothing touches the user's keys. On kernels without the
# PKCS#8 parser the token is in software mode (the VM suite covers kernel mode).
# Usage: host.sh MODULE   (or as part of `meson test --suite integration`)
set -u -o pipefail
MOD=${1:?module path}
[ -n "${KWK_IN_SESSION:-}" ] || { KWK_IN_SESSION=1 exec keyctl session - "$0" "$@" 2>/dev/null; }
for t in pkcs11-tool openssl keyctl; do
    command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
W=$(mktemp -d)
trap '[ -n "${KWK_KEEP:-}" ] || rm -rf "$W"' EXIT
cd "$W"
echo "token keyring session:kwk-host-$$" >conf
export KEYWARD_PKCS11_CONF=$W/conf
P() { pkcs11-tool --module "$MOD" "$@"; }
# Under the asan setup the module is built with ASan: programs that load it need the runtime.
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
    # Leak checking off for pkcs11-tool's own allocations (not ours; the module's leaks are
    # checked by pkcs11-api and pkcs11-unit, which are our programs); memory errors stay on.
    P() {
        LD_PRELOAD=$KEYWARD_ASAN_PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 \
            pkcs11-tool --module "$MOD" "$@"
    }
fi
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@" >>log 2>&1; then ok "$what"; else bad "$what"; tail -5 log; fi; }

MODEL=$(P -L 2>/dev/null | sed -n 's/ *token model *: //p')
echo "token model: $MODEL"
[ "$MODEL" = kernel ] || [ "$MODEL" = software ] || bad "token model says kernel or software (got '$MODEL')"

check "keygen RSA-2048" P --keypairgen --key-type rsa:2048 --label rsa --id 01
check "keygen EC P-256" P --keypairgen --key-type EC:prime256v1 --label p256 --id 02
check "keygen EC P-384" P --keypairgen --key-type EC:secp384r1 --label p384 --id 03
check "keygen Ed25519" P --keypairgen --key-type EC:edwards25519 --label ed --id 04
# pkcs11-tool 0.23 cannot export P-384 or Ed25519 public keys, and its P-256 export uses freed
# memory (harmless without ASan, fatal under it): rebuild those SPKIs from CKA_EC_POINT.
spki_from_point() { # id, SPKI prefix (hex), bytes to drop from the DER OCTET STRING header
    local pt
    pt=$(P -O --type pubkey 2>/dev/null |
        awk -v id=$1 '/Object;/{p=""} /EC_POINT:/{p=$2} $1=="ID:"&&$2==id&&p!=""{print p; exit}')
    echo "$2${pt:$3}" | xxd -r -p >pub$1.der
    openssl pkey -pubin -inform DER -in pub$1.der -out pub$1.pem 2>>log || bad "public key $1 readable"
}
P --read-object --type pubkey --id 01 -o pub01.der >>log 2>&1
openssl pkey -pubin -inform DER -in pub01.der -out pub01.pem 2>>log || bad "public key 01 readable"
spki_from_point 02 3059301306072a8648ce3d020106082a8648ce3d030107034200 4
spki_from_point 03 3076301006072a8648ce3d020106052b81040022036200 4
spki_from_point 04 302a300506032b6570032100 4
head -c 1000 /dev/urandom >data

# RSA signatures: one per mechanism, each verified by openssl.
for h in sha1 sha224 sha256 sha384 sha512; do
    H=$(echo $h | tr a-z A-Z)
    P --sign --id 01 -m $H-RSA-PKCS -i data -o s.bin >>log 2>&1 &&
        openssl dgst -$h -verify pub01.pem -signature s.bin data >>log 2>&1 && ok "sign $H-RSA-PKCS" || bad "sign $H-RSA-PKCS"
    P --sign --id 01 -m $H-RSA-PKCS-PSS -i data -o s.bin >>log 2>&1 &&
        openssl dgst -$h -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -verify pub01.pem \
            -signature s.bin data >>log 2>&1 && ok "sign $H-RSA-PKCS-PSS" || bad "sign $H-RSA-PKCS-PSS"
done
openssl dgst -sha256 -binary data >hash
P --sign --id 01 -m RSA-PKCS-PSS --hash-algorithm SHA256 --mgf MGF1-SHA256 -i hash -o s.bin >>log 2>&1 &&
    openssl pkeyutl -verify -pubin -inkey pub01.pem -pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 \
        -pkeyopt rsa_pss_saltlen:-1 -in hash -sigfile s.bin >>log 2>&1 && ok "sign RSA-PKCS-PSS" || bad "sign RSA-PKCS-PSS"
# RSA-PKCS over a DigestInfo (what TLS stacks send).
printf '\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20' | cat - hash >di
P --sign --id 01 -m RSA-PKCS -i di -o s.bin >>log 2>&1 &&
    openssl dgst -sha256 -verify pub01.pem -signature s.bin data >>log 2>&1 && ok "sign RSA-PKCS (DigestInfo)" || bad "sign RSA-PKCS"
{ printf '\x00'; head -c 255 /dev/urandom; } >raw
P --sign --id 01 -m RSA-X-509 -i raw -o s.bin >>log 2>&1 &&
    openssl pkeyutl -verifyrecover -pubin -inkey pub01.pem -pkeyopt rsa_padding_mode:none -in s.bin -out back >>log 2>&1 &&
    cmp -s raw back && ok "sign RSA-X-509" || bad "sign RSA-X-509"

# EC and EdDSA.
for id in 02 03; do
    for h in sha1 sha256 sha384 sha512; do
        H=$(echo $h | tr a-z A-Z)
        P --sign --id $id -m ECDSA-$H --signature-format openssl -i data -o s.bin >>log 2>&1 &&
            openssl dgst -$h -verify pub$id.pem -signature s.bin data >>log 2>&1 && ok "sign ECDSA-$H key $id" || bad "sign ECDSA-$H key $id"
    done
    P --sign --id $id -m ECDSA --signature-format openssl -i hash -o s.bin >>log 2>&1 &&
        openssl pkeyutl -verify -pubin -inkey pub$id.pem -in hash -sigfile s.bin >>log 2>&1 && ok "sign ECDSA key $id" || bad "sign ECDSA key $id"
done
P --sign --id 04 -m EDDSA -i data -o s.bin >>log 2>&1 &&
    openssl pkeyutl -verify -pubin -inkey pub04.pem -rawin -in data -sigfile s.bin >>log 2>&1 && ok "sign EDDSA" || bad "sign EDDSA"

# Decryption.
head -c 32 /dev/urandom >secret
openssl pkeyutl -encrypt -pubin -inkey pub01.pem -in secret -out ct 2>>log
P --decrypt --id 01 -m RSA-PKCS -i ct -o pt >>log 2>&1 && cmp -s pt secret && ok "decrypt RSA-PKCS" || bad "decrypt RSA-PKCS"
openssl pkeyutl -encrypt -pubin -inkey pub01.pem -pkeyopt rsa_padding_mode:oaep -in secret -out ct 2>>log
P --decrypt --id 01 -m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1 -i ct -o pt >>log 2>&1 && cmp -s pt secret && ok "decrypt RSA-PKCS-OAEP sha1" || bad "decrypt OAEP sha1"
openssl pkeyutl -encrypt -pubin -inkey pub01.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256 -in secret -out ct 2>>log
P --decrypt --id 01 -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i ct -o pt >>log 2>&1 && cmp -s pt secret && ok "decrypt RSA-PKCS-OAEP sha256" || bad "decrypt OAEP sha256"
head -c 1 ct | od -An -tx1 >/dev/null
P --decrypt --id 01 -m RSA-X-509 -i ct -o pt >>log 2>&1 &&
    openssl pkeyutl -verifyrecover -pubin -inkey pub01.pem -pkeyopt rsa_padding_mode:none -in pt -out back >>log 2>&1 &&
    cmp -s back ct && ok "decrypt RSA-X-509" || bad "decrypt RSA-X-509"
# A tampered ciphertext must fail, not return garbage.
printf '\x01' | dd of=ct bs=1 seek=100 conv=notrunc 2>/dev/null
P --decrypt --id 01 -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i ct -o pt >tamper.log 2>&1
grep -q CKR_ENCRYPTED_DATA_INVALID tamper.log && ok "tampered OAEP ciphertext refused (CKR_ENCRYPTED_DATA_INVALID)" ||
    { bad "tampered OAEP ciphertext refused"; cat tamper.log; }

# Import: private key (components), certificate, public key; then sign with the imported key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout imp.pem -subj /CN=imported -days 2 -out imp.crt 2>>log
openssl x509 -in imp.crt -outform DER -out imp.crt.der
check "import private key" P --write-object imp.pem --type privkey --id 10 --label imported
check "import certificate" P --write-object imp.crt.der --type cert --id 10 --label imported
P --sign --id 10 -m SHA256-RSA-PKCS -i data -o s.bin >>log 2>&1 &&
    openssl dgst -sha256 -verify <(openssl x509 -in imp.crt -pubkey -noout) -signature s.bin data >>log 2>&1 &&
    ok "sign with imported key" || bad "sign with imported key"
P --read-object --type cert --id 10 -o c.der >>log 2>&1 && cmp -s c.der imp.crt.der && ok "certificate reads back" || bad "certificate reads back"
# Attribute block of one private key, by label.
block() { P -O --type privkey 2>/dev/null | awk -v l="$1" '/Object;/{p=0} $1=="label:"&&$2==l{p=1} p'; }
block imported | grep -q "Access: *sensitive$" && ok "imported key: sensitive, not always-sensitive, not local" ||
    bad "imported key attributes truthful"
block rsa | grep -q "always sensitive, never extractable, local" && ok "generated key: always sensitive, never extractable, local" ||
    bad "generated key attributes"

# Keyring view: private keys are possessor-only; software-mode keys are marked.
keyctl show @s >ks 2>&1
if [ "$MODEL" = software ]; then
    grep -q "user: keyward:soft:" ks && ok "software-mode keys visible as keyward:soft" || bad "software-mode keys marked"
else
    grep -q "asymmetric: keyward:priv:" ks && ok "RSA keys in the kernel" || bad "RSA keys in the kernel"
fi

# ECDH through the keyward provider (issue 17, item 9): `openssl pkeyutl -derive` with keyward.so
# on this token's P-256 key (C_DeriveKey, CKM_ECDH1_DERIVE) and a peer key made by stock openssl
# must give the secret the peer computes from the token's public key.
if [ -f "${KEYWARD_PROVIDER_DIR:-}/keyward.so" ]; then
    . "${KEYWARD_SRC:?}/tests/fixtures/provider-cnf.sh"
    kw_write_provider_cnf keyward.cnf "$KEYWARD_PROVIDER_DIR" "keyward-module = $MOD"
    kwssl() {
        if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
            OPENSSL_CONF=$W/keyward.cnf LD_PRELOAD=$KEYWARD_ASAN_PRELOAD \
                ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 openssl "$@"
        else
            OPENSSL_CONF=$W/keyward.cnf openssl "$@"
        fi
    }
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>>log &&
        openssl pkey -in peer.key -pubout -out peer.pub 2>>log
    openssl pkeyutl -derive -inkey peer.key -peerkey pub02.pem -out ecdh.peer 2>>log
    kwssl pkeyutl -derive -inkey 'pkcs11:token=keyring;object=p256;type=private' -peerkey peer.pub \
        -out ecdh.token >>log 2>&1 && [ "$(stat -c %s ecdh.token)" = 32 ] && cmp -s ecdh.token ecdh.peer &&
        ok "ECDH through keyward.so: pkeyutl -derive on the token key = the peer's secret" ||
        { bad "ECDH through keyward.so"; tail -5 log; }
else
    echo "skip ECDH through keyward.so: KEYWARD_PROVIDER_DIR has no keyward.so (run through meson test)"
fi

# Delete.
check "delete private key" P --delete-object --type privkey --id 10
block imported | grep -q label && bad "deleted key gone" || ok "deleted key gone"

# The OpenSC self-test.
P --test --allow-sw >test.out 2>&1
grep -q "No errors" test.out && ok "pkcs11-tool --test --allow-sw: No errors" || { bad "pkcs11-tool --test"; tail -20 test.out; }

echo "$FAILS failure(s)"
[ $FAILS = 0 ]
