/* SPDX-License-Identifier: Apache-2.0 */
/* Messages, string buffers and crash-safe file writes for the keyward command. */
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

kwt_opts kwt_g;
bool kwt_defer_sync;
static char last_error[1024];
/* A failed openssl step named its real cause (kwt_cause): the caller's own message about the
 * same failure guesses (e.g. "policy") and must neither be shown nor replace it in audit.log. */
static bool cause_pending;

int kwt_err(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cause_pending) {
        cause_pending = false;
        if (kwt_g.verbose)
            fprintf(stderr, "keyward: (then: %s)\n", msg);
        return code;
    }
    snprintf(last_error, sizeof(last_error), "%s", msg);
    fprintf(stderr, "keyward: %s\n", last_error);
    return code;
}

void kwt_cause(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "keyward: %s\n", last_error);
    cause_pending = true;
}

void kwt_note(const char *fmt, ...)
{
    va_list ap;
    if (kwt_g.quiet)
        return;
    fputs("keyward: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void kwt_info(const char *fmt, ...)
{
    va_list ap;
    if (kwt_g.json || kwt_g.quiet)
        return; /* machine output only on stdout; progress notes would break it */
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

const char *kwt_last_error(void)
{
    return last_error;
}

void kwt_set_error(const char *msg)
{
    snprintf(last_error, sizeof(last_error), "%s", msg);
    cause_pending = false;
}

void kwt_clear_error(void)
{
    last_error[0] = '\0';
    cause_pending = false;
}

static void oom(void)
{
    fputs("keyward: out of memory\n", stderr);
    exit(KWT_FAIL);
}

void kwt_buf_addn(kwt_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            oom();
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void kwt_buf_add(kwt_buf *b, const char *s)
{
    kwt_buf_addn(b, s, strlen(s));
}

void kwt_buf_printf(kwt_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom();
    kwt_buf_addn(b, s, (size_t)n);
    free(s);
}

void kwt_buf_json_str(kwt_buf *b, const char *s)
{
    kwt_buf_add(b, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char tmp[8];
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            kwt_buf_addn(b, tmp, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
            kwt_buf_add(b, tmp);
        } else if (*p < 0x80) {
            kwt_buf_addn(b, (const char *)p, 1);
        } else {
            /* UTF-8 sequences are copied whole; a byte that starts none (hostile input such as
             * a certificate's raw string) becomes U+FFFD, so the document stays valid JSON */
            int n = (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
            bool ok = n > 0 && *p != 0xc0 && *p != 0xc1 && *p <= 0xf4;
            for (int i = 1; ok && i < n; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                kwt_buf_addn(b, (const char *)p, (size_t)n);
                p += n - 1;
            } else {
                kwt_buf_add(b, "\\ufffd");
            }
        }
    }
    kwt_buf_add(b, "\"");
}

void kwt_buf_free(kwt_buf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

char *kwt_strdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        oom();
    return p;
}

char *kwt_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom();
    return s;
}

char *kwt_path(const char *dir, const char *name)
{
    return kwt_asprintf("%s/%s", dir, name);
}

char *kwt_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    kwt_buf b = {0};
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            kwt_buf_free(&b);
            errno = e;
            return NULL;
        }
        if (n == 0)
            break;
        kwt_buf_addn(&b, tmp, (size_t)n);
    }
    close(fd);
    if (!b.s)
        kwt_buf_addn(&b, "", 0);
    if (len)
        *len = b.len;
    return b.s;
}

int kwt_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int kwt_fsync_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static char *dir_of(const char *path)
{
    char *d = kwt_strdup(path);
    char *slash = strrchr(d, '/');
    if (!slash) {
        free(d);
        return kwt_strdup(".");
    }
    if (slash == d)
        slash[1] = '\0';
    else
        *slash = '\0';
    return d;
}

int kwt_write_atomic(const char *path, const void *data, size_t len, int mode)
{
    char *tmp = kwt_asprintf("%s.tmp.%ld", path, (long)getpid());
    /* O_EXCL: never write through a link someone planted at the temp name (outputs may be in
     * shared directories such as /tmp); a stale temp file of ours is removed first */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) != 0 || (!kwt_defer_sync && fsync(fd) != 0))
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    free(tmp);
    if (!kwt_defer_sync) {
        char *d = dir_of(path);
        kwt_fsync_dir(d);
        free(d);
    }
    return 0;
fail : {
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    errno = e;
    return -1;
}
}

int kwt_check_out_path(const char *opt, const char *path, bool dir)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (S_ISLNK(st.st_mode))
        return kwt_err(KWT_USAGE,
                       "%s %s is a symbolic link: keyward neither writes through nor replaces a "
                       "link at an output path (one planted in a shared directory would redirect "
                       "the output); remove it or give another path",
                       opt, path);
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
        return kwt_err(KWT_USAGE,
                       "%s %s exists and is not a %s (a FIFO, device or %s); give another path",
                       opt, path, dir ? "directory" : "regular file", dir ? "file" : "directory");
    return 0;
}

int kwt_copy_file(const char *from, const char *to, int mode)
{
    size_t len;
    char *data = kwt_read_file(from, &len);
    if (!data)
        return -1;
    int rc = kwt_write_atomic(to, data, len, mode);
    free(data);
    return rc;
}

int kwt_symlink_atomic(const char *target, const char *linkpath)
{
    bool sync = !kwt_defer_sync;
    char *tmp = kwt_asprintf("%s.lnk.%ld", linkpath, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0) {
        free(tmp);
        return -1;
    }
    if (rename(tmp, linkpath) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        errno = e;
        return -1;
    }
    free(tmp);
    if (sync) {
        char *d = dir_of(linkpath);
        kwt_fsync_dir(d);
        free(d);
    }
    return 0;
}

bool kwt_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int kwt_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = kwt_path(path, de->d_name);
        kwt_rm_rf(p);
        free(p);
    }
    closedir(d);
    return rmdir(path);
}

char *kwt_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = kwt_asprintf("%s/keyward.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

int kwt_parse_args(const char *cmd, int argc, char **argv, const kwt_optspec *spec,
                   const char **pos, int maxpos, int *npos)
{
    *npos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            kwt_usage(cmd, stdout);
            return -1;
        }
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a) : strlen(a);
            const kwt_optspec *o = NULL;
            for (const kwt_optspec *s = spec; s && s->name; s++)
                if (strlen(s->name) == n && !strncmp(s->name, a, n))
                    o = s;
            if (!o)
                return kwt_err(KWT_USAGE, "%s: unknown option %.*s (see keyward help %s)", cmd,
                               (int)n, a, cmd);
            if (o->flag) {
                if (eq)
                    return kwt_err(KWT_USAGE, "%s: %s takes no value", cmd, o->name);
                *o->flag = true;
            } else if (eq) {
                *o->val = eq + 1;
            } else {
                if (i + 1 >= argc)
                    return kwt_err(KWT_USAGE, "%s: %s needs a value", cmd, o->name);
                *o->val = argv[++i];
            }
            continue;
        }
        if (*npos >= maxpos)
            return kwt_err(KWT_USAGE, "%s: unexpected argument '%s'", cmd, a);
        pos[(*npos)++] = a;
    }
    return 0;
}
