#!/bin/bash
# ca backup and ca restore (issue 16, item 7): backup -> restore -> keyward check passes and the
# restored tree equals the original; a private key PEM or a FIFO planted in the CA directory is
# left out with a warning; hostile archives (crafted with python3's tarfile: a ../ member, an
# absolute path, a symbolic link to /etc, a link chain that leads outside, a hard link, a FIFO,
# a tampered file, a file not in the manifest, a manifest entry missing, a name twice, a
# truncated archive, a tar that is no keyward backup) are each refused naming the reason, with
# nothing written; restore over an existing CA needs --force; a backup taken while a
# `ca sign --batch` of 20 certificates runs is consistent; every --json document is valid.
. "$(dirname "$0")/lib.sh"
need_softhsm
need_jsonschema
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --subject "CN=Backup CA" \
    --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=$2" -out "$1" 2>/dev/null || fail "csr $1"; }
mkdir -p "$T/b1" "$T/conc" "$T/out dir"
for i in 1 2 3 4; do csr "$T/b1/host$i.csr" "host$i"; done
for i in $(seq 1 20); do csr "$T/conc/c$i.csr" "c$i"; done
csr "$T/long.csr" long
long=$(printf 'n%.0s' $(seq 128)) # issued/NAME.crt is longer than ustar's 100 bytes: a pax header
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/b1" --profile client --tag usage=vpn
expect_rc 0 "$KW" --dir "$P" ca sign "$T/long.csr" --profile client --name "$long" --note 'a "quoted" note'
expect_rc 0 "$KW" --dir "$P" ca revoke host2 --reason keyCompromise

# ---- a stray private key and a FIFO are left out, and said so ----
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$P/stray.key" 2>/dev/null ||
    fail "genpkey"
mkfifo "$P/fifo"
J 0 --dir "$P" ca backup --out "$T/out dir/with stray.tar"
grep -q "stray.key left out of the backup: it looks like a private key" "$T/j/$KWT_JN.err" ||
    { cat "$T/j/$KWT_JN.err"; fail "no warning about the private key file"; }
grep -q "fifo left out of the backup: not a file, directory or link" "$T/j/$KWT_JN.err" ||
    { cat "$T/j/$KWT_JN.err"; fail "no warning about the FIFO"; }
"$PY" - "$T/out dir/with stray.tar" "$T/out" <<'PY' || fail "the archive with a stray key"
import json, sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
assert names[0] == "MANIFEST", names[:3]
assert "stray.key" not in names and "fifo" not in names, names
assert any(n.startswith("issued/nnnn") and len(n) > 100 for n in names), "no long name"
r = json.load(open(sys.argv[2]))["result"]
assert sorted(s["path"] for s in r["skipped"]) == ["fifo", "stray.key"], r["skipped"]
PY
grep -q "BEGIN PRIVATE KEY" "$T/out dir/with stray.tar" && fail "the private key is in the archive"
rm -f "$P/stray.key" "$P/fifo"
ok "a private key PEM and a FIFO in the CA directory are left out with a warning"

# ---- backup -> restore -> check; the restored tree is the original ----
J 0 --dir "$P" ca backup --out "$T/b.tar"
[ "$(stat -c %a "$T/b.tar")" = 600 ] || fail "the backup is not mode 0600"
sha=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["result"]["sha256"])' "$T/out")
[ "$sha" = "$(sha256sum "$T/b.tar" | cut -d' ' -f1)" ] || fail "the reported SHA-256 is not the file's"
grep -q '"op":"ca backup",.*"outcome":"ok"' "$P/audit.log" || fail "the backup is not audited"
expect_rc 2 "$KW" --dir "$P" ca backup --out "$P/inside.tar"
grep -q "inside the CA directory" "$T/err" || fail "a backup inside the CA directory: $(cat "$T/err")"
before=$(tree_sum "$P")
J 0 ca restore "$T/b.tar" --dir "$T/new ca"
"$PY" - "$T/out" <<'PY' || fail "restore --json result"
import json, sys
r = json.load(open(sys.argv[1]))["result"]
assert r["check"]["result"] == "PASS" and not r["replaced"], r
assert any(c["check"] == "ca-key" and c["result"] == "OK" for c in r["check"]["checks"]), r
PY
grep -q '"op":"ca restore",.*"outcome":"ok"' "$T/new ca/audit.log" || fail "the restore is not audited"
expect_rc 0 "$KW" --dir "$T/new ca" check
expect_rc 0 "$KW" --dir "$T/new ca" ca list
grep -q "$long" "$T/out" && grep -q 'a "quoted" note' "$T/out" || fail "restored list lacks the long name"
[ "$(stat -c %a "$T/new ca")" = 700 ] || fail "the restored directory is not 0700"
# on a host without the token: restored, but the check fails and says why (exit 1)
mkdir "$T/no-tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$T/no-tokens" >"$T/none.conf"
SOFTHSM2_CONF=$T/none.conf J 1 ca restore "$T/b.tar" --dir "$T/elsewhere"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["result"]["check"]["result"] == "FAIL", d' \
    "$T/out" || fail "restore without the token: the check result"
