/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca renew NAME`: a new certificate for the same identity, from the stored request or
 * a new one (--csr, a rekey: its identity compared with the current certificate's). */
#include "ca_sign_int.h"
#include "kwt.h"

#include <ctype.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The subjectAltName keyward writes for a request, as kwt_sign_req puts it together (the CSR's
 * checked names, the signing record's --san, the device names), parsed as openssl ca parses it;
 * *out NULL when there is none. */
static int would_be_sans(const kwt_conf *conf, const char *profile, const char *csr_sans,
                         const char *san, const char *devid, GENERAL_NAMES **out)
{
    const char *why;
    kwt_buf all = {0};
    *out = NULL;
    kwt_buf_addn(&all, "", 0);
    if (csr_sans)
        kwt_buf_add(&all, csr_sans);
    char *extra = san ? kwt_san_to_conf(san, &why) : NULL;
    if (extra)
        kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", extra);
    if (!strcmp(profile, "device") && devid) {
        char *want = kwt_asprintf("DNS:device-%s", devid);
        if (!strstr(all.s, want))
            kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", want);
        free(want);
        kwt_buf_printf(&all, ", otherName:%s;UTF8:%s", conf->device_oid, devid);
    }
    int rc = 0;
    if (all.len) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, NULL, NULL, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, all.s);
        *out = e ? X509V3_EXT_d2i(e) : NULL;
        X509_EXTENSION_free(e);
        if (!*out)
            rc = kwt_err(KWT_FAIL, "cannot build the subjectAltName %s", all.s);
    }
    free(extra);
    kwt_buf_free(&all);
    ERR_clear_error();
    return rc;
}

/* Every name of a in b (NULL: none). */
static bool sans_within(const GENERAL_NAMES *a, const GENERAL_NAMES *b)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(a); i++) {
        bool found = false;
        for (int j = 0; j < sk_GENERAL_NAME_num(b) && !found; j++)
            found = GENERAL_NAME_cmp(sk_GENERAL_NAME_value(a, i), sk_GENERAL_NAME_value(b, j)) == 0;
        if (!found)
            return false;
    }
    return true;
}

static char *sans_text(const GENERAL_NAMES *g)
{
    BIO *b = BIO_new(BIO_s_mem());
    for (int i = 0; b && i < sk_GENERAL_NAME_num(g); i++) {
        if (i)
            BIO_puts(b, ", ");
        GENERAL_NAME_print(b, sk_GENERAL_NAME_value(g, i));
    }
    char *p = NULL;
    long l = b ? BIO_get_mem_data(b, &p) : 0;
    char *s = l > 0 ? kwt_asprintf("%.*s", (int)l, p) : kwt_strdup("(none)");
    BIO_free(b);
    return s;
}

/* The identity a rekey request would get (its subject; its SANs with the signing record's --san
 * and the device names) against the current certificate's: *diff describes what differs (NULL
 * when the same). Subjects compare RDN by RDN, values byte for byte, in any order (the CA's
 * policy orders a certificate's RDNs); SANs as sets. */
static int identity_diff(kwt_ca *ca, const char *profile, const char *devid, const char *san,
                         X509 *cur, X509_REQ *newr, const char *newlabel, char **diff)
{
    char *ncn = NULL, *nsan = NULL;
    GENERAL_NAMES *want = NULL, *have = X509_get_ext_d2i(cur, NID_subject_alt_name, NULL, NULL);
    *diff = NULL;
    int rc = kwt_check_csr(newlabel, newr, profile, &ca->conf, devid, &ncn, &nsan);
    if (rc == 0)
        rc = would_be_sans(&ca->conf, profile, nsan, san, devid, &want);
    if (rc == 0) {
        kwt_buf d = {0};
        X509_NAME *on = X509_get_subject_name(cur), *nn = X509_REQ_get_subject_name(newr);
        /* exact, as a relying party shows it: X509_NAME_cmp ignores case and spaces */
        char *ok = kwt_name_key_fold(on, false), *nk = kwt_name_key_fold(nn, false);
        if (strcmp(ok, nk) != 0) {
            char *ot = kwt_name_text(on), *nt = kwt_name_text(nn);
            kwt_buf_printf(&d, "subject %s -> %s", ot, nt);
            free(ot);
            free(nt);
        }
        free(ok);
        free(nk);
        if (!sans_within(have, want) || !sans_within(want, have)) {
            char *ht = sans_text(have), *wt = sans_text(want);
            kwt_buf_printf(&d, "%ssubjectAltName %s -> %s", d.len ? "; " : "", ht, wt);
            free(ht);
            free(wt);
        }
        *diff = d.s;
    }
    GENERAL_NAMES_free(have);
    GENERAL_NAMES_free(want);
    free(ncn);
    free(nsan);
    return rc;
}

static char *meta_get(const char *meta, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = meta; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && !strncmp(l, key, kl) && l[kl] == '=')
            return kwt_asprintf("%.*s", (int)(len - kl - 1), l + kl + 1);
        l = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* "--due [DAYS]": the value is optional (the CA's renew_due_days), which the one-value option
 * parser cannot say, so it is taken out of argv here. *window: 0 when absent, -1 for the
 * default. cmd names the command in errors. */
int kwt_take_due(int *argc, char **argv, int *window, const char *cmd)
{
    int out = 1;
    *window = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--")) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--due")) {
            *window = -1;
            if (i + 1 < *argc && isdigit((unsigned char)argv[i + 1][0]))
                v = argv[++i];
        } else if (!strncmp(a, "--due=", 6)) {
            v = a + 6;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        const char *why;
        if (v && kwt_valid_days(v, window, &why) != 0)
            return kwt_err(KWT_USAGE, "%s --due: %s", cmd, why);
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int kwt_cmd_ca_renew(int argc, char **argv)
{
    const char *days_s = NULL, *csr = NULL;
    bool keep_old = false, subject_change = false, same_key = false;
    int window = 0;
    int trc = kwt_take_due(&argc, argv, &window, "ca renew");
    if (trc)
        return trc;
    kwt_optspec spec[] = {{"--days", &days_s, NULL},
                          {"--csr", &csr, NULL},
                          {"--keep-old", NULL, &keep_old},
                          {"--allow-subject-change", NULL, &subject_change},
                          {"--allow-same-key", NULL, &same_key},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca renew", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *why;
    int days = 0;
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (window) {
        if (npos || csr || keep_old || subject_change || same_key)
            return kwt_err(KWT_USAGE, "ca renew --due takes no NAME, --csr, --keep-old or "
                                      "--allow-* option (it renews each due certificate for "
                                      "its own key and identity)");
        return kwt_renew_due(window, days);
    }
    if (npos != 1)
        return kwt_err(KWT_USAGE, "ca renew: give the NAME of the certificate");
    if (kwt_valid_name(pos[0], &why) != 0)
        return kwt_err(KWT_USAGE, "NAME %s: %s", pos[0], why);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    const char *name = pos[0];
    char *old_serial = NULL, *meta = NULL, *profile = NULL, *san = NULL, *devid = NULL,
         *mdays = NULL, *oldcsr = NULL, *serial = NULL, *diff = NULL, *audit_op = NULL,
         *renew_subj = NULL;
    X509_REQ *newreq = NULL;
    kwt_meta md;
    kwt_buf mj = {0};
    kwt_meta_init(&md);
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    kwt_row *r = kwt_index_find_name(&ix, name);
    if (!r) {
        rc = kwt_err(KWT_FAIL, "no certificate named %s in this CA", name);
        goto out;
    }
    if (r->status == 'R') {
        rc = kwt_err(KWT_FAIL,
                     "the newest certificate of %s (serial %s) is revoked; sign a new "
                     "CSR with ca sign instead",
                     name, r->serial);
        goto out;
    }
    old_serial = kwt_strdup(r->serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca.dir, old_serial);
    meta = kwt_read_file(mp, NULL);
    free(mp);
    if (!meta) {
        rc = kwt_err(KWT_FAIL, "no signing record for serial %s (certs/%s.meta)", old_serial,
                     old_serial);
        goto out;
    }
    /* tags, note and auto-renew go over to the new serial */
    kwt_meta_parse(meta, &md);
    kwt_buf_add(&mj, "{");
    kwt_meta_json(&mj, &md);
    kwt_buf_add(&mj, "}");
    kwt_audit_meta = mj.s;
    profile = meta_get(meta, "profile");
    san = meta_get(meta, "san");
    devid = meta_get(meta, "device_id");
    mdays = meta_get(meta, "days");
    if (!profile || !kwt_valid_profile(profile)) {
        rc = kwt_err(KWT_FAIL, "the signing record of %s is damaged", old_serial);
        goto out;
    }
    if (!days)
        days = mdays ? atoi(mdays) : ca.conf.default_days;
    if (days < 1)
        days = ca.conf.default_days;
    oldcsr = kwt_asprintf("%s/certs/%s.csr", ca.dir, old_serial);
    /* the new request is read once; a rekey keeps the identity unless the operator says
     * otherwise, and never takes a key another NAME holds */
    if ((rc = kwt_csr_read_once(csr ? csr : oldcsr, &newreq))) {
        kwt_sign_refused = csr ? KWT_REFUSED_CSR : 0;
        goto out;
    }
    if (csr) {
        /* compared with the current certificate (SANs added with --san at signing included) */
        char *cp = kwt_asprintf("%s/certs/%s.pem", ca.dir, old_serial);
        X509 *cur = kwt_load_cert(cp);
        rc = cur ? identity_diff(&ca, profile, devid && *devid ? devid : NULL,
                                 san && *san ? san : NULL, cur, newreq, csr, &diff)
                 : kwt_err(KWT_FAIL, "cannot read %s, the current certificate of %s", cp, name);
        X509_free(cur);
        free(cp);
        if (rc) {
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
        if (diff && !subject_change) {
            kwt_sign_refused = KWT_REFUSED_IDENTITY;
            rc = kwt_err(KWT_FAIL,
                         "%s asks for another identity than %s's certificate (%s); a renewal "
                         "keeps subject and subjectAltName: sign it as a new certificate, or "
                         "pass --allow-subject-change",
                         csr, name, diff);
            goto out;
        }
        if (diff) {
            fprintf(stderr, "keyward: %s: identity changed: %s\n", name, diff);
            audit_op = kwt_asprintf("ca renew (rekey, identity changed: %s)", diff);
        }
        size_t nk = 0;
        kwt_held_key *k = kwt_held_keys(&ca, &ix, &nk);
        rc = kwt_check_key_not_compromised(csr, newreq, k, nk);
        if (rc == 0 && !same_key)
            rc = kwt_check_key_unique(csr, newreq, name, k, nk);
        kwt_held_keys_free(k, nk);
        if (rc) {
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
    }
    if ((rc = kwt_check_ca_valid(&ca)))
        goto out;
    if (kwt_g.dry_run)
        kwt_dry_mark(&ca);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = kwt_sign_req(&ca, 0, csr ? csr : oldcsr, newreq, profile, name, days,
                      san && *san ? san : NULL, devid && *devid ? devid : NULL, &md, &serial);
    if (rc == 0 && kwt_g.dry_run) { /* the script names the new row as the real run does */
        char *nm = (char *)name, *cs = csr ? (char *)csr : oldcsr;
        kwt_dry_record(&ca, 1, &nm, &cs, profile, days, san && *san ? san : NULL,
                       devid && *devid ? devid : NULL, &md);
    }
    if (rc == 0 && !keep_old)
        rc = kwt_revoke_serial(&ca, old_serial, "superseded", -1);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        char *tail = kwt_asprintf("\"replaces\":\"%s\",\"replaced_revoked\":%s", old_serial,
                                  keep_old ? "false" : "true");
        kwt_sign_report(&ca, name, serial, true, true, tail);
        free(tail);
        char *rep = kwt_asprintf("\"replaces\":\"%s\"", old_serial);
        kwt_notify(&ca, "renewed", name, serial, rep);
        free(rep);
        if (!kwt_g.json)
            printf("  replaces serial %s%s\n", old_serial,
                   keep_old ? " (kept valid)" : " (revoked: superseded)");
    }
out:
    renew_subj = newreq ? kwt_name_text(X509_REQ_get_subject_name(newreq))
                        : kwt_strdup(old_serial ? old_serial : "");
    if (!kwt_g.dry_run)
        kwt_audit(&ca,
                  audit_op ? audit_op
                  : csr    ? "ca renew (rekey)"
                           : "ca renew",
                  name, serial, renew_subj, rc);
    kwt_audit_meta = NULL;
    kwt_buf_free(&mj);
    kwt_meta_free(&md);
    X509_REQ_free(newreq);
    free(renew_subj);
    free(diff);
    free(audit_op);
    kwt_index_free(&ix);
    free(ixp);
    free(old_serial);
    free(meta);
    free(profile);
    free(san);
    free(devid);
    free(mdays);
    free(oldcsr);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}
