/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE for RSA (PKCS#1 v1.5, PSS, raw) and ECDSA with token keys.
 * Signing: data is hashed on the host and the token signs the digest (DigestInfo for PKCS#1,
 * PSS parameters, raw digest for ECDSA); a token without those raw mechanisms gets the data
 * and its combined hash-and-sign mechanism instead. Verification and AlgorithmIdentifiers use
 * the public half in the default provider. */
#include <stdlib.h>
#include <string.h>

/* RSA_padding_add_PKCS1_PSS_mgf1 is deprecated API in 3.0 with no replacement for encoding a
 * PSS block that the token then signs raw; it is used in pss_via_raw() only. */
#undef OPENSSL_NO_DEPRECATED
#include <openssl/rsa.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp.h"

typedef struct {
    kwp_ctx *pctx;
    CK_KEY_TYPE type;
    kwp_key *key;
    int pad;    /* RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING or RSA_NO_PADDING */
    EVP_MD *md; /* helper libctx */
    EVP_MD *mgf1;
    int saltlen;        /* RSA_PSS_SALTLEN_* or a length */
    EVP_MD_CTX *mdctx;  /* digest-sign on the host */
    unsigned char *buf; /* digest-sign data for a combined mechanism */
    size_t buflen, bufcap;
    int combined;
    int md_fixed; /* digest-sign/verify started: the digest can no longer change */
} kwp_sig;

/* Each function a dispatch table below names, with the type OpenSSL calls it through. */
static OSSL_FUNC_signature_newctx_fn rsa_newctx;
static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;
static OSSL_FUNC_signature_newctx_fn eddsa_newctx;
static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_verify_init_fn sig_sign_init;
static OSSL_FUNC_signature_verify_recover_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_verify_fn sig_verify;
static OSSL_FUNC_signature_verify_recover_fn sig_verify_recover;
static OSSL_FUNC_signature_digest_sign_init_fn sig_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_digest_update;
static OSSL_FUNC_signature_digest_verify_update_fn sig_digest_update;
static OSSL_FUNC_signature_digest_sign_final_fn sig_digest_sign_final;
static OSSL_FUNC_signature_digest_verify_init_fn sig_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_final_fn sig_digest_verify_final;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_ctx_params;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn rsa_settable_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn ecdsa_settable_ctx_params;
static OSSL_FUNC_signature_digest_sign_init_fn eddsa_digest_init;
static OSSL_FUNC_signature_digest_verify_init_fn eddsa_digest_init;
static OSSL_FUNC_signature_digest_sign_fn eddsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_fn eddsa_digest_verify;
static OSSL_FUNC_signature_get_ctx_params_fn eddsa_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn eddsa_gettable_ctx_params;

static void *sig_newctx(void *provctx, CK_KEY_TYPE type)
{
    kwp_sig *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->pctx = provctx;
    c->type = type;
    c->pad = RSA_PKCS1_PADDING;
    c->saltlen = RSA_PSS_SALTLEN_AUTO;
    return c;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, CKK_RSA);
}

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, CKK_EC);
}

static void sig_reset_digest(kwp_sig *c)
{
    EVP_MD_CTX_free(c->mdctx);
    c->mdctx = NULL;
    free(c->buf);
    c->buf = NULL;
    c->buflen = c->bufcap = 0;
    c->combined = 0;
}

static void sig_freectx(void *vctx)
{
    kwp_sig *c = vctx;
    if (c == NULL)
        return;
    sig_reset_digest(c);
    EVP_MD_free(c->md);
    EVP_MD_free(c->mgf1);
    kwp_key_free(c->key);
    free(c);
}

static void *sig_dupctx(void *vctx)
{
    kwp_sig *c = vctx, *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    *d = *c;
    d->mdctx = NULL;
    d->buf = NULL;
    d->buflen = d->bufcap = 0;
    if (d->key != NULL)
        kwp_key_ref(d->key);
    if (d->md != NULL)
        EVP_MD_up_ref(d->md);
    if (d->mgf1 != NULL)
        EVP_MD_up_ref(d->mgf1);
    if (c->mdctx != NULL &&
        ((d->mdctx = EVP_MD_CTX_new()) == NULL || !EVP_MD_CTX_copy_ex(d->mdctx, c->mdctx))) {
        sig_freectx(d);
        return NULL;
    }
    if (c->buf != NULL) {
        if ((d->buf = malloc(c->bufcap)) == NULL) {
            sig_freectx(d);
            return NULL;
        }
        memcpy(d->buf, c->buf, c->buflen);
        d->buflen = c->buflen;
        d->bufcap = c->bufcap;
    }
    return d;
}

