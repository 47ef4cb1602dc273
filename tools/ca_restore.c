/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca restore`: a backup archive into a new CA directory. The archive is read twice: the
 * first pass verifies everything and writes nothing; the second writes into a new directory
 * beside the target, checking again, and that is renamed into place at the end. */
#include "ca_backup_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    bk_set set;
    size_t files, dirs, links;
    char sha[65]; /* of the whole archive */
} rs_scan;

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
        return tar_refuse(t, "out of memory");
    qsort(v, n, sizeof(*v), cmp_path);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = kwt_path(top, v[i]->path);
        if (mkdir(p, 0700) != 0)
            rc = tar_refuse(t, "cannot create %s: %s", p, strerror(errno));
        free(p);
    }
    free(v);
    return rc;
}

/* One pass over the archive: every check; with top, each file is also written below top
 * (the directories first, the links at the end). 0, or -1 with the reason in t->why. */
static int scan(tar_in *t, rs_scan *sc, const char *top)
{
    memset(sc, 0, sizeof(*sc));
    if (lseek(t->fd, 0, SEEK_SET) != 0)
        return tar_refuse(t, "cannot read it: %s", strerror(errno));
    t->off = 0;
    EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
    tar_mem m;
    int r, k = 0;
    while ((r = tar_next(t, &m)) == 1) {
        const char *bad = tar_flag_problem(&m);
        char type = m.flag == '5' ? 'd' : m.flag == '2' ? 'l' : 'f';
        if (type == 'd' && strlen(m.name) > 1 && m.name[strlen(m.name) - 1] == '/')
            m.name[strlen(m.name) - 1] = '\0';
        if (bad && m.flag == '1')
            r = tar_refuse(t, "member %s: a hard link to %s (a keyward backup has none)",
                           bk_shown(m.name), bk_shown(m.link));
        else if (bad)
            r = tar_refuse(t, "member %s: %s", bk_shown(m.name), bad);
        else if (k == 0 && (strcmp(m.name, BK_MANIFEST) || type != 'f'))
            r = tar_refuse(t, "it is not a keyward backup: its first member is %s, not MANIFEST",
                           bk_shown(m.name));
        else if (k == 0 && m.size > BK_MANIFEST_MAX)
            r = tar_refuse(t, "its MANIFEST is %llu bytes, more than a manifest can be", m.size);
        else if ((bad = bk_path_problem(m.name)))
            r = tar_refuse(t, "member %s: %s", bk_shown(m.name), bad);
        else if (type == 'l' && m.link[0] == '/')
            r = tar_refuse(t, "member %s: a symbolic link to %s, outside the directory",
                           bk_shown(m.name), bk_shown(m.link));
        else if (type != 'f' && m.size)
            r = tar_refuse(t, "member %s: a %s with data", bk_shown(m.name), bk_type_name(type));
        if (r == 1 && k == 0) {
            /* the manifest */
            char *text = malloc((size_t)m.size + 1);
            int rr = text ? tar_in_read(t, text, (size_t)m.size) : -1;
            if (rr == 0)
                rr = tar_read_pad(t, m.size);
            if (rr > 0)
                r = tar_refuse(t, "it is truncated (it ends inside the MANIFEST)");
            else if (rr < 0)
                r = -1;
            if (r == 1) {
                text[m.size] = '\0';
                char why[768];
                const char *mbad = strlen(text) != m.size
                                       ? "it holds a NUL byte"
                                       : bk_manifest_parse(text, &sc->set, why, sizeof(why));
                if (mbad)
                    r = tar_refuse(t, "its MANIFEST is refused: %s", mbad);
                else if (!bk_set_find(&sc->set, "keyward.conf") || !bk_set_find(&sc->set, "state"))
                    r = tar_refuse(t, "it is not the backup of a CA directory (no keyward.conf or "
                                      "state in its MANIFEST)");
            }
            free(text);
            if (r == 1 && top)
                r = mkdir_p_sorted(top, &sc->set, t) == 0 ? 1 : -1;
        } else if (r == 1) {
            bk_entry *e = bk_set_find(&sc->set, m.name);
            if (!e)
                r = tar_refuse(t, "member %s is not in the MANIFEST", bk_shown(m.name));
            else if (e->seen)
                r = tar_refuse(t, "member %s is in the archive twice", bk_shown(m.name));
            else if (e->type != type)
                r = tar_refuse(t, "member %s is a %s, the MANIFEST lists a %s", bk_shown(m.name),
                               bk_type_name(type), bk_type_name(e->type));
            else if (type == 'l' && strcmp(e->target, m.link))
                r = tar_refuse(t, "member %s links to %s, the MANIFEST says %s", bk_shown(m.name),
                               bk_shown(m.link), bk_shown(e->target));
            else if (type == 'f' && e->size != m.size)
                r = tar_refuse(t, "member %s has %llu bytes, the MANIFEST says %llu",
                               bk_shown(m.name), m.size, e->size);
            if (r == 1 && type == 'f') {
                /* the data: hashed, and with top written (nothing is written outside top: every
                 * directory of it is one we made, and links are made at the end) */
                int fd = -1;
                char *p = top ? kwt_path(top, m.name) : NULL;
                if (p) {
                    fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                    if (fd < 0)
                        r = tar_refuse(t, "cannot create %s: %s", p, strerror(errno));
                }
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);
                unsigned char buf[1 << 16];
                for (unsigned long long left = m.size; r == 1 && left;) {
                    size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
                    int rr = tar_in_read(t, buf, n);
                    if (rr)
                        r = rr < 0 ? -1
                                   : tar_refuse(t, "it is truncated (it ends inside %s)",
                                                bk_shown(m.name));
                    else {
                        EVP_DigestUpdate(md, buf, n);
                        left -= n;
                        if (fd >= 0 && write(fd, buf, n) != (ssize_t)n)
                            r = tar_refuse(t, "cannot write %s: %s", p, strerror(errno));
                    }
                }
                char sha[65] = "";
                bk_md_final_hex(md, sha);
                EVP_MD_CTX_free(md);
                if (r == 1) {
                    int rr = tar_read_pad(t, m.size);
                    if (rr)
                        r = rr < 0 ? -1
                                   : tar_refuse(t, "it is truncated (it ends inside %s)",
                                                bk_shown(m.name));
                }
                if (r == 1 && strcmp(sha, e->sha))
                    r = tar_refuse(
                        t,
                        "member %s does not match its SHA-256 in the MANIFEST (damaged or "
                        "altered)",
                        bk_shown(m.name));
                if (fd >= 0 && r == 1 && fchmod(fd, e->mode & 0777) != 0)
                    r = tar_refuse(t, "cannot set the mode of %s: %s", p, strerror(errno));
                if (fd >= 0)
                    close(fd);
                free(p);
            }
            if (r == 1)
                e->seen = true;
        }
        tar_mem_free(&m);
        if (r != 1)
            return -1;
        k++;
    }
    if (r < 0)
        return -1;
    if (k == 0)
        return tar_refuse(t, "it is an empty archive, not a keyward backup");
    for (size_t i = 0; i < sc->set.n; i++) {
        bk_entry *e = &sc->set.e[i];
        if (e->type != 'l' && !e->seen)
            return tar_refuse(t, "%s is in the MANIFEST but not in the archive", bk_shown(e->path));
        if (e->type == 'l' && !e->seen)
            return tar_refuse(t, "the link %s is in the MANIFEST but not in the archive",
                              bk_shown(e->path));
        *(e->type == 'f' ? &sc->files : e->type == 'd' ? &sc->dirs : &sc->links) += 1;
    }
    /* the rest (the zeros of the last record) counts for the archive's SHA-256 */
    unsigned char b[BLK];
    for (ssize_t n; (n = read(t->fd, b, sizeof(b))) > 0;)
        EVP_DigestUpdate(t->md, b, (size_t)n);
    bk_md_final_hex(t->md, sc->sha);
    if (!top)
        return 0;
    /* the links, then each directory's own mode (the deepest first) */
    for (size_t i = 0; i < sc->set.n; i++) {
        const bk_entry *e = &sc->set.e[i];
        char *p = kwt_path(top, e->path);
        int rc = e->type == 'l' ? symlink(e->target, p) : 0;
        free(p);
        if (rc != 0)
            return tar_refuse(t, "cannot make the link %s: %s", bk_shown(e->path), strerror(errno));
    }
    for (size_t i = sc->set.n; i-- > 0;) {
        const bk_entry *e = &sc->set.e[i];
        char *p = kwt_path(top, e->path);
        int rc = e->type == 'd' ? chmod(p, e->mode & 0777) : 0;
        free(p);
        if (rc != 0)
            return tar_refuse(t, "cannot set the mode of %s: %s", bk_shown(e->path),
                              strerror(errno));
    }
    return 0;
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
    char *target = bk_abs_path(kwt_g.dir);
    while (strlen(target) > 1 && target[strlen(target) - 1] == '/')
        target[strlen(target) - 1] = '\0';
    char *parent = bk_dir_part(target);
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
    bk_set_free(&first.set);
    bk_set_free(&second.set);
    free(tmp);
    if (rc != 0) {
        free(target);
        free(parent);
        return rc;
    }
    /* 4: open it as a writer (regenerates openssl.cnf for its new place), audit, check */
    char *fileabs = bk_abs_path(file);
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
