/* SPDX-License-Identifier: Apache-2.0 */
/* C_CreateObject (import of private keys, public keys, X.509 certificates) and C_DestroyObject.
 * The templates' common checks are in template.c; here the key material itself is checked. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

/* A certificate's CKA_SUBJECT, CKA_ISSUER or CKA_SERIAL_NUMBER must be what its CKA_VALUE
 * says: the token answers them from the certificate, so another value could not be kept. */
static CK_RV cert_field_check(const CK_ATTRIBUTE *t, CK_ULONG n, X509 *x)
{
    static const CK_ATTRIBUTE_TYPE types[] = {CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER};
    CK_RV rv = CKR_OK;
    for (size_t i = 0; i < 3 && rv == CKR_OK; i++) {
        const CK_ATTRIBUTE *a = kwk_attr_get(t, n, types[i]);
        unsigned char *der = NULL;
        int len;
        if (a == NULL)
            continue;
        if (types[i] == CKA_SUBJECT)
            len = i2d_X509_NAME(X509_get_subject_name(x), &der);
        else if (types[i] == CKA_ISSUER)
            len = i2d_X509_NAME(X509_get_issuer_name(x), &der);
        else
            len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der);
        if (len < 0 || (size_t)len != a->ulValueLen || (len && memcmp(der, a->pValue, len) != 0))
            rv = CKR_TEMPLATE_INCONSISTENT;
        OPENSSL_free(der);
    }
    return rv;
}

/* The other certificate attributes. CKA_CERTIFICATE_CATEGORY is kept (in the description);
 * CKA_CHECK_VALUE is answered from CKA_VALUE (PKCS#11 3.0 4.6.3: the first 3 bytes of its
 * SHA-1), so a template's must match. CKA_URL and the two public-key hashes locate a certificate
 * kept elsewhere, and CKA_JAVA_MIDP_SECURITY_DOMAIN is for Java MIDP devices: this token keeps the
 * certificate itself and none of those, so anything but their defaults (empty, 0) is refused
 * rather than dropped. */
static CK_RV cert_extra(const CK_ATTRIBUTE *t, CK_ULONG n, const CK_ATTRIBUTE *v, kwk_extra *x)
{
    static const CK_ATTRIBUTE_TYPE empty[] = {CKA_URL, CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
                                              CKA_HASH_OF_ISSUER_PUBLIC_KEY};
    CK_ULONG u;
    CK_RV rv = kwk_attr_ulong(t, n, CKA_CERTIFICATE_CATEGORY, &u);
    if (rv == CKR_ATTRIBUTE_VALUE_INVALID || (rv == CKR_OK && u > 3))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    x->category = rv == CKR_OK ? u : 0;
    rv = kwk_attr_ulong(t, n, CKA_JAVA_MIDP_SECURITY_DOMAIN, &u);
    if (rv == CKR_ATTRIBUTE_VALUE_INVALID || (rv == CKR_OK && u != 0))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        const CK_ATTRIBUTE *a = kwk_attr_get(t, n, empty[i]);
        if (a && a->ulValueLen)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    const CK_ATTRIBUTE *cv = kwk_attr_get(t, n, CKA_CHECK_VALUE);
    unsigned char md[EVP_MAX_MD_SIZE];
    const EVP_MD *sha1 = kwk_md(CKM_SHA_1);
    if (cv == NULL)
        return CKR_OK;
    if (sha1 == NULL || !EVP_Digest(v->pValue, v->ulValueLen, md, NULL, sha1, NULL))
        return kwk_rv_ossl("certificate check value");
    return cv->ulValueLen == 3 && memcmp(cv->pValue, md, 3) == 0 ? CKR_OK
                                                                 : CKR_ATTRIBUTE_VALUE_INVALID;
}

static const CK_ATTRIBUTE *need(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
                                CK_RV *rv)
{
    const CK_ATTRIBUTE *a = kwk_attr_get(t, n, type);
    if ((a == NULL || a->ulValueLen == 0) && *rv == CKR_OK)
        *rv = a ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_TEMPLATE_INCOMPLETE;
    return a;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld, int selection)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(kwk_libctx(), type, NULL);
    EVP_PKEY *pk = NULL;
    if (params == NULL || c == NULL || EVP_PKEY_fromdata_init(c) <= 0 ||
        EVP_PKEY_fromdata(c, &pk, selection, params) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params); /* OSSL_PARAM_BLD zeroes secure BIGNUM copies */
    return pk;
}

