/* SPDX-License-Identifier: Apache-2.0 */
/* Key objects: a reference to a token key (never its value) plus its public half. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp.h"

kwp_key *kwp_key_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg)
{
    kwp_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->magic = KWP_KEY_MAGIC;
    atomic_init(&k->refs, 1);
    k->pctx = ctx;
    k->type = type;
    k->alg = alg;
    k->handle = CK_INVALID_HANDLE;
    k->pin.conf_pin_source = ctx->pin_source;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

kwp_key *kwp_key_ref(kwp_key *k)
{
    atomic_fetch_add(&k->refs, 1);
    return k;
}

void kwp_key_free(kwp_key *k)
{
    if (k == NULL || atomic_fetch_sub(&k->refs, 1) > 1)
        return;
    EVP_PKEY_free(k->pub);
    free(k->allowed);
    free(k->uri);
    if (k->puri != NULL)
        p11_kit_uri_free(k->puri);
    free(k->id);
    free(k->label);
    kw_secure_strfree(k->pin_value);
    free(k->pin_source);
    pthread_mutex_destroy(&k->lock);
    k->magic = 0;
    free(k);
}

int kwp_key_allows(const kwp_key *k, CK_MECHANISM_TYPE m)
{
    if (k->nallowed == 0)
        return 1;
    for (CK_ULONG i = 0; i < k->nallowed; i++)
        if (k->allowed[i] == m)
            return 1;
    return 0;
}

size_t kwp_key_max_size(const kwp_key *k)
{
    return k->pub != NULL ? (size_t)EVP_PKEY_get_size(k->pub) : 0;
}

char *kwp_key_make_uri(const CK_TOKEN_INFO *ti, const unsigned char *id, CK_ULONG idlen,
                       const char *label, CK_OBJECT_CLASS cls)
{
    P11KitUri *uri = p11_kit_uri_new();
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    *p11_kit_uri_get_token_info(uri) = *ti;
    if (idlen > 0) {
        CK_ATTRIBUTE a = {CKA_ID, (void *)id, idlen};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (label != NULL) {
        CK_ATTRIBUTE a = {CKA_LABEL, (void *)label, strlen(label)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    {
        CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}

/* ---- public half ---- */

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