static int set_md(kwp_sig *c, EVP_MD **slot, const char *name)
{
    return kwp_md_fetch(c->pctx, slot, name);
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int sig_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    kwp_sig *c = vctx;
    kwp_key *k = keydata;

    if (k != NULL) {
        if (k->type != c->type || k->pub == NULL) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_KEY_USAGE), "key is not usable for this operation");
            return 0;
        }
        kwp_key_free(c->key);
        c->key = kwp_key_ref(k);
        if (strcmp(k->alg, "RSA-PSS") == 0)
            c->pad = RSA_PKCS1_PSS_PADDING; /* the only padding such a key allows */
    }
    if (c->key == NULL)
        return 0;
    sig_reset_digest(c);
    c->md_fixed = 0;
    return sig_set_ctx_params(c, params);
}

/* ---- parameters ---- */

static int pss_md_len(const kwp_sig *c)
{
    return c->md != NULL ? EVP_MD_get_size(c->md) : 0;
}

/* The salt length the token will use, as a number. */
static int pss_saltlen(const kwp_sig *c)
{
    int hlen = pss_md_len(c);
    int emlen = (EVP_PKEY_get_bits(c->key->pub) - 1 + 7) / 8;
    int max = emlen - hlen - 2;

    switch (c->saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        return hlen;
    case RSA_PSS_SALTLEN_AUTO:
    case RSA_PSS_SALTLEN_MAX:
#ifdef RSA_PSS_SALTLEN_AUTO_DIGEST_MAX
    case RSA_PSS_SALTLEN_AUTO_DIGEST_MAX:
#endif
        return max;
    default:
        return c->saltlen > max ? -1 : c->saltlen;
    }
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    kwp_sig *c = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
            return 0;
        if (c->md_fixed) {
            /* The data is being hashed (or collected for the token) with the digest the
             * digest-sign began with: another one would sign a DigestInfo naming the wrong hash.
             * Naming the same one again is harmless, as in OpenSSL's own providers. */
            if (c->md != NULL && !EVP_MD_is_a(c->md, name)) {
                kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID),
                          "the digest cannot change during a digest-sign or digest-verify: it "
                          "began with %s, %s was asked",
                          EVP_MD_get0_name(c->md), name);
                return 0;
            }
        } else if (!set_md(c, &c->md, name)) {
            return 0;
        }
    }
    if (c->type != CKK_RSA)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = p->data;
            if (strcmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0)
                pad = RSA_PKCS1_PADDING;
            else if (strcmp(s, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0)
                pad = RSA_PKCS1_PSS_PADDING;
            else if (strcmp(s, OSSL_PKEY_RSA_PAD_MODE_NONE) == 0)
                pad = RSA_NO_PADDING;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            return 0;
        }
        if (c->key != NULL && strcmp(c->key->alg, "RSA-PSS") == 0 && pad != RSA_PKCS1_PSS_PADDING) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_KEY_USAGE),
                      "key %s is restricted to RSA-PSS signatures", c->key->uri);
            return 0;
        }
        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING && pad != RSA_NO_PADDING) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_MECHANISM),
                      "RSA padding mode is not supported (pkcs1, pss, none)");
            return 0;
        }
        c->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        int sl;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = p->data;
            if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
                sl = RSA_PSS_SALTLEN_DIGEST;
            else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0)
                sl = RSA_PSS_SALTLEN_MAX;
            else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)
                sl = RSA_PSS_SALTLEN_AUTO;
            else
                sl = atoi(s);
        } else if (!OSSL_PARAM_get_int(p, &sl)) {
            return 0;
        }
        if (sl < -4) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "PSS salt length %d is invalid", sl);
            return 0;
        }
        c->saltlen = sl;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(c, &c->mgf1, name))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *rsa_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0), OSSL_PARAM_END};
    return p;
}

static const OSSL_PARAM *ecdsa_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
                                   OSSL_PARAM_END};
    return p;
}

/* A default-provider context on the public half with our settings: it verifies, and it
 * encodes the AlgorithmIdentifier that certificates and CSRs carry. */
