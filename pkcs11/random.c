/* SPDX-License-Identifier: Apache-2.0 */
/* C_SeedRandom and C_GenerateRandom, from the module's libcrypto context. */
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

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_session_put(s);
    if (seed == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    return CKR_RANDOM_SEED_NOT_SUPPORTED; /* the kernel's RNG needs no help */
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_session_put(s);
    if (out == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    if (len > 0 && RAND_bytes_ex(kwk_libctx(), out, len, 0) != 1)
        return kwk_rv_ossl("random");
    return CKR_OK;
}
