/* SPDX-License-Identifier: Apache-2.0 */
/* ca backup and ca restore: the set of an archive's entries (a hash table by path), and the
 * names in it: escaping, the checks of a path and of a link, file system paths. */
#include "ca_backup_int.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the set of entries: the manifest ---- */

static size_t str_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

bk_entry *bk_set_find(const bk_set *s, const char *path)
{
    if (!s->nslot)
        return NULL;
    for (size_t i = str_hash(path) & (s->nslot - 1); s->slot[i]; i = (i + 1) & (s->nslot - 1))
        if (!strcmp(s->e[s->slot[i] - 1].path, path))
            return &s->e[s->slot[i] - 1];
    return NULL;
}

static void set_rehash(bk_set *s)
{
    size_t n = s->nslot ? s->nslot * 2 : 256;
    free(s->slot);
    s->slot = calloc(n, sizeof(*s->slot));
    if (!s->slot) {
        fputs("keyward: out of memory\n", stderr);
        exit(KWT_FAIL);
    }
    s->nslot = n;
    for (size_t k = 0; k < s->n; k++) {
        size_t i = str_hash(s->e[k].path) & (n - 1);
        while (s->slot[i])
            i = (i + 1) & (n - 1);
        s->slot[i] = k + 1;
    }
}

/* A new entry for path (copied); NULL when the set has it already. */
bk_entry *bk_set_add(bk_set *s, char type, const char *path)
{
    if (bk_set_find(s, path))
        return NULL;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        bk_entry *ne = realloc(s->e, s->cap * sizeof(*ne));
        if (!ne) {
            fputs("keyward: out of memory\n", stderr);
            exit(KWT_FAIL);
        }
        s->e = ne;
    }
    bk_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->path = kwt_strdup(path);
    if ((s->n) * 2 > s->nslot)
        set_rehash(s);
    else {
        size_t i = str_hash(path) & (s->nslot - 1);
        while (s->slot[i])
            i = (i + 1) & (s->nslot - 1);
        s->slot[i] = s->n;
    }
    return e;
}

void bk_set_free(bk_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].path);
        free(s->e[i].target);
    }
    free(s->e);
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

const char *bk_type_name(char t)
{
    return t == 'f' ? "file" : t == 'd' ? "directory" : "symbolic link";
}

/* ---- names ---- */

/* A name in the manifest: bytes that are blanks, controls, non-ASCII or '%' as %XX. */
void bk_esc(kwt_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '%')
            kwt_buf_printf(b, "%%%02X", *p);
        else
            kwt_buf_addn(b, (const char *)p, 1);
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* The name esc wrote; NULL when it is not one (a bad escape, a NUL). */
char *bk_unesc(const char *s)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (; *s; s++) {
        char c = *s;
        if (c == '%') {
            int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
            if (lo < 0 || (hi == 0 && lo == 0)) {
                kwt_buf_free(&b);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            s += 2;
        }
        kwt_buf_addn(&b, &c, 1);
    }
    return b.s;
}

/* A name as it may be shown in a message: escaped, and cut at 200 bytes. */
const char *bk_shown(const char *s)
{
    static char ring[4][256];
    static int k;
    char *o = ring[k++ & 3];
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            kwt_buf_printf(&b, "\\x%02x", *p);
        else
            kwt_buf_addn(&b, (const char *)p, 1);
    }
    snprintf(o, sizeof(ring[0]), "%.200s%s", b.s, b.len > 200 ? "..." : "");
    kwt_buf_free(&b);
    return o;
}

/* Why path is no plain relative path inside the directory (NULL: it is one). */
const char *bk_path_problem(const char *p)
{
    if (!*p)
        return "an empty name";
    if (p[0] == '/')
        return "an absolute path";
    if (strlen(p) > BK_PATH_MAX)
        return "a name longer than 4000 bytes";
    for (const char *c = p;;) {
        const char *sl = strchr(c, '/');
        size_t n = sl ? (size_t)(sl - c) : strlen(c);
        if (n == 2 && !strncmp(c, "..", 2))
            return "a path with a .. component (it would leave the directory)";
        if (!sl)
            break;
        c = sl + 1;
    }
    for (const char *c = p;;) {
        const char *sl = strchr(c, '/');
        size_t n = sl ? (size_t)(sl - c) : strlen(c);
        if (n == 0 || (n == 1 && *c == '.'))
            return "not a plain relative path (an empty or . component)";
        if (!sl)
            break;
        c = sl + 1;
    }
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return "a control character in the name";
    return NULL;
}

