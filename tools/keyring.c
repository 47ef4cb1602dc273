/* SPDX-License-Identifier: Apache-2.0 */
/* keyward keyring: load keys into the kernel keyring token and look at them. It talks to the
 * token only through keyward-pkcs11.so (so there is one keyctl caller: the module); the module
 * is found at KEYWARD_PKCS11_MODULE or where it was installed (KWK_MODULE_PATH).
 *
 *   keyward keyring import KEYFILE --label NAME [--id HEX] [--cert CERT] [--token LABEL] [--shred]
 *   keyward keyring list [--json] [--token LABEL]
 *   keyward keyring remove LABEL [--token LABEL]
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#if __has_include(<p11-kit/pkcs11.h>)
#include <p11-kit/pkcs11.h>
#else
#include <p11-kit-1/p11-kit/pkcs11.h> /* built without p11-kit's include path */
#endif
#include "../pkcs11/kwk_vendor.h"
#include "keyring.h"
#include "kw_secmem.h"
#ifdef KWT_HAVE_KEYRING
#include "kwt.h"
#endif

/* Where the module was installed (set by the build); then the usual p11-kit module dirs. */
static const char *const module_paths[] = {
#ifdef KWK_MODULE_PATH
    KWK_MODULE_PATH,
#endif
    "/usr/local/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so",
    "/usr/local/lib/pkcs11/keyward-pkcs11.so",
    "/usr/lib/pkcs11/keyward-pkcs11.so",
};

static CK_FUNCTION_LIST *p11;
static void *dl;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
#ifdef KWT_HAVE_KEYRING
    /* in keyward: through kwt_err, so --json's error.message has the same text as stderr */
    return kwt_err(KWT_FAIL, "keyring: %s", msg);
#else
    fprintf(stderr, "keyward: keyring: %s\n", msg);
    return 1;
#endif
}

static const char *rv_text(CK_RV rv)
{
    switch (rv) {
    case CKR_TOKEN_NOT_PRESENT:
        return "the token's keyring is not reachable";
    case CKR_DEVICE_MEMORY:
        return "keyring quota exceeded (see /proc/sys/kernel/keys/maxbytes)";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "permission denied by the keyring: this process does not possess it; link the "
               "user keyring into the session keyring (keyctl link @u @s) or use a session: token";
    case CKR_ATTRIBUTE_VALUE_INVALID:
        return "the token refused the key or certificate";
    case CKR_KEY_SIZE_RANGE:
        return "key size not supported";
    case CKR_CURVE_NOT_SUPPORTED:
        return "curve not supported";
    case CKR_USER_NOT_LOGGED_IN:
        return "the token needs a PIN";
    default:
        return "PKCS#11 error";
    }
}

/* Load the module and open a R/W session on the token with the given label (or the first). */
static int open_token(const char *label, CK_SESSION_HANDLE *s, CK_SLOT_ID *slot_out)
{
    const char *path = getenv("KEYWARD_PKCS11_MODULE");
    CK_C_GetFunctionList gfl;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    CK_RV rv;
    if (path != NULL && *path != '\0') {
        dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    } else {
        for (size_t i = 0; dl == NULL && i < sizeof(module_paths) / sizeof(module_paths[0]); i++)
            dl = dlopen(path = module_paths[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (dl == NULL)
        return fail("cannot load %s: %s", path, dlerror());
    gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&p11) != CKR_OK)
        return fail("%s is not a PKCS#11 module", path);
    if ((rv = p11->C_Initialize(NULL)) != CKR_OK)
        return fail("cannot initialise the keyring token (0x%lx): check the configuration",
                    (unsigned long)rv);
    if ((rv = p11->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK || n == 0)
        return fail("no keyring token available");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char l[33];
        if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(l, ti.label, 32);
        l[32] = '\0';
        for (int j = 31; j >= 0 && l[j] == ' '; j--)
            l[j] = '\0';
        if (label != NULL && strcmp(l, label) != 0)
            continue;
        if ((rv = p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                     s)) != CKR_OK)
            return fail("cannot open a session on token '%s': %s", l, rv_text(rv));
        *slot_out = slots[i];
        return 0;
    }
    return fail("no keyring token labelled '%s'", label ? label : "?");
}

