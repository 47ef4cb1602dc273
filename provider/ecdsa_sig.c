/* SPDX-License-Identifier: Apache-2.0 */
/* SIGNATURE for EC token keys: ECDSA over the host's digest (CKM_ECDSA) or the token's
 * hash-and-sign mechanism; the token's r || s becomes the DER ECDSA-Sig-Value (ecdsa_der.c).
 * The context and the operations it shares with RSA are signature.c's. */
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "kwp_sig.h"

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;
static OSSL_FUNC_signature_settable_ctx_params_fn ecdsa_settable_ctx_params;

static const OSSL_PARAM *ecdsa_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
                                   OSSL_PARAM_END};
    return p;
}

/* The hash-and-sign mechanism for the digest, for tokens that want the data. */
static CK_MECHANISM_TYPE ecdsa_combined_mech(const kwp_sig *c)
{
    static const struct {
        int nid;
        CK_MECHANISM_TYPE mech;
    } t[] = {
        {NID_sha1, CKM_ECDSA_SHA1},     {NID_sha224, CKM_ECDSA_SHA224},
        {NID_sha256, CKM_ECDSA_SHA256}, {NID_sha384, CKM_ECDSA_SHA384},
        {NID_sha512, CKM_ECDSA_SHA512},
    };
    int nid = c->md ? EVP_MD_get_type(c->md) : 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].nid == nid)
            return t[i].mech;
    return CK_UNAVAILABLE_INFORMATION;
}

static CK_MECHANISM_TYPE ecdsa_raw_mech(const kwp_sig *c)
{
    return CKM_ECDSA;
}

static int ecdsa_sign_check(kwp_sig *c, size_t tbslen)
{
    return kwp_sig_check_digest_len(c, tbslen);
}

/* Sign with the token. data is the digest (CKM_ECDSA) or the message (combined). */
static int ecdsa_token_sign(kwp_sig *c, CK_MECHANISM_TYPE mt, const unsigned char *data,
                            size_t dlen, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    CK_MECHANISM mech = {mt, NULL, 0};
    unsigned char raw[1024];
    size_t rawlen = sizeof(raw);

    return kwp_key_private_op(c->key, KWP_OP_SIGN, &mech, data, dlen, raw, &rawlen) &&
           kwp_ecdsa_sig_der(raw, rawlen, sig, siglen, sigsize);
}

static const kwp_sig_alg ecdsa_alg = {
    .type = CKK_EC,
    .name = "ECDSA",
    .raw_mech = ecdsa_raw_mech,
    .combined_mech = ecdsa_combined_mech,
    .sign_check = ecdsa_sign_check,
    .token_sign = ecdsa_token_sign,
};

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return kwp_sig_newctx(provctx, &ecdsa_alg);
}

const OSSL_DISPATCH kwp_ecdsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx},
    KWP_SIG_COMMON,
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))ecdsa_settable_ctx_params},
    {0, NULL}};