static EVP_PKEY_CTX *shadow_ctx_for(kwp_sig *c, int recover)
{
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(c->pctx->hlibctx, c->key->pub, KWP_HELPER_PROPQ);
    if (v == NULL || (recover ? EVP_PKEY_verify_recover_init(v) : EVP_PKEY_verify_init(v)) != 1)
        goto err;
    if (c->md != NULL && EVP_PKEY_CTX_set_signature_md(v, c->md) != 1)
        goto err;
    if (c->type == CKK_RSA) {
        if (EVP_PKEY_CTX_set_rsa_padding(v, c->pad) != 1)
            goto err;
        if (c->pad == RSA_PKCS1_PSS_PADDING) {
            if (c->mgf1 != NULL && EVP_PKEY_CTX_set_rsa_mgf1_md(v, c->mgf1) != 1)
                goto err;
            if (EVP_PKEY_CTX_set_rsa_pss_saltlen(v, c->saltlen) != 1)
                goto err;
        }
    }
    return v;
err:
    EVP_PKEY_CTX_free(v);
    return NULL;
}

static EVP_PKEY_CTX *shadow_ctx(kwp_sig *c)
{
    return shadow_ctx_for(c, 0);
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    kwp_sig *c = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
        EVP_PKEY_CTX *v;
        unsigned char aid[256];
        int saltlen = c->saltlen;
        OSSL_PARAM q[2] = {
            OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid, sizeof(aid)),
            OSSL_PARAM_END};
        if (c->key == NULL)
            return 0;
        /* Encode the salt length we really use, not "auto". */
        if (c->type == CKK_RSA && c->pad == RSA_PKCS1_PSS_PADDING)
            c->saltlen = pss_saltlen(c);
        v = shadow_ctx(c);
        c->saltlen = saltlen;
        if (v == NULL || !EVP_PKEY_CTX_get_params(v, q) || !OSSL_PARAM_modified(&q[0]) ||
            !OSSL_PARAM_set_octet_string(p, aid, q[0].return_size)) {
            EVP_PKEY_CTX_free(v);
            return 0;
        }
        EVP_PKEY_CTX_free(v);
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, c->md ? EVP_MD_get0_name(c->md) : ""))
        return 0;
    if (c->type != CKK_RSA)
        return 1;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        if (p->data_type == OSSL_PARAM_INTEGER) {
            if (!OSSL_PARAM_set_int(p, c->pad))
                return 0;
        } else if (!OSSL_PARAM_set_utf8_string(
                       p, c->pad == RSA_PKCS1_PSS_PADDING ? OSSL_PKEY_RSA_PAD_MODE_PSS
                          : c->pad == RSA_NO_PADDING      ? OSSL_PKEY_RSA_PAD_MODE_NONE
                                                          : OSSL_PKEY_RSA_PAD_MODE_PKCSV15)) {
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
        p->data_type == OSSL_PARAM_INTEGER && !OSSL_PARAM_set_int(p, c->saltlen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const EVP_MD *m = c->mgf1 ? c->mgf1 : c->md;
        if (!OSSL_PARAM_set_utf8_string(p, m ? EVP_MD_get0_name(m) : ""))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END};
    return p;
}

/* ---- mechanisms ---- */

/* The hash-and-sign mechanism for the current settings, for tokens that want the data. */
static CK_MECHANISM_TYPE combined_mech(const kwp_sig *c)
{
    static const struct {
        int nid;
        CK_MECHANISM_TYPE pkcs1, pss, ecdsa;
    } t[] = {
        {NID_sha1, CKM_SHA1_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS, CKM_ECDSA_SHA1},
        {NID_sha224, CKM_SHA224_RSA_PKCS, CKM_SHA224_RSA_PKCS_PSS, CKM_ECDSA_SHA224},
        {NID_sha256, CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_ECDSA_SHA256},
        {NID_sha384, CKM_SHA384_RSA_PKCS, CKM_SHA384_RSA_PKCS_PSS, CKM_ECDSA_SHA384},
        {NID_sha512, CKM_SHA512_RSA_PKCS, CKM_SHA512_RSA_PKCS_PSS, CKM_ECDSA_SHA512},
    };
    int nid = c->md ? EVP_MD_get_type(c->md) : 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].nid == nid)
            return c->type == CKK_EC                 ? t[i].ecdsa
                   : c->pad == RSA_PKCS1_PSS_PADDING ? t[i].pss
                                                     : t[i].pkcs1;
    return CK_UNAVAILABLE_INFORMATION;
}

