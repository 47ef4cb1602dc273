/* SPDX-License-Identifier: Apache-2.0 */
/* C_DecryptInit / C_Decrypt (and Update/Final, which collect the ciphertext first): RSA PKCS#1
 * v1.5, OAEP and raw. */
#include <string.h>

#include "kw_secmem.h"
#include "kwk.h"

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    return kwk_op_start(h, KWK_OP_DECRYPT, m, key);
}

static CK_RV decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                     CK_ULONG_PTR outlen, int final)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get_op(h, KWK_OP_DECRYPT, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_op *op = &s->op;
    if (final) {
        in = op->buf;
        inlen = op->buf_len;
    } else if (op->multipart) {
        kwk_session_put(s);
        return CKR_OPERATION_ACTIVE;
    }
    if (outlen == NULL || (in == NULL && inlen > 0)) {
        kwk_op_clear(op);
        kwk_session_put(s);
        return CKR_ARGUMENTS_BAD;
    }
    if (out == NULL) {
        *outlen = op->key.klen; /* an upper bound; the operation stays active */
        kwk_session_put(s);
        return CKR_OK;
    }
    unsigned char buf[KWK_MAX_RSA_BYTES];
    size_t n = sizeof(buf);
    rv = kwk_rsa_decrypt(op, in, inlen, buf, &n);
    if (rv == CKR_OK && *outlen < n) {
        rv = CKR_BUFFER_TOO_SMALL; /* keep the operation so the caller can retry */
        *outlen = n;
    } else {
        if (rv == CKR_OK) {
            memcpy(out, buf, n);
            *outlen = n;
        }
        kwk_op_clear(op);
    }
    kw_wipe(buf, sizeof(buf));
    kwk_session_put(s);
    return rv;
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                CK_ULONG_PTR outlen)
{
    return decrypt(h, in, inlen, out, outlen, 0);
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                      CK_ULONG_PTR outlen)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_op *op = &s->op;
    if (op->kind != KWK_OP_DECRYPT) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else if (outlen == NULL || (in == NULL && inlen > 0)) {
        rv = CKR_ARGUMENTS_BAD;
    } else if (op->buf_len + inlen > op->key.klen) {
        rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
    } else {
        if (op->buf == NULL) {
            op->buf = kw_secure_alloc(op->key.klen);
            op->buf_cap = op->key.klen;
        }
        if (op->buf == NULL) {
            rv = CKR_HOST_MEMORY;
        } else {
            if (inlen)
                memcpy(op->buf + op->buf_len, in, inlen);
            op->buf_len += inlen;
            op->multipart = 1;
            *outlen = 0; /* RSA yields nothing until the whole block is in */
        }
    }
    if (rv != CKR_OK && op->kind == KWK_OP_DECRYPT)
        kwk_op_clear(op);
    kwk_session_put(s);
    return rv;
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    return decrypt(h, NULL, 0, out, outlen, 1);
}
