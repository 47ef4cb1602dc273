#!/bin/bash
# Fleet operations (issue 16, items 1-4): tags, note and auto-renew per certificate (stored,
# shown, filtered, audited, carried over by renewal; hostile values refused), ca renew --due
# (exactly the due certificates with auto-renew on; goes on past a failure; a second run renews
# nothing; --dry-run changes nothing), ca stats and ca metrics agreeing with ca list --json,
# promtool accepting the metrics, and every --json document valid against the schema.
# Soon-expiring certificates are signed with a small --days (no backdating path exists).
. "$(dirname "$0")/lib.sh"
need_softhsm
need_jsonschema
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --subject "CN=Fleet CA,O=Fleet" \
    --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "/CN=$2" ${3:+-addext "$3"} -out "$1" 2>/dev/null || fail "csr $1"; }
mkdir -p "$T/vpn" "$T/web" "$T/soon" "$T/legacy"
for i in $(seq 1 12); do csr "$T/vpn/vpn$i.csr" "vpn$i"; done
for i in $(seq 1 8); do csr "$T/web/web$i.csr" "web$i.example" "subjectAltName=DNS:web$i.example"; done
# soon5's O is not the CA's: fine while the CA has no policy_match, refused once it has
for i in $(seq 1 6); do
    o=Fleet; [ "$i" = 5 ] && o=Other
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/O=$o/CN=soon$i" -out "$T/soon/soon$i.csr" 2>/dev/null || fail "csr soon$i"
done
for i in $(seq 1 3); do csr "$T/legacy/legacy$i.csr" "legacy$i"; done
csr "$T/noted.csr" noted
csr "$T/gone.csr" gone

# ---- item 1: metadata ----
J 0 --dir "$P" ca sign --batch "$T/vpn" --profile client --tag usage=vpn --tag team=blue
J 0 --dir "$P" ca sign --batch "$T/web" --profile server --tag usage=web
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/soon" --profile client --days 5 --tag usage=api-mtls
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/legacy" --profile client --days 20 \
    --tag usage=legacy --no-auto-renew
J 0 --dir "$P" ca sign "$T/noted.csr" --profile client --tag 'owner=O"Brien \ ops' \
    --tag env=prod --note 'ticket #42: café badge'
expect_rc 0 "$KW" --dir "$P" ca sign "$T/gone.csr" --profile client --tag usage=vpn
expect_rc 0 "$KW" --dir "$P" ca revoke gone --reason keyCompromise
s=$(openssl x509 -in "$P/issued/noted.crt" -noout -serial | cut -d= -f2)
grep -qx 'tag.owner=O"Brien \\ ops' "$P/certs/$s.meta" || fail "tag not in certs/$s.meta"
grep -qx 'note=ticket #42: café badge' "$P/certs/$s.meta" || fail "note not stored"
grep -qx 'auto_renew=1' "$P/certs/$s.meta" || fail "auto_renew not stored"
s=$(openssl x509 -in "$P/issued/legacy2.crt" -noout -serial | cut -d= -f2)
grep -qx 'auto_renew=0' "$P/certs/$s.meta" || fail "--no-auto-renew not stored"
grep -q '"op":"ca sign","name":"noted".*"meta":{"tags":{"owner":"O\\"Brien \\\\ ops","env":"prod"},"note":"ticket #42: café badge","auto_renew":true}' \
    "$P/audit.log" || fail "audit line lacks the metadata"