static void close_token(void)
{
    if (p11)
        p11->C_Finalize(NULL);
    if (dl)
        dlclose(dl);
    p11 = NULL;
    dl = NULL;
}

static int parse_hex(const char *s, unsigned char *out, size_t cap, size_t *len)
{
    size_t l = strlen(s);
    if (l % 2 || l / 2 > cap)
        return 0;
    for (size_t i = 0; i < l / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", s[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", s[2 * i + 1]))
            return 0;
        out[i] = (unsigned char)v;
    }
    *len = l / 2;
    return 1;
}

static EVP_PKEY *read_key(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    EVP_PKEY *pk = NULL;
    if (b == NULL)
        return NULL;
    /* PEM (plain or encrypted: libcrypto prompts for the passphrase without echo), else DER. */
    pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    if (pk == NULL) {
        ERR_clear_error();
        BIO_reset(b);
        pk = d2i_PrivateKey_bio(b, NULL);
    }
    if (pk == NULL) {
        ERR_clear_error();
        BIO_reset(b);
        pk = d2i_PKCS8PrivateKey_bio(b, NULL, NULL, NULL);
    }
    BIO_free(b);
    return pk;
}

static X509 *read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    X509 *x = NULL;
    if (b == NULL)
        return NULL;
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (x == NULL) {
        ERR_clear_error();
        BIO_reset(b);
        x = d2i_X509_bio(b, NULL);
    }
    BIO_free(b);
    return x;
}

/* Overwrite, sync and remove the key file once it is safely in the kernel. */
static int shred_file(const char *path)
{
    struct stat st;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return fail("--shred: cannot open %s: %s", path, strerror(errno));
    }
    unsigned char zero[4096] = {0};
    for (off_t done = 0; done < st.st_size;) {
        size_t n =
            (size_t)(st.st_size - done) < sizeof(zero) ? (size_t)(st.st_size - done) : sizeof(zero);
        ssize_t w = write(fd, zero, n);
        if (w <= 0) {
            close(fd);
            return fail("--shred: writing %s: %s", path, strerror(errno));
        }
        done += w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || unlink(path) != 0)
        return fail("--shred: %s: %s", path, strerror(errno));
    return 0;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static const char *key_type_name(EVP_PKEY *pk)
{
    return EVP_PKEY_is_a(pk, "RSA")       ? "RSA"
           : EVP_PKEY_is_a(pk, "EC")      ? "EC"
           : EVP_PKEY_is_a(pk, "ED25519") ? "Ed25519"
           : EVP_PKEY_is_a(pk, "ED448")   ? "Ed448"
                                          : "?";
}

