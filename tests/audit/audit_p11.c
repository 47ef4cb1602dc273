/* SPDX-License-Identifier: Apache-2.0 */
/* Non-extraction audit at the PKCS#11 level: for every private key on a token (made by keyward),
 * try each way a caller holding the PIN could get the key out, straight through the module.
 *   audit-p11 MODULE TOKEN_LABEL PIN_FILE      (PIN_FILE "-": the token needs no login)
 * Each attempt must be refused. A positive control (an extractable session key that CAN be
 * wrapped) shows the wrap attempt is real. Prints one line per check; exit 1 on any failure. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *p11;
static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL: " __VA_ARGS__);                                                          \
        } else {                                                                                   \
            printf("ok: " __VA_ARGS__);                                                            \
        }                                                                                          \
        putchar('\n');                                                                             \
    } while (0)

static CK_SLOT_ID find_slot(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    if (p11->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char l[33];
        if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(l, ti.label, 32);
        l[32] = '\0';
        for (int j = 31; j >= 0 && l[j] == ' '; j--)
            l[j] = '\0';
        if (strcmp(l, label) == 0)
            return slots[i];
    }
    return (CK_SLOT_ID)-1;
}

static CK_BBOOL get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL v = 0xff;
    CK_ATTRIBUTE a = {t, &v, sizeof(v)};
    if (p11->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return 0xff;
    return v;
}

static CK_ULONG get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
    CK_ULONG v = (CK_ULONG)-1;
    CK_ATTRIBUTE a = {t, &v, sizeof(v)};
    (void)p11->C_GetAttributeValue(s, o, &a, 1);
    return v;
}

/* An AES key (session object) to wrap with. */
static CK_OBJECT_HANDLE wrapping_key(CK_SESSION_HANDLE s)
{
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ULONG len = 32;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_WRAP, &t, sizeof(t)}, {CKA_TOKEN, &f, sizeof(f)}};
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    if (p11->C_GenerateKey(s, &m, tmpl, 3, &k) != CKR_OK)
        return CK_INVALID_HANDLE;
    return k;
}

static CK_RV try_wrap(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE key)
{
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    static unsigned char out[16384];
    CK_ULONG len = sizeof(out);
    CK_RV rv = p11->C_WrapKey(s, &m, wk, key, out, &len);
    memset(out, 0, sizeof(out));
    return rv;
}

