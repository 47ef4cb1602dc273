/* SPDX-License-Identifier: Apache-2.0 */
/* KEYMGMT for EC token keys (P-256, P-384, P-521). */
#include <openssl/core_names.h>

#include "kwp_keymgmt.h"

KWP_KEYMGMT_DISPATCH(kwp_ec, CKK_EC, "EC")

static OSSL_FUNC_keymgmt_query_operation_name_fn kwp_ec_operation_name;

/* EC keys sign with ECDSA and agree keys with ECDH: the algorithms are not named EC. */
static const char *kwp_ec_operation_name(int operation_id)
{
    switch (operation_id) {
    case OSSL_OP_SIGNATURE:
        return KWP_OP_ECDSA;
    case OSSL_OP_KEYEXCH:
        return KWP_OP_ECDH;
    }
    return "EC";
}

const OSSL_DISPATCH kwp_ec_keymgmt_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))kwp_ec_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))kwp_km_free},
    {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))kwp_ec_load},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))kwp_km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))kwp_km_match},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))kwp_km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))kwp_km_ec_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))kwp_km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))kwp_km_ec_types},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))kwp_km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))kwp_km_ec_gettable},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))kwp_ec_operation_name},
    {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))kwp_ec_gen_init},
    {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))kwp_km_gen_set_params},
    {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))kwp_km_ec_gen_settable},
    {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))kwp_km_gen},
    {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))kwp_km_gen_cleanup},
    {0, NULL}};
