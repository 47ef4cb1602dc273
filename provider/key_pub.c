/* SPDX-License-Identifier: Apache-2.0 */
/* A token key's public half: read from the object, its public key object or its certificate,
 * and typed (an RSA key whose mechanisms are all PSS is RSA-PSS). */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kwp.h"

static EVP_PKEY *pub_from_params(kwp_ctx *ctx, OSSL_PARAM_BLD *bld, const char *alg)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(ctx->hlibctx, alg, KWP_HELPER_PROPQ);
    EVP_PKEY *pk = NULL;

    if (params != NULL && pc != NULL && EVP_PKEY_fromdata_init(pc) == 1)
        (void)EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *rsa_pub(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char *n = NULL, *e = NULL;
    CK_ULONG nl, el;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pk = NULL;

    if (kw_p11_attr(tok, s, h, CKA_MODULUS, &n, &nl) != KW_OK ||
        kw_p11_attr(tok, s, h, CKA_PUBLIC_EXPONENT, &e, &el) != KW_OK)
        goto done;
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn == NULL || be == NULL || bld == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto done;
    pk = pub_from_params(ctx, bld, "RSA");
done:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return pk;
}

static EVP_PKEY *ec_pub(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char *par = NULL, *pt = NULL;
    CK_ULONG parl, ptl;
    const unsigned char *p;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pk = NULL;
    const char *curve;

    if (kw_p11_attr(tok, s, h, CKA_EC_PARAMS, &par, &parl) != KW_OK ||
        kw_p11_attr(tok, s, h, CKA_EC_POINT, &pt, &ptl) != KW_OK)
        goto done;
    p = par;
    if ((oid = d2i_ASN1_OBJECT(NULL, &p, (long)parl)) == NULL ||
        (curve = OBJ_nid2sn(OBJ_obj2nid(oid))) == NULL)
        goto done;
    /* CKA_EC_POINT is a DER OCTET STRING; a few tokens give the bare point. */
    p = pt;
    os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)ptl);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0))
        goto done;
    if (os != NULL && p == pt + ptl) {
        if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                              ASN1_STRING_get0_data(os),
                                              (size_t)ASN1_STRING_length(os)))
            goto done;
    } else if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptl)) {
        goto done;
    }
    pk = pub_from_params(ctx, bld, "EC");
done:
    OSSL_PARAM_BLD_free(bld);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
    free(par);
    free(pt);
    return pk;
}

static EVP_PKEY *cert_pub(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char *der = NULL;
    CK_ULONG len;
    const unsigned char *p;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;

    if (kw_p11_attr(tok, s, h, CKA_VALUE, &der, &len) != KW_OK)
        return NULL;
    p = der;
    x = X509_new_ex(ctx->hlibctx, KWP_HELPER_PROPQ);
    if (x != NULL && d2i_X509(&x, &p, (long)len) != NULL)
        pk = X509_get_pubkey(x);
    X509_free(x);
    free(der);
    return pk;
}

/* CKA_EC_PARAMS of an Edwards key: the curve OID or its name as a PrintableString. */
static const char *ed_alg(const unsigned char *par, CK_ULONG len)
{
    static const unsigned char oid25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    static const unsigned char oid448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};

    if (len == sizeof(oid25519) && memcmp(par, oid25519, len) == 0)
        return "ED25519";
    if (len == sizeof(oid448) && memcmp(par, oid448, len) == 0)
        return "ED448";
    if (len > 2 && par[0] == 0x13 && par[1] == len - 2) {
        if (len - 2 == 12 && memcmp(par + 2, "edwards25519", 12) == 0)
            return "ED25519";
        if (len - 2 == 10 && memcmp(par + 2, "edwards448", 10) == 0)
            return "ED448";
    }
    return NULL;
}

static EVP_PKEY *ed_pub(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char *par = NULL, *pt = NULL;
    CK_ULONG parl, ptl;
    const unsigned char *p, *raw;
    ASN1_OCTET_STRING *os = NULL;
    EVP_PKEY *pk = NULL;
    const char *alg;
    size_t rawlen;

    if (kw_p11_attr(tok, s, h, CKA_EC_PARAMS, &par, &parl) != KW_OK ||
        kw_p11_attr(tok, s, h, CKA_EC_POINT, &pt, &ptl) != KW_OK ||
        (alg = ed_alg(par, parl)) == NULL)
        goto done;
    p = pt;
    os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)ptl);
    if (os != NULL && p == pt + ptl) {
        raw = ASN1_STRING_get0_data(os);
        rawlen = (size_t)ASN1_STRING_length(os);
    } else {
        raw = pt;
        rawlen = ptl;
    }
    pk = EVP_PKEY_new_raw_public_key_ex(ctx->hlibctx, alg, KWP_HELPER_PROPQ, raw, rawlen);
done:
    ASN1_OCTET_STRING_free(os);
    free(par);
    free(pt);
    return pk;
}

static EVP_PKEY *obj_pub(kwp_ctx *ctx, CK_KEY_TYPE type, kw_p11_token *tok, CK_SESSION_HANDLE s,
                         CK_OBJECT_HANDLE h)
{
    switch (type) {
    case CKK_RSA:
        return rsa_pub(ctx, tok, s, h);
    case CKK_EC:
        return ec_pub(ctx, tok, s, h);
    default:
        return ed_pub(ctx, tok, s, h);
    }
}

static int is_pss_mech(CK_MECHANISM_TYPE m)
{
    return m == CKM_RSA_PKCS_PSS || m == CKM_SHA1_RSA_PKCS_PSS || m == CKM_SHA224_RSA_PKCS_PSS ||
           m == CKM_SHA256_RSA_PKCS_PSS || m == CKM_SHA384_RSA_PKCS_PSS ||
           m == CKM_SHA512_RSA_PKCS_PSS;
}

