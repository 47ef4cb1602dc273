/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca backup` and `keyward ca restore`: the CA directory as one tar archive (POSIX
 * pax/ustar, written and read here: no tar program, no libarchive).
 *
 * The first member, MANIFEST, lists every directory, file and symbolic link of the archive
 * with its mode and, for a file, its size and SHA-256; the CA's files follow, with their paths
 * relative to the CA directory. The backup is taken under the CA lock (shared: writers wait),
 * so a concurrent signing is either wholly in it or not at all. The CA directory holds no
 * private key (keys stay on their tokens; only their URIs are there): a file that looks like
 * one is left out, and said so.
 *
 * A restore reads the archive twice: the first pass verifies everything (member types and
 * names, links, the manifest against the members and every SHA-256) and writes nothing; the
 * second writes into a new directory beside the target, checking again, and the directory is
 * renamed into place only when the whole archive was written. */
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BK_MAGIC        "keyward-backup 1"
#define BK_MANIFEST     "MANIFEST"
#define BK_MANIFEST_MAX (256u << 20) /* read into memory: ~100 bytes per file */
#define BK_PAX_MAX      (1u << 20)
#define BK_PATH_MAX     4000
#define BK_LINKS_MAX    40 /* symbolic links followed resolving one path (Linux: 40) */
#define BLK             512

/* ---- the set of entries: the manifest ---- */

typedef struct {
    char type; /* 'f' file, 'd' directory, 'l' symbolic link */
    unsigned mode;
    unsigned long long size;
    char sha[65]; /* files: SHA-256, lower-case hex */
    char *path, *target;
    bool seen; /* restore: the member was in the archive */
} bk_entry;

typedef struct {
    bk_entry *e;
    size_t n, cap;
    size_t *slot; /* open addressing: entry index + 1, 0 for a free slot */
    size_t nslot;
} bk_set;

static size_t str_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static bk_entry *set_find(const bk_set *s, const char *path)
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
static bk_entry *set_add(bk_set *s, char type, const char *path)
{
    if (set_find(s, path))
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

static void set_free(bk_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].path);
        free(s->e[i].target);
    }
    free(s->e);
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

static const char *type_name(char t)
{
    return t == 'f' ? "file" : t == 'd' ? "directory" : "symbolic link";
}

/* ---- names ---- */

/* A name in the manifest: bytes that are blanks, controls, non-ASCII or '%' as %XX. */
static void esc(kwt_buf *b, const char *s)
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
static char *unesc(const char *s)
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
static const char *shown(const char *s)
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
static const char *path_problem(const char *p)
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
            const bk_entry *e = set_find(s, cur->s);
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
static const char *entry_problem(const bk_set *s, const bk_entry *e)
{
    static char why[512];
    const char *sl = strrchr(e->path, '/');
    if (sl) {
        char *parent = kwt_asprintf("%.*s", (int)(sl - e->path), e->path);
        const bk_entry *p = set_find(s, parent);
        if (!p || p->type != 'd') {
            snprintf(why, sizeof(why), "its directory %s is %s", shown(parent),
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
                 shown(e->target));
        return why;
    }
    kwt_buf cur = {0};
    kwt_buf_addn(&cur, e->path, sl ? (size_t)(sl - e->path) : 0);
    int budget = BK_LINKS_MAX;
    bool inside = resolve_inside(s, &cur, e->target, &budget);
    kwt_buf_free(&cur);
    if (!inside) {
        snprintf(why, sizeof(why), "a symbolic link to %s, which %s", shown(e->target),
                 budget < 0 ? "follows too many links" : "leads outside the directory");
        return why;
    }
    return NULL;
}

static void hex(const unsigned char *h, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void md_final_hex(EVP_MD_CTX *md, char out[65])
{
    unsigned char h[32];
    unsigned int hl = 0;
    out[0] = '\0';
    if (EVP_DigestFinal_ex(md, h, &hl) == 1 && hl == 32)
        hex(h, 32, out);
}

static bool sha256_hex(const void *data, size_t len, char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, data, len) == 1;
    if (ok)
        md_final_hex(md, out);
    EVP_MD_CTX_free(md);
    return ok && out[0];
}

/* ---- the manifest ---- */

static char *manifest_text(const bk_set *s, const char *dir, const char *state)
{
    kwt_buf b = {0};
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    kwt_buf_add(&b, BK_MAGIC "\n");
    kwt_buf_printf(&b, "# keyward ca backup at %s of ", ts);
    esc(&b, dir);
    kwt_buf_printf(&b, " (current state %s)\n", state);
    kwt_buf_add(&b, "# TYPE MODE SIZE SHA-256 PATH [TARGET]; names with %XX escapes\n");
    for (size_t i = 0; i < s->n; i++) {
        const bk_entry *e = &s->e[i];
        if (e->type == 'f')
            kwt_buf_printf(&b, "f %04o %llu %s ", e->mode, e->size, e->sha);
        else
            kwt_buf_printf(&b, "%c %04o - - ", e->type, e->mode);
        esc(&b, e->path);
        if (e->type == 'l') {
            kwt_buf_add(&b, " ");
            esc(&b, e->target);
        }
        kwt_buf_add(&b, "\n");
    }
    return b.s;
}

/* Parses a manifest into s; NULL, or why it is refused (in why). */
static const char *manifest_parse(char *text, bk_set *s, char *why, size_t wl)
{
    char *save = NULL;
    int lineno = 0;
    bool magic = false;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (!magic) {
            if (strcmp(l, BK_MAGIC) != 0)
                return "it does not start with \"" BK_MAGIC "\"";
            magic = true;
            continue;
        }
        if (l[0] == '#')
            continue;
        char *f[6] = {NULL}, *tok = NULL;
        int n = 0;
        for (char *w = strtok_r(l, " ", &tok); w && n < 6; w = strtok_r(NULL, " ", &tok))
            f[n++] = w;
        char type = f[0] && strlen(f[0]) == 1 ? f[0][0] : 0;
        char *end = NULL;
        unsigned long mode = f[1] ? strtoul(f[1], &end, 8) : 0;
        if (!strchr("fdl", type) || !type || n != (type == 'l' ? 6 : 5) || !end || *end ||
            mode > 07777) {
            snprintf(why, wl, "line %d is damaged", lineno);
            return why;
        }
        char *path = unesc(f[4]), *target = type == 'l' ? unesc(f[5]) : NULL;
        const char *bad = !path || (type == 'l' && !target) ? "a bad %XX escape" : NULL;
        if (!bad)
            bad = path_problem(path);
        if (!bad && !strcmp(path, BK_MANIFEST))
            bad = "the manifest's own name";
        if (bad) {
            snprintf(why, wl, "line %d: %s: %s", lineno, path ? shown(path) : f[4], bad);
            free(path);
            free(target);
            return why;
        }
        bk_entry *e = set_add(s, type, path);
        if (!e) {
            snprintf(why, wl, "it lists %s twice", shown(path));
            free(path);
            free(target);
            return why;
        }
        e->mode = (unsigned)mode;
        e->target = target;
        if (type == 'f') {
            unsigned long long size = strtoull(f[2], &end, 10);
            bool hexok = strlen(f[3]) == 64 && strspn(f[3], "0123456789abcdef") == 64;
            if (*end || !*f[2] || f[2][0] == '-' || !hexok) {
                snprintf(why, wl, "line %d (%s) has a damaged size or SHA-256", lineno,
                         shown(path));
                free(path);
                return why;
            }
            e->size = size;
            memcpy(e->sha, f[3], 65);
        }
        free(path);
    }
    if (!magic)
        return "it is empty";
    for (size_t i = 0; i < s->n; i++) {
        const char *bad = entry_problem(s, &s->e[i]);
        if (bad) {
            snprintf(why, wl, "%s: %s", shown(s->e[i].path), bad);
            return why;
        }
    }
    return NULL;
}

/* ---- writing a tar archive ---- */

typedef struct {
    int fd;
    EVP_MD_CTX *md; /* SHA-256 of the archive */
    unsigned long long bytes;
    char buf[1 << 16];
    size_t len;
    int err; /* errno of the first failed write */
} tar_out;

static void out_flush(tar_out *o)
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

static void out_write(tar_out *o, const void *data, size_t n)
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
            out_flush(o);
    }
}

static void out_pad(tar_out *o, unsigned long long size)
{
    static const char zero[BLK];
    if (size % BLK)
        out_write(o, zero, BLK - size % BLK);
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
    out_write(o, h, sizeof(h));
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
static void tar_header(tar_out *o, char type, const char *name, const char *link, unsigned mode,
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
        out_write(o, rec.s, rec.len);
        out_pad(o, rec.len);
        free(pname);
        kwt_buf_free(&rec);
    }
    raw_header(o, type, name, link, mode, big ? 0 : size, mtime);
}

/* ---- ca backup ---- */

typedef struct {
    const char *root;
    char state[64]; /* the current state.N */
    bk_set set;
    long long *mtimes;
    kwt_buf skipped; /* JSON array elements */
    size_t nskipped;
    int rc;
} bk_walk;

static void skip(bk_walk *w, const char *rel, const char *why)
{
    fprintf(stderr, "keyward: warning: %s left out of the backup: %s\n", shown(rel), why);
    kwt_buf_add(&w->skipped, w->nskipped++ ? ",{\"path\":" : "{\"path\":");
    kwt_buf_json_str(&w->skipped, rel);
    kwt_buf_add(&w->skipped, ",\"reason\":");
    kwt_buf_json_str(&w->skipped, why);
    kwt_buf_add(&w->skipped, "}");
}

/* A private key in PEM (any "-----BEGIN ... PRIVATE KEY-----" line), or a PKCS#12 file. */
static bool looks_like_key(const char *name, const char *data, size_t len)
{
    const char *ext = strrchr(name, '.');
    if (ext && (!strcasecmp(ext, ".p12") || !strcasecmp(ext, ".pfx")))
        return true;
    for (const char *p = data, *e = data + len; p && p < e;) {
        p = memmem(p, (size_t)(e - p), "-----BEGIN ", 11);
        if (!p)
            break;
        const char *eol = memchr(p, '\n', (size_t)(e - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(e - p);
        if (memmem(p, n, "PRIVATE KEY-----", 16))
            return true;
        p += 11;
    }
    return false;
}

static bool is_tmp_name(const char *n)
{
    return strstr(n, ".tmp.") != NULL || strstr(n, ".lnk.") != NULL;
}

static void add_mtime(bk_walk *w, long long t)
{
    long long *m = realloc(w->mtimes, w->set.cap * sizeof(*m));
    if (!m) {
        fputs("keyward: out of memory\n", stderr);
        exit(KWT_FAIL);
    }
    w->mtimes = m;
    m[w->set.n - 1] = t;
}

/* Every directory, file and link under rel (sorted, parents before children): their modes,
 * and each file's size and SHA-256. */
static void walk(bk_walk *w, const char *rel)
{
    char *abs = *rel ? kwt_path(w->root, rel) : kwt_strdup(w->root);
    struct dirent **list = NULL;
    int n = scandir(abs, &list, NULL, alphasort);
    if (n < 0) {
        w->rc = kwt_err(KWT_FAIL, "cannot read %s: %s", abs, strerror(errno));
        free(abs);
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        char *r = *rel ? kwt_path(rel, name) : kwt_strdup(name);
        char *p = kwt_path(w->root, r);
        struct stat st;
        const char *bad = path_problem(r);
        if (!strcmp(name, ".") || !strcmp(name, "..") || is_tmp_name(name) || w->rc) {
            ; /* temporary files of writers that died; nothing after an error */
        } else if (!*rel && !strncmp(name, "state.", 6) && name[6] &&
                   strspn(name + 6, "0123456789") == strlen(name + 6) &&
                   strcmp(name, w->state) != 0) {
            ; /* the staging state of a writer that died: not the CA's state */
        } else if (!*rel && !strcmp(name, BK_MANIFEST)) {
            skip(w, r, "MANIFEST is the name of the backup's own manifest");
        } else if (bad) {
            skip(w, r, bad);
        } else if (lstat(p, &st) != 0) {
            w->rc = kwt_err(KWT_FAIL, "cannot read %s: %s", p, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            bk_entry *e = set_add(&w->set, 'd', r);
            e->mode = st.st_mode & 07777;
            add_mtime(w, (long long)st.st_mtime);
            walk(w, r);
        } else if (S_ISLNK(st.st_mode)) {
            char buf[PATH_MAX];
            ssize_t l = readlink(p, buf, sizeof(buf) - 1);
            if (l < 0) {
                w->rc = kwt_err(KWT_FAIL, "cannot read the link %s: %s", p, strerror(errno));
            } else {
                buf[l] = '\0';
                bk_entry *e = set_add(&w->set, 'l', r);
                e->mode = 0777;
                e->target = kwt_strdup(buf);
                add_mtime(w, (long long)st.st_mtime);
            }
        } else if (S_ISREG(st.st_mode)) {
            size_t len = 0;
            char *data = kwt_read_file(p, &len);
            if (!data) {
                w->rc = kwt_err(KWT_FAIL, "cannot read %s: %s", p, strerror(errno));
            } else if (looks_like_key(name, data, len)) {
                skip(w, r,
                     "it looks like a private key (PEM or PKCS#12); keyward keeps keys on "
                     "their tokens: move it out of the CA directory");
            } else {
                bk_entry *e = set_add(&w->set, 'f', r);
                e->mode = st.st_mode & 07777;
                e->size = len;
                if (!sha256_hex(data, len, e->sha))
                    w->rc = kwt_err(KWT_FAIL, "cannot compute the SHA-256 of %s", p);
                add_mtime(w, (long long)st.st_mtime);
            }
            free(data);
        } else {
            skip(w, r, "not a file, directory or link (a FIFO, socket or device)");
        }
        free(p);
        free(r);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    free(abs);
}

/* Writes the archive to fd: MANIFEST, then every entry; each file is read again and must still
 * have the SHA-256 the manifest gives for its first SIZE bytes (the audit log may grow
 * meanwhile: readers append to it). */
static int write_archive(bk_walk *w, int fd, const char *manifest, char sha_out[65])
{
    tar_out *o = calloc(1, sizeof(*o));
    if (!o)
        return kwt_err(KWT_FAIL, "out of memory");
    o->fd = fd;
    o->md = EVP_MD_CTX_new();
    int rc = 0;
    if (!o->md || EVP_DigestInit_ex(o->md, EVP_sha256(), NULL) != 1)
        rc = kwt_err(KWT_FAIL, "cannot compute SHA-256 (OpenSSL)");
    long long now = (long long)time(NULL);
    size_t mlen = strlen(manifest);
    if (rc == 0) {
        tar_header(o, '0', BK_MANIFEST, NULL, 0600, mlen, now);
        out_write(o, manifest, mlen);
        out_pad(o, mlen);
    }
    for (size_t i = 0; i < w->set.n && rc == 0 && !o->err; i++) {
        const bk_entry *e = &w->set.e[i];
        if (e->type == 'd') {
            char *name = kwt_asprintf("%s/", e->path);
            tar_header(o, '5', name, NULL, e->mode, 0, w->mtimes[i]);
            free(name);
        } else if (e->type == 'l') {
            tar_header(o, '2', e->path, e->target, e->mode, 0, w->mtimes[i]);
        } else {
            char *p = kwt_path(w->root, e->path), sha[65];
            size_t len = 0;
            char *data = kwt_read_file(p, &len);
            if (!data)
                rc = kwt_err(KWT_FAIL, "cannot read %s: %s", p, strerror(errno));
            else if (len < e->size || !sha256_hex(data, e->size, sha) || strcmp(sha, e->sha))
                rc = kwt_err(KWT_FAIL,
                             "%s changed while the backup was made (something wrote it without "
                             "the CA lock): run the backup again",
                             p);
            if (rc == 0) {
                tar_header(o, '0', e->path, NULL, e->mode, e->size, w->mtimes[i]);
                out_write(o, data, e->size);
                out_pad(o, e->size);
            }
            free(data);
            free(p);
        }
    }
    if (rc == 0) {
        /* the end: two zero blocks, then zeros to a whole record of 20 blocks, as tar does */
        static const char zero[BLK];
        out_write(o, zero, BLK);
        out_write(o, zero, BLK);
        while (o->bytes % (20 * BLK))
            out_write(o, zero, BLK);
        out_flush(o);
        if (o->err)
            rc = kwt_err(KWT_FAIL, "cannot write the backup: %s", strerror(o->err));
        else
            md_final_hex(o->md, sha_out);
    }
    EVP_MD_CTX_free(o->md);
    free(o);
    return rc;
}

static char *abs_path(const char *path)
{
    if (path[0] == '/')
        return kwt_strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return kwt_strdup(path);
    return kwt_path(cwd, path);
}

static char *dir_part(const char *path)
{
    const char *sl = strrchr(path, '/');
    if (!sl)
        return kwt_strdup(".");
    if (sl == path)
        return kwt_strdup("/");
    return kwt_asprintf("%.*s", (int)(sl - path), path);
}

/* Whether path lies in or under dir (both made real as far as they exist). */
static bool is_under(const char *path, const char *dir)
{
    char *parent = dir_part(path), real[PATH_MAX];
    bool under = false;
    if (realpath(parent, real)) {
        size_t n = strlen(dir);
        under = !strncmp(real, dir, n) && (real[n] == '\0' || real[n] == '/');
    }
    free(parent);
    return under;
}

/* The archive at out (an absolute path); res gets the --json result, text the text one. */
static int backup_to(kwt_ca *ca, const char *out, kwt_buf *res, kwt_buf *text)
{
    bk_walk w = {.root = ca->dir};
    kwt_buf_addn(&w.skipped, "", 0);
    char *link = kwt_path(ca->dir, "state");
    ssize_t l = readlink(link, w.state, sizeof(w.state) - 1);
    free(link);
    if (l <= 0)
        return kwt_err(KWT_FAIL, "%s/state is not a link to the CA state: the CA is damaged",
                       ca->dir);
    w.state[l] = '\0';
    walk(&w, "");
    for (size_t i = 0; i < w.set.n && w.rc == 0; i++) {
        const char *bad = entry_problem(&w.set, &w.set.e[i]);
        if (bad)
            w.rc = kwt_err(KWT_FAIL,
                           "%s/%s: %s; a restore would refuse it: remove it from the CA "
                           "directory",
                           ca->dir, shown(w.set.e[i].path), bad);
    }
    int rc = w.rc;
    char *manifest = rc ? NULL : manifest_text(&w.set, ca->dir, w.state);
    char *tmp = kwt_asprintf("%s.tmp.%ld", out, (long)getpid());
    char sha[65] = "";
    int fd = -1;
    if (rc == 0) {
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            rc = kwt_err(KWT_FAIL, "cannot create %s: %s", tmp, strerror(errno));
    }
    if (rc == 0)
        rc = write_archive(&w, fd, manifest, sha);
    if (rc == 0 && (fchmod(fd, 0600) != 0 || fsync(fd) != 0))
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", tmp, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, out) != 0)
        rc = kwt_err(KWT_FAIL, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (rc != 0 && fd >= 0)
        unlink(tmp);
    if (rc == 0) {
        char *d = dir_part(out);
        kwt_fsync_dir(d);
        free(d);
    }
    size_t nf = 0, nd = 0, nl = 0;
    for (size_t i = 0; i < w.set.n; i++)
        *(w.set.e[i].type == 'f' ? &nf : w.set.e[i].type == 'd' ? &nd : &nl) += 1;
    if (rc == 0) {
        struct stat st;
        long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
        kwt_buf_add(res, "{\"file\":");
        kwt_buf_json_str(res, out);
        kwt_buf_printf(res,
                       ",\"bytes\":%lld,\"sha256\":\"%s\",\"files\":%zu,\"directories\":%zu,"
                       "\"links\":%zu,\"generation\":%d,\"skipped\":[%s]}",
                       bytes, sha, nf, nd, nl, ca->conf.generation, w.skipped.s);
        kwt_buf_printf(text,
                       "backup written to %s (mode 0600): %zu files, %zu directories, %zu links, "
                       "%lld bytes%s\n  sha256: %s\n",
                       out, nf, nd, nl, bytes,
                       w.nskipped ? "; some files left out (see the warnings)" : "", sha);
    }
    free(tmp);
    free(manifest);
    free(w.mtimes);
    kwt_buf_free(&w.skipped);
    set_free(&w.set);
    return rc;
}

int kwt_cmd_ca_backup(int argc, char **argv)
{
    const char *out = NULL;
    kwt_optspec spec[] = {{"--out", &out, NULL}, {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca backup", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!out || !*out)
        return kwt_err(KWT_USAGE, "ca backup needs --out FILE (see keyward help ca backup)");
    if (kwt_g.dry_run)
        return kwt_err(KWT_USAGE, "ca backup runs no openssl step: run it without --dry-run");
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return kwt_err(KWT_USAGE, "--out %s is a directory: name the archive file", out);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    char *outabs = abs_path(out);
    if (is_under(outabs, ca.dir)) {
        rc = kwt_err(KWT_USAGE,
                     "--out %s is inside the CA directory %s: every backup would hold the "
                     "earlier ones; write it elsewhere",
                     out, ca.dir);
        free(outabs);
        kwt_ca_close(&ca);
        return rc;
    }
    /* a shared lock: writers (which take it exclusively) wait until the backup is written,
     * another backup or any reader may run beside it */
    char *lp = kwt_path(ca.dir, ".lock");
    int lock = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_SH) != 0)
        rc = kwt_err(KWT_FAIL, "cannot lock the CA directory %s: %s", ca.dir, strerror(errno));
    free(lp);
    /* a rotation may have finished while we waited for the lock */
    char *confp = kwt_path(ca.dir, "keyward.conf");
    if (rc == 0) {
        kwt_conf_free(&ca.conf);
        kwt_conf_load(&ca.conf, confp);
    }
    free(confp);
    kwt_buf res = {0}, text = {0};
    if (rc == 0)
        rc = backup_to(&ca, outabs, &res, &text);
    kwt_audit_meta = rc == 0 ? res.s : NULL;
    kwt_audit(&ca, "ca backup", NULL, NULL, NULL, rc);
    kwt_audit_meta = NULL;
    if (lock >= 0)
        close(lock);
    if (rc == 0 && kwt_g.json)
        printf("%s\n", res.s);
    else if (rc == 0 && !kwt_g.quiet)
        fputs(text.s, stdout);
    kwt_buf_free(&res);
    kwt_buf_free(&text);
    free(outabs);
    kwt_ca_close(&ca);
    return rc;
}

/* ---- reading a tar archive ---- */

typedef struct {
    int fd;
    const char *file;       /* for messages */
    unsigned long long off; /* bytes read */
    EVP_MD_CTX *md;         /* SHA-256 of the archive */
    char why[1024];         /* why it is refused */
} tar_in;

/* 0: n bytes read; 1: the archive ended first; -1: a read error (in why). */
static int in_read(tar_in *t, void *buf, size_t n)
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

typedef struct {
    char flag; /* the typeflag */
    char *name, *link;
    unsigned long long size;
    unsigned mode;
} tar_mem;

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

static int refuse(tar_in *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(tar_in *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    return -1;
}

/* The zeros after a member's data of size bytes, to the next 512-byte block (as in_read). */
static int read_pad(tar_in *t, unsigned long long size)
{
    unsigned char b[BLK];
    return size % BLK ? in_read(t, b, BLK - size % BLK) : 0;
}

/* pax records "LEN key=value\n": path, linkpath and size are used, the others ignored. */
static int parse_pax(tar_in *t, const char *d, size_t len, char **path, char **link,
                     long long *size)
{
    for (size_t off = 0; off < len;) {
        char *end = NULL;
        unsigned long n = d[off] >= '1' && d[off] <= '9' ? strtoul(d + off, &end, 10) : 0;
        if (!end || *end != ' ' || n < 5 || n > len - off || d[off + n - 1] != '\n')
            return refuse(t, "it has a damaged pax header at byte %llu", t->off);
        const char *kv = end + 1, *stop = d + off + n - 1,
                   *eq = memchr(kv, '=', (size_t)(stop - kv));
        if (!eq || memchr(kv, '\0', (size_t)(stop - kv)))
            return refuse(t, "it has a damaged pax record at byte %llu", t->off);
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
                return refuse(t, "it has a damaged pax size at byte %llu", t->off);
        } else {
            free(val);
        }
        off += n;
    }
    return 0;
}

/* The next member in *m (1), the end of the archive (0), or a refusal in t->why (-1). */
static int tar_next(tar_in *t, tar_mem *m)
{
    unsigned char h[BLK];
    char *ppath = NULL, *plink = NULL;
    long long psize = -1;
    memset(m, 0, sizeof(*m));
    for (;;) {
        unsigned long long at = t->off;
        int r = in_read(t, h, BLK);
        if (r > 0)
            r = refuse(t, "it is truncated (no end-of-archive marker)");
        if (r == 0 && all_zero(h)) {
            r = in_read(t, h, BLK);
            if (r > 0 || (r == 0 && !all_zero(h)))
                r = refuse(t, "it is truncated or damaged (a lone zero block at byte %llu)", at);
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
            r = refuse(
                t, "it is not a tar archive, or damaged (a bad header checksum at byte %llu)", at);
        if (r == 0 && memcmp(h + 257, "ustar", 5) != 0)
            r = refuse(t, "it is not a POSIX (ustar/pax) tar archive");
        if (r == 0 && (!parse_octal(h + 124, 12, &size) || !parse_octal(h + 100, 8, &mode)))
            r = refuse(t, "it has a damaged header at byte %llu", at);
        if (r == 0 && h[156] == 'x') {
            if (size > BK_PAX_MAX) {
                r = refuse(t, "it has a pax header of %llu bytes at byte %llu", size, at);
            } else {
                size_t padded = (size_t)(size + BLK - 1) / BLK * BLK;
                char *d = malloc(padded + 1);
                if (!d || (r = in_read(t, d, padded)) != 0) {
                    r = r < 0 ? -1 : refuse(t, "it is truncated (it ends inside a pax header)");
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

static void mem_free(tar_mem *m)
{
    free(m->name);
    free(m->link);
    memset(m, 0, sizeof(*m));
}

static const char *flag_problem(const tar_mem *m)
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

typedef struct {
    bk_set set;
    size_t files, dirs, links;
    char sha[65]; /* of the whole archive */
} rs_scan;

static int mkdir_p_sorted(const char *top, bk_set *s, tar_in *t);

/* One pass over the archive: every check; with top, each file is also written below top
 * (the directories first, the links at the end). 0, or -1 with the reason in t->why. */
static int scan(tar_in *t, rs_scan *sc, const char *top)
{
    memset(sc, 0, sizeof(*sc));
    if (lseek(t->fd, 0, SEEK_SET) != 0)
        return refuse(t, "cannot read it: %s", strerror(errno));
    t->off = 0;
    EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
    tar_mem m;
    int r, k = 0;
    while ((r = tar_next(t, &m)) == 1) {
        const char *bad = flag_problem(&m);
        char type = m.flag == '5' ? 'd' : m.flag == '2' ? 'l' : 'f';
        if (type == 'd' && strlen(m.name) > 1 && m.name[strlen(m.name) - 1] == '/')
            m.name[strlen(m.name) - 1] = '\0';
        if (bad && m.flag == '1')
            r = refuse(t, "member %s: a hard link to %s (a keyward backup has none)", shown(m.name),
                       shown(m.link));
        else if (bad)
            r = refuse(t, "member %s: %s", shown(m.name), bad);
        else if (k == 0 && (strcmp(m.name, BK_MANIFEST) || type != 'f'))
            r = refuse(t, "it is not a keyward backup: its first member is %s, not MANIFEST",
                       shown(m.name));
        else if (k == 0 && m.size > BK_MANIFEST_MAX)
            r = refuse(t, "its MANIFEST is %llu bytes, more than a manifest can be", m.size);
        else if ((bad = path_problem(m.name)))
            r = refuse(t, "member %s: %s", shown(m.name), bad);
        else if (type == 'l' && m.link[0] == '/')
            r = refuse(t, "member %s: a symbolic link to %s, outside the directory", shown(m.name),
                       shown(m.link));
        else if (type != 'f' && m.size)
            r = refuse(t, "member %s: a %s with data", shown(m.name), type_name(type));
        if (r == 1 && k == 0) {
            /* the manifest */
            char *text = malloc((size_t)m.size + 1);
            int rr = text ? in_read(t, text, (size_t)m.size) : -1;
            if (rr == 0)
                rr = read_pad(t, m.size);
            if (rr > 0)
                r = refuse(t, "it is truncated (it ends inside the MANIFEST)");
            else if (rr < 0)
                r = -1;
            if (r == 1) {
                text[m.size] = '\0';
                char why[768];
                const char *mbad = strlen(text) != m.size
                                       ? "it holds a NUL byte"
                                       : manifest_parse(text, &sc->set, why, sizeof(why));
                if (mbad)
                    r = refuse(t, "its MANIFEST is refused: %s", mbad);
                else if (!set_find(&sc->set, "keyward.conf") || !set_find(&sc->set, "state"))
                    r = refuse(t, "it is not the backup of a CA directory (no keyward.conf or "
                                  "state in its MANIFEST)");
            }
            free(text);
            if (r == 1 && top)
                r = mkdir_p_sorted(top, &sc->set, t) == 0 ? 1 : -1;
        } else if (r == 1) {
            bk_entry *e = set_find(&sc->set, m.name);
            if (!e)
                r = refuse(t, "member %s is not in the MANIFEST", shown(m.name));
            else if (e->seen)
                r = refuse(t, "member %s is in the archive twice", shown(m.name));
            else if (e->type != type)
                r = refuse(t, "member %s is a %s, the MANIFEST lists a %s", shown(m.name),
                           type_name(type), type_name(e->type));
            else if (type == 'l' && strcmp(e->target, m.link))
                r = refuse(t, "member %s links to %s, the MANIFEST says %s", shown(m.name),
                           shown(m.link), shown(e->target));
            else if (type == 'f' && e->size != m.size)
                r = refuse(t, "member %s has %llu bytes, the MANIFEST says %llu", shown(m.name),
                           m.size, e->size);
            if (r == 1 && type == 'f') {
                /* the data: hashed, and with top written (nothing is written outside top: every
                 * directory of it is one we made, and links are made at the end) */
                int fd = -1;
                char *p = top ? kwt_path(top, m.name) : NULL;
                if (p) {
                    fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                    if (fd < 0)
                        r = refuse(t, "cannot create %s: %s", p, strerror(errno));
                }
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);
                unsigned char buf[1 << 16];
                for (unsigned long long left = m.size; r == 1 && left;) {
                    size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
                    int rr = in_read(t, buf, n);
                    if (rr)
                        r = rr < 0
                                ? -1
                                : refuse(t, "it is truncated (it ends inside %s)", shown(m.name));
                    else {
                        EVP_DigestUpdate(md, buf, n);
                        left -= n;
                        if (fd >= 0 && write(fd, buf, n) != (ssize_t)n)
                            r = refuse(t, "cannot write %s: %s", p, strerror(errno));
                    }
                }
                char sha[65] = "";
                md_final_hex(md, sha);
                EVP_MD_CTX_free(md);
                if (r == 1) {
                    int rr = read_pad(t, m.size);
                    if (rr)
                        r = rr < 0
                                ? -1
                                : refuse(t, "it is truncated (it ends inside %s)", shown(m.name));
                }
                if (r == 1 && strcmp(sha, e->sha))
                    r = refuse(t,
                               "member %s does not match its SHA-256 in the MANIFEST (damaged or "
                               "altered)",
                               shown(m.name));
                if (fd >= 0 && r == 1 && fchmod(fd, e->mode & 0777) != 0)
                    r = refuse(t, "cannot set the mode of %s: %s", p, strerror(errno));
                if (fd >= 0)
                    close(fd);
                free(p);
            }
            if (r == 1)
                e->seen = true;
        }
        mem_free(&m);
        if (r != 1)
            return -1;
        k++;
    }
    if (r < 0)
        return -1;
    if (k == 0)
        return refuse(t, "it is an empty archive, not a keyward backup");
    for (size_t i = 0; i < sc->set.n; i++) {
        bk_entry *e = &sc->set.e[i];
        if (e->type != 'l' && !e->seen)
            return refuse(t, "%s is in the MANIFEST but not in the archive", shown(e->path));
        if (e->type == 'l' && !e->seen)
            return refuse(t, "the link %s is in the MANIFEST but not in the archive",
                          shown(e->path));
        *(e->type == 'f' ? &sc->files : e->type == 'd' ? &sc->dirs : &sc->links) += 1;
    }
    /* the rest (the zeros of the last record) counts for the archive's SHA-256 */
    unsigned char b[BLK];
    for (ssize_t n; (n = read(t->fd, b, sizeof(b))) > 0;)
        EVP_DigestUpdate(t->md, b, (size_t)n);
    md_final_hex(t->md, sc->sha);
    if (!top)
        return 0;
    /* the links, then each directory's own mode (the deepest first) */
    for (size_t i = 0; i < sc->set.n; i++) {
        const bk_entry *e = &sc->set.e[i];
        char *p = kwt_path(top, e->path);
        int rc = e->type == 'l' ? symlink(e->target, p) : 0;
        free(p);
        if (rc != 0)
            return refuse(t, "cannot make the link %s: %s", shown(e->path), strerror(errno));
    }
    for (size_t i = sc->set.n; i-- > 0;) {
        const bk_entry *e = &sc->set.e[i];
        char *p = kwt_path(top, e->path);
        int rc = e->type == 'd' ? chmod(p, e->mode & 0777) : 0;
        free(p);
        if (rc != 0)
            return refuse(t, "cannot set the mode of %s: %s", shown(e->path), strerror(errno));
    }
    return 0;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp((*(bk_entry *const *)a)->path, (*(bk_entry *const *)b)->path);
}

/* Every directory of the manifest under top, parents first (a parent's name sorts before its
 * children's), 0700 until the end. */
static int mkdir_p_sorted(const char *top, bk_set *s, tar_in *t)
{
    bk_entry **v = calloc(s->n + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < s->n; i++)
        if (s->e[i].type == 'd')
            v[n++] = &s->e[i];
    if (!v)
        return refuse(t, "out of memory");
    qsort(v, n, sizeof(*v), cmp_path);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = kwt_path(top, v[i]->path);
        if (mkdir(p, 0700) != 0)
            rc = refuse(t, "cannot create %s: %s", p, strerror(errno));
        free(p);
    }
    free(v);
    return rc;
}

/* ---- ca restore ---- */

static bool has_ca(const char *dir)
{
    char *p = kwt_path(dir, "keyward.conf");
    bool yes = kwt_exists(p);
    free(p);
    return yes;
}

static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

int kwt_cmd_ca_restore(int argc, char **argv)
{
    bool force = false;
    kwt_optspec spec[] = {{"--force", NULL, &force}, {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca restore", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1)
        return kwt_err(KWT_USAGE, "ca restore needs the backup FILE (see keyward help ca restore)");
    if (kwt_g.dry_run)
        return kwt_err(KWT_USAGE, "ca restore runs no openssl step: run it without --dry-run");
    const char *file = pos[0];
    char *target = abs_path(kwt_g.dir);
    while (strlen(target) > 1 && target[strlen(target) - 1] == '/')
        target[strlen(target) - 1] = '\0';
    char *parent = dir_part(target);
    struct stat st;
    bool exists = lstat(target, &st) == 0, replace = false;
    if (exists && S_ISLNK(st.st_mode))
        rc = kwt_err(KWT_USAGE, "%s is a symbolic link: give the directory it points to", target);
    else if (exists && !S_ISDIR(st.st_mode))
        rc = kwt_err(KWT_USAGE, "%s exists and is not a directory", target);
    else if (!strcmp(target, "/"))
        rc = kwt_err(KWT_USAGE, "--dir / : restore into a directory of its own");
    else if (exists && !dir_empty(target) && !force)
        rc = kwt_err(KWT_FAIL,
                     "%s exists and is not empty%s: restore into a new directory, or replace it "
                     "with --force",
                     target, has_ca(target) ? " (a CA is there)" : "");
    else if (!exists && errno != ENOENT)
        rc = kwt_err(KWT_FAIL, "cannot use %s: %s", target, strerror(errno));
    else if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = kwt_err(KWT_FAIL, "%s does not exist: create it first", parent);
    replace = exists && !dir_empty(target);
    tar_in t = {.fd = -1, .file = file};
    if (rc == 0) {
        t.fd = open(file, O_RDONLY | O_CLOEXEC);
        if (t.fd < 0 || fstat(t.fd, &st) != 0)
            rc = kwt_err(KWT_FAIL, "cannot open the backup %s: %s", file, strerror(errno));
        else if (!S_ISREG(st.st_mode))
            rc = kwt_err(KWT_FAIL, "the backup %s is not a regular file", file);
    }
    t.md = EVP_MD_CTX_new();
    rs_scan first = {0}, second = {0};
    char *tmp = NULL;
    /* 1: verify everything, write nothing */
    if (rc == 0 && scan(&t, &first, NULL) != 0)
        rc = kwt_err(KWT_FAIL, "%s refused: %s; nothing was written", file, t.why);
    /* 2: write it all into a new directory beside the target, checking again */
    if (rc == 0) {
        const char *base = strrchr(target, '/') + 1;
        tmp = kwt_asprintf("%s/.%s.restore.XXXXXX", strcmp(parent, "/") ? parent : "", base);
        if (!mkdtemp(tmp)) {
            rc = kwt_err(KWT_FAIL, "cannot create a directory beside %s: %s", target,
                         strerror(errno));
            free(tmp);
            tmp = NULL;
        }
    }
    if (rc == 0 && scan(&t, &second, tmp) != 0)
        rc = kwt_err(KWT_FAIL, "%s: %s; nothing was written to %s", file, t.why, target);
    if (rc == 0 && strcmp(first.sha, second.sha))
        rc = kwt_err(KWT_FAIL, "%s changed while it was restored; nothing was written to %s", file,
                     target);
    if (rc == 0) {
        int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) != 0)
            rc = kwt_err(KWT_FAIL, "cannot flush %s to disk: %s", tmp, strerror(errno));
        if (dfd >= 0)
            close(dfd);
    }
    /* 3: into place; an existing CA is swapped out under its lock, then removed */
    if (rc == 0 && replace) {
        char *lp = kwt_path(target, ".lock");
        int lock = open(lp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        free(lp);
        if (lock >= 0)
            flock(lock, LOCK_EX);
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_EXCHANGE) != 0)
            rc = kwt_err(KWT_FAIL, "cannot replace %s: %s", target, strerror(errno));
        if (lock >= 0)
            close(lock);
    } else if (rc == 0 && rename(tmp, target) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot rename %s to %s: %s", tmp, target, strerror(errno));
    }
    if (rc == 0)
        kwt_fsync_dir(parent);
    if (tmp)
        kwt_rm_rf(tmp); /* the unfinished restore, or the CA it replaced */
    if (t.fd >= 0)
        close(t.fd);
    EVP_MD_CTX_free(t.md);
    set_free(&first.set);
    set_free(&second.set);
    free(tmp);
    if (rc != 0) {
        free(target);
        free(parent);
        return rc;
    }
    /* 4: open it as a writer (regenerates openssl.cnf for its new place), audit, check */
    char *fileabs = abs_path(file);
    kwt_buf res = {0};
    kwt_buf_add(&res, "{\"dir\":");
    kwt_buf_json_str(&res, target);
    kwt_buf_add(&res, ",\"from\":");
    kwt_buf_json_str(&res, fileabs);
    kwt_buf_printf(&res,
                   ",\"sha256\":\"%s\",\"files\":%zu,\"directories\":%zu,\"links\":%zu,"
                   "\"replaced\":%s",
                   second.sha, second.files, second.dirs, second.links, replace ? "true" : "false");
    kwt_g.dir = target;
    kwt_ca ca;
    char *doc = NULL;
    int failed = -1;
    rc = kwt_ca_open(&ca, true);
    if (rc == 0) {
        kwt_buf meta = {0};
        kwt_buf_add(&meta, res.s);
        kwt_buf_add(&meta, "}");
        kwt_audit_meta = meta.s;
        kwt_audit(&ca, "ca restore", NULL, NULL, NULL, 0);
        kwt_audit_meta = NULL;
        kwt_buf_free(&meta);
        failed = kwt_check_report(&ca, 30, &doc);
        kwt_ca_close(&ca);
    }
    if (kwt_g.json) {
        kwt_buf_add(&res, ",\"check\":");
        if (doc) {
            size_t l = strlen(doc);
            while (l && doc[l - 1] == '\n')
                doc[--l] = '\0';
        }
        kwt_buf_add(&res, doc ? doc : "null");
        kwt_buf_add(&res, "}\n");
        fputs(res.s, stdout);
    } else {
        kwt_info("restored %s into %s (%zu files, %zu directories, %zu links)%s", fileabs, target,
                 second.files, second.dirs, second.links,
                 replace ? ", replacing the CA there" : "");
        if (doc && !kwt_g.quiet)
            fputs(doc, stdout);
    }
    if (rc == 0 && failed != 0)
        rc = kwt_err(KWT_FAIL,
                     "restored into %s, but keyward check fails there (%d failed): the token with "
                     "the CA key, the module and the PIN file must be on this host",
                     target, failed);
    free(doc);
    kwt_buf_free(&res);
    free(fileabs);
    free(target);
    free(parent);
    return rc;
}
