/* SPDX-License-Identifier: Apache-2.0 */
/* CA generations (the key and certificate of each, and which still sign) and their CRLs: one
 * per live generation from its own key, and the bundle crl/crl.pem. */
#include "kwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One generation's CRL, signed by that generation's own key (a relying party matches a CRL to
 * the issuing key by its authorityKeyIdentifier): crl/gen-G.pem and crl/gen-G.crl (DER). */
static int make_gen_crl(kwt_ca *ca, int g, const char *cert, const char *key, const char *days)
{
    char *pn = kwt_asprintf("crl/gen-%d.pem", g), *dn = kwt_asprintf("crl/gen-%d.crl", g);
    char *pem = kwt_state_path(ca, pn), *der = kwt_state_path(ca, dn);
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-gencrl");
    kwt_cmd_opt(&c, "-crldays", days);
    if (cert) {
        kwt_cmd_opt(&c, "-cert", cert);
    }
    kwt_cmd_opt(&c, "-keyfile", key);
    kwt_cmd_opt(&c, "-out", pem);
    int rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    if (rc == 0) {
        kwt_cmd_init(&c, "crl");
        kwt_cmd_opt(&c, "-in", pem);
        kwt_cmd_opt(&c, "-outform", "DER");
        kwt_cmd_opt(&c, "-out", der);
        rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    }
    /* a CRL is public: relying parties and the web server that publishes it must read it */
    if (rc == 0 && kwt_g.dry_run)
        printf("chmod 0644 %s %s\n", pem, der);
    if (rc == 0 && !kwt_g.dry_run && (chmod(pem, 0644) != 0 || chmod(der, 0644) != 0))
        rc = kwt_err(KWT_FAIL, "cannot make %s public: %s", pem, strerror(errno));
    free(pn);
    free(dn);
    free(pem);
    free(der);
    return rc;
}

char *kwt_gen_key(const kwt_conf *c, int g)
{
    if (g == c->generation)
        return c->ca_key ? kwt_strdup(c->ca_key) : NULL;
    char *save = NULL, *list = c->old_keys ? kwt_strdup(c->old_keys) : NULL, *found = NULL;
    for (char *t = list ? strtok_r(list, " ", &save) : NULL; t && !found;
         t = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(t, ':');
        if (colon && atoi(t) == g)
            found = kwt_strdup(colon + 1);
    }
    free(list);
    return found;
}

char *kwt_gen_cert_path(const kwt_ca *ca, int g)
{
    if (g == ca->conf.generation)
        return kwt_path(ca->dir, "ca.crt");
    return kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, g);
}

static bool key_known(const kwt_ca *ca, int g)
{
    char *k = kwt_gen_key(&ca->conf, g);
    bool known = k != NULL;
    free(k);
    return known;
}

static bool cert_unexpired(const kwt_ca *ca, int g)
{
    char *p = kwt_gen_cert_path(ca, g);
    X509 *x = kwt_load_cert(p);
    bool live = x && X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
    X509_free(x);
    free(p);
    return live;
}

bool kwt_gen_live(const kwt_ca *ca, int g)
{
    if (g == ca->conf.generation)
        return true;
    char *p = kwt_gen_cert_path(ca, g), *key = kwt_gen_key(&ca->conf, g);
    X509 *x = kwt_load_cert(p);
    bool live = key && x && X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
    X509_free(x);
    free(p);
    free(key);
    return live;
}

/* SHA-256 (hex) of the index's revoked rows: what every generation's CRL lists. */
static void revoked_digest(kwt_ca *ca, char out[65])
{
    char *ixp = kwt_state_path(ca, "index.txt");
    char *text = kwt_read_file(ixp, NULL);
    free(ixp);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned char h[32];
    unsigned int hl = 0;
    out[0] = '\0';
    if (m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1) {
        for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
            nl = strchr(l, '\n');
            size_t len = nl ? (size_t)(nl - l) : strlen(l);
            if (l[0] == 'R')
                EVP_DigestUpdate(m, l, len + 1);
        }
        if (EVP_DigestFinal_ex(m, h, &hl) == 1)
            for (unsigned i = 0; i < hl; i++)
                snprintf(out + 2 * i, 3, "%02x", h[i]);
    }
    EVP_MD_CTX_free(m);
    free(text);
}

/* An earlier generation's CRL is made again only when it would differ or age: missing, the
 * revocations changed since it was made (crl/gen-G.digest), past half its period, or the
 * operator asked for a period (ca crl --days). Rotations are rare, but a CA that rotated often
 * would otherwise pay one signature per generation on every change. */