grep -q "keyward check fails there" "$T/j/$KWT_JN.err" || fail "restore without the token: $(cat "$T/j/$KWT_JN.err")"
[ -f "$T/elsewhere/keyward.conf" ] || fail "restore without the token did not restore"
# where the CA was (disaster recovery): the same tree, modes and links
mv "$P" "$T/pki.orig"
expect_rc 0 "$KW" ca restore "$T/b.tar" --dir "$P"
grep -q "PASS keyward check: 0 failed" "$T/out" || fail "restore does not report the check"
[ "$(tree_sum "$P")" = "$before" ] || fail "the restored tree differs from the original"
diff <(cd "$T/pki.orig" && find . ! -name audit.log -printf '%M %p %l\n' | sort) \
    <(cd "$P" && find . ! -name audit.log -printf '%M %p %l\n' | sort) || fail "modes or links differ"
ok "backup -> restore -> check passes; the restored tree equals the original"

# ---- over an existing CA: only with --force ----
J 1 ca restore "$T/b.tar" --dir "$T/new ca"
grep -q "exists and is not empty (a CA is there).*--force" "$T/j/$KWT_JN.err" ||
    fail "restore over a CA: $(cat "$T/j/$KWT_JN.err")"
expect_rc 0 "$KW" --dir "$T/new ca" ca sign "$T/conc/c1.csr" --profile client
after=$(tree_sum "$T/new ca")
expect_rc 1 "$KW" --dir "$T/new ca" ca restore "$T/b.tar"
[ "$(tree_sum "$T/new ca")" = "$after" ] || fail "a refused restore changed the CA there"
J 0 ca restore "$T/b.tar" --dir "$T/new ca" --force
grep -q '"replaced":true' "$T/out" || fail "--force does not say it replaced the CA"
[ -e "$T/new ca/issued/c1.crt" ] && fail "--force kept a file of the CA it replaced"
ls -A "$T" | grep -q restore && fail "a restore left its temporary directory: $(ls -A "$T")"
ok "restore over an existing CA is refused without --force, replaces it with it"

# ---- GNU tar reads the archive as keyward wrote it ----
if command -v tar >/dev/null; then
    mkdir "$T/gnu"
    tar -xf "$T/b.tar" -C "$T/gnu" || fail "GNU tar cannot extract the backup"
    rm "$T/gnu/MANIFEST"
    diff -r --no-dereference -x audit.log "$T/pki.orig" "$T/gnu" || fail "GNU tar extracts other files"
    ok "GNU tar extracts the same tree"
fi

# ---- hostile archives: each refused with its reason, nothing written ----
"$PY" - "$T/b.tar" "$T/h" <<'PY' || fail "cannot craft the hostile archives"
import io, os, sys, tarfile
src = tarfile.open(sys.argv[1])
members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
manifest = members[0][1].decode()
os.makedirs(sys.argv[2])

def ti(name, type=tarfile.REGTYPE, data=b"", link=""):
    t = tarfile.TarInfo(name)
    t.type, t.linkname, t.mode = type, link, 0o700 if type == tarfile.DIRTYPE else 0o600
    return (t, data)

def mf(extra):
    data = (manifest + extra).encode()
    return (ti("MANIFEST", data=data)[0], data)

