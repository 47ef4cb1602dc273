/* SPDX-License-Identifier: Apache-2.0 */
/* An object's attribute values, answered from its description and public payload: read
 * (C_GetAttributeValue), matched against a template (C_FindObjects) and changed (label and ID
 * only, C_SetAttributeValue). */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "kwk.h"

typedef struct {
    unsigned char small[sizeof(CK_ULONG)];
    unsigned char *heap;
    const unsigned char *p;
    size_t len;
} aval;

static void aval_free(aval *v)
{
    OPENSSL_free(v->heap);
}

static CK_RV v_bool(aval *v, int b)
{
    v->small[0] = b ? CK_TRUE : CK_FALSE;
    v->p = v->small;
    v->len = 1;
    return CKR_OK;
}
static CK_RV v_ulong(aval *v, CK_ULONG u)
{
    memcpy(v->small, &u, sizeof(u));
    v->p = v->small;
    v->len = sizeof(u);
    return CKR_OK;
}
static CK_RV v_bytes(aval *v, const void *p, size_t len)
{
    v->p = p;
    v->len = len;
    return CKR_OK;
}
static CK_RV v_heap(aval *v, unsigned char *p, int len)
{
    if (len < 0 || p == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    v->heap = p;
    v->p = p;
    v->len = (size_t)len;
    return CKR_OK;
}

static CK_RV v_bn(aval *v, EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pk, name, &bn))
        return CKR_ATTRIBUTE_TYPE_INVALID;
    int n = BN_num_bytes(bn);
    unsigned char *b = OPENSSL_malloc(n ? (size_t)n : 1);
    if (b)
        BN_bn2bin(bn, b);
    BN_free(bn);
    return v_heap(v, b, n);
}

/* CKA_EC_PARAMS: DER OID of the curve. */
static CK_RV v_ec_params(aval *v, EVP_PKEY *pk)
{
    char name[64];
    int nid;
    if (EVP_PKEY_is_a(pk, "ED25519"))
        nid = NID_ED25519;
    else if (EVP_PKEY_is_a(pk, "ED448"))
        nid = NID_ED448;
    else if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                            NULL))
        nid = OBJ_txt2nid(name);
    else
        return CKR_ATTRIBUTE_TYPE_INVALID;
    unsigned char *der = NULL;
    int len = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der);
    return v_heap(v, der, len);
}

/* CKA_EC_POINT: the public point (or Edwards key) as a DER OCTET STRING. */
static CK_RV v_ec_point(aval *v, EVP_PKEY *pk)
{
    unsigned char pt[256];
    size_t len = sizeof(pt);
    if (EVP_PKEY_is_a(pk, "EC")) {
        if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
                                             &len))
            return CKR_ATTRIBUTE_TYPE_INVALID;
    } else if (!EVP_PKEY_get_raw_public_key(pk, pt, &len)) {
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int dl = -1;
    if (os && ASN1_OCTET_STRING_set(os, pt, (int)len))
        dl = i2d_ASN1_OCTET_STRING(os, &der);
    ASN1_OCTET_STRING_free(os);
    return v_heap(v, der, dl);
}

static CK_RV v_cert_field(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    if (type == CKA_CHECK_VALUE) { /* the first 3 bytes of the SHA-1 of CKA_VALUE */
        unsigned char md[EVP_MAX_MD_SIZE], *cv = OPENSSL_malloc(3);
        const EVP_MD *sha1 = kwk_md(CKM_SHA_1);
        if (cv == NULL || sha1 == NULL || !EVP_Digest(o->der, o->der_len, md, NULL, sha1, NULL)) {
            OPENSSL_free(cv);
            return kwk_rv_ossl("certificate check value");
        }
        memcpy(cv, md, 3);
        return v_heap(v, cv, 3);
    }
    const unsigned char *p = o->der;
    X509 *x = d2i_X509(NULL, &p, (long)o->der_len);
    unsigned char *der = NULL;
    int len = -1;
    if (x == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    if (type == CKA_SUBJECT)
        len = i2d_X509_NAME(X509_get_subject_name(x), &der);
    else if (type == CKA_ISSUER)
        len = i2d_X509_NAME(X509_get_issuer_name(x), &der);
    else
        len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der);
    X509_free(x);
    return v_heap(v, der, len);
}