kwp_key *kwp_key_from_object(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s,
                             CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls, const kw_pin_ctx *pin)
{
    CK_KEY_TYPE type;
    CK_ULONG len;
    unsigned char *label = NULL;
    kwp_key *k;
    kw_err e;

    if (kw_p11_attr_ulong(tok, s, h, CKA_KEY_TYPE, &type) != KW_OK)
        return NULL;
    if (type != CKK_RSA && type != CKK_EC && type != CKK_EC_EDWARDS) {
        kw_err_set(KW_ERR_KEY_USAGE, "key type 0x%lx is not supported by keyward yet",
                   (unsigned long)type);
        return NULL;
    }
    k = kwp_key_new(ctx, type, type == CKK_RSA ? "RSA" : type == CKK_EC ? "EC" : NULL);
    if (k == NULL)
        return NULL;
    k->tok = tok;
    k->tokinfo = tok->info;
    k->handle = h;
    k->gen = kw_p11_module_gen(tok->mod);
    k->has_private = cls == CKO_PRIVATE_KEY;
    if (kw_p11_attr(tok, s, h, CKA_ID, &k->id, &k->idlen) != KW_OK)
        k->idlen = 0;
    if (kw_p11_attr(tok, s, h, CKA_LABEL, &label, &len) == KW_OK) {
        k->label = strndup((char *)label, len);
        free(label);
    }
    if (k->has_private &&
        kw_p11_attr_bool(tok, s, h, CKA_ALWAYS_AUTHENTICATE, &k->always_auth) != KW_OK)
        k->always_auth = CK_FALSE;
    if (pin != NULL) {
        if (pin->uri_pin_value != NULL)
            k->pin_value = kw_secure_strndup(pin->uri_pin_value, 256);
        if (pin->uri_pin_source != NULL)
            k->pin_source = strdup(pin->uri_pin_source);
        k->pin.uri_pin_value = k->pin_value;
        k->pin.uri_pin_source = k->pin_source;
    }
    k->uri = kwp_key_make_uri(&tok->info, k->id, k->idlen, k->label, cls);
    if (k->uri == NULL || (e = kw_uri_parse(k->uri, &k->puri)) != KW_OK) {
        kw_err_set(KW_ERR_MEMORY, "cannot build the key's URI");
        kwp_key_free(k);
        return NULL;
    }
    k->pub = find_pub(ctx, k, s, h);
    if (k->pub == NULL) {
        kw_err_set(KW_ERR_OBJECT_NOT_FOUND,
                   "no public key found for key \"%s\" on token: keyward needs the public key "
                   "(a public key object or certificate with the same CKA_ID)",
                   k->label ? k->label : "(no label)");
        kwp_key_free(k);
        return NULL;
    }
    if (k->has_private)
        k->allowed = allowed_mechs(tok, s, h, &k->nallowed);
    if (type == CKK_RSA && !EVP_PKEY_is_a(k->pub, "RSA-PSS") && rsa_is_pss(ctx, k, s, h, cls)) {
        EVP_PKEY *pss = as_rsa_pss(ctx, k->pub);
        if (pss != NULL) {
            EVP_PKEY_free(k->pub);
            k->pub = pss;
        }
    }
    if (type == CKK_RSA && EVP_PKEY_is_a(k->pub, "RSA-PSS"))
        k->alg = "RSA-PSS";
    k->bits = EVP_PKEY_get_bits(k->pub);
    if (type == CKK_EC_EDWARDS)
        k->alg = EVP_PKEY_is_a(k->pub, "ED448") ? "ED448" : "ED25519";
    kw_err_clear();
    KW_DEBUG("key", "opened %s key %s (%d bits)", k->alg, k->uri, k->bits);
    return k;
}

/* Find the key's object again after fork or token loss (handles are per session state). */
static kw_err key_refind(kwp_key *k)
{
    kw_p11_module *mod = kwp_module(k->pctx);
    kw_p11_token **toks = NULL;
    size_t n = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = k->has_private ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[3];
    CK_ULONG nt = 0, cnt = 0;
    CK_OBJECT_HANDLE o;
    int login;
    kw_err e;

    if (mod == NULL)
        return kw_err_last(NULL);
    if ((e = kw_p11_find_tokens(mod, k->puri, &toks, &n)) != KW_OK)
        return e;
    if (n == 0) {
        free(toks);
        return kw_err_set(KW_ERR_TOKEN_GONE, "token of key %s is not present", k->uri);
    }
    k->tok = toks[0];
    free(toks);
    login = (k->tok->info.flags & CKF_LOGIN_REQUIRED) && k->has_private;
    if ((e = kw_p11_session_get(k->tok, login, &k->pin, &s)) != KW_OK)
        return e;
    if (login) {
        /* Someone logged the token out (another user of the module in this process, or the
         * token itself): private objects are invisible until we log in again. */
        CK_SESSION_INFO si;
        if (KW_P11_CALL(k->tok->mod, C_GetSessionInfo, s, &si) == CKR_OK &&
            si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS &&
            (e = kw_p11_login(k->tok, s, &k->pin)) != KW_OK) {
            kw_p11_session_put(k->tok, s, CKR_OK);
            return e;
        }
    }
    t[nt++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    if (k->idlen > 0)
        t[nt++] = (CK_ATTRIBUTE){CKA_ID, k->id, k->idlen};
    if (k->label != NULL)
        t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, k->label, strlen(k->label)};
    e = kw_p11_find(k->tok, s, t, nt, &o, 1, &cnt);
    kw_p11_session_put(k->tok, s, CKR_OK);
    if (e != KW_OK)
        return e;
    if (cnt == 0)
        return kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "key %s is no longer on its token", k->uri);
    k->handle = o;
    k->gen = kw_p11_module_gen(k->tok->mod);
    KW_DEBUG("key", "re-found %s", k->uri);
    return KW_OK;
}

