/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca stats` and `keyward ca metrics`: the fleet's figures (counts by status, expiry,
 * revocation reason, profile and tag; the last `ca renew --due`; each generation's CRL), as
 * text, JSON or the Prometheus text exposition format (node_exporter's textfile collector); the
 * scan itself (kwt_fleet_load) is shared with `ca report` (ca_report.c). */
#include "kwt.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the fleet's types are kwt.h's (ca report reads them too); the short names here */
enum { ST_VALID = KWT_ST_VALID, ST_EXPIRED = KWT_ST_EXPIRED, ST_REVOKED = KWT_ST_REVOKED };
#define ST_N KWT_ST_N
static const char *const st_names[ST_N] = {"valid", "expired", "revoked"};
static const int windows[KWT_FLEET_NWIN] = {7, 14, 30, 60};
#define NWIN KWT_FLEET_NWIN
typedef kwt_counter counter;
typedef kwt_counters counters;
typedef kwt_fleet fleet;

static counter *bump(counters *cs, const char *a, const char *b, int st)
{
    /* linear: profiles, reasons and tag values are few next to the certificates */
    for (size_t i = 0; i < cs->n; i++)
        if (!strcmp(cs->c[i].a, a) && (!b || !strcmp(cs->c[i].b, b))) {
            cs->c[i].n[st]++;
            return &cs->c[i];
        }
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 16;
        cs->c = realloc(cs->c, cs->cap * sizeof(*cs->c));
    }
    counter *c = &cs->c[cs->n++];
    memset(c, 0, sizeof(*c));
    c->a = kwt_strdup(a);
    c->b = b ? kwt_strdup(b) : NULL;
    c->n[st]++;
    return c;
}

static int cmp_counter(const void *x, const void *y)
{
    const counter *p = x, *q = y;
    int r = strcmp(p->a, q->a);
    return r ? r : strcmp(p->b ? p->b : "", q->b ? q->b : "");
}

static void counters_free(counters *cs)
{
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->c[i].a);
        free(cs->c[i].b);
    }
    free(cs->c);
}

/* openssl's index records keyCompromise, cACompromise and certificateHold by the kind of date
 * that follows; the others by name. */
void kwt_revocation_reason(const kwt_row *r, char *out, size_t len)
{
    const char *comma = strchr(r->revocation, ',');
    snprintf(out, len, "%s", comma ? comma + 1 : "unspecified");
    char *c2 = strchr(out, ',');
    if (c2)
        *c2 = '\0';
    if (!strcmp(out, "keyTime"))
        snprintf(out, len, "keyCompromise");
    else if (!strcmp(out, "CAkeyTime"))
        snprintf(out, len, "cACompromise");
    else if (!strcmp(out, "holdInstruction"))
        snprintf(out, len, "certificateHold");
    else if (!*out)
        snprintf(out, len, "unspecified");
}

static int row_status(const kwt_row *r, long long now)
{
    if (r->status == 'R')
        return ST_REVOKED;
    return kwt_asn1_to_time(r->expiry) <= now ? ST_EXPIRED : ST_VALID;
}

static long long asn1_time_t(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    return (long long)timegm(&tm);
}

static void load_last_run(kwt_ca *ca, fleet *f)
{
    char *p = kwt_path(ca->dir, "renew-last");
    char *t = kwt_read_file(p, NULL);
    free(p);
    if (!t)
        return;
    f->have_run = true;
    for (char *l = t, *nl; l && *l; l = nl ? nl + 1 : NULL) {
        nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        long long v = strtoll(strchr(l, '=') ? strchr(l, '=') + 1 : "0", NULL, 10);
        if (!strncmp(l, "time=", 5))
            f->run_time = v;
        else if (!strncmp(l, "due_days=", 9))
            f->run_due = v;
        else if (!strncmp(l, "renewed=", 8))
            f->run_renewed = v;
        else if (!strncmp(l, "failed=", 7))
            f->run_failed = v;
    }
    free(t);
}

/* Every figure, from one pass over the index and the per-certificate records. */
int kwt_fleet_load(kwt_ca *ca, kwt_fleet *f, kwt_fleet_fn each, void *arg)
{
    memset(f, 0, sizeof(*f));
    kwt_index ix = {0};
    char *ixp = kwt_state_path(ca, "index.txt");
    int rc = 0;
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        free(ixp);
        return rc;
    }
    free(ixp);
    long long now = (long long)time(NULL);
    for (size_t i = 0; i < ix.n; i++) {
        const kwt_row *r = &ix.rows[i];
        long long exp = kwt_asn1_to_time(r->expiry);
        int st = row_status(r, now);
        kwt_meta m;
        kwt_meta_read(ca->dir, r->serial, &m);
        f->total++;
        f->st[st]++;
        for (size_t w = 0; st == ST_VALID && w < NWIN; w++)
            if (exp - now <= (long long)windows[w] * 86400)
                f->expiring[w]++;
        if (st == ST_REVOKED) {
            char reason[64];
            kwt_revocation_reason(r, reason, sizeof(reason));
            bump(&f->reasons, reason, NULL, st);
        }
        bump(&f->profiles, m.profile && *m.profile ? m.profile : "unknown", NULL, st);
        for (size_t t = 0; t < m.ntags; t++)
            bump(&f->tags, m.tags[t].key, m.tags[t].value, st);
        if (each)
            each(arg, r, exp, st, &m);
        kwt_meta_free(&m);
    }
    kwt_index_free(&ix);
    /* qsort of an empty list: its array is NULL, which qsort must not get (UBSan) */
    counters *lists[] = {&f->reasons, &f->profiles, &f->tags};
    for (size_t i = 0; i < 3; i++)
        if (lists[i]->n)
            qsort(lists[i]->c, lists[i]->n, sizeof(counter), cmp_counter);
    load_last_run(ca, f);
    f->crls = calloc((size_t)ca->conf.generation + 1, sizeof(*f->crls));
    for (int g = 1; f->crls && g <= ca->conf.generation; g++) {
        char *p = kwt_asprintf("%s/crl/gen-%d.pem", ca->dir, g);
        BIO *b = BIO_new_file(p, "r");
        X509_CRL *crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!crl) {
            free(p);
            continue;
        }
        f->crls[f->ncrls].gen = g;
        f->crls[f->ncrls].file = p;
        f->crls[f->ncrls].next_update = asn1_time_t(X509_CRL_get0_nextUpdate(crl));
        f->ncrls++;
        X509_CRL_free(crl);
    }
    ERR_clear_error();
    return 0;
}

void kwt_fleet_free(kwt_fleet *f)
{
    counters_free(&f->reasons);
    counters_free(&f->profiles);
    counters_free(&f->tags);
    for (size_t i = 0; i < f->ncrls; i++)
        free(f->crls[i].file);
    free(f->crls);
}

static void iso(long long t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_counts(kwt_buf *b, const size_t n[ST_N])
{
    kwt_buf_printf(b, "{\"valid\":%zu,\"expired\":%zu,\"revoked\":%zu}", n[ST_VALID], n[ST_EXPIRED],
                   n[ST_REVOKED]);
}

/* ca stats: an "expiring" event for each valid certificate that expires within
 * renew_due_days (the hook is run after the figures are printed). */
static void notify_expiring(void *arg, const kwt_row *r, long long not_after, int status,
                            const kwt_meta *m)
{
    (void)m;
    (void)status;
    kwt_ca *ca = arg;
    long long left = not_after - (long long)time(NULL);
    if (r->status != 'V' || left <= 0 || left > (long long)ca->conf.renew_due_days * 86400)
        return;
    char extra[48];
    snprintf(extra, sizeof(extra), "\"days_left\":%lld", left / 86400);
    kwt_notify(ca, "expiring", r->name, r->serial, extra);
}

int kwt_cmd_ca_stats(int argc, char **argv)
{
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca stats", argc, argv, NULL, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    fleet f;
    bool hook = (kwt_g.notify || ca.conf.notify) && !kwt_g.dry_run;
    if ((rc = kwt_fleet_load(&ca, &f, hook ? notify_expiring : NULL, &ca))) {
        kwt_ca_close(&ca);
        return rc;
    }
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    char d[32], run[32] = "";
    if (f.have_run)
        iso(f.run_time, run, sizeof(run));
    if (kwt_g.json) {
        kwt_buf_printf(&b, "{\"total\":%zu,\"status\":", f.total);
        json_counts(&b, f.st);
        kwt_buf_add(&b, ",\"expiring\":{");
        for (size_t w = 0; w < NWIN; w++)
            kwt_buf_printf(&b, "%s\"%d\":%zu", w ? "," : "", windows[w], f.expiring[w]);
        kwt_buf_add(&b, "},\"revoked_by_reason\":{");
        for (size_t i = 0; i < f.reasons.n; i++) {
            kwt_buf_add(&b, i ? "," : "");
            kwt_buf_json_str(&b, f.reasons.c[i].a);
            kwt_buf_printf(&b, ":%zu", f.reasons.c[i].n[ST_REVOKED]);
        }
        kwt_buf_add(&b, "},\"by_profile\":{");
        for (size_t i = 0; i < f.profiles.n; i++) {
            kwt_buf_add(&b, i ? "," : "");
            kwt_buf_json_str(&b, f.profiles.c[i].a);
            kwt_buf_add(&b, ":");
            json_counts(&b, f.profiles.c[i].n);
        }
        /* {"KEY": {"VALUE": counts}}: the counters are sorted by key, then value */
        kwt_buf_add(&b, "},\"by_tag\":{");
        for (size_t i = 0; i < f.tags.n; i++) {
            bool first = i == 0 || strcmp(f.tags.c[i - 1].a, f.tags.c[i].a);
            if (first) {
                kwt_buf_add(&b, i ? "}," : "");
                kwt_buf_json_str(&b, f.tags.c[i].a);
                kwt_buf_add(&b, ":{");
            } else {
                kwt_buf_add(&b, ",");
            }
            kwt_buf_json_str(&b, f.tags.c[i].b);
            kwt_buf_add(&b, ":");
            json_counts(&b, f.tags.c[i].n);
        }
        kwt_buf_add(&b, f.tags.n ? "}}" : "}");
        kwt_buf_add(&b, ",\"last_renewal\":");
        if (f.have_run)
            kwt_buf_printf(&b,
                           "{\"time\":\"%s\",\"due_days\":%lld,\"renewed\":%lld,\"failed\":%lld}",
                           run, f.run_due, f.run_renewed, f.run_failed);
        else
            kwt_buf_add(&b, "null");
        kwt_buf_add(&b, ",\"crls\":[");
        for (size_t i = 0; i < f.ncrls; i++) {
            kwt_buf_printf(&b, "%s{\"generation\":%d,\"file\":", i ? "," : "", f.crls[i].gen);
            kwt_buf_json_str(&b, f.crls[i].file);
            kwt_buf_add(&b, ",\"next_update\":");
            if (f.crls[i].next_update >= 0) {
                iso(f.crls[i].next_update, d, sizeof(d));
                kwt_buf_printf(&b, "\"%s\"}", d);
            } else {
                kwt_buf_add(&b, "null}");
            }
        }
        kwt_buf_add(&b, "]}\n");
    } else {
        kwt_buf_printf(&b, "certificates:  %zu (valid %zu, expired %zu, revoked %zu)\n", f.total,
                       f.st[ST_VALID], f.st[ST_EXPIRED], f.st[ST_REVOKED]);
        kwt_buf_add(&b, "expiring:     ");
        for (size_t w = 0; w < NWIN; w++)
            kwt_buf_printf(&b, "%s within %d days %zu", w ? "," : "", windows[w], f.expiring[w]);
        kwt_buf_add(&b, "\nrevoked:      ");
        for (size_t i = 0; i < f.reasons.n; i++)
            kwt_buf_printf(&b, "%s %s %zu", i ? "," : "", f.reasons.c[i].a,
                           f.reasons.c[i].n[ST_REVOKED]);
        kwt_buf_add(&b, f.reasons.n ? "\n" : " none\n");
        for (size_t i = 0; i < f.profiles.n; i++)
            kwt_buf_printf(&b, "profile %-20s valid %zu, expired %zu, revoked %zu\n",
                           f.profiles.c[i].a, f.profiles.c[i].n[ST_VALID],
                           f.profiles.c[i].n[ST_EXPIRED], f.profiles.c[i].n[ST_REVOKED]);
        for (size_t i = 0; i < f.tags.n; i++)
            kwt_buf_printf(&b, "tag %s=%s: valid %zu, expired %zu, revoked %zu\n", f.tags.c[i].a,
                           f.tags.c[i].b, f.tags.c[i].n[ST_VALID], f.tags.c[i].n[ST_EXPIRED],
                           f.tags.c[i].n[ST_REVOKED]);
        if (f.have_run)
            kwt_buf_printf(&b,
                           "last renewal: %s (due within %lld days): %lld renewed, %lld failed\n",
                           run, f.run_due, f.run_renewed, f.run_failed);
        else
            kwt_buf_add(&b, "last renewal: never (ca renew --due)\n");
        for (size_t i = 0; i < f.ncrls; i++) {
            if (f.crls[i].next_update >= 0)
                iso(f.crls[i].next_update, d, sizeof(d));
            else
                snprintf(d, sizeof(d), "none");
            kwt_buf_printf(&b, "CRL gen %d:    next update %s (%s)\n", f.crls[i].gen, d,
                           f.crls[i].file);
        }
    }
    fputs(b.s, stdout);
    kwt_buf_free(&b);
    kwt_fleet_free(&f);
    kwt_ca_close(&ca);
    return 0;
}

/* ---- Prometheus text exposition format ---- */

/* A label value: backslash, double quote and newline escaped (the format's three). */
static void prom_value(kwt_buf *b, const char *s)
{
    kwt_buf_add(b, "\"");
    for (; *s; s++) {
        if (*s == '\\')
            kwt_buf_add(b, "\\\\");
        else if (*s == '"')
            kwt_buf_add(b, "\\\"");
        else if (*s == '\n')
            kwt_buf_add(b, "\\n");
        else
            kwt_buf_addn(b, s, 1);
    }
    kwt_buf_add(b, "\"");
}

static void prom_head(kwt_buf *b, const char *name, const char *help)
{
    kwt_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

typedef struct {
    kwt_buf *b;
    size_t series;
} prom_arg;

/* keyward_certificate_not_after_seconds{name,serial,profile,tag_KEY...}: tag keys become
 * label names (characters other than [A-Za-z0-9_] as '_'); a second tag that maps to the same
 * label name is left out, as one series cannot have a label twice. */
static void prom_cert(void *arg, const kwt_row *r, long long not_after, int st, const kwt_meta *m)
{
    prom_arg *a = arg;
    if (st == ST_REVOKED)
        return;
    kwt_buf *b = a->b;
    char labels[KWT_TAGS_MAX][4 + KWT_TAG_KEY_MAX + 1];
    size_t nl = 0;
    kwt_buf_add(b, "keyward_certificate_not_after_seconds{name=");
    prom_value(b, r->name);
    kwt_buf_add(b, ",serial=");
    prom_value(b, r->serial);
    kwt_buf_add(b, ",profile=");
    prom_value(b, m->profile && *m->profile ? m->profile : "unknown");
    for (size_t t = 0; t < m->ntags; t++) {
        char *l = labels[nl];
        snprintf(l, sizeof(labels[0]), "tag_%s", m->tags[t].key);
        for (char *p = l; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_'))
                *p = '_';
        bool dup = false;
        for (size_t j = 0; j < nl && !dup; j++)
            dup = !strcmp(labels[j], l);
        if (dup)
            continue;
        nl++;
        kwt_buf_printf(b, ",%s=", l);
        prom_value(b, m->tags[t].value);
    }
    kwt_buf_printf(b, "} %lld\n", not_after);
    a->series++;
}

int kwt_cmd_ca_metrics(int argc, char **argv)
{
    const char *textfile = NULL;
    kwt_optspec spec[] = {{"--textfile", &textfile, NULL}, {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca metrics", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (kwt_g.dry_run)
        return kwt_err(KWT_USAGE, "ca metrics changes nothing in the CA: run it without --dry-run");
    if (textfile && (rc = kwt_check_out_path("--textfile", textfile, false)))
        return rc;
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    prom_head(&b, "keyward_certificate_not_after_seconds",
              "notAfter of each certificate that is not revoked (Unix time), labelled by name, "
              "serial, profile and its tags (tag_KEY).");
    prom_arg pa = {&b, 0};
    fleet f;
    if ((rc = kwt_fleet_load(&ca, &f, prom_cert, &pa))) {
        kwt_buf_free(&b);
        kwt_ca_close(&ca);
        return rc;
    }
    prom_head(&b, "keyward_certificates", "Certificates of the CA by status.");
    for (int s = 0; s < ST_N; s++)
        kwt_buf_printf(&b, "keyward_certificates{status=\"%s\"} %zu\n", st_names[s], f.st[s]);
    prom_head(&b, "keyward_certificates_expiring",
              "Valid certificates that expire within the given number of days.");
    for (size_t w = 0; w < NWIN; w++)
        kwt_buf_printf(&b, "keyward_certificates_expiring{within_days=\"%d\"} %zu\n", windows[w],
                       f.expiring[w]);
    prom_head(&b, "keyward_certificates_revoked", "Revoked certificates by reason.");
    for (size_t i = 0; i < f.reasons.n; i++) {
        kwt_buf_add(&b, "keyward_certificates_revoked{reason=");
        prom_value(&b, f.reasons.c[i].a);
        kwt_buf_printf(&b, "} %zu\n", f.reasons.c[i].n[ST_REVOKED]);
    }
    prom_head(&b, "keyward_profile_certificates", "Certificates by profile and status.");
    for (size_t i = 0; i < f.profiles.n; i++)
        for (int s = 0; s < ST_N; s++) {
            kwt_buf_add(&b, "keyward_profile_certificates{profile=");
            prom_value(&b, f.profiles.c[i].a);
            kwt_buf_printf(&b, ",status=\"%s\"} %zu\n", st_names[s], f.profiles.c[i].n[s]);
        }
    if (f.tags.n)
        prom_head(&b, "keyward_tag_certificates", "Certificates by tag and status.");
    for (size_t i = 0; i < f.tags.n; i++)
        for (int s = 0; s < ST_N; s++) {
            kwt_buf_add(&b, "keyward_tag_certificates{key=");
            prom_value(&b, f.tags.c[i].a);
            kwt_buf_add(&b, ",value=");
            prom_value(&b, f.tags.c[i].b);
            kwt_buf_printf(&b, ",status=\"%s\"} %zu\n", st_names[s], f.tags.c[i].n[s]);
        }
    if (f.ncrls)
        prom_head(&b, "keyward_crl_next_update_seconds",
                  "nextUpdate of each CA generation's CRL (crl/gen-G.pem, Unix time).");
    for (size_t i = 0; i < f.ncrls; i++)
        if (f.crls[i].next_update >= 0)
            kwt_buf_printf(&b, "keyward_crl_next_update_seconds{generation=\"%d\"} %lld\n",
                           f.crls[i].gen, f.crls[i].next_update);
    if (f.have_run) {
        prom_head(&b, "keyward_renewal_last_run_timestamp_seconds",
                  "When the last ca renew --due ran (Unix time).");
        kwt_buf_printf(&b, "keyward_renewal_last_run_timestamp_seconds %lld\n", f.run_time);
        prom_head(&b, "keyward_renewal_last_run_renewed",
                  "Certificates the last ca renew --due renewed.");
        kwt_buf_printf(&b, "keyward_renewal_last_run_renewed %lld\n", f.run_renewed);
        prom_head(&b, "keyward_renewal_last_run_failed",
                  "Due certificates the last ca renew --due failed to renew.");
        kwt_buf_printf(&b, "keyward_renewal_last_run_failed %lld\n", f.run_failed);
        prom_head(&b, "keyward_renewal_last_run_success",
                  "1 when the last ca renew --due renewed every due certificate, else 0.");
        kwt_buf_printf(&b, "keyward_renewal_last_run_success %d\n", f.run_failed == 0);
    }
    if (!textfile) {
        fputs(b.s, stdout);
    } else if (kwt_write_atomic(textfile, b.s, b.len, 0644) != 0) {
        /* node_exporter reads the file while it may be rewritten: only whole files appear */
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s (its directory must exist and be writable)",
                     textfile, strerror(errno));
    } else if (kwt_g.json) {
        printf("{\"textfile\":");
        kwt_buf j = {0};
        kwt_buf_json_str(&j, textfile);
        printf("%s,\"certificates\":%zu}\n", j.s, pa.series);
        kwt_buf_free(&j);
    } else {
        kwt_info("wrote %s: %zu certificates, %zu bytes", textfile, pa.series, b.len);
    }
    kwt_buf_free(&b);
    kwt_fleet_free(&f);
    kwt_ca_close(&ca);
    return rc;
}
