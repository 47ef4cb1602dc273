/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by fork_sign.c and thread_sign.c: load a key through OSSL_STORE (a pkcs11: URI or a
 * key file, as a server does), sign with it, verify with the public key in the default
 * provider alone so keyward never checks its own work. */
#ifndef KWS_SIGN_COMMON_H
#define KWS_SIGN_COMMON_H

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/store.h>

/* The first private key OSSL_STORE finds at uri (key file path or pkcs11: URI). */
static EVP_PKEY *kws_load_key(const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    EVP_PKEY *key = NULL;

    if (st == NULL)
        return NULL;
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (key == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);

        if (info == NULL)
            continue;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            key = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return key;
}

/* Public key PEM read with the default provider only. */
static EVP_PKEY *kws_load_pub(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *pub;

    if (b == NULL)
        return NULL;
    pub = PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, NULL, "provider=default");
    BIO_free(b);
    return pub;
}

/* EdDSA signs the message itself: no digest name. */
static const char *kws_md_for(const EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL;
    return "SHA256";
}

/* Signature over msg into sig (*siglen in: size); 1 on success. */
static int kws_sign(EVP_PKEY *key, const char *msg, unsigned char *sig, size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL &&
             EVP_DigestSignInit_ex(ctx, NULL, kws_md_for(key), NULL, NULL, key, NULL) == 1 &&
             EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)msg, strlen(msg)) == 1;

    EVP_MD_CTX_free(ctx);
    return ok;
}

/* 1 when sig is a valid signature of msg under pub (default provider). */
static int kws_verify(EVP_PKEY *pub, const char *msg, const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL &&
             EVP_DigestVerifyInit_ex(ctx, NULL, kws_md_for(pub), NULL, "provider=default", pub,
                                     NULL) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)msg, strlen(msg)) == 1;

    EVP_MD_CTX_free(ctx);
    return ok;
}

#define KWS_SIG_MAX 1024

#endif
