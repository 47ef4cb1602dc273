/* SPDX-License-Identifier: Apache-2.0 */
/* Certificate helpers for list, verify and sign output. */
#include "kwt.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

X509 *kwt_load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (!x) {
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    return x;
}

char *kwt_cert_fingerprint(X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!X509_digest(x, EVP_sha256(), md, &n))
        return kwt_strdup("");
    kwt_buf b = {0};
    for (unsigned int i = 0; i < n; i++)
        kwt_buf_printf(&b, i ? ":%02X" : "%02X", md[i]);
    return b.s;
}

/* RFC 4514, most specific RDN first (as `openssl x509 -nameopt RFC2253` prints it), UTF-8 kept
 * as it is and byte for byte (no case or space folding): every subject and issuer keyward shows,
 * in text and in JSON. */
char *kwt_name_text(const X509_NAME *n)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long l = 0;
    if (bio && n && X509_NAME_print_ex(bio, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        l = BIO_get_mem_data(bio, &data);
    char *s = kwt_asprintf("%.*s", (int)(l > 0 ? l : 0), data ? data : "");
    BIO_free(bio);
    return s;
}

char *kwt_cert_subject(X509 *x)
{
    return kwt_name_text(X509_get_subject_name(x));
}

char *kwt_serial_subject(const char *cadir, const char *serial, const char *fallback)
{
    char *p = kwt_asprintf("%s/certs/%s.pem", cadir, serial);
    X509 *x = kwt_load_cert(p);
    char *s = x ? kwt_cert_subject(x) : kwt_strdup(fallback ? fallback : "");
    X509_free(x);
    free(p);
    return s;
}

char *kwt_cert_serial(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    char *s = kwt_strdup(hex ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
    return s;
}

/* One DER element at *p (of at most left bytes): *p moves past it; false when malformed. */
static bool der_skip(const unsigned char **p, long left, int *tag, int *cls)
{
    const unsigned char *q = *p;
    long len = 0;
    if (ASN1_get_object(&q, &len, tag, cls, left) & 0x80 || len > left - (q - *p))
        return false;
    *p = q + len;
    return true;
}

/* A certificate file read without decoding it: its DER, and where its subject and
 * subjectPublicKeyInfo are in it. */
typedef struct {
    char *text;
    unsigned char *pem_der;
    const unsigned char *der, *validity, *subj, *spki;
    long dlen, validity_len, subj_len, spki_len;
} cert_view;

static void view_free(cert_view *v)
{
    OPENSSL_free(v->pem_der);
    free(v->text);
    ERR_clear_error();
}

static int view_cert(const char *path, cert_view *v)
{
    size_t len = 0;
    const unsigned char *p, *q, *end;
    long l = 0;
    int tag, cls;
    memset(v, 0, sizeof(*v));
    if (!(v->text = kwt_read_file(path, &len)))
        return -1;
    v->der = (const unsigned char *)v->text;
    v->dlen = (long)len;
    if (len > 10 && !memcmp(v->text, "-----BEGIN", 10)) {
        BIO *b = BIO_new_mem_buf(v->text, (int)len);
        char *name = NULL, *hdr = NULL;
        if (!b || PEM_read_bio(b, &name, &hdr, &v->pem_der, &v->dlen) != 1 ||
            strcmp(name, "CERTIFICATE"))
            v->dlen = 0;
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        BIO_free(b);
        v->der = v->pem_der;
    }
    /* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
     * signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... } */
    p = v->der;
    if (!p || v->dlen <= 0 || ASN1_get_object(&p, &l, &tag, &cls, v->dlen) & 0x80 ||
        tag != V_ASN1_SEQUENCE || l > v->dlen - (p - v->der))
        return -1;
    v->dlen = (long)(p - v->der) + l; /* a DER file's certificate, without trailing bytes */
    end = p + l;
    if (ASN1_get_object(&p, &l, &tag, &cls, end - p) & 0x80 || tag != V_ASN1_SEQUENCE)
        return -1;
    q = p;
    if (!der_skip(&q, end - q, &tag, &cls))
        return -1;
    if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0)
        p = q;                    /* the version */
    for (int i = 0; i < 4; i++) { /* serial, signature, issuer, validity */
        v->validity = p;
        if (!der_skip(&p, end - p, &tag, &cls))
            return -1;
    }
    v->validity_len = p - v->validity;
    v->subj = p;
    if (!der_skip(&p, end - p, &tag, &cls))
        return -1;
    v->subj_len = p - v->subj;
    v->spki = p;
    if (!der_skip(&p, end - p, &tag, &cls) || tag != V_ASN1_SEQUENCE)
        return -1;
    v->spki_len = p - v->spki;
    return 0;
}

/* Validity ::= SEQUENCE { notBefore Time, notAfter Time }: notBefore as Unix time. */
static bool view_not_before(const cert_view *v, long long *t)
{
    const unsigned char *p = v->validity;
    long l = 0;
    int tag, cls;
    struct tm tm;
    ASN1_TIME *at = NULL;
    if (!(ASN1_get_object(&p, &l, &tag, &cls, v->validity_len) & 0x80) && tag == V_ASN1_SEQUENCE)
        at = d2i_ASN1_TIME(NULL, &p, l);
    bool ok = at && ASN1_TIME_to_tm(at, &tm) == 1;
    ASN1_TIME_free(at);
    if (ok)
        *t = (long long)timegm(&tm);
    return ok;
}

int kwt_cert_brief(const char *path, char **fingerprint, char **subject, long long *not_before)
{
    cert_view v;
    unsigned char md[32];
    X509_NAME *n = NULL;
    const unsigned char *q;
    int rc = -1;
    *subject = NULL;
    if (fingerprint)
        *fingerprint = NULL;
    if (view_cert(path, &v) == 0 && (q = v.subj, n = d2i_X509_NAME(NULL, &q, v.subj_len)) &&
        (!not_before || view_not_before(&v, not_before)) &&
        (!fingerprint || EVP_Digest(v.der, (size_t)v.dlen, md, NULL, EVP_sha256(), NULL) == 1)) {
        if (fingerprint) {
            kwt_buf b = {0};
            for (int i = 0; i < 32; i++)
                kwt_buf_printf(&b, i ? ":%02X" : "%02X", md[i]);
            *fingerprint = b.s;
        }
        *subject = kwt_name_text(n);
        rc = 0;
    }
    X509_NAME_free(n);
    view_free(&v);
    return rc;
}

int kwt_cert_key_subject(const char *path, unsigned char spki_sha256[32], X509_NAME **subject)
{
    cert_view v;
    const unsigned char *q;
    int rc = -1;
    *subject = NULL;
    if (view_cert(path, &v) == 0 &&
        EVP_Digest(v.spki, (size_t)v.spki_len, spki_sha256, NULL, EVP_sha256(), NULL) == 1 &&
        (q = v.subj, *subject = d2i_X509_NAME(NULL, &q, v.subj_len)))
        rc = 0;
    view_free(&v);
    return rc;
}

long long kwt_asn1_to_time(const char *s)
{
    struct tm tm = {0};
    size_t n = strlen(s);
    int y;
    if (n == 13 && sscanf(s, "%2d%2d%2d%2d%2d%2d", &y, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                          &tm.tm_min, &tm.tm_sec) == 6)
        tm.tm_year = y < 50 ? y + 100 : y;
    else if (n == 15 && sscanf(s, "%4d%2d%2d%2d%2d%2d", &y, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                               &tm.tm_min, &tm.tm_sec) == 6)
        tm.tm_year = y - 1900;
    else
        return -1;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm);
}

long long kwt_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    return t && ASN1_TIME_to_tm(t, &tm) == 1 ? (long long)timegm(&tm) : -1;
}

char *kwt_cert_subj_slash(X509 *x, const char *cn_suffix)
{
    X509_NAME *n = X509_get_subject_name(x);
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (int i = 0; i < X509_NAME_entry_count(n); i++) {
        X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
        if (ul < 0)
            continue;
        kwt_buf_printf(&b, "/%s=", OBJ_nid2sn(nid));
        for (int j = 0; j < ul; j++) {
            if (u[j] == '/' || u[j] == '\\' || u[j] == '+')
                kwt_buf_add(&b, "\\");
            kwt_buf_addn(&b, (const char *)u + j, 1);
        }
        if (nid == NID_commonName && cn_suffix)
            kwt_buf_add(&b, cn_suffix);
        OPENSSL_free(u);
    }
    return b.s;
}
