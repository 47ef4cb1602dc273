/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca revoke` and `keyward ca crl`: the index and the CRL change in one transaction. */
#include "kwt.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    if (r->status == 'R') {
        rc = kwt_err(KWT_FAIL, "serial %s is already revoked (%s)", serial, r->revocation);
        goto out;
    }
    char *certp = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
    fmt_time(when >= 0 ? when : (long long)time(NULL), gen, sizeof(gen), utc, sizeof(utc));
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-revoke");
    kwt_cmd_add(&c, certp);
    if (!strcmp(reason, "keyCompromise")) {
        kwt_cmd_add(&c, "-crl_compromise");
        kwt_cmd_add(&c, gen);
    } else if (!strcmp(reason, "CACompromise")) {
        kwt_cmd_add(&c, "-crl_CA_compromise");
        kwt_cmd_add(&c, gen);
    } else if (!strcmp(reason, "certificateHold")) {
        kwt_cmd_add(&c, "-crl_hold");
        kwt_cmd_add(&c, "holdInstructionReject");
    } else {
        kwt_cmd_add(&c, "-crl_reason");
        kwt_cmd_add(&c, reason);
    }
    kwt_cmd_add(&c, "-keyfile");
    kwt_cmd_add(&c, ca->conf.ca_key);
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
            free(r->revocation);
            r->revocation = nrev;
            if (kwt_index_save(&ix, ixp) != 0) {
                rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
                goto out;
            }
        }
    }
    rc = kwt_ca_make_crl(ca, 0);
out:
    kwt_index_free(&ix);
    free(ixp);
    return rc;
}

int kwt_cmd_ca_revoke(int argc, char **argv)
{
    const char *reason_s = "unspecified", *date = NULL;
    kwt_optspec spec[] = {
        {"--reason", &reason_s, NULL}, {"--date", &date, NULL}, {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca revoke", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1)
        return kwt_err(KWT_USAGE, "ca revoke: give a NAME or SERIAL");
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
    char *serial = NULL, *name = NULL, *subject = NULL;
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    /* NAME first (its newest certificate), then SERIAL */
    kwt_row *r = kwt_index_find_name(&ix, pos[0]);
    if (r && r->status == 'R' && strcmp(reason, "removeFromCRL") != 0) {
        kwt_row *bys = kwt_index_find_serial(&ix, pos[0]);
        if (bys)
            r = bys;
    }
    if (!r) {
        bool hex = pos[0][0] != '\0';
        for (const char *p = pos[0]; *p; p++)
            hex = hex && isxdigit((unsigned char)*p);
        r = hex ? kwt_index_find_serial(&ix, pos[0]) : NULL;
    }
    if (!r) {
        rc = kwt_err(KWT_FAIL, "no certificate named or numbered %s in this CA", pos[0]);
        goto out;
    }
    serial = kwt_strdup(r->serial);
    name = kwt_strdup(r->name);
    subject = kwt_strdup(r->subject);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = kwt_revoke_serial(&ca, serial, reason, when);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_clear_error();
        if (kwt_g.json)
            printf("{\"name\":\"%s\",\"serial\":\"%s\",\"reason\":\"%s\",\"crl\":\"%s/crl/"
                   "crl.pem\"}\n",
                   name, serial, reason, ca.dir);
        else
            printf("%s %s (serial %s); CRL regenerated: %s/crl/crl.pem\n",
                   !strcmp(reason, "removeFromCRL") ? "hold lifted for" : "revoked", name, serial,
                   ca.dir);
    }
out:
    if (!kwt_g.dry_run) {
        char *op = kwt_asprintf("ca revoke %s", reason);
        kwt_audit(&ca, op, name, serial, subject, rc);
        free(op);
    }
    kwt_index_free(&ix);
    free(ixp);
    free(serial);
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
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_clear_error();
        kwt_info("CRL written: %s/crl/crl.pem and %s/crl/crl.der (next update in %d days)", ca.dir,
                 ca.dir, days ? days : ca.conf.crl_days);
    }
    kwt_audit(&ca, "ca crl", NULL, NULL, NULL, rc);
    kwt_ca_close(&ca);
    return rc;
}
