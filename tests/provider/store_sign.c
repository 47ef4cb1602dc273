/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper: open the first key a URI yields through OSSL_STORE (private or public, as the
 * store returns it) and try to sign a SHA-256 digest with it, so a signature attempt reaches
 * the provider even for a public key, which the openssl command line refuses by itself.
 *
 *   store_sign URI      exit 0: signed; 1: refused (OpenSSL error stack on stderr); 2: usage
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>

int main(int argc, char **argv)
{
    static const unsigned char digest[32] = {1, 2, 3, 4, 5, 6, 7, 8};
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY *pkey = NULL;
    const char *kind = "";
    int ok = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s URI\n", argv[0]);
        return 2;
    }
    OSSL_STORE_CTX *store = OSSL_STORE_open(argv[1], NULL, NULL, NULL, NULL);
    while (store != NULL && pkey == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);
        if (info == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
            kind = "private";
        } else if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PUBKEY) {
            pkey = OSSL_STORE_INFO_get1_PUBKEY(info);
            kind = "public";
        }
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(store);
    if (pkey == NULL) {
        fprintf(stderr, "store_sign: no key at %s\n", argv[1]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    fprintf(stderr, "store_sign: got a %s %s key\n", kind, EVP_PKEY_get0_type_name(pkey));

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx != NULL && EVP_PKEY_sign_init(ctx) > 0 &&
        EVP_PKEY_sign(ctx, sig, &siglen, digest, sizeof(digest)) > 0)
        ok = 1;
    if (ok) {
        printf("signed (%zu bytes)\n", siglen);
    } else {
        fprintf(stderr, "store_sign: signing refused\n");
        ERR_print_errors_fp(stderr);
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return ok ? 0 : 1;
}
