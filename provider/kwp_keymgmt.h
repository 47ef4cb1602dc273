/* SPDX-License-Identifier: Apache-2.0 */
/* Key management pieces shared by keymgmt_rsa.c and keymgmt_ec.c. */
#ifndef KWP_KEYMGMT_H
#define KWP_KEYMGMT_H

#include "kwp.h"

void *kwp_km_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg);
void kwp_km_free(void *keydata);
void *kwp_km_load(const char *alg, const void *ref, size_t ref_size);
int kwp_km_has(const void *keydata, int selection);
int kwp_km_match(const void *a, const void *b, int selection);
int kwp_km_import(void *keydata, int selection, const OSSL_PARAM params[]);
int kwp_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg);
int kwp_km_get_params(void *keydata, OSSL_PARAM params[]);
const OSSL_PARAM *kwp_km_rsa_gettable(void *provctx);
const OSSL_PARAM *kwp_km_ec_gettable(void *provctx);
const OSSL_PARAM *kwp_km_rsa_types(int selection);
const OSSL_PARAM *kwp_km_ec_types(int selection);
const OSSL_PARAM *kwp_km_ed_gettable(void *provctx);
const OSSL_PARAM *kwp_km_ed_types(int selection);
const OSSL_PARAM *kwp_km_ed_gen_settable(void *genctx, void *provctx);

/* Key generation on the token (keymgmt_gen.c). */
void *kwp_km_gen_init(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg, int selection,
                      const OSSL_PARAM params[]);
int kwp_km_gen_set_params(void *genctx, const OSSL_PARAM params[]);
const OSSL_PARAM *kwp_km_rsa_gen_settable(void *genctx, void *provctx);
const OSSL_PARAM *kwp_km_ec_gen_settable(void *genctx, void *provctx);
void *kwp_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg);
void kwp_km_gen_cleanup(void *genctx);

#define KWP_KEYMGMT_DISPATCH(pfx, cktype, alg)                                                     \
    static void *pfx##_new(void *provctx)                                                          \
    {                                                                                              \
        return kwp_km_new(provctx, cktype, alg);                                                   \
    }                                                                                              \
    static void *pfx##_load(const void *ref, size_t ref_size)                                      \
    {                                                                                              \
        return kwp_km_load(alg, ref, ref_size);                                                    \
    }                                                                                              \
    static void *pfx##_gen_init(void *provctx, int selection, const OSSL_PARAM params[])           \
    {                                                                                              \
        return kwp_km_gen_init(provctx, cktype, alg, selection, params);                           \
    }

#endif
