/* SPDX-License-Identifier: Apache-2.0 */
/* One process, many faults: a program keeps its keyward keys (RSA and EC, loaded once through
 * OSSL_STORE) while the fault shim under keyward fails chosen calls with chosen CKR_ codes.
 * After each fault the failed operation must have raised a keyward error in words, and the
 * next operation, with the fault gone, must succeed and verify: no re-open, no restart.
 *   recover SHIM_PATH RSA_URI EC_URI      (run by faults.sh recover, which makes the token) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

typedef int (*set_fail_fn)(const char *spec);
static set_fail_fn set_fail;
static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL: " __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static EVP_PKEY *load_key(const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    EVP_PKEY *pk = NULL;

    while (st != NULL && pk == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return pk;
}

/* The OpenSSL error queue as text, then cleared. */
static char *errors_text(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long n;

    ERR_print_errors(b);
    n = BIO_get_mem_data(b, &data);
    s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static int sign_verify(EVP_PKEY *pk)
{
    static const unsigned char msg[] = "keyward fault recovery";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) == 1;

    EVP_MD_CTX_free(md);
    if (!ok)
        return 0;
    md = EVP_MD_CTX_new();
    ok = md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static int decrypt_check(EVP_PKEY *pk)
{
    static const unsigned char msg[] = "premaster";
    unsigned char ct[512], pt[512];
    size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
    int ok = c != NULL && EVP_PKEY_encrypt_init(c) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_encrypt(c, ct, &ctlen, msg, sizeof(msg)) == 1;

    EVP_PKEY_CTX_free(c);
    if (!ok)
        return 0;
    c = EVP_PKEY_CTX_new(pk, NULL);
    ok = c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_decrypt(c, pt, &ptlen, ct, ctlen) == 1 && ptlen == sizeof(msg) &&
         memcmp(pt, msg, ptlen) == 0;
    EVP_PKEY_CTX_free(c);
    return ok;
}

static const char *reason_for(const char *ckr)
{
    if (strcmp(ckr, "CKR_DEVICE_REMOVED") == 0 || strcmp(ckr, "CKR_SESSION_HANDLE_INVALID") == 0)
        return "token not present";
    if (strcmp(ckr, "CKR_USER_NOT_LOGGED_IN") == 0)
        return "PIN required";
    if (strcmp(ckr, "CKR_PIN_EXPIRED") == 0)
        return "PIN locked";
    if (strcmp(ckr, "CKR_HOST_MEMORY") == 0)
        return "out of memory";
    if (strcmp(ckr, "CKR_DEVICE_ERROR") == 0)
        return NULL; /* "token not present" or "PKCS#11 error": either names it */
    return "PKCS#11 error";
}

typedef int (*op_fn)(EVP_PKEY *);

/* One fault, then recovery. must: the operation cannot succeed while the fault lasts. */
static void fault_case(const char *what, op_fn op, EVP_PKEY *pk, const char *fn, const char *range,
                       const char *ckr, int must)
{
    char spec[128];
    int ok;

    snprintf(spec, sizeof(spec), "%s:%s:%s", fn, range, ckr);
    if (!set_fail(spec)) {
        CHECK(0, "shim refused rule %s", spec);
        return;
    }
    ok = op(pk);
    set_fail("");
    if (ok) {
        CHECK(!must, "%s succeeded with %s", what, spec);
    } else {
        char *err = errors_text();
        const char *want = reason_for(ckr);
        CHECK(err != NULL && strstr(err, "keyward:") != NULL, "%s with %s: no keyward error: %s",
              what, spec, err ? err : "");
        if (must && want != NULL)
            CHECK(err != NULL && strstr(err, want) != NULL, "%s with %s: reason is not \"%s\": %s",
                  what, spec, want, err ? err : "");
        free(err);
    }
    ERR_clear_error();
    CHECK(op(pk), "%s does not recover in the same process after %s", what, spec);
    if (failures) {
        char *err = errors_text();
        fprintf(stderr, "%s", err ? err : "");
        free(err);
    }
    ERR_clear_error();
}

int main(int argc, char **argv)
{
    static const char *const ckrs[] = {
        "CKR_DEVICE_ERROR",       "CKR_DEVICE_REMOVED", "CKR_SESSION_HANDLE_INVALID",
        "CKR_USER_NOT_LOGGED_IN", "CKR_PIN_EXPIRED",    "CKR_SESSION_COUNT",
        "CKR_HOST_MEMORY"};
    /* Calls a signature may or may not reach (sessions pooled, already logged in). */
    static const char *const maybe_fns[] = {"C_OpenSession",     "C_Login",
                                            "C_FindObjectsInit", "C_GetAttributeValue",
                                            "C_GetTokenInfo",    "C_GetSlotList"};
    EVP_PKEY *rsa, *ec;
    void *shim;

    if (argc != 4) {
        fprintf(stderr, "usage: %s SHIM RSA_URI EC_URI\n", argv[0]);
        return 2;
    }
    rsa = load_key(argv[2]);
    ec = load_key(argv[3]);
    if (rsa == NULL || ec == NULL) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "FAIL: cannot load the token keys\n");
        return 1;
    }
    /* keyward loaded the shim; reach the copy it loaded. */
    shim = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
    set_fail = shim ? (set_fail_fn)dlsym(shim, "kw_shim_set_fail") : NULL;
    if (set_fail == NULL) {
        fprintf(stderr, "FAIL: the shim %s is not loaded in this process\n", argv[1]);
        return 1;
    }
    CHECK(sign_verify(rsa) && sign_verify(ec) && decrypt_check(rsa), "no fault: operations fail");

    for (size_t i = 0; i < sizeof(ckrs) / sizeof(ckrs[0]); i++) {
        const char *ckr = ckrs[i];
        fault_case("RSA sign", sign_verify, rsa, "C_Sign", "1+", ckr, 1);
        fault_case("RSA sign", sign_verify, rsa, "C_SignInit", "1+", ckr, 1);
        fault_case("RSA sign", sign_verify, rsa, "C_Sign", "1", ckr, 0);
        fault_case("EC sign", sign_verify, ec, "C_Sign", "1+", ckr, 1);
        fault_case("EC sign", sign_verify, ec, "C_SignInit", "1", ckr, 0);
        fault_case("RSA decrypt", decrypt_check, rsa, "C_Decrypt", "1+", ckr, 1);
        fault_case("RSA decrypt", decrypt_check, rsa, "C_DecryptInit", "1+", ckr, 1);
        for (size_t j = 0; j < sizeof(maybe_fns) / sizeof(maybe_fns[0]); j++)
            fault_case("RSA sign", sign_verify, rsa, maybe_fns[j], "1+", ckr, 0);
    }
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
