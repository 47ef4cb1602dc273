/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE: the context and the operations RSA and ECDSA share (rsa_sig.c, ecdsa_sig.c;
 * eddsa_sig.c uses the context alone). Signing: data is hashed on the host and the token signs
 * the digest (DigestInfo for PKCS#1, PSS parameters, raw digest for ECDSA); a token without
 * those raw mechanisms gets the data and its combined hash-and-sign mechanism instead.
 * Verification and AlgorithmIdentifiers use the public half in the default provider. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "kwp_sig.h"

void *kwp_sig_newctx(void *provctx, const kwp_sig_alg *alg)
{
    kwp_sig *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->pctx = provctx;
    c->alg = alg;
    c->pad = RSA_PKCS1_PADDING;
    c->saltlen = RSA_PSS_SALTLEN_AUTO;
    return c;
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

void kwp_sig_freectx(void *vctx)
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

void *kwp_sig_dupctx(void *vctx)
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
        kwp_sig_freectx(d);
        return NULL;
    }
    if (c->buf != NULL) {
        if ((d->buf = malloc(c->bufcap)) == NULL) {
            kwp_sig_freectx(d);
            return NULL;
        }
        memcpy(d->buf, c->buf, c->buflen);
        d->buflen = c->buflen;
        d->bufcap = c->bufcap;
    }
    return d;
}

int kwp_sig_init(kwp_sig *c, void *keydata, const OSSL_PARAM params[])
{
    kwp_key *k = keydata;

    if (k != NULL) {
        if (k->type != c->alg->type || k->pub == NULL) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_KEY_USAGE), "key is not usable for this operation");
            return 0;
        }
        kwp_key_free(c->key);
        c->key = kwp_key_ref(k);
        if (c->alg->key_init != NULL)
            c->alg->key_init(c, k);
    }
    if (c->key == NULL)
        return 0;
    sig_reset_digest(c);
    c->md_fixed = 0;
    return kwp_sig_set_ctx_params(c, params);
}

/* ---- parameters ---- */

int kwp_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
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
        } else if (!kwp_md_fetch(c->pctx, &c->md, name)) {
            return 0;
        }
    }
    return c->alg->set_ctx_params == NULL || c->alg->set_ctx_params(c, params);
}

/* A default-provider context on the public half with our settings: it verifies, and it
 * encodes the AlgorithmIdentifier that certificates and CSRs carry. */
EVP_PKEY_CTX *kwp_sig_shadow_ctx(kwp_sig *c, int recover, int aid)
{
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(c->pctx->hlibctx, c->key->pub, KWP_HELPER_PROPQ);
    if (v == NULL || (recover ? EVP_PKEY_verify_recover_init(v) : EVP_PKEY_verify_init(v)) != 1)
        goto err;
    if (c->md != NULL && EVP_PKEY_CTX_set_signature_md(v, c->md) != 1)
        goto err;
    if (c->alg->shadow_params != NULL && !c->alg->shadow_params(c, v, aid))
        goto err;
    return v;
err:
    EVP_PKEY_CTX_free(v);
    return NULL;
}

int kwp_sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    kwp_sig *c = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
        EVP_PKEY_CTX *v;
        unsigned char aid[256];
        OSSL_PARAM q[2] = {
            OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid, sizeof(aid)),
            OSSL_PARAM_END};
        if (c->key == NULL)
            return 0;
        v = kwp_sig_shadow_ctx(c, 0, 1);
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
    return c->alg->get_ctx_params == NULL || c->alg->get_ctx_params(c, params);
}

/* RSA's and ECDSA's: both offer the RSA parameters to get (ECDSA contexts answer only the
 * first two). */
const OSSL_PARAM *kwp_sig_gettable_ctx_params(void *vctx, void *provctx)
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

int kwp_sig_token_has(kwp_sig *c, CK_MECHANISM_TYPE m)
{
    return m != CK_UNAVAILABLE_INFORMATION && kw_p11_token_has_mech(c->key->tok, m, CKF_SIGN);
}

/* The token has it and the key's CKA_ALLOWED_MECHANISMS allow it. */
int kwp_sig_usable(kwp_sig *c, CK_MECHANISM_TYPE m)
{
    return kwp_sig_token_has(c, m) && kwp_key_allows(c->key, m);
}

/* Can the token sign a digest made on the host, with some mechanism this key allows? */
static int host_hash_ok(kwp_sig *c)
{
    if (c->alg->host_hash_ok != NULL)
        return c->alg->host_hash_ok(c);
    return kwp_sig_usable(c, c->alg->raw_mech(c));
}

