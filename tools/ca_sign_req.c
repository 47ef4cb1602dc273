/* SPDX-License-Identifier: Apache-2.0 */
/* Signing one checked request in an open transaction: openssl ca on a private copy of it, the
 * NAME in its index row, and the stored request and record (certs/SERIAL.csr, .meta). */
#include "ca_sign_int.h"
#include "kwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kwt_sign_refused;

/* openssl ca's own words for a request that breaks the policy section (apps/ca.c) */
static int is_policy_refusal(const char *err)
{
    return strstr(err, "field needed to be") != NULL || strstr(err, "field is different") != NULL ||
           strstr(err, "the 'policy' is misconfigured") != NULL ||
           strstr(err, "in 'policy' configuration") != NULL;
}

/* A certificate never outlives the CA certificate that issued it (relying parties would stop
 * accepting it at the CA's end anyway, with a less clear error): days is cut to what is left. */
int kwt_clamp_days(kwt_ca *ca, int gen, int days)
{
    char *p = gen ? kwt_gen_cert_path(ca, gen) : kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(p);
    free(p);
    int left = days, secs = 0;
    if (x && ASN1_TIME_diff(&left, &secs, NULL, X509_get0_notAfter(x)) == 1 && left < days) {
        if (left < 1)
            left = 1;
        fprintf(stderr,
                "keyward: note: the CA certificate expires in %d days: issuing for %d days, not "
                "%d\n",
                left, left, days);
        days = left;
    }
    X509_free(x);
    return days;
}

int kwt_check_ca_valid(kwt_ca *ca)
{
    char *p = kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(p);
    free(p);
    if (!x)
        return kwt_err(KWT_FAIL, "the CA certificate %s/ca.crt is missing or unreadable", ca->dir);
    int rc = 0;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        rc = kwt_err(KWT_FAIL, "the CA certificate has expired; rotate the CA (keyward ca "
                               "rotate) before issuing");
    X509_free(x);
    return rc;
}

/* md: the operator's tags, note and auto-renew (NULL: none, auto-renew on); the record is
 * written under the CA lock, atomically, with the certificate it describes. */
int kwt_store_meta(kwt_ca *ca, const char *serial, const char *csr, const char *profile, int days,
                   const char *san, const char *devid, const char *name, const kwt_meta *md)
{
    if (kwt_g.dry_run)
        return 0;
    char *cp = kwt_asprintf("%s/certs/%s.csr", ca->dir, serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca->dir, serial);
    kwt_meta m;
    kwt_meta_init(&m);
    if (md) {
        memcpy(m.tags, md->tags, sizeof(m.tags));
        m.ntags = md->ntags;
        m.note = md->note;
        m.auto_renew = md->auto_renew;
    }
    m.name = (char *)name;
    m.profile = (char *)profile;
    m.days = days;
    m.san = (char *)san;
    m.device_id = (char *)devid;
    char *meta = kwt_meta_text(&m); /* m borrows every string: not freed */
    int rc = kwt_copy_file(csr, cp, 0644) || kwt_write_atomic(mp, meta, strlen(meta), 0644);
    if (rc)
        kwt_err(KWT_FAIL, "cannot store the request %s: %s", cp, strerror(errno));
    free(cp);
    free(mp);
    free(meta);
    return rc ? KWT_FAIL : 0;
}

int kwt_sign_one(kwt_ca *ca, const char *csr, const char *profile, const char *name, int days,
                 const char *san, const char *device_id, char **serial_out)
{
    return kwt_sign_one_gen(ca, 0, csr, profile, name, days, san, device_id, serial_out);
}

int kwt_sign_one_gen(kwt_ca *ca, int gen, const char *csr, const char *profile, const char *name,
                     int days, const char *san, const char *device_id, char **serial_out)
{
    X509_REQ *req = NULL;
    *serial_out = NULL;
    int rc = kwt_csr_read_once(csr, &req);
    if (rc == 0)
        rc = kwt_sign_req(ca, gen, csr, req, profile, name, days, san, device_id, NULL, serial_out);
    X509_REQ_free(req);
    return rc;
}

/* Sign one parsed request (label names it in messages): the checks, then openssl ca on a
 * private copy of exactly this request, with the subjectAltName keyward checked written by
 * keyward (openssl.cnf copies no extension from requests). */
