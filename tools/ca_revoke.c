/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca revoke` and `keyward ca crl`: the index and the CRL change in one transaction. */
#include "kwt.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Rewrite a row's revocation field (date[,reason[,date]]) in the index; takes nrev. */
static int set_revocation(kwt_index *ix, const char *ixp, kwt_row *r, char *nrev)
{
    free(r->revocation);
    r->revocation = nrev;
    if (kwt_index_save(ix, ixp) != 0)
        return kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
    return 0;
}

static void fmt_time(long long t, char *gen, size_t glen, char *utc, size_t ulen)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(gen, glen, "%Y%m%d%H%M%SZ", &tm);
    /* index dates are UTCTime: the generalized form without the century */
    snprintf(utc, ulen, "%s", gen + 2);
}

int kwt_revoke_serial(kwt_ca *ca, const char *serial, const char *reason, long long when)
{
    char *ixp = kwt_state_path(ca, "index.txt");
    kwt_index ix = {0};
    int rc = 0;
    char gen[20], utc[20];
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    kwt_row *r = kwt_index_find_serial(&ix, serial);
    if (!r) {
        rc = kwt_err(KWT_FAIL, "no certificate with serial %s in this CA", serial);
        goto out;
    }
    if (!strcmp(reason, "removeFromCRL")) {
        /* lifts a certificateHold; openssl ca has no command for it, so the index row is edited */
        if (r->status != 'R' || !strstr(r->revocation, ",holdInstruction")) {
            rc = kwt_err(KWT_FAIL, "removeFromCRL only lifts a certificateHold; serial %s is %s",
                         serial, r->status == 'R' ? "revoked for another reason" : "not revoked");
            goto out;
        }
        if (kwt_g.dry_run) {
            printf("# keyward sets index row %s back to V (hold lifted)\n", serial);
        } else {
            r->status = 'V';
            free(r->revocation);
            r->revocation = kwt_strdup("");
            if (kwt_index_save(&ix, ixp) != 0) {
                rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
                goto out;
            }
        }
        rc = kwt_ca_make_crl(ca, 0);
        goto out;
    }
    if (r->status == 'R' && strstr(r->revocation, ",holdInstruction")) {
        /* a hold becomes a final revocation without being lifted first (lifting would make the
         * certificate valid in between); openssl ca has no command for it: the row is edited */
        fmt_time(when >= 0 ? when : (long long)time(NULL), gen, sizeof(gen), utc, sizeof(utc));
        char now_utc[20], ng[20];
        fmt_time((long long)time(NULL), ng, sizeof(ng), now_utc, sizeof(now_utc));
        char *nrev = !strcmp(reason, "keyCompromise") || !strcmp(reason, "CACompromise")
                         ? kwt_asprintf("%s,%s,%s", now_utc, reason, gen)
                         : kwt_asprintf("%s,%s", now_utc, reason);
        if (kwt_g.dry_run) {
            printf("# keyward sets index row %s from certificateHold to %s\n", serial, nrev);
            free(nrev);
        } else {
            if ((rc = set_revocation(&ix, ixp, r, nrev)))
                goto out;
        }
        rc = kwt_ca_make_crl(ca, 0);
        goto out;
    }
    if (r->status == 'R') {
        rc = kwt_err(KWT_FAIL, "serial %s is already revoked (%s)", serial, r->revocation);
        goto out;
    }
    char *certp = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
    fmt_time(when >= 0 ? when : (long long)time(NULL), gen, sizeof(gen), utc, sizeof(utc));
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_opt(&c, "-revoke", certp);
    if (!strcmp(reason, "keyCompromise")) {
        kwt_cmd_opt(&c, "-crl_compromise", gen);
    } else if (!strcmp(reason, "CACompromise")) {
        kwt_cmd_opt(&c, "-crl_CA_compromise", gen);
    } else if (!strcmp(reason, "certificateHold")) {
        kwt_cmd_opt(&c, "-crl_hold", "holdInstructionReject");
    } else {
        kwt_cmd_opt(&c, "-crl_reason", reason);
    }
    kwt_cmd_opt(&c, "-keyfile", ca->conf.ca_key);
    rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    free(certp);
    if (rc)
        goto out;
    if (when >= 0) {
        /* openssl ca records "now" as the revocation date; the operator gave another */
        if (kwt_g.dry_run) {
            printf("# keyward sets the revocation date of %s in the index to %s\n", serial, utc);
        } else {
            kwt_index_free(&ix);
            if (kwt_index_load(&ix, ixp) != 0 || !(r = kwt_index_find_serial(&ix, serial))) {
                rc = kwt_err(KWT_FAIL, "cannot re-read %s", ixp);
                goto out;
            }
            char *comma = strchr(r->revocation, ',');
            char *nrev = kwt_asprintf("%s%s", utc, comma ? comma : "");
            if ((rc = set_revocation(&ix, ixp, r, nrev)))
                goto out;
        }
    }
    rc = kwt_ca_make_crl(ca, 0);
out:
    kwt_index_free(&ix);
    free(ixp);
    return rc;
}

static bool is_hex(const char *s)
{
    bool hex = *s != '\0';
    for (const char *p = s; *p; p++)
        hex = hex && isxdigit((unsigned char)*p);
    return hex;
}

static bool on_hold(const kwt_row *r)
{
    return r->status == 'R' && strstr(r->revocation, ",holdInstruction") != NULL;
}

/* notBefore of the certificate with this serial (-1 when unreadable). */
static long long not_before(kwt_ca *ca, const char *serial)
{
    char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, serial);
    X509 *x = kwt_load_cert(p);
    long long t = x ? kwt_asn1_time(X509_get0_notBefore(x)) : -1;
    X509_free(x);
    free(p);
    return t;
}

static void list_rows(kwt_row **rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  serial %s  name %s  not after 20%.2s-%.2s-%.2s  %s\n", rows[i]->serial,
                rows[i]->name, rows[i]->expiry, rows[i]->expiry + 2, rows[i]->expiry + 4,
                rows[i]->status == 'V' ? "valid" : "revoked");
}

/* The index rows that `ca revoke` acts on. A bare argument may be a NAME or a SERIAL; when it
 * is both (a requester can pick a CN that is another certificate's serial) it is refused. A NAME
 * with several valid certificates (renew --keep-old) needs --all or --serial. */
static int select_rows(kwt_index *ix, const char *arg, bool by_serial, bool by_name, bool all,
                       const char *reason, kwt_row ***out, size_t *nout)
{
    bool lift = !strcmp(reason, "removeFromCRL");
    kwt_row **sel = calloc(ix->n + 1, sizeof(*sel)), *newest = NULL;
    size_t n = 0;
    if (!sel)
        abort();
    *out = sel;
    *nout = 0;
    kwt_row *bys = !by_name && is_hex(arg) ? kwt_index_find_serial(ix, arg) : NULL;
    if (by_serial) {
        if (!bys)
            return kwt_err(KWT_FAIL, "no certificate with serial %s in this CA", arg);
        sel[0] = bys;
        *nout = 1;
        return 0;
    }
    for (size_t i = 0; i < ix->n; i++) {
        kwt_row *r = &ix->rows[i];
        if (strcmp(r->name, arg) != 0)
            continue;
        newest = r;
        if (lift ? on_hold(r) : r->status == 'V')
            sel[n++] = r;
    }
    if (!by_name && newest && bys && strcmp(bys->name, arg) != 0) {
        kwt_row *both[2] = {newest, bys};
        kwt_err(KWT_FAIL,
                "'%s' is both a certificate name and another certificate's serial; say which "
                "with --name %s or --serial %s:",
                arg, arg, arg);
        list_rows(both, 2);
        return KWT_FAIL;
    }
    if (!newest) {
        if (bys && !by_name) {
            sel[0] = bys;
            *nout = 1;
            return 0;
        }
        return kwt_err(KWT_FAIL, "no certificate named%s %s in this CA",
                       by_name ? "" : " or numbered", arg);
    }
    if (n == 0) { /* nothing valid (or on hold) under this name: report on the newest */
        sel[0] = newest;
        *nout = 1;
        return 0;
    }
    if (n > 1 && !all) {
        kwt_err(KWT_FAIL,
                "%s has %zu %s certificates; revoke one with --serial SERIAL, or all of them "
                "with --all:",
                arg, n, lift ? "held" : "valid");
        list_rows(sel, n);
        return KWT_FAIL;
    }
    *nout = n;
    return 0;
}

int kwt_cmd_ca_revoke(int argc, char **argv)
{
    const char *reason_s = "unspecified", *date = NULL, *serial_opt = NULL, *name_opt = NULL;
    bool all = false;
    kwt_optspec spec[] = {{"--reason", &reason_s, NULL},   {"--date", &date, NULL},
                          {"--serial", &serial_opt, NULL}, {"--name", &name_opt, NULL},
                          {"--all", NULL, &all},           {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca revoke", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if ((npos == 1) + (serial_opt != NULL) + (name_opt != NULL) != 1)
        return kwt_err(KWT_USAGE, "ca revoke: give one NAME or SERIAL (or --name N, --serial S)");
    const char *arg = npos == 1 ? pos[0] : serial_opt ? serial_opt : name_opt;
    if (serial_opt && !is_hex(serial_opt))
        return kwt_err(KWT_USAGE, "--serial %s: a serial is hexadecimal", serial_opt);
    if (all && serial_opt)
        return kwt_err(KWT_USAGE, "--all goes with a NAME, not with --serial");
    const char *reason = kwt_reason_canon(reason_s);
    if (!reason)
        return kwt_err(KWT_USAGE,
                       "unknown reason '%s' (unspecified, keyCompromise, cACompromise, "
                       "affiliationChanged, superseded, cessationOfOperation, certificateHold, "
                       "removeFromCRL)",
                       reason_s);
    long long when = -1;
    if (date) {
        when = kwt_parse_date(date);
        if (when < 0)
            return kwt_err(KWT_USAGE,
                           "--date %s: use YYYY-MM-DD[THH:MM[:SS]]Z or "
                           "YYYYMMDDHHMMSSZ",
                           date);
        if (when > (long long)time(NULL) + 60)
            return kwt_err(KWT_USAGE, "--date %s is in the future", date);
    }
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    kwt_row **sel = NULL;
    size_t nsel = 0;
    char **serials = NULL, *name = NULL, *subject = NULL;
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    if ((rc =
             select_rows(&ix, arg, serial_opt != NULL, name_opt != NULL, all, reason, &sel, &nsel)))
        goto out;
    serials = calloc(nsel + 1, sizeof(*serials));
    if (!serials)
        abort();
    for (size_t i = 0; i < nsel; i++) {
        serials[i] = kwt_strdup(sel[i]->serial);
        long long nb = when >= 0 ? not_before(&ca, sel[i]->serial) : -1;
        if (nb >= 0 && when < nb) {
            rc = kwt_err(KWT_USAGE,
                         "--date %s is before serial %s was issued: a certificate cannot be "
                         "compromised before it exists",
                         date, sel[i]->serial);
            goto out;
        }
    }
    name = kwt_strdup(sel[0]->name);
    subject = kwt_serial_subject(ca.dir, sel[0]->serial, sel[0]->subject);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    for (size_t i = 0; i < nsel && rc == 0; i++)
        rc = kwt_revoke_serial(&ca, serials[i], reason, when);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_clear_error();
        kwt_buf js = {0};
        for (size_t i = 0; i < nsel; i++) {
            if (kwt_g.json) {
                kwt_buf_add(&js, i ? "," : "{\"revoked\":[");
                kwt_buf_add(&js, "{\"name\":");
                kwt_buf_json_str(&js, name);
                kwt_buf_printf(&js, ",\"serial\":\"%s\",\"reason\":\"%s\"}", serials[i], reason);
                if (i + 1 == nsel) {
                    char *crl = kwt_asprintf("%s/crl/crl.pem", ca.dir);
                    kwt_buf_add(&js, "],\"crl\":");
                    kwt_buf_json_str(&js, crl);
                    kwt_buf_add(&js, "}\n");
                    fputs(js.s, stdout);
                    free(crl);
                }
            } else
                printf("%s %s (serial %s); CRLs regenerated: %s/crl/crl.pem\n",
                       !strcmp(reason, "removeFromCRL") ? "hold lifted for" : "revoked", name,
                       serials[i], ca.dir);
        }
        /* lifting a hold is no revocation: no event */
        for (size_t i = 0; i < nsel && strcmp(reason, "removeFromCRL") != 0; i++) {
            char *extra = kwt_asprintf("\"reason\":\"%s\"", reason);
            kwt_notify(&ca, "revoked", name, serials[i], extra);
            free(extra);
        }
        kwt_buf_free(&js);
    }
out:
    if (!kwt_g.dry_run) {
        char *op = kwt_asprintf("ca revoke %s", reason);
        for (size_t i = 0; i < (nsel && serials ? nsel : 1); i++)
            kwt_audit(&ca, op, name ? name : arg, serials ? serials[i] : NULL, subject, rc);
        free(op);
    }
    for (size_t i = 0; serials && i < nsel; i++)
        free(serials[i]);
    free(serials);
    free(sel);
    kwt_index_free(&ix);
    free(ixp);
    free(name);
    free(subject);
    kwt_ca_close(&ca);
    return rc;
}

int kwt_cmd_ca_crl(int argc, char **argv)
{
    const char *days_s = NULL;
    kwt_optspec spec[] = {{"--days", &days_s, NULL}, {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, days = 0, rc = kwt_parse_args("ca crl", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    if ((rc = kwt_txn_begin(&ca)) == 0)
        rc = kwt_ca_make_crl(&ca, days);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run && kwt_g.json) {
        kwt_buf js = {0};
        kwt_buf_add(&js, "{\"generations\":[");
        for (int g = ca.conf.generation, k = 0; g >= 1; g--) {
            char *pem = kwt_asprintf("%s/crl/gen-%d.pem", ca.dir, g);
            char *der = kwt_asprintf("%s/crl/gen-%d.crl", ca.dir, g);
            if (kwt_exists(pem)) {
                kwt_buf_printf(&js, "%s{\"generation\":%d,\"pem\":", k++ ? "," : "", g);
                kwt_buf_json_str(&js, pem);
                kwt_buf_add(&js, ",\"der\":");
                kwt_buf_json_str(&js, der);
                kwt_buf_add(&js, "}");
            }
            free(pem);
            free(der);
        }
        char *bundle = kwt_asprintf("%s/crl/crl.pem", ca.dir);
        kwt_buf_add(&js, "],\"bundle\":");
        kwt_buf_json_str(&js, bundle);
        kwt_buf_printf(&js, ",\"next_update_days\":%d}\n", days ? days : ca.conf.crl_days);
        fputs(js.s, stdout);
        free(bundle);
        kwt_buf_free(&js);
    }
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_clear_error();
        kwt_info("CRLs written: %s/crl/gen-G.pem and .crl for each CA generation, the bundle "
                 "crl/crl.pem and crl/crl.der (generation %d); next update in %d days",
                 ca.dir, ca.conf.generation, days ? days : ca.conf.crl_days);
    }
    kwt_audit(&ca, "ca crl", NULL, NULL, NULL, rc);
    kwt_ca_close(&ca);
    return rc;
}