static int cmd_import(int argc, char **argv, int json)
{
    const char *file = NULL, *label = NULL, *idhex = NULL, *certfile = NULL, *token = NULL;
    int shred = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--label")   ? &label
                           : !strcmp(a, "--id")    ? &idhex
                           : !strcmp(a, "--cert")  ? &certfile
                           : !strcmp(a, "--token") ? &token
                                                   : NULL;
        if (dst) {
            if (i + 1 >= argc)
                return fail("%s needs a value", a), 2;
            *dst = argv[++i];
        } else if (!strcmp(a, "--shred")) {
            shred = 1;
        } else if (a[0] == '-') {
            return fail("unknown option %s", a), 2;
        } else if (file == NULL) {
            file = a;
        } else {
            return fail("one key file only (got %s and %s)", file, a), 2;
        }
    }
    if (file == NULL || label == NULL)
        return fail("usage: keyward keyring import KEYFILE --label NAME [--id HEX] [--cert CERT] "
                    "[--token LABEL] [--shred]"),
               2;
    unsigned char id[128];
    size_t id_len = 0;
    if (idhex && !parse_hex(idhex, id, sizeof(id), &id_len))
        return fail("--id must be hex bytes (e.g. 01a2), at most 128"), 2;
    if (strlen(label) > 255)
        return fail("--label is longer than 255 bytes"), 2;

    EVP_PKEY *pk = read_key(file);
    if (pk == NULL)
        return fail("%s: not a private key (PEM, DER or PKCS#8), or wrong passphrase", file);
    X509 *cert = NULL;
    if (certfile) {
        cert = read_cert(certfile);
        if (cert == NULL) {
            EVP_PKEY_free(pk);
            return fail("%s: not an X.509 certificate", certfile);
        }
        if (EVP_PKEY_eq(X509_get0_pubkey(cert), pk) != 1) {
            EVP_PKEY_free(pk);
            X509_free(cert);
            return fail("%s does not belong to the key in %s", certfile, file);
        }
    }
    /* PKCS#8 DER in locked memory, wiped after the call. */
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : -1;
    unsigned char *der = len > 0 ? kw_secure_alloc((size_t)len) : NULL, *p = der;
    int rc = 1;
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot;
    if (der == NULL || i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != len) {
        fail("cannot encode the key");
        goto out;
    }
    if (open_token(token, &s, &slot) != 0)
        goto out;
    CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, ccert = CKO_CERTIFICATE;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)},
                        {CKA_TOKEN, &yes, sizeof(yes)},
                        {CKA_LABEL, (void *)label, strlen(label)},
                        {CKA_ID, id, id_len},
                        {CKA_KEYWARD_PKCS8, der, (CK_ULONG)len}};
    CK_OBJECT_HANDLE h;
    CK_RV rv = p11->C_CreateObject(s, t, 5, &h);
    if (rv != CKR_OK) {
        fail("loading %s into the keyring failed: %s (0x%lx)", file, rv_text(rv),
             (unsigned long)rv);
        goto out;
    }
    char mode[16] = "?";
    CK_ULONG serial = 0;
    CK_ATTRIBUTE q[] = {{CKA_KEYWARD_MODE, mode, sizeof(mode) - 1},
                        {CKA_KEYWARD_SERIAL, &serial, sizeof(serial)}};
    p11->C_GetAttributeValue(s, h, q, 2);
    mode[q[0].ulValueLen < sizeof(mode) ? q[0].ulValueLen : sizeof(mode) - 1] = '\0';
    if (cert) {
        unsigned char *cd = NULL;
        int cl = i2d_X509(cert, &cd);
        CK_ULONG ctype = CKC_X_509;
        CK_ATTRIBUTE ct[] = {{CKA_CLASS, &ccert, sizeof(ccert)},
                             {CKA_TOKEN, &yes, sizeof(yes)},
                             {CKA_CERTIFICATE_TYPE, &ctype, sizeof(ctype)},
                             {CKA_LABEL, (void *)label, strlen(label)},
                             {CKA_ID, id, id_len},
                             {CKA_VALUE, cd, cl > 0 ? (CK_ULONG)cl : 0}};
        CK_OBJECT_HANDLE ch;
        rv = cl > 0 ? p11->C_CreateObject(s, ct, 6, &ch) : CKR_GENERAL_ERROR;
        OPENSSL_free(cd);
        if (rv != CKR_OK) {
            p11->C_DestroyObject(s, h); /* all or nothing */
            fail("storing the certificate failed: %s (0x%lx)", rv_text(rv), (unsigned long)rv);
            goto out;
        }
    }
    if (!json)
        printf("imported '%s' (%s %d bits) as key %lu: %s mode\n", label, key_type_name(pk),
               EVP_PKEY_get_bits(pk), (unsigned long)serial, mode);
    if (strcmp(mode, "kernel") != 0)
        fprintf(stderr,
                "keyward: keyring: warning: '%s' is in SOFTWARE mode: the private key is "
                "kept in a user key and used in user space, not by the kernel\n",
                label);
    rc = shred ? shred_file(file) : 0;
    /* under --json one document, and only for an import that worked (shred included) */
    if (json && rc == 0) {
        printf("{\"label\": ");
        json_str(label);
        printf(", \"type\": \"%s\", \"bits\": %d, \"serial\": %lu, \"mode\": ", key_type_name(pk),
               EVP_PKEY_get_bits(pk), (unsigned long)serial);
        json_str(mode);
        printf(", \"certificate\": %s}\n", cert ? "true" : "false");
    }
out:
    if (der)
        kw_secure_free(der, (size_t)len);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(pk);
    X509_free(cert);
    close_token();
    return rc;
}

typedef struct {
    char label[256];
    unsigned char id[128];
    CK_ULONG id_len, cls, ktype, serial, bits;
    char mode[16];
} row;

