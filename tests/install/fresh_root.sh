#!/bin/bash
# The Debian packages, installed on a fresh root as an operator installs them: build the .debs
# (the README's "Install as packages" lines, as printed), lintian (no errors), debootstrap a minimal
# bookworm root (the tarball cached between runs), `apt-get install ./keyward*.deb` in it, then
# inside the root, with nothing from the build tree: man pages (no warnings), the packaged
# snippet a conffile and `.include`d into Debian's own /etc/ssl/openssl.cnf as README says
# (`openssl list -providers`: keyward and default), `p11-kit list-modules`, and the demo's steps
# on a SoftHSM2 token (ca init, req, sign, verify). Last, `apt-get purge` must leave none of the
# packages' files nor an empty directory they created, and openssl.cnf must still work until
# the README's line is removed again.
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
# dh_strip makes one -dbgsym package for each package with an ELF file: all three.
for p in keyward keyward-provider keyward-pkcs11; do
    ls "$T/src/${p}-dbgsym_"*.deb >/dev/null 2>&1 || { echo "FAIL: no ${p}-dbgsym package"; exit 1; }
done
(cd "$T/src" && ls ./*-dbgsym_*.deb | sed 's|^./|   |')

# No lintian error or warning. Warnings left: none (no override file). Infos are shown, not
# failed: spare-manual-page for keyward-pkcs11(8) (a man page for a module, not a command; section
# 8 as docs/ name it).
step "lintian"
lintian --fail-on error,warning --display-info "$T/src"/keyward_*.changes >"$T/lintian.log" 2>&1
lrc=$?
grep -v 'running with root privileges' "$T/lintian.log" | sed 's/^/   /'
[ $lrc = 0 ] || { echo "FAIL: lintian reports errors or warnings (exit $lrc)"; exit 1; }

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

# The directories of the root before anything is installed in it: the purge check below fails
# on a directory the packages left behind only when it was not there already.
(cd "$R" && find . -xdev -type d | sed 's|^\.||') | sort >"$T/dirs-before.txt"

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
    # man --warnings: groff's warnings (and man's own) on stderr; the page itself discarded.
    w=$(inroot sh -c "MANWIDTH=80 man --warnings $2 $1 2>&1 >/dev/null")
    [ -z "$w" ] || fail "man --warnings $2 $1 in the root: $w"
    out=$(inroot sh -c "MANWIDTH=80 man $2 $1 2>/dev/null | sed -n '/^NAME/{n;p;q}'")
    echo "   man $2 $1: $out"
    echo "$out" | grep -qE "^ *$1 +- " || fail "man $2 $1 in the root: $out"
done

# The snippet: where the package puts it, a conffile, and loaded the way README says: its
# ".include" line added at the end of Debian's own /etc/ssl/openssl.cnf, nothing else changed.
SNIP=/etc/ssl/keyward/keyward-provider.cnf
grep -qxF "$SNIP" "$T/files.txt" || fail "keyward-provider does not install $SNIP"
conff=$(inroot dpkg-query -W -f='${Conffiles}' keyward-provider)
echo "   conffiles of keyward-provider:$conff"
echo "$conff" | grep -qE "^ $SNIP [0-9a-f]{32}\$" || fail "$SNIP is not a conffile of keyward-provider"
inc=$(sed -n '/^## Using the provider/,/^## /{s/^    \(\.include .*\)$/\1/p}' "$SRC/README.md")
[ "$inc" = ".include $SNIP" ] || fail "README's \"Using the provider\" should give the line .include $SNIP (has: $inc)"
cp "$R/etc/ssl/openssl.cnf" "$T/openssl.cnf.debian"
echo "$inc" >>"$R/etc/ssl/openssl.cnf"
out=$(inroot openssl list -providers 2>&1)
echo "$out" | sed 's/^/   /'
for prov in keyward default; do
    echo "$out" | grep -A3 "^  $prov\$" | grep -q 'status: active' ||
        fail "openssl list -providers with README's line in /etc/ssl/openssl.cnf: $prov not active"
done
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
# Every path dpkg listed: a file must be gone; a directory may stay only if the base system had
# it before the install, or another installed package (a dependency: p11-kit-modules' pkcs11/)
# owns it and it is not empty.
left=0
kept=0
while IFS= read -r f; do
    [ -n "$f" ] && [ "$f" != /. ] || continue
    if [ -d "$R$f" ] && [ ! -L "$R$f" ]; then
        grep -qxF "$f" "$T/dirs-before.txt" && continue
        if [ -n "$(ls -A "$R$f")" ] && inroot dpkg-query -S "$f" >/dev/null 2>&1; then
            kept=$((kept + 1))
            continue
        fi
        echo "   left behind: directory $f ($(ls -A "$R$f" | wc -l) entries, not in the base system)"
        left=$((left + 1))
    elif [ -e "$R$f" ] || [ -L "$R$f" ]; then
        echo "   left behind: $f"
        left=$((left + 1))
    fi
done <"$T/files.txt"
[ "$left" = 0 ] || fail "apt-get purge left $left path(s)"
echo "   purge: none of the $(grep -c . "$T/files.txt") paths the packages listed is left" \
    "($kept directories another package still uses)"
# README's line still in openssl.cnf (the operator has not removed it yet): OpenSSL skips the
# missing file, default stays; then the line removed, openssl.cnf is Debian's again.
out=$(inroot openssl list -providers 2>&1) || fail "openssl with a dangling .include after the purge: $out"
echo "$out" | grep -A3 '^  default$' | grep -q 'status: active' ||
    fail "after the purge, with README's line still in openssl.cnf, default is not active: $out"
echo "$out" | grep -q '^  keyward$' && fail "after the purge, openssl still lists keyward"
grep -vxF "$inc" "$R/etc/ssl/openssl.cnf" >"$T/openssl.cnf.after"
cmp -s "$T/openssl.cnf.debian" "$T/openssl.cnf.after" ||
    fail "/etc/ssl/openssl.cnf differs from Debian's with README's line removed"

[ "$fails" = 0 ] || { echo "$fails failure(s) ($((SECONDS - t0)) s)"; exit 1; }
echo "PASS: built, lintian-clean, installed on a fresh $SUITE root, used and purged ($((SECONDS - t0)) s)"
