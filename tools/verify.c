/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward verify`: one line per check, then PASS or FAIL. Done with libcrypto directly (no
 * key is involved) so each check can be reported on its own. */
#include "kwt.h"

#include <dirent.h>
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
    int n;
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
    if (!strcmp(result, "FAIL"))
        r->fail = true;
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

/* All CA generations and cross certificates, and every CRL, from the CA directory. */
static void load_ca_dir(const char *dir, STACK_OF(X509) * cas, STACK_OF(X509_CRL) * crls)
{
    char *p = kwt_path(dir, "ca");
    DIR *d = opendir(p);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char *fp = kwt_path(p, de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".crt"))
            load_certs(fp, cas);
        free(fp);
    }
    if (d)
        closedir(d);
    free(p);
    p = kwt_path(dir, "crl");
    d = opendir(p);
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char *fp = kwt_path(p, de->d_name);
        if (l > 4 && !strncmp(de->d_name, "crl-", 4) && !strcmp(de->d_name + l - 4, ".pem"))
            load_crls(fp, crls);
        free(fp);
    }
    if (d)
        closedir(d);
    free(p);
    if (sk_X509_num(cas) == 0) {
        p = kwt_path(dir, "ca.crt");
        load_certs(p, cas);
        free(p);
    }
    p = kwt_path(dir, "crl/crl.pem");
    load_crls(p, crls);
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
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            if ((size_t)ASN1_STRING_length(s) == strlen(want) &&
                !strncasecmp((const char *)ASN1_STRING_get0_data(s), want, strlen(want)))
                dns = true;
        } else if (g->type == GEN_OTHERNAME && (!o || !OBJ_cmp(g->d.otherName->type_id, o))) {
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
    return dns && (other || !any_other);
}

int kwt_cmd_verify(int argc, char **argv)
{
    const char *cafile = NULL, *crlfile = NULL, *purpose = NULL, *devid = NULL, *warn_s = NULL;
    kwt_optspec spec[] = {{"--ca", &cafile, NULL},        {"--crl", &crlfile, NULL},
                          {"--purpose", &purpose, NULL},  {"--device-id", &devid, NULL},
                          {"--warn-days", &warn_s, NULL}, {NULL, NULL, NULL}};
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
    X509 *x = kwt_load_cert(pos[0]);
    if (!x)
        return kwt_err(KWT_FAIL, "%s: not a certificate (PEM or DER)", pos[0]);
    STACK_OF(X509) *cas = sk_X509_new_null();
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    char *device_oid = NULL;
    if (cafile) {
        if (load_certs(cafile, cas) <= 0) {
            rc = kwt_err(KWT_FAIL, "--ca %s: no certificates in it", cafile);
            goto out;
        }
    }
    if (crlfile && load_crls(crlfile, crls) <= 0) {
        rc = kwt_err(KWT_FAIL, "--crl %s: no CRL in it", crlfile);
        goto out;
    }
    if (!cafile || !crlfile) {
        kwt_ca ca;
        if (kwt_ca_open(&ca, false) == 0) {
            if (!cafile && !crlfile)
                load_ca_dir(ca.dir, cas, crls);
            else if (!cafile) {
                STACK_OF(X509_CRL) *ignore = sk_X509_CRL_new_null();
                load_ca_dir(ca.dir, cas, ignore); /* the CRL given with --crl is used */
                sk_X509_CRL_pop_free(ignore, X509_CRL_free);
            }
            device_oid = kwt_strdup(ca.conf.device_oid);
            kwt_ca_close(&ca);
        } else if (!cafile) {
            rc = kwt_err(KWT_USAGE, "verify: no --ca and no CA directory to take it from");
            goto out;
        }
        kwt_clear_error();
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
    X509_STORE_CTX_init(ctx, store, x, cas);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
    int ok = X509_verify_cert(ctx);
    X509 *issuer = NULL;
    if (ok == 1) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
        issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
        char *is = issuer ? kwt_cert_subject(issuer) : kwt_strdup("(self)");
        line(&r, "chain", "OK", "%s issued by %s (%d certificates)", subj, is, sk_X509_num(chain));
        free(is);
    } else {
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
    /* 4. revocation */
    if (issuer) {
        int found = 0;
        for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
            X509_CRL *c = sk_X509_CRL_value(crls, i);
            if (X509_NAME_cmp(X509_CRL_get_issuer(c), X509_get_subject_name(issuer)) != 0)
                continue;
            EVP_PKEY *ik = X509_get0_pubkey(issuer);
            if (!ik || X509_CRL_verify(c, ik) != 1)
                continue; /* another generation's CRL with the same issuer name */
            found++;
            X509_REVOKED *rev = NULL;
            if (X509_CRL_get0_by_cert(c, &rev, x) == 1 && rev) {
                int crit = 0;
                ASN1_ENUMERATED *re = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
                long reason = re ? ASN1_ENUMERATED_get(re) : 0;
                ASN1_ENUMERATED_free(re);
                const ASN1_TIME *rt = X509_REVOKED_get0_revocationDate(rev);
                char when[64] = "";
                BIO *b = BIO_new(BIO_s_mem());
                ASN1_TIME_print(b, rt);
                int wn = BIO_read(b, when, sizeof(when) - 1);
                when[wn > 0 ? wn : 0] = '\0';
                BIO_free(b);
                line(&r, "revocation", "FAIL", "revoked on %s, reason %s", when,
                     crl_reason_name((int)reason));
                found = -1;
                break;
            }
            const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(c);
            if (nu && X509_cmp_time(nu, &now) < 0)
                line(&r, "crl", "WARN", "the CRL is past its next update: regenerate it");
        }
        if (found > 0)
            line(&r, "revocation", "OK", "not on the CRL");
        else if (found == 0)
            line(&r, "revocation", "WARN", "no CRL from this issuer to check against");
    } else {
        line(&r, "revocation", "SKIP", "no verified issuer");
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
        if (has_device_id(x, devid, device_oid))
            line(&r, "device-id", "OK", "SAN has device-%s and the device ID", devid);
        else
            line(&r, "device-id", "FAIL", "SAN does not carry device ID %s", devid);
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
    X509_free(x);
    sk_X509_pop_free(cas, X509_free);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}
