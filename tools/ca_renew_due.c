/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca renew --due`: every valid certificate that expires within the window, checked
 * one by one and signed in as few openssl ca processes as their arguments allow. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One due certificate: what find_due found, what due_prepare made ready for openssl, and the
 * outcome (new_serial, or error). */
typedef struct {
    char *name, *serial, *new_serial, *error;
    long long expiry;
    size_t row; /* its row in the index: openssl only appends rows, so it stays there */
    kwt_meta md;
    X509_REQ *req; /* the stored request, read once */
    char *copy;    /* the private copy of it that openssl signs */
    char *san;     /* subjectAltName keyward writes; NULL: the request's, copied by openssl */
    bool own_san;  /* the record has a --san or a device ID: keyward writes the SAN */
    bool rsa;
    int days;
} due_cert;

/* Certificates signed with the same openssl ca arguments: one process signs them all. */
typedef struct {
    const char *profile, *san;
    bool own_san, rsa;
    int days;
    size_t *members, n;
} due_group;

static void fmt_iso(long long t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* An "expiring" event: a certificate within the window that this run does not renew. */
static void notify_expiring(kwt_ca *ca, const char *name, const char *serial, long long expiry)
{
    long long left = expiry - (long long)time(NULL);
    char extra[48];
    snprintf(extra, sizeof(extra), "\"days_left\":%lld", left > 0 ? left / 86400 : 0);
    kwt_notify(ca, "expiring", name, serial, extra);
}

/* The newest certificate of its NAME, valid, unexpired, expiring within the window, auto-renew
 * on. A renewal revokes the certificate it replaces (superseded), so a second run does not find
 * it again; an older certificate kept valid by renew --keep-old is never due (its NAME has a
 * newer one). */
static due_cert *find_due(kwt_ca *ca, kwt_index *ix, int window, size_t *n, size_t *off)
{
    long long now = (long long)time(NULL);
    due_cert *d = calloc(ix->n ? ix->n : 1, sizeof(*d));
    bool *newest = kwt_index_newest(ix);
    *n = *off = 0;
    for (size_t i = 0; d && newest && i < ix->n; i++) {
        kwt_row *r = &ix->rows[i];
        long long exp = kwt_asn1_to_time(r->expiry);
        if (r->status != 'V' || exp <= now || exp - now > (long long)window * 86400 || !newest[i])
            continue;
        kwt_meta m;
        kwt_meta_read(ca->dir, r->serial, &m);
        if (!m.auto_renew) {
            (*off)++;
            notify_expiring(ca, r->name, r->serial, exp); /* left to the operator */
            kwt_meta_free(&m);
            continue;
        }
        d[*n].name = kwt_strdup(r->name);
        d[*n].serial = kwt_strdup(r->serial);
        d[*n].expiry = exp;
        d[*n].row = i;
        d[*n].md = m;
        (*n)++;
    }
    if (!newest) {
        free(d);
        d = NULL;
    }
    free(newest);
    return d;
}

/* Everything decided before openssl runs: the signing record, the stored request read once and
 * checked as ca sign checks it (profile, names, key policy), the CA's policy_match, the
 * subjectAltName, and the private copy openssl signs. 0, or an exit code after printing why. */
static int due_prepare(kwt_ca *ca, X509 *cacert, due_cert *c, int days_override)
{
    kwt_meta *m = &c->md;
    const char *devid = m->device_id && *m->device_id ? m->device_id : NULL;
    const char *san = m->san && *m->san ? m->san : NULL;
    char *label = kwt_asprintf("%s/certs/%s.csr", ca->dir, c->serial), *cn = NULL, *sans = NULL;
    int rc;
    c->days = days_override ? days_override : m->days > 0 ? m->days : ca->conf.default_days;
    if (!m->profile || !kwt_valid_profile(m->profile))
        rc = kwt_err(KWT_FAIL, "the signing record certs/%s.meta is missing or damaged", c->serial);
    else if ((rc = kwt_csr_read_once(label, &c->req)) == 0 &&
             (rc = kwt_check_csr(label, c->req, m->profile, &ca->conf, devid, &cn, &sans)) == 0 &&
             (rc = kwt_check_policy_match(label, c->req, cacert, &ca->conf)) == 0 &&
             (rc = kwt_san_for(&ca->conf, m->profile, sans, san, devid, &c->san)) == 0) {
        if (kwt_looks_like_serial(c->name))
            rc = kwt_err(KWT_FAIL,
                         "NAME %s looks like a serial number; sign it anew under "
                         "another name",
                         c->name);
        c->own_san = san || devid;
        if (!c->own_san) { /* the request's own names, which kwt_check_csr vetted: openssl copies */
            free(c->san);
            c->san = NULL;
        }
        c->rsa = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(c->req)) == EVP_PKEY_RSA;
        if (rc == 0)
            rc = kwt_csr_private_copy(ca, c->req, &c->copy);
    }
    free(label);
    free(cn);
    free(sans);
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* The certificates that can go through one openssl ca process: same profile, kind of key
 * (keyEncipherment), days and keyward-written subjectAltName. A fleet signed by --batch is one
 * group. */
static due_group *due_groups(due_cert *d, size_t n, size_t *ng)
{
    due_group *g = calloc(n ? n : 1, sizeof(*g));
    *ng = 0;
    for (size_t i = 0; g && i < n; i++) {
        due_cert *c = &d[i];
        if (c->error)
            continue;
        size_t j = 0;
        while (j < *ng &&
               !(!strcmp(g[j].profile, c->md.profile) && g[j].rsa == c->rsa &&
                 g[j].days == c->days && g[j].own_san == c->own_san && same_str(g[j].san, c->san)))
            j++;
        if (j == *ng) {
            g[j] = (due_group){c->md.profile, c->san, c->own_san, c->rsa, c->days, NULL, 0};
            g[j].members = calloc(n, sizeof(size_t));
            (*ng)++;
        }
        if (g[j].members)
            g[j].members[g[j].n++] = i;
    }
    return g;
}

/* The request openssl refused in a failed run of n requests: its position, or -1 when the run
 * failed for all of them (the CA key, the token, a signing error). openssl announces each
 * request and signs only after its checks, and writes nothing when one is refused. *why gets
 * openssl's reason. */
static long refused_request(const char *err, size_t n, char **why)
{
    static const char mark[] = "Check that the request matches the signature";
    const char *last = NULL;
    size_t count = 0;
    *why = NULL;
    for (const char *p = err; p && (p = strstr(p, mark)); p += sizeof(mark) - 1) {
        last = p;
        count++;
    }
    if (!last || count > n || strstr(last, "Certificate is to be certified") ||
        strstr(last, ":keyward:"))
        return -1;
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (const char *l = last; *l;) {
        size_t len = strcspn(l, "\n");
        char *line = kwt_asprintf("%.*s", (int)len, l);
        if (*line && strncmp(line, mark, sizeof(mark) - 1) && strcmp(line, "Signature ok") &&
            !strstr(line, "Distinguished Name is as follows") && !strstr(line, ":ASN.1 ") &&
            !strstr(line, ":error:"))
            kwt_buf_printf(&b, "%s%s", b.len ? " " : "", line);
        free(line);
        l += len + (l[len] == '\n');
    }
    *why = b.len ? b.s : kwt_strdup("see openssl's messages with -v");
    if (!b.len)
        kwt_buf_free(&b);
    return (long)count - 1;
}

/* The certificates of one group, signed by one openssl ca process (at most 4000 requests a
 * process), recorded (NAME, signing record with the metadata carried over) and their
 * predecessors marked superseded, in the transaction. A request openssl refuses fails alone:
 * the run is repeated without it. Returns nonzero when the transaction cannot be trusted any
 * more (the caller then commits nothing). */
static int due_sign_group(kwt_ca *ca, due_cert *d, due_group *g)
{
    char *ext = kwt_ext_section(ca, 0, g->profile, g->rsa, "ca renew --due", g->san);
    char *extp = kwt_state_path(ca, "ext-due.cnf"), *cnfp = NULL;
    char *outp = kwt_state_path(ca, "due.crt"), *ixp = kwt_state_path(ca, "index.txt");
    int rc = 0;
    if (kwt_write_atomic(extp, ext, strlen(ext), 0600) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", extp, strerror(errno));
        goto out;
    }
    if (!g->own_san) {
        /* as ca sign --batch: openssl copies each request's subjectAltName, vetted name by name
         * in these very bytes by kwt_check_csr; the profile sets every other extension */
        char *t = kwt_read_file(kwt_ca_cnf(ca), NULL),
             *at = t ? strstr(t, "copy_extensions = none") : NULL;
        if (at)
            memcpy(at, "copy_extensions = copy", strlen("copy_extensions = copy"));
        cnfp = kwt_state_path(ca, "due.cnf");
        if (!at || kwt_write_atomic(cnfp, t, strlen(t), 0600) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s", cnfp);
        free(t);
        if (rc)
            goto out;
    }
    char ds[16];
    snprintf(ds, sizeof(ds), "%d", kwt_clamp_days(ca, 0, g->days));
    size_t left = g->n, *todo = g->members;
    while (left > 0 && rc == 0) {
        size_t m = left > 4000 ? 4000 : left;
        kwt_index ix0 = {0}, ix1 = {0};
        char *err = NULL, *why = NULL;
        kwt_cmd *cmd = malloc(sizeof(*cmd));
        if (!cmd || kwt_index_load(&ix0, ixp) != 0) {
            rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
            free(cmd);
            break;
        }
        kwt_cmd_init(cmd, "ca");
        const char *args[] = {"-batch",        "-notext", "-utf8",       "-days",   ds,
                              "-extfile",      extp,      "-extensions", "ext_run", "-keyfile",
                              ca->conf.ca_key, "-out",    outp,          "-infiles"};
        for (size_t a = 0; a < sizeof(args) / sizeof(args[0]); a++)
            kwt_cmd_add(cmd, args[a]);
        for (size_t k = 0; k < m; k++)
            kwt_cmd_add(cmd, d[todo[k]].copy);
        const char *cnf = cnfp ? cnfp : kwt_ca_cnf(ca);
        if (kwt_run_quiet(cmd, cnf, NULL, &err) != 0) {
            long bad = refused_request(err, m, &why);
            if (bad >= 0) {
                due_cert *c = &d[todo[bad]];
                kwt_err(KWT_FAIL, "openssl ca refused to renew %s (certs/%s.csr): %s", c->name,
                        c->serial, why);
                c->error = kwt_strdup(kwt_last_error());
                memmove(todo + bad, todo + bad + 1, (left - (size_t)bad - 1) * sizeof(*todo));
                left--;
            } else {
                kwt_run_failed(cmd, cnf, err);
                kwt_err(KWT_FAIL, "openssl ca could not sign the renewals (see above)");
                for (size_t k = 0; k < left; k++)
                    d[todo[k]].error = kwt_strdup(kwt_last_error());
                left = 0;
            }
        } else if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + m) {
            rc = kwt_err(KWT_FAIL, "openssl ca did not add one index row per request");
        } else {
            char when[32];
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            snprintf(when, sizeof(when), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
            for (size_t k = 0; k < m && rc == 0; k++) {
                due_cert *c = &d[todo[k]];
                kwt_row *r = &ix1.rows[ix0.n + k], *old = &ix1.rows[c->row];
                free(r->name);
                r->name = kwt_strdup(c->name);
                /* superseded in the same transaction, as ca renew NAME does */
                if (c->row >= ix0.n || strcmp(old->serial, c->serial) || old->status != 'V')
                    rc =
                        kwt_err(KWT_FAIL, "serial %s moved in the index during the run", c->serial);
                else if (!g->own_san)
                    rc = kwt_check_issued(ca, r->serial, c->req, c->name);
                if (rc == 0)
                    rc = kwt_store_meta(ca, r->serial, c->copy, g->profile, c->days, c->md.san,
                                        c->md.device_id, c->name, &c->md);
                if (rc == 0) {
                    old->status = 'R';
                    free(old->revocation);
                    old->revocation = kwt_asprintf("%s,superseded", when);
                    c->new_serial = kwt_strdup(r->serial);
                }
            }
            if (rc == 0 && kwt_index_save(&ix1, ixp) != 0)
                rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
            todo += m;
            left -= m;
        }
        free(cmd);
        free(err);
        free(why);
        kwt_index_free(&ix0);
        kwt_index_free(&ix1);
    }
out:
    unlink(outp);
    if (cnfp)
        unlink(cnfp);
    unlink(extp);
    free(ext);
    free(extp);
    free(cnfp);
    free(outp);
    free(ixp);
    return rc;
}

/* The last run, for ca stats and ca metrics: DIR/renew-last (key=value lines). */
static void save_last_run(kwt_ca *ca, int window, size_t renewed, size_t failed)
{
    char *p = kwt_path(ca->dir, "renew-last");
    char *t = kwt_asprintf("time=%lld\ndue_days=%d\nrenewed=%zu\nfailed=%zu\n",
                           (long long)time(NULL), window, renewed, failed);
    if (kwt_write_atomic(p, t, strlen(t), 0600) != 0)
        fprintf(stderr, "keyward: warning: cannot write %s: %s\n", p, strerror(errno));
    free(t);
    free(p);
}

int kwt_renew_due(int window, int days_override)
{
    kwt_ca ca;
    int rc = kwt_ca_open(&ca, true);
    if (rc)
        return rc;
    if (window < 0)
        window = ca.conf.renew_due_days;
    kwt_index ix = {0};
    size_t n = 0, off = 0, renewed = 0, failed = 0, ng = 0;
    due_cert *d = NULL;
    due_group *g = NULL;
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    if (!(d = find_due(&ca, &ix, window, &n, &off))) {
        rc = kwt_err(KWT_FAIL, "out of memory");
        goto out;
    }
    if (kwt_g.dry_run) {
        /* a list, not a script: what a real run would renew */
        for (size_t i = 0; i < n; i++) {
            char na[32];
            fmt_iso(d[i].expiry, na, sizeof(na));
            printf("would renew %s (serial %s, expires %s, profile %s)\n", d[i].name, d[i].serial,
                   na, d[i].md.profile ? d[i].md.profile : "?");
        }
        printf("%zu due within %d days%s", n, window, off ? "" : "\n");
        if (off)
            printf(", %zu more with auto-renew off\n", off);
        goto out;
    }
    if (n && (rc = kwt_check_ca_valid(&ca)))
        goto out;
    if (n && (rc = kwt_txn_begin(&ca)))
        goto out;
    /* each certificate's own checks first, then one openssl ca for all that passed (one per
     * set of signing arguments) */
    char *cap = kwt_path(ca.dir, "ca.crt");
    X509 *cacert = n ? kwt_load_cert(cap) : NULL;
    free(cap);
    for (size_t i = 0; i < n; i++) {
        kwt_clear_error();
        if (due_prepare(&ca, cacert, &d[i], days_override) != 0) {
            const char *e = kwt_last_error();
            d[i].error = kwt_strdup(e && *e ? e : "failed");
        }
    }
    X509_free(cacert);
    g = due_groups(d, n, &ng);
    for (size_t j = 0; j < ng && rc == 0; j++)
        rc = due_sign_group(&ca, d, &g[j]);
    for (size_t i = 0; i < n; i++)
        renewed += d[i].new_serial != NULL;
    if (renewed && rc == 0) {
        rc = kwt_ca_make_crl(&ca, 0);
        if (rc == 0)
            rc = kwt_txn_commit(&ca);
    }
    if (rc || !renewed) {
        /* nothing was issued, or nothing of it can be kept */
        const char *e = kwt_last_error();
        for (size_t i = 0; rc && i < n; i++)
            if (!d[i].error) {
                d[i].error = kwt_strdup(e && *e ? e : "the transaction failed");
                free(d[i].new_serial);
                d[i].new_serial = NULL;
            }
        renewed = 0;
        if (n)
            kwt_txn_abort(&ca);
        rc = 0;
    }
    kwt_buf js = {0};
    kwt_buf_addn(&js, "", 0);
    kwt_buf_printf(&js, "{\"due_days\":%d,\"renewed\":[", window);
    size_t nj = 0;
    /* links and audit lines are flushed together (the links can be rebuilt from the committed
     * index anyway) */
    kwt_defer_sync = true;
    for (size_t i = 0; i < n; i++) {
        due_cert *c = &d[i];
        kwt_buf mj = {0};
        kwt_buf_add(&mj, "{");
        kwt_meta_json(&mj, &c->md);
        kwt_buf_add(&mj, "}");
        kwt_audit_meta = mj.s;
        if (c->new_serial) {
            kwt_ca_link_issued(&ca, c->name, c->new_serial);
            kwt_clear_error();
            kwt_audit(&ca, "ca renew --due", c->name, c->new_serial, c->serial, 0);
            char *rep = kwt_asprintf("\"replaces\":\"%s\"", c->serial);
            kwt_notify(&ca, "renewed", c->name, c->new_serial, rep);
            free(rep);
            if (!kwt_g.json)
                printf("renewed %s: serial %s replaces %s (revoked: superseded)\n", c->name,
                       c->new_serial, c->serial);
            kwt_buf_add(&js, nj++ ? "," : "");
            kwt_buf_add(&js, "{\"name\":");
            kwt_buf_json_str(&js, c->name);
            kwt_buf_printf(&js, ",\"serial\":\"%s\",\"replaces\":\"%s\"}", c->new_serial,
                           c->serial);
        }
        kwt_audit_meta = NULL;
        kwt_buf_free(&mj);
    }
    kwt_buf_add(&js, "],\"failed\":[");
    nj = 0;
    for (size_t i = 0; i < n; i++) {
        due_cert *c = &d[i];
        if (c->new_serial)
            continue;
        failed++;
        kwt_set_error(c->error);
        kwt_audit(&ca, "ca renew --due", c->name, NULL, c->serial, KWT_FAIL);
        notify_expiring(&ca, c->name, c->serial, c->expiry); /* still expiring */
        if (!kwt_g.json)
            printf("FAILED  %s (serial %s): %s\n", c->name, c->serial, c->error);
        kwt_buf_add(&js, nj++ ? "," : "");
        kwt_buf_add(&js, "{\"name\":");
        kwt_buf_json_str(&js, c->name);
        kwt_buf_printf(&js, ",\"serial\":\"%s\",\"error\":", c->serial);
        kwt_buf_json_str(&js, c->error);
        kwt_buf_add(&js, "}");
    }
    kwt_defer_sync = false;
    if (n) {
        int dfd = open(ca.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            syncfs(dfd);
            close(dfd);
        }
    }
    kwt_buf_printf(&js, "],\"skipped_no_auto_renew\":%zu}\n", off);
    if (kwt_g.json)
        fputs(js.s, stdout);
    else
        printf("%zu due within %d days: %zu renewed, %zu failed%s", n, window, renewed, failed,
               off ? "" : "\n");
    if (!kwt_g.json && off)
        printf("; %zu with auto-renew off not renewed\n", off);
    kwt_buf_free(&js);
    save_last_run(&ca, window, renewed, failed);
    if (failed) {
        kwt_clear_error();
        rc = kwt_err(KWT_FAIL, "%zu of %zu due certificates could not be renewed (see above)",
                     failed, n);
    }
out:
    for (size_t i = 0; d && i < n; i++) {
        if (d[i].copy)
            unlink(d[i].copy); /* stored as certs/SERIAL.csr by kwt_store_meta */
        free(d[i].name);
        free(d[i].serial);
        free(d[i].new_serial);
        free(d[i].error);
        free(d[i].copy);
        free(d[i].san);
        X509_REQ_free(d[i].req);
        kwt_meta_free(&d[i].md);
    }
    for (size_t j = 0; g && j < ng; j++)
        free(g[j].members);
    free(g);
    free(d);
    kwt_index_free(&ix);
    free(ixp);
    kwt_ca_close(&ca);
    return rc;
}
