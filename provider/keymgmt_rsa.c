/* SPDX-License-Identifier: Apache-2.0 */
/* KEYMGMT for RSA token keys. */
#include <openssl/core_names.h>

#include "kwp_keymgmt.h"

KWP_KEYMGMT_DISPATCH(kwp_rsa, CKK_RSA, "RSA")
KWP_KEYMGMT_DISPATCH(kwp_rsapss, CKK_RSA, "RSA-PSS")

static OSSL_FUNC_keymgmt_query_operation_name_fn kwp_rsa_operation_name;

/* RSA-PSS keys sign with the RSA signature implementation, restricted to PSS there. */
static const char *kwp_rsa_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE || operation_id == OSSL_OP_ASYM_CIPHER ? KWP_OP_RSA
                                                                                    : "RSA";
}

const OSSL_DISPATCH kwp_rsa_keymgmt_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))kwp_rsa_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))kwp_km_free},
    {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))kwp_rsa_load},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))kwp_km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))kwp_km_match},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))kwp_km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))kwp_km_rsa_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))kwp_km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))kwp_km_rsa_types},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))kwp_km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))kwp_km_rsa_gettable},
    {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))kwp_rsa_gen_init},
    {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))kwp_km_gen_set_params},
    {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))kwp_km_rsa_gen_settable},
    {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))kwp_km_gen},
    {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))kwp_km_gen_cleanup},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))kwp_rsa_operation_name},
    {0, NULL}};

const OSSL_DISPATCH kwp_rsapss_keymgmt_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))kwp_rsapss_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))kwp_km_free},
    {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))kwp_rsapss_load},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))kwp_km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))kwp_km_match},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))kwp_km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))kwp_km_rsa_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))kwp_km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))kwp_km_rsa_types},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))kwp_km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))kwp_km_rsa_gettable},
    {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))kwp_rsapss_gen_init},
    {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))kwp_km_gen_set_params},
    {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))kwp_km_rsa_gen_settable},
    {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))kwp_km_gen},
    {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))kwp_km_gen_cleanup},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))kwp_rsa_operation_name},
    {0, NULL}};