static CK_MECHANISM_TYPE raw_mech(const kwp_sig *c)
{
    if (c->type == CKK_EC)
        return CKM_ECDSA;
    return c->pad == RSA_PKCS1_PSS_PADDING ? CKM_RSA_PKCS_PSS
           : c->pad == RSA_NO_PADDING      ? CKM_RSA_X_509
                                           : CKM_RSA_PKCS;
}

static int token_has(kwp_sig *c, CK_MECHANISM_TYPE m)
{
    return m != CK_UNAVAILABLE_INFORMATION && kw_p11_token_has_mech(c->key->tok, m, CKF_SIGN);
}

/* The token has it and the key's CKA_ALLOWED_MECHANISMS allow it. */
static int usable(kwp_sig *c, CK_MECHANISM_TYPE m)
{
    return token_has(c, m) && kwp_key_allows(c->key, m);
}

static int is_pss(const kwp_sig *c)
{
    return c->type == CKK_RSA && c->pad == RSA_PKCS1_PSS_PADDING;
}

/* PSS over a host digest: with the token's CKM_RSA_PKCS_PSS when PKCS#11 can name the digests,
 * else (or when the token refuses the parameters) as an EMSA-PSS block signed raw. */
static int pss_token_params_ok(kwp_sig *c)
{
    return kwp_md_mech(c->md) != CK_UNAVAILABLE_INFORMATION &&
           kwp_md_mgf(c->mgf1 ? c->mgf1 : c->md) != 0 && usable(c, CKM_RSA_PKCS_PSS);
}

/* Can the token sign a digest made on the host, with some mechanism this key allows? */
static int host_hash_ok(kwp_sig *c)
{
    if (is_pss(c))
        return pss_token_params_ok(c) || usable(c, CKM_RSA_X_509);
    return usable(c, raw_mech(c));
}

/* Why no mechanism fits, as an error: what the token has and what the key allows of each. */
static void raise_no_mech(kwp_sig *c, const char *what)
{
    CK_MECHANISM_TYPE raw = is_pss(c) && !pss_token_params_ok(c) ? CKM_RSA_X_509 : raw_mech(c);
    CK_MECHANISM_TYPE comb = combined_mech(c);
    const char *dname = c->md ? EVP_MD_get0_name(c->md) : "no digest";
    int key_says = (token_has(c, raw) && !kwp_key_allows(c->key, raw)) ||
                   (token_has(c, comb) && !kwp_key_allows(c->key, comb));
    char combtxt[160] = "";

    if (comb != CK_UNAVAILABLE_INFORMATION)
        snprintf(combtxt, sizeof(combtxt), " or %s (the token %s it, the key %s it)",
                 kwp_mech_name(comb), token_has(c, comb) ? "has" : "lacks",
                 kwp_key_allows(c->key, comb) ? "allows" : "does not allow");
    kwp_raise(c->pctx, KWP_R(key_says ? KW_ERR_KEY_USAGE : KW_ERR_MECHANISM),
              "%s: a %s signature with %s by key %s needs %s (the token %s it, the key %s it)%s%s",
              key_says ? "key not usable for this operation (see its CKA_ALLOWED_MECHANISMS)"
                       : "mechanism not supported by the token",
              c->type == CKK_EC ? "ECDSA" : "RSA", dname, c->key->uri, kwp_mech_name(raw),
              token_has(c, raw) ? "has" : "lacks",
              kwp_key_allows(c->key, raw) ? "allows" : "does not allow", combtxt, what);
}

/* ---- signing ---- */

/* DigestInfo for PKCS#1 v1.5 (RFC 8017 9.2), built with libcrypto's ASN.1. */
static int digest_info(const EVP_MD *md, const unsigned char *dgst, size_t dlen,
                       unsigned char **out)
{
    X509_SIG *sig = X509_SIG_new();
    X509_ALGOR *alg;
    ASN1_OCTET_STRING *os;
    int len = -1;

    if (sig == NULL)
        return -1;
    X509_SIG_getm(sig, &alg, &os);
    if (X509_ALGOR_set0(alg, OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL, NULL) &&
        ASN1_OCTET_STRING_set(os, dgst, (int)dlen)) {
        *out = NULL;
        len = i2d_X509_SIG(sig, out);
    }
    X509_SIG_free(sig);
    return len;
}

