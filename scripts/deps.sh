#!/bin/sh
# Install the Debian packages keyward needs for a purpose: build, demo, test.
# Usage: scripts/deps.sh build|demo|demo-tpm|test   (root; runs apt-get update first when something is missing)
set -eu

# One list per group. Components append their packages to their own line.
PKGS_BUILD="meson ninja-build pkg-config gcc libc6-dev libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules libkeyutils-dev keyutils"
PKGS_DEMO="softhsm2 opensc nginx-light curl keyutils"
PKGS_TEST_PROVIDER="libcmocka-dev softhsm2 opensc gnutls-bin valgrind clang-format git"
PKGS_TEST_PKCS11="qemu-system-x86 busybox-static xxd"
PKGS_TEST_TOOLS="softhsm2 openssl python3 iproute2"
PKGS_TEST_SERVERS="nginx-light stunnel4 curl python3 procps"
PKGS_TEST_FUZZ="clang-14 libfuzzer-14-dev libclang-rt-14-dev llvm-14 strace"
PKGS_TEST_TPM="swtpm swtpm-tools tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus"

case "${1:-}" in
build) want="$PKGS_BUILD" ;;
demo) want="$PKGS_BUILD $PKGS_DEMO" ;;
demo-tpm) want="$PKGS_BUILD $PKGS_DEMO $PKGS_TEST_TPM" ;;
test) want="$PKGS_BUILD $PKGS_TEST_PROVIDER $PKGS_TEST_PKCS11 $PKGS_TEST_TOOLS $PKGS_TEST_SERVERS $PKGS_TEST_TPM $PKGS_TEST_FUZZ" ;;
*) echo "usage: $0 build|demo|demo-tpm|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "keyward: missing Debian packages:$missing (run as root, or install them)" >&2
    exit 1
fi
echo "keyward: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# nginx-light would start a service on install; keep it from doing so on test machines.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
apt-get install -y -q --no-install-recommends $missing
rm -f /usr/sbin/policy-rc.d
