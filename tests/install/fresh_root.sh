#!/bin/bash
# The Debian packages, installed on a fresh root as an operator installs them: build the .debs
# (the README's "Install as packages" lines, as printed), lintian (no errors), debootstrap a minimal
# bookworm root (the tarball cached between runs), `apt-get install ./keyward*.deb` in it, then
# inside the root, with nothing from the build tree: man pages, `openssl list -providers` with
# the packaged snippet, `p11-kit list-modules`, and the demo's steps on a SoftHSM2 token (ca
# init, req, sign, verify). Last, `apt-get purge` must leave none of the packages' files.
# Root only; the network (Debian's archive) is needed for debootstrap and apt; runs once per CI
# run (main stage), not under the sanitizers.
#   fresh_root.sh     (KEYWARD_SRC: the source tree)
#   KEYWARD_PKG_CACHE: where the debootstrap tarball is kept (default /var/cache/keyward-tests)
set -u
SRC=${KEYWARD_SRC:?KEYWARD_SRC is the source tree}
CACHE=${KEYWARD_PKG_CACHE:-/var/cache/keyward-tests}
SUITE=bookworm
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (debootstrap, chroot)"; exit 77; }
[ -n "${KEYWARD_ASAN_PRELOAD:-}" ] &&
    { echo "SKIP: the package install runs once per CI run, in the main stage (not under asan)"; exit 77; }
case ${LD_PRELOAD:-} in *vgpreload*) echo "SKIP: not under valgrind (main stage only)"; exit 77 ;; esac
for t in dpkg-buildpackage dh lintian debootstrap unshare pandoc; do
    command -v $t >/dev/null || { echo "SKIP: $t missing (scripts/deps.sh test installs it)"; exit 77; }
done
MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

T=$(mktemp -d /tmp/kw-deb.XXXXXX)
R=$T/root
cleanup() {
    # The root's /proc and /dev mounts live in the unshare'd namespace only; should one ever be
    # seen here, the tree is left alone rather than removed through a bind mount of /dev.
    if grep -q " $T/" /proc/self/mounts; then
        echo "not removing $T: something is still mounted under it" >&2
    else
        rm -rf --one-file-system "$T"
    fi
}
trap cleanup EXIT
t0=$SECONDS
step() { echo "== $* ($((SECONDS - t0)) s)"; }

# 1. The packages, built by the README's own two lines ("Install as packages"), run as printed:
# the first here, in a copy of the tree (dpkg-buildpackage writes into it and beside it), the
# second in the fresh root.
mapfile -t readme < <(sed -n '/^## Install as packages/,/^## /{s/^    //p}' "$SRC/README.md")
if [ "${#readme[@]}" != 2 ]; then
    echo "FAIL: README's \"Install as packages\" should have two command lines, has ${#readme[@]}"
    exit 1
fi
printf '   README: %s\n' "${readme[@]}"
step "README line 1 (build the packages)"
mkdir -p "$T/src/keyward"
tar -C "$SRC" --exclude=./.git --exclude='./build*' --exclude=./obj-\* --exclude=./keyward-demo \
    --exclude=./debian/.debhelper -cf - . | tar -C "$T/src/keyward" --no-same-owner -xf -
if ! (cd "$T/src/keyward" && DEBIAN_FRONTEND=noninteractive bash -ec "${readme[0]}") >"$T/build.log" 2>&1; then
    tail -40 "$T/build.log"
    echo "FAIL: README: ${readme[0]}"
    exit 1