static const CK_FLAGS op_flag[] = {
    [KWP_OP_SIGN] = CKF_SIGN, [KWP_OP_DECRYPT] = CKF_DECRYPT, [KWP_OP_DERIVE] = CKF_DERIVE};

int kwp_key_ready(kwp_key *k)
{
    if (k == NULL || !k->has_private || k->tok == NULL || kw_p11_module_check(k->tok->mod) == KW_OK)
        return 1;
    kwp_raise_last(k->pctx);
    return 0;
}

/* Tries of one private-key operation when the token goes away or its state is re-read, with
 * back-off (20, 40, 80, 160 ms): a token that stays away fails in about 0.3 s. */
#define KWP_OP_ATTEMPTS 5

static CK_RV op_init(kw_p11_token *tok, CK_SESSION_HANDLE s, kwp_op op, CK_MECHANISM *mech,
                     CK_OBJECT_HANDLE h, const char **fn)
{
    switch (op) {
    case KWP_OP_SIGN:
        *fn = "C_SignInit";
        return KW_P11_CALL(tok->mod, C_SignInit, s, mech, h);
    case KWP_OP_DECRYPT:
        *fn = "C_DecryptInit";
        return KW_P11_CALL(tok->mod, C_DecryptInit, s, mech, h);
    default:
        return CKR_OK; /* C_DeriveKey has no separate init */
    }
}

/* ECDH: the shared secret becomes a session object, is read once and destroyed. */
static CK_RV op_derive(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                       CK_OBJECT_HANDLE h, unsigned char *out, size_t *outlen, const char **fn)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL f = CK_FALSE, t = CK_TRUE;
    CK_ULONG len = (CK_ULONG)*outlen;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},       {CKA_SENSITIVE, &f, sizeof(f)},
        {CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_VALUE_LEN, &len, sizeof(len)},
    };
    CK_ATTRIBUTE v = {CKA_VALUE, out, (CK_ULONG)*outlen};
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
    CK_RV rv;

    *fn = "C_DeriveKey";
    rv = KW_P11_CALL(tok->mod, C_DeriveKey, s, mech, h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]),
                     &secret);
    if (rv != CKR_OK)
        return rv;
    *fn = "C_GetAttributeValue";
    rv = KW_P11_CALL(tok->mod, C_GetAttributeValue, s, secret, &v, 1);
    if (rv == CKR_OK)
        *outlen = v.ulValueLen;
    (void)KW_P11_CALL(tok->mod, C_DestroyObject, s, secret);
    return rv;
}

static CK_RV op_run(kw_p11_token *tok, CK_SESSION_HANDLE s, kwp_op op, CK_MECHANISM *mech,
                    CK_OBJECT_HANDLE h, const unsigned char *in, size_t inlen, unsigned char *out,
                    size_t *outlen, const char **fn)
{
    CK_ULONG olen = (CK_ULONG)*outlen;
    CK_RV rv;

    switch (op) {
    case KWP_OP_SIGN:
        *fn = "C_Sign";
        rv = KW_P11_CALL(tok->mod, C_Sign, s, (CK_BYTE *)in, inlen, out, &olen);
        break;
    case KWP_OP_DECRYPT:
        *fn = "C_Decrypt";
        rv = KW_P11_CALL(tok->mod, C_Decrypt, s, (CK_BYTE *)in, inlen, out, &olen);
        break;
    default:
        return op_derive(tok, s, mech, h, out, outlen, fn);
    }
    if (rv == CKR_OK)
        *outlen = olen;
    return rv;
}

int kwp_key_private_op(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                       size_t inlen, unsigned char *out, size_t *outlen)
{
    return kwp_key_private_op_st(k, op, mech, in, inlen, out, outlen, NULL);
}

