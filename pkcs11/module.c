/* SPDX-License-Identifier: Apache-2.0 */
/* The module's face: C_GetInfo, the function lists (2.40 and 3.0 interfaces) and the three
 * exported entry points. State lives in state.c, initialisation in init.c. */
#include <stdio.h>
#include <string.h>

#include <keyward/keyward.h>

#include "kwk.h"

#define KWK_EXPORT __attribute__((visibility("default")))

CK_RV C_GetInfo(CK_INFO_PTR info)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 3;
    info->cryptokiVersion.minor = 0;
    kwk_pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
    kwk_pad(info->libraryDescription, sizeof(info->libraryDescription),
            "keyward Linux keyring token");
    info->libraryVersion.major = 0;
    info->libraryVersion.minor = 1;
    return CKR_OK;
}

CK_FUNCTION_LIST kwk_functions_240 = {
    .version = {2, 40},
    .C_Initialize = C_Initialize,
    .C_Finalize = C_Finalize,
    .C_GetInfo = C_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = C_GetSlotList,
    .C_GetSlotInfo = C_GetSlotInfo,
    .C_GetTokenInfo = C_GetTokenInfo,
    .C_GetMechanismList = C_GetMechanismList,
    .C_GetMechanismInfo = C_GetMechanismInfo,
    .C_InitToken = C_InitToken,
    .C_InitPIN = C_InitPIN,
    .C_SetPIN = C_SetPIN,
    .C_OpenSession = C_OpenSession,
    .C_CloseSession = C_CloseSession,
    .C_CloseAllSessions = C_CloseAllSessions,
    .C_GetSessionInfo = C_GetSessionInfo,
    .C_GetOperationState = C_GetOperationState,
    .C_SetOperationState = C_SetOperationState,
    .C_Login = C_Login,
    .C_Logout = C_Logout,
    .C_CreateObject = C_CreateObject,
    .C_CopyObject = C_CopyObject,
    .C_DestroyObject = C_DestroyObject,
    .C_GetObjectSize = C_GetObjectSize,
    .C_GetAttributeValue = C_GetAttributeValue,
    .C_SetAttributeValue = C_SetAttributeValue,
    .C_FindObjectsInit = C_FindObjectsInit,
    .C_FindObjects = C_FindObjects,
    .C_FindObjectsFinal = C_FindObjectsFinal,
    .C_EncryptInit = C_EncryptInit,
    .C_Encrypt = C_Encrypt,
    .C_EncryptUpdate = C_EncryptUpdate,
    .C_EncryptFinal = C_EncryptFinal,
    .C_DecryptInit = C_DecryptInit,
    .C_Decrypt = C_Decrypt,
    .C_DecryptUpdate = C_DecryptUpdate,
    .C_DecryptFinal = C_DecryptFinal,
    .C_DigestInit = C_DigestInit,
    .C_Digest = C_Digest,
    .C_DigestUpdate = C_DigestUpdate,
    .C_DigestKey = C_DigestKey,
    .C_DigestFinal = C_DigestFinal,
    .C_SignInit = C_SignInit,
    .C_Sign = C_Sign,
    .C_SignUpdate = C_SignUpdate,
    .C_SignFinal = C_SignFinal,
    .C_SignRecoverInit = C_SignRecoverInit,
    .C_SignRecover = C_SignRecover,
    .C_VerifyInit = C_VerifyInit,
    .C_Verify = C_Verify,
    .C_VerifyUpdate = C_VerifyUpdate,
    .C_VerifyFinal = C_VerifyFinal,
    .C_VerifyRecoverInit = C_VerifyRecoverInit,
    .C_VerifyRecover = C_VerifyRecover,
    .C_DigestEncryptUpdate = C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
    .C_GenerateKey = C_GenerateKey,
    .C_GenerateKeyPair = C_GenerateKeyPair,
    .C_WrapKey = C_WrapKey,
    .C_UnwrapKey = C_UnwrapKey,
    .C_DeriveKey = C_DeriveKey,
    .C_SeedRandom = C_SeedRandom,
    .C_GenerateRandom = C_GenerateRandom,
    .C_GetFunctionStatus = C_GetFunctionStatus,
    .C_CancelFunction = C_CancelFunction,
    .C_WaitForSlotEvent = C_WaitForSlotEvent,
};

