/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE for RSA token keys: PKCS#1 v1.5 (a DigestInfo over the host's digest), PSS (the
 * token's parameters, or an EMSA-PSS block signed raw), raw; verify-recover on the public half.
 * The context and the operations it shares with ECDSA are signature.c's. */
#include <stdlib.h>
#include <string.h>

/* RSA_padding_add_PKCS1_PSS_mgf1 is deprecated API in 3.0 with no replacement for encoding a
 * PSS block that the token then signs raw; it is used in pss_via_raw() only. */
#undef OPENSSL_NO_DEPRECATED
#include <openssl/rsa.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp_sig.h"

static OSSL_FUNC_signature_newctx_fn rsa_newctx;
static OSSL_FUNC_signature_verify_recover_fn rsa_verify_recover;
static OSSL_FUNC_signature_settable_ctx_params_fn rsa_settable_ctx_params;

/* An RSA-PSS key allows only PSS signatures. */
static void rsa_key_init(kwp_sig *c, const kwp_key *k)
{
    if (strcmp(k->alg, "RSA-PSS") == 0)
        c->pad = RSA_PKCS1_PSS_PADDING; /* the only padding such a key allows */
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

static int rsa_set_ctx_params(kwp_sig *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;

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
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !kwp_md_fetch(c->pctx, &c->mgf1, name))
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

/* PSS settings on a verify context; for the AlgorithmIdentifier, the salt length really used,
 * not "auto". */
static int rsa_shadow_params(kwp_sig *c, EVP_PKEY_CTX *v, int aid)
{
    if (EVP_PKEY_CTX_set_rsa_padding(v, c->pad) != 1)
        return 0;
    if (c->pad == RSA_PKCS1_PSS_PADDING) {
        if (c->mgf1 != NULL && EVP_PKEY_CTX_set_rsa_mgf1_md(v, c->mgf1) != 1)
            return 0;
        if (EVP_PKEY_CTX_set_rsa_pss_saltlen(v, aid ? pss_saltlen(c) : c->saltlen) != 1)
            return 0;
    }
    return 1;
}

static int rsa_get_ctx_params(kwp_sig *c, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

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

/* ---- mechanisms ---- */

/* The hash-and-sign mechanism for the current settings, for tokens that want the data. */
static CK_MECHANISM_TYPE rsa_combined_mech(const kwp_sig *c)
{
    static const struct {
        int nid;
        CK_MECHANISM_TYPE pkcs1, pss;
    } t[] = {
        {NID_sha1, CKM_SHA1_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS},
        {NID_sha224, CKM_SHA224_RSA_PKCS, CKM_SHA224_RSA_PKCS_PSS},
        {NID_sha256, CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS},
        {NID_sha384, CKM_SHA384_RSA_PKCS, CKM_SHA384_RSA_PKCS_PSS},
        {NID_sha512, CKM_SHA512_RSA_PKCS, CKM_SHA512_RSA_PKCS_PSS},
    };
    int nid = c->md ? EVP_MD_get_type(c->md) : 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].nid == nid)
            return c->pad == RSA_PKCS1_PSS_PADDING ? t[i].pss : t[i].pkcs1;
    return CK_UNAVAILABLE_INFORMATION;
}

static CK_MECHANISM_TYPE rsa_raw_mech(const kwp_sig *c)
{
    return c->pad == RSA_PKCS1_PSS_PADDING ? CKM_RSA_PKCS_PSS
           : c->pad == RSA_NO_PADDING      ? CKM_RSA_X_509
                                           : CKM_RSA_PKCS;
}

static int is_pss(const kwp_sig *c)
{
    return c->pad == RSA_PKCS1_PSS_PADDING;
}

/* PSS over a host digest: with the token's CKM_RSA_PKCS_PSS when PKCS#11 can name the digests,
 * else (or when the token refuses the parameters) as an EMSA-PSS block signed raw. */
static int pss_token_params_ok(kwp_sig *c)
{
    return kwp_md_mech(c->md) != CK_UNAVAILABLE_INFORMATION &&
           kwp_md_mgf(c->mgf1 ? c->mgf1 : c->md) != 0 && kwp_sig_usable(c, CKM_RSA_PKCS_PSS);
}

/* Can the token sign a digest made on the host, with some mechanism this key allows? */
static int rsa_host_hash_ok(kwp_sig *c)
{
    if (is_pss(c))
        return pss_token_params_ok(c) || kwp_sig_usable(c, CKM_RSA_X_509);
    return kwp_sig_usable(c, rsa_raw_mech(c));
}

