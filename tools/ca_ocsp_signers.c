/* SPDX-License-Identifier: Apache-2.0 */
/* The OCSP responder's certificates: one per live CA generation, from that generation's key,
 * issued when missing, expired or from another key (after a rotation the old one is renamed). */
#include "ca_ocsp_int.h"
#include "kwt.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCSP_NAME      "ocsp-responder"
#define RESPONDER_DAYS 365

/* NAME of generation g's responder certificate in the index (and issued/NAME.crt). */
char *kwt_ocsp_responder_name(const kwt_ca *ca, int g)
{
    return g == ca->conf.generation ? kwt_strdup(OCSP_NAME)
                                    : kwt_asprintf("%s-gen-%d", OCSP_NAME, g);
}

/* x carries a signature of cacert's key */
bool kwt_ocsp_signed_by(X509 *x, X509 *cacert)
{
    EVP_PKEY *pk = cacert ? X509_get0_pubkey(cacert) : NULL;
    bool ok = x && pk && X509_verify(x, pk) == 1;
    ERR_clear_error();
    return ok;
}

static bool expired(X509 *x)
{
    return X509_cmp_current_time(X509_get0_notAfter(x)) <= 0;
}

/* The newest certificate of NAME when its index row is valid (certs/SERIAL.pem); NULL when none.
 * *serial (may be NULL) gets its serial. */
static X509 *valid_cert_of(kwt_ca *ca, kwt_index *ix, const char *name, char **serial)
{
    kwt_row *r = kwt_index_find_name(ix, name);
    if (!r || r->status != 'V')
        return NULL;
    char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
    X509 *x = kwt_load_cert(p);
    free(p);
    if (x && serial)
        *serial = kwt_strdup(r->serial);
    return x;
}

/* Days a responder certificate of a CA generation gets: a year, not beyond the CA's own end. */
static int responder_days(X509 *cacert)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cacert)))
        return RESPONDER_DAYS;
    if (days >= RESPONDER_DAYS)
        return RESPONDER_DAYS;
    return days < 1 ? 1 : days;
}

void kwt_ocsp_gens_load(kwt_ca *ca, kwt_ocsp_gens *gs)
{
    gs->n = 0;
    for (int g = ca->conf.generation; g >= 1 && gs->n < KWT_OCSP_MAX_GENS; g--) {
        if (!kwt_gen_live(ca, g))
            continue;
        char *p = kwt_gen_cert_path(ca, g);
        X509 *x = kwt_load_cert(p);
        free(p);
        if (!x) {
            if (g == ca->conf.generation)
                fprintf(stderr, "keyward: CA generation %d has no readable certificate\n", g);
            continue;
        }
        gs->gen[gs->n] = g;
        gs->cacert[gs->n++] = x;
    }
}

void kwt_ocsp_gens_free(kwt_ocsp_gens *gs)
{
    for (int i = 0; i < gs->n; i++)
        X509_free(gs->cacert[i]);
    gs->n = 0;
}

/* Every live generation gets a valid responder certificate from its own key: issued when
 * missing, expired or not from that key (and for every generation when --key is given). After a
 * rotation the previous current generation's responder (NAME ocsp-responder) is renamed
 * ocsp-responder-gen-G in the index, and the new generation's is issued as ocsp-responder. */
