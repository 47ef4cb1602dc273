/* SPDX-License-Identifier: Apache-2.0 */
#include "kw_secmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void kw_wipe(void *p, size_t len)
{
    if (p == NULL || len == 0)
        return;
    explicit_bzero(p, len);
}

void *kw_secure_alloc(size_t len)
{
    void *p = calloc(1, len ? len : 1);
    if (p != NULL)
        (void)mlock(p, len); /* best effort: RLIMIT_MEMLOCK may refuse */
    return p;
}

void kw_secure_free(void *p, size_t len)
{
    if (p == NULL)
        return;
    kw_wipe(p, len);
    (void)munlock(p, len);
    free(p);
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
