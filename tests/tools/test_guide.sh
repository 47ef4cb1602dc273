#!/bin/bash
# docs/ca-guide.md runs as written: every indented command block of the guide, in order, as root,
# with the paths the guide prints (/etc/keyward, /srv/pki, /home/alice, /var/www/pki, SoftHSM's
# default token directory). So that the machine is left as it was, the guide runs in a private
# mount namespace where /etc, /usr, /var and /home are overlays whose changes vanish with it and
# /srv is a tmpfs; keyward and keyward.so from this build are installed into that /usr as a
# package would put them. Block markers in the guide (HTML comments) say how to run a block:
#   <!-- cron -->        crontab lines: the command after the five schedule fields runs
#   <!-- server PORT --> started in the background; the next block runs once PORT listens
#   <!-- unit -->        a systemd unit: its ExecStart runs with its Environment (Type=oneshot:
#                        must exit 0; otherwise it must still be running after it listens)
# A line "! CMD" in a block must fail.
. "$(dirname "$0")/lib.sh"
GUIDE=${KEYWARD_SRC:?}/docs/ca-guide.md
[ "$(id -u)" = 0 ] || skip "the guide is written for root (it writes /etc/keyward, /srv/pki)"
command -v unshare >/dev/null || skip "unshare (util-linux) missing"
command -v softhsm2-util >/dev/null || skip "softhsm2-util not installed"
command -v python3 >/dev/null || skip "python3 missing"
unshare -m --propagation private true 2>/dev/null || skip "cannot make a mount namespace here"
unshare -m --propagation private sh -c "mkdir -p $T/probe/u $T/probe/w &&
    mount -t overlay overlay -o lowerdir=/etc,upperdir=$T/probe/u,workdir=$T/probe/w /etc" \
    2>/dev/null || skip "overlayfs not available (needed to keep the guide's writes private)"

# The guide as a script.
python3 - "$GUIDE" "$T/guide.sh" <<'PY' || fail "cannot extract the guide's commands"
import re, shlex, sys
lines = open(sys.argv[1]).read().split("\n")
out = ["set -eE", 'trap \'echo "guide: the block at docs/ca-guide.md line $GUIDE_LINE failed" >&2\' ERR']
marker, i, blocks = None, 0, 0
while i < len(lines):
    m = re.match(r"<!-- (cron|unit|server (\d+)) -->", lines[i])
    if m:
        marker = m.group(1)
        i += 1
        continue
    if not lines[i].startswith("    ") or (i > 0 and lines[i - 1].strip() != ""):
        i += 1
        continue
    start = i
    block = []
    while i < len(lines) and (lines[i].startswith("    ") or lines[i] == ""):
        if lines[i] == "" and not (i + 1 < len(lines) and lines[i + 1].startswith("    ")):
            break
        block.append(lines[i][4:])
        i += 1
    blocks += 1
    out.append(f"GUIDE_LINE={start + 1}")
    if marker == "cron":
        for l in block:
            if l.strip():
                out.append(l.split(None, 5)[5])
    elif marker and marker.startswith("server"):
        port = marker.split()[1]
        out.append(f"( {' '.join(block)} ) > \"$GUIDE_LOGS/server-{port}.log\" 2>&1 &")
        out.append("GUIDE_PIDS=\"$GUIDE_PIDS $!\"")
        out.append(f"wait_port {port} \"$GUIDE_LOGS/server-{port}.log\"")
    elif marker == "unit":
        env = [l.split("=", 1)[1] for l in block if l.startswith("Environment=")]
        cmd = [l.split("=", 1)[1] for l in block if l.startswith("ExecStart=")]
        oneshot = any(l.strip() == "Type=oneshot" for l in block)
        if cmd:
            run = f"env {' '.join(shlex.quote(e) for e in env)} {cmd[0]}"
            if oneshot:
                out.append(run)
            else:
                port = re.search(r"--port (\d+)", cmd[0])
                out.append(f"{run} > \"$GUIDE_LOGS/unit.log\" 2>&1 & unit_pid=$!")
                out.append(f"wait_port {port.group(1)} \"$GUIDE_LOGS/unit.log\"" if port else "sleep 3")
                out.append('kill -0 "$unit_pid" || { cat "$GUIDE_LOGS/unit.log" >&2; false; }')
                out.append('kill "$unit_pid"; wait "$unit_pid" || true')
    else:
        text = "\n".join(block)
        for l in text.split("\n"):
            if l.startswith("! "):
                out.append(f"if {l[2:]}; then echo 'guide: expected to fail: {l[2:]}' >&2; false; fi")
            else:
                out.append(l)
    marker = None
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print(f"{blocks} blocks", file=sys.stderr)
PY
n_blocks=$(grep -c '^GUIDE_LINE=' "$T/guide.sh")
[ "$n_blocks" -ge 30 ] || fail "only $n_blocks command blocks found in the guide (extraction broken?)"

had_before=$(ls -d /srv/pki /etc/keyward /home/alice /var/www/pki 2>/dev/null)
# where this build's keyward looks for keyward.so (-Dmodulesdir: OpenSSL's own directory for
# --prefix=/usr, under the prefix otherwise); both are under the overlaid /usr
MODDIR=${KEYWARD_INSTALLED_MODULESDIR:?set by the test environment from -Dmodulesdir}
case $MODDIR in /usr/*) ;; *) skip "this build's modules directory $MODDIR is outside /usr (the guide's overlay)" ;; esac
mkdir -p "$T/work" "$T/logs"
cat >"$T/ns.sh" <<EOF
set -e
for d in /etc /usr /var /home; do
    mkdir -p "$T/ov\$d/u" "$T/ov\$d/w"
    mount -t overlay overlay -o "lowerdir=\$d,upperdir=$T/ov\$d/u,workdir=$T/ov\$d/w" "\$d"
done
mount -t tmpfs tmpfs /srv
# installed as meson install would: the command on PATH, the provider where the build put it
install -m 0755 "$KW" /usr/bin/keyward
# a keyward installed earlier under /usr/local (first on PATH) would shadow this build's and the
# guide would run an old one: replace it too (in the overlay: the machine's copy stays)
for other in \$(type -ap keyward); do
    other=\$(readlink -f "\$other") # /bin is /usr/bin on a merged /usr
    case \$other in
    /usr/bin/keyward) ;;
    /usr/*) install -m 0755 "$KW" "\$other" ;;
    *) echo "guide: \$other shadows the keyward under test (outside the overlaid /usr)" >&2; exit 1 ;;
    esac
done
hash -r
install -D -m 0644 "$KEYWARD_PROVIDER_PATH" "$MODDIR/keyward.so"
unset KEYWARD_PROVIDER_PATH KEYWARD_MODULE SOFTHSM2_CONF KEYWARD_DIR OPENSSL_CONF
GUIDE_LOGS=$T/logs GUIDE_PIDS=
wait_port() {
    for _ in \$(seq 300); do
        grep -q listening "\$2" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "\$2" >&2
    echo "guide: nothing listens on port \$1" >&2
    return 1
}
stop() { for p in \$GUIDE_PIDS; do kill \$p 2>/dev/null; wait \$p 2>/dev/null; done; }
trap stop EXIT
cd "$T/work"
. "$T/guide.sh"
# what the guide says is public is readable by anyone
for f in /var/www/pki/crl.pem /var/www/pki/gen-1.crl /var/www/pki/gen-2.crl /var/www/pki/ca-2.crt \
    /var/www/pki/cross-2.crt /var/www/pki/oldwithnew-2.crt; do
    setpriv --reuid=nobody --regid=nogroup --clear-groups cat "\$f" >/dev/null ||
        { echo "guide: \$f is not readable by nobody" >&2; exit 1; }
done
echo "guide: all blocks ran"
EOF
unshare -m --propagation private bash "$T/ns.sh" >"$T/guide.out" 2>"$T/guide.err"
rc=$?
if [ $rc != 0 ] || ! grep -q "guide: all blocks ran" "$T/guide.out"; then
    tail -n 40 "$T/guide.out" "$T/guide.err" >&2
    fail "docs/ca-guide.md does not run as written (exit $rc)"
fi
ok "docs/ca-guide.md: $n_blocks command blocks ran as written (cron line, server, units included)"
# the namespace's changes are gone
[ "$(ls -d /srv/pki /etc/keyward /home/alice /var/www/pki 2>/dev/null)" = "$had_before" ] ||
    fail "the guide's files leaked out of the namespace"
ok "nothing left outside the namespace"
echo PASS