int kwp_key_private_op_st(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                          size_t inlen, unsigned char *out, size_t *outlen, kwp_op_status *st)
{
    kw_p11_token *tok;
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s;
    CK_RV rv = CKR_OK;
    const char *fn = "";
    kw_err e;
    static const char *const verbs[] = {"sign", "decrypt", "derive"};

    if (st != NULL) {
        st->rv = CKR_GENERAL_ERROR; /* failed before reaching the token */
        st->fn = "";
    }

    if (!k->has_private) {
        kw_err_set(KW_ERR_KEY_USAGE, "key %s is a public key: no private key to %s with", k->uri,
                   verbs[op]);
        kwp_raise_last(k->pctx);
        return 0;
    }
    if (k->ambiguous) {
        /* Listing may show every match; using an arbitrary one of them must not happen. */
        kw_err_set(KW_ERR_AMBIGUOUS,
                   "the URI this key was loaded with matches more than one private key: add "
                   "id= or object= to choose one (this one is %s)",
                   k->uri);
        kwp_raise_last(k->pctx);
        return 0;
    }
    for (int attempt = 0; attempt < KWP_OP_ATTEMPTS; attempt++) {
        if (attempt > 0)
            nanosleep(&(struct timespec){0, (20L << attempt) * 1000 * 1000}, NULL);
        pthread_mutex_lock(&k->lock);
        e = KW_OK;
        if ((kw_p11_module_check(k->tok->mod)) != KW_OK ||
            k->gen != kw_p11_module_gen(k->tok->mod) || !k->tok->present)
            e = key_refind(k);
        tok = k->tok;
        h = k->handle;
        pthread_mutex_unlock(&k->lock);
        if (e == KW_OK)
            e = kw_p11_session_get(tok, (tok->info.flags & CKF_LOGIN_REQUIRED) != 0, &k->pin, &s);
        if (e == KW_ERR_TOKEN_GONE && attempt + 1 < KWP_OP_ATTEMPTS) {
            /* Again after finding the token again (recovery may re-initialise it), backing
             * off: other processes may be rewriting the token's state meanwhile. */
            pthread_mutex_lock(&k->lock);
            k->gen = 0;
            pthread_mutex_unlock(&k->lock);
            continue;
        }
        if (e != KW_OK)
            break;
        for (int relogin = 0; relogin < 2; relogin++) {
            rv = op_init(tok, s, op, mech, h, &fn);
            /* The token forgot our login (another process logged out, token reset). */
            if (rv == CKR_USER_NOT_LOGGED_IN && relogin == 0 &&
                kw_p11_login(tok, s, &k->pin) == KW_OK)
                continue;
            break;
        }
        if (rv == CKR_OK && k->always_auth && op != KWP_OP_DERIVE) {
            char *pin = NULL;
            if (kw_pin_resolve(&k->pin, "context", &pin) == KW_OK) {
                rv = KW_P11_CALL(tok->mod, C_Login, s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)pin,
                                 strlen(pin));
                fn = "C_Login";
                kw_secure_strfree(pin);
            }
        }
        if (rv == CKR_OK)
            rv = op_run(tok, s, op, mech, h, in, inlen, out, outlen, &fn);
        kw_p11_session_put(tok, s, rv);
        if (rv == CKR_OK)
            return 1;
        /* Once more, with the object found again: the token was reset or came back, or the
         * handle went stale (SoftHSM2 invalidates handles when its store changes). */
        if (attempt + 1 < KWP_OP_ATTEMPTS &&
            (kw_p11_rv_is_gone(rv) || rv == CKR_OBJECT_HANDLE_INVALID ||
             rv == CKR_KEY_HANDLE_INVALID)) {
            pthread_mutex_lock(&k->lock);
            k->gen = 0;
            pthread_mutex_unlock(&k->lock);
            continue;
        }
        break;
    }
    if (st != NULL && rv != CKR_OK) {
        st->rv = rv;
        st->fn = fn;
    }
    if (rv != CKR_OK) {
        if (rv == CKR_MECHANISM_INVALID && kw_p11_token_has_mech(tok, mech->mechanism, op_flag[op]))
            /* The token has it; this key does not allow it (CKA_ALLOWED_MECHANISMS). */
            kw_err_set(KW_ERR_KEY_USAGE,
                       "key %s is not usable for this operation: it does not allow %s (see its "
                       "CKA_ALLOWED_MECHANISMS), though the token has it (%s: %s)",
                       k->uri, kwp_mech_name(mech->mechanism), fn, kw_p11_rv_name(rv));
        else if (rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID)
            kw_err_set(KW_ERR_MECHANISM, "token refused mechanism %s for key %s (%s: %s)",
                       kwp_mech_name(mech->mechanism), k->uri, fn, kw_p11_rv_name(rv));
        else if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_KEY_TYPE_INCONSISTENT)
            kw_err_set(KW_ERR_KEY_USAGE, "key %s is not usable for this operation (%s: %s)", k->uri,
                       fn, kw_p11_rv_name(rv));
        else
            kw_p11_fail(rv, fn, "key %s", k->uri);
    }
    kwp_raise_last(k->pctx);
    return 0;
}

