/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE: the context and the code shared by rsa_sig.c, ecdsa_sig.c and eddsa_sig.c
 * (signature.c). The shared code reaches what differs per algorithm only through the context's
 * kwp_sig_alg, never by calling an algorithm's file. */
#ifndef KWP_SIG_H
#define KWP_SIG_H

#include "kwp.h"

typedef struct kwp_sig kwp_sig;

/* What one algorithm adds to the shared context code. NULL hooks: nothing to add. */
typedef struct {
    CK_KEY_TYPE type; /* of the keys it signs with */
    const char *name; /* in error messages */
    /* A key was given to init (its type already checked). */
    void (*key_init)(kwp_sig *c, const kwp_key *k);
    /* Parameters beyond the digest, set after it and read after the AlgorithmIdentifier and
     * the digest. */
    int (*set_ctx_params)(kwp_sig *c, const OSSL_PARAM params[]);
    int (*get_ctx_params)(kwp_sig *c, OSSL_PARAM params[]);
    /* The settings on a default-provider verify context (aid: it encodes the
     * AlgorithmIdentifier, with the numbers really used). */
    int (*shadow_params)(kwp_sig *c, EVP_PKEY_CTX *v, int aid);
    /* The mechanism that signs a digest made on the host, and the hash-and-sign one. */
    CK_MECHANISM_TYPE (*raw_mech)(const kwp_sig *c);
    CK_MECHANISM_TYPE (*combined_mech)(const kwp_sig *c);
    /* Can the token sign a host digest with a mechanism the key allows, and which one would
     * that be (named when it cannot)? NULL: raw_mech. */
    int (*host_hash_ok)(kwp_sig *c);
    CK_MECHANISM_TYPE (*host_mech)(kwp_sig *c);
    /* The checks of a one-shot sign on its input (a digest, or one block for raw RSA). */
    int (*sign_check)(kwp_sig *c, size_t tbslen);
    /* Sign with the token: data is the digest (raw mechanisms) or the message (combined). */
    int (*token_sign)(kwp_sig *c, CK_MECHANISM_TYPE mt, const unsigned char *data, size_t dlen,
                      unsigned char *sig, size_t *siglen, size_t sigsize);
} kwp_sig_alg;

struct kwp_sig {
    kwp_ctx *pctx;
    const kwp_sig_alg *alg;
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
};

void *kwp_sig_newctx(void *provctx, const kwp_sig_alg *alg);
/* Take the key (NULL: keep the one set before) and the parameters; starts no digest. */
int kwp_sig_init(kwp_sig *c, void *keydata, const OSSL_PARAM params[]);
/* Does the token have m for signing; does the key's CKA_ALLOWED_MECHANISMS allow it too? */
int kwp_sig_token_has(kwp_sig *c, CK_MECHANISM_TYPE m);
int kwp_sig_usable(kwp_sig *c, CK_MECHANISM_TYPE m);
/* Is tbslen the size of the context's digest (or is there none)? Raises the reason if not. */
int kwp_sig_check_digest_len(kwp_sig *c, size_t tbslen);
/* A default-provider context on the public half with the context's settings, for verify
 * (recover: verify-recover; aid: for encoding the AlgorithmIdentifier). */
EVP_PKEY_CTX *kwp_sig_shadow_ctx(kwp_sig *c, int recover, int aid);

/* The dispatch functions RSA and ECDSA share (EdDSA: new, free and dup), with their types. */
OSSL_FUNC_signature_freectx_fn kwp_sig_freectx;
OSSL_FUNC_signature_dupctx_fn kwp_sig_dupctx;
OSSL_FUNC_signature_sign_init_fn kwp_sig_sign_init;
OSSL_FUNC_signature_verify_init_fn kwp_sig_sign_init;
OSSL_FUNC_signature_verify_recover_init_fn kwp_sig_sign_init;
OSSL_FUNC_signature_sign_fn kwp_sig_sign;
OSSL_FUNC_signature_verify_fn kwp_sig_verify;
OSSL_FUNC_signature_digest_sign_init_fn kwp_sig_digest_sign_init;
OSSL_FUNC_signature_digest_sign_update_fn kwp_sig_digest_update;
OSSL_FUNC_signature_digest_verify_update_fn kwp_sig_digest_update;
OSSL_FUNC_signature_digest_sign_final_fn kwp_sig_digest_sign_final;
OSSL_FUNC_signature_digest_verify_init_fn kwp_sig_digest_verify_init;
OSSL_FUNC_signature_digest_verify_final_fn kwp_sig_digest_verify_final;
OSSL_FUNC_signature_get_ctx_params_fn kwp_sig_get_ctx_params;
OSSL_FUNC_signature_gettable_ctx_params_fn kwp_sig_gettable_ctx_params;
OSSL_FUNC_signature_set_ctx_params_fn kwp_sig_set_ctx_params;

/* The entries of the RSA and ECDSA tables after NEWCTX. */
#define KWP_SIG_COMMON                                                                             \
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))kwp_sig_freectx},                                \
        {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))kwp_sig_dupctx},                              \
        {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))kwp_sig_sign_init},                        \
        {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))kwp_sig_sign},                                  \
        {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))kwp_sig_sign_init},                      \
        {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))kwp_sig_verify},                              \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))kwp_sig_digest_sign_init},          \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))kwp_sig_digest_update},           \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))kwp_sig_digest_sign_final},        \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))kwp_sig_digest_verify_init},      \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))kwp_sig_digest_update},         \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))kwp_sig_digest_verify_final},    \
        {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))kwp_sig_get_ctx_params},              \
        {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))kwp_sig_gettable_ctx_params},    \
    {                                                                                              \
        OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))kwp_sig_set_ctx_params                 \
    }

#endif