/* An object's CKA_ALLOWED_MECHANISMS; *n = 0 (and NULL) when it has none, i.e. no limit. */
static CK_MECHANISM_TYPE *allowed_mechs(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                                        CK_ULONG *n)
{
    unsigned char *v = NULL;
    CK_ULONG len = 0;
    CK_MECHANISM_TYPE *m = NULL;

    *n = 0;
    if (kw_p11_attr(tok, s, h, CKA_ALLOWED_MECHANISMS, &v, &len) != KW_OK)
        return NULL;
    if (len >= sizeof(*m) && (m = malloc(len)) != NULL) {
        memcpy(m, v, len);
        *n = len / sizeof(*m);
    }
    free(v);
    return m;
}

/* Are an object's allowed mechanisms all PSS? -1 when it lists none. */
static int mechs_all_pss(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_ULONG n;
    CK_MECHANISM_TYPE *m = allowed_mechs(tok, s, h, &n);
    int only = n > 0 ? 1 : -1;

    for (CK_ULONG i = 0; i < n; i++)
        only &= is_pss_mech(m[i]);
    free(m);
    return only;
}

/* The one object of a class with the key's CKA_ID, or CK_INVALID_HANDLE. */
static CK_OBJECT_HANDLE find_by_id(kwp_key *k, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, k->id, k->idlen}};
    CK_OBJECT_HANDLE o;
    CK_ULONG cnt = 0;

    if (k->idlen == 0 || kw_p11_find(k->tok, s, t, 2, &o, 1, &cnt) != KW_OK || cnt != 1)
        return CK_INVALID_HANDLE;
    return o;
}

/* Is this RSA key an RSA-PSS key to OpenSSL? Both halves of a pair must answer alike, or the
 * private key does not match its public key or certificate (EVP_PKEY_eq compares the types
 * first). In order: the type of the key in its certificate (same CKA_ID), so that key and
 * certificate match; the object's own CKA_ALLOWED_MECHANISMS (all PSS); those of the other
 * half (pkcs11-tool sets them on the private key only), when it is visible in the session. */
static int rsa_is_pss(kwp_ctx *ctx, kwp_key *k, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                      CK_OBJECT_CLASS cls)
{
    CK_OBJECT_HANDLE o = find_by_id(k, s, CKO_CERTIFICATE);
    int r;

    if (o != CK_INVALID_HANDLE) {
        EVP_PKEY *pk = cert_pub(ctx, k->tok, s, o);
        if (pk != NULL) {
            r = EVP_PKEY_is_a(pk, "RSA-PSS");
            EVP_PKEY_free(pk);
            return r;
        }
    }
    if ((r = mechs_all_pss(k->tok, s, h)) >= 0)
        return r;
    o = find_by_id(k, s, cls == CKO_PRIVATE_KEY ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY);
    return o != CK_INVALID_HANDLE && mechs_all_pss(k->tok, s, o) == 1;
}

static EVP_PKEY *as_rsa_pss(kwp_ctx *ctx, EVP_PKEY *rsa)
{
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;

    if (bld != NULL && EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n) &&
        EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        pk = pub_from_params(ctx, bld, "RSA-PSS");
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pk;
}

/* The public half of a private key: from the object itself, else its public key object or its
 * certificate (same CKA_ID). The error stack is left alone: absence is normal here. */
static EVP_PKEY *find_pub(kwp_ctx *ctx, kwp_key *k, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE t[2];
    CK_OBJECT_HANDLE o;
    CK_ULONG cnt;
    EVP_PKEY *pk = obj_pub(ctx, k->type, k->tok, s, h);

    if (pk != NULL || k->idlen == 0)
        return pk;
    t[1] = (CK_ATTRIBUTE){CKA_ID, k->id, k->idlen};
    cls = CKO_PUBLIC_KEY;
    t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    if (kw_p11_find(k->tok, s, t, 2, &o, 1, &cnt) == KW_OK && cnt == 1)
        pk = obj_pub(ctx, k->type, k->tok, s, o);
    if (pk != NULL)
        return pk;
    cls = CKO_CERTIFICATE;
    if (kw_p11_find(k->tok, s, t, 2, &o, 1, &cnt) == KW_OK && cnt == 1)
        pk = cert_pub(ctx, k->tok, s, o);
    return pk;
}

/* The key's public half (k->pub), its allowed mechanisms, and whether an RSA key is RSA-PSS
 * only. 0 with a kw_err set when no public half is found. */
int kwp_key_load_public(kwp_ctx *ctx, kwp_key *k, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                        CK_OBJECT_CLASS cls)
{
    k->pub = find_pub(ctx, k, s, h);
    if (k->pub == NULL) {
        kw_err_set(KW_ERR_OBJECT_NOT_FOUND,
                   "no public key found for key \"%s\" on token: keyward needs the public key "
                   "(a public key object or certificate with the same CKA_ID)",
                   k->label ? k->label : "(no label)");
        return 0;
    }
    if (k->has_private)
        k->allowed = allowed_mechs(k->tok, s, h, &k->nallowed);
    if (k->type == CKK_RSA && !EVP_PKEY_is_a(k->pub, "RSA-PSS") && rsa_is_pss(ctx, k, s, h, cls)) {
        EVP_PKEY *pss = as_rsa_pss(ctx, k->pub);
        if (pss != NULL) {
            EVP_PKEY_free(k->pub);
            k->pub = pss;
        }
    }
    if (k->type == CKK_RSA && EVP_PKEY_is_a(k->pub, "RSA-PSS"))
        k->alg = "RSA-PSS";
    return 1;
}
