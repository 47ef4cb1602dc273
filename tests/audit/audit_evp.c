/* SPDX-License-Identifier: Apache-2.0 */
/* Non-extraction audit through OpenSSL: every API a program could use to get a private key out
 * of an EVP_PKEY, on keyward token keys. Each probe reports whether private material came out;
 * the same probes run first on a software key of the same type, where they MUST find it (so a
 * probe that cannot see a leak fails the test instead of passing it).
 *   audit-evp URI...      (OPENSSL_CONF loads default + keyward) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/x509.h>

static OSSL_LIB_CTX *plain; /* default provider only: can it read what came out? */
static int failures, checks;

static const char *const private_params[] = {
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,
    OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
    OSSL_PKEY_PARAM_PRIV_KEY,
};

static int is_private_param(const char *key)
{
    for (size_t i = 0; i < sizeof(private_params) / sizeof(private_params[0]); i++)
        if (strcmp(key, private_params[i]) == 0)
            return 1;
    return 0;
}

static int params_leak(const OSSL_PARAM *p)
{
    for (; p != NULL && p->key != NULL; p++)
        if (is_private_param(p->key) && p->data_size > 0)
            return 1;
    return 0;
}

/* Bytes that the default provider alone reads as a private key, or text that shows one. */
static int bytes_leak(const unsigned char *d, size_t n)
{
    EVP_PKEY *pk = NULL;
    const unsigned char *p = d;
    size_t left = n;
    OSSL_DECODER_CTX *dc =
        OSSL_DECODER_CTX_new_for_pkey(&pk, NULL, NULL, NULL, EVP_PKEY_KEYPAIR, plain, NULL);
    int leak = 0;

    if (dc != NULL && OSSL_DECODER_from_data(dc, &p, &left) && pk != NULL)
        leak = 1;
    EVP_PKEY_free(pk);
    OSSL_DECODER_CTX_free(dc);
    ERR_clear_error();
    if (memmem(d, n, "PRIVATE KEY-----", 16) != NULL || memmem(d, n, "privateExponent", 15) ||
        memmem(d, n, "prime1", 6) || memmem(d, n, "priv:", 5))
        leak = 1;
    return leak;
}

static int export_cb_leak;
static int export_cb(const OSSL_PARAM params[], void *arg)
{
    if (params_leak(params))
        export_cb_leak = 1;
    return 1;
}

static int pass_cb(char *buf, int size, int rw, void *u)
{
    static const char pw[] = "audit-passphrase"; /* test value, protects nothing */
    if (size < (int)sizeof(pw))
        return -1;
    memcpy(buf, pw, sizeof(pw) - 1);
    return (int)sizeof(pw) - 1;
}

/* Each probe: 1 when private material came out. name gets a description. */
static int probe_todata(EVP_PKEY *pk)
{
    OSSL_PARAM *p = NULL;
    int leak = EVP_PKEY_todata(pk, EVP_PKEY_KEYPAIR, &p) == 1 && params_leak(p);
    OSSL_PARAM_free(p);
    return leak;
}

static int probe_export(EVP_PKEY *pk)
{
    export_cb_leak = 0;
    (void)EVP_PKEY_export(pk, EVP_PKEY_KEYPAIR, export_cb, NULL);
    return export_cb_leak;
}

static int probe_get_param(EVP_PKEY *pk)
{
    int leak = 0;
    for (size_t i = 0; i < sizeof(private_params) / sizeof(private_params[0]); i++) {
        BIGNUM *bn = NULL;
        unsigned char buf[1024];
        size_t len = 0;
        if (EVP_PKEY_get_bn_param(pk, private_params[i], &bn) == 1 && bn != NULL)
            leak = 1;
        BN_clear_free(bn);
        if (EVP_PKEY_get_octet_string_param(pk, private_params[i], buf, sizeof(buf), &len) == 1 &&
            len > 0)
            leak = 1;
        OPENSSL_cleanse(buf, sizeof(buf));
    }
    {
        unsigned char raw[128];
        size_t len = sizeof(raw);
        if (EVP_PKEY_get_raw_private_key(pk, raw, &len) == 1 && len > 0)
            leak = 1;
        OPENSSL_cleanse(raw, sizeof(raw));
    }
    return leak;
}