static CK_ULONG ec_bits(const unsigned char *p, CK_ULONG n)
{
    static const struct {
        unsigned char der[10];
        size_t len;
        CK_ULONG bits;
    } c[] = {{{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 10, 256},
             {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 7, 384},
             {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 7, 521},
             {{0x06, 0x03, 0x2b, 0x65, 0x70}, 5, 255},
             {{0x06, 0x03, 0x2b, 0x65, 0x71}, 5, 448}};
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        if (n == c[i].len && !memcmp(p, c[i].der, n))
            return c[i].bits;
    return 0;
}

static int cmd_list(int argc, char **argv, int json)
{
    const char *token = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--token") && i + 1 < argc)
            token = argv[++i];
        else
            return fail("usage: keyward keyring list [--json] [--token LABEL]"), 2;
    }
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot;
    if (open_token(token, &s, &slot) != 0) {
        close_token();
        return 1;
    }
    CK_OBJECT_HANDLE objs[512];
    CK_ULONG n = 0;
    if (p11->C_FindObjectsInit(s, NULL, 0) != CKR_OK ||
        p11->C_FindObjects(s, objs, 512, &n) != CKR_OK) {
        close_token();
        return fail("cannot list the token's objects");
    }
    p11->C_FindObjectsFinal(s);
    if (json)
        printf("[");
    else
        printf("%-24s %-12s %-8s %5s %-9s %s\n", "LABEL", "ID", "TYPE", "BITS", "MODE", "SERIAL");
    int first = 1;
    for (CK_ULONG i = 0; i < n; i++) {
        row r = {0};
        unsigned char buf[1024];
        CK_ATTRIBUTE a[] = {{CKA_CLASS, &r.cls, sizeof(r.cls)},
                            {CKA_LABEL, r.label, sizeof(r.label) - 1},
                            {CKA_KEYWARD_SERIAL, &r.serial, sizeof(r.serial)}};
        if (p11->C_GetAttributeValue(s, objs[i], a, 3) != CKR_OK)
            continue;
        r.label[a[1].ulValueLen] = '\0';
        CK_ATTRIBUTE ida = {CKA_ID, r.id, sizeof(r.id)};
        if (p11->C_GetAttributeValue(s, objs[i], &ida, 1) == CKR_OK)
            r.id_len = ida.ulValueLen;
        const char *type = "cert";
        strcpy(r.mode, "-");
        if (r.cls == CKO_PRIVATE_KEY || r.cls == CKO_PUBLIC_KEY) {
            CK_ATTRIBUTE kt = {CKA_KEY_TYPE, &r.ktype, sizeof(r.ktype)};
            p11->C_GetAttributeValue(s, objs[i], &kt, 1);
            CK_ATTRIBUTE m = {r.ktype == CKK_RSA ? CKA_MODULUS : CKA_EC_PARAMS, buf, sizeof(buf)};
            if (p11->C_GetAttributeValue(s, objs[i], &m, 1) == CKR_OK)
                r.bits = r.ktype == CKK_RSA ? m.ulValueLen * 8 : ec_bits(buf, m.ulValueLen);
            type = r.ktype == CKK_RSA ? "RSA" : r.ktype == CKK_EC ? "EC" : "EdDSA";
            if (r.cls == CKO_PRIVATE_KEY) {
                CK_ATTRIBUTE md = {CKA_KEYWARD_MODE, r.mode, sizeof(r.mode) - 1};
                if (p11->C_GetAttributeValue(s, objs[i], &md, 1) == CKR_OK)
                    r.mode[md.ulValueLen] = '\0';
            }
        }
        const char *what = r.cls == CKO_PRIVATE_KEY  ? "private"
                           : r.cls == CKO_PUBLIC_KEY ? "public"
                                                     : "cert";
        char idhex[257];
        for (CK_ULONG k = 0; k < r.id_len && k < 128; k++)
            snprintf(idhex + 2 * k, 3, "%02x", r.id[k]);
        idhex[2 * (r.id_len < 128 ? r.id_len : 128)] = '\0';
        if (json) {
            printf("%s\n  {\"label\": ", first ? "" : ",");
            json_str(r.label);
            printf(", \"id\": \"%s\", \"object\": \"%s\", \"type\": \"%s\", \"bits\": %lu, "
                   "\"mode\": \"%s\", \"serial\": %lu}",
                   idhex, what, type, (unsigned long)r.bits, r.mode, (unsigned long)r.serial);
        } else if (r.cls == CKO_PRIVATE_KEY || r.cls == CKO_CERTIFICATE) {
            /* The table shows keys (by their private half) and certificates. */
            printf("%-24s %-12s %-8s %5lu %-9s %lu\n", r.label, idhex[0] ? idhex : "-", type,
                   (unsigned long)r.bits, r.mode, (unsigned long)r.serial);
        }
        if (r.cls == CKO_PRIVATE_KEY && strcmp(r.mode, "software") == 0)
            fprintf(stderr,
                    "keyward: keyring: warning: '%s' is in SOFTWARE mode: any process of this user "
                    "that can link the keyring (keyctl link @u @s) can read the private key "
                    "(keyctl pipe); kernel mode (modprobe pkcs8_key_parser, RSA) does not allow "
                    "that\n",
                    r.label);
        first = 0;
    }
    if (json)
        printf("%s]\n", first ? "" : "\n");
    close_token();
    return 0;
}

