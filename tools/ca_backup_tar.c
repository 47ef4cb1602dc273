/* SPDX-License-Identifier: Apache-2.0 */
/* ca backup and ca restore: POSIX pax/ustar archives, written (headers, pax records, padding)
 * and read (one member at a time, every header field checked). */
#include "ca_backup_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- writing a tar archive ---- */

void tar_out_flush(tar_out *o)
{
    for (size_t off = 0; off < o->len && !o->err;) {
        ssize_t n = write(o->fd, o->buf + off, o->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            o->err = errno;
        else
            off += (size_t)n;
    }
    o->len = 0;
}

void tar_out_write(tar_out *o, const void *data, size_t n)
{
    const char *p = data;
    EVP_DigestUpdate(o->md, data, n);
    o->bytes += n;
    while (n) {
        size_t k = sizeof(o->buf) - o->len < n ? sizeof(o->buf) - o->len : n;
        memcpy(o->buf + o->len, p, k);
        o->len += k;
        p += k;
        n -= k;
        if (o->len == sizeof(o->buf))
            tar_out_flush(o);
    }
}

void tar_out_pad(tar_out *o, unsigned long long size)
{
    static const char zero[BLK];
    if (size % BLK)
        tar_out_write(o, zero, BLK - size % BLK);
}

static void octal(char *field, size_t width, unsigned long long v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%0*llo", (int)width - 1, v);
    memcpy(field, tmp, width - 1);
    field[width - 1] = '\0';
}

static void raw_header(tar_out *o, char type, const char *name, const char *link, unsigned mode,
                       unsigned long long size, long long mtime)
{
    unsigned char h[BLK];
    memset(h, 0, sizeof(h));
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    octal((char *)h + 100, 8, mode & 07777);
    octal((char *)h + 108, 8, 0); /* uid, gid: the restoring user owns what it restores */
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, size);
    octal((char *)h + 136, 12, (unsigned long long)(mtime > 0 ? mtime : 0));
    memset(h + 148, ' ', 8);
    h[156] = (unsigned char)type;
    if (link)
        memcpy(h + 157, link, strlen(link) < 100 ? strlen(link) : 100);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (size_t i = 0; i < BLK; i++)
        sum += h[i];
    char ck[8];
    snprintf(ck, sizeof(ck), "%06o", sum);
    memcpy(h + 148, ck, 7); /* six digits, NUL, and the space left there */
    tar_out_write(o, h, sizeof(h));
}

static void pax_record(kwt_buf *b, const char *key, const char *value)
{
    size_t n = strlen(key) + strlen(value) + 3, len = n;
    char digits[24];
    /* the length counts its own digits */
    for (int i = 0; i < 3; i++)
        len = n + (size_t)snprintf(digits, sizeof(digits), "%zu", len);
    kwt_buf_printf(b, "%zu %s=%s\n", len, key, value);
}

/* A member's header; a pax extended header first when the name or the link target does not fit
 * ustar's 100 bytes, or the size its 11 octal digits. */
void tar_header(tar_out *o, char type, const char *name, const char *link, unsigned mode,
                unsigned long long size, long long mtime)
{
    bool big = size > 077777777777ULL;
    if (strlen(name) > 100 || (link && strlen(link) > 100) || big) {
        kwt_buf rec = {0};
        kwt_buf_addn(&rec, "", 0);
        if (strlen(name) > 100)
            pax_record(&rec, "path", name);
        if (link && strlen(link) > 100)
            pax_record(&rec, "linkpath", link);
        if (big) {
            char sz[24];
            snprintf(sz, sizeof(sz), "%llu", size);
            pax_record(&rec, "size", sz);
        }
        const char *base = strrchr(name, '/');
        char *pname = kwt_asprintf("PaxHeaders/%.80s", base ? base + 1 : name);
        raw_header(o, 'x', pname, NULL, 0644, rec.len, mtime);
        tar_out_write(o, rec.s, rec.len);
        tar_out_pad(o, rec.len);
        free(pname);
        kwt_buf_free(&rec);
    }
    raw_header(o, type, name, link, mode, big ? 0 : size, mtime);
}

/* ---- reading a tar archive ---- */

