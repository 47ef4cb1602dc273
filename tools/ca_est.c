/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca est`: an EST server (RFC 7030) on the CA, so that devices and services enrol and
 * re-enrol over HTTPS without an operator in the loop.
 *
 * Like the OCSP responder, keyward accepts the connections itself on the address asked for
 * (default 127.0.0.1), and at first start issues its own TLS certificate (NAME est-server,
 * profile server) from the CA, for a key on the token. TLS runs in a private library context
 * that loads the CA's openssl.cnf, so the server key is used through the keyward provider.
 *
 * One process accepts; each connection is served by a child (fork) with a whole-request
 * deadline and a body limit, so a slow or huge client only holds its own child. A request is
 * signed by the child running `ca sign` (simpleenroll) or `ca renew NAME --csr` (simplereenroll)
 * in-process on a private copy of the request: every intake check, the CA lock and transaction,
 * the audit log and the notification hook are those of the commands, not a copy of them. */
#include "ca_est_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned deadline = DEADLINE; /* the child's, from est_conf */

static volatile sig_atomic_t stop, child_exited;

static void on_signal(int sig)
{
    if (sig == SIGCHLD)
        child_exited = 1;
    else
        stop = 1;
}

static void add_unique(STACK_OF(X509) * st, const char *path)
{
    X509 *x = kwt_load_cert(path);
    for (int i = 0; x && i < sk_X509_num(st); i++)
        if (!X509_cmp(x, sk_X509_value(st, i))) {
            X509_free(x);
            return;
        }
    if (x && !sk_X509_push(st, x))
        X509_free(x);
}

/* /cacerts: the current CA certificate, every earlier generation's (ca/ca-G.crt) and the link
 * certificates between generations (ca/cross-G.crt, ca/oldwithnew-G.crt). */
static void serve_cacerts(est_req *r)
{
    STACK_OF(X509) *st = sk_X509_new_null();
    char *p = kwt_path(r->ca->dir, "ca.crt");
    add_unique(st, p);
    free(p);
    static const char *const kinds[] = {"ca", "cross", "oldwithnew"};
    for (size_t k = 0; k < 3; k++)
        for (int g = r->ca->conf.generation; g >= 1; g--) {
            p = kwt_asprintf("%s/ca/%s-%d.crt", r->ca->dir, kinds[k], g);
            if (kwt_exists(p))
                add_unique(st, p);
            free(p);
        }
    est_reply_certs(r->ssl, st);
    sk_X509_pop_free(st, X509_free);
}

static void add_oid(kwt_buf *b, const char *oid)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    unsigned char *d = NULL;
    int n = o ? i2d_ASN1_OBJECT(o, &d) : -1;
    if (n > 0)
        kwt_buf_addn(b, (char *)d, (size_t)n);
    OPENSSL_free(d);
    ASN1_OBJECT_free(o);
}

/* /csrattrs (RFC 7030 §4.5): a CsrAttrs SEQUENCE of OIDs: the signature the CA takes
 * (ecdsa-with-SHA256; RSA keys of 2048 bits or more are also accepted), and for the device
 * profile the device-ID otherName OID that its subjectAltName carries. */
static void serve_csrattrs(est_req *r, const est_label *lb)
{
    kwt_buf in = {0};
    add_oid(&in, "1.2.840.10045.4.3.2");
    if (!strcmp(lb->profile, "device")) {
        add_oid(&in, "2.5.29.17");
        if (r->ca->conf.device_oid)
            add_oid(&in, r->ca->conf.device_oid);
    }
    kwt_buf d = {0};
    unsigned char hdr[2] = {0x30, (unsigned char)in.len}; /* short form: a few OIDs */
    kwt_buf_addn(&d, (char *)hdr, 2);
    kwt_buf_addn(&d, in.s, in.len);
    size_t len = 0;
    char *b64 = est_base64_lines((unsigned char *)d.s, d.len, &len);
    est_reply(r->ssl, 200, "application/csrattrs", b64, len, NULL);
    free(b64);
    kwt_buf_free(&in);
    kwt_buf_free(&d);
}

static void serve_one(est_req *r)
{
    int st = est_read_request(r);
    alarm(deadline); /* the request is in: a new deadline for the answer */
    if (st) {
        if (st > 0)
            est_reply_text(r->ssl, st,
                           st == 413   ? "request body too large (at most 65536 bytes)"
                           : st == 411 ? "a Content-Length is required"
                                       : "bad request",
                           NULL);
        return;
    }
    const char *pre = "/.well-known/est/";
    char *q = strchr(r->path, '?');
    if (q)
        *q = '\0';
    if (strncmp(r->path, pre, strlen(pre))) {
        est_reply_text(r->ssl, 404, "not an EST path (/.well-known/est/...)", NULL);
        return;
    }
    char *rest = r->path + strlen(pre), *op = strrchr(rest, '/');
    const char *label = "default";
    if (op) {
        *op++ = '\0';
        label = rest;
    } else {
        op = rest;
    }
    const est_label *lb = NULL;
    for (int i = 0; i < r->conf->nlabels && !lb; i++)
        if (!strcmp(r->conf->labels[i].name, label))
            lb = &r->conf->labels[i];
    if (!lb) {
        est_reply_text(r->ssl, 404, "no such EST label", NULL);
        return;
    }
    bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST");
    alarm(deadline);
    if (!strcmp(op, "cacerts") && get) {
        serve_cacerts(r);
    } else if (!strcmp(op, "csrattrs") && get) {
        serve_csrattrs(r, lb);
    } else if ((!strcmp(op, "simpleenroll") || !strcmp(op, "simplereenroll")) && post) {
        alarm(0);
        est_serve_enroll(r, lb, op[6] == 'r');
    } else if (!strcmp(op, "serverkeygen") || !strcmp(op, "fullcmc")) {
        est_reply_text(r->ssl, 501,
                       "not offered: keys are made where they live (on the client's token), never "
                       "by the CA",
                       NULL);
    } else if (!strcmp(op, "cacerts") || !strcmp(op, "csrattrs") || !strcmp(op, "simpleenroll") ||
               !strcmp(op, "simplereenroll")) {
        est_reply_text(r->ssl, 405, "method not allowed", NULL);
    } else {
        est_reply_text(r->ssl, 404, "no such EST operation", NULL);
    }
}

static void child(kwt_ca *ca, const est_conf *c, SSL_CTX *ctx, int fd, const char *peer)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGALRM, SIG_DFL); /* the deadline ends this child, and only it */
    deadline = c->deadline;
    alarm(deadline);
    int dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (dn >= 0) {
        fflush(stdout);
        dup2(dn, 1); /* the commands' reports; errors stay on stderr */
        close(dn);
    }
    /* the CA as it is now (a rotation since the start changes its generations) */
    char *cp = kwt_path(ca->dir, "keyward.conf");
    kwt_conf now;
    memset(&now, 0, sizeof(now));
    if (kwt_conf_load(&now, cp) == 0 && !now.bad) {
        kwt_conf_free(&ca->conf);
        ca->conf = now;
    } else {
        kwt_conf_free(&now);
    }
    free(cp);
    SSL *s = SSL_new(ctx);
    est_req r = {0};
    r.ssl = s;
    r.ca = ca;
    r.conf = c;
    r.peer = peer;
    if (s && SSL_set_fd(s, fd) == 1 && SSL_accept(s) == 1) {
        serve_one(&r);
        alarm(deadline);
        SSL_shutdown(s);
    } else if (kwt_g.verbose) {
        unsigned long e = ERR_peek_last_error();
        fprintf(stderr, "keyward: TLS handshake with %s failed: %s\n", peer,
                e ? ERR_reason_error_string(e) : "connection closed");
        ERR_print_errors_fp(stderr);
    }
    free(r.auth);
    kwt_buf_free(&r.body);
    SSL_free(s);
    close(fd);
    fflush(NULL);
    _exit(0);
}

int kwt_cmd_ca_est(int argc, char **argv)
{
    const char *port = NULL, *host = "127.0.0.1", *key = NULL, *cfg = NULL, *add = NULL,
               *sfile = NULL;
    kwt_optspec spec[] = {
        {"--port", &port, NULL},  {"--host", &host, NULL},      {"--key", &key, NULL},
        {"--config", &cfg, NULL}, {"--add-secret", &add, NULL}, {"--secret-file", &sfile, NULL},
        {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, rc = kwt_parse_args("ca est", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *end;
    long portn = port ? strtol(port, &end, 10) : 0;
    if (!add && (!port || *end || portn < 1 || portn > 65535))
        return kwt_err(KWT_USAGE, "ca est: --port 1..65535 is required");
    if (key && !kwt_valid_uri(key, &why))
        return kwt_err(KWT_USAGE, "--key: %s", why);
    if (sfile && !add)
        return kwt_err(KWT_USAGE, "--secret-file goes with --add-secret USER");
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, !add)))
        return rc;
    est_conf c;
    char *defcfg = kwt_path(ca.dir, "est.conf");
    if (!cfg && kwt_exists(defcfg))
        cfg = defcfg;
    if ((rc = est_conf_load(&c, ca.dir, cfg))) {
        free(defcfg);
        kwt_ca_close(&ca);
        return rc;
    }
    free(defcfg);
    if (add) {
        rc = est_add_secret(&ca, &c, add, sfile);
        est_conf_free(&c);
        kwt_ca_close(&ca);
        return rc;
    }
    if (key) {
        free(c.key);
        c.key = kwt_strdup(key);
    }
    char *kp = kwt_asprintf("%s/est/key.uri", ca.dir), *d = est_dir(ca.dir);
    if (!c.key) {
        char *k = kwt_read_file(kp, NULL);
        if (k) {
            k[strcspn(k, "\n")] = '\0';
            c.key = k;
        }
    }
    if (!d)
        rc = KWT_FAIL;
    if (rc == 0)
        rc = est_ensure_cert(&ca, &c, host);
    if (rc == 0 && !kwt_g.dry_run && c.key) {
        char *line = kwt_asprintf("%s\n", c.key);
        kwt_write_atomic(kp, line, strlen(line), 0600);
        free(line);
    }
    free(kp);
    free(d);
    kwt_ca_unlock(&ca); /* serving signs through ca sign, which takes the lock per request */
    est_tls tls = {0};
    tls.ctx = rc == 0 && !kwt_g.dry_run ? est_tls_ctx(&ca, &c, &tls.lc) : NULL;
    if (rc || kwt_g.dry_run || !tls.ctx) {
        est_conf_free(&c);
        kwt_ca_close(&ca);
        return rc ? rc : kwt_g.dry_run ? 0 : KWT_FAIL;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    int fd = -1;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        rc = kwt_err(KWT_USAGE, "--host %s: not a numeric IP address", host);
        goto done;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot listen on %s port %s: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        goto done;
    }
    freeaddrinfo(ai);
    est_tls_mark(&ca, &tls);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: accept returns on a signal */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(kwt_g.json ? stderr : stdout, "EST server for %s listening on https://%s%s%s:%s/\n",
            ca.dir, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
    fflush(NULL);
    long served = 0;
    int children = 0;
    while (!stop) {
        while (children > 0 && waitpid(-1, NULL, children >= MAX_CHILDREN ? 0 : WNOHANG) > 0)
            children--;
        child_exited = 0;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        char peer[NI_MAXHOST] = "?";
        getnameinfo((struct sockaddr *)&ss, sl, peer, sizeof(peer), NULL, 0, NI_NUMERICHOST);
        est_tls_refresh(&ca, &c, host, &tls);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd);
            child(&ca, &c, tls.ctx, cfd, peer);
        }
        if (pid > 0)
            children++;
        else
            fprintf(stderr, "keyward: cannot fork: %s\n", strerror(errno));
        close(cfd);
        served++;
    }
    /* requests in flight finish on their own (each within its deadline, a signing in the CA's
     * transaction): not waited for, not cut short */
    if (kwt_g.json)
        printf("{\"host\":\"%s\",\"port\":%ld,\"served\":%ld}\n", host, portn, served);
done:
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(tls.ctx);
    OSSL_LIB_CTX_free(tls.lc);
    est_conf_free(&c);
    kwt_ca_close(&ca);
    return rc;
}
