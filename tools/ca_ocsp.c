/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca ocsp`: an OCSP responder for the CA's index.
 * openssl 3.0's `ocsp -port` listens on every address, so keyward accepts connections itself on
 * the address asked for (default 127.0.0.1) and answers each request by running
 * `openssl ocsp -index ... -reqin REQ -respout RESP` with the responder key on the token. */
#include "kwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OCSP_NAME "ocsp-responder"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int ensure_signer(kwt_ca *ca, const char *key)
{
    char *crt = kwt_asprintf("%s/issued/%s.crt", ca->dir, OCSP_NAME);
    X509 *x = kwt_load_cert(crt);
    int rc = 0;
    if (x && X509_cmp_current_time(X509_get0_notAfter(x)) > 0 && !key) {
        X509_free(x);
        free(crt);
        return 0;
    }
    X509_free(x);
    if (!key)
        key = ca->conf.ocsp_key;
    if (!key) {
        free(crt);
        return kwt_err(KWT_USAGE, "no OCSP responder certificate yet: pass --key URI for its key "
                                  "(made on the token if absent)");
    }
    const char *why;
    if (!kwt_valid_uri(key, &why)) {
        free(crt);
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
    char *serial = NULL;
    if (!subj || !csr) {
        rc = kwt_err(KWT_FAIL, "cannot prepare the OCSP responder certificate");
        goto out;
    }
    rc = kwt_ensure_key(key, ca->conf.key_type ? ca->conf.key_type : "ec:P-256", kwt_ca_cnf(ca),
                        false, &created, NULL);
    if (rc)
        goto out;
    kwt_cmd c;
    kwt_cmd_init(&c, "req");
    kwt_cmd_add(&c, "-new");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_add(&c, "-key");
    kwt_cmd_add(&c, key);
    kwt_cmd_add(&c, "-subj");
    kwt_cmd_add(&c, subj);
    kwt_cmd_add(&c, "-out");
    kwt_cmd_add(&c, csr);
    if ((rc = kwt_run(&c, kwt_ca_cnf(ca), NULL)))
        goto out;
    /* a previous responder certificate is superseded */
    kwt_index ix = {0};
    char *ixp = kwt_state_path(ca, "index.txt");
    char *old = NULL;
    if (kwt_index_load(&ix, ixp) == 0) {
        kwt_row *r = kwt_index_find_name(&ix, OCSP_NAME);
        if (r && r->status == 'V')
            old = kwt_strdup(r->serial);
    }
    kwt_index_free(&ix);
    free(ixp);
    if ((rc = kwt_txn_begin(ca)) == 0)
        rc = kwt_sign_one(ca, csr, "ocsp", OCSP_NAME, 365, NULL, NULL, &serial);
    if (rc == 0 && old)
        rc = kwt_revoke_serial(ca, old, "superseded", -1);
    if (rc == 0)
        rc = kwt_txn_commit(ca);
    free(old);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(ca, OCSP_NAME, serial);
        free(ca->conf.ocsp_key);
        ca->conf.ocsp_key = kwt_strdup(key);
        char *cp = kwt_path(ca->dir, "keyward.conf");
        kwt_conf_save(&ca->conf, cp);
        free(cp);
        kwt_clear_error();
    }
    kwt_audit(ca, "ca ocsp signer", OCSP_NAME, serial, subj, rc);
out:
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    free(csr);
    free(subj);
    free(serial);
    free(crt);
    return rc;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void http_reply(int fd, int code, const char *ctype, const void *body, size_t len)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code,
                     code == 200   ? "OK"
                     : code == 400 ? "Bad Request"
                                   : "Error",
                     ctype, len);
    send_all(fd, hdr, (size_t)n);
    send_all(fd, body, len);
}

static int unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Read one HTTP request; the OCSP request bytes go to *req. 0 ok, -1 bad request. */
static int read_request(int fd, kwt_buf *req)
{
    kwt_buf in = {0};
    char tmp[4096];
    char *hend = NULL;
    while (!hend) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0 || in.len + (size_t)n > 65536) {
            kwt_buf_free(&in);
            return -1;
        }
        kwt_buf_addn(&in, tmp, (size_t)n);
        hend = strstr(in.s, "\r\n\r\n");
    }
    size_t hlen = (size_t)(hend - in.s) + 4;
    int rc = -1;
    if (!strncmp(in.s, "POST ", 5)) {
        char *cl = strcasestr(in.s, "\r\nContent-Length:");
        long want = cl && cl < hend ? strtol(cl + 17, NULL, 10) : -1;
        if (want > 0 && want <= 60000) {
            while (in.len - hlen < (size_t)want) {
                ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
                if (n <= 0)
                    break;
                kwt_buf_addn(&in, tmp, (size_t)n);
            }
            if (in.len - hlen >= (size_t)want) {
                kwt_buf_addn(req, in.s + hlen, (size_t)want);
                rc = 0;
            }
        }
    } else if (!strncmp(in.s, "GET /", 5)) {
        /* GET /<url-encoded base64 of the DER request> */
        char *path = in.s + 4, *sp = strchr(path, ' ');
        if (sp) {
            *sp = '\0';
            char *last = strrchr(path, '/') + 1;
            kwt_buf b64 = {0};
            for (char *p = last; *p; p++) {
                if (*p == '%' && unhex(p[1]) >= 0 && unhex(p[2]) >= 0) {
                    char ch = (char)(unhex(p[1]) * 16 + unhex(p[2]));
                    kwt_buf_addn(&b64, &ch, 1);
                    p += 2;
                } else {
                    kwt_buf_addn(&b64, p, 1);
                }
            }
            if (b64.len && b64.len < 60000) {
                unsigned char *der = malloc(b64.len);
                int n = EVP_DecodeBlock(der, (unsigned char *)b64.s, (int)b64.len);
                if (n > 0) {
                    size_t pad = 0;
                    while (pad < 2 && b64.len > pad && b64.s[b64.len - 1 - pad] == '=')
                        pad++;
                    kwt_buf_addn(req, (char *)der, (size_t)n - pad);
                    rc = 0;
                }
                free(der);
            }
            kwt_buf_free(&b64);
        }
    }
    kwt_buf_free(&in);
    return rc;
}

static void serve_one(kwt_ca *ca, int fd, const char *tmp)
{
    kwt_buf req = {0};
    if (read_request(fd, &req) != 0) {
        http_reply(fd, 400, "text/plain", "bad request\n", 12);
        kwt_buf_free(&req);
        return;
    }
    char *rq = kwt_path(tmp, "req.der"), *rs = kwt_path(tmp, "resp.der");
    char *ix = kwt_path(ca->dir, "state/index.txt");
    char *cacrt = kwt_path(ca->dir, "ca.crt");
    char *signer = kwt_asprintf("%s/issued/%s.crt", ca->dir, OCSP_NAME);
    unlink(rs);
    if (kwt_write_atomic(rq, req.s, req.len, 0600) == 0) {
        kwt_cmd c;
        kwt_cmd_init(&c, "ocsp");
        kwt_cmd_add(&c, "-index");
        kwt_cmd_add(&c, ix);
        kwt_cmd_add(&c, "-CA");
        kwt_cmd_add(&c, cacrt);
        kwt_cmd_add(&c, "-rsigner");
        kwt_cmd_add(&c, signer);
        kwt_cmd_add(&c, "-rkey");
        kwt_cmd_add(&c, ca->conf.ocsp_key);
        kwt_cmd_add(&c, "-reqin");
        kwt_cmd_add(&c, rq);
        kwt_cmd_add(&c, "-respout");
        kwt_cmd_add(&c, rs);
        kwt_cmd_add(&c, "-nmin");
        kwt_cmd_add(&c, "60");
        size_t len = 0;
        char *resp = NULL;
        if (kwt_run(&c, kwt_ca_cnf(ca), NULL) == 0 && (resp = kwt_read_file(rs, &len)) && len)
            http_reply(fd, 200, "application/ocsp-response", resp, len);
        else
            http_reply(fd, 500, "text/plain", "responder error\n", 16);
        free(resp);
    }
    kwt_buf_free(&req);
    free(rq);
    free(rs);
    free(ix);
    free(cacrt);
    free(signer);
}

int kwt_cmd_ca_ocsp(int argc, char **argv)
{
    const char *port = NULL, *host = "127.0.0.1", *key = NULL, *count_s = NULL;
    kwt_optspec spec[] = {{"--port", &port, NULL},
                          {"--host", &host, NULL},
                          {"--key", &key, NULL},
                          {"--count", &count_s, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca ocsp", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *end;
    long portn = port ? strtol(port, &end, 10) : 0;
    if (!port || *end || portn < 1 || portn > 65535)
        return kwt_err(KWT_USAGE, "ca ocsp: --port 1..65535 is required");
    long count = count_s ? strtol(count_s, &end, 10) : 0;
    if (count_s && (*end || count < 1))
        return kwt_err(KWT_USAGE, "--count must be a positive number");
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    rc = ensure_signer(&ca, key);
    /* serving only reads the state: let writers in */
    if (ca.lock_fd >= 0) {
        close(ca.lock_fd);
        ca.lock_fd = -1;
    }
    if (rc || kwt_g.dry_run) {
        kwt_ca_close(&ca);
        return rc;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    int fd = -1;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        kwt_ca_close(&ca);
        return kwt_err(KWT_USAGE, "--host %s: not a numeric IP address", host);
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot listen on %s port %s: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        kwt_ca_close(&ca);
        return rc;
    }
    freeaddrinfo(ai);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: accept returns on a signal */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    char *tmp = kwt_tmpdir();
    printf("OCSP responder for %s listening on http://%s%s%s:%s/\n", ca.dir,
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
    fflush(stdout);
    long served = 0;
    while (!stop && tmp && (!count || served < count)) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        serve_one(&ca, c, tmp);
        close(c);
        served++;
    }
    close(fd);
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    kwt_ca_close(&ca);
    return 0;
}
