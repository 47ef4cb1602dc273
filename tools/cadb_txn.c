/* SPDX-License-Identifier: Apache-2.0 */
/* State transactions: a writer edits a copy of the state (DIR/state.N+1) and commits it with
 * one syncfs and one symlink switch, so a crash leaves the old state or the new one. */
#include "cadb_int.h"
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *kwt_state_path(kwt_ca *ca, const char *name)
{
    if (ca->stage)
        return kwt_path(ca->stage, name);
    return kwt_asprintf("%s/state/%s", ca->dir, name);
}

static int fsync_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = kwt_path(dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                rc |= fsync_tree(p);
            } else if (S_ISREG(st.st_mode)) {
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fsync(fd) != 0)
                    rc = -1;
                if (fd >= 0)
                    close(fd);
            }
        }
        free(p);
    }
    closedir(d);
    rc |= kwt_fsync_dir(dir);
    return rc;
}

int kwt_txn_begin(kwt_ca *ca)
{
    if (kwt_g.dry_run)
        return 0; /* the printed commands work on the live state */
    ca->stage = kwt_asprintf("%s/state.%d", ca->dir, ca->gen + 1);
    kwt_rm_rf(ca->stage);
    char *crl = kwt_path(ca->stage, "crl");
    if (mkdir(ca->stage, 0700) != 0 || mkdir(crl, 0755) != 0) {
        free(crl);
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot create the staging state: %s", strerror(e));
    }
    free(crl);
    const char *files[] = {"index.txt", "index.txt.attr", "serial", "crlnumber"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && rc == 0; i++) {
        char *from = kwt_asprintf("%s/state.%d/%s", ca->dir, ca->gen, files[i]);
        char *to = kwt_path(ca->stage, files[i]);
        rc = kwt_exists(from) ? kwt_copy_file(from, to, 0600) : 0;
        free(from);
        free(to);
    }
    /* the published CRLs (every generation's and the bundle) stay world-readable */
    char *crlsrc = kwt_asprintf("%s/state.%d/crl", ca->dir, ca->gen);
    DIR *d = rc == 0 ? opendir(crlsrc) : NULL;
    struct dirent *de;
    while (d && rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || kwt_is_tmp_name(de->d_name))
            continue;
        char *from = kwt_path(crlsrc, de->d_name);
        char *to = kwt_asprintf("%s/crl/%s", ca->stage, de->d_name);
        struct stat st;
        if (lstat(from, &st) == 0 && S_ISREG(st.st_mode))
            rc = kwt_copy_file(from, to, 0644);
        free(from);
        free(to);
    }
    if (d)
        closedir(d);
    free(crlsrc);
    if (rc != 0) {
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot copy the CA state: %s", strerror(e));
    }
    ca->stage_cnf = kwt_path(ca->stage, "openssl.cnf");
    kwt_defer_sync = true; /* the commit makes everything durable with one syncfs */
    if (kwt_ca_write_cnf_to(ca, ca->stage_cnf, ca->stage) != 0) {
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot write the staging openssl.cnf: %s", strerror(e));
    }
    return 0;
}

int kwt_txn_commit(kwt_ca *ca)
{
    if (kwt_g.dry_run || !ca->stage)
        return 0;
    /* openssl does not fsync what it writes, and our own writes in the transaction deferred
     * theirs: one syncfs makes the staging state and new certificates durable before the
     * switch can expose them */
    int dfd = open(ca->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd < 0 ? -1 : syncfs(dfd);
    if (dfd >= 0)
        close(dfd);
    kwt_defer_sync = false;
    if (rc != 0)
        rc = fsync_tree(ca->stage); /* syncfs unsupported: flush file by file */
    if (rc != 0)
        return kwt_err(KWT_FAIL, "cannot flush the new CA state to disk: %s", strerror(errno));
    char target[32];
    snprintf(target, sizeof(target), "state.%d", ca->gen + 1);
    char *link = kwt_path(ca->dir, "state");
    rc = kwt_symlink_atomic(target, link);
    free(link);
    if (rc != 0)
        return kwt_err(KWT_FAIL, "cannot switch to the new CA state: %s", strerror(errno));
    char *old = kwt_asprintf("%s/state.%d", ca->dir, ca->gen);
    kwt_rm_rf(old);
    free(old);
    ca->gen++;
    free(ca->stage);
    free(ca->stage_cnf);
    ca->stage = ca->stage_cnf = NULL;
    return 0;
}

void kwt_txn_abort(kwt_ca *ca)
{
    kwt_defer_sync = false;
    if (ca->stage)
        kwt_rm_rf(ca->stage);
    free(ca->stage);
    free(ca->stage_cnf);
    ca->stage = ca->stage_cnf = NULL;
}