/* Each helper below answers the attributes of one group; AV_NEXT: not one of its attributes,
 * ask the next group. The order of the groups is the order attr_value asks them in. */
#define AV_NEXT (~(CK_RV)0)

/* Every object: storage attributes, label, ID (not a secret key's), dates. */
static CK_RV v_any(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    case CKA_CLASS:
        return v_ulong(v, o->cls);
    case CKA_TOKEN:
        return v_bool(v, o->kind != KWK_KIND_SECRET);
    case CKA_PRIVATE:
        return v_bool(v, (o->flags & KWK_F_PRIVATE) != 0);
    case CKA_MODIFIABLE:
        return v_bool(v, !(o->flags & KWK_F_READONLY));
    case CKA_DESTROYABLE:
        return v_bool(v, 1);
    case CKA_COPYABLE:
        return v_bool(v, 0);
    case CKA_LABEL:
        return v_bytes(v, o->label, strlen(o->label));
    case CKA_KEYWARD_SERIAL:
        return v_ulong(v, (CK_ULONG)o->serial);
    case CKA_ID:
        if (o->cls == CKO_SECRET_KEY)
            break;
        return v_bytes(v, o->id, o->id_len);
    case CKA_START_DATE:
        return v_bytes(v, o->x.start, o->x.start_len);
    case CKA_END_DATE:
        return v_bytes(v, o->x.end, o->x.end_len);
    }
    return AV_NEXT;
}

/* A certificate: the last group asked for one. */
static CK_RV v_cert(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    case CKA_CERTIFICATE_TYPE:
        return v_ulong(v, CKC_X_509);
    case CKA_CERTIFICATE_CATEGORY:
        return v_ulong(v, o->x.category);
    case CKA_JAVA_MIDP_SECURITY_DOMAIN:
        return v_ulong(v, 0);
    case CKA_TRUSTED:
        return v_bool(v, 0);
    case CKA_VALUE:
        return v_bytes(v, o->der, o->der_len);
    case CKA_URL: /* the certificate itself is here: no URL, no hashes standing in for it */
    case CKA_HASH_OF_SUBJECT_PUBLIC_KEY:
    case CKA_HASH_OF_ISSUER_PUBLIC_KEY:
        return v_bytes(v, "", 0);
    case CKA_SUBJECT:
    case CKA_ISSUER:
    case CKA_SERIAL_NUMBER:
    case CKA_CHECK_VALUE:
        return v_cert_field(v, o, type);
    }
    return CKR_ATTRIBUTE_TYPE_INVALID;
}

/* Every key: type, origin, allowed mechanisms, derive. */
static CK_RV v_key(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    int priv = o->cls == CKO_PRIVATE_KEY, pubk = o->cls == CKO_PUBLIC_KEY;
    int local = (o->flags & KWK_F_LOCAL) != 0;

    switch (type) {
    case CKA_KEY_TYPE:
        return v_ulong(v, o->ktype);
    case CKA_LOCAL:
        return v_bool(v, local);
    case CKA_ALLOWED_MECHANISMS:
        /* empty: no list, every mechanism of the key's type (as SoftHSM2 answers) */
        return v_bytes(v, o->mechs.m, o->mechs.n * sizeof(CK_MECHANISM_TYPE));
    case CKA_DERIVE:
        return v_bool(v, (priv || pubk) && o->ktype != CKK_RSA && (o->flags & KWK_F_DERIVE));
    case CKA_KEY_GEN_MECHANISM:
        if (!local)
            return v_ulong(v, CK_UNAVAILABLE_INFORMATION);
        return v_ulong(v, o->ktype == CKK_RSA  ? CKM_RSA_PKCS_KEY_PAIR_GEN
                          : o->ktype == CKK_EC ? CKM_EC_KEY_PAIR_GEN
                                               : CKM_EC_EDWARDS_KEY_PAIR_GEN);
    }
    return AV_NEXT;
}

