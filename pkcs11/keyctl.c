/* SPDX-License-Identifier: Apache-2.0 */
/* The only file that talks to the kernel keyring (libkeyutils). Everything else sees keys as
 * serials and CK_RVs; errno is mapped in error.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyutils.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

static CK_RV find_or_make(key_serial_t parent, const char *name, kwk_serial *out)
{
    long r = keyctl_search(parent, "keyring", name, 0);
    if (r >= 0) {
        *out = (kwk_serial)r;
        return CKR_OK;
    }
    if (errno != ENOKEY)
        return kwk_rv_from_errno(errno, "search for the token keyring");
    key_serial_t k = add_key("keyring", name, NULL, 0, parent);
    if (k < 0)
        return kwk_rv_from_errno(errno, "create the token keyring");
    KW_DEBUG(KWK_COMP, "created keyring %s (%d)", name, (int)k);
    *out = k;
    return CKR_OK;
}

CK_RV kwk_kr_resolve(const char *spec, kwk_serial *out)
{
    const char *colon = strchr(spec, ':');
    size_t plen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *name = colon ? colon + 1 : "";

    if (plen == 6 && strncmp(spec, "serial", 6) == 0) {
        char *end;
        long v = strtol(name, &end, 0);
        if (*name == '\0' || *end != '\0' || v <= 0 || v > INT32_MAX)
            return CKR_GENERAL_ERROR;
        if (keyctl_describe(v, NULL, 0) < 0)
            return kwk_rv_from_errno(errno, "token keyring serial");
        *out = (kwk_serial)v;
        return CKR_OK;
    }
    if (*name == '\0')
        return CKR_GENERAL_ERROR;
    if (plen == 4 && strncmp(spec, "user", 4) == 0)
        return find_or_make(KEY_SPEC_USER_KEYRING, name, out);
    if (plen == 12 && strncmp(spec, "user-session", 12) == 0)
        return find_or_make(KEY_SPEC_USER_SESSION_KEYRING, name, out);
    if (plen == 7 && strncmp(spec, "session", 7) == 0)
        return find_or_make(KEY_SPEC_SESSION_KEYRING, name, out);
    if (plen == 10 && strncmp(spec, "persistent", 10) == 0) {
        /* The persistent keyring outlives sessions (for services started without a login); it
         * is linked into the session keyring so this process possesses it. */
        long p = keyctl_get_persistent(-1, KEY_SPEC_SESSION_KEYRING);
        if (p < 0)
            return kwk_rv_from_errno(errno, "persistent keyring");
        return find_or_make((key_serial_t)p, name, out);
    }
    return CKR_GENERAL_ERROR;
}

CK_RV kwk_kr_list(kwk_serial ring, kwk_serial **out, size_t *n)
{
    void *buf = NULL;
    long r = keyctl_read_alloc(ring, &buf);
    if (r < 0)
        return kwk_rv_from_errno(errno, "read the token keyring");
    *out = buf;
    *n = (size_t)r / sizeof(key_serial_t);
    return CKR_OK;
}