static int probe_dup(EVP_PKEY *pk)
{
    EVP_PKEY *d = EVP_PKEY_dup(pk);
    int leak = d != NULL && (probe_todata(d) || probe_get_param(d));
    EVP_PKEY_free(d);
    return leak;
}

static int encode_leak(EVP_PKEY *pk, int selection, const char *type, const char *structure,
                       int encrypt)
{
    OSSL_ENCODER_CTX *ec = OSSL_ENCODER_CTX_new_for_pkey(pk, selection, type, structure, NULL);
    unsigned char *out = NULL;
    size_t len = 0;
    int leak = 0;

    if (ec != NULL && encrypt) {
        OSSL_ENCODER_CTX_set_cipher(ec, "AES-256-CBC", NULL);
        OSSL_ENCODER_CTX_set_passphrase(ec, (const unsigned char *)"audit-passphrase", 16);
    }
    if (ec != NULL && OSSL_ENCODER_to_data(ec, &out, &len) == 1 && out != NULL) {
        if (encrypt) {
            /* Decrypt with the passphrase to see what is inside. */
            BIO *b = BIO_new_mem_buf(out, (int)len);
            EVP_PKEY *pk2 = NULL;
            if (strcmp(type, "PEM") == 0)
                pk2 = PEM_read_bio_PrivateKey_ex(b, NULL, pass_cb, NULL, plain, NULL);
            else
                pk2 = d2i_PKCS8PrivateKey_bio(b, NULL, pass_cb, NULL);
            leak = pk2 != NULL;
            EVP_PKEY_free(pk2);
            BIO_free(b);
            ERR_clear_error();
        }
        leak |= bytes_leak(out, len);
        OPENSSL_clear_free(out, len);
    }
    OSSL_ENCODER_CTX_free(ec);
    ERR_clear_error();
    return leak;
}

static int probe_encoders(EVP_PKEY *pk)
{
    static const char *const types[] = {"DER", "PEM", "TEXT"};
    static const char *const structures[] = {"PrivateKeyInfo",
                                             "EncryptedPrivateKeyInfo",
                                             "type-specific",
                                             "pkcs1",
                                             "PKCS1",
                                             "SEC1",
                                             NULL};
    static const int selections[] = {EVP_PKEY_KEYPAIR, OSSL_KEYMGMT_SELECT_PRIVATE_KEY,
                                     OSSL_KEYMGMT_SELECT_ALL};
    int leak = 0;
    for (size_t t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof(structures) / sizeof(structures[0]); s++)
            for (size_t l = 0; l < 3; l++) {
                int enc =
                    structures[s] != NULL && strcmp(structures[s], "EncryptedPrivateKeyInfo") == 0;
                if (encode_leak(pk, selections[l], types[t], structures[s], enc)) {
                    printf("#   leak: encoder %s/%s selection 0x%x\n", types[t],
                           structures[s] ? structures[s] : "(any)", selections[l]);
                    leak = 1;
                }
            }
    return leak;
}

