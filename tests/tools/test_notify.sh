#!/bin/bash
# Notifications (issue 16, item 6): the hook named by keyward.conf's notify (or --notify) gets
# exactly one well-formed JSON event on stdin per issue (single and batch), renewal (NAME and
# --due), revocation and expiring certificate (ca renew --due leaving one to the operator,
# ca stats), with the fields ca list --json shows for that certificate; hostile subject and
# tag values arrive JSON-escaped on one line; the hook's environment and descriptors carry no
# PIN, no KEYWARD_ variable and no CA lock. A hook that fails (exit 3), hangs past
# notify_timeout, is missing, not executable, writable by others, or does not read its event
# never changes the operation's outcome or exit code: a warning and a notify-failed audit line
# with the reason. Bad notify, notify_timeout and audit_sink values are config errors naming
# the key. audit_sink = syslog sends each audit line to a /dev/log that the test provides in a
# private mount namespace (the machine's own /dev is not touched).
. "$(dirname "$0")/lib.sh"
need_softhsm
command -v python3 >/dev/null || skip "python3 missing"
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --subject "CN=Notify CA" \
    --pin-source "file:$T/ca.pin"
PR=$(cd "$P" && pwd -P)
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -utf8 -subj "$2" -out "$1" 2>/dev/null || fail "csr $1"; }
conf() { # conf KEY VALUE: set KEY in keyward.conf (the file keyward writes names every key)
    grep -q "^$1 = " "$P/keyward.conf" || fail "keyward.conf has no '$1 = ' line"
    sed -i "s|^$1 = .*|$1 = $2|" "$P/keyward.conf"
}

# The hook: appends its event to events, its environment and open descriptors to env.N.
mkdir "$T/hooks" "$T/env"
cat >"$T/hooks/ok" <<EOF
#!/bin/sh
cat >>"$T/events"
env >"$T/env/\$\$"
ls /proc/self/fd >"$T/env/\$\$.fd"
EOF
chmod 755 "$T/hooks/ok"
conf notify "$T/hooks/ok"
: >"$T/events"

# events SPEC...: the hook got exactly these events ("issued:NAME" ...), in order, each one
# line of one JSON object whose fields agree with ca list --json; the file is emptied.
events() {
    "$KW" --dir "$P" --json ca list >"$T/list.json" || fail "ca list --json"
    python3 - "$T/events" "$T/list.json" "$PR" "$KEYWARD_SRC/docs/keyward-json.schema.json" "$@" <<'PY' || fail "events after: $LAST"
import json, re, sys
path, listing, ca, schema, want = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
try:  # the event's schema, when python3-jsonschema is there (the checks below do not need it)
    import jsonschema
    s = json.load(open(schema))
    validate = jsonschema.Draft7Validator(dict(s, **{"$ref": "#/definitions/notifyEvent"})).validate
except ImportError:
    validate = lambda e: None
raw = open(path, "rb").read()
lines = raw.split(b"\n")
assert lines[-1] == b"", "the last event does not end with a newline"
lines = lines[:-1]
got = [json.loads(l) for l in lines]  # one object per line, nothing else
certs = {c["serial"]: c for c in json.load(open(listing))["result"]["certificates"]}
assert [f'{e["event"]}:{e["name"]}' for e in got] == want, (got, want)
for l, e in zip(lines, got):
    validate(e)
    assert re.fullmatch(rb"[\x20-\x7e\x80-\xff]+", l), l  # no control byte inside the line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]), e
    assert e["ca"] == ca, e
    c = certs[e["serial"]]
    assert c["name"] == e["name"], (c, e)
    for k in ("subject", "not_after", "profile", "tags", "note", "auto_renew"):
        assert e[k] == c[k], (k, e[k], c[k])
    need = {"issued": set(), "renewed": {"replaces"}, "revoked": {"reason"},
            "expiring": {"days_left"}}[e["event"]]
    base = {"event", "time", "ca", "name", "serial", "subject", "not_after", "profile", "tags",
            "note", "auto_renew"}
    assert set(e) == base | need, sorted(e)
    if e["event"] == "renewed":
        assert e["replaces"] in certs and e["replaces"] != e["serial"], e
    if e["event"] == "expiring":
        assert isinstance(e["days_left"], int) and 0 <= e["days_left"] <= 5, e
print(json.dumps(got))
PY
    mv "$T/events" "$T/events.last"
    : >"$T/events"
}