/* A secret key (a session object): the last group asked for one. */
static CK_RV v_secret(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    int sens = (o->flags & KWK_F_SENSITIVE) != 0, extr = (o->flags & KWK_F_EXTRACTABLE) != 0;
    switch (type) {
    case CKA_VALUE:
        if (sens || !extr)
            return CKR_ATTRIBUTE_SENSITIVE;
        return v_bytes(v, o->der, o->der_len);
    case CKA_VALUE_LEN:
        return v_ulong(v, o->der_len);
    case CKA_SENSITIVE:
    case CKA_ALWAYS_SENSITIVE:
        return v_bool(v, sens);
    case CKA_EXTRACTABLE:
        return v_bool(v, extr);
    case CKA_NEVER_EXTRACTABLE:
        return v_bool(v, !extr);
    case CKA_ENCRYPT:
    case CKA_DECRYPT:
    case CKA_SIGN:
    case CKA_VERIFY:
    case CKA_WRAP:
    case CKA_UNWRAP:
        return v_bool(v, 0);
    }
    return CKR_ATTRIBUTE_TYPE_INVALID;
}

/* A private key: mode, usages, and the private components, which are never given out. */
static CK_RV v_private(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    int local = (o->flags & KWK_F_LOCAL) != 0;

    switch (type) {
    case CKA_KEYWARD_MODE:
        return v_bytes(
            v, kwk_mode_name(o->kind == KWK_KIND_PRIV ? KWK_MODE_KERNEL : KWK_MODE_SOFTWARE),
            o->kind == KWK_KIND_PRIV ? 6 : 8);
    case CKA_SENSITIVE:
        return v_bool(v, 1);
    case CKA_EXTRACTABLE:
    case CKA_SIGN_RECOVER:
    case CKA_UNWRAP:
    case CKA_WRAP_WITH_TRUSTED:
    case CKA_ALWAYS_AUTHENTICATE:
        return v_bool(v, 0);
    case CKA_ALWAYS_SENSITIVE:
    case CKA_NEVER_EXTRACTABLE:
        return v_bool(v, local);
    case CKA_SIGN:
        return v_bool(v, (o->flags & KWK_F_SIGN) != 0);
    case CKA_DECRYPT:
        return v_bool(v, o->ktype == CKK_RSA && (o->flags & KWK_F_DECRYPT));
    case CKA_SUBJECT:
        return v_bytes(v, o->x.subject, o->x.subject_len);
    case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1:
    case CKA_PRIME_2:
    case CKA_EXPONENT_1:
    case CKA_EXPONENT_2:
    case CKA_COEFFICIENT:
        if (o->ktype != CKK_RSA)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        return CKR_ATTRIBUTE_SENSITIVE;
    case CKA_VALUE:
        if (o->ktype == CKK_RSA)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        return CKR_ATTRIBUTE_SENSITIVE;
    }
    return AV_NEXT;
}

/* A public key's usages. */
static CK_RV v_public(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    switch (type) {
    case CKA_SUBJECT:
        return v_bytes(v, o->x.subject, o->x.subject_len);
    case CKA_VERIFY:
        return v_bool(v, 1);
    case CKA_ENCRYPT:
        return v_bool(v, o->ktype == CKK_RSA && (o->flags & KWK_F_ENCRYPT));
    case CKA_VERIFY_RECOVER:
    case CKA_WRAP:
    case CKA_TRUSTED:
        return v_bool(v, 0);
    case CKA_VALUE:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    return AV_NEXT;
}

/* The public half of a key pair (either half): the last group asked for one. */
static CK_RV v_public_half(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    EVP_PKEY *pk = o->pub;
    if (pk == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    if (type == CKA_PUBLIC_KEY_INFO) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pk, &der);
        return v_heap(v, der, len);
    }
    if (o->ktype == CKK_RSA) {
        switch (type) {
        case CKA_MODULUS:
            return v_bn(v, pk, OSSL_PKEY_PARAM_RSA_N);
        case CKA_PUBLIC_EXPONENT:
            return v_bn(v, pk, OSSL_PKEY_PARAM_RSA_E);
        case CKA_MODULUS_BITS:
            return v_ulong(v, (CK_ULONG)EVP_PKEY_get_bits(pk));
        }
    } else if (o->ktype == CKK_EC || o->ktype == CKK_EC_EDWARDS) {
        switch (type) {
        case CKA_EC_PARAMS:
            return v_ec_params(v, pk);
        case CKA_EC_POINT:
            return v_ec_point(v, pk);
        }
    }
    return CKR_ATTRIBUTE_TYPE_INVALID;
}

