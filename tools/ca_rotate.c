/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca rotate`: a new CA key generation with the same subject. ca/ca-N.crt is the new
 * self-signed certificate. Two link certificates (RFC 4210 section 4.4) join the generations:
 * ca/cross-N.crt (NewWithOld: the new key certified by the old one, for relying parties that
 * trust only the old root) and ca/oldwithnew-N.crt (OldWithNew: the old key certified by the new
 * one, for relying parties that trust only the new root). The old key stays listed in
 * keyward.conf and keeps signing crl/gen-(N-1).pem for the certificates it issued. */
#include "kwt.h"

#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A link certificate: the key and subject of `in`, certified by the key of `cacrt`. */
static int link_cert(kwt_ca *ca, const char *in, const char *cacrt, const char *cakey,
                     const char *md, int days, const char *extf, const char *out)
{
    char serial[40], setserial[48], ds[16];
    if (kwt_random_serial(serial, sizeof(serial)) != 0)
        return kwt_err(KWT_FAIL, "no random serial for %s", out);
    snprintf(setserial, sizeof(setserial), "0x%s", serial);
    snprintf(ds, sizeof(ds), "%d", days);
    kwt_cmd c;
    kwt_cmd_init(&c, "x509");
    kwt_cmd_opt(&c, "-in", in);
    kwt_cmd_opt(&c, "-CA", cacrt);
    kwt_cmd_opt(&c, "-CAkey", cakey);
    kwt_cmd_opt(&c, "-set_serial", setserial);
    kwt_cmd_opt(&c, "-days", ds);
    char mdopt[16];
    snprintf(mdopt, sizeof(mdopt), "-%s", md);
    kwt_cmd_add(&c, mdopt);
    kwt_cmd_add(&c, "-clrext");
    kwt_cmd_opt(&c, "-extfile", extf);
    kwt_cmd_opt(&c, "-extensions", "ext_ca");
    kwt_cmd_opt(&c, "-out", out);
    return kwt_run_public(&c, kwt_ca_cnf(ca), out);
}

/* Days from now until x's notAfter, at least 1: the OldWithNew certificate need not outlive the
 * old generation's own certificate. */
static int days_left(const char *path)
{
    X509 *x = kwt_load_cert(path);
    int days = 1, secs = 0;
    if (x && ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) != 1)
        days = 1;
    X509_free(x);
    return days < 1 ? 1 : days;
}

int kwt_cmd_ca_rotate(int argc, char **argv)
{
    const char *key = NULL, *key_type = NULL, *days_s = "3650", *crl_url = NULL;
    bool use_existing = false;
    kwt_optspec spec[] = {{"--key", &key, NULL},         {"--key-type", &key_type, NULL},
                          {"--days", &days_s, NULL},     {"--use-existing", NULL, &use_existing},
                          {"--crl-url", &crl_url, NULL}, {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, days, rc = kwt_parse_args("ca rotate", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!key)
        return kwt_err(KWT_USAGE, "ca rotate: --key NEWURI is required");
    if (!kwt_valid_uri(key, &why))
        return kwt_err(KWT_USAGE, "--key: %s", why);
    if (kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (crl_url && (!kwt_conf_safe(crl_url) || strpbrk(crl_url, " ,") || !strstr(crl_url, "://") ||
                    !strstr(crl_url, "{gen}")))
        return kwt_err(KWT_USAGE, "--crl-url: an http(s) URL with {gen} in it (each generation's "
                                  "CRL at its own URL), without spaces, commas or quotes");
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    if (!key_type)
        key_type = ca.conf.key_type ? ca.conf.key_type : "ec:P-256";
    const char *alg;
    char param[64];
    if (kwt_parse_key_type(key_type, &alg, param, sizeof(param), &why) != 0) {
        rc = kwt_err(KWT_USAGE, "--key-type: %s", why);
        kwt_ca_close(&ca);
        return rc;
    }
    if (!strcmp(key, ca.conf.ca_key)) {
        rc = kwt_err(KWT_USAGE, "--key is the current CA key; rotation needs a new key");
        kwt_ca_close(&ca);
        return rc;
    }
    for (int g = 1; g < ca.conf.generation; g++) {
        char *k = kwt_gen_key(&ca.conf, g);
        bool same = k && !strcmp(k, key);
        free(k);
        if (same) {
            rc = kwt_err(KWT_USAGE, "--key is CA generation %d's key; rotation needs a new key", g);
            kwt_ca_close(&ca);
            return rc;
        }
    }
    if (ca.conf.crl_url && !strstr(ca.conf.crl_url, "{gen}") && !crl_url)
        fprintf(stderr,
                "keyward: warning: crl_url %s has no {gen}: generation %d's certificates would "
                "name the same CRL URL as the earlier ones, where only one generation's CRL can "
                "be served; pass --crl-url with {gen} (publish crl/gen-1.crl at the old URL)\n",
                ca.conf.crl_url, ca.conf.generation + 1);
    int oldg = ca.conf.generation, newg = oldg + 1;
    char *cacrt = kwt_path(ca.dir, "ca.crt");
    char *oldcrt = kwt_asprintf("%s/ca/ca-%d.crt", ca.dir, oldg);
    char *newcrt = kwt_asprintf("%s/ca/ca-%d.crt", ca.dir, newg);
    char *cross = kwt_asprintf("%s/ca/cross-%d.crt", ca.dir, newg);
    char *back = kwt_asprintf("%s/ca/oldwithnew-%d.crt", ca.dir, newg);
    char *keypem = kwt_asprintf("%s/ca/ca-key-%d.pem", ca.dir, newg);
    char *oldkey = kwt_strdup(ca.conf.ca_key), *subj = NULL, *extf = NULL, *oldtype = NULL;
    X509 *x = kwt_load_cert(cacrt);
    bool created = false;
    if (!x) {
        rc = kwt_err(KWT_FAIL, "%s missing or unreadable", cacrt);
        goto out;
    }
    subj = kwt_cert_subj_slash(x, NULL);
    X509_free(x);
    if (!kwt_exists(oldcrt) && !kwt_g.dry_run && kwt_copy_file(cacrt, oldcrt, 0644) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot keep %s: %s", oldcrt, strerror(errno));
        goto out;
    }
    rc = kwt_ensure_key(key, key_type, kwt_ca_cnf(&ca), !use_existing, true, &created, keypem);
    if (rc)
        goto out;
    /* new self-signed certificate: same subject, new key (new SKI) */
    free(ca.conf.ca_key);
    ca.conf.ca_key = kwt_strdup(key);
    oldtype = ca.conf.key_type;
    ca.conf.key_type = (char *)key_type; /* the new key signs its own certificate */
    rc = kwt_ca_selfsign(&ca, subj, days, newcrt);
    ca.conf.key_type = oldtype;
    free(ca.conf.ca_key);
    ca.conf.ca_key = kwt_strdup(oldkey);
    /* the same key under another URI is no new generation */
    for (int g = 1; rc == 0 && !kwt_g.dry_run && g <= oldg; g++) {
        char *gp = g == oldg ? kwt_strdup(oldcrt) : kwt_asprintf("%s/ca/ca-%d.crt", ca.dir, g);
        X509 *gx = kwt_load_cert(gp), *nx = kwt_load_cert(newcrt);
        if (gx && nx && EVP_PKEY_eq(X509_get0_pubkey(gx), X509_get0_pubkey(nx)) == 1) {
            unlink(newcrt);
            rc = kwt_err(KWT_USAGE,
                         "--key %s holds CA generation %d's key; rotation needs a new key", key, g);
        }
        X509_free(gx);
        X509_free(nx);
        free(gp);
    }
    if (rc)
        goto out;
    /* cross certificate: the new key and subject, signed by the old key */
    char *prof = kwt_profile_text(&ca.conf, "ca");
    char *ext = kwt_asprintf("[ext_ca]\n%s", prof);
    free(prof);
    extf = kwt_asprintf("%s/ca/cross-%d.ext", ca.dir, newg);
    if (kwt_g.dry_run)
        kwt_dry_show_file(extf, ext);
    else if (kwt_write_atomic(extf, ext, strlen(ext), 0600) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", extf, strerror(errno));
    free(ext);
    if (rc)
        goto out;
    if ((rc = link_cert(&ca, newcrt, oldcrt, oldkey, kwt_md_for_key_type(oldtype), days, extf,
                        cross)) ||
        (rc = link_cert(&ca, oldcrt, newcrt, key, kwt_md_for_key_type(key_type), days_left(oldcrt),
                        extf, back)))
        goto out;
    if (kwt_g.dry_run) {
        printf("# keyward then records the old key as generation %d in keyward.conf, makes "
               "%s the CA certificate and regenerates the CRLs\n",
               oldg, newcrt);
        goto out;
    }
    /* keyward.conf naming generation N is the commit point: ca/ca-N.crt and the cross
     * certificate must be on disk before it (recovery rolls ca.crt forward from ca-N.crt) */
    char *cadir = kwt_path(ca.dir, "ca");
    rc = kwt_fsync_file(newcrt) || kwt_fsync_file(cross) || kwt_fsync_file(back) ||
         kwt_fsync_dir(cadir);
    free(cadir);
    if (rc) {
        rc = kwt_err(KWT_FAIL, "cannot sync the new CA certificates: %s", strerror(errno));
        goto out;
    }
    /* switch: config (new key, old key kept), ca.crt, then CRLs from both keys */
    char *ok = kwt_asprintf("%s%s%d:%s", ca.conf.old_keys ? ca.conf.old_keys : "",
                            ca.conf.old_keys ? " " : "", oldg, oldkey);
    free(ca.conf.old_keys);
    ca.conf.old_keys = ok;
    free(ca.conf.ca_key);
    ca.conf.ca_key = kwt_strdup(key);
    char *kt = kwt_strdup(key_type); /* key_type may point into ca.conf */
    free(ca.conf.key_type);
    ca.conf.key_type = kt;
    ca.conf.generation = newg;
    if (crl_url) {
        if (ca.conf.crl_url && !strstr(ca.conf.crl_url, "{gen}"))
            printf("  generation 1..%d certificates name %s: publish crl/gen-%d.crl there\n", oldg,
                   ca.conf.crl_url, oldg);
        free(ca.conf.crl_url);
        ca.conf.crl_url = kwt_strdup(crl_url);
    }
    char *confp = kwt_path(ca.dir, "keyward.conf");
    rc = kwt_conf_save(&ca.conf, confp) || kwt_copy_file(newcrt, cacrt, 0644);
    free(confp);
    if (rc) {
        rc = kwt_err(KWT_FAIL, "cannot switch to the new CA generation: %s", strerror(errno));
        goto out;
    }
    if ((rc = kwt_ca_write_cnf(&ca)) || (rc = kwt_txn_begin(&ca)) ||
        (rc = kwt_ca_make_crl(&ca, 0)) || (rc = kwt_txn_commit(&ca)))
        goto out;
    kwt_clear_error();
    if (kwt_g.json) {
        kwt_buf js = {0};
        kwt_buf_printf(&js, "{\"generation\":%d,\"ca\":", newg);
        kwt_buf_json_str(&js, newcrt);
        kwt_buf_add(&js, ",\"cross\":");
        kwt_buf_json_str(&js, cross);
        kwt_buf_add(&js, ",\"oldwithnew\":");
        kwt_buf_json_str(&js, back);
        kwt_buf_add(&js, "}\n");
        fputs(js.s, stdout);
        kwt_buf_free(&js);
    } else
        printf("CA rotated to generation %d (key %s)\n  new CA certificate: %s (also ca.crt)\n"
               "  cross certificate:  %s (NewWithOld: new key signed by the old)\n"
               "  link certificate:   %s (OldWithNew: old key signed by the new)\n"
               "  the old key keeps signing crl/gen-%d.pem for its certificates; publish\n"
               "  crl/crl.pem (all generations) or each crl/gen-G.crl at its URL\n",
               newg, key, newcrt, cross, back, oldg);
out:
    kwt_audit(&ca, "ca rotate", NULL, NULL, subj, rc);
    free(cacrt);
    free(oldcrt);
    free(newcrt);
    free(cross);
    free(back);
    free(keypem);
    free(oldkey);
    free(subj);
    free(extf);
    kwt_ca_close(&ca);
    return rc;
}