def write(name, items, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(os.path.join(sys.argv[2], name + ".tar"), "w", format=fmt) as out:
        for t, data in items:
            t.size = len(data) if data is not None else 0
            out.addfile(t, io.BytesIO(data) if data is not None else None)

write("dotdot", members + [ti("../evil", data=b"x")])
write("absolute", members + [ti("/tmp/kw-evil", data=b"x")])
write("symlink-etc", members + [ti("certs/etc", tarfile.SYMTYPE, None, "/etc")])
write("fifo", members + [ti("certs/fifo", tarfile.FIFOTYPE, None)])
write("hardlink", members + [ti("certs/passwd", tarfile.LNKTYPE, None, "/etc/passwd")])
write("newline", members + [ti("certs/a\nb", data=b"x")])
# a chain of links, each inside on its face, that physically leaves the directory
write("chain", [mf("d 0700 - - d1\nd 0700 - - d1/d2\nl 0777 - - d1/d2/p ../z\n"
                   "l 0777 - - e d1/d2/p/../../..\n")]
      + members[1:] + [ti("d1", tarfile.DIRTYPE, None), ti("d1/d2", tarfile.DIRTYPE, None),
                       ti("d1/d2/p", tarfile.SYMTYPE, None, "../z"),
                       ti("e", tarfile.SYMTYPE, None, "d1/d2/p/../../..")])
tampered = []
for t, data in members:
    if t.name.endswith("/index.txt"):
        data = data.replace(b"CN=host1", b"CN=hostX")
    tampered.append((t, data))
write("tampered", tampered)
write("extra", members + [ti("extra.txt", data=b"not in the manifest")])
write("missing", [m for m in members if m[0].name != "ca.crt"])
write("twice", members + [m for m in members if m[0].name == "ca.crt"])
write("nomanifest", members[1:])
raw = open(sys.argv[1], "rb").read()
open(os.path.join(sys.argv[2], "truncated.tar"), "wb").write(raw[: len(raw) // 2 + 100])
PY
hostile() { # NAME REASON
    expect_rc 1 "$KW" ca restore "$T/h/$1.tar" --dir "$T/r-$1"
    grep -qF -- "$2" "$T/err" || { cat "$T/err"; fail "hostile archive $1: the refusal does not say: $2"; }
    grep -q "nothing was written" "$T/err" || fail "hostile archive $1: does not say nothing was written"
    [ -e "$T/r-$1" ] && fail "hostile archive $1: $T/r-$1 was created"
    ls -A "$T" | grep -q "restore" && fail "hostile archive $1: a temporary directory is left"
    [ -e /tmp/kw-evil ] && fail "hostile archive $1 wrote /tmp/kw-evil"
    true
}
hostile dotdot "member ../evil: a path with a .. component"
hostile absolute "member /tmp/kw-evil: an absolute path"
hostile symlink-etc "member certs/etc: a symbolic link to /etc, outside the directory"
hostile fifo "member certs/fifo: a FIFO"
hostile hardlink "member certs/passwd: a hard link to /etc/passwd"
hostile newline 'member certs/a\x0ab: a control character'
hostile chain "e: a symbolic link to d1/d2/p/../../.., which leads outside the directory"
hostile tampered "does not match its SHA-256 in the MANIFEST"
grep -q "member state.[0-9]*/index.txt does not match" "$T/err" || fail "the tampered file is not named"
hostile extra "member extra.txt is not in the MANIFEST"
hostile missing "ca.crt is in the MANIFEST but not in the archive"
hostile twice "member ca.crt is in the archive twice"
hostile nomanifest "not a keyward backup: its first member is .lock, not MANIFEST"
hostile truncated "truncated"
J 1 ca restore "$T/h/fifo.tar" --dir "$T/r-json"
ok "14 hostile archives refused, each naming its reason; nothing written"

# ---- a backup while ca sign --batch runs: it has all 20 or none ----
n0=$(wc -l <"$P/state/index.txt")
"$KW" --dir "$P" ca sign --batch "$T/conc" --profile client >"$T/batch.log" 2>&1 &
bpid=$!
KWT_PIDS="$KWT_PIDS $bpid"
for _ in $(seq 50); do # start the backup once the batch holds the lock
    ls "$P" | grep -q '^state\.[0-9]*$' && [ "$(ls -d "$P"/state.* | wc -l)" -gt 1 ] && break
    sleep 0.02
done
expect_rc 0 "$KW" --dir "$P" ca backup --out "$T/conc.tar"
wait "$bpid" || { cat "$T/batch.log"; fail "the batch failed"; }
expect_rc 0 "$KW" ca restore "$T/conc.tar" --dir "$T/conc-ca"
n=$(wc -l <"$T/conc-ca/state/index.txt")
certs=$(ls "$T/conc-ca/certs/" | grep -c '\.pem$')
[ "$n" = "$certs" ] || fail "the backup taken during the batch has $n index lines but $certs certificates"
[ "$n" = "$n0" ] || [ "$n" = $((n0 + 20)) ] || fail "the backup has $((n - n0)) of the batch's 20"
expect_rc 0 "$KW" --dir "$T/conc-ca" check
ok "a backup during ca sign --batch is consistent ($((n - n0)) of 20 in it, $n index lines = certificates)"

J 2 --dir "$P" ca backup
check_json_docs 8
ok "every --json document matches the schema"
