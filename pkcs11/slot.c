/* SPDX-License-Identifier: Apache-2.0 */
/* Slots, token information and the mechanisms each mode offers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

CK_RV C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    CK_ULONG n = 0;
    for (size_t i = 0; i < kwk_token_count(); i++)
        if (!present || kwk_token_open(kwk_token_at(i)) == CKR_OK)
            n++;
    CK_RV rv = CKR_OK;
    if (list != NULL && *count < n) {
        rv = CKR_BUFFER_TOO_SMALL;
    } else if (list != NULL) {
        CK_ULONG j = 0;
        for (size_t i = 0; i < kwk_token_count(); i++)
            if (!present || kwk_token_at(i)->ring != 0)
                list[j++] = i;
    }
    *count = n;
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

/* The token in a slot, with kwk_lock held on success; the CKR_ of the first check that fails.
 * out is the caller's output argument, which PKCS#11 requires. */
static CK_RV slot_token(CK_SLOT_ID slot, const void *out, kwk_token **t)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    if ((*t = kwk_token_by_slot(slot)) == NULL) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_SLOT_ID_INVALID;
    }
    return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    kwk_token *t;
    CK_RV rv = slot_token(slot, info, &t);
    if (rv != CKR_OK)
        return rv;
    char d[80];
    snprintf(d, sizeof(d), "keyward kernel keyring %.40s", t->spec);
    memset(info, 0, sizeof(*info));
    kwk_pad(info->slotDescription, sizeof(info->slotDescription), d);
    kwk_pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
    info->flags = kwk_token_open(t) == CKR_OK ? CKF_TOKEN_PRESENT : 0;
    info->hardwareVersion.major = 0;
    info->firmwareVersion.major = 0;
    pthread_mutex_unlock(&kwk_lock);
    return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    kwk_token *t;
    CK_RV rv = slot_token(slot, info, &t);
    if (rv != CKR_OK)
        return rv;
    rv = kwk_token_open(t);
    if (rv == CKR_OK) {
        char serial[17];
        memset(info, 0, sizeof(*info));
        kwk_pad(info->label, sizeof(info->label), t->label);
        kwk_pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
        /* The model says where private keys live: never silent about software mode. */
        kwk_pad(info->model, sizeof(info->model), kwk_mode_name(t->mode));
        snprintf(serial, sizeof(serial), "%08x", (unsigned)t->ring);
        kwk_pad(info->serialNumber, sizeof(info->serialNumber), serial);
        info->flags = CKF_RNG | CKF_TOKEN_INITIALIZED;
        if (t->have_pin) {
            unsigned fails = kwk_token_pin_failures(t);
            info->flags |= CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED;
            if (fails >= t->pin_max_tries)
                info->flags |= CKF_USER_PIN_LOCKED;
            else if (fails + 1 == t->pin_max_tries)
                info->flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
            else if (fails > 0)
                info->flags |= CKF_USER_PIN_COUNT_LOW;
        }
        info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
        info->ulSessionCount = kwk_session_count(t, 0);
        info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
        info->ulRwSessionCount = kwk_session_count(t, 1);
        info->ulMaxPinLen = 256;
        info->ulMinPinLen = t->have_pin ? 1 : 0;
        info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->hardwareVersion.major = 0;
        info->firmwareVersion.major = t->mode == KWK_MODE_KERNEL ? 1 : 0;
        kwk_pad(info->utcTime, sizeof(info->utcTime), "");
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

/* Mechanisms. Kernel mode does RSA; EC and EdDSA keys are always in software mode, so they are
 * listed in both modes. Flags say what the token really does with each. */
typedef struct {
    CK_MECHANISM_TYPE m;
    CK_ULONG min, max;
    CK_FLAGS flags;
} mech_info;

#define RSA_SV (CKF_SIGN | CKF_VERIFY)
static const mech_info mechs[] = {
    {CKM_RSA_PKCS_KEY_PAIR_GEN, 1024, 4096, CKF_GENERATE_KEY_PAIR},
    {CKM_RSA_PKCS, 512, 4096, RSA_SV | CKF_DECRYPT},
    {CKM_RSA_X_509, 512, 4096, RSA_SV | CKF_DECRYPT},
    {CKM_RSA_PKCS_OAEP, 512, 4096, CKF_DECRYPT},
    {CKM_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA1_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA224_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA256_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA384_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA512_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA1_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA224_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA256_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA384_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA512_RSA_PKCS_PSS, 512, 4096, RSA_SV},
#define EC_FL (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)
    {CKM_EC_KEY_PAIR_GEN, 256, 521, CKF_GENERATE_KEY_PAIR | EC_FL},
    {CKM_ECDSA, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA1, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA224, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA256, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA384, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA512, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDH1_DERIVE, 256, 521, CKF_DERIVE | EC_FL},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, 255, 448, CKF_GENERATE_KEY_PAIR},
    {CKM_EDDSA, 255, 448, CKF_SIGN | CKF_VERIFY},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (kwk_token_by_slot(slot) == NULL)
        return CKR_SLOT_ID_INVALID;
    if (list != NULL && *count < NMECHS) {
        *count = NMECHS;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (list != NULL)
        for (size_t i = 0; i < NMECHS; i++)
            list[i] = mechs[i].m;
    *count = NMECHS;
    return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    if (kwk_token_by_slot(slot) == NULL)
        return CKR_SLOT_ID_INVALID;
    for (size_t i = 0; i < NMECHS; i++) {
        if (mechs[i].m != type)
            continue;
        info->ulMinKeySize = mechs[i].min;
        info->ulMaxKeySize = mechs[i].max;
        info->flags = mechs[i].flags;
        return CKR_OK;
    }
    return CKR_MECHANISM_INVALID;
}
