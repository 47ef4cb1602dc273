#!/bin/bash
# ca report --html (issue 16, item 5): one self-contained page (nothing loaded from anywhere:
# no http:, https:, src=, url(); a Content-Security-Policy that allows only the page's own
# style and script), every value from the CA HTML-escaped (a CN, tag and note full of markup),
# written atomically (mode 0644; a symlink at FILE replaced, not followed; - for stdout), the
# --json result valid against the schema; then in a real browser, headless Chromium: the
# inventory rows, the timeline's bars, the script's row count, sorting and filtering from the
# address (#q=...&sort=N&desc), and a screenshot that is not blank (python3-pil).
. "$(dirname "$0")/lib.sh"
need_softhsm
need_jsonschema
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=ca-key" --subject "CN=Report CA,O=Ex" \
    --pin-source "file:$T/ca.pin"
csr() { OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout /dev/null -subj "$2" ${3:+-addext "$3"} -out "$1" 2>/dev/null || fail "csr $1"; }
mkdir -p "$T/vpn" "$T/web" "$T/soon" "$T/mid"
for i in $(seq 1 12); do csr "$T/vpn/vpn$i.csr" "/CN=vpn$i/O=Ex"; done
for i in $(seq 1 6); do csr "$T/web/web$i.csr" "/CN=web$i.example/O=Ex" "subjectAltName=DNS:web$i.example"; done
for i in $(seq 1 4); do csr "$T/soon/soon$i.csr" "/CN=soon$i/O=Ex"; done
for i in $(seq 1 2); do csr "$T/mid/mid$i.csr" "/CN=mid$i/O=Ex"; done
# hostile values: markup, both quotes, an ampersand and an early </script> in the CN, a tag and
# the note (none contains src= or http: themselves, which the page must not have)
csr "$T/evil.csr" "/CN=<b>x<\/b> \"dq\" 'sq' & <\/script><script>alert(1)<\/script>/O=Ex"
EVIL_TAG='</script><img onerror=alert(2)> "t" & '\''t'\'
EVIL_NOTE='note </script><script>alert("n&'\''")</script>'
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/vpn" --profile client --days 200 --tag usage=vpn --tag team=blue
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/web" --profile server --days 90 --tag usage=web
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/soon" --profile client --days 10 --tag usage=api-mtls
expect_rc 0 "$KW" --dir "$P" ca sign --batch "$T/mid" --profile client --days 40 --tag usage=api-mtls --no-auto-renew
expect_rc 0 "$KW" --dir "$P" ca sign "$T/evil.csr" --profile client --name evil --days 150 \
    --tag "usage=$EVIL_TAG" --note "$EVIL_NOTE"
expect_rc 0 "$KW" --dir "$P" ca revoke vpn3 --reason keyCompromise
N=25 # certificates; bars: vpn week 28, evil 21, web 12, mid 5, soon 1 (the one in the band)
ok "a CA of $N certificates across profiles and tags, 4 expiring within 30 days, one revoked"

# ---- the file ----
R="$T/out dir/report.html"
mkdir -p "$T/out dir"
J 0 --dir "$P" ca report --html "$R"
"$PY" - "$T/out" "$R" "$N" <<'PY' || fail "ca report --json result"
import json, os, sys
r = json.load(open(sys.argv[1]))["result"]
assert r["path"] == sys.argv[2] and r["bytes"] == os.path.getsize(sys.argv[2]), r
assert r["total"] == int(sys.argv[3]) and r["status"] == {"valid": 24, "expired": 0, "revoked": 1}, r
assert r["expiring"] == {"7": 0, "14": 4, "30": 4, "60": 6} and r["timeline_365_days"] == 24, r
PY
[ "$(stat -c %a "$R")" = 644 ] || fail "report mode $(stat -c %a "$R"), want 644"
ls "$T/out dir" | grep -qv '^report.html$' && fail "a temporary file was left: $(ls "$T/out dir")"
head -c 15 "$R" | grep -q '^<!DOCTYPE html>' || fail "not an HTML document"
grep -Eio 'https?:|src=|url\(|@import|<link|<iframe|<object|<embed' "$R" &&
    fail "the page refers to something outside itself"
