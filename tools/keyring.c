/* SPDX-License-Identifier: Apache-2.0 */
/* keyward keyring: load keys into the kernel keyring token and look at them. It talks to the
 * token only through keyward-pkcs11.so (so there is one keyctl caller: the module), and calls
 * it through the common PKCS#11 call layer (keyring_token.c, common/kw_p11.h); the module
 * is found at KEYWARD_PKCS11_MODULE or where it was installed (KWK_MODULE_PATH).
 *
 *   keyward keyring import KEYFILE --label NAME [--id HEX] [--cert CERT] [--token LABEL] [--shred]
 *   keyward keyring list [--json] [--token LABEL]
 *   keyward keyring remove LABEL [--token LABEL]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../pkcs11/kwk_vendor.h"
#include "keyring.h"
#include "keyring_int.h"
#include "kw_secmem.h"
#include "kwt.h"

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
        return kr_fail("--shred: cannot open %s: %s", path, strerror(errno));
    }
    unsigned char zero[4096] = {0};
    for (off_t done = 0; done < st.st_size;) {
        size_t n =
            (size_t)(st.st_size - done) < sizeof(zero) ? (size_t)(st.st_size - done) : sizeof(zero);
        ssize_t w = write(fd, zero, n);
        if (w <= 0) {
            close(fd);
            return kr_fail("--shred: writing %s: %s", path, strerror(errno));
        }
        done += w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || unlink(path) != 0)
        return kr_fail("--shred: %s: %s", path, strerror(errno));
    return 0;
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
    bool shred = false;
    kwt_optspec spec[] = {{"--label", &label, NULL},   {"--id", &idhex, NULL},
                          {"--cert", &certfile, NULL}, {"--token", &token, NULL},
                          {"--shred", NULL, &shred},   {NULL, NULL, NULL}};
    int npos, rc = kwt_parse_args("keyring import", argc - 1, argv + 1, spec, &file, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (file == NULL || label == NULL)
        return kr_fail(
                   "usage: keyward keyring import KEYFILE --label NAME [--id HEX] [--cert CERT] "
                   "[--token LABEL] [--shred]"),
               2;
    unsigned char id[128];
    size_t id_len = 0;
    if (idhex && !parse_hex(idhex, id, sizeof(id), &id_len))
        return kr_fail("--id must be hex bytes (e.g. 01a2), at most 128"), 2;
    if (strlen(label) > 255)
        return kr_fail("--label is longer than 255 bytes"), 2;

    EVP_PKEY *pk = read_key(file);
    if (pk == NULL)
        return kr_fail("%s: not a private key (PEM, DER or PKCS#8), or wrong passphrase", file);
    X509 *cert = NULL;
    if (certfile) {
        cert = read_cert(certfile);
        if (cert == NULL) {
            EVP_PKEY_free(pk);
            return kr_fail("%s: not an X.509 certificate", certfile);
        }
        if (EVP_PKEY_eq(X509_get0_pubkey(cert), pk) != 1) {
            EVP_PKEY_free(pk);
            X509_free(cert);
            return kr_fail("%s does not belong to the key in %s", certfile, file);
        }
    }
    /* PKCS#8 DER in locked memory, wiped after the call. */
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : -1;
    unsigned char *der = len > 0 ? kw_secure_alloc((size_t)len) : NULL, *p = der;
    rc = 1;
    kr_token kt;
    memset(&kt, 0, sizeof(kt));
    if (der == NULL || i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != len) {
        kr_fail("cannot encode the key");
        goto out;
    }
    if (kr_open(token, &kt) != 0)
        goto out;
    CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, ccert = CKO_CERTIFICATE;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cpriv, sizeof(cpriv)},
                        {CKA_TOKEN, &yes, sizeof(yes)},
                        {CKA_LABEL, (void *)label, strlen(label)},
                        {CKA_ID, id, id_len},
                        {CKA_KEYWARD_PKCS8, der, (CK_ULONG)len}};
    CK_OBJECT_HANDLE h;
    CK_RV rv = KW_P11_CALL(kt.mod, C_CreateObject, kt.s, t, 5, &h);
    if (rv != CKR_OK) {
        char *what = kwt_asprintf("loading %s into the keyring", file);
        kr_call_fail(&kt, rv, "C_CreateObject", what);
        free(what);
        goto out;
    }
    char mode[16] = "?";
    CK_ULONG serial = 0;
    CK_ATTRIBUTE q[] = {{CKA_KEYWARD_MODE, mode, sizeof(mode) - 1},
                        {CKA_KEYWARD_SERIAL, &serial, sizeof(serial)}};
    (void)KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, h, q, 2);
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
        rv = cl > 0 ? KW_P11_CALL(kt.mod, C_CreateObject, kt.s, ct, 6, &ch) : CKR_GENERAL_ERROR;
        OPENSSL_free(cd);
        if (rv != CKR_OK) {
            (void)KW_P11_CALL(kt.mod, C_DestroyObject, kt.s, h); /* all or nothing */
            kr_call_fail(&kt, rv, "C_CreateObject", "storing the certificate");
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
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"label\": ");
        kwt_buf_json_str(&j, label);
        kwt_buf_printf(&j, ", \"type\": \"%s\", \"bits\": %d, \"serial\": %lu, \"mode\": ",
                       key_type_name(pk), EVP_PKEY_get_bits(pk), (unsigned long)serial);
        kwt_buf_json_str(&j, mode);
        kwt_buf_printf(&j, ", \"certificate\": %s}\n", cert ? "true" : "false");
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    }
out:
    if (der)
        kw_secure_free(der, (size_t)len);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(pk);
    X509_free(cert);
    kr_close(&kt);
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
    bool json_opt = false;
    kwt_optspec spec[] = {
        {"--json", NULL, &json_opt}, {"--token", &token, NULL}, {NULL, NULL, NULL}};
    int npos, rc = kwt_parse_args("keyring list", argc - 1, argv + 1, spec, NULL, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    json = json || json_opt;
    kr_token kt;
    if (kr_open(token, &kt) != 0) {
        kr_close(&kt);
        return 1;
    }
    CK_OBJECT_HANDLE objs[512];
    CK_ULONG n = 0;
    if (kw_p11_find(kt.tok, kt.s, NULL, 0, objs, 512, &n) != KW_OK) {
        kr_fail("cannot list the token's objects: %s", kr_last_error());
        kr_close(&kt);
        return 1;
    }
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
        if (KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, objs[i], a, 3) != CKR_OK)
            continue;
        r.label[a[1].ulValueLen] = '\0';
        CK_ATTRIBUTE ida = {CKA_ID, r.id, sizeof(r.id)};
        if (KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, objs[i], &ida, 1) == CKR_OK)
            r.id_len = ida.ulValueLen;
        const char *type = "cert";
        strcpy(r.mode, "-");
        if (r.cls == CKO_PRIVATE_KEY || r.cls == CKO_PUBLIC_KEY) {
            CK_ATTRIBUTE kta = {CKA_KEY_TYPE, &r.ktype, sizeof(r.ktype)};
            (void)KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, objs[i], &kta, 1);
            CK_ATTRIBUTE m = {r.ktype == CKK_RSA ? CKA_MODULUS : CKA_EC_PARAMS, buf, sizeof(buf)};
            if (KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, objs[i], &m, 1) == CKR_OK)
                r.bits = r.ktype == CKK_RSA ? m.ulValueLen * 8 : ec_bits(buf, m.ulValueLen);
            type = r.ktype == CKK_RSA ? "RSA" : r.ktype == CKK_EC ? "EC" : "EdDSA";
            if (r.cls == CKO_PRIVATE_KEY) {
                CK_ATTRIBUTE md = {CKA_KEYWARD_MODE, r.mode, sizeof(r.mode) - 1};
                if (KW_P11_CALL(kt.mod, C_GetAttributeValue, kt.s, objs[i], &md, 1) == CKR_OK)
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
            kwt_buf j = {0};
            kwt_buf_printf(&j, "%s\n  {\"label\": ", first ? "" : ",");
            kwt_buf_json_str(&j, r.label);
            kwt_buf_printf(&j,
                           ", \"id\": \"%s\", \"object\": \"%s\", \"type\": \"%s\", \"bits\": %lu, "
                           "\"mode\": \"%s\", \"serial\": %lu}",
                           idhex, what, type, (unsigned long)r.bits, r.mode,
                           (unsigned long)r.serial);
            fputs(j.s, stdout);
            kwt_buf_free(&j);
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
    kr_close(&kt);
    return 0;
}

