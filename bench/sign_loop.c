/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sign loop through OpenSSL and a provider (keyward, or a peer: whatever OPENSSL_CONF in the
 * environment loads): the key is opened once via OSSL_STORE (a pkcs11: URI), then N signatures
 * are made, split over T threads.
 *
 *   sign_loop URI N THREADS [ALG [MODE]]
 *
 * ALG: pkcs1 (RSA PKCS#1 v1.5, SHA-256), pss (RSA-PSS, SHA-256, salt 32), ecdsa, eddsa; by
 * default pkcs1 or ecdsa from the key's type. MODE:
 *   reuse  one EVP_PKEY_CTX per thread, EVP_PKEY_sign of a SHA-256 digest each time (a CA or
 *          a signing service); eddsa has no such form and runs as fresh
 *   fresh  a new EVP_MD_CTX and EVP_DigestSignInit_ex per signature over a 64-byte message,
 *          as a TLS handshake's CertificateVerify does: what a server pays per handshake
 *
 * Prints one line: "RESULT provider ALG threads=T ops=N secs=S ops_per_sec=R cpu_secs=C
 * ops_per_cpu_sec=Q mode=MODE" (CPU time of the process over the timed part).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

enum alg { ALG_PKCS1, ALG_PSS, ALG_ECDSA, ALG_EDDSA };
static const char *const alg_names[] = {"pkcs1", "pss", "ecdsa", "eddsa"};

struct worker {
    pthread_t tid;
    EVP_PKEY *pkey;
    long ops;
    enum alg alg;
    int fresh;
    int failed;
};

/* The "handshake transcript" a fresh-mode signature covers. */
static const unsigned char message[64] =
    "keyward bench: a TLS 1.3 CertificateVerify signs 64+ bytes.";

static const unsigned char digest[32] = {
    0x6b, 0x86, 0xb2, 0x73, 0xff, 0x34, 0xfc, 0xe1, 0x9d, 0x6b, 0x80, 0x4e, 0xff, 0x5a, 0x3f, 0x57,
    0x47, 0xad, 0xa4, 0xea, 0xa2, 0x2f, 0x1d, 0x49, 0xc0, 0x1e, 0x52, 0xdd, 0xb7, 0x87, 0x5b, 0x4b,
};

static pthread_barrier_t start_line;

static EVP_PKEY_CTX *make_ctx(struct worker *w)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, w->pkey, NULL);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0)
        goto fail;
    /* RSA: PKCS#1 v1.5 over a DigestInfo, as TLS 1.2 and X.509 signing use it, or PSS. */
    if ((w->alg == ALG_PKCS1 || w->alg == ALG_PSS) &&
        (EVP_PKEY_CTX_set_rsa_padding(ctx, w->alg == ALG_PSS ? RSA_PKCS1_PSS_PADDING
                                                             : RSA_PKCS1_PADDING) <= 0 ||
         EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0))
        goto fail;
    if (w->alg == ALG_PSS && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) <= 0)
        goto fail;
    return ctx;
fail:
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

static int sign_once(EVP_PKEY_CTX *ctx)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    return EVP_PKEY_sign(ctx, sig, &siglen, digest, sizeof(digest)) > 0;
}

/* One signature with a context of its own, as a TLS server makes per handshake. */
static int sign_fresh(struct worker *w)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit_ex(md, &pctx, w->alg == ALG_EDDSA ? NULL : "SHA256",
                                                 NULL, NULL, w->pkey, NULL) > 0;

    if (ok && w->alg == ALG_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) > 0;
    ok = ok && EVP_DigestSign(md, sig, &siglen, message, sizeof(message)) > 0;
    EVP_MD_CTX_free(md);
    return ok;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    EVP_PKEY_CTX *ctx = w->fresh ? NULL : make_ctx(w);

    /* One untimed signature: sessions and login happen here, not in the measurement. */
    if (w->fresh ? !sign_fresh(w) : ctx == NULL || !sign_once(ctx))
        w->failed = 1;
    pthread_barrier_wait(&start_line);
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < w->ops && !w->failed; i++) {
        if (w->fresh ? !sign_fresh(w) : !sign_once(ctx))
            w->failed = 1;
    }
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

static EVP_PKEY *open_key(const char *uri)
{
    EVP_PKEY *pkey = NULL;
    OSSL_STORE_CTX *store = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);

    if (store == NULL)
        return NULL;
    OSSL_STORE_expect(store, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(store)) {
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

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: %s PKCS11-URI N THREADS [pkcs1|pss|ecdsa|eddsa [reuse|fresh]]\n",
                argv[0]);
        return 2;
    }
    const char *uri = argv[1];
    long n = strtol(argv[2], NULL, 10);
    int threads = atoi(argv[3]);
    if (n <= 0 || threads <= 0 || threads > 64) {
        fprintf(stderr, "sign_loop: bad N or THREADS\n");
        return 2;
    }

    EVP_PKEY *pkey = open_key(uri);
    if (pkey == NULL) {
        fprintf(stderr, "sign_loop: cannot open private key %s\n", uri);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    enum alg alg = EVP_PKEY_is_a(pkey, "RSA")       ? ALG_PKCS1
                   : EVP_PKEY_is_a(pkey, "ED25519") ? ALG_EDDSA
                                                    : ALG_ECDSA;
    if (argc > 4) {
        size_t i = 0;
        while (i < 4 && strcmp(argv[4], alg_names[i]) != 0)
            i++;
        if (i == 4) {
            fprintf(stderr, "sign_loop: unknown ALG %s\n", argv[4]);
            return 2;
        }
        alg = (enum alg)i;
    }
    int fresh = alg == ALG_EDDSA;
    if (argc > 5 && strcmp(argv[5], "fresh") == 0)
        fresh = 1;
    else if (argc > 5 && strcmp(argv[5], "reuse") != 0) {
        fprintf(stderr, "sign_loop: MODE is reuse or fresh, not %s\n", argv[5]);
        return 2;
    }

    struct worker *w = calloc((size_t)threads, sizeof(*w));
    if (w == NULL)
        return 1;
    pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i].pkey = pkey;
        w[i].alg = alg;
        w[i].fresh = fresh;
        w[i].ops = n / threads + (i < n % threads ? 1 : 0);
        if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
            fprintf(stderr, "sign_loop: pthread_create: %s\n", strerror(errno));
            return 1;
        }
    }
    /* Wait until every thread has warmed up, then start the clock and release them. */
    pthread_barrier_wait(&start_line);
    double t0 = now(), c0 = cpu_now();
    pthread_barrier_wait(&start_line);
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        failed |= w[i].failed;
    }
    double secs = now() - t0, cpu = cpu_now() - c0;
    if (failed) {
        fprintf(stderr, "sign_loop: a signature failed\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    printf("RESULT provider %s threads=%d ops=%ld secs=%.3f ops_per_sec=%.1f cpu_secs=%.3f "
           "ops_per_cpu_sec=%.1f mode=%s\n",
           alg_names[alg], threads, n, secs, (double)n / secs, cpu, (double)n / cpu,
           fresh ? "fresh" : "reuse");
    pthread_barrier_destroy(&start_line);
    free(w);
    EVP_PKEY_free(pkey);
    return 0;
}