static CK_RV attr_value(const kwk_object *o, CK_ATTRIBUTE_TYPE type, aval *v)
{
    int key = o->cls == CKO_PRIVATE_KEY || o->cls == CKO_PUBLIC_KEY || o->cls == CKO_SECRET_KEY;
    CK_RV rv = v_any(v, o, type);

    if (rv != AV_NEXT)
        return rv;
    if (o->cls == CKO_CERTIFICATE)
        return v_cert(v, o, type);
    if (!key)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    if ((rv = v_key(v, o, type)) != AV_NEXT)
        return rv;
    if (o->cls == CKO_SECRET_KEY)
        return v_secret(v, o, type);
    rv = o->cls == CKO_PRIVATE_KEY ? v_private(v, o, type) : v_public(v, o, type);
    if (rv != AV_NEXT)
        return rv;
    return v_public_half(v, o, type);
}

CK_RV kwk_object_get_attrs(kwk_token *t, const kwk_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_RV ret = CKR_OK;
    (void)t;
    for (CK_ULONG i = 0; i < n; i++) {
        aval v = {0};
        CK_RV rv = attr_value(o, tmpl[i].type, &v);
        if (rv == CKR_OK)
            rv = kwk_attr_put(&tmpl[i], v.p, v.len);
        else
            tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        aval_free(&v);
        /* Keep going: every attribute gets its answer; report the first problem. */
        if (rv != CKR_OK && ret == CKR_OK)
            ret = rv;
    }
    return ret;
}

int kwk_object_match(kwk_token *t, const kwk_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    (void)t;
    for (CK_ULONG i = 0; i < n; i++) {
        aval v = {0};
        int ok =
            attr_value(o, tmpl[i].type, &v) == CKR_OK && v.len == tmpl[i].ulValueLen &&
            (v.len == 0 || (tmpl[i].pValue != NULL && memcmp(v.p, tmpl[i].pValue, v.len) == 0));
        aval_free(&v);
        if (!ok)
            return 0;
    }
    return 1;
}

CK_RV kwk_object_set_attrs(kwk_token *t, kwk_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    if (o->flags & KWK_F_READONLY)
        return CKR_ACTION_PROHIBITED; /* made with CKA_MODIFIABLE=FALSE */
    char label[KWK_MAX_LABEL];
    unsigned char id[KWK_MAX_ID];
    size_t id_len = o->id_len;
    memcpy(label, o->label, sizeof(label));
    memcpy(id, o->id, sizeof(id));
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        if (a->type == CKA_LABEL) {
            if (a->ulValueLen >= KWK_MAX_LABEL ||
                (a->ulValueLen && memchr(a->pValue, '\0', a->ulValueLen)))
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(label, a->pValue, a->ulValueLen);
            label[a->ulValueLen] = '\0';
        } else if (a->type == CKA_ID && o->cls != CKO_SECRET_KEY) {
            if (a->ulValueLen > KWK_MAX_ID)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(id, a->pValue, a->ulValueLen);
            id_len = a->ulValueLen;
        } else {
            aval v = {0};
            CK_RV rv = attr_value(o, a->type, &v);
            aval_free(&v);
            return rv == CKR_ATTRIBUTE_TYPE_INVALID ? rv : CKR_ATTRIBUTE_READ_ONLY;
        }
    }
    memcpy(o->label, label, sizeof(label));
    memcpy(o->id, id, sizeof(id));
    o->id_len = id_len;
    if (o->kind == KWK_KIND_SECRET)
        return CKR_OK;
    return kwk_store_meta(t, o);
}
