/* SPDX-License-Identifier: Apache-2.0 */
/* Encodings done in user space around the kernel's raw RSA operation: PKCS#1 v1.5 type 1
 * (signature), EMSA-PSS, and the decoders for OAEP and PKCS#1 v1.5 type 2. The decoders touch
 * secret plaintext: they compute one "good" mask without branching on data and only branch once,
 * at the end, on the combined result (no padding oracle finer than success/failure). */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

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

int kwk_pad_pkcs1_type1(unsigned char *em, size_t klen, const unsigned char *t, size_t tlen)
{
    if (klen < 11 || tlen > klen - 11)
        return 0;
    em[0] = 0x00;
    em[1] = 0x01;
    memset(em + 2, 0xff, klen - tlen - 3);
    em[klen - tlen - 1] = 0x00;
    memcpy(em + klen - tlen, t, tlen);
    return 1;
}

int kwk_mgf1(unsigned char *mask, size_t len, const unsigned char *seed, size_t seedlen,
             const EVP_MD *md)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char h[EVP_MAX_MD_SIZE];
    size_t hlen = (size_t)EVP_MD_get_size(md), done = 0;
    int ok = c != NULL;
    for (uint32_t counter = 0; ok && done < len; counter++) {
        unsigned char cb[4] = {(unsigned char)(counter >> 24), (unsigned char)(counter >> 16),
                               (unsigned char)(counter >> 8), (unsigned char)counter};
        ok = EVP_DigestInit_ex(c, md, NULL) && EVP_DigestUpdate(c, seed, seedlen) &&
             EVP_DigestUpdate(c, cb, 4) && EVP_DigestFinal_ex(c, h, NULL);
        size_t n = len - done < hlen ? len - done : hlen;
        if (ok)
            memcpy(mask + done, h, n);
        done += n;
    }
    kw_wipe(h, sizeof(h));
    EVP_MD_CTX_free(c);
    return ok;
}

int kwk_pad_pss(unsigned char *em, size_t mod_bits, const unsigned char *mhash, const EVP_MD *md,
                const EVP_MD *mgf1, size_t slen)
{
    size_t klen = (mod_bits + 7) / 8, em_bits = mod_bits - 1, em_len = (em_bits + 7) / 8;
    size_t hlen = (size_t)EVP_MD_get_size(md);
    unsigned char salt[KWK_MAX_RSA_BYTES], h[EVP_MAX_MD_SIZE];
    static const unsigned char zeros[8];
    int ok = 0;

    if (em_len < hlen + slen + 2 || slen > sizeof(salt) || klen > KWK_MAX_RSA_BYTES)
        return 0;
    unsigned char *out = em + (klen - em_len); /* a leading zero byte when em_bits % 8 == 0 */
    size_t db_len = em_len - hlen - 1;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || (slen && RAND_bytes_ex(kwk_libctx(), salt, slen, 0) != 1))
        goto end;
    if (!EVP_DigestInit_ex(c, md, NULL) || !EVP_DigestUpdate(c, zeros, 8) ||
        !EVP_DigestUpdate(c, mhash, hlen) || !EVP_DigestUpdate(c, salt, slen) ||
        !EVP_DigestFinal_ex(c, h, NULL))
        goto end;
    memset(em, 0, klen);
    if (!kwk_mgf1(out, db_len, h, hlen, mgf1))
        goto end;
    /* DB = PS || 0x01 || salt, XORed into the mask already in place. */
    out[db_len - slen - 1] ^= 0x01;
    for (size_t i = 0; i < slen; i++)
        out[db_len - slen + i] ^= salt[i];
    out[0] &= (unsigned char)(0xff >> (8 * em_len - em_bits));
    memcpy(out + db_len, h, hlen);
    out[em_len - 1] = 0xbc;
    ok = 1;
end:
    EVP_MD_CTX_free(c);
    kw_wipe(salt, sizeof(salt));
    return ok;
}

/* Constant-time helpers: all-ones mask when the condition holds. */
static inline unsigned ct_is_zero(unsigned x)
{
    return 0u - ((~x & (x - 1)) >> (sizeof(unsigned) * 8 - 1));
}
static inline unsigned ct_eq(unsigned a, unsigned b)
{
    return ct_is_zero(a ^ b);
}

int kwk_unpad_oaep(unsigned char *out, size_t outcap, const unsigned char *em, size_t klen,
                   const EVP_MD *md, const EVP_MD *mgf1, const unsigned char *label,
                   size_t label_len)
{
    size_t hlen = (size_t)EVP_MD_get_size(md);
    unsigned char db[KWK_MAX_RSA_BYTES], seed[EVP_MAX_MD_SIZE], lhash[EVP_MAX_MD_SIZE];
    int ret = -1;

    if (klen > KWK_MAX_RSA_BYTES || klen < 2 * hlen + 2)
        return -1;
    size_t db_len = klen - hlen - 1;
    if (!EVP_Digest(label_len ? label : (const unsigned char *)"", label_len, lhash, NULL, md,
                    NULL) ||
        !kwk_mgf1(seed, hlen, em + 1 + hlen, db_len, mgf1))
        goto end;
    for (size_t i = 0; i < hlen; i++)
        seed[i] ^= em[1 + i];
    if (!kwk_mgf1(db, db_len, seed, hlen, mgf1))
        goto end;
    for (size_t i = 0; i < db_len; i++)
        db[i] ^= em[1 + hlen + i];

    unsigned good = ct_is_zero(em[0]);
    unsigned diff = 0;
    for (size_t i = 0; i < hlen; i++)
        diff |= db[i] ^ lhash[i];
    good &= ct_is_zero(diff);
    /* Find the 0x01 after the zero padding without leaving the loop early. */
    unsigned found = 0, index = 0, bad_ps = 0;
    for (size_t i = hlen; i < db_len; i++) {
        unsigned is_one = ct_eq(db[i], 1), is_zero = ct_is_zero(db[i]);
        index |= ~found & is_one & (unsigned)i;
        bad_ps |= ~found & ~is_one & ~is_zero;
        found |= is_one;
    }
    good &= found & ~bad_ps;
    size_t mlen = db_len - (index & good) - 1;
    if (good && mlen <= outcap) { /* one branch on the combined result */
        memmove(out, db + db_len - mlen, mlen);
        ret = (int)mlen;
    }
end:
    kw_wipe(db, sizeof(db));
    kw_wipe(seed, sizeof(seed));
    return ret;
}

int kwk_unpad_pkcs1_type2(unsigned char *out, size_t outcap, const unsigned char *em, size_t klen)
{
    if (klen < 11)
        return -1;
    unsigned good = ct_is_zero(em[0]) & ct_eq(em[1], 2);
    unsigned found = 0, index = 0;
    for (size_t i = 2; i < klen; i++) {
        unsigned is_zero = ct_is_zero(em[i]);
        index |= ~found & is_zero & (unsigned)i;
        found |= is_zero;
    }
    /* At least 8 padding bytes. */
    good &= found & ~(0u - (unsigned)(((index - 10) >> (sizeof(unsigned) * 8 - 1)) & 1));
    size_t mlen = klen - (index & good) - 1;
    if (good && mlen <= outcap) {
        memmove(out, em + klen - mlen, mlen); /* may decode in place */
        return (int)mlen;
    }
    return -1;
}