static int cmd_remove(int argc, char **argv, int json)
{
    const char *label = NULL, *token = NULL;
    kwt_optspec spec[] = {{"--token", &token, NULL}, {NULL, NULL, NULL}};
    int npos, rc = kwt_parse_args("keyring remove", argc - 1, argv + 1, spec, &label, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (label == NULL)
        return kr_fail("usage: keyward keyring remove LABEL [--token LABEL]"), 2;
    kr_token kt;
    if (kr_open(token, &kt) != 0) {
        kr_close(&kt);
        return 1;
    }
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE objs[64];
    CK_ULONG n = 0;
    rc = 0;
    if (kw_p11_find(kt.tok, kt.s, &t, 1, objs, 64, &n) != KW_OK)
        rc = kr_fail("cannot search the token: %s", kr_last_error());
    if (rc == 0 && n == 0)
        rc = kr_fail("no key or certificate labelled '%s'", label);
    for (CK_ULONG i = 0; rc == 0 && i < n; i++) {
        CK_RV rv = KW_P11_CALL(kt.mod, C_DestroyObject, kt.s, objs[i]);
        if (rv != CKR_OK) {
            char *what = kwt_asprintf("removing object %lu", (unsigned long)objs[i]);
            rc = kr_call_fail(&kt, rv, "C_DestroyObject", what);
            free(what);
        }
    }
    if (rc == 0 && json) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"label\": ");
        kwt_buf_json_str(&j, label);
        kwt_buf_printf(&j, ", \"removed\": %lu}\n", (unsigned long)n);
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    } else if (rc == 0) {
        printf("removed '%s' (%lu object%s)\n", label, (unsigned long)n, n == 1 ? "" : "s");
    }
    kr_close(&kt);
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
    int json = kwt_g.json; /* `keyward --json` is a global option */
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
    return kr_fail("unknown command 'keyring %s'", argv[1]), 2;
}
