/* SPDX-License-Identifier: Apache-2.0 */
/* Key management pieces shared by keymgmt_rsa.c and keymgmt_ec.c. */
#ifndef KWP_KEYMGMT_H
#define KWP_KEYMGMT_H

#include "kwp.h"

/* Not dispatch functions: the per-algorithm wrappers that KWP_KEYMGMT_DISPATCH defines call
 * them with the key type and OpenSSL's name. */
void *kwp_km_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg);
void *kwp_km_load(const char *alg, const void *ref, size_t ref_size);
void *kwp_km_gen_init(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg, int selection,
                      const OSSL_PARAM params[]);

/* Dispatch functions the key managers share (keymgmt.c; generation on the token in
 * keymgmt_gen.c), declared with the type OpenSSL calls them through so that the compiler checks
 * each definition; one declaration per table slot a function fills. */
OSSL_FUNC_keymgmt_free_fn kwp_km_free;
OSSL_FUNC_keymgmt_has_fn kwp_km_has;
OSSL_FUNC_keymgmt_match_fn kwp_km_match;
OSSL_FUNC_keymgmt_import_fn kwp_km_import;
OSSL_FUNC_keymgmt_export_fn kwp_km_export;
OSSL_FUNC_keymgmt_get_params_fn kwp_km_get_params;
OSSL_FUNC_keymgmt_gettable_params_fn kwp_km_rsa_gettable;
OSSL_FUNC_keymgmt_gettable_params_fn kwp_km_ec_gettable;
OSSL_FUNC_keymgmt_gettable_params_fn kwp_km_ed_gettable;
OSSL_FUNC_keymgmt_import_types_fn kwp_km_rsa_types;
OSSL_FUNC_keymgmt_export_types_fn kwp_km_rsa_types;
OSSL_FUNC_keymgmt_import_types_fn kwp_km_ec_types;
OSSL_FUNC_keymgmt_export_types_fn kwp_km_ec_types;
OSSL_FUNC_keymgmt_import_types_fn kwp_km_ed_types;
OSSL_FUNC_keymgmt_export_types_fn kwp_km_ed_types;
OSSL_FUNC_keymgmt_gen_set_params_fn kwp_km_gen_set_params;
OSSL_FUNC_keymgmt_gen_settable_params_fn kwp_km_rsa_gen_settable;
OSSL_FUNC_keymgmt_gen_settable_params_fn kwp_km_ec_gen_settable;
OSSL_FUNC_keymgmt_gen_settable_params_fn kwp_km_ed_gen_settable;
OSSL_FUNC_keymgmt_gen_fn kwp_km_gen;
OSSL_FUNC_keymgmt_gen_cleanup_fn kwp_km_gen_cleanup;

/* The per-algorithm new, load and gen_init, declared with their types too. */
#define KWP_KEYMGMT_DISPATCH(pfx, cktype, alg)                                                     \
    static OSSL_FUNC_keymgmt_new_fn pfx##_new;                                                     \
    static OSSL_FUNC_keymgmt_load_fn pfx##_load;                                                   \
    static OSSL_FUNC_keymgmt_gen_init_fn pfx##_gen_init;                                           \
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
