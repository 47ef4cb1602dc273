#!/bin/bash
# The systemd units of a CA (issue 16, item 8): keyward-{renew,crl,metrics}@.{service,timer} as
# meson configured them (conf/, ExecStart naming the installed keyward). systemd-analyze verify
# accepts them, instantiated for a test CA (that part SKIPs without systemd-analyze); the timers
# run daily with a random delay (metrics: every 5 minutes) and survive downtime; the services
# carry the hardening. Then each service's ExecStart line, parsed from the unit file with the
# specifiers substituted for the test CA (%f, %i, %I, %%; keyward of this build for the installed
# one, node_exporter's directory under the test's), runs as systemd would start it under
# ProtectSystem=strict (every mount read-only but the unit's ReadWritePaths=, in a private mount
# namespace, with no new privileges; SKIPped when no namespace can be made) and has its effect:
# renew re-issues the due certificate, crl writes a new CRL, metrics writes the textfile.
. "$(dirname "$0")/lib.sh"
need_softhsm
U=$KEYWARD_BUILD/conf
for u in renew crl metrics est-reenroll; do
    for k in service timer; do
        [ -f "$U/keyward-$u@.$k" ] || fail "meson did not configure conf/keyward-$u@.$k"
    done
done
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --subject "CN=Timer CA" \
    --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=$2" -out "$1" 2>/dev/null || fail "csr $1"; }
csr "$T/due.csr" due
csr "$T/later.csr" later
expect_rc 0 "$KW" --dir "$P" ca sign "$T/due.csr" --profile client --days 5
expect_rc 0 "$KW" --dir "$P" ca sign "$T/later.csr" --profile client
mkdir -p "$T/node-exporter" "$T/tmp"

# ---- the units as written: schedules and hardening ----
has() { grep -qxF -- "$2" "$U/$1" || fail "$1 lacks the line: $2"; }
for u in renew crl; do
    has "keyward-$u@.timer" "OnCalendar=daily"
    has "keyward-$u@.timer" "RandomizedDelaySec=1h"
    has "keyward-$u@.timer" "Persistent=true"
    has "keyward-$u@.service" 'ReadWritePaths="%f" -/var/lib/softhsm -/var/lib/tpm2-pkcs11'
done
has keyward-metrics@.timer "OnCalendar=*:0/5"
has keyward-metrics@.service "ReadWritePaths=-/var/lib/prometheus/node-exporter"
for u in renew crl metrics; do
    has "keyward-$u@.timer" "WantedBy=timers.target"
    for l in Type=oneshot ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes \
        'ConditionPathExists=%f/keyward.conf'; do
        has "keyward-$u@.service" "$l"
    done
    grep -q '^ExecStart=/[^ ]*/keyward "--dir=%f" ca ' "$U/keyward-$u@.service" ||
        fail "keyward-$u@.service: no ExecStart of the installed keyward on the CA directory %f"
done
# the client side of EST: est reenroll --due daily, for the certificate of an environment file
for l in OnCalendar=daily RandomizedDelaySec=1h Persistent=true WantedBy=timers.target; do
    has keyward-est-reenroll@.timer "$l"
done
for l in Type=oneshot ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes \
    'ConditionPathExists=/etc/keyward/est/%i.env' 'EnvironmentFile=/etc/keyward/est/%i.env' \
    'ReadWritePaths=/etc/keyward/est -/var/lib/softhsm -/var/lib/tpm2-pkcs11' \
    'After=network-online.target'; do
    has keyward-est-reenroll@.service "$l"
done
grep -q '^ExecStart=/[^ ]*/keyward est reenroll ${EST_URL} --due --key ${EST_KEY} --cert ${EST_CERT} ' \
    "$U/keyward-est-reenroll@.service" || fail "keyward-est-reenroll@.service: no ExecStart of est reenroll --due"
ok "the timers are daily with RandomizedDelaySec=1h and Persistent=true (metrics every 5 min); the services are hardened"

# ---- the instance for the test CA ----
# systemd-escape --path, as systemd defines it (checked against the tool when it is there)
inst=$(python3 - "$P" <<'PY'
import sys
p = "/".join(c for c in sys.argv[1].split("/") if c)
out = ""
for i, ch in enumerate(p):
    if ch == "/":
        out += "-"
    elif ch.isascii() and (ch.isalnum() or ch in ":_") or (ch == "." and i > 0):
        out += ch
    else:
        out += "".join("\\x%02x" % b for b in ch.encode())
print(out)
PY
)
if command -v systemd-escape >/dev/null; then
    [ "$(systemd-escape --path "$P")" = "$inst" ] || fail "escaping $P: $inst, systemd-escape says $(systemd-escape --path "$P")"
