/* SPDX-License-Identifier: Apache-2.0 */
/* The description codec: what a keyring key's description says of the object it holds
 * ("keyward:<kind>:<flags>:<link>:<id>:<label>"), written by object_write.c and read by object.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kwk.h"

static const char *kind_names[] = {[KWK_KIND_PRIV] = "priv",
                                   [KWK_KIND_SOFT] = "soft",
                                   [KWK_KIND_PUB] = "pub",
                                   [KWK_KIND_CERT] = "cert",
                                   [KWK_KIND_META] = "meta"};
/* Bit i of the flags. Lower case only: upper-case hex after a '/' is the mechanism list, and
 * the extra attributes are upper case too, which older parsers (that skip unknown characters)
 * must not take for flags. */
static const char flag_chars[] = "lsdxper";
static const char hexdigits[] = "0123456789ABCDEF";

int kwk_desc_format(char *out, size_t cap, kwk_kind kind, unsigned flags, kwk_serial link,
                    const unsigned char *id, size_t id_len, const char *label,
                    const kwk_mechs *mechs, const kwk_extra *x)
{
    /* flag letters, the extra attributes ("+" tag value), then "/" and the allowed mechanisms,
     * comma-separated */
    char f[96 + 2 * KWK_MAX_SUBJECT + (2 * sizeof(CK_MECHANISM_TYPE) + 1) * KWK_MAX_MECHS],
        hex[2 * KWK_MAX_ID + 1];
    size_t nf = 0;
    for (int i = 0; flag_chars[i]; i++)
        if (flags & (1u << i))
            f[nf++] = flag_chars[i];
    if (nf == 0)
        f[nf++] = '-';
    if (x && x->subject_len) {
        f[nf++] = '+';
        f[nf++] = 'S';
        for (size_t i = 0; i < x->subject_len && i < KWK_MAX_SUBJECT; i++) {
            f[nf++] = hexdigits[x->subject[i] >> 4];
            f[nf++] = hexdigits[x->subject[i] & 15];
        }
    }
    if (x && x->start_len == 8)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+B%.8s", (const char *)x->start);
    if (x && x->end_len == 8)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+E%.8s", (const char *)x->end);
    if (x && x->category)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+C%lu", (unsigned long)x->category);
    for (size_t i = 0; mechs && i < mechs->n && i < KWK_MAX_MECHS; i++)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "%c%lX", i ? ',' : '/',
                               (unsigned long)mechs->m[i]);
    f[nf] = '\0';
    for (size_t i = 0; i < id_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    hex[2 * id_len] = '\0';
    int n =
        snprintf(out, cap, "keyward:%s:%s:%d:%s:%s", kind_names[kind], f, (int)link, hex, label);
    return n > 0 && (size_t)n < cap;
}

/* "/1,D,43" after the flag letters: the key's CKA_ALLOWED_MECHANISMS. A list that does not
 * parse makes the key not ours (hidden), never a key without limits. */
static int parse_mechs(const char *p, kwk_mechs *mechs)
{
    kwk_mechs l = {0};
    for (;;) {
        unsigned long v = 0;
        size_t nd = 0;
        const char *d;
        for (; *p && (d = strchr(hexdigits, *p)) != NULL; p++, nd++)
            v = (v << 4) | (unsigned long)(d - hexdigits);
        if (nd == 0 || nd > 2 * sizeof(CK_MECHANISM_TYPE) || l.n == KWK_MAX_MECHS ||
            (*p != ',' && *p != '\0'))
            return 0;
        l.m[l.n++] = (CK_MECHANISM_TYPE)v;
        if (*p++ == '\0')
            break;
    }
    if (mechs)
        *mechs = l;
    return 1;
}

/* "+S3081..+B20260101" (what follows the flag letters, up to the '/'): the extra attributes. As
 * with the mechanisms, one that does not parse hides the key. */
static int parse_extra(char *p, kwk_extra *x)
{
    while (p) {
        char *next = strchr(p, '+'), tag = *p;
        size_t n;
        if (next)
            *next++ = '\0';
        if (tag == '\0')
            return 0;
        n = strlen(++p);
        if (tag == 'S' && n && n % 2 == 0 && n / 2 <= KWK_MAX_SUBJECT) {
            for (size_t i = 0; i < n; i += 2) {
                const char *hi = strchr(hexdigits, p[i]), *lo = strchr(hexdigits, p[i + 1]);
                if (hi == NULL || lo == NULL)
                    return 0;
                x->subject[i / 2] = (unsigned char)((hi - hexdigits) << 4 | (lo - hexdigits));
            }
            x->subject_len = n / 2;
        } else if ((tag == 'B' || tag == 'E') && n == 8 && strspn(p, "0123456789") == 8) {
            memcpy(tag == 'B' ? x->start : x->end, p, 8);
            *(tag == 'B' ? &x->start_len : &x->end_len) = 8;
        } else if (tag == 'C' && n == 1 && *p >= '1' && *p <= '3') {
            x->category = (CK_ULONG)(*p - '0');
        } else {
            return 0;
        }
        p = next;
    }
    return 1;
}

int kwk_desc_parse(const char *type, const char *desc, kwk_kind *kind, unsigned *flags,
                   kwk_serial *link, unsigned char *id, size_t *id_len, char *label,
                   kwk_mechs *mechs, kwk_extra *x)
{
    char buf[4200];
    char *f[6], *p = buf;
    kwk_extra unused;
    if (mechs)
        mechs->n = 0;
    if (x == NULL)
        x = &unused;
    memset(x, 0, sizeof(*x));
    if (strncmp(desc, "keyward:", 8) != 0 || strlen(desc) >= sizeof(buf))
        return 0;
    strcpy(buf, desc + 8);
    for (int i = 0; i < 4; i++) {
        f[i] = p;
        p = strchr(p, ':');
        if (p == NULL)
            return 0;
        *p++ = '\0';
    }
    f[4] = p; /* the label may hold colons */
    *kind = 0;
    for (int k = KWK_KIND_PRIV; k <= KWK_KIND_META; k++)
        if (strcmp(f[0], kind_names[k]) == 0)
            *kind = k;
    if (*kind == 0 || (*kind == KWK_KIND_PRIV) != (strcmp(type, "asymmetric") == 0) ||
        (*kind != KWK_KIND_PRIV && strcmp(type, "user") != 0))
        return 0;
    char *ml = strchr(f[1], '/');
    if (ml) {
        *ml++ = '\0';
        if (!parse_mechs(ml, mechs))
            return 0;
    }
    char *extra = strchr(f[1], '+');
    if (extra) {
        *extra++ = '\0';
        if (!parse_extra(extra, x))
            return 0;
    }
    *flags = 0;
    for (const char *c = f[1]; *c; c++) {
        const char *q = strchr(flag_chars, *c);
        if (q)
            *flags |= 1u << (q - flag_chars);
    }
    *link = (kwk_serial)strtol(f[2], NULL, 10);
    size_t hl = strlen(f[3]);
    if (hl % 2 || hl / 2 > KWK_MAX_ID)
        return 0;
    for (size_t i = 0; i < hl / 2; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)f[3][2 * i]) || !isxdigit((unsigned char)f[3][2 * i + 1]) ||
            sscanf(f[3] + 2 * i, "%2x", &v) != 1)
            return 0;
        id[i] = (unsigned char)v;
    }
    *id_len = hl / 2;
    snprintf(label, KWK_MAX_LABEL, "%s", f[4]);
    return 1;
}
