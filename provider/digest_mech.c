/* SPDX-License-Identifier: Apache-2.0 */
/* Digests as PKCS#11 names them, shared by signature and asymmetric cipher. */
#include <openssl/objects.h>

#include "kwp.h"

CK_MECHANISM_TYPE kwp_md_mech(const EVP_MD *md)
{
    switch (md ? EVP_MD_get_type(md) : 0) {
    case NID_sha1:
        return CKM_SHA_1;
    case NID_sha224:
        return CKM_SHA224;
    case NID_sha256:
        return CKM_SHA256;
    case NID_sha384:
        return CKM_SHA384;
    case NID_sha512:
        return CKM_SHA512;
    }
    return CK_UNAVAILABLE_INFORMATION;
}

CK_RSA_PKCS_MGF_TYPE kwp_md_mgf(const EVP_MD *md)
{
    switch (md ? EVP_MD_get_type(md) : 0) {
    case NID_sha1:
        return CKG_MGF1_SHA1;
    case NID_sha224:
        return CKG_MGF1_SHA224;
    case NID_sha256:
        return CKG_MGF1_SHA256;
    case NID_sha384:
        return CKG_MGF1_SHA384;
    case NID_sha512:
        return CKG_MGF1_SHA512;
    }
    return 0;
}

int kwp_md_fetch(kwp_ctx *ctx, EVP_MD **slot, const char *name)
{
    EVP_MD *md = EVP_MD_fetch(ctx->hlibctx, name, KWP_HELPER_PROPQ);
    if (md == NULL) {
        kwp_raise(ctx, KWP_R(KW_ERR_INVALID),
                  "digest \"%s\" is not available from the application's providers (fetched "
                  "with \"%s\" and the default properties, such as fips=yes)",
                  name, KWP_HELPER_PROPQ);
        return 0;
    }
    /* Any digest OpenSSL has is hashed on the host; only an XOF has no fixed size to sign. */
    if ((EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) != 0 || EVP_MD_get_size(md) <= 0) {
        kwp_raise(ctx, KWP_R(KW_ERR_INVALID), "digest \"%s\" has no fixed size to sign", name);
        EVP_MD_free(md);
        return 0;
    }
    EVP_MD_free(*slot);
    *slot = md;
    return 1;
}

/* For error messages: the mechanisms keyward asks for, by their PKCS#11 names. */
const char *kwp_mech_name(CK_MECHANISM_TYPE m)
{
    switch (m) {
#define M(x)                                                                                       \
    case x:                                                                                        \
        return #x;
        M(CKM_RSA_PKCS)
        M(CKM_RSA_X_509)
        M(CKM_RSA_PKCS_OAEP)
        M(CKM_RSA_PKCS_PSS)
        M(CKM_SHA1_RSA_PKCS)
        M(CKM_SHA224_RSA_PKCS)
        M(CKM_SHA256_RSA_PKCS)
        M(CKM_SHA384_RSA_PKCS)
        M(CKM_SHA512_RSA_PKCS)
        M(CKM_SHA1_RSA_PKCS_PSS)
        M(CKM_SHA224_RSA_PKCS_PSS)
        M(CKM_SHA256_RSA_PKCS_PSS)
        M(CKM_SHA384_RSA_PKCS_PSS)
        M(CKM_SHA512_RSA_PKCS_PSS)
        M(CKM_ECDSA)
        M(CKM_ECDSA_SHA1)
        M(CKM_ECDSA_SHA224)
        M(CKM_ECDSA_SHA256)
        M(CKM_ECDSA_SHA384)
        M(CKM_ECDSA_SHA512)
        M(CKM_ECDH1_DERIVE)
        M(CKM_RSA_PKCS_KEY_PAIR_GEN)
        M(CKM_EC_KEY_PAIR_GEN)
        M(CKM_EDDSA)
#undef M
    default:
        return "a vendor or unknown mechanism";
    }
}
