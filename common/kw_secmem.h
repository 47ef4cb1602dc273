/* SPDX-License-Identifier: Apache-2.0 */
/* Buffers that hold secrets (PINs, software-mode keys): locked, wiped on free. */
#ifndef KW_SECMEM_H
#define KW_SECMEM_H

#include <stddef.h>

/* Overwrite len bytes in a way the compiler cannot drop. */
void kw_wipe(void *p, size_t len);
/* Allocate zeroed memory on pages of its own, mlock'd where the system allows (best effort) and
 * left out of core dumps (MADV_DONTDUMP). */
void *kw_secure_alloc(size_t len);
/* Wipe, unlock and free a buffer from kw_secure_alloc (len is not needed: the buffer knows its
 * size). NULL is fine. */
void kw_secure_free(void *p, size_t len);
/* Duplicate a string into secure memory; *out_len gets strlen. */
char *kw_secure_strndup(const char *s, size_t n);
void kw_secure_strfree(char *s);
/* Constant-time comparison; 0 when equal. */
int kw_memcmp_ct(const void *a, const void *b, size_t len);

#endif