static int infer_md(kwp_sig *c, size_t tbslen)
{
    const char *name = tbslen == 20   ? "SHA1"
                       : tbslen == 28 ? "SHA224"
                       : tbslen == 32 ? "SHA256"
                       : tbslen == 48 ? "SHA384"
                       : tbslen == 64 ? "SHA512"
                                      : NULL;
    return name != NULL && set_md(c, &c->md, name);
}

/* Sign with the token. data is the digest (raw mechanisms) or the message (combined). */
/* Tokens that refuse a PSS parameter set (SoftHSM2 wants the MGF1 digest to be the message
 * digest) can still sign: the EMSA-PSS block is built here and the token applies the raw RSA
 * private operation (CKM_RSA_X_509) to it. */
static int pss_via_raw(kwp_sig *c, const unsigned char *dgst, unsigned char *sig, size_t *siglen,
                       size_t sigsize)
{
    unsigned char em[1024];
    size_t klen = kwp_key_max_size(c->key);
    CK_MECHANISM raw = {CKM_RSA_X_509, NULL, 0};
    RSA *rsa;
    int ok;

    if (klen > sizeof(em) || sigsize < klen)
        return 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    rsa = EVP_PKEY_get1_RSA(c->key->pub);
    ok = rsa != NULL && RSA_padding_add_PKCS1_PSS_mgf1(
                            rsa, em, dgst, c->md, c->mgf1 ? c->mgf1 : c->md, pss_saltlen(c)) == 1;
    RSA_free(rsa);
#pragma GCC diagnostic pop
    *siglen = sigsize;
    ok = ok && kwp_key_private_op(c->key, KWP_OP_SIGN, &raw, em, klen, sig, siglen);
    kw_wipe(em, sizeof(em));
    return ok;
}

static int token_sign(kwp_sig *c, CK_MECHANISM_TYPE mt, const unsigned char *data, size_t dlen,
                      unsigned char *sig, size_t *siglen, size_t sigsize)
{
    kwp_key *k = c->key;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM mech = {mt, NULL, 0};
    unsigned char *di = NULL, raw[1024];
    const unsigned char *in = data;
    size_t inlen = dlen, rawlen = sizeof(raw);
    int ok = 0, dilen;

    if (c->type == CKK_RSA && c->pad == RSA_PKCS1_PSS_PADDING) {
        int sl = pss_saltlen(c);
        if (c->md == NULL || sl < 0) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID),
                      "PSS needs a digest and a salt length "
                      "that fits the key");
            return 0;
        }
        if (mt == CKM_RSA_PKCS_PSS && !pss_token_params_ok(c))
            return pss_via_raw(c, data, sig, siglen, sigsize); /* host_hash_ok: X_509 usable */
        pss.hashAlg = kwp_md_mech(c->md);
        pss.mgf = kwp_md_mgf(c->mgf1 ? c->mgf1 : c->md);
        pss.sLen = (CK_ULONG)sl;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
    } else if (mt == CKM_RSA_PKCS && c->md != NULL) {
        if ((dilen = digest_info(c->md, data, dlen, &di)) <= 0)
            return 0;
        in = di;
        inlen = (size_t)dilen;
    }
    if (c->type == CKK_RSA) {
        kw_err why;
        *siglen = sigsize;
        ERR_set_mark();
        ok = kwp_key_private_op(k, KWP_OP_SIGN, &mech, in, inlen, sig, siglen);
        why = kw_err_last(NULL);
        if (!ok && mt == CKM_RSA_PKCS_PSS && (why == KW_ERR_INVALID || why == KW_ERR_MECHANISM) &&
            usable(c, CKM_RSA_X_509)) {
            ERR_pop_to_mark();
            ERR_set_mark();
            ok = pss_via_raw(c, data, sig, siglen, sigsize);
        }
        if (ok)
            ERR_pop_to_mark();
        else
            ERR_clear_last_mark();
    } else {
        ok = kwp_key_private_op(k, KWP_OP_SIGN, &mech, in, inlen, raw, &rawlen) &&
             kwp_ecdsa_sig_der(raw, rawlen, sig, siglen, sigsize);
    }
    OPENSSL_free(di);
    return ok;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    kwp_sig *c = vctx;
    size_t max = kwp_key_max_size(c->key);

    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    if (sigsize < max) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "signature buffer too small");
        return 0;
    }
    /* Raw RSA signs exactly one modulus-sized block, as the default provider insists. */
    if (c->type == CKK_RSA && c->pad == RSA_NO_PADDING && tbslen != max) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID),
                  "data too %s for key size: raw RSA signs exactly %zu bytes, not %zu",
                  tbslen < max ? "small" : "large", max, tbslen);
        return 0;
    }
    if (c->md != NULL && (size_t)EVP_MD_get_size(c->md) != tbslen && c->pad != RSA_NO_PADDING) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "input is %zu bytes but a %s digest is %d bytes",
                  tbslen, EVP_MD_get0_name(c->md), EVP_MD_get_size(c->md));
        return 0;
    }
    if (c->type == CKK_RSA && c->pad == RSA_PKCS1_PSS_PADDING && c->md == NULL &&
        !infer_md(c, tbslen)) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "PSS needs a digest (-pkeyopt digest:...)");
        return 0;
    }
    if (!host_hash_ok(c)) {
        raise_no_mech(c, usable(c, combined_mech(c))
                             ? ": it hashes on the token, so sign the data (openssl dgst -sign, "
                               "pkeyutl -rawin), not a digest"
                             : "");
        return 0;
    }
    return token_sign(c, raw_mech(c), tbs, tbslen, sig, siglen, sigsize);
}

