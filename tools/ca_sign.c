/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca sign`: one CSR (or --batch, ca_sign_batch.c) checked before openssl sees it,
 * so bad input changes nothing. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sign_main(const char *profile, const char *name, const char *days_s, const char *san,
                     const char *devid, const char *batch, bool same_key, bool same_subject,
                     const char **pos, int npos, const kwt_meta *md);

int kwt_cmd_ca_sign(int argc, char **argv)
{
    const char *profile = NULL, *name = NULL, *days_s = NULL, *san = NULL, *devid = NULL,
               *batch = NULL;
    const char *note = NULL;
    bool same_key = false, same_subject = false, no_auto = false;
    kwt_meta md;
    kwt_meta_init(&md);
    int rc = kwt_take_tags("ca sign", &argc, argv, &md);
    if (rc) {
        kwt_meta_free(&md);
        return rc;
    }
    kwt_optspec spec[] = {{"--profile", &profile, NULL},
                          {"--note", &note, NULL},
                          {"--no-auto-renew", NULL, &no_auto},
                          {"--allow-same-key", NULL, &same_key},
                          {"--allow-same-subject", NULL, &same_subject},
                          {"--name", &name, NULL},
                          {"--days", &days_s, NULL},
                          {"--san", &san, NULL},
                          {"--device-id", &devid, NULL},
                          {"--batch", &batch, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos;
    rc = kwt_parse_args("ca sign", argc, argv, spec, pos, 1, &npos);
    if (rc == 0 && note && kwt_valid_meta_text(note, KWT_NOTE_MAX, &why) != 0)
        rc = kwt_err(KWT_USAGE,
                     "ca sign: --note %s (printable text up to %d bytes, no newline or other "
                     "control character)",
                     why, KWT_NOTE_MAX);
    md.note = note ? kwt_strdup(note) : NULL;
    md.auto_renew = !no_auto;
    kwt_buf mj = {0};
    kwt_buf_add(&mj, "{");
    kwt_meta_json(&mj, &md);
    kwt_buf_add(&mj, "}");
    if (rc == 0) {
        kwt_audit_meta = mj.s;
        rc = sign_main(profile, name, days_s, san, devid, batch, same_key, same_subject, pos, npos,
                       &md);
        kwt_audit_meta = NULL;
    }
    kwt_buf_free(&mj);
    kwt_meta_free(&md);
    return rc < 0 ? 0 : rc;
}

static int sign_main(const char *profile, const char *name, const char *days_s, const char *san,
                     const char *devid, const char *batch, bool same_key, bool same_subject,
                     const char **pos, int npos, const kwt_meta *md)
{
    int rc;
    const char *why;
    int days = 0;
    if (!profile)
        return kwt_err(KWT_USAGE, "ca sign: --profile client|server|device|ocsp|subca is required");
    if (!kwt_valid_profile(profile))
        return kwt_err(KWT_USAGE, "unknown profile '%s' (client, server, device, ocsp, subca)",
                       profile);
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (batch && (npos || name || san || devid))
        return kwt_err(KWT_USAGE, "--batch takes no CSR, --name, --san or --device-id");
    if (!batch && npos != 1)
        return kwt_err(KWT_USAGE, "ca sign: give one CSR file (or --batch)");
    if (name && kwt_valid_name(name, &why) != 0)
        return kwt_err(KWT_USAGE, "--name %s: %s", name, why);
    if (devid && kwt_valid_device_id(devid, &why) != 0)
        return kwt_err(KWT_USAGE, "--device-id: %s", why);
    if (san) {
        char *s = kwt_san_to_conf(san, &why);
        if (!s)
            return kwt_err(KWT_USAGE, "--san: %s", why);
        free(s);
    }
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    if (!days)
        days = ca.conf.default_days;
    if ((rc = kwt_check_ca_valid(&ca))) {
        kwt_audit(&ca, "ca sign", name, NULL, batch ? batch : pos[0], rc);
        kwt_ca_close(&ca);
        return rc;
    }
    if (batch) {
        rc = kwt_sign_batch(&ca, batch, profile, days, same_key, same_subject, md);
        kwt_ca_close(&ca);
        return rc;
    }
    char *cn = NULL, *sans = NULL, *serial = NULL;
    X509_REQ *req = NULL;
    if ((rc = kwt_csr_read_once(pos[0], &req)) ||
        (rc = kwt_check_csr(pos[0], req, profile, &ca.conf, devid, &cn, &sans))) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    if (!name) {
        if (!cn || kwt_valid_name(cn, &why) != 0) {
            rc = kwt_err(KWT_USAGE, "the CSR's CN '%s' cannot be used as NAME (%s); pass --name",
                         cn ? cn : "", why);
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
        name = cn;
    }
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) == 0) {
        kwt_row *r = kwt_index_find_name(&ix, name);
        if (r && r->status == 'V')
            rc = kwt_err(KWT_FAIL,
                         "%s already has a valid certificate (serial %s); use `keyward ca renew "
                         "%s` or revoke it first",
                         name, r->serial, name);
        if (rc == 0) {
            size_t nk = 0;
            kwt_held_key *k = kwt_held_keys(&ca, &ix, &nk),
                         *ks = k ? kwt_held_by_subject(k, nk) : NULL;
            rc = kwt_check_key_not_compromised(pos[0], req, k, nk);
            if (rc == 0 && !same_key)
                rc = kwt_check_key_unique(pos[0], req, name, k, nk);
            if (rc == 0 && !same_subject)
                rc = kwt_check_subject_unique(pos[0], req, name, ks, ks ? nk : 0);
            free(ks);
            kwt_held_keys_free(k, nk);
        }
    }
    kwt_index_free(&ix);
    free(ixp);
    if (rc) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    /* before issuing: the key the requester should have read out (keyward req prints it) */
    char *spki = kwt_spki_fingerprint(X509_REQ_get0_pubkey(req));
    if (kwt_g.dry_run) /* a comment of the script */
        printf("# %s: public key SHA-256 (SPKI) %s\n", pos[0], spki);
    else
        kwt_info("%s: public key SHA-256 (SPKI) %s", pos[0], spki);
    free(spki);
    if (kwt_g.dry_run)
        kwt_dry_mark(&ca);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = kwt_sign_req(&ca, 0, pos[0], req, profile, name, days, san, devid, md, &serial);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        kwt_sign_report(&ca, name, serial, true, true, NULL);
        kwt_notify(&ca, "issued", name, serial, NULL);
    }
    if (rc == 0 && kwt_g.dry_run) {
        char *nm = (char *)name, *cs = (char *)pos[0];
        kwt_dry_record(&ca, 1, &nm, &cs, profile, days, san, devid, md);
    }
out:
    if (!kwt_g.dry_run) {
        /* the subject asked for (the file name when the CSR could not be read) */
        char *subj = req ? kwt_name_text(X509_REQ_get_subject_name(req)) : kwt_strdup(pos[0]);
        kwt_audit(&ca, "ca sign", name, serial, subj, rc);
        free(subj);
    }
    X509_REQ_free(req);
    free(cn);
    free(sans);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}