static int cmd_remove(int argc, char **argv, int json)
{
    const char *label = NULL, *token = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--token") && i + 1 < argc)
            token = argv[++i];
        else if (argv[i][0] != '-' && label == NULL)
            label = argv[i];
        else
            return fail("usage: keyward keyring remove LABEL [--token LABEL]"), 2;
    }
    if (label == NULL)
        return fail("usage: keyward keyring remove LABEL [--token LABEL]"), 2;
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot;
    if (open_token(token, &s, &slot) != 0) {
        close_token();
        return 1;
    }
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE objs[64];
    CK_ULONG n = 0;
    int rc = 0;
    if (p11->C_FindObjectsInit(s, &t, 1) != CKR_OK || p11->C_FindObjects(s, objs, 64, &n) != CKR_OK)
        rc = fail("cannot search the token");
    p11->C_FindObjectsFinal(s);
    if (rc == 0 && n == 0)
        rc = fail("no key or certificate labelled '%s'", label);
    for (CK_ULONG i = 0; rc == 0 && i < n; i++) {
        CK_RV rv = p11->C_DestroyObject(s, objs[i]);
        if (rv != CKR_OK)
            rc = fail("removing object %lu failed: %s", (unsigned long)objs[i], rv_text(rv));
    }
    if (rc == 0 && json) {
        printf("{\"label\": ");
        json_str(label);
        printf(", \"removed\": %lu}\n", (unsigned long)n);
    } else if (rc == 0) {
        printf("removed '%s' (%lu object%s)\n", label, (unsigned long)n, n == 1 ? "" : "s");
    }
    close_token();
    return rc;
}

static const struct {
    const char *cmd, *text;
} usages[] = {
    {"import", "usage: keyward keyring import KEYFILE --label NAME [--id HEX] [--cert CERT]\n"
               "                              [--token LABEL] [--shred]\n"
               "Loads a private key (PEM, DER or PKCS#8; an encrypted PEM asks for its\n"
               "passphrase) and optionally its certificate into the kernel keyring token;\n"
               "--shred overwrites and removes KEYFILE once the key is in the kernel.\n"},
    {"list", "usage: keyward keyring list [--json] [--token LABEL]\n"
             "Keys (label, id, type, bits, kernel or software mode) and certificates.\n"},
    {"remove", "usage: keyward keyring remove LABEL [--token LABEL]\n"
               "Removes the key, its public half and certificate with that label.\n"},
};

/* One subcommand's text, or all of them (sub NULL). */
static int usage(const char *sub, FILE *f)
{
    for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++)
        if (!sub || !strcmp(sub, usages[i].cmd))
            fputs(usages[i].text, f);
    return 0;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int kwt_keyring_main(int argc, char **argv)
{
    int json = 0;
#ifdef KWT_HAVE_KEYRING
    json = kwt_g.json; /* `keyward --json` is a global option */
#endif
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(NULL, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++)
        if (!strcmp(argv[1], usages[i].cmd) && wants_help(argc, argv))
            return usage(argv[1], stdout);
    if (!strcmp(argv[1], "import"))
        return cmd_import(argc, argv, json);
    if (!strcmp(argv[1], "list"))
        return cmd_list(argc, argv, json);
    if (!strcmp(argv[1], "remove"))
        return cmd_remove(argc, argv, json);
    return fail("unknown command 'keyring %s'", argv[1]), 2;
}