static int sig_verify_recover(void *vctx, unsigned char *rout, size_t *routlen, size_t routsize,
                              const unsigned char *sig, size_t siglen)
{
    kwp_sig *c = vctx;
    EVP_PKEY_CTX *v = shadow_ctx_for(c, 1);
    int ok;

    *routlen = routsize;
    ok = v != NULL && EVP_PKEY_verify_recover(v, rout, routlen, sig, siglen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                      size_t tbslen)
{
    kwp_sig *c = vctx;
    EVP_PKEY_CTX *v = shadow_ctx(c);
    int ok = v != NULL && EVP_PKEY_verify(v, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

/* ---- digest-sign ---- */

static int sig_digest_init(void *vctx, const char *mdname, void *keydata, const OSSL_PARAM params[],
                           int signing)
{
    kwp_sig *c = vctx;

    if (!sig_init(c, keydata, params) || (signing && !kwp_key_ready(c->key)))
        return 0;
    if (mdname == NULL || *mdname == '\0')
        mdname = "SHA256";
    if (!set_md(c, &c->md, mdname))
        return 0;
    c->md_fixed = 1;
    /* Signing picks its mechanism at the first data: padding and PSS parameters may still be
     * set after init (openssl req -sigopt does so). Verifying always hashes here. */
    if (signing)
        return 1;
    c->mdctx = EVP_MD_CTX_new();
    return c->mdctx != NULL && EVP_DigestInit_ex2(c->mdctx, c->md, NULL) == 1;
}

/* Hash on the host and sign the digest with a raw mechanism the key allows, or, when the key
 * allows only the combined hash-and-sign mechanism (or the token has no raw one), hand the
 * data to the token with that mechanism. */
static int sig_digest_choose(kwp_sig *c)
{
    if (c->mdctx != NULL || c->combined)
        return 1;
    if (!host_hash_ok(c)) {
        if (!usable(c, combined_mech(c))) {
            raise_no_mech(c, "");
            return 0;
        }
        c->combined = 1; /* the token hashes: collect the data */
        return 1;
    }
    c->mdctx = EVP_MD_CTX_new();
    return c->mdctx != NULL && EVP_DigestInit_ex2(c->mdctx, c->md, NULL) == 1;
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                                const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, keydata, params, 1);
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *keydata,
                                  const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, keydata, params, 0);
}

static int sig_digest_update(void *vctx, const unsigned char *data, size_t len)
{
    kwp_sig *c = vctx;

    if (!sig_digest_choose(c))
        return 0;
    if (!c->combined)
        return c->mdctx != NULL && EVP_DigestUpdate(c->mdctx, data, len) == 1;
    if (c->buflen + len > c->bufcap) {
        size_t cap = (c->buflen + len) * 2;
        unsigned char *nb = realloc(c->buf, cap);
        if (nb == NULL)
            return 0;
        c->buf = nb;
        c->bufcap = cap;
    }
    memcpy(c->buf + c->buflen, data, len);
    c->buflen += len;
    return 1;
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    kwp_sig *c = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (sig == NULL) {
        *siglen = kwp_key_max_size(c->key);
        return 1;
    }
    if (!sig_digest_choose(c))
        return 0;
    if (c->combined)
        return token_sign(c, combined_mech(c), c->buf, c->buflen, sig, siglen, sigsize);
    if (c->mdctx == NULL || EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1)
        return 0;
    return token_sign(c, raw_mech(c), dgst, dlen, sig, siglen, sigsize);
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    kwp_sig *c = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (c->mdctx == NULL || EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1)
        return 0;
    return sig_verify(c, sig, siglen, dgst, dlen);
}

static int sig_sign_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    return sig_init(vctx, keydata, params) && kwp_key_ready(((kwp_sig *)vctx)->key);
}