fi

# instantiate UNIT: the unit's file with its specifiers substituted, keyward of this build for the
# installed one and the test's node_exporter directory, written to $T/units/ under the instance
# name; and its ExecStart as argv (NUL-separated) in $T/units/NAME.argv
mkdir -p "$T/units"
instantiate() {
    python3 - "$U/$1" "$inst" "$KW" "$T/node-exporter" "$T/units" <<'PY' || fail "cannot instantiate $1"
import os, re, shlex, sys
src, inst, kw, nodeexp, out = sys.argv[1:]
unesc = lambda s: re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)
spec = {"f": "/" + unesc(inst.replace("-", "/")), "i": inst, "I": unesc(inst), "%": "%"}

def split(line):
    """systemd's words of a command line: blanks separate them outside quotes; backslash
    escapes are C's (\\xHH, \\n, \\\\ ...) inside quotes and out (EXTRACT_CUNESCAPE)"""
    words, w, q, i, inword = [], "", None, 0, False
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n == "x":
                w += chr(int(line[i + 2:i + 4], 16))
                i += 4
            else:
                w += {"n": "\n", "t": "\t", "s": " "}.get(n, n)
                i += 2
            inword = True
            continue
        if q:
            if c == q:
                q = None
            else:
                w += c
        elif c in "'\"":
            q, inword = c, True
        elif c in " \t":
            if inword:
                words.append(w)
            w, inword = "", False
        else:
            w, inword = w + c, True
        i += 1
    assert not q, "unterminated quote: " + line
    if inword:
        words.append(w)
    return words

name = os.path.basename(src).replace("@.", "@" + inst + ".")
text = open(src).read()
argv = None
lines = []
for l in text.split("\n"):
    if not l.startswith("#"):
        l = re.sub(r"%(.)", lambda m: spec[m.group(1)] if m.group(1) in spec else sys.exit(
            f"{src}: unknown specifier %{m.group(1)}"), l)
    if l.startswith("ExecStart="):
        argv = split(l[len("ExecStart="):])
        assert os.path.basename(argv[0]) == "keyward" and os.path.isabs(argv[0]), argv
        argv[0] = kw
        argv = [a.replace("/var/lib/prometheus/node-exporter", nodeexp) for a in argv]
        l = "ExecStart=" + " ".join(shlex.quote(a) for a in argv)
    lines.append(l.replace("/var/lib/prometheus/node-exporter", nodeexp))
open(os.path.join(out, name), "w").write("\n".join(lines))
if argv:
    open(os.path.join(out, name + ".argv"), "w").write("\0".join(argv) + "\0")
PY
}
for u in renew crl metrics est-reenroll; do
    instantiate "keyward-$u@.service"
    instantiate "keyward-$u@.timer"
done
grep -qx "ExecStart=$KW --dir=$P ca renew --due" "$T/units/keyward-renew@$inst.service" ||
    { grep ExecStart "$T/units/keyward-renew@$inst.service"; fail "the renew unit's ExecStart for $P"; }

# ---- systemd-analyze verify ----
if command -v systemd-analyze >/dev/null; then
    (cd "$T/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
        ./keyward-{renew,crl,metrics,est-reenroll}@"$inst".{service,timer}) >"$T/verify.log" 2>&1 ||
        { cat "$T/verify.log"; fail "systemd-analyze verify refuses the units"; }
    # it warns (and still exits 0) about a setting it ignores
    grep -v "^$" "$T/verify.log" | grep -v "Failed to prepare filename\|not found, ignoring" |
        grep . && fail "systemd-analyze verify warns about the units"
    ok "systemd-analyze verify accepts the units instantiated for $P"
else
    echo "SKIP: systemd-analyze not installed (Debian: systemd): the units are not verified"
fi

# ---- each ExecStart, as the hardened unit runs it ----
# harden RW... -- CMD...: CMD in a private mount namespace where every mount but the API file
# systems is read-only, except the RW paths (ProtectSystem=strict, ReadWritePaths=), with no new
# privileges (NoNewPrivileges=). TMPDIR is a writable directory of the test, as PrivateTmp=
# gives the unit a writable /tmp of its own (the test's files are under /tmp).
hardened=0
if unshare -m --propagation private true 2>/dev/null && command -v setpriv >/dev/null; then
    hardened=1