# ---- one event per action ----
# a subject with quotes, backslash, </script> and U+2028 (allowed: not a control character)
csr "$T/alice.csr" '/O=Q"uote \\ back<\/script>/CN=al"ice \\ '"$(printf '\xe2\x80\xa8')"'x'
LAST="ca sign"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/alice.csr" --profile client --name alice \
    --tag 'owner=O"Brien \ </script>' --note 'café "note"'
events issued:alice >"$T/ev.json"
grep -qF 'al\\\"ice \\\\ \u2028x' "$T/events.last" || { cat "$T/events.last"; fail "the event line is not escaped as expected"; }
python3 -c '
import json,sys
e=json.load(open(sys.argv[1]))[0]
assert "al\"ice \\ \u2028x" in e["subject"] or "al\\\"ice \\\\ \u2028x" in e["subject"], e["subject"]
assert e["tags"]=={"owner":"O\"Brien \\ </script>"} and e["note"]=="café \"note\"", e' "$T/ev.json" ||
    fail "hostile values not as signed"
ok "ca sign: one issued event; quotes, backslash, </script>, U+2028 escaped on one line"

mkdir "$T/batch"
csr "$T/batch/b1.csr" /CN=b1
csr "$T/batch/b2.csr" /CN=b2
csr "$T/keep.csr" /CN=keep
LAST="ca sign --batch"
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/batch" --profile client --days 5 --tag usage=batch
events issued:b1 issued:b2 >/dev/null
LAST="ca sign --no-auto-renew"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/keep.csr" --profile client --days 5 --no-auto-renew
events issued:keep >/dev/null
LAST="ca renew"
old=$(openssl x509 -in "$P/issued/alice.crt" -noout -serial | cut -d= -f2)
expect_rc 0 "$KW" --dir "$P" ca renew alice
events renewed:alice >"$T/ev.json"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))[0]["replaces"]==sys.argv[2]' \
    "$T/ev.json" "$old" || fail "renewed event: replaces is not the old serial"
LAST="ca revoke"
expect_rc 0 "$KW" --dir "$P" ca revoke b2 --reason keyCompromise
events revoked:b2 >"$T/ev.json"
grep -q '"reason": "keyCompromise"' "$T/ev.json" || fail "revoked event: reason"
LAST="ca renew --due"
expect_rc 0 "$KW" --dir "$P" ca renew --due
events expiring:keep renewed:b1 >/dev/null
LAST="ca stats"
expect_rc 0 "$KW" --dir "$P" ca stats
events expiring:keep expiring:b1 >/dev/null
LAST="--dry-run"
expect_rc 0 "$KW" --dir "$P" --dry-run ca renew alice
expect_rc 0 "$KW" --dir "$P" --dry-run ca renew --due
events
ok "one event each: batch issue, renew, revoke, renew --due (renewed, expiring), ca stats; none for --dry-run"

# the hook's environment: PATH, HOME, LANG (and what sh sets itself); no PIN, no KEYWARD_
# variable, no SoftHSM config; descriptors 0, 1, 2 only (no CA lock, no token session; 3 is
# the directory ls reads)
n=0
for f in "$T"/env/*[0-9]; do
    n=$((n + 1))
    # (under the valgrind test setups, valgrind adds its own two to a child it traces)
    names=$(grep -v -e '^VALGRIND_LIB=' -e '^LD_PRELOAD=\([^:]*/vgpreload_[a-z0-9-]*\.so:\)\+$' "$f" |
        cut -d= -f1 | sort | tr '\n' ' ')
    [ "$names" = "HOME LANG PATH PWD " ] || { cat "$f"; fail "the hook's environment: $names"; }
    grep -q 11112222 "$f" && fail "the hook's environment holds the PIN"
    grep -q "$T/ca.pin" "$f" && fail "the hook's environment names the PIN file"
    [ "$(tr "\\n" " " <"$f.fd")" = "0 1 2 3 " ] && continue
    cat "$f.fd"
    fail "the hook inherited descriptors"
done
[ "$n" = 10 ] || fail "the hook ran $n times, want 10"
ok "hook environment: PATH, HOME, LANG only; no PIN, KEYWARD_ or SOFTHSM2_CONF; fds 0-2 only"

