/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: simpleenroll and simplereenroll: authenticate, check, sign through `ca sign` or
 * `ca renew` in this process, audit, answer. */
#include "ca_est_int.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The error text of the last failure, without the private file name it names the request by. */
static const char *reason_of(const char *path)
{
    const char *e = kwt_last_error();
    size_t n = strlen(path);
    if (e && !strncmp(e, path, n) && !strncmp(e + n, ": ", 2))
        e += n + 2;
    return e && *e ? e : "refused";
}

/* Run a keyward command (ca sign, ca renew) in this process. */
static int run_cmd(int (*fn)(int, char **), const char **args, int n)
{
    char *argv[12];
    for (int i = 0; i < n; i++)
        argv[i] = kwt_strdup(args[i]);
    argv[n] = NULL;
    kwt_clear_error();
    kwt_sign_refused = 0;
    int rc = fn(n, argv);
    for (int i = 0; i < n; i++)
        free(argv[i]);
    kwt_notify_run();
    return rc;
}

/* The outcome of one enrolment, for the audit line. */
typedef struct {
    const char *op, *label;
    char *identity, *name, *serial, *subject;
    int status;
    char *why;
    const char *binding; /* the channel binding the request carried and matched: NULL none */
} outcome;

static void audit_outcome(est_req *r, outcome *o)
{
    kwt_buf m = {0};
    kwt_buf_add(&m, "{\"est\":{\"label\":");
    kwt_buf_json_str(&m, o->label);
    kwt_buf_add(&m, ",\"client\":");
    kwt_buf_json_str(&m, o->identity ? o->identity : "anonymous");
    kwt_buf_add(&m, ",\"peer\":");
    kwt_buf_json_str(&m, r->peer);
    kwt_buf_add(&m, ",\"channel_binding\":");
    kwt_buf_json_str(&m, o->binding ? o->binding : "none");
    kwt_buf_printf(&m, ",\"status\":%d}}", o->status);
    kwt_audit_meta = m.s;
    if (o->status == 200)
        kwt_audit(r->ca, o->op, o->name, o->serial, o->subject, 0);
    else
        kwt_audit_err(r->ca, o->op, o->name, o->serial, o->subject, o->why ? o->why : "refused");
    kwt_audit_meta = NULL;
    kwt_buf_free(&m);
}

/* The audit line is written before the answer is sent: a client that has its answer finds its
 * request in the audit log. */
static void refuse(est_req *r, outcome *o, int status, const char *why, const char *extra)
{
    o->status = status;
    free(o->why);
    o->why = kwt_strdup(why);
    audit_outcome(r, o);
    o->status = 0; /* audited */
    est_reply_text(r->ssl, status, why, extra);
}

/* The CN of a request as ca sign reads it (its default NAME). */
static char *req_cn(X509_REQ *q)
{
    X509_NAME *nm = X509_REQ_get_subject_name(q);
    int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    unsigned char *u = NULL;
    int n =
        i >= 0 ? ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i))) : -1;
    char *s = n >= 0 ? kwt_asprintf("%.*s", n, u) : NULL;
    OPENSSL_free(u);
    return s;
}

/* The valid certificate of NAME whose key is the request's; NULL when none. */
static X509 *issued_for(kwt_ca *ca, const char *name, X509_REQ *q, char **serial)
{
    kwt_index ix = {0};
    char *ip = kwt_path(ca->dir, "state/index.txt");
    X509 *x = NULL;
    if (kwt_index_load(&ix, ip) == 0) {
        kwt_row *row = kwt_index_find_name(&ix, name);
        if (row && row->status == 'V') {
            char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, row->serial);
            x = kwt_load_cert(p);
            free(p);
            if (x && EVP_PKEY_eq(X509_get0_pubkey(x), X509_REQ_get0_pubkey(q)) != 1) {
                X509_free(x);
                x = NULL;
            }
            if (x)
                *serial = kwt_strdup(row->serial);
        }
    }
    kwt_index_free(&ix);
    free(ip);
    return x;
}

