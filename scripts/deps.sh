#!/bin/sh
# Install the Debian packages keyward needs for a purpose: build, demo, test.
# Usage: scripts/deps.sh build|demo|demo-tpm|test   (root; runs apt-get update first when something is missing)
set -eu

# One list per group. Components append their packages to their own line.
PKGS_BUILD="meson ninja-build pkg-config gcc libc6-dev libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules libkeyutils-dev keyutils"
PKGS_DEMO="softhsm2 opensc nginx-light curl keyutils"
PKGS_TEST_PROVIDER="libcmocka-dev softhsm2 opensc gnutls-bin valgrind clang-format git"
PKGS_TEST_PKCS11="qemu-system-x86 busybox-static xxd"
# tools-report: the HTML report rendered by headless Chromium, its screenshot read by PIL
PKGS_TEST_TOOLS="softhsm2 openssl python3 python3-jsonschema iproute2 prometheus chromium python3-pil"
PKGS_TEST_SERVERS="nginx-light stunnel4 curl python3 procps"
PKGS_TEST_FUZZ="clang-14 libfuzzer-14-dev libclang-rt-14-dev llvm-14 strace"
PKGS_TEST_TPM="swtpm swtpm-tools tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus"
# tests/pkcs11/conformance.sh: OpenSC's p11test is built from Debian's opensc source package
# (apt-get source: dpkg-dev, and the deb-src line deb_src_setup adds).
# tests/install: man pages (pandoc), the Debian packages (debhelper, lintian) and the fresh-root
# install (debootstrap).
PKGS_TEST_PACKAGING="pandoc man-db debhelper dpkg-dev fakeroot lintian debootstrap"
PKGS_TEST_CONFORMANCE="opensc softhsm2 gnutls-bin python3 dpkg-dev autoconf automake libtool make pkg-config libcmocka-dev libssl-dev"

case "${1:-}" in
build) want="$PKGS_BUILD" ;;
demo) want="$PKGS_BUILD $PKGS_DEMO" ;;
demo-tpm) want="$PKGS_BUILD $PKGS_DEMO $PKGS_TEST_TPM" ;;
test) want="$PKGS_BUILD $PKGS_TEST_PROVIDER $PKGS_TEST_PKCS11 $PKGS_TEST_TOOLS $PKGS_TEST_SERVERS $PKGS_TEST_TPM $PKGS_TEST_FUZZ $PKGS_TEST_CONFORMANCE $PKGS_TEST_PACKAGING" ;;
*) echo "usage: $0 build|demo|demo-tpm|test" >&2; exit 2 ;;
esac

# deb_src_setup: source packages of the Debian archive the machine uses (the conformance test
# builds p11test from opensc's), as a deb-src copy of each Debian deb822 entry; apt-get update
# once. A failing update takes the file away again (the test then SKIPs p11test, saying why).
DEB_SRC=/etc/apt/sources.list.d/keyward-deb-src.sources
deb_src_setup() {
    [ "$(id -u)" = 0 ] || return 0
    [ -f "$DEB_SRC" ] && return 0
    grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ &&
        return 0
    {
        echo "# Added by keyward's scripts/deps.sh test: Debian source packages (opensc, for p11test)."
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            # Paragraphs whose URIs name a Debian archive, with Types: deb made deb-src.
            awk 'BEGIN { RS = ""; ORS = "\n\n" }
                 /URIs:[^\n]*debian/ && /Types:[^\n]*deb/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f"
        done
    } >"$DEB_SRC.tmp"
    if [ -f /etc/apt/sources.list ] && grep -qE '^deb[[:space:]].*debian' /etc/apt/sources.list; then
        sed -n 's/^deb\([[:space:]].*debian.*\)/deb-src\1/p' /etc/apt/sources.list >/etc/apt/sources.list.d/keyward-deb-src.list
    fi
    if grep -q '^Types: deb-src' "$DEB_SRC.tmp"; then
        mv "$DEB_SRC.tmp" "$DEB_SRC"
    else
        rm -f "$DEB_SRC.tmp"
        [ -f /etc/apt/sources.list.d/keyward-deb-src.list ] || return 0
    fi
    echo "keyward: adding deb-src for Debian (opensc's source package, for p11test)"
    apt-get update -q >/dev/null || {
        echo "keyward: apt-get update with deb-src failed; removed again (p11test will be skipped)" >&2
        rm -f "$DEB_SRC" /etc/apt/sources.list.d/keyward-deb-src.list
    }
}
[ "${1:-}" = test ] && deb_src_setup

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