int kwt_sign_req(kwt_ca *ca, int gen, const char *label, X509_REQ *req, const char *profile,
                 const char *name, int days, const char *san, const char *device_id,
                 const kwt_meta *md, char **serial_out)
{
    *serial_out = NULL;
    char *cn = NULL, *csr_sans = NULL, *all = NULL, *csr = NULL;
    /* an earlier generation signs with its own key and certificate (ca/ca-G.crt) */
    char *gen_key = NULL, *gen_cert = NULL;
    if (gen == ca->conf.generation)
        gen = 0;
    if (gen) {
        gen_key = kwt_gen_key(&ca->conf, gen);
        gen_cert = kwt_gen_cert_path(ca, gen);
        if (!gen_key) {
            free(gen_cert);
            return kwt_err(KWT_FAIL, "no key of CA generation %d in keyward.conf (old_keys)", gen);
        }
    }
    int rc = kwt_check_csr(label, req, profile, &ca->conf, device_id, &cn, &csr_sans);
    if (rc == 0 && kwt_looks_like_serial(name))
        rc = kwt_err(KWT_FAIL,
                     "NAME %s looks like a serial number (16 or more hex digits); `ca revoke` "
                     "could take it for another certificate's serial: pass another --name",
                     name);
    if (rc)
        kwt_sign_refused = KWT_REFUSED_CSR;
    if (rc == 0 && !kwt_g.dry_run)
        rc = kwt_csr_private_copy(ca, req, &csr);
    if (rc) {
        free(gen_key);
        free(gen_cert);
        free(cn);
        free(csr_sans);
        return rc;
    }
    if (!csr)
        csr = kwt_strdup(label); /* --dry-run: the printed script reads the operator's file */
    if ((rc = kwt_san_for(&ca->conf, profile, csr_sans, san, device_id, &all))) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    char *ext =
        kwt_ext_section(ca, gen, profile,
                        EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(req)) == EVP_PKEY_RSA, name, all);
    char *extp = ca->stage ? kwt_path(ca->stage, "ext.cnf") : kwt_path(ca->dir, "ext-run.cnf");
    char *outp = ca->stage ? kwt_path(ca->stage, "new.crt") : kwt_path(ca->dir, "new.crt");
    char *ixp = kwt_state_path(ca, "index.txt");
    kwt_index ix0 = {0}, ix1 = {0};
    if (kwt_g.dry_run) {
        kwt_dry_show_file(extp, ext);
    } else if (kwt_write_atomic(extp, ext, strlen(ext), 0600) != 0 ||
               kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot prepare signing: %s", strerror(errno));
        goto out2;
    }
    char ds[16];
    snprintf(ds, sizeof(ds), "%d", kwt_clamp_days(ca, gen, days));
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-notext");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_opt(&c, "-in", csr);
    kwt_cmd_opt(&c, "-days", ds);
    kwt_cmd_opt(&c, "-extfile", extp);
    kwt_cmd_opt(&c, "-extensions", "ext_run");
    if (gen_cert) {
        kwt_cmd_opt(&c, "-cert", gen_cert);
    }
    kwt_cmd_opt(&c, "-keyfile", gen_key ? gen_key : ca->conf.ca_key);
    kwt_cmd_opt(&c, "-out", outp);
    /* openssl's messages are kept to tell a policy refusal from a token or key problem (the
     * CA key not reachable is not the CSR's fault) */
    char *err = NULL;
    rc = kwt_g.dry_run ? kwt_run(&c, kwt_ca_cnf(ca), NULL)
                       : kwt_run_quiet(&c, kwt_ca_cnf(ca), NULL, &err);
    if (rc) {
        kwt_run_failed(&c, kwt_ca_cnf(ca), err);
        if (err && is_policy_refusal(err))
            kwt_err(KWT_FAIL,
                    "openssl ca refused to sign %s (policy: the CSR's %s must match the "
                    "CA's; see the openssl message above)",
                    label,
                    ca->conf.policy_match && *ca->conf.policy_match ? ca->conf.policy_match
                                                                    : "subject");
        else
            kwt_err(KWT_FAIL, "openssl ca could not sign %s: the cause is above", label);
        free(err);
        goto out2;
    }
    free(err);
    if (kwt_g.dry_run) {
        printf("# keyward then writes NAME %s into the new index row's file column and links "
               "issued/%s.crt to certs/SERIAL.pem\n",
               name, name);
        goto out2;
    }
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + 1) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add exactly one index row");
        goto out2;
    }
    kwt_row *r = &ix1.rows[ix1.n - 1];
    free(r->name);
    r->name = kwt_strdup(name);
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
        goto out2;
    }
    rc = kwt_store_meta(ca, r->serial, csr, profile, days, san, device_id, name, md);
    if (rc == 0)
        *serial_out = kwt_strdup(r->serial);
out2:
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    free(ext);
    free(extp);
    free(outp);
    free(ixp);
out:
    if (csr && !kwt_g.dry_run)
        unlink(csr); /* stored as certs/SERIAL.csr by kwt_store_meta */
    free(all);
    free(cn);
    free(csr_sans);
    free(gen_key);
    free(gen_cert);
    free(csr);
    return rc;
}
