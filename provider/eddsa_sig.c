/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE for Edwards-curve token keys (Ed25519, Ed448): one-shot over the message with
 * CKM_EDDSA, verified on the public half. Uses signature.c's context, none of its operations. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "kwp_sig.h"

static OSSL_FUNC_signature_newctx_fn eddsa_newctx;
static OSSL_FUNC_signature_digest_sign_init_fn eddsa_digest_init;
static OSSL_FUNC_signature_digest_verify_init_fn eddsa_digest_init;
static OSSL_FUNC_signature_digest_sign_fn eddsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_fn eddsa_digest_verify;
static OSSL_FUNC_signature_get_ctx_params_fn eddsa_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn eddsa_gettable_ctx_params;

/* No hashing, no parameters: the shared code only keeps the key. */
static const kwp_sig_alg eddsa_alg = {.type = CKK_EC_EDWARDS, .name = "EdDSA"};

static void *eddsa_newctx(void *provctx, const char *propq)
{
    return kwp_sig_newctx(provctx, &eddsa_alg);
}

static int eddsa_digest_init(void *vctx, const char *mdname, void *keydata,
                             const OSSL_PARAM params[])
{
    kwp_sig *c = vctx;

    if (mdname != NULL && *mdname != '\0') {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "EdDSA takes no digest (got %s)", mdname);
        return 0;
    }
    return kwp_sig_init(c, keydata, NULL) && kwp_key_ready(c->key);
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
    if (sigsize < max || !kwp_sig_token_has(c, CKM_EDDSA)) {
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
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))kwp_sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))kwp_sig_dupctx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))eddsa_digest_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))eddsa_digest_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))eddsa_digest_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))eddsa_digest_verify},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))eddsa_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))eddsa_gettable_ctx_params},
    {0, NULL}};
