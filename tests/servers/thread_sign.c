/* SPDX-License-Identifier: Apache-2.0 */
/* thread-sign KEY PUBKEY [THREADS [COUNT]]
 *
 * Many threads sign with one EVP_PKEY (one token key) at once, as a threaded server does. Every
 * signature is verified with the default provider. Exit 0 when all THREADS x COUNT signatures
 * were made and verify; prints the rate. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "sign_common.h"

struct job {
    EVP_PKEY *key, *pub;
    int id, count;
};

static atomic_int failed_sign, failed_verify, done;

static void *worker(void *arg)
{
    struct job *j = arg;
    unsigned char sig[KWS_SIG_MAX];
    char msg[96];
    int i;

    for (i = 0; i < j->count; i++) {
        size_t len = sizeof(sig);

        snprintf(msg, sizeof(msg), "thread %d message %d", j->id, i);
        if (!kws_sign(j->key, msg, sig, &len)) {
            /* Only the first few errors: the queue is per thread. */
            if (atomic_fetch_add(&failed_sign, 1) < 3) {
                fprintf(stderr, "thread-sign: thread %d signature %d failed\n", j->id, i);
                ERR_print_errors_fp(stderr);
            }
            ERR_clear_error();
            continue;
        }
        if (!kws_verify(j->pub, msg, sig, len)) {
            if (atomic_fetch_add(&failed_verify, 1) < 3)
                fprintf(stderr, "thread-sign: thread %d signature %d does not verify\n", j->id, i);
            continue;
        }
        atomic_fetch_add(&done, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    int count = argc > 4 ? atoi(argv[4]) : 1000;
    EVP_PKEY *key, *pub;
    struct job jobs[256];
    pthread_t tids[256];
    struct timespec t0, t1;
    double secs;
    int i;

    if (argc < 3 || threads < 1 || threads > 256 || count < 1) {
        fprintf(stderr, "usage: thread-sign KEY PUBKEY [THREADS(1-256) [COUNT]]\n");
        return 2;
    }
    key = kws_load_key(argv[1]);
    pub = kws_load_pub(argv[2]);
    if (key == NULL || pub == NULL) {
        fprintf(stderr, "thread-sign: cannot load %s\n", key == NULL ? argv[1] : argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < threads; i++) {
        jobs[i] = (struct job){.key = key, .pub = pub, .id = i, .count = count};
        if (pthread_create(&tids[i], NULL, worker, &jobs[i]) != 0) {
            fprintf(stderr, "thread-sign: pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    printf("thread-sign: %d threads x %d: %d verified, %d signing failures, %d bad signatures, "
           "%.1f signatures/s\n",
           threads, count, atomic_load(&done), atomic_load(&failed_sign),
           atomic_load(&failed_verify), secs > 0 ? atomic_load(&done) / secs : 0.0);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    return atomic_load(&done) == threads * count ? 0 : 1;
}
