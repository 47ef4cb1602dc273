/* SPDX-License-Identifier: Apache-2.0 */
/* Core-dump audit helper for keyward-pkcs11.so (issue 17, item 12).
 *   core_sign sign MODULE LABEL N   sign N times with the private key LABEL, then die of SIGSEGV
 *                                   (the caller allows a core dump)
 *   core_sign hold FILE              read FILE into the heap, free it unwiped, die of SIGSEGV (the
 *                                   control: a search that finds nothing must be able to)
 *   core_sign find CORE HEX          exit 0 when the bytes HEX occur in CORE, 1 when not */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pkcs11_3.h"

static void die_with_core(void)
{
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &rl);
    signal(SIGSEGV, SIG_DFL);
    fflush(NULL);
    raise(SIGSEGV);
    _exit(3);
}

static int sign(const char *module, const char *label, int n)
{
    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    CK_C_GetFunctionList gfl = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
    CK_FUNCTION_LIST *f;
    if (gfl == NULL || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) {
        fprintf(stderr, "core_sign: cannot load %s\n", module);
        return 2;
    }
    CK_SLOT_ID slot;
    CK_ULONG ns = 1;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE key;
    CK_ULONG nk = 0;
    CK_KEY_TYPE kt;
    CK_ATTRIBUTE kta = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    if (f->C_GetSlotList(CK_TRUE, &slot, &ns) != CKR_OK || ns < 1 ||
        f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
        f->C_FindObjectsInit(s, t, 2) != CKR_OK || f->C_FindObjects(s, &key, 1, &nk) != CKR_OK ||
        f->C_FindObjectsFinal(s) != CKR_OK || nk != 1 ||
        f->C_GetAttributeValue(s, key, &kta, 1) != CKR_OK) {
        fprintf(stderr, "core_sign: no private key labelled %s\n", label);
        return 2;
    }
    CK_MECHANISM m = {kt == CKK_EC ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
    for (int i = 0; i < n; i++) {
        unsigned char data[64], sig[1024];
        CK_ULONG sl = sizeof(sig);
        snprintf((char *)data, sizeof(data), "message %d", i);
        if (f->C_SignInit(s, &m, key) != CKR_OK || f->C_Sign(s, data, 32, sig, &sl) != CKR_OK) {
            fprintf(stderr, "core_sign: signature %d failed\n", i);
            return 2;
        }
    }
    die_with_core();
    return 3;
}

static int hold(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = malloc(4096); /* below the mmap threshold: freed into the heap */
    size_t n = fp && buf ? fread(buf, 1, 4096, fp) : 0;
    if (fp)
        fclose(fp);
    if (n == 0)
        return 2;
    free(buf); /* unwiped, as libcrypto's decoder buffers were */
    die_with_core();
    return 3;
}

static int find(const char *core, const char *hex)
{
    size_t hl = strlen(hex) / 2, cap = 1 << 20, len = 0;
    unsigned char *pat = malloc(hl ? hl : 1), *buf = malloc(cap);
    for (size_t i = 0; i < hl; i++)
        sscanf(hex + 2 * i, "%2hhx", &pat[i]);
    FILE *fp = fopen(core, "rb");
    if (fp == NULL || pat == NULL || buf == NULL || hl == 0)
        return 2;
    for (size_t r; (r = fread(buf + len, 1, cap - len, fp)) > 0;) {
        len += r;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (nb == NULL)
                return 2;
            buf = nb;
        }
    }
    fclose(fp);
    int found = memmem(buf, len, pat, hl) != NULL;
    free(buf);
    free(pat);
    return found ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "sign") == 0)
        return sign(argv[2], argv[3], atoi(argv[4]));
    if (argc == 3 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2]);
    if (argc == 4 && strcmp(argv[1], "find") == 0)
        return find(argv[2], argv[3]);
    fprintf(stderr, "usage: core_sign sign MODULE LABEL N | hold FILE | find CORE HEX\n");
    return 2;
}
