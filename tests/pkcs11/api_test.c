/* SPDX-License-Identifier: Apache-2.0 */
/* keyward-pkcs11 through its PKCS#11 interface: interfaces, return codes for bad calls and
 * templates, attributes, sign/verify/decrypt, threads and fork.
 * Usage: api_test MODULE kernel|software|any|pin|secheap   (inside a session keyring: keyctl
 * session -)
 *   pin: only the PIN token tests (they write their own configuration files)
 *   secheap: libcrypto's secure heap is the process's, not the module's (own configuration) */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pkcs11_3.h"
#include "kwk_vendor.h"

static CK_FUNCTION_LIST_3_0 *f;
static int failures;

#define EXPECT(call, want)                                                                         \
    do {                                                                                           \
        CK_RV rv_ = (call);                                                                        \
        if (rv_ != (CK_RV)(want)) {                                                                \
            printf("FAIL %s:%d: %s -> 0x%lx, want %s (0x%lx)\n", __FILE__, __LINE__, #call,        \
                   (unsigned long)rv_, #want, (unsigned long)(want));                              \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
#define TRUE_OR_FAIL(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* A self-signed P-256 certificate, CN=kw, serial 0x1234. */
static const unsigned char cert_der[] = {
    0x30, 0x82, 0x01, 0x5d, 0x30, 0x82, 0x01, 0x03, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x02, 0x12,
    0x34, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x30, 0x0d, 0x31,
    0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0x6b, 0x77, 0x30, 0x1e, 0x17, 0x0d,
    0x32, 0x36, 0x31, 0x32, 0x30, 0x34, 0x31, 0x37, 0x32, 0x33, 0x30, 0x33, 0x5a, 0x17, 0x0d, 0x33,
    0x36, 0x31, 0x32, 0x30, 0x31, 0x31, 0x37, 0x32, 0x33, 0x30, 0x33, 0x5a, 0x30, 0x0d, 0x31, 0x0b,
    0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0x6b, 0x77, 0x30, 0x59, 0x30, 0x13, 0x06,
    0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
    0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0xa4, 0x41, 0xe2, 0xbf, 0x2a, 0x14, 0xc4, 0x76, 0x53, 0x14,
    0x82, 0x52, 0x96, 0x16, 0x5e, 0x47, 0xbc, 0x13, 0x75, 0x4a, 0x89, 0xf5, 0x01, 0xea, 0xfe, 0x13,
    0x0a, 0x20, 0xff, 0x80, 0x8f, 0xfa, 0x69, 0x1d, 0xae, 0x30, 0x8c, 0xb3, 0x2e, 0x4e, 0xca, 0x35,
    0x9b, 0x34, 0xa2, 0x6e, 0x74, 0x45, 0x86, 0x3b, 0x73, 0x37, 0x7c, 0x75, 0x86, 0x7e, 0x1c, 0x20,
    0x57, 0xc8, 0x75, 0xfc, 0x4b, 0xb7, 0xa3, 0x53, 0x30, 0x51, 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d,
    0x0e, 0x04, 0x16, 0x04, 0x14, 0x87, 0x70, 0x54, 0x6e, 0x18, 0x1e, 0xf9, 0xe1, 0x75, 0x4c, 0x72,
    0x73, 0x63, 0x33, 0x36, 0xca, 0x18, 0xd8, 0xcc, 0x31, 0x30, 0x1f, 0x06, 0x03, 0x55, 0x1d, 0x23,
    0x04, 0x18, 0x30, 0x16, 0x80, 0x14, 0x87, 0x70, 0x54, 0x6e, 0x18, 0x1e, 0xf9, 0xe1, 0x75, 0x4c,
    0x72, 0x73, 0x63, 0x33, 0x36, 0xca, 0x18, 0xd8, 0xcc, 0x31, 0x30, 0x0f, 0x06, 0x03, 0x55, 0x1d,
    0x13, 0x01, 0x01, 0xff, 0x04, 0x05, 0x30, 0x03, 0x01, 0x01, 0xff, 0x30, 0x0a, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x03, 0x48, 0x00, 0x30, 0x45, 0x02, 0x21, 0x00, 0xaa,
    0x01, 0x14, 0xff, 0x2c, 0x42, 0xb5, 0xa8, 0xd4, 0xcd, 0xf7, 0xda, 0x36, 0x1a, 0x52, 0xfd, 0xad,
    0xed, 0x8d, 0x6f, 0x77, 0xe8, 0x67, 0x6b, 0x07, 0xeb, 0x90, 0x97, 0x76, 0x23, 0x0e, 0x1b, 0x02,
    0x20, 0x37, 0xcf, 0x4c, 0x19, 0xc7, 0xca, 0xb5, 0xa9, 0x4b, 0x7a, 0xd0, 0xfe, 0xe4, 0x34, 0x62,
    0xfd, 0x97, 0x4b, 0x24, 0xf8, 0x2e, 0xe7, 0x44, 0xbd, 0x09, 0xbb, 0x23, 0x83, 0x64, 0x46, 0x58,
    0x80};

static void gen_rsa(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *pub,
                    CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 1024;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_TOKEN, &yes, 1}};
    CK_ATTRIBUTE vt[] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_TOKEN, &yes, 1}};
    EXPECT(f->C_GenerateKeyPair(s, &m, pt, 2, vt, 2, pub, priv), CKR_OK);
}

/* Value of one attribute (len: in: capacity, out: length); CKR_* of C_GetAttributeValue. */
static CK_RV get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, void *buf,
                      CK_ULONG *len)
{
    CK_ATTRIBUTE a = {t, buf, *len};
    CK_RV rv = f->C_GetAttributeValue(s, o, &a, 1);
    *len = a.ulValueLen;
    return rv;
}

/* Does the object read back exactly these bytes? */
static int reads(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, const void *want,
                 CK_ULONG wlen)
{
    unsigned char buf[2048];
    CK_ULONG len = sizeof(buf);
    if (get_attr(s, o, t, buf, &len) != CKR_OK || len != wlen || (wlen && memcmp(buf, want, wlen)))
        return 0;
    return 1;
}

/* Objects a one-attribute search finds. */
static CK_ULONG find_count(CK_SESSION_HANDLE s, CK_ATTRIBUTE_TYPE t, const void *v, CK_ULONG len,
                           CK_OBJECT_HANDLE *first)
{
    CK_ATTRIBUTE a = {t, (void *)v, len};
    CK_OBJECT_HANDLE fo[8];
    CK_ULONG n = 0;
    EXPECT(f->C_FindObjectsInit(s, &a, 1), CKR_OK);
    EXPECT(f->C_FindObjects(s, fo, 8, &n), CKR_OK);
    EXPECT(f->C_FindObjectsFinal(s), CKR_OK);
    if (n && first)
        *first = fo[0];
    return n;
}

/* Issue 17, item 10, the rest of the template list: every attribute C_CreateObject and
 * C_GenerateKeyPair accept reads back as given (CKA_SUBJECT, CKA_START_DATE/CKA_END_DATE,
 * CKA_MODIFIABLE=FALSE, CKA_PRIVATE on public keys and certificates, each half's own label,
 * CKA_CERTIFICATE_CATEGORY, CKA_CHECK_VALUE), or the template is refused: values this token cannot
 * keep with CKR_ATTRIBUTE_VALUE_INVALID, key material that disagrees with the key with
 * CKR_TEMPLATE_INCONSISTENT. */