static bool gen_crl_due(kwt_ca *ca, int g, const char *pem, const char *digest, int days)
{
    if (days > 0 || kwt_g.dry_run)
        return true;
    char *dn = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn);
    char *had = kwt_read_file(dp, NULL);
    free(dn);
    free(dp);
    bool due = !had || strcmp(had, digest) != 0;
    free(had);
    FILE *f = due ? NULL : fopen(pem, "r");
    X509_CRL *c = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!due) {
        int d = 0, sec = 0;
        due = !c || !X509_CRL_get0_nextUpdate(c) ||
              ASN1_TIME_diff(&d, &sec, NULL, X509_CRL_get0_nextUpdate(c)) != 1 ||
              (long long)d * 86400 + sec < (long long)ca->conf.crl_days * 86400 / 2;
    }
    X509_CRL_free(c);
    return due;
}

int kwt_ca_make_crl(kwt_ca *ca, int days)
{
    char ds[16], digest[65];
    snprintf(ds, sizeof(ds), "%d", days > 0 ? days : ca->conf.crl_days);
    int n = ca->conf.generation, rc = 0;
    revoked_digest(ca, digest);
    /* every generation whose CA certificate is unexpired keeps a CRL from its own key, so
     * certificates issued before a rotation stay checkable; newest first in the bundle, so a
     * reader that takes only the first CRL of crl.pem gets the current one */
    kwt_buf bundle = {0};
    kwt_buf_addn(&bundle, "", 0);
    for (int g = n; g >= 1 && rc == 0; g--) {
        char *pn = kwt_asprintf("crl/gen-%d.pem", g), *dn = kwt_asprintf("crl/gen-%d.crl", g);
        char *pem = kwt_state_path(ca, pn), *der = kwt_state_path(ca, dn);
        if (kwt_gen_live(ca, g)) {
            if (g == n || gen_crl_due(ca, g, pem, digest, days)) {
                char *key = kwt_gen_key(&ca->conf, g);
                char *cert = g == n ? NULL : kwt_gen_cert_path(ca, g);
                rc = make_gen_crl(ca, g, cert, key, ds);
                free(key);
                free(cert);
                char *dn2 = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn2);
                if (rc == 0 && !kwt_g.dry_run && g < n &&
                    kwt_write_atomic(dp, digest, strlen(digest), 0644) != 0)
                    rc = kwt_err(KWT_FAIL, "cannot write %s: %s", dp, strerror(errno));
                free(dn2);
                free(dp);
            }
            if (rc == 0 && kwt_g.dry_run) {
                kwt_buf_printf(&bundle, " %s", pem);
            } else if (rc == 0) {
                size_t l = 0;
                char *t = kwt_read_file(pem, &l);
                if (!t)
                    rc = kwt_err(KWT_FAIL, "cannot read %s: %s", pem, strerror(errno));
                else
                    kwt_buf_addn(&bundle, t, l);
                free(t);
            }
        } else if (g < n && !key_known(ca, g) && cert_unexpired(ca, g)) {
            /* its certificates may still be valid: keep the last CRL (keyward check reports it
             * stale in time) rather than withdraw it */
            fprintf(stderr,
                    "keyward: warning: CA generation %d has no key in keyward.conf old_keys; its "
                    "CRL crl/gen-%d.pem is not renewed\n",
                    g, g);
            if (!kwt_g.dry_run) {
                size_t l = 0;
                char *t = kwt_read_file(pem, &l);
                if (t)
                    kwt_buf_addn(&bundle, t, l);
                free(t);
            }
        } else if (!kwt_g.dry_run) {
            unlink(pem); /* an expired generation has nothing left to revoke */
            unlink(der);
            char *dn2 = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn2);
            unlink(dp);
            free(dn2);
            free(dp);
        }
        /* the names before per-generation CRLs */
        char *legacy = kwt_asprintf("crl/crl-%d.pem", g), *lp = kwt_state_path(ca, legacy);
        if (!kwt_g.dry_run)
            unlink(lp);
        free(legacy);
        free(lp);
        free(pn);
        free(dn);
        free(pem);
        free(der);
    }
    char *pem = kwt_state_path(ca, "crl/crl.pem"), *der = kwt_state_path(ca, "crl/crl.der");
    char *curname = kwt_asprintf("crl/gen-%d.crl", n), *cur = kwt_state_path(ca, curname);
    if (rc == 0 && kwt_g.dry_run) {
        printf("cat%s > %s\ncp %s %s\nchmod 0644 %s %s\n", bundle.s, pem, cur, der, pem, der);
    } else if (rc == 0) {
        if (kwt_write_atomic(pem, bundle.s, bundle.len, 0644) != 0 ||
            kwt_copy_file(cur, der, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write the CRL bundle %s: %s", pem, strerror(errno));
    }
    kwt_buf_free(&bundle);
    free(curname);
    free(cur);
    free(pem);
    free(der);
    return rc;
}
