#!/bin/bash
# Kernel-mode test of keyward-pkcs11.so: boots Debian's 6.1 kernel (PKCS#8 parser) in QEMU via
# tests/fixtures/vm-run.sh, imports RSA-2048/3072/4096 keys through the module, signs (PKCS#1,
# PSS) and decrypts (PKCS#1, OAEP) in the guest; the results are verified here on the host with
# openssl. In the guest it also checks that the private key cannot be read back, that objects
# report kernel mode, and runs api_test (threads, fork) against kernel-resident keys.
# One boot. Exit 77 (SKIP) only when qemu, busybox or the kernel image cannot be had.
# Usage: vm.sh MODULE API_TEST [KEYRING_TOOL]
set -u -o pipefail
MOD=$(readlink -f "${1:?module}")
API=$(readlink -f "${2:?api_test}")
TOOL=${3:+$(readlink -f "$3")}
HERE=$(cd "$(dirname "$0")" && pwd)
VMRUN=$HERE/../fixtures/vm-run.sh
W=$(mktemp -d /tmp/kwk-vm.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# Keys and ciphertexts are made here: RSA key generation under emulation takes seconds.
head -c 3000 /dev/urandom >data
for b in 2048 3072 4096; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$b -out rsa$b.pem 2>/dev/null
    openssl pkey -in rsa$b.pem -pubout -out rsa$b.pub.pem
    head -c 32 /dev/urandom >secret$b
    openssl pkeyutl -encrypt -pubin -inkey rsa$b.pub.pem -in secret$b -out ct$b.pkcs1
    openssl pkeyutl -encrypt -pubin -inkey rsa$b.pub.pem -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in secret$b -out ct$b.oaep
done
echo "token keyring session:kwk-vm" >conf
chmod -R a+rX "$W"

OUT=$W/out
mkdir -p "$OUT"
KW_VM_OUT_HOST=$OUT "$VMRUN" -t 300 -- env MOD="$MOD" API="$API" TOOL="$TOOL" W="$W" \
    KEYWARD_PKCS11_CONF="$W/conf" KEYWARD_ASAN_PRELOAD="${KEYWARD_ASAN_PRELOAD:-}" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-}" LSAN_OPTIONS="${LSAN_OPTIONS:-}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" bash "$HERE/vm_guest.sh"
rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || bad "guest script exit status $rc"

for b in 2048 3072 4096; do
    openssl dgst -sha256 -verify rsa$b.pub.pem -signature "$OUT/sig$b.pkcs1" data >/dev/null 2>&1 &&
        ok "RSA-$b SHA256-RSA-PKCS signature from the kernel verifies" || bad "RSA-$b PKCS#1 signature"
    openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -verify rsa$b.pub.pem \
        -signature "$OUT/sig$b.pss" data >/dev/null 2>&1 &&
        ok "RSA-$b SHA256-RSA-PKCS-PSS signature from the kernel verifies" || bad "RSA-$b PSS signature"
    cmp -s "$OUT/pt$b.pkcs1" secret$b && ok "RSA-$b PKCS#1 decryption in the kernel" || bad "RSA-$b PKCS#1 decryption"
    cmp -s "$OUT/pt$b.oaep" secret$b && ok "RSA-$b OAEP decryption in the kernel" || bad "RSA-$b OAEP decryption"
done
echo "$FAILS failure(s) checked on the host"
[ $FAILS = 0 ]
