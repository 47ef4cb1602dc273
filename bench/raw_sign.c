/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Baseline for bench/sign_loop: the same token key signed through raw PKCS#11, no OpenSSL.
 * dlopen the module, C_Initialize (OS locking), log in with the PIN from a file, find the
 * private key by label, then N x (C_SignInit + C_Sign) split over T threads, each thread with
 * its own session. ALG (default from the key's type): pkcs1, CKM_RSA_PKCS over a SHA-256
 * DigestInfo; pss, CKM_RSA_PKCS_PSS over the digest (SHA-256, MGF1-SHA-256, salt 32); ecdsa,
 * CKM_ECDSA over the digest; eddsa, CKM_EDDSA over the 64-byte message sign_loop's fresh mode
 * signs. The same work as sign_loop's, without OpenSSL: the floor a provider can reach.
 *
 *   raw_sign MODULE TOKEN-LABEL KEY-LABEL PIN-FILE N THREADS [ALG]
 *
 * Prints one line: "RESULT raw ALG threads=T ops=N secs=S ops_per_sec=R cpu_secs=C
 * ops_per_cpu_sec=Q", like sign_loop.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE key;
static CK_MECHANISM mech;
static unsigned char input[64];
static CK_ULONG input_len;
static pthread_barrier_t start_line;

struct worker {
    pthread_t tid;
    long ops;
    CK_RV rv;
};

static const unsigned char digest[32] = {
    0x6b, 0x86, 0xb2, 0x73, 0xff, 0x34, 0xfc, 0xe1, 0x9d, 0x6b, 0x80, 0x4e, 0xff, 0x5a, 0x3f, 0x57,
    0x47, 0xad, 0xa4, 0xea, 0xa2, 0x2f, 0x1d, 0x49, 0xc0, 0x1e, 0x52, 0xdd, 0xb7, 0x87, 0x5b, 0x4b,
};

static const unsigned char message[64] =
    "keyward bench: a TLS 1.3 CertificateVerify signs 64+ bytes.";
static CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};

/* DER prefix of a DigestInfo with SHA-256 (RFC 8017, 9.2 note 1). */
static const unsigned char sha256_prefix[19] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static CK_RV sign_once(CK_SESSION_HANDLE s)
{
    unsigned char sig[1024];
    CK_ULONG siglen = sizeof(sig);
    CK_RV rv = p11->C_SignInit(s, &mech, key);
    if (rv != CKR_OK)
        return rv;
    return p11->C_Sign(s, input, input_len, sig, &siglen);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;

    w->rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    /* One untimed signature, as sign_loop does. */
    if (w->rv == CKR_OK)
        w->rv = sign_once(s);
    pthread_barrier_wait(&start_line);
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < w->ops && w->rv == CKR_OK; i++)
        w->rv = sign_once(s);
    if (s != CK_INVALID_HANDLE)
        p11->C_CloseSession(s);
    return NULL;
}

static int find_slot(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    size_t len = strlen(label);

    if (p11->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return -1;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        /* Token labels are 32 bytes padded with blanks. */
        size_t l = sizeof(ti.label);
        while (l > 0 && ti.label[l - 1] == ' ')
            l--;
        if (l == len && memcmp(ti.label, label, len) == 0) {
            slot = slots[i];
            return 0;
        }
    }
    return -1;
}

