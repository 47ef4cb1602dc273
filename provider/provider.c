/* SPDX-License-Identifier: Apache-2.0 */
/* Provider entry point: algorithm tables, parameters, reason strings; the context it makes is
 * set up in provctx.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <keyward/keyward.h>

#include "kwp.h"

#define KWP_PROPS "provider=keyward"

static OSSL_FUNC_provider_teardown_fn kwp_teardown;
static OSSL_FUNC_provider_gettable_params_fn kwp_gettable_params;
static OSSL_FUNC_provider_get_params_fn kwp_get_params;
static OSSL_FUNC_provider_query_operation_fn kwp_query;
static OSSL_FUNC_provider_get_reason_strings_fn kwp_reasons;

static const OSSL_ALGORITHM kwp_keymgmt[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", KWP_PROPS, kwp_rsa_keymgmt_functions,
     "keyward RSA keys on a PKCS#11 token"},
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", KWP_PROPS, kwp_ec_keymgmt_functions,
     "keyward EC keys on a PKCS#11 token"},
    {"RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", KWP_PROPS, kwp_rsapss_keymgmt_functions,
     "keyward RSA keys restricted to PSS on a PKCS#11 token"},
    {"ED25519:1.3.101.112", KWP_PROPS, kwp_ed25519_keymgmt_functions,
     "keyward Ed25519 keys on a PKCS#11 token"},
    {"ED448:1.3.101.113", KWP_PROPS, kwp_ed448_keymgmt_functions,
     "keyward Ed448 keys on a PKCS#11 token"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM kwp_signature[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", KWP_PROPS, kwp_rsa_signature_functions,
     "RSA PKCS#1 v1.5 and PSS signatures on a PKCS#11 token"},
    {"ECDSA", KWP_PROPS, kwp_ecdsa_signature_functions, "ECDSA signatures on a PKCS#11 token"},
    {"ED25519:1.3.101.112", KWP_PROPS, kwp_eddsa_signature_functions, "Ed25519 on a token"},
    {"ED448:1.3.101.113", KWP_PROPS, kwp_eddsa_signature_functions, "Ed448 on a token"},
    /* the same, under the names keyward's keys give (KWP_OP_*, kwp.h) */
    {KWP_OP_RSA, KWP_PROPS, kwp_rsa_signature_functions, "RSA signatures, keyward keys"},
    {KWP_OP_ECDSA, KWP_PROPS, kwp_ecdsa_signature_functions, "ECDSA, keyward keys"},
    {KWP_OP_ED25519, KWP_PROPS, kwp_eddsa_signature_functions, "Ed25519, keyward keys"},
    {KWP_OP_ED448, KWP_PROPS, kwp_eddsa_signature_functions, "Ed448, keyward keys"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM kwp_asym_cipher[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", KWP_PROPS, kwp_rsa_asym_cipher_functions,
     "RSA decryption on a PKCS#11 token"},
    {KWP_OP_RSA, KWP_PROPS, kwp_rsa_asym_cipher_functions, "RSA decryption, keyward keys"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM kwp_keyexch[] = {
    {"ECDH", KWP_PROPS, kwp_ecdh_keyexch_functions, "ECDH with a key on a PKCS#11 token"},
    {KWP_OP_ECDH, KWP_PROPS, kwp_ecdh_keyexch_functions, "ECDH, keyward keys"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM kwp_store[] = {
    {"pkcs11", KWP_PROPS, kwp_store_functions, "keys and certificates by RFC 7512 URI"},
    {NULL, NULL, NULL, NULL}};

#define KWP_ENCODERS(names)                                                                        \
    {names, KWP_PROPS ",output=pem,structure=PrivateKeyInfo", kwp_encoder_uri_pem_functions,       \
     "key file carrying the key's pkcs11 URI"},                                                    \
        {names, KWP_PROPS ",output=der,structure=PrivateKeyInfo", kwp_encoder_uri_der_functions,   \
         "key file carrying the key's pkcs11 URI"},                                                \
    {                                                                                              \
        names, KWP_PROPS ",output=text", kwp_encoder_text_functions,                               \
            "key description without private values"                                               \
    }

static const OSSL_ALGORITHM kwp_encoder[] = {KWP_ENCODERS("RSA:rsaEncryption"),
                                             KWP_ENCODERS("RSA-PSS:RSASSA-PSS"),
                                             KWP_ENCODERS("EC:id-ecPublicKey"),
                                             KWP_ENCODERS("ED25519"),
                                             KWP_ENCODERS("ED448"),
                                             {NULL, NULL, NULL, NULL}};

#define KWP_URI_DECODER(names, fns)                                                                \
    {                                                                                              \
        names, KWP_PROPS ",input=der,structure=keyward-uri", fns, "key file carrying a pkcs11 URI" \
    }

static const OSSL_ALGORITHM kwp_decoder[] = {
    {"DER", KWP_PROPS ",input=pem", kwp_decoder_pem_functions,
     "PEM key file carrying a pkcs11 URI, to DER"},
    KWP_URI_DECODER("RSA:rsaEncryption", kwp_decoder_uri_functions),
    KWP_URI_DECODER("RSA-PSS:RSASSA-PSS", kwp_decoder_uri_rsapss_functions),
    KWP_URI_DECODER("EC:id-ecPublicKey", kwp_decoder_uri_ec_functions),
    KWP_URI_DECODER("ED25519", kwp_decoder_uri_ed25519_functions),
    KWP_URI_DECODER("ED448", kwp_decoder_uri_ed448_functions),
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *kwp_query(void *provctx, int op, int *no_cache)
{
    *no_cache = 0;
    switch (op) {
    case OSSL_OP_KEYMGMT:
        return kwp_keymgmt;
    case OSSL_OP_SIGNATURE:
        return kwp_signature;
    case OSSL_OP_ASYM_CIPHER:
        return kwp_asym_cipher;
    case OSSL_OP_KEYEXCH:
        return kwp_keyexch;
    case OSSL_OP_STORE:
        return kwp_store;
    case OSSL_OP_ENCODER:
        return kwp_encoder;
    case OSSL_OP_DECODER:
        return kwp_decoder;
    }
    return NULL;
}

static OSSL_ITEM reason_items[KW_ERR_MAX];
static pthread_once_t reason_once = PTHREAD_ONCE_INIT;

/* Built from the one table in kw_err.c so the words stay in one place. */
static void reasons_build(void)
{
    size_t n = 0;
    for (int e = 1; e < KW_ERR_MAX; e++) {
        reason_items[n].id = (unsigned)KWP_R(e);
        reason_items[n].ptr = (void *)kw_err_name((kw_err)e);
        n++;
    }
}

static const OSSL_ITEM *kwp_reasons(void *provctx)
{
    pthread_once(&reason_once, reasons_build);
    return reason_items;
}

static const OSSL_PARAM *kwp_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0), OSSL_PARAM_END};
    return p;
}

static int kwp_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "keyward PKCS#11 provider"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, KEYWARD_VERSION_STR))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, KEYWARD_VERSION_STR))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static void kwp_teardown(void *provctx)
{
    kwp_ctx *ctx = provctx;
    if (ctx == NULL)
        return;
    kwp_decoder_teardown(ctx);
    kw_p11_module_put(ctx->mod);
    OSSL_LIB_CTX_free(ctx->libctx);
    free(ctx->module_path);
    free(ctx->pin_source);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static const OSSL_DISPATCH kwp_dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))kwp_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))kwp_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))kwp_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))kwp_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))kwp_reasons},
    {0, NULL}};

__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in,
                                                              const OSSL_DISPATCH **out,
                                                              void **provctx)
{
    kwp_ctx *ctx = calloc(1, sizeof(*ctx));

    if (ctx == NULL)
        return 0;
    ctx->core = handle;
    pthread_mutex_init(&ctx->lock, NULL);
    if (!kwp_ctx_read_config(ctx, in))
        goto err;
    /* For BIOs handed to us by the core (decoders). */
    ctx->libctx = OSSL_LIB_CTX_new_from_dispatch(handle, in);
    if (ctx->libctx == NULL) {
        kwp_raise(ctx, KWP_R(KW_ERR_MEMORY), "cannot set up the library contexts");
        goto err;
    }
    if (ctx->load_early && kwp_module(ctx) == NULL)
        goto err;
    *out = kwp_dispatch;
    *provctx = ctx;
    return 1;
err:
    kwp_teardown(ctx);
    return 0;
}