CK_RV kwk_kr_describe(kwk_serial k, char *type, size_t tcap, char **desc)
{
    char *d = NULL;
    if (keyctl_describe_alloc(k, &d) < 0)
        return kwk_rv_from_errno(errno, "describe key");
    /* "type;uid;gid;perm;description" */
    char *p = d, *fields[5];
    for (int i = 0; i < 4; i++) {
        fields[i] = p;
        p = strchr(p, ';');
        if (p == NULL) {
            free(d);
            return CKR_GENERAL_ERROR;
        }
        *p++ = '\0';
    }
    fields[4] = p;
    snprintf(type, tcap, "%s", fields[0]);
    *desc = strdup(fields[4]);
    free(d);
    return *desc ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV kwk_kr_read(kwk_serial k, unsigned char **buf, size_t *len)
{
    /* Read into locked memory sized by a first query, so the payload (a software-mode PKCS#8
     * key) never lands in a buffer we cannot wipe. */
    for (int attempt = 0; attempt < 3; attempt++) {
        long need = keyctl_read(k, NULL, 0);
        if (need < 0)
            return kwk_rv_from_errno(errno, "read key");
        unsigned char *b = kw_secure_alloc((size_t)need + 1);
        if (b == NULL)
            return CKR_HOST_MEMORY;
        long got = keyctl_read(k, (char *)b, (size_t)need);
        if (got < 0) {
            int e = errno;
            kw_secure_free(b, (size_t)need + 1);
            return kwk_rv_from_errno(e, "read key");
        }
        if (got <= need) {
            *buf = b;
            *len = (size_t)got;
            return CKR_OK;
        }
        kw_secure_free(b, (size_t)need + 1); /* grew meanwhile: retry */
    }
    return CKR_GENERAL_ERROR;
}

kwk_serial kwk_kr_find(kwk_serial ring, const char *desc)
{
    long r = keyctl_search(ring, "user", desc, 0);
    return r > 0 ? (kwk_serial)r : 0;
}

int kwk_kr_readable(kwk_serial k)
{
    return keyctl_read(k, NULL, 0) >= 0; /* the size only: checks existence and permission */
}

CK_RV kwk_kr_add(const char *type, const char *desc, const void *data, size_t len, kwk_serial ring,
                 kwk_serial *out)
{
    key_serial_t k = add_key(type, desc, data, len, ring);
    if (k < 0)
        return kwk_rv_from_errno(errno, strcmp(type, "asymmetric") == 0 ? "load asymmetric key"
                                                                        : "add key");
    /* Possessor-only: a process that holds the keyring link may use the key; other processes
     * of the same uid may only see that it exists. */
    if (keyctl_setperm(k, KWK_PERM_PRIVATE) < 0) {
        int e = errno;
        keyctl_invalidate(k);
        return kwk_rv_from_errno(e, "set key permissions");
    }
    *out = k;
    return CKR_OK;
}

int kwk_kr_has(kwk_serial ring, const char *desc)
{
    /* Only keys linked straight into the ring: keyctl_search would also look in nested rings. */
    kwk_serial *ids = NULL;
    size_t n = 0;
    int found = 0;
    if (kwk_kr_list(ring, &ids, &n) != CKR_OK)
        return 0;
    for (size_t i = 0; i < n && !found; i++) {
        char type[32], *d = NULL;
        if (kwk_kr_describe(ids[i], type, sizeof(type), &d) == CKR_OK)
            found = strcmp(type, "user") == 0 && strcmp(d, desc) == 0;
        free(d);
    }
    free(ids);
    return found;
}

CK_RV kwk_kr_update(kwk_serial k, const void *data, size_t len)
{
    if (keyctl_update(k, data, len) < 0)
        return kwk_rv_from_errno(errno, "update key");
    return CKR_OK;
}

CK_RV kwk_kr_remove(kwk_serial ring, kwk_serial k)
{
    /* Invalidate, not just unlink: another keyring linking the key must not keep it alive. And
     * unlink too: the kernel's garbage collector takes an invalidated key out of keyrings only
     * later, so without it a listing right after still shows the destroyed object. */
    int inval = keyctl_invalidate(k) == 0;
    int e = errno;
    if (keyctl_unlink(k, ring) < 0 && !inval)
        return kwk_rv_from_errno(e, "remove key");
    return CKR_OK;
}

CK_RV kwk_kr_pkey_sign(kwk_serial k, const char *info, const void *in, size_t inlen, void *out,
                       size_t outlen)
{
    long r = keyctl_pkey_sign(k, info, in, inlen, out, outlen);
    if (r < 0)
        return kwk_rv_from_errno(errno, "kernel sign");
    if ((size_t)r != outlen)
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}

CK_RV kwk_kr_pkey_decrypt(kwk_serial k, const char *info, const void *in, size_t inlen, void *out,
                          size_t outlen)
{
    long r = keyctl_pkey_decrypt(k, info, in, inlen, out, outlen);
    if (r < 0)
        return kwk_rv_from_errno(errno, "kernel private operation");
    if ((size_t)r != outlen)
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}