static void template_attribute_tests(CK_SESSION_HANDLE s)
{
    CK_MECHANISM mg = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0}, mec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_CLASS cpub = CKO_PUBLIC_KEY, cpriv = CKO_PRIVATE_KEY, ccert = CKO_CERTIFICATE;
    CK_KEY_TYPE krsa = CKK_RSA;
    CK_ULONG b1024 = 1024, b2048 = 2048, len;
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    /* CN=kw and CN=pub, DER */
    unsigned char subj[] = {0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03,
                            0x55, 0x04, 0x03, 0x0c, 0x02, 0x6b, 0x77},
                  subj2[] = {0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03,
                             0x55, 0x04, 0x03, 0x0c, 0x03, 0x70, 0x75, 0x62};
    static unsigned char big_subj[1025];
    char start[] = "20260102", end[] = "20361231";
    CK_BBOOL bv;
    CK_OBJECT_HANDLE pub, priv, o, found;

    /* A key pair: each template's subject, dates, label, CKA_PRIVATE and CKA_MODIFIABLE */
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &b1024, sizeof(b1024)},
                         {CKA_LABEL, "api-x-pub", 9},
                         {CKA_SUBJECT, subj2, sizeof(subj2)},
                         {CKA_PRIVATE, &yes, 1}};
    CK_ATTRIBUTE vt[] = {
        {CKA_LABEL, "api-x-priv", 10}, {CKA_ID, "\x42", 1},    {CKA_SUBJECT, subj, sizeof(subj)},
        {CKA_START_DATE, start, 8},    {CKA_END_DATE, end, 8}, {CKA_MODIFIABLE, &no, 1}};
    EXPECT(f->C_GenerateKeyPair(s, &mg, pt, 4, vt, 6, &pub, &priv), CKR_OK);
    TRUE_OR_FAIL(reads(s, priv, CKA_SUBJECT, subj, sizeof(subj)));
    TRUE_OR_FAIL(reads(s, priv, CKA_START_DATE, start, 8));
    TRUE_OR_FAIL(reads(s, priv, CKA_END_DATE, end, 8));
    TRUE_OR_FAIL(reads(s, priv, CKA_MODIFIABLE, &no, 1));
    TRUE_OR_FAIL(reads(s, priv, CKA_LABEL, "api-x-priv", 10));
    TRUE_OR_FAIL(reads(s, pub, CKA_SUBJECT, subj2, sizeof(subj2)));
    TRUE_OR_FAIL(reads(s, pub, CKA_LABEL, "api-x-pub", 9));
    TRUE_OR_FAIL(reads(s, pub, CKA_ID, "\x42", 1)); /* given by one template: both halves */
    TRUE_OR_FAIL(reads(s, pub, CKA_PRIVATE, &yes, 1));
    TRUE_OR_FAIL(reads(s, pub, CKA_MODIFIABLE, &yes, 1));
    TRUE_OR_FAIL(reads(s, pub, CKA_START_DATE, "", 0));
    /* found by them */
    TRUE_OR_FAIL(find_count(s, CKA_SUBJECT, subj, sizeof(subj), &found) == 1 && found == priv);
    TRUE_OR_FAIL(find_count(s, CKA_END_DATE, end, 8, &found) == 1 && found == priv);
    /* CKA_MODIFIABLE=FALSE is honoured: no change at all */
    CK_ATTRIBUTE relabel = {CKA_LABEL, "other", 5};
    EXPECT(f->C_SetAttributeValue(s, priv, &relabel, 1), CKR_ACTION_PROHIBITED);
    TRUE_OR_FAIL(reads(s, priv, CKA_LABEL, "api-x-priv", 10));
    EXPECT(f->C_SetAttributeValue(s, pub, &relabel, 1), CKR_OK);
    EXPECT(f->C_DestroyObject(s, priv), CKR_OK); /* destroyable all the same */
    EXPECT(f->C_DestroyObject(s, pub), CKR_OK);

    /* values that cannot be kept as given */
    CK_ATTRIBUTE g_p256 = {CKA_EC_PARAMS, p256, sizeof(p256)};
    CK_ATTRIBUTE bad_date[] = {{CKA_START_DATE, start, 7}},
                 bad_date2[] = {{CKA_END_DATE, "2036-1-1", 8}},
                 bad_subj[] = {{CKA_SUBJECT, big_subj, sizeof(big_subj)}};
    EXPECT(f->C_GenerateKeyPair(s, &mec, &g_p256, 1, bad_date, 1, &pub, &priv),
           CKR_ATTRIBUTE_VALUE_INVALID);
    EXPECT(f->C_GenerateKeyPair(s, &mec, &g_p256, 1, bad_date2, 1, &pub, &priv),
           CKR_ATTRIBUTE_VALUE_INVALID);
    EXPECT(f->C_GenerateKeyPair(s, &mec, &g_p256, 1, bad_subj, 1, &pub, &priv),
           CKR_ATTRIBUTE_VALUE_INVALID);
    /* another key type's parameters */
    CK_ATTRIBUTE ec_bits[] = {g_p256, {CKA_MODULUS_BITS, &b1024, sizeof(b1024)}};
    EXPECT(f->C_GenerateKeyPair(s, &mec, ec_bits, 2, NULL, 0, &pub, &priv),
           CKR_TEMPLATE_INCONSISTENT);
    CK_ATTRIBUTE rsa_ec[] = {ec_bits[1], g_p256};
    EXPECT(f->C_GenerateKeyPair(s, &mg, rsa_ec, 2, NULL, 0, &pub, &priv),
           CKR_TEMPLATE_INCONSISTENT);

    /* imported public key: CKA_MODULUS_BITS and CKA_PUBLIC_KEY_INFO must be the key's */
    unsigned char mod[128] = {0xc1}, exp3[] = {1, 0, 1}, junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    CK_ATTRIBUTE t_pub[] = {{CKA_CLASS, &cpub, sizeof(cpub)},
                            {CKA_KEY_TYPE, &krsa, sizeof(krsa)},
                            {CKA_MODULUS, mod, sizeof(mod)},
                            {CKA_PUBLIC_EXPONENT, exp3, 3},
                            {CKA_MODULUS_BITS, &b2048, sizeof(b2048)}};
    EXPECT(f->C_CreateObject(s, t_pub, 5, &o), CKR_TEMPLATE_INCONSISTENT);
    t_pub[4] = (CK_ATTRIBUTE){CKA_PUBLIC_KEY_INFO, junk, sizeof(junk)};
    EXPECT(f->C_CreateObject(s, t_pub, 5, &o), CKR_TEMPLATE_INCONSISTENT);
    t_pub[4] = (CK_ATTRIBUTE){CKA_EC_POINT, junk, sizeof(junk)};
    EXPECT(f->C_CreateObject(s, t_pub, 5, &o), CKR_TEMPLATE_INCONSISTENT);
    t_pub[4] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &b1024, sizeof(b1024)};
    EXPECT(f->C_CreateObject(s, t_pub, 5, &o), CKR_OK);
    EXPECT(f->C_DestroyObject(s, o), CKR_OK);

    /* imported private key (PKCS#8): nothing beside the whole key, its own SPKI only */
    EVP_PKEY *k = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
    PKCS8_PRIV_KEY_INFO *p8 = k ? EVP_PKEY2PKCS8(k) : NULL;
    unsigned char *p8der = NULL, *spki = NULL, *spki2 = NULL;
    int p8len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &p8der) : -1;
    int slen = k ? i2d_PUBKEY(k, &spki) : -1, slen2 = k2 ? i2d_PUBKEY(k2, &spki2) : -1;
    TRUE_OR_FAIL(p8len > 0 && slen > 0 && slen2 > 0);
    if (p8len > 0 && slen > 0 && slen2 > 0) {
        CK_ATTRIBUTE t_p8[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)},
                               {CKA_KEYWARD_PKCS8, p8der, (CK_ULONG)p8len},
                               {CKA_EC_PARAMS, p256, sizeof(p256)}};
        EXPECT(f->C_CreateObject(s, t_p8, 3, &o), CKR_TEMPLATE_INCONSISTENT);
        t_p8[2] = (CK_ATTRIBUTE){CKA_PUBLIC_KEY_INFO, spki2, (CK_ULONG)slen2};
        EXPECT(f->C_CreateObject(s, t_p8, 3, &o), CKR_TEMPLATE_INCONSISTENT);
        t_p8[2] = (CK_ATTRIBUTE){CKA_PUBLIC_KEY_INFO, spki, (CK_ULONG)slen};
        EXPECT(f->C_CreateObject(s, t_p8, 3, &o), CKR_OK);
        TRUE_OR_FAIL(reads(s, o, CKA_PUBLIC_KEY_INFO, spki, (CK_ULONG)slen));
        EXPECT(f->C_DestroyObject(s, o), CKR_OK);
    }
    OPENSSL_free(p8der);
    OPENSSL_free(spki);
    OPENSSL_free(spki2);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);

    /* certificate: category, check value, dates, CKA_PRIVATE, CKA_MODIFIABLE kept; a URL, the
     * public-key hashes and a MIDP domain refused */
    unsigned char md[EVP_MAX_MD_SIZE], cv_bad[3] = {0};
    TRUE_OR_FAIL(EVP_Digest(cert_der, sizeof(cert_der), md, NULL, EVP_sha1(), NULL));
    CK_ULONG cat = 2, midp = 1;
    CK_ATTRIBUTE ct[] = {{CKA_CLASS, &ccert, sizeof(ccert)},
                         {CKA_CERTIFICATE_TYPE, &(CK_ULONG){CKC_X_509}, sizeof(CK_ULONG)},
                         {CKA_VALUE, (void *)cert_der, sizeof(cert_der)},
                         {CKA_CERTIFICATE_CATEGORY, &cat, sizeof(cat)},
                         {CKA_CHECK_VALUE, md, 3},
                         {CKA_START_DATE, start, 8},
                         {CKA_PRIVATE, &yes, 1},
                         {CKA_MODIFIABLE, &no, 1},
                         {CKA_URL, "", 0}};
    CK_ATTRIBUTE refused[] = {{CKA_URL, "http://x/", 9},
                              {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, md, 20},
                              {CKA_HASH_OF_ISSUER_PUBLIC_KEY, md, 20},
                              {CKA_JAVA_MIDP_SECURITY_DOMAIN, &midp, sizeof(midp)},
                              {CKA_CHECK_VALUE, cv_bad, 3},
                              {CKA_CERTIFICATE_CATEGORY, &(CK_ULONG){4}, sizeof(CK_ULONG)}};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        CK_ATTRIBUTE bad[] = {ct[0], ct[1], ct[2], refused[i]};
        EXPECT(f->C_CreateObject(s, bad, 4, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    EXPECT(f->C_CreateObject(s, ct, 9, &o), CKR_OK);
    len = sizeof(cat);
    cat = 0;
    EXPECT(get_attr(s, o, CKA_CERTIFICATE_CATEGORY, &cat, &len), CKR_OK);
    TRUE_OR_FAIL(cat == 2);
    TRUE_OR_FAIL(reads(s, o, CKA_CHECK_VALUE, md, 3));
    TRUE_OR_FAIL(reads(s, o, CKA_START_DATE, start, 8));
    TRUE_OR_FAIL(reads(s, o, CKA_END_DATE, "", 0));
    TRUE_OR_FAIL(reads(s, o, CKA_URL, "", 0));
    TRUE_OR_FAIL(reads(s, o, CKA_PRIVATE, &yes, 1));
    len = 1;
    EXPECT(get_attr(s, o, CKA_MODIFIABLE, &bv, &len), CKR_OK);
    TRUE_OR_FAIL(bv == CK_FALSE);
    EXPECT(f->C_SetAttributeValue(s, o, &relabel, 1), CKR_ACTION_PROHIBITED);
    EXPECT(f->C_DestroyObject(s, o), CKR_OK);
}

static CK_RV sign_verify(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, void *param, CK_ULONG plen,
                         CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
    CK_MECHANISM m = {mt, param, plen};
    unsigned char data[32] = "keyward keyring token test data", sig[512];
    CK_ULONG sl = sizeof(sig);
    CK_RV rv = f->C_SignInit(s, &m, priv);
    if (rv == CKR_OK)
        rv = f->C_Sign(s, data, sizeof(data), sig, &sl);
    if (rv == CKR_OK)
        rv = f->C_VerifyInit(s, &m, pub);
    if (rv == CKR_OK)
        rv = f->C_Verify(s, data, sizeof(data), sig, sl);
    return rv;
}

typedef struct {
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE priv, pub;
    int errors;
} thr_arg;

static void *thread_main(void *p)
{
    thr_arg *a = p;
    CK_SESSION_HANDLE s;
    if (f->C_OpenSession(a->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
        a->errors++;
        return NULL;
    }
    for (int i = 0; i < 25; i++)
        if (sign_verify(s, CKM_SHA256_RSA_PKCS, NULL, 0, a->priv, a->pub) != CKR_OK)
            a->errors++;
    f->C_CloseSession(s);
    return NULL;
}

static CK_FLAGS token_flags(CK_SLOT_ID slot)
{
    CK_TOKEN_INFO ti;
    EXPECT(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    return ti.flags;
}

static void write_conf(const char *path, const char *line)
{
    FILE *fp = fopen(path, "w");
    TRUE_OR_FAIL(fp != NULL);
    if (fp) {
        fprintf(fp, "%s\n", line);
        fclose(fp);
    }
    setenv("KEYWARD_PKCS11_CONF", path, 1);
}

/* PIN tokens (issue 17, item 13): a salted scrypt in the config, not an unsalted SHA-256 (which
 * is refused with a reason), failed logins counted in the keyring, PKCS#11's count flags, and a
 * lock after pin-max-tries. */
static int pin_tests(void)
{
    char conf[] = "/tmp/kwk-pin-XXXXXX";
    int fd = mkstemp(conf);
    if (fd >= 0)
        close(fd);
    char ring[64];
    snprintf(ring, sizeof(ring), "token pinned session:kwk-pin-%d", (int)getpid());
    char line[400];
    /* scrypt("1234", 00112233..eeff, N=2^14, r=8, p=1) */
    snprintf(line, sizeof(line),
             "%s pin-max-tries=3 pin-scrypt=14:8:1:00112233445566778899aabbccddeeff:"
             "a9d90a5b903041d430f3120a37e7dcb3bdc71c05ec54f79c2088ad704db11ba5",
             ring);
    write_conf(conf, line);
    EXPECT(f->C_Initialize(NULL), CKR_OK);
    CK_SLOT_ID slot = 0;
    CK_SESSION_HANDLE s;
    CK_FLAGS fl = token_flags(slot);
    TRUE_OR_FAIL((fl & CKF_LOGIN_REQUIRED) && !(fl & CKF_USER_PIN_COUNT_LOW));
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    EXPECT(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"0000", 4), CKR_PIN_INCORRECT);
    fl = token_flags(slot);
    TRUE_OR_FAIL((fl & CKF_USER_PIN_COUNT_LOW) && !(fl & CKF_USER_PIN_FINAL_TRY));
    EXPECT(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"12345", 5), CKR_PIN_INCORRECT);
    fl = token_flags(slot);
    TRUE_OR_FAIL((fl & CKF_USER_PIN_FINAL_TRY) && !(fl & CKF_USER_PIN_LOCKED));
    /* the count lives in the keyring: a fresh C_Initialize still sees it */
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    EXPECT(f->C_Initialize(NULL), CKR_OK);
    TRUE_OR_FAIL(token_flags(slot) & CKF_USER_PIN_FINAL_TRY);
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    EXPECT(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4), CKR_OK); /* resets the count */
    TRUE_OR_FAIL(!(token_flags(slot) & CKF_USER_PIN_COUNT_LOW));
    EXPECT(f->C_Logout(s), CKR_OK);
    for (int i = 0; i < 3; i++)
        EXPECT(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"9999", 4), CKR_PIN_INCORRECT);
    TRUE_OR_FAIL(token_flags(slot) & CKF_USER_PIN_LOCKED);
    EXPECT(f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)"1234", 4), CKR_PIN_LOCKED);
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    /* the old unsalted form is refused (C_Initialize fails, the reason goes to stderr) */
    snprintf(line, sizeof(line),
             "%s pin-sha256=03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4",
             ring);
    write_conf(conf, line);
    EXPECT(f->C_Initialize(NULL), CKR_GENERAL_ERROR);
    snprintf(line, sizeof(line), "%s pin-scrypt=10:8:1:0011:aa", ring);
    write_conf(conf, line);
    EXPECT(f->C_Initialize(NULL), CKR_GENERAL_ERROR);
    unlink(conf);
    printf("%d failure(s)\n", failures);
    return failures != 0;
}

