/* SPDX-License-Identifier: Apache-2.0 */
/* Entry points the keyring token does not offer. Each returns the code PKCS#11 prescribes for an
 * unsupported function, after the checks every function makes. Parameters are unused on
 * purpose. */
#include "kwk.h"

#define UNSUPPORTED(rv)                                                                            \
    do {                                                                                           \
        if (!kwk_initialized())                                                                    \
            return CKR_CRYPTOKI_NOT_INITIALIZED;                                                   \
        return rv;                                                                                 \
    } while (0)

CK_RV C_InitToken(CK_SLOT_ID slot_id, unsigned char *pin, unsigned long pin_len,
                  unsigned char *label)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_InitPIN(CK_SESSION_HANDLE session, unsigned char *pin, unsigned long pin_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetPIN(CK_SESSION_HANDLE session, unsigned char *old_pin, unsigned long old_len,
               unsigned char *new_pin, unsigned long new_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state,
                          unsigned long *operation_state_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE session, unsigned char *operation_state,
                          unsigned long operation_state_len, CK_OBJECT_HANDLE encryption_key,
                          CK_OBJECT_HANDLE authentiation_key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ,
                   unsigned long count, CK_OBJECT_HANDLE *new_object)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Encrypt(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
                unsigned char *encrypted_data, unsigned long *encrypted_data_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                      unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE session, unsigned char *last_encrypted_part,
                     unsigned long *last_encrypted_part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_Digest(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
               unsigned char *digest, unsigned long *digest_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE session, unsigned char *digest, unsigned long *digest_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignRecover(CK_SESSION_HANDLE session, unsigned char *data, unsigned long data_len,
                    unsigned char *signature, unsigned long *signature_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE session, unsigned char *signature,
                      unsigned long signature_len, unsigned char *data, unsigned long *data_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                            unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part,
                            unsigned long encrypted_part_len, unsigned char *part,
                            unsigned long *part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE session, unsigned char *part, unsigned long part_len,
                          unsigned char *encrypted_part, unsigned long *encrypted_part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE session, unsigned char *encrypted_part,
                            unsigned long encrypted_part_len, unsigned char *part,
                            unsigned long *part_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_ATTRIBUTE *templ,
                    unsigned long count, CK_OBJECT_HANDLE *key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism, CK_OBJECT_HANDLE wrapping_key,
                CK_OBJECT_HANDLE key, unsigned char *wrapped_key, unsigned long *wrapped_key_len)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                  CK_OBJECT_HANDLE unwrapping_key, unsigned char *wrapped_key,
                  unsigned long wrapped_key_len, CK_ATTRIBUTE *templ, unsigned long attribute_count,
                  CK_OBJECT_HANDLE *key)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID *slot, void *reserved)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_OBJECT_HANDLE hKey)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                       CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen,
                       CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                       CK_ULONG_PTR pulCiphertextLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                           CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                           CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE hSession)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_OBJECT_HANDLE hKey)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                       CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen,
                       CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                       CK_ULONG_PTR pulPlaintextLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                            CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                            CK_ULONG ulAssociatedDataLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                           CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                           CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE hSession)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hKey)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                    CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                    CK_ULONG_PTR pulSignatureLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                         CK_ULONG ulParameterLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                        CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                        CK_ULONG_PTR pulSignatureLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageSignFinal(CK_SESSION_HANDLE hSession)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                          CK_OBJECT_HANDLE hKey)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                      CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                      CK_ULONG ulSignatureLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                           CK_ULONG ulParameterLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                          CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                          CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE hSession)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE session)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_PARALLEL);
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE session)
{
    UNSUPPORTED(CKR_FUNCTION_NOT_PARALLEL);
}
