/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward verify`: one line per check, then PASS or FAIL. Done with libcrypto directly (no
 * key is involved) so each check can be reported on its own. */
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    kwt_buf out;
    int n, fails;
    bool fail;
} report_t;

static void line(report_t *r, const char *check, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line(report_t *r, const char *check, const char *result, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (!strcmp(result, "FAIL")) {
        r->fail = true;
        r->fails++;
    }
    if (kwt_g.json) {
        kwt_buf_add(&r->out, r->n ? ",{\"check\":" : "{\"check\":");
        kwt_buf_json_str(&r->out, check);
        kwt_buf_add(&r->out, ",\"result\":");
        kwt_buf_json_str(&r->out, result);
        kwt_buf_add(&r->out, ",\"detail\":");
        kwt_buf_json_str(&r->out, detail);
        kwt_buf_add(&r->out, "}");
    } else {
        kwt_buf_printf(&r->out, "%-4s %-11s %s\n", result, check, detail);
    }
    r->n++;
}

static int load_certs(const char *path, STACK_OF(X509) * sk)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    X509 *x;
    int n = 0;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
        sk_X509_push(sk, x);
        n++;
    }
    ERR_clear_error();
    fclose(f);
    return n;
}

static int load_crls(const char *path, STACK_OF(X509_CRL) * sk)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    X509_CRL *c;
    int n = 0;
    while ((c = PEM_read_X509_CRL(f, NULL, NULL, NULL))) {
        sk_X509_CRL_push(sk, c);
        n++;
    }
    if (n == 0) {
        rewind(f);
        if ((c = d2i_X509_CRL_fp(f, NULL))) {
            sk_X509_CRL_push(sk, c);
            n++;
        }
    }
    ERR_clear_error();
    fclose(f);
    return n;
}

/* Split certificates into self-signed roots (trust anchors) and the rest (link certificates
 * between CA generations, intermediates), which only help to build a chain. */
static void split_roots(STACK_OF(X509) * in, STACK_OF(X509) * roots, STACK_OF(X509) * others)
{
    X509 *x;
    while ((x = sk_X509_shift(in))) {
        if (X509_get_extension_flags(x) & EXFLAG_SS)
            sk_X509_push(roots, x);
        else
            sk_X509_push(others, x);
    }
}

static bool has_suffix(const char *n, const char *suf)
{
    size_t l = strlen(n), s = strlen(suf);
    return l > s && !strcmp(n + l - s, suf);
}

/* Every CA generation's certificate and the link certificates from the CA directory; with crls,
 * every generation's CRL too. */
static void load_ca_dir(const char *dir, STACK_OF(X509) * cas, STACK_OF(X509_CRL) * crls)
{
    char *p = kwt_path(dir, "ca");
    DIR *d = opendir(p);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *fp = kwt_path(p, de->d_name);
        if (has_suffix(de->d_name, ".crt"))
            load_certs(fp, cas);
        free(fp);
    }
    if (d)
        closedir(d);
    free(p);
    p = kwt_path(dir, "ca.crt");
    load_certs(p, cas);
    free(p);
    if (!crls)
        return;
    p = kwt_path(dir, "crl");
    d = opendir(p);
    while (d && (de = readdir(d))) {
        char *fp = kwt_path(p, de->d_name);
        if (!strncmp(de->d_name, "gen-", 4) && has_suffix(de->d_name, ".pem"))
            load_crls(fp, crls);
        free(fp);
    }
    if (d)
        closedir(d);
    free(p);
}

static const char *crl_reason_name(int r)
{
    static const char *names[] = {"unspecified",        "keyCompromise", "cACompromise",
                                  "affiliationChanged", "superseded",    "cessationOfOperation",
                                  "certificateHold",    "(7)",           "removeFromCRL"};
    return r >= 0 && r <= 8 ? names[r] : "unspecified";
}

static bool has_device_id(X509 *x, const char *id, const char *oid)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *want = kwt_asprintf("device-%s", id);
    bool dns = false, other = false, any_other = false;
    ASN1_OBJECT *o = oid ? OBJ_txt2obj(oid, 1) : NULL;
    if (!o) { /* no valid OID to look for: nothing proves the ID */
        free(want);
        GENERAL_NAMES_free(gens);
        return false;
    }
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            if ((size_t)ASN1_STRING_length(s) == strlen(want) &&
                !strncasecmp((const char *)ASN1_STRING_get0_data(s), want, strlen(want)))
                dns = true;
        } else if (g->type == GEN_OTHERNAME && !OBJ_cmp(g->d.otherName->type_id, o)) {
            ASN1_TYPE *v = g->d.otherName->value;
            any_other = true;
            if (v->type == V_ASN1_UTF8STRING &&
                (size_t)ASN1_STRING_length(v->value.utf8string) == strlen(id) &&
                !memcmp(ASN1_STRING_get0_data(v->value.utf8string), id, strlen(id)))
                other = true;
        }
    }
    ASN1_OBJECT_free(o);
    GENERAL_NAMES_free(gens);
    free(want);
    /* the otherName under the device-ID OID is what a device profile certificate proves; a
     * DNS name alone could come from any CSR */
    (void)any_other;
    return dns && other;
}

static char *time_text(const ASN1_TIME *t)
{
    char buf[64] = "";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && t && ASN1_TIME_print(b, t) == 1) {
        int n = BIO_read(b, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    return kwt_strdup(buf);
}

/* Revocation of one certificate of the chain against the CRLs whose signature verifies with its
 * issuer's key (another generation's CRL has the same issuer name but another key). Fails
 * closed: no such CRL, or only a stale one, is a FAIL. */
static void check_revocation(report_t *r, X509 *x, X509 *issuer, STACK_OF(X509_CRL) * crls,
                             const char *crl_origin, bool leaf)
{
    time_t now = time(NULL);
    char *subj = kwt_cert_subject(x);
    EVP_PKEY *ik = X509_get0_pubkey(issuer);
    X509_CRL *use = NULL;
    bool stale = false;
    /* of several CRLs from this key (an old copy beside a fresh one), the newest counts: an
     * older one may predate the revocation */
    for (int i = 0; ik && i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *c = sk_X509_CRL_value(crls, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(c), X509_get_subject_name(issuer)) != 0 ||
            X509_CRL_verify(c, ik) != 1)
            continue;
        const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(c);
        if (nu && X509_cmp_time(nu, &now) < 0) {
            stale = true;
            continue;
        }
        if (!use ||
            ASN1_TIME_compare(X509_CRL_get0_lastUpdate(c), X509_CRL_get0_lastUpdate(use)) > 0)
            use = c;
    }
    const char *what = leaf ? "" : " (a certificate of the chain)";
    if (!use && stale) {
        line(r, "revocation", "FAIL",
             "%s%s: the issuer's CRL in %s is past its next update; regenerate it (keyward ca "
             "crl) or fetch a fresh one",
             subj, what, crl_origin);
    } else if (!use) {
        char *is = kwt_cert_subject(issuer);
        line(r, "revocation", "FAIL",
             "%s%s: no CRL from its issuer (%s, this generation's key) in %s; give that CRL "
             "(after a CA rotation: the bundle crl/crl.pem has every generation's) or "
             "--no-revocation-check",
             subj, what, is, crl_origin);
        free(is);
    } else {
        X509_REVOKED *rev = NULL;
        if (X509_CRL_get0_by_cert(use, &rev, x) == 1 && rev) {
            int crit = 0;
            ASN1_ENUMERATED *re = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
            long reason = re ? ASN1_ENUMERATED_get(re) : 0;
            ASN1_ENUMERATED_free(re);
            char *when = time_text(X509_REVOKED_get0_revocationDate(rev));
            line(r, "revocation", "FAIL", "%s%s: revoked on %s, reason %s", subj, what, when,
                 crl_reason_name((int)reason));
            free(when);
        } else if (leaf) {
            char *nu = time_text(X509_CRL_get0_nextUpdate(use));
            line(r, "revocation", "OK", "not on the issuer's CRL (next update %s)", nu);
            free(nu);
        }
    }
    free(subj);
}

int kwt_cmd_verify(int argc, char **argv)
{
    const char *cafile = NULL, *crlfile = NULL, *purpose = NULL, *devid = NULL, *warn_s = NULL,
               *untrusted_f = NULL;
    bool no_rev = false;
    kwt_optspec spec[] = {{"--ca", &cafile, NULL},
                          {"--crl", &crlfile, NULL},
                          {"--untrusted", &untrusted_f, NULL},
                          {"--no-revocation-check", NULL, &no_rev},
                          {"--purpose", &purpose, NULL},
                          {"--device-id", &devid, NULL},
                          {"--warn-days", &warn_s, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, warn = 30, rc = kwt_parse_args("verify", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1)
        return kwt_err(KWT_USAGE, "verify: give one certificate file");
    if (warn_s && kwt_valid_days(warn_s, &warn, &why) != 0)
        return kwt_err(KWT_USAGE, "--warn-days: %s", why);
    if (purpose && strcmp(purpose, "client") && strcmp(purpose, "server") &&
        strcmp(purpose, "device") && strcmp(purpose, "ocsp"))
        return kwt_err(KWT_USAGE, "--purpose must be client, server, device or ocsp");
    if (devid && kwt_valid_device_id(devid, &why) != 0)
        return kwt_err(KWT_USAGE, "--device-id: %s", why);
    if (purpose && !strcmp(purpose, "device") && !devid)
        return kwt_err(KWT_USAGE, "--purpose device needs --device-id");
    if (no_rev && crlfile)
        return kwt_err(KWT_USAGE, "--crl and --no-revocation-check contradict each other");
    FILE *probe = fopen(pos[0], "r");
    if (!probe)
        return kwt_err(KWT_FAIL, "%s: %s", pos[0], strerror(errno));
    fclose(probe);
    X509 *x = kwt_load_cert(pos[0]);
    if (!x)
        return kwt_err(KWT_FAIL, "%s: not a certificate (PEM or DER)", pos[0]);
    STACK_OF(X509) *given = sk_X509_new_null(), *cas = sk_X509_new_null();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    char *device_oid = NULL, *crl_origin = NULL;
    if (cafile && load_certs(cafile, given) <= 0) {
        rc = kwt_err(KWT_FAIL, "--ca %s: no certificates in it", cafile);
        goto out;
    }
    if (untrusted_f && load_certs(untrusted_f, untrusted) <= 0) {
        rc = kwt_err(KWT_FAIL, "--untrusted %s: no certificates in it", untrusted_f);
        goto out;
    }
    if (crlfile && load_crls(crlfile, crls) <= 0) {
        rc = kwt_err(KWT_FAIL, "--crl %s: no CRL in it", crlfile);
        goto out;
    }
    if (crlfile)
        crl_origin = kwt_asprintf("--crl %s", crlfile);
    /* with --ca, a CA directory is optional: do not report its absence */
    char *confp = kwt_path(kwt_g.dir, "keyward.conf");
    bool have_dir = !cafile || kwt_exists(confp);
    free(confp);
    if (have_dir && (!cafile || !crlfile)) {
        kwt_ca ca;
        if (kwt_ca_open(&ca, false) == 0) {
            /* --ca names the trust anchor; the CA directory still supplies the link
             * certificates between generations and, without --crl, its CRLs */
            load_ca_dir(ca.dir, cafile ? untrusted : given, crlfile || no_rev ? NULL : crls);
            if (!crl_origin)
                crl_origin = kwt_asprintf("the CA directory's CRLs (%s/crl)", ca.dir);
            device_oid = kwt_strdup(ca.conf.device_oid);
            kwt_ca_close(&ca);
        } else if (!cafile) {
            rc = kwt_err(KWT_USAGE, "verify: no --ca and no CA directory to take it from");
            goto out;
        }
        kwt_clear_error();
    }
    split_roots(given, cas, untrusted);
    if (sk_X509_num(cas) == 0) {
        rc = kwt_err(KWT_FAIL, "%s: no self-signed CA certificate to trust in it",
                     cafile ? cafile : "the CA directory");
        goto out;
    }
    report_t r = {0};
    kwt_buf_addn(&r.out, "", 0);
    if (kwt_g.json)
        kwt_buf_add(&r.out, "{\"checks\":[");
    char *subj = kwt_cert_subject(x);
    /* 1. chain and signatures (time checked separately below) */
    X509_STORE *store = X509_STORE_new();
    for (int i = 0; i < sk_X509_num(cas); i++)
        X509_STORE_add_cert(store, sk_X509_value(cas, i));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, x, untrusted);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
    int ok = X509_verify_cert(ctx);
    STACK_OF(X509) *chain = ok == 1 ? X509_STORE_CTX_get0_chain(ctx) : NULL;
    /* the leaf's dates are reported below; every certificate above it (CA roots, link
     * certificates) must be within its validity now, as any relying party checks */
    for (int i = 1; chain && i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        time_t t = time(NULL);
        if (X509_cmp_time(X509_get0_notAfter(c), &t) < 0 ||
            X509_cmp_time(X509_get0_notBefore(c), &t) > 0) {
            char *cs = kwt_cert_subject(c), *na = time_text(X509_get0_notAfter(c));
            line(&r, "chain", "FAIL",
                 "%s (certificate %d of the chain) is not valid now (not after %s)", cs, i + 1, na);
            free(cs);
            free(na);
            chain = NULL;
        }
    }
    if (chain) {
        X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
        char *is = issuer ? kwt_cert_subject(issuer) : kwt_strdup("(self)");
        line(&r, "chain", "OK", "%s issued by %s (%d certificates)", subj, is, sk_X509_num(chain));
        free(is);
    } else if (ok != 1) {
        line(&r, "chain", "FAIL", "%s: %s", subj,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    /* 2/3. dates */
    time_t now = time(NULL);
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0) {
        line(&r, "dates", "FAIL", "not yet valid");
    } else if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0) {
        line(&r, "dates", "FAIL", "expired");
    } else {
        int days = 0, secs = 0;
        ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x));
        if (days < warn)
            line(&r, "expiry", "WARN", "expires in %d days (within %d)", days, warn);
        else
            line(&r, "dates", "OK", "valid for %d more days", days);
    }
    /* 4. revocation of every certificate below the trust anchor, each against a CRL from
     * its own issuer's key */
    if (no_rev) {
        line(&r, "revocation", "SKIP", "not checked (--no-revocation-check)");
    } else if (!chain) {
        line(&r, "revocation", "FAIL", "not checked: no verified chain to find the issuer");
    } else if (sk_X509_num(chain) < 2) {
        line(&r, "revocation", "FAIL", "%s is a trust anchor itself: nothing to check it against",
             pos[0]);
    } else if (!crl_origin) {
        line(&r, "revocation", "FAIL",
             "no CRL to check against: pass --crl FILE (the CA's crl.pem) or "
             "--no-revocation-check");
    } else {
        int before = r.fails;
        for (int i = 0; i + 1 < sk_X509_num(chain) && r.fails == before; i++)
            check_revocation(&r, sk_X509_value(chain, i), sk_X509_value(chain, i + 1), crls,
                             crl_origin, i == 0);
    }
    /* 5. purpose */
    if (purpose) {
        uint32_t xku = X509_get_extended_key_usage(x);
        bool has_eku = X509_get_ext_by_NID(x, NID_ext_key_usage, -1) >= 0;
        uint32_t want = !strcmp(purpose, "server") ? XKU_SSL_SERVER
                        : !strcmp(purpose, "ocsp") ? XKU_OCSP_SIGN
                                                   : XKU_SSL_CLIENT;
        if (has_eku && (xku & want))
            line(&r, "purpose", "OK", "extendedKeyUsage allows %s", purpose);
        else
            line(&r, "purpose", "FAIL", "extendedKeyUsage does not allow %s", purpose);
    }
    /* 6. device ID */
    if (devid) {
        if (!device_oid) { /* no CA directory: the default device-ID OID */
            kwt_conf dc;
            kwt_conf_defaults(&dc);
            device_oid = kwt_strdup(dc.device_oid);
            kwt_conf_free(&dc);
        }
        if (has_device_id(x, devid, device_oid))
            line(&r, "device-id", "OK", "SAN has device-%s and the device ID", devid);
        else
            line(&r, "device-id", "FAIL",
                 "SAN does not carry device ID %s as DNS device-%s and an otherName under %s",
                 devid, devid, device_oid);
    }
    if (kwt_g.json)
        kwt_buf_printf(&r.out, "],\"result\":\"%s\"}\n", r.fail ? "FAIL" : "PASS");
    else
        kwt_buf_printf(&r.out, "%s %s\n", r.fail ? "FAIL" : "PASS", pos[0]);
    fputs(r.out.s, stdout);
    kwt_buf_free(&r.out);
    rc = r.fail ? KWT_FAIL : KWT_OK;
    free(subj);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
out:
    free(device_oid);
    free(crl_origin);
    X509_free(x);
    sk_X509_pop_free(given, X509_free);
    sk_X509_pop_free(untrusted, X509_free);
    sk_X509_pop_free(cas, X509_free);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}
