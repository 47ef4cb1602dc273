/* SPDX-License-Identifier: Apache-2.0 */
/* Encodings done in user space around the kernel's raw RSA operation, all by libcrypto: PKCS#1
 * v1.5 type 1 and EMSA-PSS (signature), and the OAEP and PKCS#1 v1.5 type 2 decoders, which
 * touch secret plaintext and are constant-time in libcrypto (no padding oracle finer than
 * success/failure, no copy whose timing depends on the message length). Only the DigestInfo
 * prefixes are ours. */
#include <string.h>

/* The RSA_padding_* functions are deprecated API in 3.0 with no replacement for encoding or
 * decoding a block around a private operation done elsewhere (the kernel). */
#undef OPENSSL_NO_DEPRECATED
#include <openssl/rsa.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "kw_secmem.h"
#include "kwk.h"

/* DER of DigestInfo up to the digest octets: SEQUENCE { SEQUENCE { OID, NULL }, OCTET STRING }. */
static const unsigned char di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                        0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
#define DI_SHA2(total, last, hlen)                                                                 \
    {                                                                                              \
        0x30, total, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last, \
            0x05, 0x00, 0x04, hlen                                                                 \
    }
static const unsigned char di_sha224[] = DI_SHA2(0x2d, 0x04, 0x1c);
static const unsigned char di_sha256[] = DI_SHA2(0x31, 0x01, 0x20);
static const unsigned char di_sha384[] = DI_SHA2(0x41, 0x02, 0x30);
static const unsigned char di_sha512[] = DI_SHA2(0x51, 0x03, 0x40);

const unsigned char *kwk_digestinfo_prefix(const EVP_MD *md, size_t *len)
{
    switch (md ? EVP_MD_get_type(md) : NID_undef) {
    case NID_sha1:
        *len = sizeof(di_sha1);
        return di_sha1;
    case NID_sha224:
        *len = sizeof(di_sha224);
        return di_sha224;
    case NID_sha256:
        *len = sizeof(di_sha256);
        return di_sha256;
    case NID_sha384:
        *len = sizeof(di_sha384);
        return di_sha384;
    case NID_sha512:
        *len = sizeof(di_sha512);
        return di_sha512;
    default:
        return NULL;
    }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

int kwk_pad_pkcs1_type1(unsigned char *em, size_t klen, const unsigned char *t, size_t tlen)
{
    if (klen > KWK_MAX_RSA_BYTES || tlen > klen)
        return 0;
    ERR_set_mark();
    int ok = RSA_padding_add_PKCS1_type_1(em, (int)klen, t, (int)tlen) == 1;
    ERR_pop_to_mark(); /* a too-long input is reported by our return code, not the queue */
    return ok;
}

int kwk_pad_pss(unsigned char *em, EVP_PKEY *pub, const unsigned char *mhash, const EVP_MD *md,
                const EVP_MD *mgf1, size_t slen)
{
    if (slen > KWK_MAX_RSA_BYTES)
        return 0;
    ERR_set_mark();
    RSA *rsa = EVP_PKEY_get1_RSA(pub); /* for the modulus size only */
    int ok = rsa != NULL && RSA_size(rsa) <= KWK_MAX_RSA_BYTES &&
             RSA_padding_add_PKCS1_PSS_mgf1(rsa, em, mhash, md, mgf1, (int)slen) == 1;
    RSA_free(rsa);
    ERR_pop_to_mark();
    return ok;
}

int kwk_unpad_oaep(unsigned char *out, size_t outcap, const unsigned char *em, size_t klen,
                   const EVP_MD *md, const EVP_MD *mgf1, const unsigned char *label,
                   size_t label_len)
{
    if (klen > KWK_MAX_RSA_BYTES || outcap > KWK_MAX_RSA_BYTES || label_len > INT32_MAX)
        return -1;
    /* The whole block, leading byte included: RFC 8017 7.1.2 step 3g checks that it is 0. */
    ERR_set_mark();
    int n = RSA_padding_check_PKCS1_OAEP_mgf1(out, (int)outcap, em, (int)klen, (int)klen, label,
                                              (int)label_len, md, mgf1);
    ERR_pop_to_mark(); /* the failure is CKR_ENCRYPTED_DATA_INVALID, not an error to queue */
    return n < 0 ? -1 : n;
}

int kwk_unpad_pkcs1_type2(unsigned char *out, size_t outcap, const unsigned char *em, size_t klen)
{
    if (klen > KWK_MAX_RSA_BYTES || outcap > KWK_MAX_RSA_BYTES)
        return -1;
    ERR_set_mark();
    int n = RSA_padding_check_PKCS1_type_2(out, (int)outcap, em, (int)klen, (int)klen);
    ERR_pop_to_mark();
    return n < 0 ? -1 : n;
}

#pragma GCC diagnostic pop