fi
debs=$(cd "$T/src" && ls keyward_*.deb keyward-provider_*.deb keyward-pkcs11_*.deb)
echo "$debs" | sed 's/^/   /'
[ "$(echo "$debs" | wc -l)" = 3 ] || { echo "FAIL: expected three packages"; exit 1; }
ls "$T/src"/*-dbgsym_*.deb >/dev/null 2>&1 || echo "   (no -dbgsym packages: dh_strip made none)"

step "lintian"
lintian --fail-on error --display-info "$T/src"/keyward_*.changes >"$T/lintian.log" 2>&1
lrc=$?
grep -v 'running with root privileges' "$T/lintian.log" | sed 's/^/   /'
[ $lrc = 0 ] || { echo "FAIL: lintian reports errors"; exit 1; }

# 2. A minimal bookworm root; the downloaded packages are cached as debootstrap's tarball.
step "debootstrap --variant=minbase $SUITE ($MIRROR)"
mkdir -p "$CACHE"
TGZ=$CACHE/$SUITE-minbase-$(dpkg --print-architecture).tgz
if [ ! -s "$TGZ" ]; then
    if ! debootstrap --variant=minbase --make-tarball="$TGZ.new" "$SUITE" "$T/tb" "$MIRROR" \
        >"$T/tarball.log" 2>&1; then
        tail -5 "$T/tarball.log"
        rm -f "$TGZ.new"
        echo "SKIP: debootstrap could not download $SUITE from $MIRROR (no network?)"
        exit 77
    fi
    mv "$TGZ.new" "$TGZ"
    rm -rf "$T/tb"
fi
if ! debootstrap --variant=minbase --unpack-tarball="$TGZ" "$SUITE" "$R" "$MIRROR" >"$T/debootstrap.log" 2>&1; then
    tail -20 "$T/debootstrap.log"
    echo "FAIL: debootstrap from the cached tarball $TGZ (remove it to download again)"
    exit 1
fi
mkdir -p "$R/tmp/debs/keyward"
(cd "$T/src" && cp $debs "$R/tmp/debs/")
cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true

# Everything below runs in the root, in a mount namespace of its own (/proc and /dev are
# mounted there and vanish with it), with a clean environment.
inroot() {
    unshare --mount --fork bash -c '
        R=$1; shift
        mount --make-rprivate / && mount -t proc proc "$R/proc" && mount --rbind /dev "$R/dev" &&
            exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' bash "$R" "$@"
}

step "README line 2 (install the packages) in the fresh root"
inroot sh -c 'echo "deb '"$MIRROR"' '"$SUITE"' main" >/etc/apt/sources.list && apt-get update -q' \
    >"$T/apt.log" 2>&1 || { tail -5 "$T/apt.log"; echo "SKIP: apt-get update in the root failed (no network?)"; exit 77; }
# README line 2, as printed, from a checkout's place (/tmp/debs/keyward: the .debs in ..); then
# what the checks below use.
if ! inroot bash -ec "cd /tmp/debs/keyward && ${readme[1]}" >>"$T/apt.log" 2>&1 ||
    ! inroot apt-get install -y -q p11-kit softhsm2 man-db >>"$T/apt.log" 2>&1; then
    tail -30 "$T/apt.log"
    echo "FAIL: README: ${readme[1]} (in a fresh $SUITE root)"
    exit 1
fi
grep -E '^(Setting up|Unpacking) keyward' "$T/apt.log" | sed 's/^/   /'
inroot dpkg-query -L keyward keyward-provider keyward-pkcs11 >"$T/files.txt" || exit 1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
step "checks in the root"
for p in "keyward 1" "keyward-provider 7" "keyward-pkcs11 8"; do
    set -- $p
    out=$(inroot sh -c "MANWIDTH=80 man --warnings $2 $1 2>&1 >/dev/null; MANWIDTH=80 man $2 $1 2>/dev/null | sed -n '/^NAME/{n;p;q}'")
    echo "   man $2 $1: $out"
    echo "$out" | grep -qE "^ *$1 +- " || fail "man $2 $1 in the root: $out"
done
out=$(inroot env OPENSSL_CONF=/etc/ssl/keyward-provider.cnf openssl list -providers 2>&1)
echo "$out" | sed 's/^/   /'
echo "$out" | grep -q '^  keyward$' || fail "openssl list -providers with the packaged snippet shows no keyward"
echo "$out" | grep -A3 '^  keyward$' | grep -q 'status: active' || fail "keyward is not active"
out=$(inroot p11-kit list-modules 2>&1)
echo "$out" | grep -E '^[a-z0-9-]+: |^ +token: ' | sed 's/^/   /'
echo "$out" | grep -q '^keyward: keyward-pkcs11.so$' || fail "p11-kit list-modules does not show the keyring module"
echo "$out" | grep -q '^ *token: keyring$' || fail "p11-kit list-modules shows no keyring token"
inroot bash -c 'type _keyward >/dev/null 2>&1 || . /usr/share/bash-completion/completions/keyward; complete -p keyward' \
    >/dev/null 2>&1 || fail "the bash completion does not load"

# The demo's steps against the installed files only: a SoftHSM2 token, a CA, a client key on
# the token, its certificate, verified.
cat >"$R/root/demo.sh" <<'DEMO'
set -eu
cd /root
umask 077
export SOFTHSM2_CONF=/root/softhsm2.conf
mkdir -p tokens
echo "directories.tokendir = /root/tokens" >softhsm2.conf
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >so.pin
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >user.pin
MOD=/usr/lib/softhsm/libsofthsm2.so
KW_SO=$(cat so.pin) KW_PIN=$(cat user.pin) sh -c 'softhsm2-util --init-token --free --label demo \
    --so-pin "$KW_SO" --pin "$KW_PIN"' >/dev/null
export KEYWARD_MODULE=$MOD
keyward --dir pki ca init --key 'pkcs11:token=demo;object=ca;id=%10' --subject 'CN=packaged CA' \
    --pin-source file:/root/user.pin
keyward req --key 'pkcs11:token=demo;object=client;id=%20' --subject CN=client \
    --pin-source file:/root/user.pin --out client.csr
keyward --dir pki ca sign client.csr --profile client --name client
keyward --dir pki verify pki/issued/client.crt --purpose client
keyward --dir pki check
DEMO
step "the demo's steps on the installed files"
if inroot bash /root/demo.sh >"$T/demo.log" 2>&1; then
    grep -E 'PASS|FAIL|serial|issued' "$T/demo.log" | head -12 | sed 's/^/   /'
else
    sed 's/^/   /' "$T/demo.log" | tail -30
    fail "ca init / req / sign / verify with the installed packages"
fi

step "apt-get purge"
inroot apt-get purge -y -q keyward keyward-provider keyward-pkcs11 >"$T/purge.log" 2>&1 ||
    { tail -10 "$T/purge.log"; fail "apt-get purge"; }
left=0
while IFS= read -r f; do
    [ -n "$f" ] && [ "$f" != /. ] || continue
    # Directories the packages share with the system (/usr/share/man/man1 ...) stay.
    if [ -e "$R$f" ] && [ ! -d "$R$f" ]; then
        echo "   left behind: $f"
        left=$((left + 1))
    fi
done <"$T/files.txt"
[ -e "$R/etc/ssl/keyward-provider.cnf" ] && { echo "   left behind: /etc/ssl/keyward-provider.cnf"; left=$((left + 1)); }
[ "$left" = 0 ] || fail "apt-get purge left $left file(s)"
echo "   purge: none of the $(grep -c . "$T/files.txt") paths the packages listed is left"

[ "$fails" = 0 ] || { echo "$fails failure(s) ($((SECONDS - t0)) s)"; exit 1; }
echo "PASS: built, lintian-clean, installed on a fresh $SUITE root, used and purged ($((SECONDS - t0)) s)"