/* Load the module, sign with a software-mode EC key (decoded into the secure heap), finalize
 * and unload it. */
static void module_round(const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    TRUE_OR_FAIL(dl != NULL);
    if (dl == NULL)
        return;
    CK_C_GetInterface gi = (CK_C_GetInterface)dlsym(dl, "C_GetInterface");
    CK_INTERFACE *iface = NULL;
    EXPECT(gi(NULL, NULL, &iface, 0), CKR_OK);
    f = iface->pFunctionList;
    EXPECT(f->C_Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE pub, priv;
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};
    CK_MECHANISM mec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    EXPECT(f->C_GenerateKeyPair(s, &mec, pt, 1, NULL, 0, &pub, &priv), CKR_OK);
    EXPECT(sign_verify(s, CKM_ECDSA_SHA256, NULL, 0, priv, pub), CKR_OK);
    EXPECT(f->C_DestroyObject(s, priv), CKR_OK);
    EXPECT(f->C_DestroyObject(s, pub), CKR_OK);
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    dlclose(dl);
}

/* The module sets up libcrypto's secure heap only when the process has none, and never tears it
 * down (CRYPTO_secure_malloc_done is process-wide and takes no lock against other users):
 *   - an application's own heap stays the one in use, its secure buffers stay valid, and the
 *     module's key is in it while used and out of it after C_Finalize (a leak there is invisible
 *     to ASan and memcheck: the secure heap is one mmap);
 *   - a heap the module set up outlives C_Finalize and dlclose, with the application's secure
 *     buffers made from it meanwhile. */