static int probe_legacy_writers(EVP_PKEY *pk)
{
    int leak = 0;
    BIO *b;
    char *d;
    long n;
    unsigned char *der = NULL;
    int dl;

    b = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1) {
        n = BIO_get_mem_data(b, &d);
        leak |= bytes_leak((unsigned char *)d, (size_t)n);
    }
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL) == 1) {
        n = BIO_get_mem_data(b, &d);
        leak |= bytes_leak((unsigned char *)d, (size_t)n);
    }
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PKCS8PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1) {
        n = BIO_get_mem_data(b, &d);
        leak |= bytes_leak((unsigned char *)d, (size_t)n);
    }
    BIO_free(b);
    if ((dl = i2d_PrivateKey(pk, &der)) > 0) {
        leak |= bytes_leak(der, (size_t)dl);
        OPENSSL_clear_free(der, (size_t)dl);
    }
    der = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    if (p8 != NULL) {
        EVP_PKEY *back = EVP_PKCS82PKEY_ex(p8, plain, NULL);
        leak |= back != NULL;
        EVP_PKEY_free(back);
        PKCS8_PRIV_KEY_INFO_free(p8);
    }
    b = BIO_new(BIO_s_mem());
    if (EVP_PKEY_print_private(b, pk, 0, NULL) == 1) {
        n = BIO_get_mem_data(b, &d);
        leak |= bytes_leak((unsigned char *)d, (size_t)n);
    }
    BIO_free(b);
    ERR_clear_error();
    return leak;
}

static const struct {
    const char *name;
    int (*fn)(EVP_PKEY *);
} probes[] = {
    {"EVP_PKEY_todata(KEYPAIR)", probe_todata},
    {"EVP_PKEY_export(KEYPAIR)", probe_export},
    {"EVP_PKEY_get_bn_param/get_octet_string_param/get_raw_private_key", probe_get_param},
    {"EVP_PKEY_dup then todata/get_param", probe_dup},
    {"OSSL_ENCODER (DER/PEM/TEXT x PrivateKeyInfo/Encrypted/type-specific/...)", probe_encoders},
    {"PEM_write_bio_PrivateKey(_traditional)/PKCS8/i2d_PrivateKey/EVP_PKEY2PKCS8/print_private",
     probe_legacy_writers},
};

static void audit(const char *what, EVP_PKEY *pk, int expect_leak)
{
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        int leak = probes[i].fn(pk);
        checks++;
        /* The software control must leak through every probe but dup (which only re-runs
         * the first ones); token keys through none. */
        if (expect_leak ? !leak : leak) {
            failures++;
            printf("FAIL: %s: %s %s\n", what, probes[i].name,
                   expect_leak ? "found nothing in a software key (probe is blind)"
                               : "gave out private key material");
        } else {
            printf("ok: %s: %s %s\n", what, probes[i].name,
                   expect_leak ? "finds a software key's private part" : "refused");
        }
    }
}

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

int main(int argc, char **argv)
{
    plain = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *deflt = plain != NULL ? OSSL_PROVIDER_load(plain, "default") : NULL;
    if (deflt == NULL) {
        fprintf(stderr, "cannot make a default-only library context\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        EVP_PKEY *pk = load_key(argv[i]);
        if (pk == NULL) {
            ERR_print_errors_fp(stderr);
            printf("FAIL: cannot load %s\n", argv[i]);
            return 1;
        }
        /* Control: a software key of the same type, made in the default provider. */
        const char *alg = EVP_PKEY_get0_type_name(pk);
        EVP_PKEY *soft = NULL;
        if (strcmp(alg, "EC") == 0)
            soft = EVP_PKEY_Q_keygen(plain, NULL, "EC", "P-256");
        else if (strcmp(alg, "RSA") == 0 || strcmp(alg, "RSA-PSS") == 0)
            soft = EVP_PKEY_Q_keygen(plain, NULL, alg, (size_t)2048);
        else
            soft = EVP_PKEY_Q_keygen(plain, NULL, alg);
        if (soft == NULL) {
            printf("FAIL: cannot make a software %s key for the control\n", alg);
            return 1;
        }
        printf("# %s key %s\n", alg, argv[i]);
        audit("software control", soft, 1);
        audit(argv[i], pk, 0);
        EVP_PKEY_free(soft);
        EVP_PKEY_free(pk);
    }
    OSSL_PROVIDER_unload(deflt);
    OSSL_LIB_CTX_free(plain);
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0 || argc < 2;
}
