/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: the server's own TLS certificate, its TLS context (the key through the keyward
 * provider), its reload between connections, and the check of a request's channel binding. */
#include "ca_est_int.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the server's own certificate ---- */

static bool signed_by(X509 *x, X509 *ca)
{
    EVP_PKEY *pk = ca ? X509_get0_pubkey(ca) : NULL;
    bool ok = x && pk && X509_verify(x, pk) == 1;
    ERR_clear_error();
    return ok;
}

/* issued/est-server.crt is valid (index row V), from the current CA key, and not within a week
 * of its end: kept; else a new one is issued for key (the old one superseded). */
int est_ensure_cert(kwt_ca *ca, const est_conf *c, const char *host)
{
    char *cp = kwt_path(ca->dir, "ca.crt"), *ip = kwt_state_path(ca, "index.txt");
    X509 *cax = kwt_load_cert(cp), *cur = NULL;
    free(cp);
    kwt_index ix = {0};
    char *old = NULL;
    if (kwt_index_load(&ix, ip) == 0) {
        kwt_row *r = kwt_index_find_name(&ix, EST_NAME);
        if (r && r->status == 'V') {
            char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
            cur = kwt_load_cert(p);
            free(p);
            old = kwt_strdup(r->serial);
        }
    }
    kwt_index_free(&ix);
    free(ip);
    time_t soon = time(NULL) + 7 * 86400;
    if (cur && signed_by(cur, cax) && X509_cmp_time(X509_get0_notAfter(cur), &soon) > 0) {
        X509_free(cur);
        X509_free(cax);
        free(old);
        return 0;
    }
    X509_free(cur);
    int rc = 0;
    char *subj = cax ? kwt_cert_subj_slash(cax, " EST server") : NULL;
    X509_free(cax);
    char *tmp = kwt_tmpdir(), *csr = tmp ? kwt_path(tmp, "est.csr") : NULL, *serial = NULL;
    kwt_buf san = {0};
    bool txn = false;
    if (!c->key) {
        rc = kwt_err(KWT_USAGE, "no EST server certificate yet: pass --key URI for its key (made "
                                "on the token if absent), or put `key URI` in the config file");
        goto out;
    }
    if (!subj || !csr) {
        rc = kwt_err(KWT_FAIL, "cannot prepare the EST server certificate");
        goto out;
    }
    bool created;
    rc = kwt_ensure_key(c->key, "ec:P-256", kwt_ca_cnf(ca), false, false, &created, NULL);
    if (rc)
        goto out;
    kwt_buf_add(&san, "subjectAltName=DNS:localhost");
    for (int i = 0; i < c->ndns; i++)
        kwt_buf_printf(&san, ",DNS:%s", c->dns[i]);
    if (strcmp(host, "0.0.0.0") && strcmp(host, "::"))
        kwt_buf_printf(&san, ",IP:%s", host);
    kwt_cmd cmd;
    kwt_cmd_init(&cmd, "req");
    kwt_cmd_add(&cmd, "-new");
    kwt_cmd_add(&cmd, "-utf8");
    kwt_cmd_add(&cmd, "-key");
    kwt_cmd_add(&cmd, c->key);
    kwt_cmd_add(&cmd, "-subj");
    kwt_cmd_add(&cmd, subj);
    kwt_cmd_add(&cmd, "-addext");
    kwt_cmd_add(&cmd, san.s);
    kwt_cmd_add(&cmd, "-out");
    kwt_cmd_add(&cmd, csr);
    if ((rc = kwt_run(&cmd, kwt_ca_cnf(ca), NULL)) || (rc = kwt_txn_begin(ca)))
        goto out;
    txn = true;
    if (kwt_g.dry_run) {
        printf("# keyward then issues %s (server profile, %d days) and revokes the previous one "
               "(superseded)\n",
               EST_NAME, EST_DAYS);
        goto out;
    }
    rc = kwt_sign_one(ca, csr, "server", EST_NAME, EST_DAYS, NULL, NULL, &serial);
    if (rc == 0 && old)
        rc = kwt_revoke_serial(ca, old, "superseded", -1);
    if (rc == 0)
        rc = kwt_txn_commit(ca);
    if (rc == 0) {
        txn = false;
        kwt_ca_link_issued(ca, EST_NAME, serial);
        kwt_clear_error();
    }
    kwt_audit(ca, "ca est server certificate", EST_NAME, serial, subj, rc);
out:
    if (txn)
        kwt_txn_abort(ca);
    if (tmp)
        kwt_rm_rf(tmp);
    kwt_buf_free(&san);
    free(tmp);
    free(csr);
    free(subj);
    free(serial);
    free(old);
    return rc;
}

/* ---- TLS ---- */

static int accept_any(int ok, X509_STORE_CTX *x)
{
    /* every client certificate is looked at per request (this CA's own for a re-enrolment, the
     * bootstrap CA's for a first one); the handshake only proves the key is held */
    (void)ok;
    (void)x;
    return 1;
}

