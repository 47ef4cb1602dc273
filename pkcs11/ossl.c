/* SPDX-License-Identifier: Apache-2.0 */
/* libcrypto in a private OSSL_LIB_CTX that loads only the default provider: a process that also
 * loaded the keyward provider (which calls this module) never recurses into it, and the
 * application's openssl.cnf cannot redirect our hashing or key parsing elsewhere. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include "kw_log.h"
#include "kwk.h"

#if defined(__SANITIZE_ADDRESS__)
#define KWK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KWK_ASAN 1
#endif
#endif

#ifdef KWK_ASAN
#include <sanitizer/lsan_interface.h>

/* LeakSanitizer looks for pointers in malloc'd blocks, stacks and globals, not in libcrypto's
 * secure heap (one mmap of its own). libcrypto keeps some state there that points into the
 * ordinary heap (a DRBG's cipher contexts: the DRBG itself is a secure allocation), so a process
 * that ends with this module still initialised (no C_Finalize) was reported as leaking them.
 * The arena is the mapping that holds a secure allocation; LSan scans what is mapped of it at
 * its check. ASan builds only: valgrind scans every mapping by itself. */
static void lsan_scan_secure_heap(void)
{
    static int registered;
    char *line = NULL;
    size_t cap = 0;
    void *p = registered ? NULL : OPENSSL_secure_malloc(1);
    FILE *maps = p && CRYPTO_secure_allocated(p) ? fopen("/proc/self/maps", "r") : NULL;
    while (maps && getline(&line, &cap, maps) > 0) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi) {
            __lsan_register_root_region((void *)lo, hi - lo);
            registered = 1;
            break;
        }
    }
    free(line);
    if (maps)
        fclose(maps);
    OPENSSL_secure_free(p);
}
#endif

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static OSSL_LIB_CTX *ctx;
static OSSL_PROVIDER *deflt;
static EVP_MD *mds[6];

OSSL_LIB_CTX *kwk_libctx(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (ctx == NULL) {
        /* libcrypto's secure heap (one per process, not per context): software-mode keys are
         * decoded into it (their private BIGNUMs are BN_secure_new), so they sit in locked pages
         * left out of core dumps (MADV_DONTDUMP) and are wiped on free. When the application has
         * set one up already, it is used as it is. It is never torn down: see kwk_ossl_free. */
        if (!CRYPTO_secure_malloc_initialized() &&
            CRYPTO_secure_malloc_init(KWK_SECURE_HEAP, 32) == 0)
            KW_DEBUG(KWK_COMP, "no secure heap: software-mode keys live in the ordinary heap");
#ifdef KWK_ASAN
        lsan_scan_secure_heap();
#endif
        OSSL_LIB_CTX *c = OSSL_LIB_CTX_new();
        OSSL_PROVIDER *p = c ? OSSL_PROVIDER_load(c, "default") : NULL;
        if (p == NULL) {
            OSSL_LIB_CTX_free(c);
            KW_DEBUG(KWK_COMP, "cannot load the default provider in a private context");
        } else {
            static const char *names[6] = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512", NULL};
            for (int i = 0; names[i]; i++)
                mds[i] = EVP_MD_fetch(c, names[i], NULL);
            deflt = p;
            ctx = c;
        }
    }
    pthread_mutex_unlock(&ctx_lock);
    return ctx;
}

const EVP_MD *kwk_md(CK_MECHANISM_TYPE m)
{
    if (kwk_libctx() == NULL)
        return NULL;
    switch (m) {
    case CKM_SHA_1:
        return mds[0];
    case CKM_SHA224:
        return mds[1];
    case CKM_SHA256:
        return mds[2];
    case CKM_SHA384:
        return mds[3];
    case CKM_SHA512:
        return mds[4];
    default:
        return NULL;
    }
}

/* No CRYPTO_secure_malloc_done here, or anywhere in the module, even for a heap set up above:
 * the heap is the process's, and libcrypto's done frees its lock without taking it while the
 * application or another thread may hold or be allocating secure memory (pkcs11-secure-heap). */
void kwk_ossl_free(void)
{
    pthread_mutex_lock(&ctx_lock);
    for (int i = 0; i < 6; i++) {
        EVP_MD_free(mds[i]);
        mds[i] = NULL;
    }
    if (deflt)
        OSSL_PROVIDER_unload(deflt);
    OSSL_LIB_CTX_free(ctx);
    deflt = NULL;
    ctx = NULL;
    pthread_mutex_unlock(&ctx_lock);
}