static void audit_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, CK_OBJECT_HANDLE wk)
{
    static const struct {
        CK_ATTRIBUTE_TYPE t;
        const char *name;
    } secret[] = {
        {CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT"},
        {CKA_PRIME_1, "CKA_PRIME_1"},
        {CKA_PRIME_2, "CKA_PRIME_2"},
        {CKA_EXPONENT_1, "CKA_EXPONENT_1"},
        {CKA_EXPONENT_2, "CKA_EXPONENT_2"},
        {CKA_COEFFICIENT, "CKA_COEFFICIENT"},
        {CKA_VALUE, "CKA_VALUE"},
    };
    CK_ULONG kt = get_ulong(s, k, CKA_KEY_TYPE);
    char label[128] = "";
    CK_ATTRIBUTE la = {CKA_LABEL, label, sizeof(label) - 1};
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;

    if (p11->C_GetAttributeValue(s, k, &la, 1) == CKR_OK && la.ulValueLen < sizeof(label))
        label[la.ulValueLen] = '\0';
    printf("# private key \"%s\" (CKK 0x%lx)\n", label, (unsigned long)kt);

    CHECK(get_bool(s, k, CKA_SENSITIVE) == CK_TRUE, "%s: CKA_SENSITIVE is TRUE", label);
    CHECK(get_bool(s, k, CKA_EXTRACTABLE) == CK_FALSE, "%s: CKA_EXTRACTABLE is FALSE", label);
    CHECK(get_bool(s, k, CKA_ALWAYS_SENSITIVE) == CK_TRUE, "%s: CKA_ALWAYS_SENSITIVE", label);
    CHECK(get_bool(s, k, CKA_NEVER_EXTRACTABLE) == CK_TRUE, "%s: CKA_NEVER_EXTRACTABLE", label);
    CHECK(get_bool(s, k, CKA_PRIVATE) == CK_TRUE, "%s: CKA_PRIVATE is TRUE", label);

    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        /* Only the attributes the key type has; CKA_VALUE belongs to EC and EdDSA keys. */
        int rsa_attr = secret[i].t != CKA_VALUE;
        if ((kt == CKK_RSA) != rsa_attr)
            continue;
        unsigned char buf[4096];
        CK_ATTRIBUTE a = {secret[i].t, NULL, 0};
        CK_RV rv = p11->C_GetAttributeValue(s, k, &a, 1);
        CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && a.ulValueLen == CK_UNAVAILABLE_INFORMATION,
              "%s: size of %s refused (rv 0x%lx)", label, secret[i].name, (unsigned long)rv);
        a.pValue = buf;
        a.ulValueLen = sizeof(buf);
        rv = p11->C_GetAttributeValue(s, k, &a, 1);
        CHECK(rv == CKR_ATTRIBUTE_SENSITIVE && a.ulValueLen == CK_UNAVAILABLE_INFORMATION,
              "%s: value of %s refused (rv 0x%lx)", label, secret[i].name, (unsigned long)rv);
        memset(buf, 0, sizeof(buf));
    }

    CK_RV rv = try_wrap(s, wk, k);
    CHECK(rv != CKR_OK, "%s: C_WrapKey refused (rv 0x%lx)", label, (unsigned long)rv);

    {
        CK_ATTRIBUTE a = {CKA_EXTRACTABLE, &t, sizeof(t)};
        rv = p11->C_SetAttributeValue(s, k, &a, 1);
        CHECK(rv != CKR_OK && get_bool(s, k, CKA_EXTRACTABLE) == CK_FALSE,
              "%s: C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) refused (rv 0x%lx)", label,
              (unsigned long)rv);
        CK_ATTRIBUTE b = {CKA_SENSITIVE, &f, sizeof(f)};
        rv = p11->C_SetAttributeValue(s, k, &b, 1);
        CHECK(rv != CKR_OK && get_bool(s, k, CKA_SENSITIVE) == CK_TRUE,
              "%s: C_SetAttributeValue(CKA_SENSITIVE=FALSE) refused (rv 0x%lx)", label,
              (unsigned long)rv);
    }
    {
        CK_ATTRIBUTE tmpl[] = {{CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_TOKEN, &f, sizeof(f)}};
        CK_OBJECT_HANDLE c = CK_INVALID_HANDLE;
        rv = p11->C_CopyObject(s, k, tmpl, 2, &c);
        int leaked = 0;
        if (rv == CKR_OK) {
            /* A copy was made: it must still not be extractable, and must not wrap. */
            leaked = get_bool(s, c, CKA_EXTRACTABLE) != CK_FALSE || try_wrap(s, wk, c) == CKR_OK;
            p11->C_DestroyObject(s, c);
        }
        CHECK(rv != CKR_OK && !leaked,
              "%s: C_CopyObject with CKA_EXTRACTABLE=TRUE refused (rv 0x%lx)", label,
              (unsigned long)rv);
        CK_ATTRIBUTE tmpl2[] = {{CKA_SENSITIVE, &f, sizeof(f)}, {CKA_TOKEN, &f, sizeof(f)}};
        c = CK_INVALID_HANDLE;
        rv = p11->C_CopyObject(s, k, tmpl2, 2, &c);
        leaked = 0;
        if (rv == CKR_OK) {
            unsigned char buf[4096];
            CK_ATTRIBUTE a = {kt == CKK_RSA ? CKA_PRIVATE_EXPONENT : CKA_VALUE, buf, sizeof(buf)};
            leaked = p11->C_GetAttributeValue(s, c, &a, 1) == CKR_OK;
            memset(buf, 0, sizeof(buf));
            p11->C_DestroyObject(s, c);
        }
        CHECK(rv != CKR_OK && !leaked,
              "%s: C_CopyObject with CKA_SENSITIVE=FALSE refused (rv 0x%lx)", label,
              (unsigned long)rv);
    }
}

