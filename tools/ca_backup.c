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
 * renamed into place only when the whole archive was written (ca_restore.c). */
#include "ca_backup_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    fprintf(stderr, "keyward: warning: %s left out of the backup: %s\n", bk_shown(rel), why);
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
        const char *bad = bk_path_problem(r);
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
            bk_entry *e = bk_set_add(&w->set, 'd', r);
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
                bk_entry *e = bk_set_add(&w->set, 'l', r);
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
                bk_entry *e = bk_set_add(&w->set, 'f', r);
                e->mode = st.st_mode & 07777;
                e->size = len;
                if (!bk_sha256_hex(data, len, e->sha))
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
        tar_out_write(o, manifest, mlen);
        tar_out_pad(o, mlen);
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
            else if (len < e->size || !bk_sha256_hex(data, e->size, sha) || strcmp(sha, e->sha))
                rc = kwt_err(KWT_FAIL,
                             "%s changed while the backup was made (something wrote it without "
                             "the CA lock): run the backup again",
                             p);
            if (rc == 0) {
                tar_header(o, '0', e->path, NULL, e->mode, e->size, w->mtimes[i]);
                tar_out_write(o, data, e->size);
                tar_out_pad(o, e->size);
            }
            free(data);
            free(p);
        }
    }
    if (rc == 0) {
        /* the end: two zero blocks, then zeros to a whole record of 20 blocks, as tar does */
        static const char zero[BLK];
        tar_out_write(o, zero, BLK);
        tar_out_write(o, zero, BLK);
        while (o->bytes % (20 * BLK))
            tar_out_write(o, zero, BLK);
        tar_out_flush(o);
        if (o->err)
            rc = kwt_err(KWT_FAIL, "cannot write the backup: %s", strerror(o->err));
        else
            bk_md_final_hex(o->md, sha_out);
    }
    EVP_MD_CTX_free(o->md);
    free(o);
    return rc;
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
        const char *bad = bk_entry_problem(&w.set, &w.set.e[i]);
        if (bad)
            w.rc = kwt_err(KWT_FAIL,
                           "%s/%s: %s; a restore would refuse it: remove it from the CA "
                           "directory",
                           ca->dir, bk_shown(w.set.e[i].path), bad);
    }
    int rc = w.rc;
    char *manifest = rc ? NULL : bk_manifest_text(&w.set, ca->dir, w.state);
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
        char *d = bk_dir_part(out);
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
    bk_set_free(&w.set);
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
    if ((rc = kwt_check_out_path("--out", out, false)))
        return rc;
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    char *outabs = bk_abs_path(out);
    if (bk_is_under(outabs, ca.dir)) {
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
        if (kwt_conf_load(&ca.conf, confp) != 0)
            rc = kwt_err(KWT_FAIL, "cannot read %s: %s", confp, strerror(errno));
        else if (ca.conf.bad) /* fail closed, as kwt_ca_open does */
            rc = kwt_err(KWT_FAIL, "%s:%d: %s", confp, ca.conf.bad_line, ca.conf.bad);
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