SSL_CTX *est_tls_ctx(kwt_ca *ca, const est_conf *c, OSSL_LIB_CTX **lcp)
{
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();
    SSL_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    char *crt = kwt_asprintf("%s/issued/%s.crt", ca->dir, EST_NAME);
    if (!lc || !OSSL_LIB_CTX_load_config(lc, kwt_ca_cnf(ca))) {
        kwt_err(KWT_FAIL, "cannot load %s for TLS (the keyward provider)", kwt_ca_cnf(ca));
        goto fail;
    }
    ctx = SSL_CTX_new_ex(lc, NULL, TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, crt) != 1) {
        kwt_err(KWT_FAIL, "cannot set up TLS with %s", crt);
        goto fail;
    }
    /* after a rotation: the link certificate NewWithOld (the current key certified by the
     * previous one) goes with it, so clients that trust only the previous generation still
     * verify the server and can fetch /cacerts */
    char *xp = kwt_asprintf("%s/ca/cross-%d.crt", ca->dir, ca->conf.generation);
    X509 *cross = ca->conf.generation > 1 ? kwt_load_cert(xp) : NULL;
    free(xp);
    if (cross && SSL_CTX_add0_chain_cert(ctx, cross) != 1)
        X509_free(cross);
    if (!(pk = kwt_tls_load_key(lc, c->key)) || SSL_CTX_use_PrivateKey(ctx, pk) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        kwt_err(KWT_FAIL,
                "cannot use the EST server key %s (is the token there, with its PIN in "
                "pin_source?)",
                c->key);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"keyward-est", 11);
    EVP_PKEY_free(pk);
    free(crt);
    *lcp = lc;
    return ctx;
fail:
    ERR_clear_error();
    EVP_PKEY_free(pk);
    SSL_CTX_free(ctx);
    OSSL_LIB_CTX_free(lc);
    free(crt);
    return NULL;
}

/* Record what the TLS state was made from: keyward.conf as it is, and when the server
 * certificate enters its last week (ensure_cert issues a new one then). */
void est_tls_mark(kwt_ca *ca, est_tls *t)
{
    X509 *x = t->ctx ? SSL_CTX_get0_certificate(t->ctx) : NULL;
    long long end = x ? kwt_asn1_time(X509_get0_notAfter(x)) : -1;
    kwt_reload_mark(ca, &t->watch, end > 0 ? (time_t)(end - 7 * 86400 + 60) : (time_t)-1);
}

/* Between connections: when keyward.conf changed (ca rotate writes a new generation there) or
 * the server certificate enters its last week, the CA is opened again, the server certificate
 * issued from the current generation as at the first start, and a new TLS context made from it.
 * One stat per connection when nothing changed. Connections in flight keep the context they
 * were forked with. On failure the previous context keeps serving; the next try is a minute
 * later. */
void est_tls_refresh(kwt_ca *ca, const est_conf *c, const char *host, est_tls *t)
{
    time_t now = time(NULL);
    if (!kwt_reload_due(ca, &t->watch, now))
        return;
    kwt_ca nca;
    int rc = kwt_ca_reopen(ca, &nca);
    OSSL_LIB_CTX *lc = NULL;
    SSL_CTX *ctx = NULL;
    if (rc == 0) {
        rc = est_ensure_cert(&nca, c, host);
        kwt_ca_unlock(&nca);
    }
    if (rc == 0 && !(ctx = est_tls_ctx(&nca, c, &lc)))
        rc = KWT_FAIL;
    kwt_clear_error();
    if (rc) {
        fprintf(stderr, "keyward: the EST server keeps its previous TLS certificate; retrying in "
                        "a minute\n");
        if (nca.dir)
            kwt_ca_close(&nca);
        t->watch.retry_at = now + 60;
        return;
    }
    kwt_ca_close(ca);
    *ca = nca;
    SSL_CTX_free(t->ctx);
    OSSL_LIB_CTX_free(t->lc);
    t->ctx = ctx;
    t->lc = lc;
    est_tls_mark(ca, t);
    if (kwt_g.verbose)
        fprintf(stderr, "keyward: EST server TLS certificate reloaded (CA generation %d)\n",
                ca->conf.generation);
}

/* RFC 7030 §3.5: a client binds its request to the TLS connection by putting the base64 of the
 * connection's channel binding in the request's challengePassword attribute. -1: the request
 * has no challengePassword; 0: it matches this connection (*kind says which binding); 1: it does
 * not (*why). */
int est_binding_check(SSL *s, X509_REQ *q, const char **kind, const char **why)
{
    int i = X509_REQ_get_attr_by_NID(q, NID_pkcs9_challengePassword, -1);
    if (i < 0)
        return -1;
    X509_ATTRIBUTE *a = X509_REQ_get_attr(q, i);
    ASN1_TYPE *t = a && X509_ATTRIBUTE_count(a) == 1 ? X509_ATTRIBUTE_get0_type(a, 0) : NULL;
    *why = "the request's challengePassword is not one TLS channel binding value";
    if (!t || X509_REQ_get_attr_by_NID(q, NID_pkcs9_challengePassword, i) >= 0 ||
        (t->type != V_ASN1_PRINTABLESTRING && t->type != V_ASN1_UTF8STRING &&
         t->type != V_ASN1_IA5STRING))
        return 1;
    unsigned char cb[64], b64[4 * (sizeof(cb) + 2) / 3 + 1];
    size_t n = kwt_tls_channel_binding(s, cb, sizeof(cb), kind);
    if (!n) {
        *why = "the server cannot compute this connection's TLS channel binding";
        return 1;
    }
    int bl = EVP_EncodeBlock(b64, cb, (int)n);
    const ASN1_STRING *v = t->value.asn1_string;
    *why = "the request's channel binding (challengePassword) is not this TLS connection's: "
           "the request was made for another connection";
    return ASN1_STRING_length(v) == bl &&
                   CRYPTO_memcmp(ASN1_STRING_get0_data(v), b64, (size_t)bl) == 0
               ? 0
               : 1;
}
