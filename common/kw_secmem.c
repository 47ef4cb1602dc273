/* SPDX-License-Identifier: Apache-2.0 */
#include "kw_secmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void kw_wipe(void *p, size_t len)
{
    if (p == NULL || len == 0)
        return;
    explicit_bzero(p, len);
}

/* Each secret gets pages of its own: mlock and MADV_DONTDUMP work on whole pages, so a buffer
 * sharing a page with another secret would, when freed, unlock (munlock) or re-expose
 * (MADV_DODUMP) its neighbour. A header before the buffer records the allocation's size, so a
 * free never depends on the length its caller passes. */
#define KW_SEC_HDR 16

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

void *kw_secure_alloc(size_t len)
{
    size_t pg = page_size(), total;
    void *base = NULL;
    if (len > SIZE_MAX - KW_SEC_HDR - pg)
        return NULL;
    total = (len + KW_SEC_HDR + pg - 1) / pg * pg;
    if (posix_memalign(&base, pg, total) != 0)
        return NULL;
    memset(base, 0, total);
    memcpy(base, &total, sizeof(total));
    (void)mlock(base, total); /* best effort: RLIMIT_MEMLOCK may refuse */
#ifdef MADV_DONTDUMP
    (void)madvise(base, total, MADV_DONTDUMP);
#endif
    return (unsigned char *)base + KW_SEC_HDR;
}

void kw_secure_free(void *p, size_t len)
{
    size_t total;
    (void)len;
    if (p == NULL)
        return;
    unsigned char *base = (unsigned char *)p - KW_SEC_HDR;
    memcpy(&total, base, sizeof(total));
    kw_wipe(base, total);
#ifdef MADV_DODUMP
    (void)madvise(base, total, MADV_DODUMP); /* the pages go back to malloc */
#endif
    (void)munlock(base, total);
    free(base);
}

char *kw_secure_strndup(const char *s, size_t n)
{
    char *d;
    size_t l = strnlen(s, n);
    d = kw_secure_alloc(l + 1);
    if (d != NULL)
        memcpy(d, s, l);
    return d;
}

void kw_secure_strfree(char *s)
{
    if (s != NULL)
        kw_secure_free(s, strlen(s) + 1);
}

int kw_memcmp_ct(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= x[i] ^ y[i];
    return acc != 0;
}
