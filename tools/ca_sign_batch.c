/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca sign --batch`: every CSR of a directory or list file checked first, then one
 * openssl ca process signs them all. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Name of a CSR in a batch: file name without directories and .csr. */
static char *batch_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *n = kwt_strdup(b);
    size_t l = strlen(n);
    if (l > 4 && !strcmp(n + l - 4, ".csr"))
        n[l - 4] = '\0';
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int kwt_sign_batch(kwt_ca *ca, const char *src, const char *profile, int days, bool same_key,
                   bool same_subject, const kwt_meta *md)
{
    char **files = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(src);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".csr")) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    files = realloc(files, cap * sizeof(*files));
                }
                files[n++] = kwt_path(src, de->d_name);
            }
        }
        closedir(d);
        qsort(files, n, sizeof(*files), cmp_str);
    } else {
        char *text = kwt_read_file(src, NULL);
        if (!text)
            return kwt_err(KWT_USAGE, "--batch %s: not a directory or a list file (%s)", src,
                           strerror(errno));
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (!*l || *l == '#')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                files = realloc(files, cap * sizeof(*files));
            }
            files[n++] = kwt_strdup(l);
        }
        free(text);
    }
    int rc = 0;
    char **names = calloc(n ? n : 1, sizeof(char *));
    char **copies = calloc(n ? n : 1, sizeof(char *));
    X509_REQ **reqs = calloc(n ? n : 1, sizeof(*reqs));
    char *ixp = NULL, *bcnf = NULL;
    bool first_rsa = false;
    kwt_held_key *keys = NULL, *keys_subj = NULL;
    size_t nkeys = 0, hcap = 64;
    /* the batch's own keys, by SPKI hash: slot = 1 + index of the CSR (0: empty) */
    while (hcap < 2 * n)
        hcap *= 2;
    size_t *hslot = calloc(hcap, sizeof(*hslot));
    unsigned char(*rh)[32] = calloc(n ? n : 1, sizeof(*rh));
    kwt_index ix0 = {0}, ix1 = {0};
    if (!hslot || !rh) {
        rc = kwt_err(KWT_FAIL, "out of memory");
        goto out;
    }
    if (n == 0) {
        rc = kwt_err(KWT_USAGE, "--batch %s: no CSRs found", src);
        goto out;
    }
    if (n > 4000) {
        rc = kwt_err(KWT_USAGE, "--batch: at most 4000 CSRs per run (got %zu)", n);
        goto out;
    }
    if (!strcmp(profile, "device")) {
        rc = kwt_err(KWT_USAGE, "the device profile needs a device ID per certificate: sign "
                                "device CSRs one at a time");
        goto out;
    }
    ixp = kwt_state_path(ca, "index.txt");
    if (!kwt_g.dry_run && kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    /* Check everything first: one bad CSR stops the batch before anything is issued. */
    for (size_t i = 0; i < n; i++) {
        char *cn, *sans;
        const char *why;
        names[i] = batch_name(files[i]);
        if (kwt_valid_name(names[i], &why) != 0) {
            rc = kwt_err(KWT_USAGE, "%s: file name gives NAME '%s': %s", files[i], names[i], why);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) {
                rc = kwt_err(KWT_USAGE, "the batch has two CSRs named %s", names[i]);
                goto out;
            }
        X509_REQ *req = NULL;
        if ((rc = kwt_csr_read_once(files[i], &req)) ||
            (rc = kwt_check_csr(files[i], req, profile, &ca->conf, NULL, &cn, &sans))) {
            X509_REQ_free(req);
            goto out;
        }
        reqs[i] = req;
        bool rsa = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(req)) == EVP_PKEY_RSA;
        if (!strcmp(profile, "server") && i > 0 && rsa != first_rsa) {
            free(cn);
            free(sans);
            rc = kwt_err(KWT_USAGE,
                         "%s: the batch mixes RSA and other server keys (keyEncipherment is for "
                         "RSA only): sign them in separate batches",
                         files[i]);
            goto out;
        }
        if (i == 0)
            first_rsa = rsa;
        if (kwt_looks_like_serial(names[i])) {
            free(cn);
            free(sans);
            rc = kwt_err(KWT_USAGE, "%s: NAME %s looks like a serial number; rename the file",
                         files[i], names[i]);
            goto out;
        }
        if (!keys) {
            keys = kwt_held_keys(ca, &ix0, &nkeys);
            keys_subj = keys ? kwt_held_by_subject(keys, nkeys) : NULL;
            if (!keys_subj) {
                free(cn);
                free(sans);
                rc = kwt_err(KWT_FAIL, "out of memory");
                goto out;
            }
        }
        if ((rc = kwt_check_key_not_compromised(files[i], req, keys, nkeys)) ||
            (!same_subject &&
             (rc = kwt_check_subject_unique(files[i], req, names[i], keys_subj, nkeys))) ||
            (!same_key && (rc = kwt_check_key_unique(files[i], req, names[i], keys, nkeys)))) {
            free(cn);
            free(sans);
            goto out;
        }
        if (!same_key && kwt_spki_sha256(X509_REQ_get0_pubkey(req), rh[i])) {
            size_t h = 0;
            memcpy(&h, rh[i], sizeof(h));
            for (h &= hcap - 1; hslot[h] && memcmp(rh[hslot[h] - 1], rh[i], 32);
                 h = (h + 1) & (hcap - 1))
                ;
            if (hslot[h]) {
                free(cn);
                free(sans);
                rc = kwt_err(KWT_FAIL,
                             "%s and %s have the same public key (--allow-same-key "
                             "to sign both)",
                             files[hslot[h] - 1], files[i]);
                goto out;
            }
            hslot[h] = i + 1;
        }
        bool nosan = !sans;
        free(cn);
        free(sans);
        if (!strcmp(profile, "server") && nosan) {
            rc = kwt_err(KWT_FAIL, "%s: the server profile needs a subjectAltName in the CSR",
                         files[i]);
            goto out;
        }
        kwt_row *r = kwt_index_find_name(&ix0, names[i]);
        if (r && r->status == 'V') {
            rc = kwt_err(KWT_FAIL, "%s already has a valid certificate (serial %s); use ca renew",
                         names[i], r->serial);
            goto out;
        }
    }
    if ((rc = kwt_txn_begin(ca)))
        goto out;
    free(ixp);
    ixp = kwt_state_path(ca, "index.txt");
    /* openssl signs private copies of the requests as checked; one process for all of them
     * cannot take a subjectAltName per request from keyward, so the batch's own openssl.cnf
     * lets openssl copy the requests' subjectAltName, which kwt_check_csr has vetted name by name
     * in these very bytes (every other extension of a request is refused or set by the
     * profile, which copy never overrides) */
    for (size_t i = 0; i < n && !kwt_g.dry_run; i++)
        if ((rc = kwt_csr_private_copy(ca, reqs[i], &copies[i])))
            goto out;
    if (kwt_g.dry_run) {
        /* the script signs with the same batch configuration as the real run */
        bcnf = kwt_state_path(ca, "batch.cnf");
        printf("sed -e 's/^copy_extensions = none$/copy_extensions = copy/'%s ",
               first_rsa ? "" : " -e 's/digitalSignature, keyEncipherment/digitalSignature/'");
        kwt_shq(stdout, kwt_ca_cnf(ca));
        printf(" > ");
        kwt_shq(stdout, bcnf);
        printf("\n");
    } else {
        char *t = kwt_read_file(kwt_ca_cnf(ca), NULL),
             *at = t ? strstr(t, "copy_extensions = none") : NULL;
        if (!at) {
            free(t);
            rc = kwt_err(KWT_FAIL, "cannot prepare the batch's openssl.cnf");
            goto out;
        }
        memcpy(at, "copy_extensions = copy", strlen("copy_extensions = copy"));
        /* keyEncipherment is for RSA keys (the batch holds one kind: checked above) */
        char *kex = !first_rsa ? strstr(t, "digitalSignature, keyEncipherment") : NULL;
        if (kex)
            memmove(kex + strlen("digitalSignature"),
                    kex + strlen("digitalSignature, keyEncipherment"),
                    strlen(kex + strlen("digitalSignature, keyEncipherment")) + 1);
        bcnf = kwt_state_path(ca, "batch.cnf");
        rc = kwt_write_atomic(bcnf, t, strlen(t), 0600);
        free(t);
        if (rc) {
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", bcnf, strerror(errno));
            goto out;
        }
    }
    char ds[16], sect[32];
    snprintf(ds, sizeof(ds), "%d", kwt_clamp_days(ca, 0, days));
    snprintf(sect, sizeof(sect), "ext_%s", profile);
    char *outp = kwt_state_path(ca, "batch.crt");
    if (kwt_g.dry_run)
        kwt_dry_mark(ca);
    kwt_cmd *c = malloc(sizeof(*c));
    kwt_cmd_init(c, "ca");
    kwt_cmd_add(c, "-batch");
    kwt_cmd_add(c, "-notext");
    kwt_cmd_add(c, "-utf8");
    kwt_cmd_opt(c, "-days", ds);
    kwt_cmd_opt(c, "-extensions", sect);
    kwt_cmd_opt(c, "-keyfile", ca->conf.ca_key);
    kwt_cmd_opt(c, "-out", outp);
    kwt_cmd_add(c, "-infiles");
    for (size_t i = 0; i < n; i++)
        kwt_cmd_add(c, copies[i] ? copies[i] : files[i]);
    rc = kwt_run_progress(c, bcnf ? bcnf : kwt_ca_cnf(ca), "Signature ok", (int)n);
    free(c);
    free(outp);
    if (rc == 0 && kwt_g.dry_run)
        kwt_dry_record(ca, n, names, files, profile, days, NULL, NULL, md);
    if (rc || kwt_g.dry_run)
        goto out;
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + n) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add one index row per CSR; nothing issued");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        free(r->name);
        r->name = kwt_strdup(names[i]);
        if ((rc = kwt_check_issued(ca, r->serial, reqs[i], files[i])))
            goto out;
        if ((rc =
                 kwt_store_meta(ca, r->serial, copies[i], profile, days, NULL, NULL, names[i], md)))
            goto out;
    }
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s", ixp);
        goto out;
    }
    if ((rc = kwt_txn_commit(ca)))
        goto out;
    /* links and audit lines of a batch are flushed together (the links can be rebuilt from
     * the committed index anyway) */
    kwt_defer_sync = true;
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        kwt_ca_link_issued(ca, names[i], r->serial);
        kwt_audit(ca, "ca sign", names[i], r->serial, r->subject, 0);
        kwt_notify(ca, "issued", names[i], r->serial, NULL);
    }
    kwt_defer_sync = false;
    int dfd = open(ca->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        syncfs(dfd);
        close(dfd);
    }
    for (size_t i = 0; i < n; i++)
        kwt_sign_report(ca, names[i], ix1.rows[ix0.n + i].serial, i == 0, i + 1 == n, NULL);
out:
    if (rc)
        kwt_audit(ca, "ca sign --batch", NULL, NULL, src, rc);
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    for (size_t i = 0; i < n; i++) {
        if (copies && copies[i])
            unlink(copies[i]);
        free(files[i]);
        free(names ? names[i] : NULL);
        free(copies ? copies[i] : NULL);
        X509_REQ_free(reqs ? reqs[i] : NULL);
    }
    kwt_held_keys_free(keys, nkeys);
    free(keys_subj);
    free(hslot);
    free(rh);
    if (bcnf)
        unlink(bcnf);
    free(bcnf);
    free(files);
    free(names);
    free(copies);
    free(reqs);
    free(ixp);
    return rc;
}