/* 0: n bytes read; 1: the archive ended first; -1: a read error (in why). */
int tar_in_read(tar_in *t, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t k = read(t->fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(t->why, sizeof(t->why), "cannot read it: %s", strerror(errno));
            return -1;
        }
        if (k == 0)
            return 1;
        EVP_DigestUpdate(t->md, p, (size_t)k);
        t->off += (size_t)k;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static bool parse_octal(const unsigned char *f, size_t w, unsigned long long *v)
{
    size_t i = 0;
    *v = 0;
    while (i < w && f[i] == ' ')
        i++;
    size_t start = i;
    for (; i < w && f[i] >= '0' && f[i] <= '7'; i++) {
        if (*v >> 60)
            return false;
        *v = *v * 8 + (unsigned long long)(f[i] - '0');
    }
    if (i == start)
        return false;
    for (; i < w; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return false;
    return true;
}

static char *field(const unsigned char *f, size_t w)
{
    size_t n = strnlen((const char *)f, w);
    return kwt_asprintf("%.*s", (int)n, (const char *)f);
}

static bool all_zero(const unsigned char *b)
{
    for (size_t i = 0; i < BLK; i++)
        if (b[i])
            return false;
    return true;
}

int tar_refuse(tar_in *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    return -1;
}

/* The zeros after a member's data of size bytes, to the next 512-byte block (as in_read). */
int tar_read_pad(tar_in *t, unsigned long long size)
{
    unsigned char b[BLK];
    return size % BLK ? tar_in_read(t, b, BLK - size % BLK) : 0;
}

/* pax records "LEN key=value\n": path, linkpath and size are used, the others ignored. */
static int parse_pax(tar_in *t, const char *d, size_t len, char **path, char **link,
                     long long *size)
{
    for (size_t off = 0; off < len;) {
        char *end = NULL;
        unsigned long n = d[off] >= '1' && d[off] <= '9' ? strtoul(d + off, &end, 10) : 0;
        if (!end || *end != ' ' || n < 5 || n > len - off || d[off + n - 1] != '\n')
            return tar_refuse(t, "it has a damaged pax header at byte %llu", t->off);
        const char *kv = end + 1, *stop = d + off + n - 1,
                   *eq = memchr(kv, '=', (size_t)(stop - kv));
        if (!eq || memchr(kv, '\0', (size_t)(stop - kv)))
            return tar_refuse(t, "it has a damaged pax record at byte %llu", t->off);
        size_t kl = (size_t)(eq - kv);
        char *val = kwt_asprintf("%.*s", (int)(stop - eq - 1), eq + 1);
        if (kl == 4 && !strncmp(kv, "path", 4)) {
            free(*path);
            *path = val;
        } else if (kl == 8 && !strncmp(kv, "linkpath", 8)) {
            free(*link);
            *link = val;
        } else if (kl == 4 && !strncmp(kv, "size", 4)) {
            char *e2 = NULL;
            long long v = strtoll(val, &e2, 10);
            free(val);
            if (!*e2 && v >= 0 && e2 != val)
                *size = v;
            else
                return tar_refuse(t, "it has a damaged pax size at byte %llu", t->off);
        } else {
            free(val);
        }
        off += n;
    }
    return 0;
}

/* The next member in *m (1), the end of the archive (0), or a refusal in t->why (-1). */
int tar_next(tar_in *t, tar_mem *m)
{
    unsigned char h[BLK];
    char *ppath = NULL, *plink = NULL;
    long long psize = -1;
    memset(m, 0, sizeof(*m));
    for (;;) {
        unsigned long long at = t->off;
        int r = tar_in_read(t, h, BLK);
        if (r > 0)
            r = tar_refuse(t, "it is truncated (no end-of-archive marker)");
        if (r == 0 && all_zero(h)) {
            r = tar_in_read(t, h, BLK);
            if (r > 0 || (r == 0 && !all_zero(h)))
                r = tar_refuse(t, "it is truncated or damaged (a lone zero block at byte %llu)",
                               at);
            if (r == 0) {
                free(ppath);
                free(plink);
                return 0;
            }
        }
        unsigned long long ck = 0, size = 0, mode = 0;
        unsigned sum = 0;
        for (size_t i = 0; i < BLK; i++)
            sum += i >= 148 && i < 156 ? ' ' : h[i];
        if (r == 0 && (!parse_octal(h + 148, 8, &ck) || ck != sum))
            r = tar_refuse(
                t, "it is not a tar archive, or damaged (a bad header checksum at byte %llu)", at);
        if (r == 0 && memcmp(h + 257, "ustar", 5) != 0)
            r = tar_refuse(t, "it is not a POSIX (ustar/pax) tar archive");
        if (r == 0 && (!parse_octal(h + 124, 12, &size) || !parse_octal(h + 100, 8, &mode)))
            r = tar_refuse(t, "it has a damaged header at byte %llu", at);
        if (r == 0 && h[156] == 'x') {
            if (size > BK_PAX_MAX) {
                r = tar_refuse(t, "it has a pax header of %llu bytes at byte %llu", size, at);
            } else {
                size_t padded = (size_t)(size + BLK - 1) / BLK * BLK;
                char *d = malloc(padded + 1);
                if (!d || (r = tar_in_read(t, d, padded)) != 0) {
                    r = r < 0 ? -1 : tar_refuse(t, "it is truncated (it ends inside a pax header)");
                } else {
                    d[padded] = '\0';
                    r = parse_pax(t, d, (size_t)size, &ppath, &plink, &psize);
                }
                free(d);
            }
            if (r == 0)
                continue;
        }
        if (r != 0) {
            free(ppath);
            free(plink);
            return -1;
        }
        m->flag = (char)(h[156] ? h[156] : '0');
        if (ppath) {
            m->name = ppath;
        } else {
            char *name = field(h, 100), *prefix = field(h + 345, 155);
            m->name = *prefix ? kwt_asprintf("%s/%s", prefix, name) : kwt_strdup(name);
            free(name);
            free(prefix);
        }
        m->link = plink ? plink : field(h + 157, 100);
        m->size = psize >= 0 ? (unsigned long long)psize : size;
        m->mode = (unsigned)mode & 07777;
        return 1;
    }
}

void tar_mem_free(tar_mem *m)
{
    free(m->name);
    free(m->link);
    memset(m, 0, sizeof(*m));
}

const char *tar_flag_problem(const tar_mem *m)
{
    static char why[64];
    switch (m->flag) {
    case '0':
    case '2':
    case '5':
        return NULL;
    case '1':
        return "a hard link (a keyward backup has none)";
    case '3':
        return "a character device";
    case '4':
        return "a block device";
    case '6':
        return "a FIFO";
    case 'g':
        return "a global pax header (a keyward backup has none)";
    case 'L':
    case 'K':
        return "a GNU long-name header (a keyward backup is POSIX pax)";
    default:
        snprintf(why, sizeof(why), "a member of unknown type '%c'", m->flag);
        return why;
    }
}
