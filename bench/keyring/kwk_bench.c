/* SPDX-License-Identifier: Apache-2.0 */
/* RSA-2048 signing rates, all in one process and one kernel:
 *   bare    keyctl_pkey_sign(enc=pkcs1 hash=sha256) in a loop (the floor for the kernel)
 *   module  C_SignInit + C_Sign(CKM_SHA256_RSA_PKCS) through keyward-pkcs11.so (hash, DigestInfo,
 *           kernel sign, public-key check of the result)
 *   raw     keyctl_pkey_decrypt(enc=raw) vs module CKM_SHA256_RSA_PKCS_PSS (blinding + check)
 *   libcrypto EVP_PKEY_sign in user space (what a process holding the key itself would do)
 * and ECDSA P-256 (always software mode: the kernel has no EC private keys), module CKM_ECDSA
 * vs libcrypto EVP_PKEY_sign on the same key.
 * Usage: kwk_bench MODULE KEY.p8.der [SECONDS]   (run in a session keyring; KEYWARD_PKCS11_CONF
 * must name a token on a session keyring). Prints ops/s and ratios. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keyutils.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kwk_vendor.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*op_fn)(void *);

static double rate(op_fn fn, void *arg, double secs)
{
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 5; i++, n++)
            if (fn(arg) != 0) {
                fprintf(stderr, "operation failed\n");
                exit(1);
            }
    } while ((t = now() - t0) < secs);
    return (double)n / t;
}

static key_serial_t kserial;
static unsigned char digest[32], sig[512], em[256];
static CK_FUNCTION_LIST *p11;
static CK_SESSION_HANDLE sess;
static CK_OBJECT_HANDLE priv;
static EVP_PKEY_CTX *sctx;

static int bare_sign(void *a __attribute__((unused)))
{
    return keyctl_pkey_sign(kserial, "enc=pkcs1 hash=sha256", digest, 32, sig, 256) == 256 ? 0 : 1;
}
static int bare_raw(void *a __attribute__((unused)))
{
    return keyctl_pkey_decrypt(kserial, "enc=raw", em, 256, sig, 256) == 256 ? 0 : 1;
}
static int module_sign(void *a)
{
    CK_MECHANISM *m = a;
    CK_ULONG sl = sizeof(sig);
    if (p11->C_SignInit(sess, m, priv) != CKR_OK)
        return 1;
    return p11->C_Sign(sess, digest, 32, sig, &sl) != CKR_OK;
}
static int ossl_sign(void *a __attribute__((unused)))
{
    size_t sl = sizeof(sig);
    return EVP_PKEY_sign(sctx, sig, &sl, digest, 32) != 1;
}

static CK_OBJECT_HANDLE ec_priv;
static EVP_PKEY_CTX *ec_ctx;
static int module_ecdsa(void *a __attribute__((unused)))
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_ULONG sl = sizeof(sig);
    if (p11->C_SignInit(sess, &m, ec_priv) != CKR_OK)
        return 1;
    return p11->C_Sign(sess, digest, 32, sig, &sl) != CKR_OK;
}
static int ossl_ecdsa(void *a __attribute__((unused)))
{
    size_t sl = sizeof(sig);
    return EVP_PKEY_sign(ec_ctx, sig, &sl, digest, 32) != 1;
}

/* ECDSA P-256: a fresh key imported into the module's token and kept by libcrypto too. */
static void ec_row(double secs)
{
    EVP_PKEY *ek = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    PKCS8_PRIV_KEY_INFO *pi = ek ? EVP_PKEY2PKCS8(ek) : NULL;
    unsigned char *p8 = NULL;
    int n = pi ? i2d_PKCS8_PRIV_KEY_INFO(pi, &p8) : -1;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_LABEL, "bench-ec", 8},
                        {CKA_KEYWARD_PKCS8, p8, n > 0 ? (CK_ULONG)n : 0}};

    if (n <= 0 || p11->C_CreateObject(sess, t, 3, &ec_priv) != CKR_OK ||
        (ec_ctx = EVP_PKEY_CTX_new(ek, NULL)) == NULL || EVP_PKEY_sign_init(ec_ctx) != 1) {
        printf("ECDSA P-256: import into the module failed\n");
    } else {
        double r_mod = rate(module_ecdsa, NULL, secs), r_ossl = rate(ossl_ecdsa, NULL, secs);
        printf("ECDSA P-256, software mode\n");
        printf("module    CKM_ECDSA                %8.1f ops/s\n", r_mod);
        printf("libcrypto EVP_PKEY_sign ecdsa      %8.1f ops/s\n", r_ossl);
        printf("RATIO module(software)/libcrypto ECDSA: %.3f\n", r_mod / r_ossl);
    }
    EVP_PKEY_CTX_free(ec_ctx);
    OPENSSL_clear_free(p8, n > 0 ? (size_t)n : 0);
    PKCS8_PRIV_KEY_INFO_free(pi);
    EVP_PKEY_free(ek);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODULE KEY.p8.der [SECONDS]\n", argv[0]);
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 3.0;
    FILE *fp = fopen(argv[2], "rb");
    unsigned char der[4096];
    size_t dl = fp ? fread(der, 1, sizeof(der), fp) : 0;
    if (fp)
        fclose(fp);
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_AutoPrivateKey(NULL, &p, (long)dl);
    if (pk == NULL || EVP_PKEY_get_bits(pk) != 2048) {
        fprintf(stderr, "%s: need an RSA-2048 PKCS#8 DER key\n", argv[2]);
        return 2;
    }
    memset(digest, 0x5a, sizeof(digest));
    memset(em, 0x42, sizeof(em));
    em[0] = 0;

    /* The module, with its own copy of the key in its token. */
    void *dl_h = dlopen(argv[1], RTLD_NOW);
    CK_C_GetFunctionList gfl = dl_h ? (CK_C_GetFunctionList)dlsym(dl_h, "C_GetFunctionList") : NULL;
    CK_SLOT_ID slot;
    CK_ULONG ns = 1;
    if (gfl == NULL || gfl(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK ||
        p11->C_GetSlotList(CK_TRUE, &slot, &ns) != CKR_OK ||
        p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sess) !=
            CKR_OK) {
        fprintf(stderr, "cannot use module %s\n", argv[1]);
        return 1;
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "bench", 5}, {CKA_KEYWARD_PKCS8, der, dl}};
    if (p11->C_CreateObject(sess, t, 3, &priv) != CKR_OK) {
        fprintf(stderr, "import into the module failed\n");
        return 1;
    }
    char mode[16] = {0};
    CK_ATTRIBUTE ma = {CKA_KEYWARD_MODE, mode, sizeof(mode) - 1};
    p11->C_GetAttributeValue(sess, priv, &ma, 1);

    /* libcrypto in user space. */
    sctx = EVP_PKEY_CTX_new(pk, NULL);
    EVP_PKEY_sign_init(sctx);
    EVP_PKEY_CTX_set_rsa_padding(sctx, RSA_PKCS1_PADDING);
    EVP_PKEY_CTX_set_signature_md(sctx, EVP_sha256());

    CK_MECHANISM m_pkcs = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM m_pss = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
    printf("RSA-2048, %.1f s per measurement; module key in %s mode\n", secs, mode);
    double r_mod = rate(module_sign, &m_pkcs, secs);
    double r_pss = rate(module_sign, &m_pss, secs);
    double r_ossl = rate(ossl_sign, NULL, secs);
    printf("module    CKM_SHA256_RSA_PKCS      %8.1f ops/s\n", r_mod);
    printf("module    CKM_SHA256_RSA_PKCS_PSS  %8.1f ops/s\n", r_pss);
    printf("libcrypto EVP_PKEY_sign pkcs1      %8.1f ops/s\n", r_ossl);
    ec_row(secs);
    kserial = add_key("asymmetric", "kwk-bench-bare", der, dl, KEY_SPEC_SESSION_KEYRING);
    if (kserial < 0) {
        printf("bare keyctl loop: not possible here (%s): no kernel RSA keys\n", strerror(errno));
        printf("ratio module(%s)/libcrypto: %.3f\n", mode, r_mod / r_ossl);
        return 0;
    }
    double r_bare = rate(bare_sign, NULL, secs);
    double r_raw = rate(bare_raw, NULL, secs);
    /* second module round after the bare loops, to even out drift on a busy emulator */
    double r_mod2 = rate(module_sign, &m_pkcs, secs);
    printf("bare      keyctl_pkey_sign pkcs1   %8.1f ops/s\n", r_bare);
    printf("bare      keyctl_pkey_decrypt raw  %8.1f ops/s\n", r_raw);
    printf("module    CKM_SHA256_RSA_PKCS (2)  %8.1f ops/s\n", r_mod2);
    double avg = (r_mod + r_mod2) / 2;
    printf("RATIO module/bare (PKCS#1 sign):       %.3f  (overhead %.1f%%)\n", avg / r_bare,
           100.0 * (1 - avg / r_bare));
    printf("RATIO module PSS/bare raw op:          %.3f  (blinding + checks, overhead %.1f%%)\n",
           r_pss / r_raw, 100.0 * (1 - r_pss / r_raw));
    printf("RATIO kernel/libcrypto (bare sign):    %.3f\n", r_bare / r_ossl);
    printf("RATIO module/libcrypto:                %.3f\n", avg / r_ossl);
    keyctl_invalidate(kserial);
    return 0;
}
