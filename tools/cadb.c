/* SPDX-License-Identifier: Apache-2.0 */
/* The CA directory: opening it (keyward.conf loaded, the writer's lock, recovery, the PIN
 * prompt) and a long-running server's watch on it.
 *
 * index, serial, crlnumber and the CRL live together in DIR/state.N, and DIR/state is a
 * symlink to the current one. A writer takes an flock on DIR/.lock, copies the state into
 * state.N+1, lets openssl change the copy, fsyncs it and switches the symlink with one rename
 * (cadb_txn.c). A crash anywhere leaves either the old or the new state, never a mix; openssl's
 * own .old files are not relied on (cadb_recover.c). DIR/crl is a symlink to state/crl, so
 * DIR/crl/crl.pem is always the CRL that belongs to the current index. */
#include "cadb_int.h"
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int kwt_ca_open(kwt_ca *ca, bool writer)
{
    memset(ca, 0, sizeof(*ca));
    ca->lock_fd = -1;
    char real[PATH_MAX];
    if (!realpath(kwt_g.dir, real))
        return kwt_err(KWT_FAIL,
                       "no CA directory at %s (%s); create one with `keyward ca init` or pass "
                       "--dir",
                       kwt_g.dir, strerror(errno));
    ca->dir = kwt_strdup(real);
    char *confp = kwt_path(ca->dir, "keyward.conf");
    int rc = kwt_conf_load(&ca->conf, confp);
    free(confp);
    if (rc != 0) {
        kwt_err(KWT_FAIL, "%s is not a keyward CA directory (no keyward.conf)", ca->dir);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    if (ca->conf.bad) {
        kwt_err(KWT_FAIL, "%s/keyward.conf:%d: %s", ca->dir, ca->conf.bad_line, ca->conf.bad);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    if (writer && !kwt_g.dry_run) {
        char *lp = kwt_path(ca->dir, ".lock");
        /* Not O_CLOEXEC: openssl children inherit the lock, so if keyward dies mid-operation
         * the next writer waits until its openssl has finished too (killing openssl instead
         * could interrupt it inside a token write). */
        ca->lock_fd = open(lp, O_RDWR | O_CREAT, 0600);
        free(lp);
        if (ca->lock_fd < 0 || flock(ca->lock_fd, LOCK_EX) != 0) {
            kwt_err(KWT_FAIL, "cannot lock the CA directory %s: %s", ca->dir, strerror(errno));
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        if (kwt_ca_recover(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        /* the provider path or module may differ from the last run (installed vs build) */
        if (kwt_ca_write_cnf(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        /* a writer signs with the CA key: no pin_source, on a terminal, one prompt */
        if (kwt_ca_pin_prompt(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
    }
    ca->gen = kwt_state_gen(ca->dir);
    if (ca->gen < 0) {
        kwt_err(KWT_FAIL,
                "%s/state is missing or not a link to state.N: the CA directory is "
                "damaged",
                ca->dir);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    return 0;
}

void kwt_ca_close(kwt_ca *ca)
{
    if (ca->stage)
        kwt_txn_abort(ca);
    if (ca->lock_fd >= 0)
        close(ca->lock_fd); /* releases the flock */
    kwt_conf_free(&ca->conf);
    free(ca->dir);
    memset(ca, 0, sizeof(*ca));
    ca->lock_fd = -1;
}

void kwt_ca_unlock(kwt_ca *ca)
{
    if (ca->lock_fd >= 0) {
        close(ca->lock_fd); /* releases the flock */
        ca->lock_fd = -1;
    }
}

int kwt_ca_reopen(const kwt_ca *ca, kwt_ca *out)
{
    const char *saved = kwt_g.dir;
    kwt_g.dir = ca->dir;
    int rc = kwt_ca_open(out, true);
    kwt_g.dir = saved;
    return rc;
}

void kwt_reload_mark(const kwt_ca *ca, kwt_reload *w, time_t renew_at)
{
    char *cp = kwt_path(ca->dir, "keyward.conf");
    if (stat(cp, &w->conf_st) != 0)
        memset(&w->conf_st, 0, sizeof(w->conf_st));
    free(cp);
    w->renew_at = renew_at;
    w->retry_at = 0;
}

bool kwt_reload_due(const kwt_ca *ca, const kwt_reload *w, time_t now)
{
    struct stat st;
    char *cp = kwt_path(ca->dir, "keyward.conf");
    int src = stat(cp, &st);
    free(cp);
    bool changed =
        src == 0 &&
        (st.st_ino != w->conf_st.st_ino || st.st_mtim.tv_sec != w->conf_st.st_mtim.tv_sec ||
         st.st_mtim.tv_nsec != w->conf_st.st_mtim.tv_nsec || st.st_size != w->conf_st.st_size);
    bool ending = w->renew_at != (time_t)-1 && now >= w->renew_at;
    return (changed || ending) && now >= w->retry_at;
}

int kwt_ca_pin_prompt(kwt_ca *ca)
{
    if (ca->conf.pin_source && *ca->conf.pin_source)
        return 0;
    return kwt_pin_prompt_once(ca->conf.ca_key, kwt_ca_cnf(ca));
}
