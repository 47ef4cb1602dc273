/* SPDX-License-Identifier: Apache-2.0 */
/* Recovery when a writer opens the CA: what a writer that died left behind (staging states,
 * temporary files, a half-done rotation, stale issued/ links) is removed or finished. */
#include "cadb_int.h"
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kwt_state_gen(const char *dir)
{
    char *l = kwt_path(dir, "state");
    char buf[PATH_MAX];
    ssize_t n = readlink(l, buf, sizeof(buf) - 1);
    free(l);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, "state.", 6) != 0)
        return -1;
    return atoi(buf + 6);
}

bool kwt_is_tmp_name(const char *n)
{
    return strstr(n, ".tmp.") != NULL || strstr(n, ".lnk.") != NULL;
}

static void remove_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (kwt_is_tmp_name(de->d_name)) {
            char *p = kwt_path(dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

/* ca rotate commits by saving keyward.conf with generation N, then copies ca/ca-N.crt to
 * ca.crt. A rotate killed between the two leaves ca.crt equal to ca/ca-(N-1).crt; only that
 * exact state is rolled forward (an operator's own ca.crt is left alone). */
static int roll_forward_ca_cert(kwt_ca *ca)
{
    int n = ca->conf.generation;
    if (n < 2)
        return 0;
    char *newp = kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, n);
    char *oldp = kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, n - 1);
    char *cacrt = kwt_path(ca->dir, "ca.crt");
    size_t nl = 0, ol = 0, cl = 0;
    char *nw = kwt_read_file(newp, &nl), *od = kwt_read_file(oldp, &ol);
    char *cur = kwt_read_file(cacrt, &cl);
    int rc = 0;
    if (nw && od && cur && cl == ol && memcmp(cur, od, ol) == 0 &&
        (nl != ol || memcmp(nw, od, nl) != 0)) {
        if (kwt_g.verbose)
            fprintf(stderr, "keyward: finishing an interrupted rotation: %s becomes ca.crt\n",
                    newp);
        if (kwt_write_atomic(cacrt, nw, nl, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot finish the interrupted CA rotation (%s to %s): %s", newp,
                         cacrt, strerror(errno));
    }
    free(nw);
    free(od);
    free(cur);
    free(newp);
    free(oldp);
    free(cacrt);
    return rc;
}

int kwt_ca_recover(kwt_ca *ca)
{
    int gen = kwt_state_gen(ca->dir);
    if (gen < 0)
        return 0; /* reported by the caller */
    char cur[32];
    snprintf(cur, sizeof(cur), "state.%d", gen);
    DIR *d = opendir(ca->dir);
    if (!d)
        return kwt_err(KWT_FAIL, "cannot read %s: %s", ca->dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        /* staging states of writers that died before their commit */
        if (!strncmp(de->d_name, "state.", 6) && strcmp(de->d_name, cur) != 0) {
            char *p = kwt_path(ca->dir, de->d_name);
            if (kwt_g.verbose)
                fprintf(stderr, "keyward: removing unfinished state %s\n", p);
            kwt_rm_rf(p);
            free(p);
        }
    }
    closedir(d);
    remove_tmp_files(ca->dir);
    if (roll_forward_ca_cert(ca) != 0)
        return KWT_FAIL;
    char *issued = kwt_path(ca->dir, "issued");
    remove_tmp_files(issued);
    /* issued/NAME.crt must point at the newest valid certificate of NAME; walk the index
     * from the end and remember names already seen (a hash set: indexes get large) */
    kwt_index ix = {0};
    char *ip = kwt_asprintf("%s/%s/index.txt", ca->dir, cur);
    if (kwt_index_load(&ix, ip) == 0 && ix.n) {
        size_t cap = 64;
        while (cap < ix.n * 2)
            cap *= 2;
        const char **seen = calloc(cap, sizeof(*seen));
        for (size_t i = ix.n; seen && i-- > 0;) {
            kwt_row *r = &ix.rows[i];
            unsigned long h = 5381;
            for (const char *c = r->name; *c; c++)
                h = h * 33 + (unsigned char)*c;
            size_t slot = h & (cap - 1);
            while (seen[slot] && strcmp(seen[slot], r->name) != 0)
                slot = (slot + 1) & (cap - 1);
            if (seen[slot])
                continue; /* an older row of a name already handled */
            seen[slot] = r->name;
            if (r->status != 'V' || !strcmp(r->name, "unknown"))
                continue;
            char *lp = kwt_asprintf("%s/%s.crt", issued, r->name);
            char *want = kwt_asprintf("../certs/%s.pem", r->serial);
            char buf[PATH_MAX];
            ssize_t n = readlink(lp, buf, sizeof(buf) - 1);
            if (n < 0 || (size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0)
                kwt_symlink_atomic(want, lp);
            free(want);
            free(lp);
        }
        free(seen);
    }
    kwt_index_free(&ix);
    free(ip);
    free(issued);
    return 0;
}