int kwt_ocsp_ensure_signers(kwt_ca *ca, const char *key)
{
    int cur = ca->conf.generation, rc = 0;
    kwt_ocsp_gens gs;
    kwt_ocsp_gens_load(ca, &gs);
    kwt_index ix = {0};
    char *ixp = kwt_state_path(ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0 && !kwt_g.dry_run) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        free(ixp);
        kwt_ocsp_gens_free(&gs);
        return rc;
    }
    free(ixp);
    /* the certificate named ocsp-responder is from an earlier generation: it stays that
     * generation's responder under the generation's name */
    int rename_gen = 0;
    char *rename_serial = NULL;
    X509 *cx = valid_cert_of(ca, &ix, OCSP_NAME, &rename_serial);
    if (cx && gs.n && gs.gen[0] == cur && !kwt_ocsp_signed_by(cx, gs.cacert[0]) && !expired(cx)) {
        for (int i = 1; i < gs.n && !rename_gen; i++) {
            char *nm = kwt_ocsp_responder_name(ca, gs.gen[i]);
            X509 *have = valid_cert_of(ca, &ix, nm, NULL);
            if (kwt_ocsp_signed_by(cx, gs.cacert[i]) && !have)
                rename_gen = gs.gen[i];
            X509_free(have);
            free(nm);
        }
    }
    X509_free(cx);
    if (!rename_gen) {
        free(rename_serial);
        rename_serial = NULL;
    }
    int need[KWT_OCSP_MAX_GENS], nneed = 0;
    for (int i = 0; i < gs.n; i++) {
        int g = gs.gen[i];
        char *nm = kwt_ocsp_responder_name(ca, g);
        /* after the rename: generation rename_gen has the old ocsp-responder certificate,
         * the current generation none yet */
        X509 *x = NULL;
        if (g == rename_gen)
            x = valid_cert_of(ca, &ix, OCSP_NAME, NULL);
        else if (g != cur || !rename_gen)
            x = valid_cert_of(ca, &ix, nm, NULL);
        if (key || !x || expired(x) || !kwt_ocsp_signed_by(x, gs.cacert[i]))
            need[nneed++] = i;
        X509_free(x);
        free(nm);
    }
    kwt_index_free(&ix);
    if (!nneed) {
        kwt_ocsp_gens_free(&gs);
        return 0;
    }
    if (!key)
        key = ca->conf.ocsp_key;
    if (!key) {
        kwt_ocsp_gens_free(&gs);
        free(rename_serial);
        return kwt_err(KWT_USAGE, "no OCSP responder certificate yet: pass --key URI for its key "
                                  "(made on the token if absent)");
    }
    const char *why;
    if (!kwt_valid_uri(key, &why)) {
        kwt_ocsp_gens_free(&gs);
        free(rename_serial);
        return kwt_err(KWT_USAGE, "--key: %s", why);
    }
    bool created;
    char *cacrt = kwt_path(ca->dir, "ca.crt");
    X509 *cax = kwt_load_cert(cacrt);
    free(cacrt);
    char *subj = cax ? kwt_cert_subj_slash(cax, " OCSP responder") : NULL;
    X509_free(cax);
    char *tmp = kwt_tmpdir();
    char *csr = tmp ? kwt_path(tmp, "ocsp.csr") : NULL;
    char *serials[KWT_OCSP_MAX_GENS] = {0}, *olds[KWT_OCSP_MAX_GENS] = {0};
    if (!subj || !csr) {
        rc = kwt_err(KWT_FAIL, "cannot prepare the OCSP responder certificate");
        goto out;
    }
    rc = kwt_ensure_key(key, ca->conf.key_type ? ca->conf.key_type : "ec:P-256", kwt_ca_cnf(ca),
                        false, false, &created, NULL);
    if (rc)
        goto out;
    kwt_cmd c;
    kwt_cmd_req_new(&c, key, subj);
    kwt_cmd_opt(&c, "-out", csr);
    if ((rc = kwt_run(&c, kwt_ca_cnf(ca), NULL)) || (rc = kwt_txn_begin(ca)))
        goto out;
    ixp = kwt_state_path(ca, "index.txt");
    if (rename_gen && kwt_g.dry_run) {
        printf("# keyward then renames index row %s (%s, issued by CA generation %d) to "
               "%s-gen-%d\n",
               rename_serial, OCSP_NAME, rename_gen, OCSP_NAME, rename_gen);
    } else if (rename_gen) {
        kwt_row *r = NULL;
        if (kwt_index_load(&ix, ixp) == 0)
            r = kwt_index_find_serial(&ix, rename_serial);
        if (r) {
            free(r->name);
            r->name = kwt_ocsp_responder_name(ca, rename_gen);
        }
        if (!r || kwt_index_save(&ix, ixp) != 0)
            rc = kwt_err(KWT_FAIL, "cannot rename the responder certificate %s in %s",
                         rename_serial, ixp);
        kwt_index_free(&ix);
    }
    /* a previous responder certificate of the same generation is superseded */
    for (int k = 0; k < nneed && rc == 0; k++) {
        int i = need[k];
        char *nm = kwt_ocsp_responder_name(ca, gs.gen[i]);
        if (kwt_index_load(&ix, ixp) == 0) {
            kwt_row *r = kwt_index_find_name(&ix, nm);
            if (r && r->status == 'V')
                olds[k] = kwt_strdup(r->serial);
        }
        kwt_index_free(&ix);
        if (kwt_g.dry_run) {
            /* the CSR above was not made, so it cannot be checked and signed here */
            char *gc = kwt_gen_cert_path(ca, gs.gen[i]), *gk = kwt_gen_key(&ca->conf, gs.gen[i]);
            printf("# keyward then issues %s (ocsp profile, %d days) from CA generation %d: "
                   "openssl ca -in CSR -cert %s -keyfile '%s'\n",
                   nm, responder_days(gs.cacert[i]), gs.gen[i], gc, gk ? gk : "");
            free(gc);
            free(gk);
            free(nm);
            continue;
        }
        rc = kwt_sign_one_gen(ca, gs.gen[i], csr, "ocsp", nm, responder_days(gs.cacert[i]), NULL,
                              NULL, &serials[k]);
        if (rc == 0 && olds[k])
            rc = kwt_revoke_serial(ca, olds[k], "superseded", -1);
        free(nm);
    }
    free(ixp);
    if (rc == 0)
        rc = kwt_txn_commit(ca);
    if (rc == 0 && !kwt_g.dry_run) {
        if (rename_gen) {
            char *nm = kwt_ocsp_responder_name(ca, rename_gen);
            kwt_ca_link_issued(ca, nm, rename_serial);
            kwt_audit(ca, "ca ocsp signer renamed", nm, rename_serial, subj, 0);
            free(nm);
        }
        for (int k = 0; k < nneed; k++) {
            char *nm = kwt_ocsp_responder_name(ca, gs.gen[need[k]]);
            kwt_ca_link_issued(ca, nm, serials[k]);
            free(nm);
        }
        if (!ca->conf.ocsp_key || strcmp(ca->conf.ocsp_key, key) != 0) {
            char *k2 = kwt_strdup(key); /* key may be ca->conf.ocsp_key itself */
            free(ca->conf.ocsp_key);
            ca->conf.ocsp_key = k2;
            char *cp = kwt_path(ca->dir, "keyward.conf");
            kwt_conf_save(&ca->conf, cp);
            free(cp);
        }
        kwt_clear_error();
    }
    for (int k = 0; k < nneed; k++) {
        char *nm = kwt_ocsp_responder_name(ca, gs.gen[need[k]]);
        if (!kwt_g.dry_run)
            kwt_audit(ca, "ca ocsp signer", nm, serials[k], subj, rc);
        free(nm);
    }
out:
    if (rc)
        kwt_txn_abort(ca);
    for (int k = 0; k < KWT_OCSP_MAX_GENS; k++) {
        free(serials[k]);
        free(olds[k]);
    }
    if (tmp)
        kwt_rm_rf(tmp);
    kwt_ocsp_gens_free(&gs);
    free(rename_serial);
    free(tmp);
    free(csr);
    free(subj);
    return rc;
}