grep -q "Content-Security-Policy\" content=\"default-src 'none'; style-src 'sha256-" "$R" || fail "no CSP"
[ "$(grep -o '<tr class="[a-z]*">' "$R" | wc -l)" = "$N" ] || fail "inventory rows: want $N"
[ "$(grep -o '<rect class="bar' "$R" | wc -l)" = 5 ] || fail "timeline bars: want 5"
[ "$(grep -o '<rect class="bar soon"' "$R" | wc -l)" = 1 ] || fail "expiring-soon bars: want 1"
grep -q '<rect class="band"' "$R" || fail "no expiring-soon band"
grep -q '<td>keyCompromise</td><td class="n">1</td>' "$R" || fail "revocations by reason"
grep -q '<td class="st">revoked: keyCompromise</td>' "$R" || fail "revoked status in the table"
grep -Eq "<code>$P/crl/gen-1.pem</code></td><td>[0-9-]+ [0-9:]+ \(in (29|30) days\)</td>" "$R" ||
    fail "generation 1's CRL and next update"
ok "report written atomically (0644, no temp file left), self-contained, figures as expected"

# hostile values: only escaped; exactly the page's own one script element
[ "$(grep -o '<script' "$R" | wc -l)" = 1 ] && [ "$(grep -o '</script' "$R" | wc -l)" = 1 ] ||
    fail "a value's markup reached the page unescaped"
grep -q '<img\|<b>x\|alert(1)</' "$R" && fail "markup from the CA unescaped"
esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' -e "s/'/\&#39;/g"; }
# the subject as ca list shows it (RFC 4514: <, > and " backslash-escaped)
J 0 --dir "$P" ca list
EVIL_SUBJ=$("$PY" -c 'import json,sys
print(*[c["subject"] for c in json.load(open(sys.argv[1]))["result"]["certificates"] if c["name"] == "evil"])' "$T/out")
case $EVIL_SUBJ in *"alert(1)"*"/script"*) ;; *) fail "the hostile CN was not signed whole: $EVIL_SUBJ" ;; esac
for v in "$EVIL_TAG" "$EVIL_NOTE" "$EVIL_SUBJ"; do
    e=$(printf '%s' "$v" | esc)
    grep -qF -- "$e" "$R" || fail "not found escaped: $v ($e)"
done
ok "CN, tag and note with <script>, </script>, quotes and & appear escaped only"

# FILE: - is stdout; a symlink, FIFO or directory at FILE is refused (one planted in a shared
# directory would redirect the report); errors say what
expect_rc 0 "$KW" --dir "$P" ca report --html -
[ "$(grep -o '<tr class="[a-z]*">' "$T/out" | wc -l)" = "$N" ] || fail "--html - output"
[ -s "$T/err" ] && fail "--html - printed on stderr: $(cat "$T/err")"
echo keep >"$T/target"
ln -s "$T/target" "$T/link.html"
expect_rc 2 "$KW" --dir "$P" ca report --html "$T/link.html"
grep -q "^keyward: --html $T/link.html is a symbolic link" "$T/err" || fail "a symlink at FILE: $(cat "$T/err")"
[ -L "$T/link.html" ] && [ "$(cat "$T/target")" = keep ] || fail "the symlink at FILE or its target was changed"
mkfifo "$T/fifo.html"
expect_rc 2 timeout 120 "$KW" --dir "$P" ca report --html "$T/fifo.html"
grep -q "is not a regular file (a FIFO" "$T/err" || fail "a FIFO at FILE: $(cat "$T/err")"
expect_rc 0 "$KW" --dir "$P" ca report --html "$T/plain.html"
grep -q "^wrote $T/plain.html: $N certificates (24 valid, 4 expiring within 30 days, 0 expired, 1 revoked)" "$T/out" ||
    fail "text summary: $(cat "$T/out")"
mkdir "$T/adir"
expect_rc 2 "$KW" --dir "$P" ca report --html "$T/adir"
grep -q "$T/adir exists and is not a regular file" "$T/err" || fail "a directory as FILE: $(cat "$T/err")"
expect_rc 1 "$KW" --dir "$P" ca report --html "$T/missing/r.html"
grep -q "its directory must exist" "$T/err" || fail "missing directory: $(cat "$T/err")"
# a certificate file that cannot be read: its row stays, with the index's subject
s=$(openssl x509 -in "$P/issued/mid1.crt" -noout -serial | cut -d= -f2)
mv "$P/certs/$s.pem" "$T/saved.pem"
printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' >"$P/certs/$s.pem"
expect_rc 0 "$KW" --dir "$P" ca report --html "$T/broken.html"
grep -q '<tr class="valid"><td>mid1</td><td class="mono">'"$s"'</td><td>/O=Ex/CN=mid1</td>.*<td data-sort="-1">unknown</td>' \
    "$T/broken.html" || fail "an unreadable certificate file lost its row"