static int secheap_tests(const char *path)
{
    char conf[] = "/tmp/kwk-sec-XXXXXX", line[100];
    int fd = mkstemp(conf);
    if (fd >= 0)
        close(fd);
    snprintf(line, sizeof(line), "token sec session:kwk-sec-%d software", (int)getpid());
    write_conf(conf, line);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { /* the module sets the heap up */
        TRUE_OR_FAIL(!CRYPTO_secure_malloc_initialized());
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CK_C_GetInterface gi = dl ? (CK_C_GetInterface)dlsym(dl, "C_GetInterface") : NULL;
        CK_INTERFACE *iface = NULL;
        TRUE_OR_FAIL(gi != NULL);
        if (gi == NULL)
            _exit(1);
        EXPECT(gi(NULL, NULL, &iface, 0), CKR_OK);
        f = iface->pFunctionList;
        EXPECT(f->C_Initialize(NULL), CKR_OK);
        TRUE_OR_FAIL(CRYPTO_secure_malloc_initialized());
        EXPECT(f->C_Finalize(NULL), CKR_OK);
        dlclose(dl);
        /* nothing in it now, yet it stays: another thread could be allocating from it */
        TRUE_OR_FAIL(CRYPTO_secure_malloc_initialized());
        void *mine = OPENSSL_secure_malloc(100); /* the application's, from the module's heap */
        TRUE_OR_FAIL(mine != NULL && CRYPTO_secure_allocated(mine));
        module_round(path);
        TRUE_OR_FAIL(CRYPTO_secure_malloc_initialized() && CRYPTO_secure_allocated(mine));
        memset(mine, 0x5a, 100);
        OPENSSL_secure_clear_free(mine, 100);
        TRUE_OR_FAIL(CRYPTO_secure_used() == 0); /* the module left nothing in it */
        _exit(failures != 0);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    TRUE_OR_FAIL(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* the application's own heap: 32 KiB, smaller than the module's 1 MiB; the module neither
     * replaces it nor tears it down, whether the application holds secure memory or not */
    TRUE_OR_FAIL(CRYPTO_secure_malloc_init(32768, 16) != 0);
    module_round(path);
    TRUE_OR_FAIL(CRYPTO_secure_malloc_initialized() && CRYPTO_secure_used() == 0);
    void *big = OPENSSL_secure_malloc(40000); /* still the 32 KiB heap: no room */
    TRUE_OR_FAIL(big == NULL);
    OPENSSL_secure_free(big);
    void *mine = OPENSSL_secure_malloc(64);
    TRUE_OR_FAIL(mine != NULL && CRYPTO_secure_allocated(mine));
    size_t before = CRYPTO_secure_used();
    module_round(path);
    TRUE_OR_FAIL(CRYPTO_secure_malloc_initialized() && CRYPTO_secure_allocated(mine));
    TRUE_OR_FAIL(CRYPTO_secure_used() == before); /* the module's key went back */
    OPENSSL_secure_free(mine);
    TRUE_OR_FAIL(CRYPTO_secure_malloc_done() == 1);
    unlink(conf);
    printf("%d failure(s)\n", failures);
    return failures != 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODULE kernel|software|any\n", argv[0]);
        return 2;
    }
    void *dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    CK_C_GetInterfaceList gil = (CK_C_GetInterfaceList)dlsym(dl, "C_GetInterfaceList");
    CK_C_GetInterface gi = (CK_C_GetInterface)dlsym(dl, "C_GetInterface");
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    TRUE_OR_FAIL(gil && gi && gfl);
    TRUE_OR_FAIL(dlsym(dl, "C_Initialize") == NULL); /* only the three entry points exported */

    /* ---- interfaces ---- */
    CK_ULONG n = 0;
    EXPECT(gil(NULL, &n), CKR_OK);
    TRUE_OR_FAIL(n == 2);
    CK_INTERFACE ifs[4];
    CK_ULONG small = 1;
    EXPECT(gil(ifs, &small), CKR_BUFFER_TOO_SMALL);
    EXPECT(gil(ifs, &n), CKR_OK);
    CK_VERSION v30 = {3, 0}, v99 = {9, 9};
    CK_INTERFACE *iface = NULL;
    EXPECT(gi((CK_UTF8CHAR *)"PKCS 11", &v30, &iface, CKF_INTERFACE_FORK_SAFE), CKR_OK);
    EXPECT(gi((CK_UTF8CHAR *)"Vendor X", NULL, &iface, 0), CKR_ARGUMENTS_BAD);
    EXPECT(gi(NULL, &v99, &iface, 0), CKR_ARGUMENTS_BAD);
    EXPECT(gi(NULL, NULL, &iface, 0), CKR_OK);
    f = iface->pFunctionList;
    TRUE_OR_FAIL(f->version.major == 3 && f->version.minor == 0);
    if (strcmp(argv[2], "pin") == 0)
        return pin_tests();
    if (strcmp(argv[2], "secheap") == 0) {
        dlclose(dl);
        return secheap_tests(argv[1]);
    }

    /* ---- initialisation ---- */
    CK_SLOT_ID slots[8];
    CK_ULONG ns = 8;
    EXPECT(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_CRYPTOKI_NOT_INITIALIZED);
    CK_C_INITIALIZE_ARGS bad_args = {0};
    bad_args.pReserved = &bad_args;
    EXPECT(f->C_Initialize(&bad_args), CKR_ARGUMENTS_BAD);
    CK_C_INITIALIZE_ARGS args = {0};
    args.flags = CKF_OS_LOCKING_OK;
    EXPECT(f->C_Initialize(&args), CKR_OK);
    EXPECT(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CK_INFO info;
    EXPECT(f->C_GetInfo(&info), CKR_OK);
    TRUE_OR_FAIL(info.cryptokiVersion.major == 3);
    EXPECT(f->C_GetSlotList(CK_TRUE, NULL, &ns), CKR_OK);
    TRUE_OR_FAIL(ns >= 1);
    ns = 0;
    EXPECT(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_BUFFER_TOO_SMALL);
    ns = 8;
    EXPECT(f->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
    CK_SLOT_ID slot = slots[0];
    EXPECT(f->C_GetSlotInfo(999, &(CK_SLOT_INFO){0}), CKR_SLOT_ID_INVALID);
    CK_TOKEN_INFO ti;
    EXPECT(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    char model[17];
    memcpy(model, ti.model, 16);
    model[16] = '\0';
    printf("token model: %s\n", model);
    int kernel = strncmp(model, "kernel ", 7) == 0;
    TRUE_OR_FAIL(kernel || strncmp(model, "software ", 9) == 0);
    if (strcmp(argv[2], "any") != 0)
        TRUE_OR_FAIL(kernel == (strcmp(argv[2], "kernel") == 0));
    TRUE_OR_FAIL(!(ti.flags & CKF_LOGIN_REQUIRED));
    CK_MECHANISM_INFO mi;
    EXPECT(f->C_GetMechanismInfo(slot, CKM_RSA_PKCS_PSS, &mi), CKR_OK);
    EXPECT(f->C_GetMechanismInfo(slot, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID);

    /* ---- sessions ---- */
    CK_SESSION_HANDLE ro, s;
    EXPECT(f->C_OpenSession(slot, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    EXPECT(f->C_CloseSession(0xdead), CKR_SESSION_HANDLE_INVALID);

    /* ---- bad templates ---- */
    CK_OBJECT_CLASS cpub = CKO_PUBLIC_KEY, cpriv = CKO_PRIVATE_KEY, cdata = CKO_DATA,
                    ccert = CKO_CERTIFICATE;
    CK_KEY_TYPE krsa = CKK_RSA;
    CK_OBJECT_HANDLE o;
    unsigned char mod[128] = {0xc1}, exp3[] = {1, 0, 1};
    CK_ATTRIBUTE t_pub[] = {{CKA_CLASS, &cpub, sizeof(cpub)},
                            {CKA_KEY_TYPE, &krsa, sizeof(krsa)},
                            {CKA_MODULUS, mod, sizeof(mod)},
                            {CKA_PUBLIC_EXPONENT, exp3, 3}};
    EXPECT(f->C_CreateObject(ro, t_pub, 4, &o), CKR_SESSION_READ_ONLY);
    EXPECT(f->C_CreateObject(s, NULL, 4, &o), CKR_ARGUMENTS_BAD);
    EXPECT(f->C_CreateObject(s, t_pub, 4, NULL), CKR_ARGUMENTS_BAD);
    EXPECT(f->C_CreateObject(s, t_pub + 1, 3, &o), CKR_TEMPLATE_INCOMPLETE); /* no class */
    EXPECT(f->C_CreateObject(s, t_pub, 3, &o), CKR_TEMPLATE_INCOMPLETE);     /* no exponent */
    CK_ATTRIBUTE t_short[] = {{CKA_CLASS, &cpub, 1}};
    EXPECT(f->C_CreateObject(s, t_short, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_nullval[] = {{CKA_CLASS, &cpub, sizeof(cpub)}, {CKA_MODULUS, NULL, 128}};
    EXPECT(f->C_CreateObject(s, t_nullval, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_unknown[] = {t_pub[0], t_pub[1], t_pub[2], t_pub[3], {0x7777, mod, 4}};
    EXPECT(f->C_CreateObject(s, t_unknown, 5, &o), CKR_ATTRIBUTE_TYPE_INVALID);
    CK_ATTRIBUTE t_data[] = {{CKA_CLASS, &cdata, sizeof(cdata)}};
    EXPECT(f->C_CreateObject(s, t_data, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_cert[] = {{CKA_CLASS, &ccert, sizeof(ccert)},
                             {CKA_CERTIFICATE_TYPE, &(CK_ULONG){CKC_X_509}, sizeof(CK_ULONG)},
                             {CKA_VALUE, mod, sizeof(mod)}};
    EXPECT(f->C_CreateObject(s, t_cert, 3, &o), CKR_ATTRIBUTE_VALUE_INVALID); /* not DER */
    EXPECT(f->C_CreateObject(s, t_cert, 2, &o), CKR_TEMPLATE_INCOMPLETE);
    CK_ATTRIBUTE t_local[] = {t_pub[0], t_pub[1], t_pub[2], t_pub[3], {CKA_LOCAL, &yes, 1}};
    EXPECT(f->C_CreateObject(s, t_local, 5, &o), CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE t_bool[] = {t_pub[0], t_pub[1], t_pub[2], t_pub[3], {CKA_TOKEN, &yes, 4}};
    EXPECT(f->C_CreateObject(s, t_bool, 5, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_extr[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)},
                             {CKA_KEY_TYPE, &krsa, sizeof(krsa)},
                             {CKA_EXTRACTABLE, &yes, 1}};
    EXPECT(f->C_CreateObject(s, t_extr, 3, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_insens[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)}, {CKA_SENSITIVE, &no, 1}};
    EXPECT(f->C_CreateObject(s, t_insens, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CK_ATTRIBUTE t_pkcs8[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)}, {CKA_KEYWARD_PKCS8, mod, 20}};
    EXPECT(f->C_CreateObject(s, t_pkcs8, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);

    /* ---- key generation ---- */
    CK_MECHANISM mg = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0}, mbad = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub, priv, epub, epriv;
    CK_ULONG bits = 100;
    CK_ATTRIBUTE g_bits[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    EXPECT(f->C_GenerateKeyPair(s, &mbad, g_bits, 1, NULL, 0, &pub, &priv), CKR_MECHANISM_INVALID);
    EXPECT(f->C_GenerateKeyPair(s, &mg, NULL, 0, NULL, 0, &pub, &priv), CKR_TEMPLATE_INCOMPLETE);
    EXPECT(f->C_GenerateKeyPair(s, &mg, g_bits, 1, NULL, 0, &pub, &priv), CKR_KEY_SIZE_RANGE);
    EXPECT(f->C_GenerateKeyPair(ro, &mg, g_bits, 1, NULL, 0, &pub, &priv), CKR_SESSION_READ_ONLY);
    CK_MECHANISM mec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    unsigned char bad_curve[] = {0x06, 0x03, 0x2a, 0x03, 0x04};
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE g_badc[] = {{CKA_EC_PARAMS, bad_curve, sizeof(bad_curve)}};
    EXPECT(f->C_GenerateKeyPair(s, &mec, g_badc, 1, NULL, 0, &pub, &priv), CKR_CURVE_NOT_SUPPORTED);
    CK_ATTRIBUTE g_p256[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};
    EXPECT(f->C_GenerateKeyPair(s, &mec, g_p256, 1, NULL, 0, &epub, &epriv), CKR_OK);
    gen_rsa(s, "api-rsa", &pub, &priv);

    /* ---- templates honoured or refused, never ignored (issue 17, items 10, 11, 15) ---- */
    {
        CK_OBJECT_HANDLE p2, v2;
        CK_ULONG b1024 = 1024;
        CK_BBOOL val = 0;
        CK_ATTRIBUTE enc_pt[] = {{CKA_MODULUS_BITS, &b1024, sizeof(b1024)}, {CKA_ENCRYPT, &yes, 1}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, enc_pt, 2, NULL, 0, &p2, &v2), CKR_OK);
        CK_ATTRIBUTE qa = {CKA_ENCRYPT, &val, 1};
        EXPECT(f->C_GetAttributeValue(s, p2, &qa, 1), CKR_OK);
        TRUE_OR_FAIL(val == CK_TRUE);
        EXPECT(f->C_DestroyObject(s, p2), CKR_OK);
        EXPECT(f->C_DestroyObject(s, v2), CKR_OK);
        CK_ATTRIBUTE der_pt[] = {g_p256[0], {CKA_DERIVE, &yes, 1}};
        EXPECT(f->C_GenerateKeyPair(s, &mec, der_pt, 2, NULL, 0, &p2, &v2), CKR_OK);
        val = 0;
        qa.type = CKA_DERIVE;
        EXPECT(f->C_GetAttributeValue(s, p2, &qa, 1), CKR_OK);
        TRUE_OR_FAIL(val == CK_TRUE);
        EXPECT(f->C_DestroyObject(s, p2), CKR_OK);
        EXPECT(f->C_DestroyObject(s, v2), CKR_OK);
        CK_ATTRIBUTE ecenc_pt[] = {g_p256[0], {CKA_ENCRYPT, &yes, 1}};
        EXPECT(f->C_GenerateKeyPair(s, &mec, ecenc_pt, 2, NULL, 0, &p2, &v2),
               CKR_TEMPLATE_INCONSISTENT);
        CK_ATTRIBUTE rsader_vt[] = {{CKA_DERIVE, &yes, 1}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, enc_pt, 1, rsader_vt, 1, &p2, &v2),
               CKR_TEMPLATE_INCONSISTENT);
        /* session objects are not kept: CKA_TOKEN=FALSE is an inconsistent template here */
        CK_ATTRIBUTE sess_pt[] = {{CKA_MODULUS_BITS, &b1024, sizeof(b1024)}, {CKA_TOKEN, &no, 1}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, sess_pt, 2, NULL, 0, &p2, &v2),
               CKR_TEMPLATE_INCONSISTENT);
        /* a certificate's serial/subject must be its own */
        unsigned char serial_ok[] = {0x02, 0x02, 0x12, 0x34}, serial_bad[] = {0x02, 0x01, 0x07};
        CK_ATTRIBUTE ct[] = {{CKA_CLASS, &ccert, sizeof(ccert)},
                             {CKA_CERTIFICATE_TYPE, &(CK_ULONG){CKC_X_509}, sizeof(CK_ULONG)},
                             {CKA_VALUE, (void *)cert_der, sizeof(cert_der)},
                             {CKA_SERIAL_NUMBER, serial_bad, sizeof(serial_bad)}};
        EXPECT(f->C_CreateObject(s, ct, 4, &o), CKR_TEMPLATE_INCONSISTENT);
        CK_ATTRIBUTE ct_subj[] = {ct[0], ct[1], ct[2], {CKA_SUBJECT, serial_bad, 3}};
        EXPECT(f->C_CreateObject(s, ct_subj, 4, &o), CKR_TEMPLATE_INCONSISTENT);
        ct[3].pValue = serial_ok;
        ct[3].ulValueLen = sizeof(serial_ok);
        EXPECT(f->C_CreateObject(s, ct, 4, &o), CKR_OK);
        CK_OBJECT_HANDLE fo[2];
        CK_ULONG nfo = 0;
        EXPECT(f->C_FindObjectsInit(s, ct + 3, 1), CKR_OK);
        EXPECT(f->C_FindObjects(s, fo, 2, &nfo), CKR_OK);
        EXPECT(f->C_FindObjectsFinal(s), CKR_OK);
        TRUE_OR_FAIL(nfo == 1 && fo[0] == o);
        EXPECT(f->C_DestroyObject(s, o), CKR_OK);
        /* a label is a string in the key's description: a 0x00 byte cannot be kept (documented) */
        CK_ATTRIBUTE nul_label[] = {{CKA_LABEL, "a\0b", 3}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, enc_pt, 1, nul_label, 1, &p2, &v2),
               CKR_ATTRIBUTE_VALUE_INVALID);
    }
    template_attribute_tests(s);

    /* ---- attributes ---- */
    unsigned char buf[600];
    CK_ATTRIBUTE a_sens[] = {{CKA_PRIVATE_EXPONENT, buf, sizeof(buf)}};
    EXPECT(f->C_GetAttributeValue(s, priv, a_sens, 1), CKR_ATTRIBUTE_SENSITIVE);
    TRUE_OR_FAIL(a_sens[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE a_small[] = {{CKA_MODULUS, buf, 4}};
    EXPECT(f->C_GetAttributeValue(s, priv, a_small, 1), CKR_BUFFER_TOO_SMALL);
    TRUE_OR_FAIL(a_small[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE a_len[] = {{CKA_MODULUS, NULL, 0}};
    EXPECT(f->C_GetAttributeValue(s, priv, a_len, 1), CKR_OK);
    TRUE_OR_FAIL(a_len[0].ulValueLen == 128);
    CK_ATTRIBUTE a_inv[] = {{CKA_EC_POINT, buf, sizeof(buf)}};
    EXPECT(f->C_GetAttributeValue(s, priv, a_inv, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    EXPECT(f->C_GetAttributeValue(s, 0x7fffff01, a_len, 1), CKR_OBJECT_HANDLE_INVALID);
    EXPECT(f->C_GetAttributeValue(s, priv, NULL, 1), CKR_ARGUMENTS_BAD);
    CK_BBOOL sens = 0, extr = 1, always = 0, local = 0;
    char mode[16] = {0};
    CK_ULONG serial = 0;
    CK_ATTRIBUTE a_priv[] = {
        {CKA_SENSITIVE, &sens, 1},          {CKA_EXTRACTABLE, &extr, 1},
        {CKA_ALWAYS_SENSITIVE, &always, 1}, {CKA_LOCAL, &local, 1},
        {CKA_KEYWARD_MODE, mode, 15},       {CKA_KEYWARD_SERIAL, &serial, sizeof(serial)}};
    EXPECT(f->C_GetAttributeValue(s, priv, a_priv, 6), CKR_OK);
    TRUE_OR_FAIL(sens && !extr && always && local);
    TRUE_OR_FAIL(strcmp(mode, kernel ? "kernel" : "software") == 0);
    TRUE_OR_FAIL(serial == priv); /* handles are key serials */
    memset(mode, 0, sizeof(mode));
    a_priv[4].ulValueLen = 15;
    EXPECT(f->C_GetAttributeValue(s, epriv, a_priv + 4, 1), CKR_OK);
    TRUE_OR_FAIL(strcmp(mode, "software") == 0); /* the kernel cannot sign with EC keys */
    CK_ATTRIBUTE set_label[] = {{CKA_LABEL, "renamed", 7}};
    EXPECT(f->C_SetAttributeValue(ro, priv, set_label, 1), CKR_SESSION_READ_ONLY);
    EXPECT(f->C_SetAttributeValue(s, priv, set_label, 1), CKR_OK);
    CK_ATTRIBUTE set_sens[] = {{CKA_SENSITIVE, &no, 1}};
    EXPECT(f->C_SetAttributeValue(s, priv, set_sens, 1), CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE find_label[] = {{CKA_LABEL, "renamed", 7}};
    CK_OBJECT_HANDLE found[4];
    CK_ULONG nf = 0;
    EXPECT(f->C_FindObjects(s, found, 4, &nf), CKR_OPERATION_NOT_INITIALIZED);
    /* A length without a value (found by the pkcs11 fuzz target: it was compared from NULL). */
    CK_ATTRIBUTE find_null[] = {{CKA_SIGN, NULL, 1}};
    EXPECT(f->C_FindObjectsInit(s, find_null, 1), CKR_ATTRIBUTE_VALUE_INVALID);
    EXPECT(f->C_FindObjectsInit(s, find_label, 1), CKR_OK);
    EXPECT(f->C_FindObjectsInit(s, find_label, 1), CKR_OPERATION_ACTIVE);
    EXPECT(f->C_FindObjects(s, found, 4, &nf), CKR_OK);
    EXPECT(f->C_FindObjectsFinal(s), CKR_OK);
    TRUE_OR_FAIL(nf == 1 && found[0] == priv);

    /* ---- operations ---- */
    CK_MECHANISM m_pkcs = {CKM_SHA256_RSA_PKCS, NULL, 0},
                 m_pss_noparam = {CKM_RSA_PKCS_PSS, NULL, 0};
    CK_MECHANISM m_ecdsa = {CKM_ECDSA, NULL, 0}, m_unk = {CKM_AES_CBC, NULL, 0};
    unsigned char sig[256], data[20] = "data";
    CK_ULONG sl = sizeof(sig);
    EXPECT(f->C_Sign(s, data, 4, sig, &sl), CKR_OPERATION_NOT_INITIALIZED);
    EXPECT(f->C_SignInit(s, &m_unk, priv), CKR_MECHANISM_INVALID);
    EXPECT(f->C_SignInit(s, &m_ecdsa, priv), CKR_KEY_TYPE_INCONSISTENT);
    EXPECT(f->C_SignInit(s, &m_pkcs, epriv), CKR_KEY_TYPE_INCONSISTENT);
    EXPECT(f->C_SignInit(s, &m_pkcs, pub), CKR_KEY_TYPE_INCONSISTENT);
    EXPECT(f->C_SignInit(s, &m_pss_noparam, priv), CKR_MECHANISM_PARAM_INVALID);
    EXPECT(f->C_SignInit(s, &m_pkcs, 0x7fffff01), CKR_KEY_HANDLE_INVALID);
    EXPECT(f->C_SignInit(s, &m_pkcs, priv), CKR_OK);
    EXPECT(f->C_SignInit(s, &m_pkcs, priv), CKR_OPERATION_ACTIVE);
    sl = 0;
    EXPECT(f->C_Sign(s, data, 4, NULL, &sl), CKR_OK);
    TRUE_OR_FAIL(sl == 128);
    sl = 10;
    EXPECT(f->C_Sign(s, data, 4, sig, &sl), CKR_BUFFER_TOO_SMALL);
    sl = sizeof(sig);
    EXPECT(f->C_Sign(s, data, 4, sig, &sl), CKR_OK);
    EXPECT(f->C_VerifyInit(s, &m_pkcs, pub), CKR_OK);
    EXPECT(f->C_Verify(s, data, 4, sig, sl), CKR_OK);
    sig[5] ^= 1;
    EXPECT(f->C_VerifyInit(s, &m_pkcs, pub), CKR_OK);
    EXPECT(f->C_Verify(s, data, 4, sig, sl), CKR_SIGNATURE_INVALID);
    /* multi-part */
    EXPECT(f->C_SignInit(s, &m_pkcs, priv), CKR_OK);
    EXPECT(f->C_SignUpdate(s, data, 2), CKR_OK);
    EXPECT(f->C_SignUpdate(s, data + 2, 2), CKR_OK);
    sl = sizeof(sig);
    EXPECT(f->C_SignFinal(s, sig, &sl), CKR_OK);
    EXPECT(f->C_VerifyInit(s, &m_pkcs, pub), CKR_OK);
    EXPECT(f->C_Verify(s, data, 4, sig, sl), CKR_OK);
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss), priv, pub), CKR_OK);
    CK_RSA_PKCS_PSS_PARAMS pss_bad = {CKM_SHA384, CKG_MGF1_SHA256, 32};
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS_PSS, &pss_bad, sizeof(pss_bad), priv, pub),
           CKR_MECHANISM_PARAM_INVALID);
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS_PSS, &pss, 3, priv, pub),
           CKR_MECHANISM_PARAM_INVALID);
    EXPECT(sign_verify(s, CKM_ECDSA_SHA256, NULL, 0, epriv, epub), CKR_OK);
    /* Single-part CKM_ECDSA signs the caller's buffer where it is: the same bound as buffered
     * input (1 MiB, the operation ends), a length query keeps the operation, the result
     * verifies. */
    static unsigned char big[1024 * 1024 + 1];
    EXPECT(f->C_SignInit(s, &m_ecdsa, epriv), CKR_OK);
    sl = sizeof(sig);
    EXPECT(f->C_Sign(s, big, sizeof(big), sig, &sl), CKR_DATA_LEN_RANGE);
    EXPECT(f->C_Sign(s, data, 20, sig, &sl), CKR_OPERATION_NOT_INITIALIZED);
    EXPECT(f->C_SignInit(s, &m_ecdsa, epriv), CKR_OK);
    sl = 0;
    EXPECT(f->C_Sign(s, data, 20, NULL, &sl), CKR_OK);
    sl = sizeof(sig);
    EXPECT(f->C_Sign(s, data, 20, sig, &sl), CKR_OK);
    EXPECT(f->C_VerifyInit(s, &m_ecdsa, epub), CKR_OK);
    EXPECT(f->C_Verify(s, data, 20, sig, sl), CKR_OK);
    /* The session keeps its ECDSA context between signatures with one key: a second key in the
     * same session signs with its own key, the first again with the first, and a destroyed key
     * no longer signs although its context was the session's last. */
    CK_OBJECT_HANDLE e2pub, e2priv;
    EXPECT(f->C_GenerateKeyPair(s, &mec, g_p256, 1, NULL, 0, &e2pub, &e2priv), CKR_OK);
    for (int round = 0; round < 2; round++) {
        CK_OBJECT_HANDLE kp = round ? epriv : e2priv, kv = round ? epub : e2pub,
                         other = round ? e2pub : epub;
        EXPECT(f->C_SignInit(s, &m_ecdsa, kp), CKR_OK);
        sl = sizeof(sig);
        EXPECT(f->C_Sign(s, data, 20, sig, &sl), CKR_OK);
        EXPECT(f->C_VerifyInit(s, &m_ecdsa, kv), CKR_OK);
        EXPECT(f->C_Verify(s, data, 20, sig, sl), CKR_OK);
        EXPECT(f->C_VerifyInit(s, &m_ecdsa, other), CKR_OK);
        EXPECT(f->C_Verify(s, data, 20, sig, sl), CKR_SIGNATURE_INVALID);
    }
    EXPECT(f->C_SignInit(s, &m_ecdsa, e2priv), CKR_OK);
    sl = sizeof(sig);
    EXPECT(f->C_Sign(s, data, 20, sig, &sl), CKR_OK);
    EXPECT(f->C_DestroyObject(s, e2priv), CKR_OK);
    EXPECT(f->C_DestroyObject(s, e2pub), CKR_OK);
    EXPECT(f->C_SignInit(s, &m_ecdsa, e2priv), CKR_KEY_HANDLE_INVALID);
    CK_MECHANISM m_dec = {CKM_RSA_PKCS, NULL, 0};
    CK_ULONG ol = sizeof(buf);
    EXPECT(f->C_DecryptInit(s, &m_dec, priv), CKR_OK);
    EXPECT(f->C_Decrypt(s, data, 20, buf, &ol), CKR_ENCRYPTED_DATA_LEN_RANGE);
    EXPECT(f->C_DecryptInit(s, &m_dec, epriv), CKR_KEY_TYPE_INCONSISTENT);

    /* ---- ECDH (issue 17: advertised, but C_DeriveKey was CKR_FUNCTION_NOT_SUPPORTED) ---- */
    EXPECT(f->C_GetMechanismInfo(slot, CKM_ECDH1_DERIVE, &mi), CKR_OK);
    TRUE_OR_FAIL(mi.flags & CKF_DERIVE);
    {
        CK_OBJECT_HANDLE epub2, epriv2, k1, k2;
        EXPECT(f->C_GenerateKeyPair(s, &mec, g_p256, 1, NULL, 0, &epub2, &epriv2), CKR_OK);
        unsigned char pt1[100], pt2[100], v1[64], v2[64];
        CK_ATTRIBUTE q1 = {CKA_EC_POINT, pt1, sizeof(pt1)}, q2 = {CKA_EC_POINT, pt2, sizeof(pt2)};
        EXPECT(f->C_GetAttributeValue(s, epub, &q1, 1), CKR_OK);
        EXPECT(f->C_GetAttributeValue(s, epub2, &q2, 1), CKR_OK);
        CK_OBJECT_CLASS csec = CKO_SECRET_KEY;
        CK_KEY_TYPE kgen = CKK_GENERIC_SECRET;
        CK_ULONG vlen = 32;
        CK_ATTRIBUTE dt[] = {{CKA_CLASS, &csec, sizeof(csec)},
                             {CKA_KEY_TYPE, &kgen, sizeof(kgen)},
                             {CKA_TOKEN, &no, 1},
                             {CKA_SENSITIVE, &no, 1},
                             {CKA_EXTRACTABLE, &yes, 1},
                             {CKA_VALUE_LEN, &vlen, sizeof(vlen)}};
        /* the peer point DER-wrapped (as CKA_EC_POINT gives it) and raw */
        CK_ECDH1_DERIVE_PARAMS d1 = {CKD_NULL, 0, NULL, q2.ulValueLen, pt2};
        CK_ECDH1_DERIVE_PARAMS d2 = {CKD_NULL, 0, NULL, q1.ulValueLen - 2, pt1 + 2};
        CK_MECHANISM md1 = {CKM_ECDH1_DERIVE, &d1, sizeof(d1)},
                     md2 = {CKM_ECDH1_DERIVE, &d2, sizeof(d2)};
        EXPECT(f->C_DeriveKey(s, &md1, epriv, dt, 6, &k1), CKR_OK);
        EXPECT(f->C_DeriveKey(s, &md2, epriv2, dt, 6, &k2), CKR_OK);
        CK_ATTRIBUTE a1 = {CKA_VALUE, v1, sizeof(v1)}, a2 = {CKA_VALUE, v2, sizeof(v2)};
        EXPECT(f->C_GetAttributeValue(s, k1, &a1, 1), CKR_OK);
        EXPECT(f->C_GetAttributeValue(s, k2, &a2, 1), CKR_OK);
        TRUE_OR_FAIL(a1.ulValueLen == 32 && a2.ulValueLen == 32 && memcmp(v1, v2, 32) == 0);
        CK_BBOOL tok = 1;
        CK_ATTRIBUTE at = {CKA_TOKEN, &tok, 1};
        EXPECT(f->C_GetAttributeValue(s, k1, &at, 1), CKR_OK);
        TRUE_OR_FAIL(tok == CK_FALSE);
        /* sensitive per template */
        CK_ATTRIBUTE dts[] = {dt[0], dt[1], {CKA_SENSITIVE, &yes, 1}};
        CK_OBJECT_HANDLE k3;
        EXPECT(f->C_DeriveKey(s, &md1, epriv, dts, 3, &k3), CKR_OK);
        a1.ulValueLen = sizeof(v1);
        EXPECT(f->C_GetAttributeValue(s, k3, &a1, 1), CKR_ATTRIBUTE_SENSITIVE);
        /* what this token cannot do is refused, not done otherwise */
        CK_ATTRIBUTE dtt[] = {dt[0], {CKA_TOKEN, &yes, 1}};
        EXPECT(f->C_DeriveKey(s, &md1, epriv, dtt, 2, &k3), CKR_TEMPLATE_INCONSISTENT);
        CK_ECDH1_DERIVE_PARAMS dk = {CKD_SHA256_KDF, 0, NULL, q2.ulValueLen, pt2};
        CK_MECHANISM mdk = {CKM_ECDH1_DERIVE, &dk, sizeof(dk)};
        EXPECT(f->C_DeriveKey(s, &mdk, epriv, dt, 6, &k3), CKR_MECHANISM_PARAM_INVALID);
        pt2[q2.ulValueLen - 1] ^= 1; /* off the curve */
        EXPECT(f->C_DeriveKey(s, &md1, epriv, dt, 6, &k3), CKR_MECHANISM_PARAM_INVALID);
        EXPECT(f->C_DeriveKey(s, &md1, priv, dt, 6, &k3), CKR_KEY_TYPE_INCONSISTENT);
        EXPECT(f->C_DestroyObject(s, k1), CKR_OK);
        EXPECT(f->C_DestroyObject(s, k2), CKR_OK);
        EXPECT(f->C_DestroyObject(s, epriv2), CKR_OK);
        EXPECT(f->C_DestroyObject(s, epub2), CKR_OK);
    }

    /* ---- CKA_ALLOWED_MECHANISMS (issue 17: keyward.so sends it for RSA-PSS keys, which the
     * module refused with CKR_ATTRIBUTE_TYPE_INVALID): kept, read back, enforced ---- */
    CK_OBJECT_HANDLE pss_pub = 0, pss_priv = 0;
    {
        CK_MECHANISM_TYPE pss_only[] = {CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS},
                          ver_only[] = {CKM_SHA256_RSA_PKCS_PSS}, ecdsa_only[] = {CKM_ECDSA},
                          many[33] = {0}, got[40];
        CK_ULONG b1024 = 1024;
        CK_ATTRIBUTE am_pt[] = {{CKA_MODULUS_BITS, &b1024, sizeof(b1024)},
                                {CKA_ALLOWED_MECHANISMS, ver_only, sizeof(ver_only)}};
        CK_ATTRIBUTE am_vt[] = {{CKA_LABEL, "api-pss", 7},
                                {CKA_ALLOWED_MECHANISMS, pss_only, sizeof(pss_only)}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, am_pt, 2, am_vt, 2, &pss_pub, &pss_priv), CKR_OK);
        CK_ATTRIBUTE qm = {CKA_ALLOWED_MECHANISMS, got, sizeof(got)};
        EXPECT(f->C_GetAttributeValue(s, pss_priv, &qm, 1), CKR_OK);
        TRUE_OR_FAIL(qm.ulValueLen == sizeof(pss_only) &&
                     memcmp(got, pss_only, sizeof(pss_only)) == 0);
        qm.ulValueLen = sizeof(got);
        EXPECT(f->C_GetAttributeValue(s, pss_pub, &qm, 1), CKR_OK);
        TRUE_OR_FAIL(qm.ulValueLen == sizeof(ver_only) && got[0] == CKM_SHA256_RSA_PKCS_PSS);
        qm.ulValueLen = sizeof(got);
        EXPECT(f->C_GetAttributeValue(s, priv, &qm, 1), CKR_OK); /* no list: empty */
        TRUE_OR_FAIL(qm.ulValueLen == 0);
        /* a mechanism the key does not allow: CKR_MECHANISM_INVALID (SoftHSM2 says the same) */
        CK_MECHANISM m_pss_raw = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
        EXPECT(f->C_SignInit(s, &m_pkcs, pss_priv), CKR_MECHANISM_INVALID);
        EXPECT(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_X_509, NULL, 0}, pss_priv),
               CKR_MECHANISM_INVALID);
        EXPECT(f->C_DecryptInit(s, &m_dec, pss_priv), CKR_MECHANISM_INVALID);
        EXPECT(f->C_SignInit(s, &m_pss_raw, pss_priv), CKR_OK);
        unsigned char h[32] = {1}, psig[128];
        CK_ULONG pl = sizeof(psig);
        EXPECT(f->C_Sign(s, h, sizeof(h), psig, &pl), CKR_OK);
        EXPECT(f->C_VerifyInit(s, &m_pss_raw, pss_pub), CKR_MECHANISM_INVALID);
        EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss), pss_priv, pss_pub),
               CKR_OK);
        /* found by its list */
        CK_OBJECT_HANDLE fo[4];
        CK_ULONG nfo = 0;
        CK_ATTRIBUTE fm = {CKA_ALLOWED_MECHANISMS, pss_only, sizeof(pss_only)};
        EXPECT(f->C_FindObjectsInit(s, &fm, 1), CKR_OK);
        EXPECT(f->C_FindObjects(s, fo, 4, &nfo), CKR_OK);
        EXPECT(f->C_FindObjectsFinal(s), CKR_OK);
        TRUE_OR_FAIL(nfo == 1 && fo[0] == pss_priv);
        /* not a whole number of mechanisms, too many, on a certificate, changed later */
        CK_ATTRIBUTE bad_len[] = {{CKA_ALLOWED_MECHANISMS, pss_only, 3}};
        CK_OBJECT_HANDLE p2, v2;
        EXPECT(f->C_GenerateKeyPair(s, &mg, am_pt, 1, bad_len, 1, &p2, &v2),
               CKR_ATTRIBUTE_VALUE_INVALID);
        CK_ATTRIBUTE too_many[] = {{CKA_ALLOWED_MECHANISMS, many, sizeof(many)}};
        EXPECT(f->C_GenerateKeyPair(s, &mg, am_pt, 1, too_many, 1, &p2, &v2),
               CKR_ATTRIBUTE_VALUE_INVALID);
        CK_ATTRIBUTE ct[] = {{CKA_CLASS, &ccert, sizeof(ccert)},
                             {CKA_CERTIFICATE_TYPE, &(CK_ULONG){CKC_X_509}, sizeof(CK_ULONG)},
                             {CKA_VALUE, (void *)cert_der, sizeof(cert_der)},
                             {CKA_ALLOWED_MECHANISMS, pss_only, sizeof(pss_only)}};
        EXPECT(f->C_CreateObject(s, ct, 4, &o), CKR_ATTRIBUTE_TYPE_INVALID);
        EXPECT(f->C_SetAttributeValue(s, pss_priv, &fm, 1), CKR_ATTRIBUTE_READ_ONLY);
        /* an imported public key keeps its list too */
        CK_ATTRIBUTE t_pub_am[] = {t_pub[0],
                                   t_pub[1],
                                   t_pub[2],
                                   t_pub[3],
                                   {CKA_ALLOWED_MECHANISMS, ver_only, sizeof(ver_only)}};
        EXPECT(f->C_CreateObject(s, t_pub_am, 5, &o), CKR_OK);
        qm.ulValueLen = sizeof(got);
        EXPECT(f->C_GetAttributeValue(s, o, &qm, 1), CKR_OK);
        TRUE_OR_FAIL(qm.ulValueLen == sizeof(ver_only));
        EXPECT(f->C_DestroyObject(s, o), CKR_OK);
        /* ECDH on an EC key that allows ECDSA only */
        CK_ATTRIBUTE ec_vt[] = {{CKA_ALLOWED_MECHANISMS, ecdsa_only, sizeof(ecdsa_only)}};
        EXPECT(f->C_GenerateKeyPair(s, &mec, g_p256, 1, ec_vt, 1, &p2, &v2), CKR_OK);
        unsigned char ept[100];
        CK_ATTRIBUTE qp = {CKA_EC_POINT, ept, sizeof(ept)};
        EXPECT(f->C_GetAttributeValue(s, epub, &qp, 1), CKR_OK);
        CK_ECDH1_DERIVE_PARAMS dp = {CKD_NULL, 0, NULL, qp.ulValueLen, ept};
        CK_MECHANISM mdh = {CKM_ECDH1_DERIVE, &dp, sizeof(dp)};
        CK_OBJECT_CLASS csec = CKO_SECRET_KEY;
        CK_ATTRIBUTE dt[] = {{CKA_CLASS, &csec, sizeof(csec)}};
        CK_OBJECT_HANDLE k;
        EXPECT(f->C_DeriveKey(s, &mdh, v2, dt, 1, &k), CKR_MECHANISM_INVALID);
        EXPECT(sign_verify(s, CKM_ECDSA, NULL, 0, v2, p2), CKR_OK);
        EXPECT(sign_verify(s, CKM_ECDSA_SHA256, NULL, 0, v2, p2), CKR_MECHANISM_INVALID);
        EXPECT(f->C_DestroyObject(s, v2), CKR_OK);
        EXPECT(f->C_DestroyObject(s, p2), CKR_OK);
    }

    /* ---- unsupported functions ---- */
    EXPECT(f->C_EncryptInit(s, &m_dec, pub), CKR_FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_DigestInit(s, &(CK_MECHANISM){CKM_SHA256, NULL, 0}), CKR_FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
    EXPECT(f->C_MessageSignInit(s, &m_pkcs, priv), CKR_FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_WrapKey(s, &m_dec, pub, priv, buf, &ol), CKR_FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_Login(s, 77, NULL, 0), CKR_USER_TYPE_INVALID);
    EXPECT(f->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
    EXPECT(f->C_SeedRandom(s, buf, 4), CKR_RANDOM_SEED_NOT_SUPPORTED);
    EXPECT(f->C_GenerateRandom(s, buf, 64), CKR_OK);

    /* ---- threads: each with its own session, all signing at once ---- */
    pthread_t th[8];
    thr_arg ta[8];
    for (int i = 0; i < 8; i++) {
        ta[i] = (thr_arg){slot, priv, pub, 0};
        pthread_create(&th[i], NULL, thread_main, &ta[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        TRUE_OR_FAIL(ta[i].errors == 0);
    }

    /* ---- fork: the child keeps using inherited sessions and handles (fork-safe interface),
     * and can also start over with C_Finalize/C_Initialize. ---- */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = sign_verify(s, CKM_SHA256_RSA_PKCS, NULL, 0, priv, pub) != CKR_OK;
        bad |= f->C_Finalize(NULL) != CKR_OK || f->C_Initialize(NULL) != CKR_OK;
        CK_SESSION_HANDLE cs;
        bad |= f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &cs) != CKR_OK;
        bad |= sign_verify(cs, CKM_SHA256_RSA_PKCS, NULL, 0, priv, pub) != CKR_OK;
        _exit(bad);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    TRUE_OR_FAIL(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS, NULL, 0, priv, pub), CKR_OK);

    /* ---- handles survive re-initialisation; destroy ---- */
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    EXPECT(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    EXPECT(f->C_Initialize(NULL), CKR_OK);
    EXPECT(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS, NULL, 0, priv, pub), CKR_OK);
    /* the allowed mechanisms are kept in the keyring, not only in this process's cache */
    EXPECT(f->C_SignInit(s, &m_pkcs, pss_priv), CKR_MECHANISM_INVALID);
    EXPECT(sign_verify(s, CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss), pss_priv, pss_pub), CKR_OK);
    EXPECT(f->C_DestroyObject(s, pss_priv), CKR_OK);
    EXPECT(f->C_DestroyObject(s, pss_pub), CKR_OK);
    EXPECT(f->C_DestroyObject(s, priv), CKR_OK);
    EXPECT(f->C_DestroyObject(s, priv), CKR_OBJECT_HANDLE_INVALID);
    EXPECT(f->C_SignInit(s, &m_pkcs, priv), CKR_KEY_HANDLE_INVALID);
    EXPECT(f->C_DestroyObject(s, pub), CKR_OK);
    EXPECT(f->C_DestroyObject(s, epriv), CKR_OK);
    EXPECT(f->C_DestroyObject(s, epub), CKR_OK);
    EXPECT(f->C_CloseAllSessions(slot), CKR_OK);
    EXPECT(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    printf("%d failure(s)\n", failures);
    return failures != 0;
}
