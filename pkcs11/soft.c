/* SPDX-License-Identifier: Apache-2.0 */
/* Software mode: the private key is PKCS#8 in a possessor-only `user` key. It is read into
 * locked memory and decoded once per process, when an operation first needs it; the object
 * cache keeps the EVP_PKEY, whose private numbers libcrypto holds in its secure heap (set up
 * by ossl.c: locked, left out of core dumps). Re-decoding for each operation left copies of the
 * key in freed heap (libcrypto's decoders free their DER buffers unwiped). */
#include <string.h>

#include <openssl/ec.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

CK_RV kwk_soft_load(kwk_serial serial, EVP_PKEY **out)
{
    unsigned char *buf;
    size_t len;
    CK_RV rv = kwk_kr_read(serial, &buf, &len);
    if (rv != CKR_OK)
        return rv;
    const unsigned char *p = buf;
    *out = d2i_AutoPrivateKey_ex(NULL, &p, (long)len, kwk_libctx(), NULL);
    kw_secure_free(buf, len + 1);
    KW_DEBUG(KWK_COMP,
             "software mode: key %d decoded in user space: any process of this uid that "
             "possesses the keyring can read it (kernel mode keeps RSA keys unreadable)",
             (int)serial);
    return *out ? CKR_OK : kwk_rv_ossl("software-mode key");
}

CK_RV kwk_soft_rsa_raw(const kwk_key *k, const unsigned char *in, unsigned char *out)
{
    EVP_PKEY *pk = k->priv;
    CK_RV rv = CKR_OK;
    if (pk == NULL)
        return CKR_KEY_HANDLE_INVALID;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), pk, NULL);
    size_t olen = k->klen;
    if (c == NULL || EVP_PKEY_decrypt_init(c) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) <= 0 ||
        EVP_PKEY_decrypt(c, out, &olen, in, k->klen) <= 0 || olen != k->klen)
        rv = kwk_rv_ossl("software RSA");
    EVP_PKEY_CTX_free(c);
    return rv;
}

CK_RV kwk_soft_ecdsa(const kwk_key *k, EVP_PKEY_CTX **cache, const unsigned char *hash, size_t hlen,
                     unsigned char *out, size_t *outlen)
{
    EVP_PKEY *pk = k->priv;
    unsigned char der[160];
    size_t dlen = sizeof(der), flen = k->klen;
    CK_RV rv = CKR_OK;
    if (pk == NULL)
        return CKR_KEY_HANDLE_INVALID;
    EVP_PKEY_CTX *c = *cache;
    if (c == NULL || EVP_PKEY_CTX_get0_pkey(c) != pk) {
        EVP_PKEY_CTX_free(c);
        *cache = NULL;
        c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), pk, NULL);
        if (c == NULL || EVP_PKEY_sign_init(c) <= 0) {
            EVP_PKEY_CTX_free(c);
            return kwk_rv_ossl("ECDSA");
        }
        *cache = c;
    }
    if (EVP_PKEY_sign(c, der, &dlen, hash, hlen) <= 0) {
        /* a context that failed once is not trusted again */
        EVP_PKEY_CTX_free(c);
        *cache = NULL;
        return kwk_rv_ossl("ECDSA");
    }
    /* PKCS#11 wants r || s, each the size of the field. */
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    if (sig == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, (int)flen) != (int)flen ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + flen, (int)flen) != (int)flen)
        rv = CKR_FUNCTION_FAILED;
    ECDSA_SIG_free(sig);
    *outlen = 2 * flen;
    return rv;
}

CK_RV kwk_soft_eddsa(const kwk_key *k, const unsigned char *msg, size_t mlen, unsigned char *out,
                     size_t *outlen)
{
    EVP_PKEY *pk = k->priv;
    CK_RV rv = CKR_OK;
    if (pk == NULL)
        return CKR_KEY_HANDLE_INVALID;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || EVP_DigestSignInit_ex(c, NULL, NULL, kwk_libctx(), NULL, pk, NULL) <= 0 ||
        EVP_DigestSign(c, out, outlen, msg, mlen) <= 0)
        rv = kwk_rv_ossl("EdDSA");
    EVP_MD_CTX_free(c);
    return rv;
}