/* Unwrap a DER OCTET STRING point if it is one; return raw bytes. */
static const unsigned char *point_bytes(const CK_ATTRIBUTE *a, size_t *len)
{
    const unsigned char *p = a->pValue;
    long l;
    int tag, cls;
    const unsigned char *q = p;
    if (a->ulValueLen > 2 && p[0] == 0x04 &&
        !(ASN1_get_object(&q, &l, &tag, &cls, (long)a->ulValueLen) & 0x80) &&
        tag == V_ASN1_OCTET_STRING && q + l == p + a->ulValueLen) {
        /* An uncompressed point also starts with 0x04; only accept the DER reading when the
         * lengths agree exactly. */
        *len = (size_t)l;
        return q;
    }
    *len = a->ulValueLen;
    return p;
}

static CK_RV build_rsa(const CK_ATTRIBUTE *t, CK_ULONG n, int priv, EVP_PKEY **out)
{
    static const CK_ATTRIBUTE_TYPE ta[] = {
        CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
        CKA_PRIME_2, CKA_EXPONENT_1,      CKA_EXPONENT_2,       CKA_COEFFICIENT};
    static const char *names[] = {OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
                                  OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
                                  OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
                                  OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    CK_RV rv = CKR_OK;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn[8] = {0};
    size_t cnt = priv ? 8 : 2;
    for (size_t i = 0; i < cnt; i++) {
        const CK_ATTRIBUTE *a = need(t, n, ta[i], &rv);
        if (rv != CKR_OK)
            break;
        bn[i] = i >= 2 ? BN_secure_new() : BN_new();
        if (bn[i] == NULL || !BN_bin2bn(a->pValue, (int)a->ulValueLen, bn[i]) ||
            !OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]))
            rv = CKR_HOST_MEMORY;
    }
    if (rv == CKR_OK) {
        *out = from_params("RSA", bld, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
        if (*out == NULL)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        else if (EVP_PKEY_get_bits(*out) < 512 || EVP_PKEY_get_bits(*out) > 8 * KWK_MAX_RSA_BYTES)
            rv = CKR_KEY_SIZE_RANGE;
    }
    for (size_t i = 0; i < 8; i++)
        BN_clear_free(bn[i]);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

static CK_RV build_ec(const CK_ATTRIBUTE *t, CK_ULONG n, int priv, CK_KEY_TYPE kt, EVP_PKEY **out)
{
    CK_RV rv = CKR_OK;
    int edwards;
    const CK_ATTRIBUTE *pa = need(t, n, CKA_EC_PARAMS, &rv);
    const CK_ATTRIBUTE *va = need(t, n, priv ? CKA_VALUE : CKA_EC_POINT, &rv);
    if (rv != CKR_OK)
        return rv;
    const char *curve = kwk_curve_name(pa, &edwards);
    if (curve == NULL)
        return CKR_CURVE_NOT_SUPPORTED;
    if (edwards != (kt == CKK_EC_EDWARDS))
        return CKR_TEMPLATE_INCONSISTENT;
    size_t len;
    const unsigned char *v = priv ? va->pValue : point_bytes(va, &len);
    if (priv)
        len = va->ulValueLen;
    if (edwards) {
        *out = priv ? EVP_PKEY_new_raw_private_key_ex(kwk_libctx(), curve, NULL, v, len)
                    : EVP_PKEY_new_raw_public_key_ex(kwk_libctx(), curve, NULL, v, len);
        return *out ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *d = NULL;
    unsigned char pt[200];
    size_t ptlen = 0;
    EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(kwk_libctx(), NULL, EC_curve_nist2nid(curve));
    EC_POINT *P = g ? EC_POINT_new(g) : NULL;
    rv = CKR_ATTRIBUTE_VALUE_INVALID;
    if (bld == NULL || P == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0))
        goto end;
    if (priv) {
        /* The public point is not part of the template: derive it, d*G. */
        d = BN_secure_new();
        if (d == NULL || !BN_bin2bn(v, (int)len, d) || BN_is_zero(d) ||
            BN_cmp(d, EC_GROUP_get0_order(g)) >= 0 || !EC_POINT_mul(g, P, d, NULL, NULL, NULL) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
            goto end;
        ptlen = EC_POINT_point2oct(g, P, POINT_CONVERSION_UNCOMPRESSED, pt, sizeof(pt), NULL);
        v = pt;
        len = ptlen;
    }
    if (len == 0 || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, v, len))
        goto end;
    *out = from_params("EC", bld, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
    if (*out)
        rv = CKR_OK;
end:
    BN_clear_free(d);
    EC_POINT_free(P);
    EC_GROUP_free(g);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

/* Key material the template gives beside what the key is built from is answered from the key, so
 * it must say what the key says (PKCS#11 3.0 4.1.1): CKA_PUBLIC_KEY_INFO and CKA_MODULUS_BITS
 * must be the key's; CKA_KEYWARD_PKCS8 is the whole key, so no component may come with it; another
 * key type's attributes are inconsistent with this one. */
static CK_RV key_fields_check(const CK_ATTRIBUTE *t, CK_ULONG n, EVP_PKEY *pk, int p8)
{
    static const CK_ATTRIBUTE_TYPE rsa_only[] = {
        CKA_MODULUS,    CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,     CKA_PRIME_2,
        CKA_EXPONENT_1, CKA_EXPONENT_2,      CKA_COEFFICIENT,      CKA_MODULUS_BITS};
    static const CK_ATTRIBUTE_TYPE ec_only[] = {CKA_EC_PARAMS, CKA_EC_POINT, CKA_VALUE};
    int rsa = kwk_pkey_ktype(pk) == CKK_RSA;
    for (CK_ULONG i = 0; i < n; i++) {
        int r = kwk_attr_type_in(t[i].type, rsa_only, sizeof(rsa_only) / sizeof(rsa_only[0]));
        int e = kwk_attr_type_in(t[i].type, ec_only, sizeof(ec_only) / sizeof(ec_only[0]));
        if ((r && !rsa) || (e && rsa) || (p8 && (r || e)))
            return CKR_TEMPLATE_INCONSISTENT;
    }
    CK_ULONG bits;
    CK_RV rv = kwk_attr_ulong(t, n, CKA_MODULUS_BITS, &bits);
    if (rv == CKR_ATTRIBUTE_VALUE_INVALID)
        return rv;
    if (rv == CKR_OK && bits != (CK_ULONG)EVP_PKEY_get_bits(pk))
        return CKR_TEMPLATE_INCONSISTENT;
    const CK_ATTRIBUTE *spki = kwk_attr_get(t, n, CKA_PUBLIC_KEY_INFO);
    if (spki) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pk, &der);
        int same = len > 0 && (size_t)len == spki->ulValueLen && spki->pValue &&
                   memcmp(der, spki->pValue, (size_t)len) == 0;
        OPENSSL_free(der);
        if (!same)
            return CKR_TEMPLATE_INCONSISTENT;
    }
    return CKR_OK;
}

static CK_RV create_key(kwk_token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_CLASS cls,
                        CK_OBJECT_HANDLE *out)
{
    static const CK_ATTRIBUTE_TYPE priv_extra[] = {
        CKA_KEY_TYPE, CKA_MODULUS,       CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
        CKA_PRIME_2,  CKA_EXPONENT_1,    CKA_EXPONENT_2,      CKA_COEFFICIENT,      CKA_EC_PARAMS,
        CKA_VALUE,    CKA_KEYWARD_PKCS8, CKA_PUBLIC_KEY_INFO};
    static const CK_ATTRIBUTE_TYPE pub_extra[] = {
        CKA_KEY_TYPE, CKA_MODULUS,      CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
        CKA_EC_POINT, CKA_MODULUS_BITS, CKA_PUBLIC_KEY_INFO};
    int priv = cls == CKO_PRIVATE_KEY;
    kwk_new_obj m;
    CK_RV rv = kwk_tmpl_common(tmpl, n, cls, &m, priv ? priv_extra : pub_extra,
                               priv ? sizeof(priv_extra) / sizeof(priv_extra[0])
                                    : sizeof(pub_extra) / sizeof(pub_extra[0]));
    if (rv != CKR_OK)
        return rv;
    EVP_PKEY *pk = NULL;
    CK_ULONG kt = CK_UNAVAILABLE_INFORMATION;
    CK_RV krv = kwk_attr_ulong(tmpl, n, CKA_KEY_TYPE, &kt);
    const CK_ATTRIBUTE *p8 = priv ? kwk_attr_get(tmpl, n, CKA_KEYWARD_PKCS8) : NULL;
    if (krv == CKR_ATTRIBUTE_VALUE_INVALID)
        return krv;
    if (p8 != NULL) {
        const unsigned char *p = p8->pValue;
        pk = p ? d2i_AutoPrivateKey_ex(NULL, &p, (long)p8->ulValueLen, kwk_libctx(), NULL) : NULL;
        if (pk == NULL)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if (krv == CKR_OK && kt != kwk_pkey_ktype(pk)) {
            EVP_PKEY_free(pk);
            return CKR_TEMPLATE_INCONSISTENT;
        }
    } else if (krv != CKR_OK) {
        return CKR_TEMPLATE_INCOMPLETE;
    } else if (kt == CKK_RSA) {
        rv = build_rsa(tmpl, n, priv, &pk);
    } else if (kt == CKK_EC || kt == CKK_EC_EDWARDS) {
        rv = build_ec(tmpl, n, priv, kt, &pk);
    } else {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (rv == CKR_OK && pk && kwk_pkey_ktype(pk) == CK_UNAVAILABLE_INFORMATION)
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    if (rv == CKR_OK)
        rv = key_fields_check(tmpl, n, pk, p8 != NULL);
    if (rv == CKR_OK)
        rv = kwk_tmpl_usage(tmpl, n, cls, kwk_pkey_ktype(pk), &m.flags);
    kwk_serial ps = 0, pubs = 0;
    if (rv == CKR_OK && priv) {
        /* The public half nobody asked for: the private key's label, ID, subject and dates, no
         * usages beyond verification, no list. */
        kwk_new_obj pm = {0};
        memcpy(pm.id, m.id, m.id_len);
        pm.id_len = m.id_len;
        memcpy(pm.label, m.label, sizeof(pm.label));
        pm.x = m.x;
        rv = kwk_store_keypair(t, pk, &m, &pm, &ps, &pubs);
    } else if (rv == CKR_OK) {
        rv = kwk_store_public(t, pk, &m, &pubs);
    }
    EVP_PKEY_free(pk);
    if (rv == CKR_OK)
        *out = (CK_OBJECT_HANDLE)(priv ? ps : pubs);
    return rv;
}

static CK_RV create_cert(kwk_token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    static const CK_ATTRIBUTE_TYPE extra[] = {CKA_CERTIFICATE_TYPE,
                                              CKA_VALUE,
                                              CKA_ISSUER,
                                              CKA_SERIAL_NUMBER,
                                              CKA_CERTIFICATE_CATEGORY,
                                              CKA_CHECK_VALUE,
                                              CKA_URL,
                                              CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
                                              CKA_HASH_OF_ISSUER_PUBLIC_KEY,
                                              CKA_JAVA_MIDP_SECURITY_DOMAIN};
    kwk_new_obj m;
    CK_ULONG ct;
    CK_RV rv =
        kwk_tmpl_common(tmpl, n, CKO_CERTIFICATE, &m, extra, sizeof(extra) / sizeof(extra[0]));
    if (rv != CKR_OK)
        return rv;
    rv = kwk_attr_ulong(tmpl, n, CKA_CERTIFICATE_TYPE, &ct);
    if (rv != CKR_OK)
        return rv;
    if (ct != CKC_X_509)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    const CK_ATTRIBUTE *v = kwk_attr_get(tmpl, n, CKA_VALUE);
    if (v == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    const unsigned char *p = v->pValue;
    X509 *x = p ? d2i_X509(NULL, &p, (long)v->ulValueLen) : NULL;
    if (x == NULL || p != (const unsigned char *)v->pValue + v->ulValueLen) {
        X509_free(x);
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    rv = cert_field_check(tmpl, n, x);
    X509_free(x);
    if (rv == CKR_OK)
        rv = cert_extra(tmpl, n, v, &m.x);
    if (rv != CKR_OK)
        return rv;
    kwk_serial s;
    rv = kwk_store_cert(t, v->pValue, v->ulValueLen, &m, &s);
    if (rv == CKR_OK)
        *out = (CK_OBJECT_HANDLE)s;
    return rv;
}

CK_RV C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR out)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    CK_ULONG cls;
    if (out == NULL || (tmpl == NULL && n > 0))
        rv = CKR_ARGUMENTS_BAD;
    else if ((rv = kwk_attr_check(tmpl, n)) == CKR_OK && !(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    else if (rv == CKR_OK && (rv = kwk_attr_ulong(tmpl, n, CKA_CLASS, &cls)) != CKR_OK)
        rv = rv == CKR_TEMPLATE_INCOMPLETE ? rv : CKR_ATTRIBUTE_VALUE_INVALID;
    else if (rv == CKR_OK && kwk_token_need_login(s->tok))
        rv = CKR_USER_NOT_LOGGED_IN;
    if (rv != CKR_OK) {
        kwk_session_put(s);
        return rv;
    }
    pthread_mutex_lock(&kwk_lock);
    rv = kwk_token_open(s->tok);
    if (rv == CKR_OK) {
        if (cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY)
            rv = create_key(s->tok, tmpl, n, cls, out);
        else if (cls == CKO_CERTIFICATE)
            rv = create_cert(s->tok, tmpl, n, out);
        else
            rv = CKR_ATTRIBUTE_VALUE_INVALID; /* no data or secret key objects on this token */
    }
    if (rv == CKR_OK)
        kwk_objects_refresh(s->tok);
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = s->tok;
    kwk_object *o = kwk_object_find(t, oh);
    if (o == NULL && kwk_objects_refresh(t) == CKR_OK)
        o = kwk_object_find(t, oh);
    if (o == NULL || !kwk_object_visible(s, o))
        rv = CKR_OBJECT_HANDLE_INVALID;
    else if (o->kind == KWK_KIND_SECRET) {
        kwk_object_free(o);
        *o = t->objs[--t->nobjs];
    } else if (!(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    else if ((rv = kwk_store_remove(t, o)) == CKR_OK)
        kwk_objects_refresh(t);
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}
