/* SPDX-License-Identifier: Apache-2.0 */
/* Module entry points: function lists (2.40 and 3.0 interfaces), C_Initialize/C_Finalize,
 * C_GetInfo, global lock and fork handling. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <keyward/keyward.h>

#include "kw_log.h"
#include "kwk.h"

#define KWK_EXPORT __attribute__((visibility("default")))

pthread_mutex_t kwk_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static kwk_token tokens[KWK_MAX_TOKENS];
static size_t ntokens;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Fork: the child gets copies of sessions and keeps its keyring possession, so it may go on using
 * the module (CKF_INTERFACE_FORK_SAFE). Only the locks need care: hold them across fork. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&kwk_lock);
    pthread_mutex_lock(&kwk_blind_lock);
}
static void fork_parent(void)
{
    pthread_mutex_unlock(&kwk_blind_lock);
    pthread_mutex_unlock(&kwk_lock);
}
static void fork_child(void)
{
    pthread_mutex_unlock(&kwk_blind_lock);
    pthread_mutex_unlock(&kwk_lock);
    kwk_sessions_after_fork();
}
static void atfork_setup(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int kwk_initialized(void)
{
    return initialized;
}

kwk_token *kwk_token_by_slot(CK_SLOT_ID slot)
{
    return slot < ntokens ? &tokens[slot] : NULL;
}

size_t kwk_token_count(void)
{
    return ntokens;
}

kwk_token *kwk_token_at(size_t i)
{
    return i < ntokens ? &tokens[i] : NULL;
}

const char *kwk_mode_name(kwk_mode m)
{
    return m == KWK_MODE_KERNEL ? "kernel" : m == KWK_MODE_SOFTWARE ? "software" : "unknown";
}

CK_RV C_Initialize(CK_VOID_PTR init_args)
{
    CK_C_INITIALIZE_ARGS *a = init_args;
    CK_RV rv;

    if (a != NULL) {
        int have_fns = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
        int all_fns = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
        if (a->pReserved != NULL || (have_fns && !all_fns))
            return CKR_ARGUMENTS_BAD;
        /* We lock with pthreads; callers that insist on their own primitives are refused. */
        if (have_fns && !(a->flags & CKF_OS_LOCKING_OK))
            return CKR_CANT_LOCK;
    }
    pthread_once(&atfork_once, atfork_setup);
    pthread_mutex_lock(&kwk_lock);
    if (initialized) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    }
    memset(tokens, 0, sizeof(tokens));
    rv = kwk_config_load(tokens, KWK_MAX_TOKENS, &ntokens);
    if (rv == CKR_OK && kwk_libctx() == NULL)
        rv = CKR_GENERAL_ERROR;
    if (rv == CKR_OK) {
        for (size_t i = 0; i < ntokens; i++)
            tokens[i].slot = i;
        initialized = 1;
        KW_DEBUG(KWK_COMP, "initialised: %zu token(s) from %s", ntokens, kwk_config_path());
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

CK_RV C_Finalize(CK_VOID_PTR reserved)
{
    if (reserved != NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    if (!initialized) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    kwk_sessions_close_all(NULL);
    for (size_t i = 0; i < ntokens; i++)
        kwk_objects_free(&tokens[i]);
    ntokens = 0;
    initialized = 0;
    pthread_mutex_unlock(&kwk_lock);
    kwk_blind_free_all();
    kwk_ossl_free();
    return CKR_OK;
}

static void pad(unsigned char *dst, size_t n, const char *src)
{
    size_t l = strlen(src);
    memset(dst, ' ', n);
    memcpy(dst, src, l < n ? l : n);
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 3;
    info->cryptokiVersion.minor = 0;
    pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
    pad(info->libraryDescription, sizeof(info->libraryDescription), "keyward Linux keyring token");
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