fi
harden() {
    local rw=()
    while [ "$1" != -- ]; do rw+=("$1"); shift; done
    shift
    if [ "$hardened" = 0 ]; then
        TMPDIR=$T/tmp "$@"
        return
    fi
    unshare -m --propagation private -- bash -c '
        n=$1; shift; rw=("${@:1:$n}"); shift "$n"
        for p in "${rw[@]}"; do mount --bind "$p" "$p" || exit 90; done
        while read -r _ m _; do
            m=$(printf "%b" "$m")
            case $m in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
            for p in "${rw[@]}"; do [ "$m" = "$p" ] && continue 2; done
            mount -o remount,bind,ro "$m" 2>/dev/null
        done < <(cat /proc/self/mounts)
        touch "$T/ro-probe" 2>/dev/null && exit 91
        exec setpriv --no-new-privs env TMPDIR="$T/tmp" "$@"' harden "${#rw[@]}" "${rw[@]}" "$@"
}
# run UNIT RW...: the unit's ExecStart under harden
run() {
    local unit=$1
    shift
    local argv=()
    mapfile -d '' argv <"$T/units/$unit@$inst.service.argv"
    harden "$@" -- "${argv[@]}" >"$T/out" 2>"$T/err"
    local rc=$?
    [ "$rc" = 91 ] && { hardened=0; echo "note: the namespace cannot make mounts read-only here"; run "$unit" "$@"; return; }
    [ "$rc" = 0 ] || { cat "$T/out" "$T/err"; fail "$unit's ExecStart exited $rc: ${argv[*]}"; }
}
export T

serial() { openssl x509 -in "$P/issued/$1.crt" -noout -serial | cut -d= -f2; }
due0=$(serial due)
later0=$(serial later)
# renew: the unit may write the CA directory and the token store (ReadWritePaths=)
run keyward-renew "$P" "$T/tokens" "$T/tmp"
[ "$(serial due)" != "$due0" ] || fail "keyward-renew did not renew the due certificate"
[ "$(serial later)" = "$later0" ] || fail "keyward-renew renewed a certificate that is not due"
awk -F'\t' -v s="$due0" '$4 == s && $1 == "R" && $3 ~ /superseded/' "$P/state/index.txt" | grep -q . ||
    fail "the renewed certificate $due0 is not revoked as superseded"
openssl verify -CAfile "$P/ca.crt" "$P/issued/due.crt" >/dev/null 2>&1 || fail "the renewed certificate does not verify"
grep -q "renewed" "$T/out" || { cat "$T/out"; fail "keyward-renew printed no outcome"; }
ok "keyward-renew@.service renews the due certificate (and only it)"

crlno() { openssl crl -in "$P/crl/crl.pem" -noout -crlnumber | cut -d= -f2; }
n0=$(crlno)
sleep 1 # a new lastUpdate
last0=$(openssl crl -in "$P/crl/crl.pem" -noout -lastupdate)
run keyward-crl "$P" "$T/tokens" "$T/tmp"
[ "$(crlno)" != "$n0" ] || fail "keyward-crl did not write a new CRL (number $n0)"
[ "$(openssl crl -in "$P/crl/crl.pem" -noout -lastupdate)" != "$last0" ] || fail "the CRL's lastUpdate did not move"
openssl crl -in "$P/crl/crl.pem" -CAfile "$P/ca.crt" -noout 2>/dev/null || fail "the new CRL does not verify"
ok "keyward-crl@.service writes a new CRL"

# metrics: the CA directory stays read-only, only node_exporter's directory is writable
before=$(tree_sum "$P")
run keyward-metrics "$T/node-exporter" "$T/tmp"
prom="$T/node-exporter/keyward-$(printf "%b" "$inst").prom" # ExecStart C-unescapes %i
[ -f "$prom" ] || fail "keyward-metrics wrote no $prom ($(ls "$T/node-exporter"))"
grep -q '^keyward_certificates{status="valid"} 2$' "$prom" || { cat "$prom"; fail "the metrics do not count 2 valid certificates"; }
grep -q 'keyward_certificate_not_after_seconds{name="due"' "$prom" || fail "no notAfter of due"
[ "$(stat -c %a "$prom")" = 644 ] || fail "the textfile is not 0644 (node_exporter reads it)"
[ "$(tree_sum "$P")" = "$before" ] || fail "keyward-metrics changed the CA directory"
if command -v promtool >/dev/null; then
    promtool check metrics <"$prom" >"$T/promtool.log" 2>&1 || { cat "$T/promtool.log"; fail "promtool refuses the textfile"; }
fi
if [ "$hardened" = 1 ]; then
    ok "keyward-metrics@.service writes the textfile (ExecStarts ran with ProtectSystem=strict and ReadWritePaths=)"
else
    ok "keyward-metrics@.service writes the textfile"
    echo "SKIP: no private mount namespace here: the ExecStarts ran without the read-only file system"
fi