void est_serve_enroll(est_req *r, const est_label *lb, bool re)
{
    outcome o = {re ? "est simplereenroll" : "est simpleenroll",
                 lb->name,
                 NULL,
                 NULL,
                 NULL,
                 NULL,
                 0,
                 NULL,
                 NULL};
    X509 *peer = SSL_get0_peer_certificate(r->ssl);
    X509_REQ *q = NULL;
    char *user = NULL, *secret = NULL, *devid = NULL, *profile = NULL, *tmp = NULL, *why = NULL;
    size_t slen = 0, dlen = 0;
    int slock = -1;
    unsigned char *der = est_unbase64(r->body.s, r->body.len, &dlen);
    const unsigned char *dp = der;
    if (der)
        q = d2i_X509_REQ(NULL, &dp, (long)dlen);
    ERR_clear_error();
    if (!q || dp != der + dlen) {
        refuse(r, &o, 400, "the body is not a base64 DER PKCS#10 request (application/pkcs10)",
               NULL);
        goto out;
    }
    o.subject = kwt_name_text(X509_REQ_get_subject_name(q));
    o.name = req_cn(q);
    if (re) {
        /* the client proves it holds its current certificate's key in TLS */
        char *pname = NULL;
        if (!peer) {
            refuse(r, &o, 401,
                   "re-enrolment needs the current certificate as TLS client "
                   "certificate",
                   NULL);
            goto out;
        }
        char *ps = kwt_cert_subject(peer);
        o.identity = kwt_asprintf("cert:%s", ps ? ps : "?");
        free(ps);
        if (!est_current_cert(r->ca, peer, &pname, &profile)) {
            refuse(r, &o, 403, "the client certificate is not a current certificate of this CA",
                   NULL);
            goto out;
        }
        free(o.name);
        o.name = pname;
        if (strcmp(profile, lb->profile)) {
            why = kwt_asprintf("the client certificate is of profile %s; label %s enrols %s",
                               profile, lb->name, lb->profile);
            refuse(r, &o, 403, why, NULL);
            goto out;
        }
    } else {
        bool basic_ok = false, cert_ok = false;
        if ((lb->auth & AUTH_BASIC) && r->auth &&
            est_basic_creds(r->auth, &user, &secret, &slen) == 0) {
            if (!est_valid_user(user) || (slock = est_lock_file(r->ca->dir, ".secrets.lock")) < 0 ||
                est_secret_check(r->conf->secrets, user, secret, slen) != 0) {
                o.identity =
                    kwt_asprintf("user:%s", est_valid_user(user) ? user : "(invalid name)");
                refuse(r, &o, 401, "unknown user or wrong (or already used) one-time secret",
                       "WWW-Authenticate: Basic realm=\"keyward EST\"\r\n");
                goto out;
            }
            basic_ok = true;
            o.identity = kwt_asprintf("user:%s", user);
        } else if ((lb->auth & AUTH_CERT) && peer) {
            char *ps = kwt_cert_subject(peer);
            o.identity = kwt_asprintf("bootstrap:%s", ps ? ps : "?");
            free(ps);
            if (!est_bootstrap_ok(r->conf, r->ssl, peer)) {
                refuse(r, &o, 403, "the client certificate is not from the bootstrap CA", NULL);
                goto out;
            }
            cert_ok = true;
        }
        if (!basic_ok && !cert_ok) {
            refuse(r, &o, 401, "authentication required",
                   (lb->auth & AUTH_BASIC) ? "WWW-Authenticate: Basic realm=\"keyward EST\"\r\n"
                                           : NULL);
            goto out;
        }
        if (!strcmp(lb->profile, "device")) {
            bool bad = false;
            devid = est_req_device_id(q, r->ca->conf.device_oid, &bad);
            if (!devid) {
                refuse(r, &o, 400,
                       bad ? "the request's device IDs differ or are not valid"
                           : "a device request names its device ID in its subjectAltName "
                             "(otherName under the CA's device OID, or DNS:device-ID)",
                       NULL);
                goto out;
            }
            if (cert_ok) {
                GENERAL_NAMES *g = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
                char *have = est_device_id_of(g, r->ca->conf.device_oid, &bad);
                GENERAL_NAMES_free(g);
                if (!have || strcmp(have, devid)) {
                    why = kwt_asprintf("the bootstrap certificate is for device %s, not %s",
                                       have ? have : "(none)", devid);
                    free(have);
                    refuse(r, &o, 403, why, NULL);
                    goto out;
                }
                free(have);
            }
        }
    }
    /* the channel binding, when the request carries one (or the label requires it) */
    const char *cbkind = NULL, *cbwhy = NULL;
    int cb = est_binding_check(r->ssl, q, &cbkind, &cbwhy);
    if (cb > 0 || (cb < 0 && lb->require_cb)) {
        refuse(r, &o, 403,
               cb > 0 ? cbwhy
                      : "this label requires the TLS channel binding (RFC 7030 section 3.5) in "
                        "the request's challengePassword",
               NULL);
        goto out;
    }
    o.binding = cb == 0 ? cbkind : NULL;
    long wait = est_rate_check(r->ca, r->conf, o.identity);
    if (wait) {
        char *ra = kwt_asprintf("Retry-After: %ld\r\n", wait);
        refuse(r, &o, 429, "too many enrolments for this client; try again later", ra);
        free(ra);
        goto out;
    }
    /* the request as received, private to the CA, for the one signing path */
    tmp = kwt_asprintf("%s/est/req-%ld.der", r->ca->dir, (long)getpid());
    if (kwt_write_atomic(tmp, der, dlen, 0600) != 0) {
        refuse(r, &o, 500, "the CA cannot store the request", NULL);
        goto out;
    }
    int rc;
    if (re) {
        const char *a[] = {"renew", o.name, "--csr", tmp};
        rc = run_cmd(kwt_cmd_ca_renew, a, 4);
    } else if (devid) {
        /* a device is named by its ID, as `ca sign --device-id ID --name ID` */
        const char *a[] = {"sign",        tmp,   "--profile", lb->profile,
                           "--device-id", devid, "--name",    devid};
        free(o.name);
        o.name = kwt_strdup(devid);
        rc = run_cmd(kwt_cmd_ca_sign, a, 8);
    } else {
        const char *a[] = {"sign", tmp, "--profile", lb->profile};
        rc = run_cmd(kwt_cmd_ca_sign, a, 4);
    }
    if (rc) {
        int st = kwt_sign_refused == KWT_REFUSED_IDENTITY ? 403
                 : kwt_sign_refused == KWT_REFUSED_CSR    ? 400
                                                          : 500;
        char *msg = kwt_strdup(reason_of(tmp));
        if (st == 500) {
            o.status = 500;
            o.why = msg;
            audit_outcome(r, &o);
            o.status = 0;
            est_reply_text(r->ssl, 500,
                           "the CA could not issue the certificate (see its audit log)", NULL);
        } else {
            refuse(r, &o, st, msg, NULL);
            free(msg);
        }
        goto out;
    }
    if (slock >= 0 && est_secret_consume(r->conf->secrets, user) != 0)
        fprintf(stderr, "keyward: warning: cannot remove %s's used secret from %s\n", user,
                r->conf->secrets);
    X509 *x = o.name ? issued_for(r->ca, o.name, q, &o.serial) : NULL;
    if (!x) {
        refuse(r, &o, 500, "the issued certificate cannot be read", NULL);
        goto out;
    }
    STACK_OF(X509) *st = sk_X509_new_null();
    sk_X509_push(st, x);
    o.status = 200;
    audit_outcome(r, &o);
    o.status = 0;
    alarm(r->conf->deadline); /* the child set its alarm from this */
    est_reply_certs(r->ssl, st);
    sk_X509_pop_free(st, X509_free);
out:
    if (tmp)
        unlink(tmp);
    if (slock >= 0)
        close(slock);
    if (secret)
        OPENSSL_cleanse(secret, slen);
    X509_REQ_free(q);
    free(der);
    free(tmp);
    free(user);
    free(secret);
    free(devid);
    free(profile);
    free(why);
    free(o.identity);
    free(o.name);
    free(o.serial);
    free(o.subject);
    free(o.why);
}
