/* SPDX-License-Identifier: Apache-2.0 */
/* The one place where errno values and libcrypto failures become CK_RVs. */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>

#include "kw_log.h"
#include "kwk.h"

CK_RV kwk_rv_from_errno(int err, const char *what)
{
    CK_RV rv;
    switch (err) {
    case ENOMEM:
        rv = CKR_HOST_MEMORY;
        break;
    case EDQUOT:
        rv = CKR_DEVICE_MEMORY; /* keyring quota (kernel.keys.maxbytes) */
        break;
    case EACCES:
    case EPERM:
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        break;
    case ENOKEY:
    case EKEYREVOKED:
    case EKEYEXPIRED:
    case ENOENT:
        rv = CKR_OBJECT_HANDLE_INVALID;
        break;
    case EBADMSG:
    case ENOPKG:
    case ENOTSUP:
        rv = CKR_FUNCTION_NOT_SUPPORTED;
        break;
    case EINVAL:
    case EMSGSIZE:
        rv = CKR_DATA_INVALID;
        break;
    default:
        rv = CKR_DEVICE_ERROR;
    }
    KW_DEBUG(KWK_COMP, "%s: %s -> CKR 0x%lx", what, strerror(err), (unsigned long)rv);
    return rv;
}

CK_RV kwk_rv_ossl(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    KW_DEBUG(KWK_COMP, "%s: libcrypto: %s", what, e ? buf : "(no error queued)");
    ERR_clear_error();
    return CKR_FUNCTION_FAILED;
}
