/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca report --html FILE`: the fleet on one self-contained HTML page (inline CSS, a few
 * lines of inline script, inline SVG; nothing loaded from anywhere): summary counts, the expiry
 * timeline of the next 365 days, revocations by reason, profiles and tags, the CA generations
 * with their CRLs, and the inventory table (sortable, filterable). The figures are those of
 * `ca stats` (kwt_fleet_load, ca_stats.c). Every value that comes from the CA (names, subjects,
 * tags, notes: requester- and operator-controlled) is HTML-escaped; a Content-Security-Policy
 * allows only this page's own style and script (by their SHA-256), so even markup that slipped
 * through could neither run nor load anything. */
#include "kwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keyward/keyward.h>

#define SOON_DAYS 30 /* the expiring-soon band and the table's "expiring" status */
#define WEEKS     53 /* the 365 days of the timeline, a bar per week */

static const char css[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;"
    "color:#1d2330;background:#fff}\n"
    "h1{font-size:1.5em;margin:0 0 .2em}\n"
    "h2{font-size:1.15em;margin:1.8em 0 .5em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}\n"
    ".sub{color:#5b6475;margin:0}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}\n"
    ".card{border:1px solid #d8dde6;border-radius:6px;padding:.45em .9em;min-width:7em;"
    "background:#f6f8fb}\n"
    ".card b{display:block;font-size:1.6em}\n"
    ".card.warn{background:#fff4e5;border-color:#f0b45a}\n"
    ".card.bad{background:#fdecec;border-color:#e58a8a}\n"
    "table{border-collapse:collapse;width:100%}\n"
    "table.small{width:auto;min-width:24em}\n"
    "th,td{text-align:left;padding:.3em .55em;border-bottom:1px solid #e6e9ef;vertical-align:top}\n"
    "th{background:#eef1f6}\n"
    "td.n{text-align:right}\n"
    "#inv th{cursor:pointer;user-select:none;white-space:nowrap}\n"
    "#inv th[aria-sort=ascending]::after{content:\" \\25b2\"}\n"
    "#inv th[aria-sort=descending]::after{content:\" \\25bc\"}\n"
    ".mono,code{font-family:ui-monospace,monospace;font-size:.9em}\n"
    "td.mono{overflow-wrap:anywhere;max-width:14em}\n"
    ".tag{display:inline-block;background:#e7eefc;border-radius:3px;padding:0 .35em;"
    "margin:0 .2em .15em 0}\n"
    ".note{max-width:22em;overflow-wrap:anywhere}\n"
    "tr.expiring{background:#fff6e9}tr.expiring td.st{color:#b35c00;font-weight:600}\n"
    "tr.revoked{background:#fdf2f2}tr.revoked td.st{color:#b42318}\n"
    "tr.expired td{color:#6b7280}tr.valid td.st{color:#1d7a3a}\n"
    "tr[hidden]{display:none}\n"
    ".bad{color:#b42318;font-weight:600}\n"
    "svg{display:block;width:100%;max-width:960px;height:auto}\n"
    ".bar{fill:#3b6fd8}.bar.soon{fill:#d9480f}.band{fill:#ffe6d9}\n"
    ".axis{font-size:11px;fill:#5b6475}.grid{stroke:#e1e5ec}.base{stroke:#8b93a3}\n"
    "#filter{font:inherit;padding:.3em .5em;width:24em;max-width:100%;margin:0 .6em .6em 0}\n";

/* Sort by a header click (again: the other way), filter by the text box, "N of M shown";
 * #q=TEXT&sort=COLUMN[&desc] in the address does the same on load. */
static const char script[] =
    "(function () {\n"
    "  var t = document.getElementById('inv'), b = t.tBodies[0], hs = t.tHead.rows[0].cells;\n"
    "  var rows = Array.prototype.slice.call(b.rows), f = document.getElementById('filter');\n"
    "  var out = document.getElementById('shown'), col = -1, dir = 1;\n"
    "  function key(r, i) {\n"
    "    var c = r.cells[i];\n"
    "    return c.hasAttribute('data-sort') ? +c.getAttribute('data-sort') :\n"
    "      c.textContent.toLowerCase();\n"
    "  }\n"
    "  function sort(i, d) {\n"
    "    col = i; dir = d;\n"
    "    rows.sort(function (x, y) {\n"
    "      var p = key(x, i), q = key(y, i);\n"
    "      return (p < q ? -1 : p > q ? 1 : 0) * d;\n"
    "    });\n"
    "    rows.forEach(function (r) { b.appendChild(r); });\n"
    "    for (var j = 0; j < hs.length; j++)\n"
    "      hs[j].setAttribute('aria-sort', j != i ? 'none' : d > 0 ? 'ascending' : "
    "'descending');\n"
    "  }\n"
    "  function filter() {\n"
    "    var q = f.value.toLowerCase(), n = 0;\n"
    "    rows.forEach(function (r) {\n"
    "      r.hidden = q !== '' && r.textContent.toLowerCase().indexOf(q) < 0;\n"
    "      if (!r.hidden) n++;\n"
    "    });\n"
    "    out.textContent = n + ' of ' + rows.length + ' shown';\n"
    "    t.setAttribute('data-shown', n);\n"
    "  }\n"
    "  Array.prototype.forEach.call(hs, function (h, i) {\n"
    "    h.addEventListener('click', function () { sort(i, col == i ? -dir : 1); });\n"
    "  });\n"
    "  f.addEventListener('input', filter);\n"
    "  var p = new URLSearchParams(location.hash.slice(1)), s = parseInt(p.get('sort'), 10);\n"
    "  if (p.get('q')) f.value = p.get('q');\n"
    "  if (s >= 0 && s < hs.length) sort(s, p.has('desc') ? -1 : 1);\n"
    "  filter();\n"
    "})();\n";

/* Text and attribute values: the five characters that mean something in HTML. */
static void esc(kwt_buf *b, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *r;
        switch (*s) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '"':
            r = "&quot;";
            break;
        case '\'':
            r = "&#39;";
            break;
        default:
            continue;
        }
        kwt_buf_addn(b, run, (size_t)(s - run));
        kwt_buf_add(b, r);
        run = s + 1;
    }
    kwt_buf_addn(b, run, (size_t)(s - run));
}

/* 'sha256-BASE64' of a style or script element's text, for the Content-Security-Policy. */
static void csp_hash(kwt_buf *b, const char *text)
{
    unsigned char md[32], b64[48];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    EVP_EncodeBlock(b64, md, (int)n);
    kwt_buf_printf(b, "'sha256-%s'", (const char *)b64);
}

/* "YYYY-MM-DD HH:MM" (UTC), or only the day */
static void date_of(long long t, char *out, size_t len, bool day_only)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, day_only ? "%Y-%m-%d" : "%Y-%m-%d %H:%M", &tm);
}

typedef struct {
    kwt_ca *ca;
    kwt_buf rows; /* the inventory's <tr>s */
    long long now;
    size_t weeks[WEEKS], later, soon;
} report;

static void date_cell(kwt_buf *b, long long t)
{
    char d[32] = "unknown";
    if (t >= 0)
        date_of(t, d, sizeof(d), false);
    kwt_buf_printf(b, "<td data-sort=\"%lld\">%s</td>", t, d);
}

static void inventory_row(void *arg, const kwt_row *r, long long not_after, int st,
                          const kwt_meta *m)
{
    report *rp = arg;
    kwt_buf *b = &rp->rows;
    long long left = not_after - rp->now;
    bool soon = st == KWT_ST_VALID && left <= (long long)SOON_DAYS * 86400;
    const char *cls = st == KWT_ST_REVOKED   ? "revoked"
                      : st == KWT_ST_EXPIRED ? "expired"
                      : soon                 ? "expiring"
                                             : "valid";
    if (st == KWT_ST_VALID) {
        if (left < 0) /* expired between the scan's clock and ours */
            left = 0;
        if (left < 365LL * 86400)
            rp->weeks[left / (7 * 86400)]++;
        else
            rp->later++;
        rp->soon += soon;
    }
    char *cp = kwt_asprintf("%s/certs/%s.pem", rp->ca->dir, r->serial), *subj = NULL;
    long long not_before = -1;
    /* without decoding each public key (OpenSSL 3 looks up a decoder for each: most of the
     * time of a page of thousands of rows otherwise) */
    if (kwt_cert_brief(cp, NULL, &subj, &not_before) != 0) {
        X509 *x = kwt_load_cert(cp);
        not_before = x ? kwt_asn1_time(X509_get0_notBefore(x)) : -1;
        subj = x ? kwt_cert_subject(x) : kwt_strdup(r->subject);
        X509_free(x);
    }
    free(cp);

    kwt_buf_printf(b, "<tr class=\"%s\"><td>", cls);
    esc(b, r->name);
    kwt_buf_add(b, "</td><td class=\"mono\">");
    esc(b, r->serial);
    kwt_buf_add(b, "</td><td>");
    esc(b, subj);
    kwt_buf_add(b, "</td><td>");
    esc(b, m->profile && *m->profile ? m->profile : "unknown");
    kwt_buf_add(b, "</td><td>");
    for (size_t t = 0; t < m->ntags; t++) {
        kwt_buf_add(b, "<span class=\"tag\">");
        esc(b, m->tags[t].key);
        kwt_buf_add(b, "=");
        esc(b, m->tags[t].value);
        kwt_buf_add(b, "</span> ");
    }
    if (!m->auto_renew)
        kwt_buf_add(b, "<span class=\"tag\">auto-renew off</span>");
    kwt_buf_add(b, "</td><td class=\"note\">");
    if (m->note)
        esc(b, m->note);
    kwt_buf_add(b, "</td>");
    date_cell(b, not_before);
    date_cell(b, not_after);
    kwt_buf_add(b, "<td class=\"st\">");
    if (st == KWT_ST_REVOKED) {
        char reason[64];
        kwt_revocation_reason(r, reason, sizeof(reason));
        kwt_buf_add(b, "revoked: ");
        esc(b, reason);
    } else if (soon) {
        kwt_buf_printf(b, "expiring in %lld d", left / 86400);
    } else {
        kwt_buf_add(b, cls);
    }
    kwt_buf_add(b, "</td></tr>\n");
    free(subj);
}

static void card(kwt_buf *b, const char *cls, size_t n, const char *label)
{
    kwt_buf_printf(b, "<div class=\"card%s%s\"><b>%zu</b>%s</div>\n", n && *cls ? " " : "",
                   n ? cls : "", n, label);
}

/* Certificates per week as bars; the first SOON_DAYS days as a band. */
static void timeline(kwt_buf *b, const report *rp)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const double W = 960, H = 250, L = 44, R = 12, TOP = 24, BOT = 44;
    const double pw = W - L - R, ph = H - TOP - BOT, bw = pw / WEEKS;
    size_t max = 0, total = 0;
    for (int w = 0; w < WEEKS; w++) {
        max = rp->weeks[w] > max ? rp->weeks[w] : max;
        total += rp->weeks[w];
    }
    kwt_buf_printf(b,
                   "<svg id=\"timeline\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%zu "
                   "certificates expire in the next 365 days, %zu of them within %d days\">\n",
                   W, H, total, rp->soon, SOON_DAYS);
    kwt_buf_printf(b,
                   "<rect class=\"band\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
                   "<title>expiring soon: within %d days</title></rect>\n",
                   L, TOP, bw * SOON_DAYS / 7.0, ph, SOON_DAYS);
    kwt_buf_printf(b, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\">&#8804; %d days</text>\n", L + 3,
                   TOP - 6, SOON_DAYS);
    size_t top = max < 1 ? 1 : max;
    for (int g = 0; g <= 2; g++) { /* grid lines at 0, half and the highest week */
        size_t v = top * (size_t)g / 2;
        if (g == 1 && top < 2)
            continue;
        double y = TOP + ph - ph * (double)v / (double)top;
        kwt_buf_printf(
            b,
            "<line class=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
            "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%zu</text>\n",
            g ? "grid" : "base", L, L + pw, y, y, L - 6, y + 4, v);
    }
    int last_month = -1;
    for (int w = 0; w < WEEKS; w++) {
        long long start = rp->now + (long long)w * 7 * 86400;
        time_t tt = (time_t)start;
        struct tm tm;
        gmtime_r(&tt, &tm);
        double x = L + bw * w;
        if (tm.tm_mon != last_month) { /* a label at the first week of each month */
            if (last_month < 0 || tm.tm_mon == 0)
                kwt_buf_printf(b, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\">%s %d</text>\n", x,
                               TOP + ph + 30, months[tm.tm_mon], tm.tm_year + 1900);
            kwt_buf_printf(b, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\">%s</text>\n", x,
                           TOP + ph + 15, months[tm.tm_mon]);
            last_month = tm.tm_mon;
        }
        if (!rp->weeks[w])
            continue;
        double h = ph * (double)rp->weeks[w] / (double)top;
        char d[16];
        date_of(start, d, sizeof(d), true);
        kwt_buf_printf(b,
                       "<rect class=\"bar%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                       "height=\"%.1f\"><title>%zu expiring in the week from %s</title></rect>\n",
                       w * 7 < SOON_DAYS ? " soon" : "", x + 1, TOP + ph - h, bw - 2, h,
                       rp->weeks[w], d);
    }
    kwt_buf_add(b, "</svg>\n");
}

static void counts_table(kwt_buf *b, const char *what, const kwt_counters *cs, bool tag)
{
    kwt_buf_printf(b,
                   "<table class=\"small\"><thead><tr><th>%s</th><th>valid</th><th>expired</th>"
                   "<th>revoked</th></tr></thead><tbody>\n",
                   what);
    for (size_t i = 0; i < cs->n; i++) {
        const kwt_counter *c = &cs->c[i];
        kwt_buf_add(b, "<tr><td>");
        if (tag)
            kwt_buf_add(b, "<span class=\"tag\">");
        esc(b, c->a);
        if (tag) {
            kwt_buf_add(b, "=");
            esc(b, c->b);
            kwt_buf_add(b, "</span>");
        }
        kwt_buf_printf(b,
                       "</td><td class=\"n\">%zu</td><td class=\"n\">%zu</td>"
                       "<td class=\"n\">%zu</td></tr>\n",
                       c->n[KWT_ST_VALID], c->n[KWT_ST_EXPIRED], c->n[KWT_ST_REVOKED]);
    }
    kwt_buf_add(b, "</tbody></table>\n");
}

static void when_cell(kwt_buf *b, long long t, long long now)
{
    char d[32];
    if (t < 0) {
        kwt_buf_add(b, "<td>none</td>");
        return;
    }
    date_of(t, d, sizeof(d), false);
    if (t <= now)
        kwt_buf_printf(b, "<td class=\"bad\">%s (passed)</td>", d);
    else if (t - now < 2 * 86400)
        kwt_buf_printf(b, "<td class=\"bad\">%s (in %lld h)</td>", d, (t - now) / 3600);
    else
        kwt_buf_printf(b, "<td>%s (in %lld days)</td>", d, (t - now) / 86400);
}

/* Each CA generation's root and its CRL's next update. */
static void generations(kwt_buf *b, kwt_ca *ca, const kwt_fleet *f, long long now)
{
    kwt_buf_add(b, "<table><thead><tr><th>generation</th><th>state</th><th>certificate</th>"
                   "<th>subject</th><th>not after</th><th>CRL</th><th>CRL next update</th>"
                   "</tr></thead><tbody>\n");
    for (int g = ca->conf.generation; g >= 1; g--) {
        char *p = kwt_gen_cert_path(ca, g);
        X509 *x = kwt_load_cert(p);
        char *subj = x ? kwt_cert_subject(x) : kwt_strdup("(unreadable)");
        long long na = x ? kwt_asn1_time(X509_get0_notAfter(x)) : -1;
        X509_free(x);
        kwt_buf_printf(b, "<tr><td class=\"n\">%d</td><td>%s</td><td><code>", g,
                       g == ca->conf.generation ? "current"
                       : kwt_gen_live(ca, g)    ? "signs its CRL"
                                                : "retired");
        esc(b, p);
        kwt_buf_add(b, "</code></td><td>");
        esc(b, subj);
        kwt_buf_add(b, "</td>");
        when_cell(b, na, now);
        const kwt_crl_info *c = NULL;
        for (size_t i = 0; i < f->ncrls; i++)
            if (f->crls[i].gen == g)
                c = &f->crls[i];
        if (c) {
            kwt_buf_add(b, "<td><code>");
            esc(b, c->file);
            kwt_buf_add(b, "</code></td>");
            when_cell(b, c->next_update, now);
        } else {
            kwt_buf_add(b, "<td>none</td><td></td>");
        }
        kwt_buf_add(b, "</tr>\n");
        free(subj);
        free(p);
    }
    kwt_buf_add(b, "</tbody></table>\n");
}

static void page(kwt_buf *b, kwt_ca *ca, const kwt_fleet *f, const report *rp)
{
    char now[32];
    date_of(rp->now, now, sizeof(now), false);
    char *cp = kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(cp);
    char *subj = x ? kwt_cert_subject(x) : kwt_strdup("(ca.crt unreadable)");
    X509_free(x);
    free(cp);
    kwt_buf_add(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                   "style-src ");
    csp_hash(b, css);
    kwt_buf_add(b, "; script-src ");
    csp_hash(b, script);
    kwt_buf_add(b, "; base-uri 'none'; form-action 'none'\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<meta name=\"generator\" content=\"keyward " KEYWARD_VERSION_STR "\">\n"
                   "<title>CA report: ");
    esc(b, subj);
    kwt_buf_printf(b, "</title>\n<style>%s</style>\n</head><body>\n<h1>CA report: ", css);
    esc(b, subj);
    kwt_buf_add(b, "</h1>\n<p class=\"sub\">CA directory <code>");
    esc(b, ca->dir);
    kwt_buf_printf(
        b, "</code>, generation %d; generated %s UTC by keyward " KEYWARD_VERSION_STR "</p>\n",
        ca->conf.generation, now);

    kwt_buf_add(b, "<section id=\"summary\"><div class=\"cards\">\n");
    card(b, "", f->total, "certificates");
    card(b, "", f->st[KWT_ST_VALID], "valid");
    card(b, "bad", f->expiring[0], "expire within 7 days");
    card(b, "warn", f->expiring[2], "expire within 30 days");
    card(b, "", f->expiring[3], "expire within 60 days");
    card(b, "", f->st[KWT_ST_EXPIRED], "expired");
    card(b, "", f->st[KWT_ST_REVOKED], "revoked");
    kwt_buf_add(b, "</div>\n<p>Last <code>ca renew --due</code>: ");
    if (f->have_run) {
        char d[32];
        date_of(f->run_time, d, sizeof(d), false);
        kwt_buf_printf(b, "%s UTC (due within %lld days): %lld renewed, <span%s>%lld failed</span>",
                       d, f->run_due, f->run_renewed, f->run_failed ? " class=\"bad\"" : "",
                       f->run_failed);
    } else {
        kwt_buf_add(b, "never");
    }
    kwt_buf_add(b, ".</p></section>\n");

    kwt_buf_add(b, "<section><h2>Expiry in the next 365 days</h2>\n"
                   "<p>Valid certificates per week; the band marks the next 30 days.</p>\n");
    timeline(b, rp);
    kwt_buf_printf(b, "<p>%zu expire later than that; %zu have expired.</p></section>\n", rp->later,
                   f->st[KWT_ST_EXPIRED]);

    kwt_buf_add(b, "<section><h2>Revocations by reason</h2>\n");
    if (f->reasons.n) {
        kwt_buf_add(b, "<table class=\"small\" id=\"reasons\"><thead><tr><th>reason</th>"
                       "<th>certificates</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < f->reasons.n; i++) {
            kwt_buf_add(b, "<tr><td>");
            esc(b, f->reasons.c[i].a);
            kwt_buf_printf(b, "</td><td class=\"n\">%zu</td></tr>\n",
                           f->reasons.c[i].n[KWT_ST_REVOKED]);
        }
        kwt_buf_add(b, "</tbody></table>\n");
    } else {
        kwt_buf_add(b, "<p>No certificate is revoked.</p>\n");
    }
    kwt_buf_add(b, "</section>\n<section><h2>CA generations and their CRLs</h2>\n");
    generations(b, ca, f, rp->now);
    kwt_buf_add(b, "</section>\n<section><h2>Profiles and tags</h2>\n");
    counts_table(b, "profile", &f->profiles, false);
    if (f->tags.n) {
        kwt_buf_add(b, "<p></p>\n");
        counts_table(b, "tag", &f->tags, true);
    }
    kwt_buf_printf(b,
                   "</section>\n<section><h2>Inventory</h2>\n"
                   "<input id=\"filter\" type=\"search\" placeholder=\"filter: name, tag, "
                   "status...\" aria-label=\"filter the certificates\">"
                   "<span id=\"shown\">%zu certificates</span>\n"
                   "<table id=\"inv\"><thead><tr><th>name</th><th>serial</th><th>subject</th>"
                   "<th>profile</th><th>tags</th><th>note</th><th>not before</th>"
                   "<th>not after</th><th>status</th></tr></thead><tbody>\n",
                   f->total);
    kwt_buf_addn(b, rp->rows.s, rp->rows.len);
    kwt_buf_printf(b, "</tbody></table></section>\n<script>%s</script>\n</body></html>\n", script);
    free(subj);
}

int kwt_cmd_ca_report(int argc, char **argv)
{
    const char *html = NULL;
    kwt_optspec spec[] = {{"--html", &html, NULL}, {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca report", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (kwt_g.dry_run)
        return kwt_err(KWT_USAGE, "ca report changes nothing in the CA: run it without --dry-run");
    if (!html || !*html)
        return kwt_err(KWT_USAGE, "ca report needs --html FILE (- for stdout)");
    bool to_stdout = !strcmp(html, "-");
    if (to_stdout && kwt_g.json)
        return kwt_err(KWT_USAGE, "--json prints its document on stdout: give --html a file, "
                                  "not -");
    if (!to_stdout && (rc = kwt_check_out_path("--html", html, false)))
        return rc;
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    report rp;
    memset(&rp, 0, sizeof(rp));
    rp.ca = &ca;
    rp.now = (long long)time(NULL);
    kwt_buf_addn(&rp.rows, "", 0);
    kwt_fleet f;
    if ((rc = kwt_fleet_load(&ca, &f, inventory_row, &rp))) {
        kwt_buf_free(&rp.rows);
        kwt_ca_close(&ca);
        return rc;
    }
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    page(&b, &ca, &f, &rp);
    if (to_stdout) {
        if (fwrite(b.s, 1, b.len, stdout) != b.len || fflush(stdout) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write the report to stdout: %s", strerror(errno));
    } else if (kwt_write_atomic(html, b.s, b.len, 0644) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s (its directory must exist and be writable)",
                     html, strerror(errno));
    } else if (kwt_g.json) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"path\":");
        kwt_buf_json_str(&j, html);
        kwt_buf_printf(&j,
                       ",\"bytes\":%zu,\"total\":%zu,\"status\":{\"valid\":%zu,\"expired\":%zu,"
                       "\"revoked\":%zu},\"expiring\":{\"7\":%zu,\"14\":%zu,\"30\":%zu,"
                       "\"60\":%zu},\"timeline_365_days\":%zu}\n",
                       b.len, f.total, f.st[KWT_ST_VALID], f.st[KWT_ST_EXPIRED],
                       f.st[KWT_ST_REVOKED], f.expiring[0], f.expiring[1], f.expiring[2],
                       f.expiring[3], f.st[KWT_ST_VALID] - rp.later);
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    } else {
        kwt_info("wrote %s: %zu certificates (%zu valid, %zu expiring within %d days, %zu "
                 "expired, %zu revoked), %zu bytes",
                 html, f.total, f.st[KWT_ST_VALID], rp.soon, SOON_DAYS, f.st[KWT_ST_EXPIRED],
                 f.st[KWT_ST_REVOKED], b.len);
    }
    kwt_buf_free(&b);
    kwt_buf_free(&rp.rows);
    kwt_fleet_free(&f);
    kwt_ca_close(&ca);
    return rc;
}