/* The control: an extractable RSA session key wraps, so a refused wrap above means something. */
static void control(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE wk)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE pub[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                          {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                          {CKA_TOKEN, &f, sizeof(f)}};
    CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &f, sizeof(f)},
                          {CKA_SENSITIVE, &t, sizeof(t)},
                          {CKA_EXTRACTABLE, &t, sizeof(t)}};
    CK_OBJECT_HANDLE hp, hs;
    CK_RV rv = p11->C_GenerateKeyPair(s, &m, pub, 3, prv, 3, &hp, &hs);
    CHECK(rv == CKR_OK, "control: extractable session key pair generated (rv 0x%lx)",
          (unsigned long)rv);
    if (rv != CKR_OK)
        return;
    rv = try_wrap(s, wk, hs);
    CHECK(rv == CKR_OK, "control: an extractable key DOES wrap (rv 0x%lx)", (unsigned long)rv);
    p11->C_DestroyObject(s, hs);
    p11->C_DestroyObject(s, hp);
}

int main(int argc, char **argv)
{
    CK_C_GetFunctionList gfl;
    void *h;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    char pin[256];
    FILE *pf;
    size_t pinlen;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE find = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE keys[64], wk;
    CK_ULONG nkeys = 0;

    if (argc != 4) {
        fprintf(stderr, "usage: %s MODULE TOKEN_LABEL PIN_FILE\n", argv[0]);
        return 2;
    }
    h = dlopen(argv[1], RTLD_NOW);
    gfl = h ? (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList") : NULL;
    if (gfl == NULL || gfl(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    pin[0] = '\0';
    if (strcmp(argv[3], "-") != 0) {
        pf = fopen(argv[3], "r");
        if (pf == NULL || fgets(pin, sizeof(pin), pf) == NULL) {
            fprintf(stderr, "cannot read the PIN file\n");
            return 1;
        }
        fclose(pf);
    }
    pinlen = strcspn(pin, "\r\n");
    slot = find_slot(argv[2]);
    if (slot == (CK_SLOT_ID)-1 ||
        p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK ||
        (strcmp(argv[3], "-") != 0 &&
         p11->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, pinlen) != CKR_OK)) {
        fprintf(stderr, "cannot open a session on token %s (or log in)\n", argv[2]);
        return 1;
    }
    memset(pin, 0, sizeof(pin));
    if (p11->C_FindObjectsInit(s, &find, 1) != CKR_OK ||
        p11->C_FindObjects(s, keys, 64, &nkeys) != CKR_OK || p11->C_FindObjectsFinal(s) != CKR_OK) {
        fprintf(stderr, "cannot list private keys\n");
        return 1;
    }
    CHECK(nkeys > 0, "token %s has private keys to audit (%lu)", argv[2], (unsigned long)nkeys);
    wk = wrapping_key(s);
    /* A token that cannot make an AES key (the keyring token) is still asked to wrap, with an
     * invalid wrapping key; then no control is possible, and none is needed when it has no
     * C_WrapKey at all. Where the AES key exists, the control must show wrapping works. */
    if (wk != CK_INVALID_HANDLE)
        control(s, wk);
    else
        printf("# token makes no AES wrapping key: wrap attempts use an invalid handle\n");
    for (CK_ULONG i = 0; i < nkeys; i++)
        audit_key(s, keys[i], wk);
    if (strcmp(argv[3], "-") != 0)
        p11->C_Logout(s);
    p11->C_CloseSession(s);
    p11->C_Finalize(NULL);
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