# ---- failing hooks: the operation's outcome is untouched ----
# hookfail NAME WANT CMD...: CMD exits 0, warns, and audit.log has a notify-failed line with WANT
hookfail() {
    local name=$1 want=$2
    shift 2
    local before
    before=$(grep -c '"op":"notify-failed"' "$P/audit.log")
    expect_rc 0 "$@"
    grep -q "warning: the notify hook failed for the .* event of .*$want" "$T/err" ||
        { cat "$T/err"; fail "$name: no warning saying '$want'"; }
    [ "$(grep -c '"op":"notify-failed"' "$P/audit.log")" -gt "$before" ] ||
        fail "$name: no notify-failed audit line"
    tail -n 1 "$P/audit.log" | grep -q "\"op\":\"notify-failed\".*\"outcome\":\"failed\",\"error\":\".*$want" ||
        { tail -n 1 "$P/audit.log"; fail "$name: the audit line does not say '$want'"; }
}
printf '#!/bin/sh\ncat >/dev/null\necho "not JSON" \necho "boom: endpoint refused" >&2\nexit 3\n' \
    >"$T/hooks/three"
chmod 755 "$T/hooks/three"
cp "$T/hooks/three" "$T/hooks/open"
chmod 775 "$T/hooks/open"
cp "$T/hooks/three" "$T/hooks/noexec"
chmod 644 "$T/hooks/noexec"
printf '#!/bin/sh\nexit 0\n' >"$T/hooks/noread"
printf '#!/bin/sh\nexec 0<&-\nsleep 0.2\n' >"$T/hooks/closes"
printf '#!/bin/sh\necho connecting to chat.example >&2\nsleep 30 &\necho $! >%s/sleeper.pid\nwait\n' "$T" >"$T/hooks/hang"
chmod 755 "$T/hooks/noread" "$T/hooks/closes" "$T/hooks/hang"

old=$(openssl x509 -in "$P/issued/alice.crt" -noout -serial | cut -d= -f2)
conf notify "$T/hooks/three"
hookfail "exit 3" "exited with status 3: boom: endpoint refused" "$KW" --dir "$P" ca renew alice
new=$(openssl x509 -in "$P/issued/alice.crt" -noout -serial | cut -d= -f2)
[ "$old" != "$new" ] && grep -q "^issued alice" "$T/out" || fail "the renewal did not happen"
tail -n 1 "$P/audit.log" | grep -q "\"name\":\"alice\",\"serial\":\"$new\"" || fail "notify-failed names no cert"
grep -q '"op":"ca renew","name":"alice","serial":"'"$new"'".*"outcome":"ok"' "$P/audit.log" ||
    fail "the renewal's own audit line is not ok"
# under --json the hook's output does not reach stdout: one envelope, ok
"$KW" --dir "$P" --json ca stats >"$T/out" 2>"$T/err" || fail "--json ca stats with a failing hook"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] and d["exit"]==0, d' \
    "$T/out" || fail "--json output with a failing hook"
conf notify ""
hookfail "not executable" "noexec is not executable" "$KW" --dir "$P" --notify "$T/hooks/noexec" ca stats
hookfail "group-writable" "open is writable by group or others" "$KW" --dir "$P" --notify "$T/hooks/open" ca stats
hookfail "missing" "hooks/missing: No such file or directory" "$KW" --dir "$P" --notify "$T/hooks/missing" ca stats
hookfail "no read" "noread exited without reading its event" "$KW" --dir "$P" --notify "$T/hooks/noread" ca stats
hookfail "closes stdin" "closes exited without reading its event" "$KW" --dir "$P" --notify "$T/hooks/closes" ca stats
conf notify_timeout 1
conf notify "$T/hooks/hang"
t0=$(date +%s)
hookfail "timeout" "hang did not finish within 1 s (killed)" "$KW" --dir "$P" -q ca revoke keep
t1=$(date +%s)
[ $((t1 - t0)) -lt 25 ] || fail "a hanging hook (sleep 30) held keyward $((t1 - t0)) s (timeout 1 s)"
sleep 0.2
# killed (a zombie at most: PID 1 of a container may not reap it)
st=$(sed 's/.*) //' "/proc/$(cat "$T/sleeper.pid")/stat" 2>/dev/null | cut -c1)
[ -z "$st" ] || [ "$st" = Z ] || fail "the hook's own child survived the timeout (state $st)"
expect_rc 0 "$KW" --dir "$P" --json ca list --status revoked
grep -q '"name":"keep"' "$T/out" || fail "revoke with a hanging hook did not revoke"
conf notify "$T/hooks/ok"
conf notify_timeout 10
ok "failing hooks (exit 3, not executable, writable by others, missing, not reading, closing stdin, hanging: group killed) never change the outcome; warning and notify-failed audit line with the reason"