/* Resolves target from the directory in cur ("" the top) through the set's symbolic links,
 * as the kernel would; false when it leaves the top, or follows more than *budget links. */
static bool resolve_inside(const bk_set *s, kwt_buf *cur, const char *target, int *budget)
{
    if (target[0] == '/')
        return false;
    for (const char *c = target; *c;) {
        const char *sl = strchr(c, '/');
        size_t n = sl ? (size_t)(sl - c) : strlen(c);
        if (n == 2 && !strncmp(c, "..", 2)) {
            if (!cur->len)
                return false;
            char *last = strrchr(cur->s, '/');
            cur->len = last ? (size_t)(last - cur->s) : 0;
            cur->s[cur->len] = '\0';
        } else if (n && !(n == 1 && *c == '.')) {
            size_t keep = cur->len;
            if (cur->len)
                kwt_buf_addn(cur, "/", 1);
            kwt_buf_addn(cur, c, n);
            const bk_entry *e = bk_set_find(s, cur->s);
            if (e && e->type == 'l') {
                cur->len = keep;
                cur->s[keep] = '\0';
                if (--*budget < 0 || !resolve_inside(s, cur, e->target, budget))
                    return false;
            }
        }
        c = sl ? sl + 1 : c + n;
    }
    return true;
}

/* Why entry e cannot be restored as it is in the set (NULL: it can): its directory must be a
 * directory of the set, and a link must stay inside. */
const char *bk_entry_problem(const bk_set *s, const bk_entry *e)
{
    static char why[512];
    const char *sl = strrchr(e->path, '/');
    if (sl) {
        char *parent = kwt_asprintf("%.*s", (int)(sl - e->path), e->path);
        const bk_entry *p = bk_set_find(s, parent);
        if (!p || p->type != 'd') {
            snprintf(why, sizeof(why), "its directory %s is %s", bk_shown(parent),
                     !p ? "not in it" : "a symbolic link or a file, not a directory");
            free(parent);
            return why;
        }
        free(parent);
    }
    if (e->type != 'l')
        return NULL;
    if (!e->target || !*e->target)
        return "a symbolic link without a target";
    if (e->target[0] == '/') {
        snprintf(why, sizeof(why), "a symbolic link to %s, outside the directory",
                 bk_shown(e->target));
        return why;
    }
    kwt_buf cur = {0};
    kwt_buf_addn(&cur, e->path, sl ? (size_t)(sl - e->path) : 0);
    int budget = BK_LINKS_MAX;
    bool inside = resolve_inside(s, &cur, e->target, &budget);
    kwt_buf_free(&cur);
    if (!inside) {
        snprintf(why, sizeof(why), "a symbolic link to %s, which %s", bk_shown(e->target),
                 budget < 0 ? "follows too many links" : "leads outside the directory");
        return why;
    }
    return NULL;
}

char *bk_abs_path(const char *path)
{
    if (path[0] == '/')
        return kwt_strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return kwt_strdup(path);
    return kwt_path(cwd, path);
}

char *bk_dir_part(const char *path)
{
    const char *sl = strrchr(path, '/');
    if (!sl)
        return kwt_strdup(".");
    if (sl == path)
        return kwt_strdup("/");
    return kwt_asprintf("%.*s", (int)(sl - path), path);
}

/* Whether path lies in or under dir (both made real as far as they exist). */
bool bk_is_under(const char *path, const char *dir)
{
    char *parent = bk_dir_part(path), real[PATH_MAX];
    bool under = false;
    if (realpath(parent, real)) {
        size_t n = strlen(dir);
        under = !strncmp(real, dir, n) && (real[n] == '\0' || real[n] == '/');
    }
    free(parent);
    return under;
}