mv "$T/saved.pem" "$P/certs/$s.pem"
J 2 --dir "$P" ca report --html -
J 2 --dir "$P" ca report
J 2 --dir "$P" ca report --html "$R" extra
expect_rc 2 "$KW" --dir "$P" --dry-run ca report --html "$R"
J 1 --dir "$T/nothing" ca report --html "$T/r.html"
check_json_docs 6
ok "--html - (stdout); a symlink, FIFO or directory at FILE refused (exit 2), the link untouched; an unreadable certificate file kept as a row; a missing directory exit 1; JSON valid"

# ---- in a real browser ----
CHROME=$(command -v chromium || command -v chromium-browser) ||
    skip "chromium not installed (scripts/deps.sh test installs it): the page was not rendered"
"$PY" -c 'import PIL' 2>/dev/null || skip "python3-pil not installed (scripts/deps.sh test installs it)"
mkdir -p "$T/home"
# One browser run (its start-up is most of this test's time): the DOM after the script ran and
# a screenshot, of the page opened with a filter and a sort in its address: usage=api-mtls,
# latest notAfter first. /usr/bin/chromium is a wrapper script; no D-Bus here is fine.
URL="file://$(printf '%s' "$R" | sed 's/ /%20/g')#q=usage%3Dapi-mtls&sort=7&desc"
HOME=$T/home timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run \
    --no-default-browser-check --disable-extensions --disable-dev-shm-usage --mute-audio \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$T/chrome" --virtual-time-budget=1000 --window-size=1280,1400 \
    --hide-scrollbars --screenshot="$T/shot.png" --dump-dom "$URL" >"$T/dom.html" 2>"$T/chrome.err" ||
    { grep -v dbus "$T/chrome.err" | tail -5; fail "chromium --dump-dom --screenshot failed"; }
"$PY" - "$T/dom.html" "$N" <<'PY' || fail "the page as Chromium rendered it"
import re, sys
from html.parser import HTMLParser
dom, n = open(sys.argv[1]).read(), int(sys.argv[2])
class P(HTMLParser):
    def __init__(s):
        super().__init__(); s.rows = []; s.heads = []; s.tags = {}
    def handle_starttag(s, tag, a):
        a = dict(a)
        s.tags[tag] = s.tags.get(tag, 0) + 1
        if tag == "tr" and a.get("class") in ("valid", "expiring", "expired", "revoked"):
            s.rows.append({"class": a["class"], "hidden": "hidden" in a, "cells": []})
        elif tag == "td" and s.rows:
            s.rows[-1]["cells"].append(a.get("data-sort"))
        elif tag == "th" and "aria-sort" in a:
            s.heads.append(a["aria-sort"])
        elif tag == "rect" and a.get("class", "").startswith("bar"):
            s.tags["bar"] = s.tags.get("bar", 0) + 1
p = P(); p.feed(dom)
# the table and the SVG as the browser parsed them; nothing injected by a value
classes = [r["class"] for r in p.rows]
assert len(p.rows) == n and classes.count("expiring") == 4 and classes.count("revoked") == 1, classes
assert p.tags.get("bar") == 5, p.tags
assert p.tags.get("script") == 1 and "img" not in p.tags and "<b>x<" not in dom, p.tags
# the script ran: its row count, the filter (hidden rows) and the sort (order, aria-sort)
shown = [r for r in p.rows if not r["hidden"]]
assert f'data-shown="{len(shown)}"' in dom and f">{len(shown)} of {n} shown<" in dom, "no row count"
assert len(shown) == 6, f"{len(shown)} rows shown, want the 6 usage=api-mtls"
after = [int(r["cells"][7]) for r in shown]
assert after == sorted(after, reverse=True) and after[0] - after[-1] > 25 * 86400, after
assert p.heads[7] == "descending" and p.heads.count("none") == len(p.heads) - 1, p.heads
PY
ok "Chromium: $N table rows, 5 SVG bars; the script ran: filter (#q=) shows the 6 api-mtls rows, sorted (#sort=7&desc) by notAfter, row count"
"$PY" - "$T/shot.png" <<'PY' || fail "the screenshot is blank or lacks the timeline"
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
colours = im.getcolors(maxcolors=1 << 20)
assert im.size == (1280, 1400), im.size
assert len(colours) > 16, f"{len(colours)} colours"
have = {c for _, c in colours}
assert (0x3B, 0x6F, 0xD8) in have and (0xD9, 0x48, 0x0F) in have and (0xFF, 0xE6, 0xD9) in have, "bars/band"
print(f"screenshot: {len(colours)} colours")
PY
ok "Chromium: the screenshot is not blank (the bars' and the band's colours are in it)"
echo PASS
