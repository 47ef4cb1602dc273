#!/bin/bash
# `meson install` honours the prefix: with --prefix=P every installed file is under P (meson
# introspect --installed, then a DESTDIR install of a real build); the installed configs name
# the modules by their installed paths; the man pages render without warnings; with the system
# prefix the modules go where the system's OpenSSL and p11-kit look, named there by file name.
#   prefix.sh        (KEYWARD_SRC: the source tree)
set -u
SRC=${KEYWARD_SRC:?KEYWARD_SRC is the source tree}
for t in meson ninja python3 pkg-config; do
    command -v $t >/dev/null || { echo "SKIP: $t missing (scripts/deps.sh build)"; exit 77; }
done
[ -n "${KEYWARD_ASAN_PRELOAD:-}" ] &&
    { echo "SKIP: a build of its own, once per CI run in the main stage (not under asan)"; exit 77; }
T=$(mktemp -d /tmp/kw-prefix.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

P=$T/pfx
meson setup "$T/b" "$SRC" --prefix="$P" -Dtests=disabled >"$T/setup.log" 2>&1 ||
    { cat "$T/setup.log"; echo "FAIL: meson setup --prefix=$P"; exit 1; }
grep -A4 'Install layout' "$T/setup.log"
grep -q "rule *: prefix $P: everything under it" "$T/setup.log" ||
    fail "meson setup does not print the install layout rule for --prefix=$P"

# 1. What meson says it will install: every destination under the prefix.
meson introspect "$T/b" --installed >"$T/installed.json" || { echo "FAIL: introspect"; exit 1; }
python3 - "$T/installed.json" "$P" <<'PY' || fails=$((fails + 1))
import json, sys
inst = json.load(open(sys.argv[1]))
pfx = sys.argv[2].rstrip("/") + "/"
bad = [d for d in inst.values() if not d.startswith(pfx)]
for d in bad:
    print("FAIL: installed outside the prefix:", d)
want = ["keyward.so", "keyward-pkcs11.so", "keyward.module", "etc/ssl/keyward/keyward-provider.cnf",
        "keyward.1", "keyward-provider.7", "keyward-pkcs11.8", "bin/keyward",
        "systemd/system/keyward-renew@.service", "systemd/system/keyward-renew@.timer",
        "systemd/system/keyward-crl@.service", "systemd/system/keyward-crl@.timer",
        "systemd/system/keyward-metrics@.service", "systemd/system/keyward-metrics@.timer"]
names = list(inst.values())
for w in want:
    if not any(d.endswith("/" + w) for d in names):
        print("FAIL: introspect --installed lists no", w); bad.append(w)
print(f"introspect --installed: {len(names)} files, all under {pfx}" if not bad else "")
sys.exit(1 if bad else 0)
PY

# 2. A real install into DESTDIR: nothing outside DESTDIR/PREFIX.
ninja -C "$T/b" >"$T/build.log" 2>&1 || { tail -20 "$T/build.log"; echo "FAIL: build"; exit 1; }
D=$T/dest
meson install -C "$T/b" --no-rebuild --destdir "$D" >"$T/install.log" 2>&1 ||
    { tail -20 "$T/install.log"; echo "FAIL: meson install --destdir"; exit 1; }
outside=$(find "$D" -mindepth 1 \( -type f -o -type l \) ! -path "$D$P/*")
[ -z "$outside" ] || fail "DESTDIR install wrote outside $D$P: $outside"
echo "DESTDIR install: $(find "$D$P" -type f | wc -l) files under \$DESTDIR$P"

# 3. The installed configs name the modules where they were installed.
cnf=$D$P/etc/ssl/keyward/keyward-provider.cnf
mod=$(find "$D$P" -name keyward.module)
so=$(find "$D$P" -name keyward.so)
p11so=$(find "$D$P" -name keyward-pkcs11.so)
grep -qx "module = ${so#"$D"}" "$cnf" || fail "keyward-provider.cnf does not load ${so#"$D"}"
grep -qx "module: ${p11so#"$D"}" "$mod" || fail "keyward.module does not name ${p11so#"$D"}"
# The keyward command looks for the provider and the keyring module where they were installed.
strings "$D$P/bin/keyward" | grep -qx "${so#"$D"}" ||
    fail "bin/keyward does not default to the installed provider ${so#"$D"}"
"$D$P/bin/keyward" --version | grep -qx "keyward $(meson introspect "$T/b" --projectinfo |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" ||
    fail "keyward --version is not meson's project version"

# The stanza used as its comments and keyward-provider(7) say, on the installed tree (the
# DESTDIR tree copied to the prefix it was built for): one .include line at the end of a copy of
# the system's openssl.cnf, and the two-line file for one program. Both: keyward and default
# active.
odir=$(openssl version -d | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
if [ -f "$odir/openssl.cnf" ] && [ -f "$cnf" ]; then
    mkdir -p "$P" && cp -a "$D$P/." "$P/"
    grep -qx '#     \.include /etc/ssl/keyward/keyward-provider\.cnf' "$cnf" ||
        fail "keyward-provider.cnf's comments do not give the .include line"
    cp "$odir/openssl.cnf" "$T/openssl.cnf"
    echo ".include $P/etc/ssl/keyward/keyward-provider.cnf" >>"$T/openssl.cnf"
    printf 'openssl_conf = openssl_init\n.include %s\n' "$P/etc/ssl/keyward/keyward-provider.cnf" \
        >"$T/one.cnf"
    for c in openssl.cnf one.cnf; do
        out=$(OPENSSL_CONF=$T/$c openssl list -providers 2>&1)
        for prov in keyward default; do
            echo "$out" | grep -A3 "^  $prov\$" | grep -q 'status: active' ||
                fail "$c with the installed stanza included: $prov is not active: $out"
        done
    done
    echo "openssl list -providers: keyward and default active with $odir/openssl.cnf + .include"
else
    echo "(no $odir/openssl.cnf: the .include of the stanza is not tried)"
fi

# 4. The man pages: installed, and rendered in 80 columns without a warning.
for page in man1/keyward.1 man7/keyward-provider.7 man8/keyward-pkcs11.8; do
    f=$D$P/share/man/$page
    if [ ! -f "$f" ]; then
        fail "$page not installed"
        continue
    fi
    w=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
    [ -z "$w" ] || fail "$page: man --warnings: $w"
    name=$(MANWIDTH=80 man -l "$f" 2>/dev/null | sed -n '/^NAME/{n;p;q}')
    pname=${page##*/}
    echo "$name" | grep -qE "^ *${pname%.*} +- " || fail "$page: no NAME line for whatis (got: $name)"
    grep -q "keyward $(sed -n "s/^ *version *: *'\(.*\)',/\1/p" "$SRC/meson.build")" "$f" ||
        fail "$page does not carry the project version"
done

# 5. The system prefix: OpenSSL's and p11-kit's own directories, modules by file name there.
meson setup "$T/s" "$SRC" --prefix=/usr -Dtests=disabled >"$T/setup-usr.log" 2>&1 ||
    { tail "$T/setup-usr.log"; fail "meson setup --prefix=/usr"; }
meson introspect "$T/s" --installed >"$T/installed-usr.json"
mdir=$(pkg-config --variable=modulesdir libcrypto)
pdir=$(pkg-config --variable=p11_module_path p11-kit-1)
cdir=$(pkg-config --variable=p11_module_configs p11-kit-1)
for want in "$mdir/keyward.so" "$pdir/keyward-pkcs11.so" "$cdir/keyward.module" \
    /etc/ssl/keyward/keyward-provider.cnf; do
    grep -q "\"$want\"" "$T/installed-usr.json" || fail "--prefix=/usr does not install $want"
done
grep -qx 'module: keyward-pkcs11.so' "$T/s/conf/keyward.module" ||
    fail "--prefix=/usr: keyward.module should name the module by file name"
grep -q '^module = ' "$T/s/conf/keyward-provider.cnf" &&
    fail "--prefix=/usr: keyward-provider.cnf should let OpenSSL find keyward.so by name"

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "PASS: the install honours the prefix"