/* The mechanism a host digest would be signed with. */
static CK_MECHANISM_TYPE rsa_host_mech(kwp_sig *c)
{
    return is_pss(c) && !pss_token_params_ok(c) ? CKM_RSA_X_509 : rsa_raw_mech(c);
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
    return name != NULL && kwp_md_fetch(c->pctx, &c->md, name);
}

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

/* Sign with the token. data is the digest (raw mechanisms) or the message (combined). */
static int rsa_token_sign(kwp_sig *c, CK_MECHANISM_TYPE mt, const unsigned char *data, size_t dlen,
                          unsigned char *sig, size_t *siglen, size_t sigsize)
{
    kwp_key *k = c->key;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM mech = {mt, NULL, 0};
    unsigned char *di = NULL;
    const unsigned char *in = data;
    size_t inlen = dlen;
    int ok = 0, dilen;
    kw_err why;

    if (c->pad == RSA_PKCS1_PSS_PADDING) {
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
    *siglen = sigsize;
    ERR_set_mark();
    ok = kwp_key_private_op(k, KWP_OP_SIGN, &mech, in, inlen, sig, siglen);
    why = kw_err_last(NULL);
    if (!ok && mt == CKM_RSA_PKCS_PSS && (why == KW_ERR_INVALID || why == KW_ERR_MECHANISM) &&
        kwp_sig_usable(c, CKM_RSA_X_509)) {
        ERR_pop_to_mark();
        ERR_set_mark();
        ok = pss_via_raw(c, data, sig, siglen, sigsize);
    }
    if (ok)
        ERR_pop_to_mark();
    else
        ERR_clear_last_mark();
    OPENSSL_free(di);
    return ok;
}

/* Raw RSA signs exactly one modulus-sized block, as the default provider insists; otherwise the
 * input is a digest, and PSS needs to know which. */
static int rsa_sign_check(kwp_sig *c, size_t tbslen)
{
    size_t max = kwp_key_max_size(c->key);

    if (c->pad == RSA_NO_PADDING && tbslen != max) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID),
                  "data too %s for key size: raw RSA signs exactly %zu bytes, not %zu",
                  tbslen < max ? "small" : "large", max, tbslen);
        return 0;
    }
    if (c->pad != RSA_NO_PADDING && !kwp_sig_check_digest_len(c, tbslen))
        return 0;
    if (c->pad == RSA_PKCS1_PSS_PADDING && c->md == NULL && !infer_md(c, tbslen)) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "PSS needs a digest (-pkeyopt digest:...)");
        return 0;
    }
    return 1;
}

static int rsa_verify_recover(void *vctx, unsigned char *rout, size_t *routlen, size_t routsize,
                              const unsigned char *sig, size_t siglen)
{
    kwp_sig *c = vctx;
    EVP_PKEY_CTX *v = kwp_sig_shadow_ctx(c, 1, 0);
    int ok;

    *routlen = routsize;
    ok = v != NULL && EVP_PKEY_verify_recover(v, rout, routlen, sig, siglen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

static const kwp_sig_alg rsa_alg = {
    .type = CKK_RSA,
    .name = "RSA",
    .key_init = rsa_key_init,
    .set_ctx_params = rsa_set_ctx_params,
    .get_ctx_params = rsa_get_ctx_params,
    .shadow_params = rsa_shadow_params,
    .raw_mech = rsa_raw_mech,
    .combined_mech = rsa_combined_mech,
    .host_hash_ok = rsa_host_hash_ok,
    .host_mech = rsa_host_mech,
    .sign_check = rsa_sign_check,
    .token_sign = rsa_token_sign,
};

static void *rsa_newctx(void *provctx, const char *propq)
{
    return kwp_sig_newctx(provctx, &rsa_alg);
}

const OSSL_DISPATCH kwp_rsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx},
    KWP_SIG_COMMON,
    /* Public-key operations on token keys work as on file keys: rsautl -verify, pkeyutl
     * -verifyrecover. */
    {OSSL_FUNC_SIGNATURE_VERIFY_RECOVER_INIT, (void (*)(void))kwp_sig_sign_init},
    {OSSL_FUNC_SIGNATURE_VERIFY_RECOVER, (void (*)(void))rsa_verify_recover},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))rsa_settable_ctx_params},
    {0, NULL}};
