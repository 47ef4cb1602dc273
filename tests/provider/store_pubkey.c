/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper: load one public key from a URI as a program that wants a public key does:
 * OSSL_STORE_expect(ctx, OSSL_STORE_INFO_PUBKEY), then the first OSSL_STORE_load() must give it.
 * Writes it as a PEM SubjectPublicKeyInfo, to be compared with the token's public key.
 *
 *   store_pubkey URI OUT.pem   exit 0: loaded; 1: nothing (OpenSSL error stack on stderr);
 *                              2: usage
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/store.h>

int main(int argc, char **argv)
{
    OSSL_STORE_CTX *store;
    OSSL_STORE_INFO *info = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *out = NULL;
    int ok = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s URI OUT.pem\n", argv[0]);
        return 2;
    }
    store = OSSL_STORE_open(argv[1], NULL, NULL, NULL, NULL);
    if (store != NULL && OSSL_STORE_expect(store, OSSL_STORE_INFO_PUBKEY))
        info = OSSL_STORE_load(store);
    if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PUBKEY)
        pkey = OSSL_STORE_INFO_get1_PUBKEY(info);
    if (pkey == NULL) {
        fprintf(stderr, "store_pubkey: no public key from the first load of %s (got %s)\n", argv[1],
                info != NULL ? OSSL_STORE_INFO_type_string(OSSL_STORE_INFO_get_type(info))
                             : "nothing");
        ERR_print_errors_fp(stderr);
    } else if ((out = BIO_new_file(argv[2], "w")) != NULL && PEM_write_bio_PUBKEY(out, pkey)) {
        ok = 1;
    } else {
        fprintf(stderr, "store_pubkey: cannot write %s\n", argv[2]);
        ERR_print_errors_fp(stderr);
    }
    BIO_free(out);
    EVP_PKEY_free(pkey);
    OSSL_STORE_INFO_free(info);
    OSSL_STORE_close(store);
    return ok ? 0 : 1;
}
