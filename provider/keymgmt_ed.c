/* SPDX-License-Identifier: Apache-2.0 */
/* KEYMGMT for Edwards-curve token keys (Ed25519, Ed448) where the token has CKM_EDDSA. */
#include <openssl/core_names.h>

#include "kwp_keymgmt.h"

KWP_KEYMGMT_DISPATCH(kwp_ed25519, CKK_EC_EDWARDS, "ED25519")
KWP_KEYMGMT_DISPATCH(kwp_ed448, CKK_EC_EDWARDS, "ED448")

static OSSL_FUNC_keymgmt_query_operation_name_fn kwp_ed25519_operation_name;
static OSSL_FUNC_keymgmt_query_operation_name_fn kwp_ed448_operation_name;

static const char *kwp_ed25519_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? KWP_OP_ED25519 : "ED25519";
}

static const char *kwp_ed448_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? KWP_OP_ED448 : "ED448";
}

#define KWP_ED_KEYMGMT(pfx)                                                                        \
    {                                                                                              \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))pfx##_new},                                        \
            {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))kwp_km_free},                                 \
            {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))pfx##_load},                                  \
            {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))kwp_km_has},                                   \
            {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))kwp_km_match},                               \
            {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))kwp_km_import},                             \
            {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))kwp_km_ed_types},                     \
            {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))kwp_km_export},                             \
            {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))kwp_km_ed_types},                     \
            {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))kwp_km_get_params},                     \
            {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))kwp_km_ed_gettable},               \
            {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))pfx##_gen_init},                          \
            {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))kwp_km_gen_set_params},             \
            {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))kwp_km_ed_gen_settable},       \
            {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))kwp_km_gen},                                   \
            {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))kwp_km_gen_cleanup},                   \
            {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))pfx##_operation_name},        \
        {                                                                                          \
            0, NULL                                                                                \
        }                                                                                          \
    }

const OSSL_DISPATCH kwp_ed25519_keymgmt_functions[] = KWP_ED_KEYMGMT(kwp_ed25519);
const OSSL_DISPATCH kwp_ed448_keymgmt_functions[] = KWP_ED_KEYMGMT(kwp_ed448);
