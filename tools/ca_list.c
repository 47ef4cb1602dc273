/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca list`: inventory from the index, with status computed against the clock. */
#include "kwt.h"

#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fmt_date(long long t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void gen_row(kwt_buf *out, int *shown, int gen, const char *kind, const char *path)
{
    X509 *x = kwt_load_cert(path);
    if (!x)
        return;
    char *serial = kwt_cert_serial(x), *fp = kwt_cert_fingerprint(x), na[32] = "";
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (kwt_g.json) {
        kwt_buf_printf(out, "%s{\"generation\":%d,\"kind\":", (*shown)++ ? "," : "", gen);
        kwt_buf_json_str(out, kind);
        kwt_buf_add(out, ",\"file\":");
        kwt_buf_json_str(out, path);
        kwt_buf_printf(out, ",\"serial\":\"%s\",\"not_after\":\"%s\",\"sha256\":\"%s\"}", serial,
                       na, fp);
    } else {
        kwt_buf_printf(out, "%-4d %-11s %-20s %s\n", gen, kind, na, path);
    }
    free(serial);
    free(fp);
    X509_free(x);
}

/* `ca list --generations`: every CA generation's root and the link certificates between them
 * (the certificates relying parties are given, beside the CRLs). */
static int list_generations(kwt_ca *ca)
{
    kwt_buf out = {0};
    kwt_buf_addn(&out, "", 0);
    int shown = 0;
    if (kwt_g.json)
        kwt_buf_add(&out, "{\"generations\":[");
    else
        kwt_buf_printf(&out, "%-4s %-11s %-20s %s\n", "GEN", "KIND", "NOT AFTER", "FILE");
    for (int g = 1; g <= ca->conf.generation; g++) {
        char *root = kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, g);
        if (!kwt_exists(root)) { /* before the first rotation only ca.crt exists */
            free(root);
            root = kwt_gen_cert_path(ca, g);
        }
        char *cross = kwt_asprintf("%s/ca/cross-%d.crt", ca->dir, g);
        char *back = kwt_asprintf("%s/ca/oldwithnew-%d.crt", ca->dir, g);
        gen_row(&out, &shown, g, kwt_gen_live(ca, g) ? "root" : "root (retired)", root);
        gen_row(&out, &shown, g, "NewWithOld", cross);
        gen_row(&out, &shown, g, "OldWithNew", back);
        free(root);
        free(cross);
        free(back);
    }
    if (kwt_g.json)
        kwt_buf_add(&out, "]}\n");
    fputs(out.s, stdout);
    kwt_buf_free(&out);
    return 0;
}

static int list_main(int argc, char **argv, const kwt_meta *filter);

int kwt_cmd_ca_list(int argc, char **argv)
{
    /* --tag KEY=VALUE, repeatable: every one must match */
    kwt_meta filter;
    kwt_meta_init(&filter);
    int trc = kwt_take_tags("ca list", &argc, argv, &filter);
    if (trc) {
        kwt_meta_free(&filter);
        return trc;
    }
    int rc = list_main(argc, argv, &filter);
    kwt_meta_free(&filter);
    return rc;
}

static int list_main(int argc, char **argv, const kwt_meta *filter)
{
    const char *status = "all", *within_s = NULL;
    bool gens = false;
    kwt_optspec spec[] = {{"--status", &status, NULL},
                          {"--within", &within_s, NULL},
                          {"--generations", NULL, &gens},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, within = 30, rc = kwt_parse_args("ca list", argc, argv, spec, pos, 0, &npos);
    if (rc == 0 && gens && filter->ntags)
        rc = kwt_err(KWT_USAGE, "ca list: --tag filters certificates, not --generations");
    if (rc)
        return rc < 0 ? 0 : rc;
    if (strcmp(status, "all") && strcmp(status, "valid") && strcmp(status, "revoked") &&
        strcmp(status, "expired") && strcmp(status, "expiring"))
        return kwt_err(KWT_USAGE, "--status must be all, valid, revoked, expired or expiring");
    if (within_s && kwt_valid_days(within_s, &within, &why) != 0)
        return kwt_err(KWT_USAGE, "--within: %s", why);
    if (within_s && !strcmp(status, "all"))
        status = "expiring"; /* `list --within 30` means: what expires within 30 days */
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    if (gens) {
        rc = list_generations(&ca);
        kwt_ca_close(&ca);
        return rc;
    }
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        free(ixp);
        kwt_ca_close(&ca);
        return rc;
    }
    free(ixp);
    long long now = (long long)time(NULL);
    kwt_buf out = {0};
    kwt_buf_addn(&out, "", 0);
    if (kwt_g.json)
        kwt_buf_add(&out, "{\"certificates\":[");
    else
        kwt_buf_printf(&out, "%-20s %-34s %-20s %-8s %-20s %s\n", "NAME", "SERIAL", "NOT AFTER",
                       "STATUS", "REASON", "SUBJECT / SHA-256");
    int shown = 0;
    for (size_t i = 0; i < ix.n; i++) {
        kwt_row *r = &ix.rows[i];
        long long exp = kwt_asn1_to_time(r->expiry);
        const char *st;
        if (r->status == 'R')
            st = "revoked";
        else if (exp <= now)
            st = "expired";
        else if (exp - now <= (long long)within * 86400)
            st = "expiring";
        else
            st = "valid";
        bool want = !strcmp(status, "all") || !strcmp(status, st) ||
                    (!strcmp(status, "valid") && !strcmp(st, "expiring"));
        if (!want)
            continue;
        kwt_meta md;
        kwt_meta_read(ca.dir, r->serial, &md);
        if (!kwt_meta_match(&md, filter)) {
            kwt_meta_free(&md);
            continue;
        }
        char reason[64] = "";
        if (r->status == 'R')
            kwt_revocation_reason(r, reason, sizeof(reason));
        char date[32];
        fmt_date(exp, date, sizeof(date));
        char *cp = kwt_asprintf("%s/certs/%s.pem", ca.dir, r->serial);
        char *fp = NULL, *subj = NULL;
        /* RFC 4514 from the certificate, as everywhere else (the index has openssl's /A=b form) */
        if (kwt_cert_brief(cp, &fp, &subj, NULL) != 0) {
            fp = kwt_strdup("");
            subj = kwt_strdup(r->subject);
        }
        free(cp);
        if (kwt_g.json) {
            kwt_buf_add(&out, shown ? ",\n {\"name\":" : "\n {\"name\":");
            kwt_buf_json_str(&out, r->name);
            kwt_buf_add(&out, ",\"serial\":");
            kwt_buf_json_str(&out, r->serial);
            kwt_buf_add(&out, ",\"subject\":");
            kwt_buf_json_str(&out, subj);
            kwt_buf_add(&out, ",\"not_after\":");
            kwt_buf_json_str(&out, date);
            kwt_buf_add(&out, ",\"status\":");
            kwt_buf_json_str(&out, st);
            kwt_buf_add(&out, ",\"reason\":");
            if (*reason)
                kwt_buf_json_str(&out, reason);
            else
                kwt_buf_add(&out, "null");
            kwt_buf_add(&out, ",\"sha256\":");
            kwt_buf_json_str(&out, fp);
            kwt_buf_add(&out, ",\"profile\":");
            if (md.profile && *md.profile)
                kwt_buf_json_str(&out, md.profile);
            else
                kwt_buf_add(&out, "null");
            kwt_buf_add(&out, ",");
            kwt_meta_json(&out, &md);
            kwt_buf_add(&out, "}");
        } else {
            kwt_buf_printf(&out, "%-20s %-34s %-20s %-8s %-20s %s\n%76s%s\n", r->name, r->serial,
                           date, st, *reason ? reason : "-", subj, "", fp);
            /* the operator's metadata, on a line of its own when there is any */
            if (md.ntags || md.note || !md.auto_renew) {
                kwt_buf_printf(&out, "%76s", "");
                for (size_t t = 0; t < md.ntags; t++)
                    kwt_buf_printf(&out, "%s%s=%s", t ? " " : "", md.tags[t].key, md.tags[t].value);
                if (md.note)
                    kwt_buf_printf(&out, "%snote: %s", md.ntags ? "  " : "", md.note);
                if (!md.auto_renew)
                    kwt_buf_printf(&out, "%sauto-renew off", md.ntags || md.note ? "  " : "");
                kwt_buf_add(&out, "\n");
            }
        }
        kwt_meta_free(&md);
        free(fp);
        free(subj);
        shown++;
    }
    if (kwt_g.json)
        kwt_buf_add(&out, shown ? "\n]}\n" : "]}\n");
    fputs(out.s, stdout);
    kwt_buf_free(&out);
    kwt_index_free(&ix);
    kwt_ca_close(&ca);
    return 0;
}