/* Why no mechanism fits, as an error: what the token has and what the key allows of each. */
static void raise_no_mech(kwp_sig *c, const char *what)
{
    CK_MECHANISM_TYPE raw = c->alg->host_mech != NULL ? c->alg->host_mech(c) : c->alg->raw_mech(c);
    CK_MECHANISM_TYPE comb = c->alg->combined_mech(c);
    const char *dname = c->md ? EVP_MD_get0_name(c->md) : "no digest";
    int key_says = (kwp_sig_token_has(c, raw) && !kwp_key_allows(c->key, raw)) ||
                   (kwp_sig_token_has(c, comb) && !kwp_key_allows(c->key, comb));
    char combtxt[160] = "";

    if (comb != CK_UNAVAILABLE_INFORMATION)
        snprintf(combtxt, sizeof(combtxt), " or %s (the token %s it, the key %s it)",
                 kwp_mech_name(comb), kwp_sig_token_has(c, comb) ? "has" : "lacks",
                 kwp_key_allows(c->key, comb) ? "allows" : "does not allow");
    kwp_raise(c->pctx, KWP_R(key_says ? KW_ERR_KEY_USAGE : KW_ERR_MECHANISM),
              "%s: a %s signature with %s by key %s needs %s (the token %s it, the key %s it)%s%s",
              key_says ? "key not usable for this operation (see its CKA_ALLOWED_MECHANISMS)"
                       : "mechanism not supported by the token",
              c->alg->name, dname, c->key->uri, kwp_mech_name(raw),
              kwp_sig_token_has(c, raw) ? "has" : "lacks",
              kwp_key_allows(c->key, raw) ? "allows" : "does not allow", combtxt, what);
}

/* ---- sign and verify ---- */

int kwp_sig_check_digest_len(kwp_sig *c, size_t tbslen)
{
    if (c->md != NULL && (size_t)EVP_MD_get_size(c->md) != tbslen) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "input is %zu bytes but a %s digest is %d bytes",
                  tbslen, EVP_MD_get0_name(c->md), EVP_MD_get_size(c->md));
        return 0;
    }
    return 1;
}

int kwp_sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
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
    if (!c->alg->sign_check(c, tbslen))
        return 0;
    if (!host_hash_ok(c)) {
        raise_no_mech(c, kwp_sig_usable(c, c->alg->combined_mech(c))
                             ? ": it hashes on the token, so sign the data (openssl dgst -sign, "
                               "pkeyutl -rawin), not a digest"
                             : "");
        return 0;
    }
    return c->alg->token_sign(c, c->alg->raw_mech(c), tbs, tbslen, sig, siglen, sigsize);
}

int kwp_sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                   size_t tbslen)
{
    kwp_sig *c = vctx;
    EVP_PKEY_CTX *v = kwp_sig_shadow_ctx(c, 0, 0);
    int ok = v != NULL && EVP_PKEY_verify(v, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

int kwp_sig_sign_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    return kwp_sig_init(vctx, keydata, params) && kwp_key_ready(((kwp_sig *)vctx)->key);
}

/* ---- digest-sign ---- */

static int sig_digest_init(void *vctx, const char *mdname, void *keydata, const OSSL_PARAM params[],
                           int signing)
{
    kwp_sig *c = vctx;

    if (!kwp_sig_init(c, keydata, params) || (signing && !kwp_key_ready(c->key)))
        return 0;
    if (mdname == NULL || *mdname == '\0')
        mdname = "SHA256";
    if (!kwp_md_fetch(c->pctx, &c->md, mdname))
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
        if (!kwp_sig_usable(c, c->alg->combined_mech(c))) {
            raise_no_mech(c, "");
            return 0;
        }
        c->combined = 1; /* the token hashes: collect the data */
        return 1;
    }
    c->mdctx = EVP_MD_CTX_new();
    return c->mdctx != NULL && EVP_DigestInit_ex2(c->mdctx, c->md, NULL) == 1;
}

int kwp_sig_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                             const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, keydata, params, 1);
}

int kwp_sig_digest_verify_init(void *vctx, const char *mdname, void *keydata,
                               const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, keydata, params, 0);
}

int kwp_sig_digest_update(void *vctx, const unsigned char *data, size_t len)
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

int kwp_sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
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
        return c->alg->token_sign(c, c->alg->combined_mech(c), c->buf, c->buflen, sig, siglen,
                                  sigsize);
    if (c->mdctx == NULL || EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1)
        return 0;
    return c->alg->token_sign(c, c->alg->raw_mech(c), dgst, dlen, sig, siglen, sigsize);
}

int kwp_sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    kwp_sig *c = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (c->mdctx == NULL || EVP_DigestFinal_ex(c->mdctx, dgst, &dlen) != 1)
        return 0;
    return kwp_sig_verify(c, sig, siglen, dgst, dlen);
}
