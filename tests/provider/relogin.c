/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper: sign with a token key through keyward, then log the token out behind keyward's
 * back (the same module, loaded again in this process: PKCS#11 login state is per process, so
 * C_Logout on any session logs out keyward's sessions too), then sign again. keyward must notice
 * and log in again with the PIN it has.
 *
 *   relogin URI MODULE      exit 0: both signatures made; 1: a step failed; 2: usage
 */
#include <dlfcn.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>
#include <p11-kit/pkcs11.h>

static EVP_PKEY *load_key(const char *uri)
{
    OSSL_STORE_CTX *store = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    EVP_PKEY *pkey = NULL;

    while (store != NULL && pkey == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);
        if (info == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(store);
    return pkey;
}

static int sign_once(EVP_PKEY *pkey)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)"data", 4) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* Log out every token of the module, through our own load of it. */
static int logout_all(const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CK_C_GetFunctionList gfl = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
    CK_FUNCTION_LIST *fl = NULL;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    int done = 0;

    if (gfl == NULL || gfl(&fl) != CKR_OK)
        return 0;
    CK_RV rv = fl->C_Initialize(NULL);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return 0;
    if (fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SESSION_HANDLE s;
        if (fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
            continue;
        done |= fl->C_Logout(s) == CKR_OK;
        fl->C_CloseSession(s);
    }
    return done; /* the module stays loaded and initialised: it is keyward's too */
}

int main(int argc, char **argv)
{
    EVP_PKEY *pkey;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: %s URI MODULE\n", argv[0]);
        return 2;
    }
    if ((pkey = load_key(argv[1])) == NULL)
        fprintf(stderr, "relogin: cannot load %s\n", argv[1]);
    else if (!sign_once(pkey))
        fprintf(stderr, "relogin: first signature failed\n");
    else if (!logout_all(argv[2]))
        fprintf(stderr, "relogin: could not log the token out (test set-up)\n");
    else if (!sign_once(pkey))
        fprintf(stderr, "relogin: signature after the token logged us out failed\n");
    else
        rc = 0;
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    else
        printf("relogin: signed, token logged out behind keyward's back, signed again\n");
    EVP_PKEY_free(pkey);
    return rc;
}