CK_FUNCTION_LIST_3_0 kwk_functions_30 = {
    .version = {3, 0},
    .C_Initialize = C_Initialize,
    .C_Finalize = C_Finalize,
    .C_GetInfo = C_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = C_GetSlotList,
    .C_GetSlotInfo = C_GetSlotInfo,
    .C_GetTokenInfo = C_GetTokenInfo,
    .C_GetMechanismList = C_GetMechanismList,
    .C_GetMechanismInfo = C_GetMechanismInfo,
    .C_InitToken = C_InitToken,
    .C_InitPIN = C_InitPIN,
    .C_SetPIN = C_SetPIN,
    .C_OpenSession = C_OpenSession,
    .C_CloseSession = C_CloseSession,
    .C_CloseAllSessions = C_CloseAllSessions,
    .C_GetSessionInfo = C_GetSessionInfo,
    .C_GetOperationState = C_GetOperationState,
    .C_SetOperationState = C_SetOperationState,
    .C_Login = C_Login,
    .C_Logout = C_Logout,
    .C_CreateObject = C_CreateObject,
    .C_CopyObject = C_CopyObject,
    .C_DestroyObject = C_DestroyObject,
    .C_GetObjectSize = C_GetObjectSize,
    .C_GetAttributeValue = C_GetAttributeValue,
    .C_SetAttributeValue = C_SetAttributeValue,
    .C_FindObjectsInit = C_FindObjectsInit,
    .C_FindObjects = C_FindObjects,
    .C_FindObjectsFinal = C_FindObjectsFinal,
    .C_EncryptInit = C_EncryptInit,
    .C_Encrypt = C_Encrypt,
    .C_EncryptUpdate = C_EncryptUpdate,
    .C_EncryptFinal = C_EncryptFinal,
    .C_DecryptInit = C_DecryptInit,
    .C_Decrypt = C_Decrypt,
    .C_DecryptUpdate = C_DecryptUpdate,
    .C_DecryptFinal = C_DecryptFinal,
    .C_DigestInit = C_DigestInit,
    .C_Digest = C_Digest,
    .C_DigestUpdate = C_DigestUpdate,
    .C_DigestKey = C_DigestKey,
    .C_DigestFinal = C_DigestFinal,
    .C_SignInit = C_SignInit,
    .C_Sign = C_Sign,
    .C_SignUpdate = C_SignUpdate,
    .C_SignFinal = C_SignFinal,
    .C_SignRecoverInit = C_SignRecoverInit,
    .C_SignRecover = C_SignRecover,
    .C_VerifyInit = C_VerifyInit,
    .C_Verify = C_Verify,
    .C_VerifyUpdate = C_VerifyUpdate,
    .C_VerifyFinal = C_VerifyFinal,
    .C_VerifyRecoverInit = C_VerifyRecoverInit,
    .C_VerifyRecover = C_VerifyRecover,
    .C_DigestEncryptUpdate = C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
    .C_GenerateKey = C_GenerateKey,
    .C_GenerateKeyPair = C_GenerateKeyPair,
    .C_WrapKey = C_WrapKey,
    .C_UnwrapKey = C_UnwrapKey,
    .C_DeriveKey = C_DeriveKey,
    .C_SeedRandom = C_SeedRandom,
    .C_GenerateRandom = C_GenerateRandom,
    .C_GetFunctionStatus = C_GetFunctionStatus,
    .C_CancelFunction = C_CancelFunction,
    .C_WaitForSlotEvent = C_WaitForSlotEvent,
    .C_GetInterfaceList = C_GetInterfaceList,
    .C_GetInterface = C_GetInterface,
    .C_LoginUser = C_LoginUser,
    .C_SessionCancel = C_SessionCancel,
    .C_MessageEncryptInit = C_MessageEncryptInit,
    .C_EncryptMessage = C_EncryptMessage,
    .C_EncryptMessageBegin = C_EncryptMessageBegin,
    .C_EncryptMessageNext = C_EncryptMessageNext,
    .C_MessageEncryptFinal = C_MessageEncryptFinal,
    .C_MessageDecryptInit = C_MessageDecryptInit,
    .C_DecryptMessage = C_DecryptMessage,
    .C_DecryptMessageBegin = C_DecryptMessageBegin,
    .C_DecryptMessageNext = C_DecryptMessageNext,
    .C_MessageDecryptFinal = C_MessageDecryptFinal,
    .C_MessageSignInit = C_MessageSignInit,
    .C_SignMessage = C_SignMessage,
    .C_SignMessageBegin = C_SignMessageBegin,
    .C_SignMessageNext = C_SignMessageNext,
    .C_MessageSignFinal = C_MessageSignFinal,
    .C_MessageVerifyInit = C_MessageVerifyInit,
    .C_VerifyMessage = C_VerifyMessage,
    .C_VerifyMessageBegin = C_VerifyMessageBegin,
    .C_VerifyMessageNext = C_VerifyMessageNext,
    .C_MessageVerifyFinal = C_MessageVerifyFinal,
};

static CK_INTERFACE interfaces[] = {
    {(CK_CHAR *)"PKCS 11", &kwk_functions_30, CKF_INTERFACE_FORK_SAFE},
    {(CK_CHAR *)"PKCS 11", &kwk_functions_240, CKF_INTERFACE_FORK_SAFE},
};
#define NIFACES (sizeof(interfaces) / sizeof(interfaces[0]))

KWK_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &kwk_functions_240;
    return CKR_OK;
}

KWK_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (list == NULL) {
        *count = NIFACES;
        return CKR_OK;
    }
    if (*count < NIFACES) {
        *count = NIFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, interfaces, sizeof(interfaces));
    *count = NIFACES;
    return CKR_OK;
}

KWK_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags)
{
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < NIFACES; i++) {
        const CK_VERSION *v = interfaces[i].pFunctionList;
        if (name != NULL && strcmp((const char *)name, (const char *)interfaces[i].pInterfaceName))
            continue;
        if (version != NULL && (version->major != v->major || version->minor != v->minor))
            continue;
        if ((interfaces[i].flags & flags) != flags)
            continue;
        *iface = &interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
