/* SPDX-License-Identifier: Apache-2.0 */
/* Key management shared by RSA and EC: a token key is a reference; only its public half is ever
 * imported or exported, so public operations can run anywhere and private ones stay here. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "kwp.h"
#include "kwp_keymgmt.h"

void *kwp_km_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg)
{
    return kwp_key_new(ctx, type, alg);
}

void kwp_km_free(void *keydata)
{
    kwp_key_free(keydata);
}

void *kwp_km_load(const char *alg, const void *ref, size_t ref_size)
{
    kwp_keyref r;

    if (ref_size != sizeof(r))
        return NULL;
    memcpy(&r, ref, sizeof(r));
    if (r.magic != KWP_KEY_MAGIC || r.key == NULL || r.key->magic != KWP_KEY_MAGIC ||
        strcmp(r.key->alg, alg) != 0)
        return NULL;
    return kwp_key_ref(r.key);
}

int kwp_km_has(const void *keydata, int selection)
{
    const kwp_key *k = keydata;

    if (k == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !k->has_private)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && k->pub == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->pub == NULL)
        return 0;
    return 1;
}

int kwp_km_match(const void *a, const void *b, int selection)
{
    const kwp_key *x = a, *y = b;

    if (strcmp(x->alg, y->alg) != 0 || x->pub == NULL || y->pub == NULL)
        return 0;
    /* Private values are never here to compare: a key pair matches by its public half. */
    if (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS))
        return EVP_PKEY_eq(x->pub, y->pub) == 1;
    return 1;
}

int kwp_km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    kwp_key *k = keydata;
    EVP_PKEY_CTX *pc;
    EVP_PKEY *pk = NULL;

    if (k == NULL || k->pub != NULL || k->has_private)
        return 0;
    /* Only the public half is taken, whatever else the caller offers. */
    pc = EVP_PKEY_CTX_new_from_name(k->pctx->hlibctx, k->alg, KWP_HELPER_PROPQ);
    if (pc != NULL && EVP_PKEY_fromdata_init(pc) == 1)
        (void)EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params);
    EVP_PKEY_CTX_free(pc);
    if (pk == NULL)
        return 0;
    k->pub = pk;
    k->bits = EVP_PKEY_get_bits(pk);
    return 1;
}

int kwp_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    kwp_key *k = keydata;
    OSSL_PARAM *params = NULL;
    int ok;

    if (k == NULL || k->pub == NULL)
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
        /* The reason alone, unformatted (~300 instructions): OpenSSL asks this on its own in
         * places and clears the error. Operations no longer do (KWP_OP_* in kwp.h). */
        kwp_raise_reason(k->pctx, KWP_R(KW_ERR_EXPORT));
        return 0;
    }
    if (EVP_PKEY_todata(k->pub, EVP_PKEY_PUBLIC_KEY, &params) != 1)
        return 0;
    ok = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
}

int kwp_km_get_params(void *keydata, OSSL_PARAM params[])
{
    kwp_key *k = keydata;
    OSSL_PARAM *p;

    if (k == NULL || k->pub == NULL)
        return 0;
    /* Public values (n, e, group, point...) come from the public half. */
    if (!EVP_PKEY_get_params(k->pub, params))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) != NULL &&
        !OSSL_PARAM_set_int(p, EVP_PKEY_get_bits(k->pub)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) != NULL &&
        !OSSL_PARAM_set_int(p, EVP_PKEY_get_security_bits(k->pub)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) != NULL &&
        !OSSL_PARAM_set_int(p, EVP_PKEY_get_size(k->pub)))
        return 0;
    /* EdDSA signs the message itself: no default digest, as the default provider says. */
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, k->type == CKK_EC_EDWARDS ? "" : "SHA256"))
        return 0;
    return 1;
}

/* What every key type answers in get_params (kwp_km_get_params). */
#define KWP_KM_GETTABLE_COMMON                                                                     \
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),                                                    \
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),                                       \
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),                                            \
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0)

const OSSL_PARAM *kwp_km_rsa_gettable(void *provctx)
{
    static const OSSL_PARAM p[] = {KWP_KM_GETTABLE_COMMON,
                                   OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
                                   OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0), OSSL_PARAM_END};
    return p;
}

const OSSL_PARAM *kwp_km_ec_gettable(void *provctx)
{
    static const OSSL_PARAM p[] = {
        KWP_KM_GETTABLE_COMMON, OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0), OSSL_PARAM_END};
    return p;
}

const OSSL_PARAM *kwp_km_ed_gettable(void *provctx)
{
    static const OSSL_PARAM p[] = {
        KWP_KM_GETTABLE_COMMON, OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0), OSSL_PARAM_END};
    return p;
}

const OSSL_PARAM *kwp_km_ed_types(int selection)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
                                   OSSL_PARAM_END};
    return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? p : NULL;
}

const OSSL_PARAM *kwp_km_rsa_types(int selection)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
                                   OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0), OSSL_PARAM_END};
    return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? p : NULL;
}

const OSSL_PARAM *kwp_km_ec_types(int selection)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
                                   OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
                                   OSSL_PARAM_END};
    return (selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS))
               ? p
               : NULL;
}
