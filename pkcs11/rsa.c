/* SPDX-License-Identifier: Apache-2.0 */
/* RSA mechanisms over one private-key primitive, the raw operation, that the kernel
 * (rsa_kernel.c, blinded) or software mode (soft.c) provides; padding by libcrypto. Every
 * private result is checked with the public key before it leaves the module: a fault in the
 * private operation (the Bellcore attack on CRT) must not leak a factor of n. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

CK_RV kwk_rsa_public_raw(EVP_PKEY *pub, const unsigned char *in, unsigned char *out, size_t klen)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), pub, NULL);
    size_t olen = klen;
    CK_RV rv = CKR_OK;
    if (c == NULL || EVP_PKEY_encrypt_init(c) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) <= 0 ||
        EVP_PKEY_encrypt(c, out, &olen, in, klen) <= 0 || olen != klen)
        rv = kwk_rv_ossl("RSA public operation");
    EVP_PKEY_CTX_free(c);
    return rv;
}

/* in < n, both klen big-endian bytes. */
static int below_modulus(EVP_PKEY *pub, const unsigned char *in, size_t klen)
{
    BIGNUM *n = NULL, *x = BN_bin2bn(in, (int)klen, NULL);
    int ok = x && EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) && BN_cmp(x, n) < 0;
    BN_free(n);
    BN_free(x);
    return ok;
}

static CK_RV private_raw(const kwk_key *k, const unsigned char *in, unsigned char *out)
{
    return k->mode == KWK_MODE_KERNEL ? kwk_kernel_rsa_raw(k, in, out)
                                      : kwk_soft_rsa_raw(k, in, out);
}

/* Fault check: out^e mod n must give back what went in. */
static CK_RV check(const kwk_key *k, const unsigned char *em, const unsigned char *out)
{
    unsigned char back[KWK_MAX_RSA_BYTES];
    CK_RV rv = kwk_rsa_public_raw(k->pub, out, back, k->klen);
    if (rv == CKR_OK && kw_memcmp_ct(back, em, k->klen) != 0) {
        KW_DEBUG(KWK_COMP, "RSA private operation result failed the public-key check (key %d)",
                 (int)k->serial);
        rv = CKR_DEVICE_ERROR;
    }
    kw_wipe(back, sizeof(back));
    return rv;
}

CK_RV kwk_rsa_sign(kwk_op *op, const unsigned char *in, size_t inlen, unsigned char *out)
{
    const kwk_key *k = &op->key;
    size_t klen = k->klen;
    unsigned char em[KWK_MAX_RSA_BYTES], di[128];
    CK_RV rv;

    if (klen > KWK_MAX_RSA_BYTES)
        return CKR_KEY_SIZE_RANGE;
    switch (op->mech) {
    case CKM_RSA_PKCS:
    case CKM_SHA1_RSA_PKCS:
    case CKM_SHA224_RSA_PKCS:
    case CKM_SHA256_RSA_PKCS:
    case CKM_SHA384_RSA_PKCS:
    case CKM_SHA512_RSA_PKCS: {
        const unsigned char *t = in;
        size_t tlen = inlen;
        if (op->mech != CKM_RSA_PKCS) { /* in = the hash: prepend its DigestInfo */
            size_t plen;
            const unsigned char *prefix = kwk_digestinfo_prefix(op->md, &plen);
            if (prefix == NULL || plen + inlen > sizeof(di))
                return CKR_GENERAL_ERROR;
            memcpy(di, prefix, plen);
            memcpy(di + plen, in, inlen);
            t = di;
            tlen = plen + inlen;
        }
        if (!kwk_pad_pkcs1_type1(em, klen, t, tlen))
            return CKR_DATA_LEN_RANGE;
        rv = private_raw(k, em, out); /* in the kernel: blinded, like every raw operation */
        break;
    }
    case CKM_RSA_X_509:
        if (inlen > klen)
            return CKR_DATA_LEN_RANGE;
        memset(em, 0, klen - inlen);
        memcpy(em + klen - inlen, in, inlen);
        if (!below_modulus(k->pub, em, klen))
            return CKR_DATA_INVALID;
        rv = private_raw(k, em, out);
        break;
    default: /* PSS: in = the hash */
        if (inlen != (size_t)EVP_MD_get_size(op->md))
            return CKR_DATA_LEN_RANGE;
        if (!kwk_pad_pss(em, k->pub, in, op->md, op->mgf1, op->salt_len))
            return CKR_KEY_SIZE_RANGE; /* salt + hash do not fit this modulus */
        rv = private_raw(k, em, out);
        break;
    }
    if (rv == CKR_OK)
        rv = check(k, em, out);
    if (rv != CKR_OK)
        kw_wipe(out, klen);
    kw_wipe(em, sizeof(em));
    return rv;
}

CK_RV kwk_rsa_decrypt(kwk_op *op, const unsigned char *in, size_t inlen, unsigned char *out,
                      size_t *outlen)
{
    const kwk_key *k = &op->key;
    size_t klen = k->klen;
    unsigned char em[KWK_MAX_RSA_BYTES];
    int n = -1;

    if (klen > KWK_MAX_RSA_BYTES)
        return CKR_KEY_SIZE_RANGE;
    if (inlen != klen)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (!below_modulus(k->pub, in, klen))
        return CKR_ENCRYPTED_DATA_INVALID;
    CK_RV rv = private_raw(k, in, em);
    if (rv == CKR_OK)
        rv = check(k, in, em);
    if (rv != CKR_OK)
        goto end;
    if (op->mech == CKM_RSA_X_509) {
        if (*outlen < klen) {
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            memcpy(out, em, klen);
            *outlen = klen;
        }
        goto end;
    }
    if (op->mech == CKM_RSA_PKCS_OAEP)
        n = kwk_unpad_oaep(em, klen, em, klen, op->md, op->mgf1, op->label, op->label_len);
    else
        n = kwk_unpad_pkcs1_type2(em, klen, em, klen);
    if (n < 0) {
        rv = CKR_ENCRYPTED_DATA_INVALID;
    } else if (*outlen < (size_t)n) {
        *outlen = (size_t)n;
        rv = CKR_BUFFER_TOO_SMALL;
    } else {
        memcpy(out, em, (size_t)n);
        *outlen = (size_t)n;
    }
end:
    kw_wipe(em, sizeof(em));
    return rv;
}
