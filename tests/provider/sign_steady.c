/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper for steady_state.sh: open a key through OSSL_STORE, sign once (warm-up: login,
 * session, mechanism list), then N more times, and count the OpenSSL errors raised during those
 * N, cleared or not. ERR_new is interposed: libcrypto calls its own exported functions through
 * the PLT, so every error raised in the process (by libcrypto, or by keyward through the core)
 * passes here. Each signature is checked with the public half by the default provider.
 *
 *   sign_steady URI N reuse|fresh      prints "signatures=N errors=E"; exit 0, or 1 on failure
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>

static long raised;
static int counting;

__attribute__((visibility("default"))) void ERR_new(void);
void ERR_new(void)
{
    static void (*real)(void);
    if (real == NULL)
        real = (void (*)(void))dlsym(RTLD_NEXT, "ERR_new");
    if (counting)
        raised++;
    real();
}

static int sign_one(EVP_PKEY *k, EVP_PKEY_CTX *reuse, const unsigned char *msg, size_t mlen,
                    unsigned char *sig, size_t *slen)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (reuse != NULL)
        return EVP_Digest(msg, mlen, md, &mdlen, EVP_sha256(), NULL) == 1 &&
               EVP_PKEY_sign(reuse, sig, slen, md, mdlen) == 1;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m != NULL && EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, k, NULL) == 1 &&
             EVP_DigestSign(m, sig, slen, msg, mlen) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "reuse") != 0 && strcmp(argv[3], "fresh") != 0)) {
        fprintf(stderr, "usage: %s URI N reuse|fresh\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    EVP_PKEY *k = NULL, *pub = NULL;
    OSSL_STORE_CTX *st = OSSL_STORE_open(argv[1], NULL, NULL, NULL, NULL);
    while (st != NULL && k == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *i = OSSL_STORE_load(st);
        if (i != NULL && OSSL_STORE_INFO_get_type(i) == OSSL_STORE_INFO_PKEY)
            k = OSSL_STORE_INFO_get1_PKEY(i);
        OSSL_STORE_INFO_free(i);
    }
    OSSL_STORE_close(st);
    if (k == NULL) {
        fprintf(stderr, "sign_steady: no private key at %s\n", argv[1]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* the public half, through the default provider: the independent check */
    unsigned char *der = NULL;
    int dlen = i2d_PUBKEY(k, &der);
    const unsigned char *p = der;
    if (dlen > 0)
        pub = d2i_PUBKEY_ex(NULL, &p, dlen, NULL, "provider=default");
    OPENSSL_free(der);
    EVP_PKEY_CTX *reuse = NULL;
    if (strcmp(argv[3], "reuse") == 0) {
        reuse = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
        if (reuse == NULL || EVP_PKEY_sign_init(reuse) != 1 ||
            EVP_PKEY_CTX_set_signature_md(reuse, EVP_sha256()) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    unsigned char msg[64] = "steady state", sig[1024];
    int bad = pub == NULL;
    for (long i = 0; i <= n && !bad; i++) {
        size_t slen = sizeof(sig);
        msg[63] = (unsigned char)i;
        counting = i > 0; /* the first signature warms up: login, session, mechanisms */
        bad = !sign_one(k, reuse, msg, sizeof(msg), sig, &slen);
        counting = 0;
        EVP_MD_CTX *v = EVP_MD_CTX_new();
        bad =
            bad || v == NULL ||
            EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, "provider=default", pub, NULL) != 1 ||
            EVP_DigestVerify(v, sig, slen, msg, sizeof(msg)) != 1;
        EVP_MD_CTX_free(v);
    }
    if (bad) {
        fprintf(stderr, "sign_steady: a signature failed or did not verify\n");
        ERR_print_errors_fp(stderr);
    } else {
        printf("signatures=%ld errors=%ld\n", n, raised);
    }
    EVP_PKEY_CTX_free(reuse);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
    return bad;
}