expect_rc 0 "$KW" --dir "$P" ca list
grep -q 'owner=O"Brien \\ ops env=prod  note: ticket #42: café badge' "$T/out" || fail "ca list does not show tags and note"
grep -q 'usage=legacy  auto-renew off' "$T/out" || fail "ca list does not show auto-renew off"
J 0 --dir "$P" show "$P/issued/noted.crt"
"$PY" -c '
import json,sys
r=json.load(open(sys.argv[1]))["result"]
assert r["tags"]=={"owner":"O\"Brien \\ ops","env":"prod"} and r["note"]=="ticket #42: café badge", r
assert r["auto_renew"]=="on" and r["profile"]=="client", r' "$T/out" || fail "show --json metadata"
expect_rc 0 "$KW" --dir "$P" show "$P/issued/legacy1.crt"
grep -q "auto-renew: *off" "$T/out" && grep -q "tags:  *usage=legacy" "$T/out" || fail "show metadata"
count() { "$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["result"]["certificates"]))' "$T/out"; }
J 0 --dir "$P" ca list --tag usage=vpn
[ "$(count)" = 13 ] || fail "ca list --tag usage=vpn: $(count), want 13"
J 0 --dir "$P" ca list --status valid --tag usage=vpn --tag team=blue
[ "$(count)" = 12 ] || fail "--tag AND --tag: $(count), want 12"
J 0 --dir "$P" ca list --tag usage=vpn --tag team=red
[ "$(count)" = 0 ] || fail "non-matching filter listed $(count)"
ok "tags, note, auto-renew stored, audited, listed, shown and filtered"

before=$(tree_sum "$P")
bad() { expect_rc 2 "$KW" --dir "$P" ca sign "$T/gone.csr" --profile client --name x "$@"; grep -q "$BADMSG" "$T/err" || { cat "$T/err"; fail "refusal of $* does not say: $BADMSG"; }; }
BADMSG="control character" bad --tag $'usage=a\nname=evil'
BADMSG="control character" bad --tag $'usage=a\x1b[31m'
BADMSG="control character" bad --note $'line1\nauto_renew=0'
BADMSG="control character" bad --tag $'usage=\xc2\x85'
BADMSG="bidirectional" bad --tag $'usage=\u202egnp.exe'
BADMSG="not valid UTF-8" bad --tag $'usage=\xff'
BADMSG="KEY may contain only" bad --tag 'us age=x'
BADMSG="KEY must be 1 to 64" bad --tag '=x'
BADMSG="give KEY=VALUE" bad --tag usage
BADMSG="KEY must be 1 to 64" bad --tag "$(printf 'k%.0s' $(seq 65))=v"
BADMSG="longer than 256" bad --tag "usage=$(printf 'v%.0s' $(seq 257))"
BADMSG="too long" bad --note "$(printf 'n%.0s' $(seq 1025))"
BADMSG="VALUE is empty" bad --tag usage=
BADMSG="given twice" bad --tag usage=a --tag usage=b
BADMSG="control character" expect_rc 2 "$KW" --dir "$P" ca list --tag $'usage=a\tb'
# bash cannot put a NUL into an argument ($'a\0b' is "a"): argv never carries one
[ "$(tree_sum "$P")" = "$before" ] || fail "a refused tag changed the CA"
ok "hostile tag and note values refused (exit 2, named), nothing changed"

# ---- item 2: renew --due ----
expect_rc 0 "$KW" --dir "$P" --dry-run ca renew --due 30
[ "$(grep -c '^would renew soon' "$T/out")" = 6 ] || { cat "$T/out"; fail "--dry-run does not list the 6 due"; }
grep -q "6 due within 30 days, 3 more with auto-renew off" "$T/out" || fail "dry-run summary"
[ "$(tree_sum "$P")" = "$before" ] || fail "renew --due --dry-run changed the CA"
# a broken signing record fails that one certificate, and so does one whose re-issue the CA's
# policy now refuses (decided by keyward before openssl, which would stop at it and issue
# none); the others renew in one openssl process
s3=$(openssl x509 -in "$P/issued/soon3.crt" -noout -serial | cut -d= -f2)
mv "$P/certs/$s3.csr" "$T/soon3.saved"
echo garbage >"$P/certs/$s3.csr"
sed -i 's/^policy_match = .*/policy_match = O/' "$P/keyward.conf"
J 1 --dir "$P" ca renew --due 30 --days 365
"$PY" -c '
import json,sys
d=json.load(open(sys.argv[1]))
r=d["result"]
assert sorted(x["name"] for x in r["renewed"])==["soon1","soon2","soon4","soon6"], r
f={x["name"]:x["error"] for x in r["failed"]}
assert sorted(f)==["soon3","soon5"] and r["skipped_no_auto_renew"]==3, r
assert "policy_match" in f["soon5"] and "(Other)" in f["soon5"], f
assert d["error"]["code"]=="failed", d' "$T/out" || fail "renew --due with two failures"
grep -q "different between" "$T/j/$KWT_JN.err" && fail "the policy refusal came from openssl, not keyward"
mv "$T/soon3.saved" "$P/certs/$s3.csr"
sed -i 's/^policy_match = .*/policy_match = /' "$P/keyward.conf"
expect_rc 0 "$KW" --dir "$P" ca renew --due --days 365
grep -q "^renewed soon3: serial" "$T/out" && grep -q "^renewed soon5: serial" "$T/out" ||
    fail "renew --due did not retry soon3 and soon5"
grep -q "2 due within 30 days: 2 renewed, 0 failed; 3 with auto-renew off" "$T/out" || { cat "$T/out"; fail "summary"; }
J 0 --dir "$P" ca renew --due 30
"$PY" -c '
import json,sys
r=json.load(open(sys.argv[1]))["result"]
assert r["renewed"]==[] and r["failed"]==[], r' "$T/out" || fail "a second run renewed again"
J 0 --dir "$P" ca list --tag usage=api-mtls --status valid
"$PY" -c '
import json,sys
c=json.load(open(sys.argv[1]))["result"]["certificates"]
assert sorted(x["name"] for x in c)==["soon%d"%i for i in range(1,7)], c
assert all(x["tags"]=={"usage":"api-mtls"} and x["auto_renew"] for x in c), c' "$T/out" ||
    fail "metadata not carried over by renew --due"
for i in 1 3 5; do # one renewed in the first run, the ones retried
    expect_rc 0 "$KW" --dir "$P" verify "$P/issued/soon$i.crt" --purpose client
done
old=$(openssl x509 -in "$P/issued/noted.crt" -noout -serial | cut -d= -f2)
J 0 --dir "$P" ca renew noted
new=$(openssl x509 -in "$P/issued/noted.crt" -noout -serial | cut -d= -f2)
[ "$old" != "$new" ] && cmp -s <(grep -v '^days=' "$P/certs/$old.meta") <(grep -v '^days=' "$P/certs/$new.meta") ||
    fail "ca renew NAME did not carry the metadata over"
[ "$(grep -c '"op":"ca renew --due".*"outcome":"ok"' "$P/audit.log")" = 6 ] || fail "renew --due audit (ok)"
grep -q '"op":"ca renew --due","name":"soon3".*"outcome":"failed"' "$P/audit.log" || fail "renew --due audit (failed)"
ok "renew --due: exactly the due ones with auto-renew on, past a failure, not twice; metadata carried"

# ---- items 3 and 4: stats and metrics ----
J 0 --dir "$P" ca list
cp "$T/out" "$T/list.json"
J 0 --dir "$P" ca stats
cp "$T/out" "$T/stats.json"
expect_rc 0 "$KW" --dir "$P" ca stats
grep -q "last renewal: .*0 renewed, 0 failed" "$T/out" || fail "ca stats text: last renewal"
grep -q "CRL gen 1: *next update" "$T/out" || fail "ca stats text: CRL"
mkdir "$T/textfile"
J 0 --dir "$P" ca metrics --textfile "$T/textfile/keyward.prom"
if command -v promtool >/dev/null; then
    promtool check metrics <"$T/textfile/keyward.prom" || fail "promtool rejects the metrics"
    ok "promtool check metrics accepts the textfile"
else
    echo "SKIP: promtool not installed (Debian package prometheus, scripts/deps.sh): exposition format not checked by promtool"
fi
"$PY" - "$T/list.json" "$T/stats.json" "$T/textfile/keyward.prom" <<'PY' || fail "stats or metrics disagree with ca list --json"
import json, sys, time, calendar, re
certs = json.load(open(sys.argv[1]))["result"]["certificates"]
st = json.load(open(sys.argv[2]))["result"]
prom = open(sys.argv[3]).read()
now = time.time()
def na(c): return calendar.timegm(time.strptime(c["not_after"], "%Y-%m-%dT%H:%M:%SZ"))
status = {"valid": 0, "expired": 0, "revoked": 0}
for c in certs:
    status["valid" if c["status"] in ("valid", "expiring") else c["status"]] += 1
assert st["total"] == len(certs) and st["status"] == status, (st, status)
for w in (7, 14, 30, 60):
    want = sum(1 for c in certs if c["status"] in ("valid", "expiring") and na(c) - now <= w * 86400)
    assert st["expiring"][str(w)] == want, (w, st["expiring"], want)
assert st["expiring"]["7"] == 0 and st["expiring"]["30"] == 3, st["expiring"]  # the 3 legacy ones
reasons = {}
for c in certs:
    if c["status"] == "revoked":
        reasons[c["reason"]] = reasons.get(c["reason"], 0) + 1
assert st["revoked_by_reason"] == reasons == {"keyCompromise": 1, "superseded": 7}, (st, reasons)
prof = {}
for c in certs:
    s = "valid" if c["status"] in ("valid", "expiring") else c["status"]
    prof.setdefault(c["profile"], {"valid": 0, "expired": 0, "revoked": 0})[s] += 1
assert st["by_profile"] == prof, (st["by_profile"], prof)
tags = {}
for c in certs:
    s = "valid" if c["status"] in ("valid", "expiring") else c["status"]
    for k, v in c["tags"].items():
        tags.setdefault(k, {}).setdefault(v, {"valid": 0, "expired": 0, "revoked": 0})[s] += 1
assert st["by_tag"] == tags, (st["by_tag"], tags)
assert st["by_tag"]["usage"]["vpn"]["valid"] == 12
lr = st["last_renewal"]
assert lr["renewed"] == 0 and lr["failed"] == 0 and lr["due_days"] == 30, lr
assert len(st["crls"]) == 1 and st["crls"][0]["generation"] == 1, st["crls"]
# metrics: one notAfter series per certificate that is not revoked, with its value
series = re.findall(r'^keyward_certificate_not_after_seconds\{name="([^"]*)",serial="([0-9A-F]+)",profile="(\w+)"(.*)\} (\d+)$', prom, re.M)
live = {c["serial"]: c for c in certs if c["status"] != "revoked"}
assert len(series) == len(live), (len(series), len(live))
for name, serial, profile, rest, value in series:
    c = live[serial]
    assert c["name"] == name and c["profile"] == profile and int(value) == na(c), (name, c)
assert 'tag_owner="O\\"Brien \\\\ ops"' in prom and 'tag_env="prod"' in prom, "escaping of label values"
def g(metric):
    m = re.search("^" + re.escape(metric) + r" (\d+)$", prom, re.M)
    assert m, metric
    return int(m.group(1))
for s, v in status.items():
    assert g('keyward_certificates{status="%s"}' % s) == v, s
for w in (7, 14, 30, 60):
    assert g('keyward_certificates_expiring{within_days="%d"}' % w) == st["expiring"][str(w)]
assert g('keyward_certificates_revoked{reason="superseded"}') == 7
assert g('keyward_tag_certificates{key="usage",value="vpn",status="valid"}') == 12
assert g('keyward_renewal_last_run_success') == 1 and g('keyward_renewal_last_run_renewed') == 0
nu = calendar.timegm(time.strptime(st["crls"][0]["next_update"], "%Y-%m-%dT%H:%M:%SZ"))
assert g('keyward_crl_next_update_seconds{generation="1"}') == nu
assert prom.count("# HELP ") == prom.count("# TYPE ") >= 10
PY
[ "$(stat -c %a "$T/textfile/keyward.prom")" = 644 ] || fail "metrics file mode"
ls "$T/textfile" | grep -qv '^keyward.prom$' && fail "a temporary file was left beside the metrics"
expect_rc 1 "$KW" --dir "$P" ca metrics --textfile "$T/nodir/keyward.prom"
grep -q "cannot write" "$T/err" || fail "metrics into a missing directory: no reason"
ok "ca stats and ca metrics agree with ca list --json"

J 2 --dir "$P" ca renew --due 30 noted
J 2 --dir "$P" ca sign "$T/gone.csr" --profile client --tag $'a=\n'
check_json_docs 16
ok "every --json document of the fleet commands validates against the schema"
echo PASS