kwp_key *kwp_key_open_uri(kwp_ctx *ctx, const char *uristr, int want_private,
                          kw_pin_prompt_fn prompt, void *prompt_arg)
{
    kw_p11_module *mod;
    P11KitUri *uri = NULL;
    kw_p11_token **toks = NULL;
    size_t n = 0;
    kwp_key *k = NULL;
    kw_pin_ctx pin = {0};
    CK_OBJECT_CLASS cls = want_private ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[4];
    CK_ULONG nt;
    kw_err e;

    if (kw_uri_parse(uristr, &uri) != KW_OK)
        return NULL;
    if ((mod = kwp_module(ctx)) == NULL)
        goto done;
    if (kw_p11_find_tokens(mod, uri, &toks, &n) != KW_OK)
        goto done;
    if (n == 0) {
        kw_err_set(KW_ERR_TOKEN_NOT_FOUND, "token not found: no token matches %s", uristr);
        goto done;
    }
    kw_uri_pin(uri, &pin);
    pin.conf_pin_source = ctx->pin_source;
    pin.prompt = prompt;
    pin.prompt_arg = prompt_arg;
    t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    nt = 1 + kw_uri_object_template(uri, t + 1, 3);
    /* A type= in the URI must agree with the class we want; it is not searched twice. */
    for (CK_ULONG i = 1; i < nt; i++) {
        if (t[i].type != CKA_CLASS)
            continue;
        if (t[i].ulValueLen != sizeof(cls) || memcmp(t[i].pValue, &cls, sizeof(cls)) != 0) {
            kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "object not found: %s names no %s key", uristr,
                       want_private ? "private" : "public");
            goto done;
        }
        t[i] = t[--nt];
        i--;
    }
    for (size_t i = 0; i < n && k == NULL; i++) {
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE o[2];
        CK_ULONG cnt = 0;
        int login = want_private && (toks[i]->info.flags & CKF_LOGIN_REQUIRED);

        if ((e = kw_p11_session_get(toks[i], login, &pin, &s)) != KW_OK)
            goto done;
        e = kw_p11_find(toks[i], s, t, nt, o, 2, &cnt);
        if (e == KW_OK && cnt > 1)
            e = kw_err_set(KW_ERR_AMBIGUOUS,
                           "URI matches more than one key on the token: add id= or object=");
        if (e == KW_OK && cnt == 1)
            k = kwp_key_from_object(ctx, toks[i], s, o[0], cls, &pin);
        kw_p11_session_put(toks[i], s, CKR_OK);
        if (e != KW_OK || (cnt == 1 && k == NULL))
            goto done;
    }
    if (k == NULL)
        kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "object not found: no %s key matches %s",
                   want_private ? "private" : "public", uristr);
done:
    free(toks);
    p11_kit_uri_free(uri);
    return k;
}