/* ---- EdDSA: one-shot over the message ---- */

static void *eddsa_newctx(void *provctx, const char *propq)
{
    return sig_newctx(provctx, CKK_EC_EDWARDS);
}

static int eddsa_digest_init(void *vctx, const char *mdname, void *keydata,
                             const OSSL_PARAM params[])
{
    kwp_sig *c = vctx;

    if (mdname != NULL && *mdname != '\0') {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "EdDSA takes no digest (got %s)", mdname);
        return 0;
    }
    return sig_init(c, keydata, NULL) && kwp_key_ready(c->key);
}

static int eddsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                             const unsigned char *tbs, size_t tbslen)
{
    kwp_sig *c = vctx;
    CK_MECHANISM mech = {CKM_EDDSA, NULL, 0};
    size_t max = kwp_key_max_size(c->key);

    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    if (sigsize < max || !token_has(c, CKM_EDDSA)) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_MECHANISM),
                  sigsize < max ? "signature buffer too small"
                                : "mechanism not supported by the token: no EdDSA (CKM_EDDSA)");
        return 0;
    }
    *siglen = sigsize;
    return kwp_key_private_op(c->key, KWP_OP_SIGN, &mech, tbs, tbslen, sig, siglen);
}

static int eddsa_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                               const unsigned char *tbs, size_t tbslen)
{
    kwp_sig *c = vctx;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m != NULL &&
             EVP_DigestVerifyInit_ex(m, NULL, NULL, c->pctx->hlibctx, KWP_HELPER_PROPQ, c->key->pub,
                                     NULL) == 1 &&
             EVP_DigestVerify(m, sig, siglen, tbs, tbslen) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

static int eddsa_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    kwp_sig *c = vctx;
    OSSL_PARAM *p;
    /* AlgorithmIdentifier ::= SEQUENCE { id-Ed25519 | id-Ed448 } (RFC 8410), no parameters. */
    static const unsigned char aid25519[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};
    static const unsigned char aid448[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71};

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
        int is448 = c->key != NULL && strcmp(c->key->alg, "ED448") == 0;
        if (c->key == NULL ||
            !OSSL_PARAM_set_octet_string(p, is448 ? aid448 : aid25519, sizeof(aid25519)))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *eddsa_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0), OSSL_PARAM_END};
    return p;
}

const OSSL_DISPATCH kwp_eddsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))eddsa_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))eddsa_digest_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))eddsa_digest_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))eddsa_digest_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))eddsa_digest_verify},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))eddsa_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))eddsa_gettable_ctx_params},
    {0, NULL}};

#define KWP_SIG_COMMON                                                                             \
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},                                    \
        {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},                                  \
        {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init},                            \
        {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},                                      \
        {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_sign_init},                          \
        {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify},                                  \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},              \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_update},               \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},            \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))sig_digest_verify_init},          \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_digest_update},             \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))sig_digest_verify_final},        \
        {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},                  \
        {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params},        \
    {                                                                                              \
        OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params                     \
    }

const OSSL_DISPATCH kwp_rsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx},
    KWP_SIG_COMMON,
    /* Public-key operations on token keys work as on file keys: rsautl -verify, pkeyutl
     * -verifyrecover. */
    {OSSL_FUNC_SIGNATURE_VERIFY_RECOVER_INIT, (void (*)(void))sig_sign_init},
    {OSSL_FUNC_SIGNATURE_VERIFY_RECOVER, (void (*)(void))sig_verify_recover},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))rsa_settable_ctx_params},
    {0, NULL}};

const OSSL_DISPATCH kwp_ecdsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx},
    KWP_SIG_COMMON,
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))ecdsa_settable_ctx_params},
    {0, NULL}};