# ---- config errors name the key ----
cp "$P/keyward.conf" "$T/conf.saved"
badconf() {
    conf "$1" "$2"
    expect_rc 1 "$KW" --dir "$P" ca list
    grep -q "keyward.conf:[0-9]*: $1 = $2: $3" "$T/err" || { cat "$T/err"; fail "bad $1 = $2: message"; }
    cp "$T/conf.saved" "$P/keyward.conf"
}
badconf notify "hooks/ok" "give the absolute path"
badconf notify_timeout 0 "give the seconds"
badconf notify_timeout 10s "give the seconds"
badconf audit_sink journal "give file"
expect_rc 2 "$KW" --dir "$P" --notify hooks/ok ca list
grep -q -- "--notify hooks/ok: give the absolute path" "$T/err" || fail "--notify relative: message"
ok "relative notify, bad notify_timeout and audit_sink: config errors naming the key"

# ---- audit_sink = syslog ----
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: audit_sink = syslog not checked: needs root for a private mount namespace with its own /dev/log"
elif ! unshare -m --propagation private true 2>/dev/null; then
    echo "SKIP: audit_sink = syslog not checked: cannot make a mount namespace here"
else
    conf audit_sink syslog
    cat >"$T/syslog.py" <<'PY'
import socket, sys, os, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
open(sys.argv[2], "w").close()
s.settimeout(10)
with open(sys.argv[1], "wb") as out:
    while True:
        m = s.recv(65536)
        out.write(m + b"\n")
        out.flush()
        if b'"op":"ca crl"' in m:
            break
PY
    mkdir "$T/dev.u" "$T/dev.w"
    had_log=no
    [ -e /dev/log ] && had_log=yes
    # /dev as an overlay in this namespace only: the socket is made in its upper layer
    unshare -m --propagation private bash -c '
        mount -t overlay overlay -o lowerdir=/dev,upperdir="$1/dev.u",workdir="$1/dev.w" /dev || exit 77
        rm -f /dev/log
        python3 "$1/syslog.py" "$1/syslog.out" "$1/syslog.ready" & l=$!
        for _ in $(seq 100); do [ -e "$1/syslog.ready" ] && break; sleep 0.05; done
        "$2" --dir "$3" ca crl >/dev/null || exit 1
        wait $l' _ "$T" "$KW" "$P" 2>"$T/err"
    rc=$?
    if [ "$rc" = 77 ]; then
        echo "SKIP: audit_sink = syslog not checked: overlayfs on /dev not possible here"
    else
        [ "$rc" = 0 ] || { cat "$T/err"; fail "ca crl with audit_sink = syslog (rc $rc)"; }
        [ -e /dev/log ] || [ "$had_log" = no ] || fail "the machine's /dev/log is gone"
        [ -e /dev/log ] && [ "$had_log" = no ] && fail "the test left a /dev/log behind"
        [ -e "$T/dev.u/log" ] || fail "the test's /dev/log was not in the overlay"
        python3 - "$T/syslog.out" "$P/audit.log" <<'PY' || fail "the syslog message is not the audit line"
import json, re, sys
msgs = [l for l in open(sys.argv[1], "rb").read().split(b"\n") if b'"op":"ca crl"' in l]
assert len(msgs) == 1, msgs
m = re.fullmatch(rb"<(\d+)>(.*?)keyward\[(\d+)\]: (\{.*\})", msgs[0])
assert m, msgs[0]
assert int(m.group(1)) == 10 * 8 + 6, m.group(1)  # authpriv.info
line = [l for l in open(sys.argv[2]) if '"op":"ca crl"' in l][-1]
assert json.loads(m.group(4)) == json.loads(line), (m.group(4), line)
assert json.loads(line)["pid"] == int(m.group(3))
PY
        ok "audit_sink = syslog: the audit line arrives at /dev/log (authpriv.info, keyward[PID])"
    fi
    conf audit_sink file
fi