static int read_pin(const char *path, char *pin, size_t size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(pin, 1, size - 1, f);
    fclose(f);
    while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
        n--;
    pin[n] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: %s MODULE TOKEN-LABEL KEY-LABEL PIN-FILE N THREADS [ALG]\n",
                argv[0]);
        return 2;
    }
    const char *module = argv[1], *token = argv[2], *label = argv[3], *pinfile = argv[4];
    long n = strtol(argv[5], NULL, 10);
    int threads = atoi(argv[6]);
    if (n <= 0 || threads <= 0 || threads > 64) {
        fprintf(stderr, "raw_sign: bad N or THREADS\n");
        return 2;
    }

    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "raw_sign: %s\n", dlerror());
        return 1;
    }
    CK_C_GetFunctionList getfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (getfl == NULL || getfl(&p11) != CKR_OK) {
        fprintf(stderr, "raw_sign: no C_GetFunctionList in %s\n", module);
        return 1;
    }
    CK_C_INITIALIZE_ARGS init = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = p11->C_Initialize(&init);
    if (rv != CKR_OK) {
        fprintf(stderr, "raw_sign: C_Initialize: 0x%lx\n", (unsigned long)rv);
        return 1;
    }
    if (find_slot(token) != 0) {
        fprintf(stderr, "raw_sign: token %s not found\n", token);
        return 1;
    }

    /* This session stays open for the whole run: the login belongs to the application as long
     * as one session is open. */
    CK_SESSION_HANDLE s;
    rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fprintf(stderr, "raw_sign: C_OpenSession: 0x%lx\n", (unsigned long)rv);
        return 1;
    }
    char pin[256];
    if (read_pin(pinfile, pin, sizeof(pin)) != 0) {
        fprintf(stderr, "raw_sign: cannot read PIN file %s\n", pinfile);
        return 1;
    }
    rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    memset(pin, 0, sizeof(pin));
    __asm__ __volatile__("" : : "r"(pin) : "memory");
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        fprintf(stderr, "raw_sign: C_Login: 0x%lx\n", (unsigned long)rv);
        return 1;
    }

    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_ULONG found = 0;
    if (p11->C_FindObjectsInit(s, tmpl, 2) != CKR_OK ||
        p11->C_FindObjects(s, &key, 1, &found) != CKR_OK || found != 1) {
        fprintf(stderr, "raw_sign: private key %s not found\n", label);
        return 1;
    }
    p11->C_FindObjectsFinal(s);

    CK_KEY_TYPE kt;
    CK_ATTRIBUTE kta = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    if (p11->C_GetAttributeValue(s, key, &kta, 1) != CKR_OK) {
        fprintf(stderr, "raw_sign: cannot read CKA_KEY_TYPE\n");
        return 1;
    }
    const char *alg = argc == 8              ? argv[7]
                      : kt == CKK_RSA        ? "pkcs1"
                      : kt == CKK_EC_EDWARDS ? "eddsa"
                                             : "ecdsa";
    memcpy(input, digest, sizeof(digest));
    input_len = sizeof(digest);
    if (strcmp(alg, "pkcs1") == 0) {
        mech.mechanism = CKM_RSA_PKCS;
        memcpy(input, sha256_prefix, sizeof(sha256_prefix));
        memcpy(input + sizeof(sha256_prefix), digest, sizeof(digest));
        input_len = sizeof(sha256_prefix) + sizeof(digest);
    } else if (strcmp(alg, "pss") == 0) {
        mech = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
    } else if (strcmp(alg, "ecdsa") == 0) {
        mech.mechanism = CKM_ECDSA;
    } else if (strcmp(alg, "eddsa") == 0) {
        mech.mechanism = CKM_EDDSA;
        memcpy(input, message, sizeof(message));
        input_len = sizeof(message);
    } else {
        fprintf(stderr, "raw_sign: unknown ALG %s (pkcs1, pss, ecdsa, eddsa)\n", alg);
        return 2;
    }

    struct worker *w = calloc((size_t)threads, sizeof(*w));
    if (w == NULL)
        return 1;
    pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i].ops = n / threads + (i < n % threads ? 1 : 0);
        if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
            fprintf(stderr, "raw_sign: pthread_create failed\n");
            return 1;
        }
    }
    pthread_barrier_wait(&start_line);
    double t0 = now(), c0 = cpu_now();
    pthread_barrier_wait(&start_line);
    rv = CKR_OK;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].rv != CKR_OK)
            rv = w[i].rv;
    }
    double secs = now() - t0, cpu = cpu_now() - c0;
    if (rv != CKR_OK) {
        fprintf(stderr, "raw_sign: signing failed: 0x%lx\n", (unsigned long)rv);
        return 1;
    }
    printf("RESULT raw %s threads=%d ops=%ld secs=%.3f ops_per_sec=%.1f cpu_secs=%.3f "
           "ops_per_cpu_sec=%.1f\n",
           alg, threads, n, secs, (double)n / secs, cpu, (double)n / cpu);

    pthread_barrier_destroy(&start_line);
    free(w);
    p11->C_Logout(s);
    p11->C_CloseSession(s);
    p11->C_Finalize(NULL);
    dlclose(dl);
    return 0;
}
