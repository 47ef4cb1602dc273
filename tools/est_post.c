/* SPDX-License-Identifier: Apache-2.0 */
/* The EST client's request: the https:// URL, the TLS connection (the client key through the
 * keyward provider), the request bound to it and posted, and the HTTP answer read. */
#include "est_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

void est_url_free(est_url *u)
{
    free(u->host);
    free(u->port);
    free(u->path);
}

/* https://HOST[:PORT][/PATH]; [v6]:port too. */
int est_url_parse(const char *s, est_url *u)
{
    memset(u, 0, sizeof(*u));
    if (strncmp(s, "https://", 8))
        return kwt_err(KWT_USAGE, "URL %s: EST runs over https:// only", s);
    const char *h = s + 8, *e;
    if (*h == '[') {
        e = strchr(h, ']');
        if (!e)
            return kwt_err(KWT_USAGE, "URL %s: unterminated [address]", s);
        u->host = kwt_asprintf("%.*s", (int)(e - h - 1), h + 1);
        e++;
    } else {
        e = h + strcspn(h, ":/");
        u->host = kwt_asprintf("%.*s", (int)(e - h), h);
    }
    if (*e == ':') {
        const char *p = e + 1;
        e = p + strcspn(p, "/");
        u->port = kwt_asprintf("%.*s", (int)(e - p), p);
    } else {
        u->port = kwt_strdup("443");
    }
    u->path = kwt_strdup(*e ? e : "/.well-known/est");
    size_t n = strlen(u->path);
    while (n > 1 && u->path[n - 1] == '/')
        u->path[--n] = '\0';
    bool bad = !*u->host || !*u->port || strspn(u->port, "0123456789") != strlen(u->port);
    for (const char *p = s; *p && !bad; p++)
        bad = (unsigned char)*p <= 0x20 || *p == 0x7f;
    if (bad) {
        est_url_free(u);
        return kwt_err(KWT_USAGE, "URL %s: not https://HOST[:PORT][/PATH]", s);
    }
    return 0;
}

/* A secret file as a PIN file is: regular, owner-only; its first line. */
static char *est_read_secret(const char *opt, const char *path)
{
    if (!strncmp(path, "file:", 5))
        path += 5;
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        kwt_err(KWT_USAGE, "%s %s: must be a regular file readable by its owner only (0600/0400)",
                opt, path);
        return NULL;
    }
    char *d = kwt_read_file(path, NULL);
    if (!d) {
        kwt_err(KWT_FAIL, "%s %s: %s", opt, path, strerror(errno));
        return NULL;
    }
    d[strcspn(d, "\r\n")] = '\0';
    return d;
}

/* The request bound to this connection: its challengePassword set to the base64 of the
 * connection's channel binding and signed again with its key (on the token, through the
 * provider in lc); the base64 DER of it in *body. */
static int bind_csr(SSL *s, OSSL_LIB_CTX *lc, X509_REQ *csr, const char *key, char **body)
{
    unsigned char cb[64], b64[4 * (sizeof(cb) + 2) / 3 + 1];
    const char *kind = NULL;
    size_t n = kwt_tls_channel_binding(s, cb, sizeof(cb), &kind);
    if (!n)
        return kwt_err(KWT_FAIL, "cannot compute the TLS channel binding of the connection");
    EVP_EncodeBlock(b64, cb, (int)n);
    int i;
    while ((i = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1)) >= 0)
        X509_ATTRIBUTE_free(X509_REQ_delete_attr(csr, i));
    int mdnid = NID_undef, pknid;
    EVP_PKEY *pk = kwt_tls_load_key(lc, key);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    int rc = 0;
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(csr), &mdnid, &pknid) || !pk || !mc ||
        X509_REQ_add1_attr_by_NID(csr, NID_pkcs9_challengePassword, MBSTRING_ASC, b64, -1) != 1 ||
        EVP_DigestSignInit_ex(mc, NULL, mdnid != NID_undef ? OBJ_nid2sn(mdnid) : NULL, lc, NULL, pk,
                              NULL) != 1 ||
        X509_REQ_sign_ctx(csr, mc) <= 0)
        rc = kwt_err(KWT_FAIL, "cannot sign the request again with %s for the TLS channel binding",
                     key);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(pk);
    unsigned char *der = NULL;
    int dl = rc == 0 ? i2d_X509_REQ(csr, &der) : -1;
    *body = dl > 0 ? malloc(4 * (((size_t)dl + 2) / 3) + 1) : NULL;
    if (*body)
        EVP_EncodeBlock((unsigned char *)*body, der, dl);
    else if (rc == 0)
        rc = kwt_err(KWT_FAIL, "cannot encode the request");
    OPENSSL_free(der);
    return rc;
}

/* POST the request (base64 PKCS#10), bound to the connection, to BASE[/label]/op; *code and
 * *resp (the body) on an answer. csr_key: the URI of the request's key. */
int est_post(const est_client *o, const est_url *u, const char *op, X509_REQ *csr,
             const char *csr_key, int *code, kwt_buf *resp, kwt_buf *hdrs)
{
    int rc = 0, fd = -1;
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();
    SSL_CTX *ctx = NULL;
    SSL *s = NULL;
    EVP_PKEY *pk = NULL;
    char *secret = NULL, *cnfp = NULL, *tmp = NULL, *body = NULL;
    kwt_buf req = {0}, in = {0};
    /* the provider, for a client key on a token */
    char *cnf = kwt_cnf_provider_text(o->module, o->pin_source);
    tmp = kwt_tmpdir();
    cnfp = tmp ? kwt_path(tmp, "openssl.cnf") : NULL;
    if (!lc || !cnfp || kwt_write_atomic(cnfp, cnf, strlen(cnf), 0600) != 0 ||
        !OSSL_LIB_CTX_load_config(lc, cnfp)) {
        rc = kwt_err(KWT_FAIL, "cannot load the keyward provider for TLS");
        goto out;
    }
    ctx = SSL_CTX_new_ex(lc, NULL, TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        (o->tls_max && !SSL_CTX_set_max_proto_version(ctx, o->tls_max)) ||
        SSL_CTX_load_verify_file(ctx, o->cacert) != 1) {
        rc = kwt_err(KWT_USAGE, "--cacert %s: not a readable PEM file of CA certificates",
                     o->cacert);
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->cert) {
        const char *kuri = o->key_file ? o->key_file : o->key;
        char *fk = o->key_file && strncmp(o->key_file, "file:", 5)
                       ? kwt_asprintf("file:%s", o->key_file)
                       : NULL;
        pk = kwt_tls_load_key(lc, fk ? fk : kuri);
        free(fk);
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 || !pk ||
            SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            rc = kwt_err(KWT_USAGE,
                         "--cert %s: cannot use it with the key %s (not a PEM "
                         "certificate of that key?)",
                         o->cert, kuri);
            goto out;
        }
    }
    /* the request's head; the body (bound to the connection) after the handshake */
    kwt_buf_printf(&req, "POST %s%s%s/%s HTTP/1.1\r\nHost: %s\r\n", u->path, o->label ? "/" : "",
                   o->label ? o->label : "", op, u->host);
    kwt_buf_add(&req, "Content-Type: application/pkcs10\r\nContent-Transfer-Encoding: base64\r\n");
    if (o->user) {
        if (!(secret = est_read_secret("--password-file", o->password_file))) {
            rc = KWT_USAGE;
            goto out;
        }
        char *up = kwt_asprintf("%s:%s", o->user, secret);
        size_t n = strlen(up);
        unsigned char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        EVP_EncodeBlock(b64, (unsigned char *)up, (int)n);
        kwt_buf_printf(&req, "Authorization: Basic %s\r\n", (char *)b64);
        OPENSSL_cleanse(up, n);
        OPENSSL_cleanse(b64, strlen((char *)b64));
        free(up);
        free(b64);
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &ai) != 0 || !ai) {
        rc = kwt_err(KWT_FAIL, "cannot resolve %s", u->host);
        goto out;
    }
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {TIMEOUT, 0};
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        }
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        rc = kwt_err(KWT_FAIL, "cannot connect to %s port %s: %s", u->host, u->port,
                     strerror(errno));
        goto out;
    }
    s = SSL_new(ctx);
    if (!s || SSL_set_fd(s, fd) != 1 || SSL_set1_host(s, u->host) != 1 ||
        (!strchr(u->host, ':') && strspn(u->host, "0123456789.") != strlen(u->host) &&
         SSL_set_tlsext_host_name(s, u->host) != 1)) {
        rc = kwt_err(KWT_FAIL, "cannot set up TLS");
        goto out;
    }
    if (SSL_connect(s) != 1) {
        long v = SSL_get_verify_result(s);
        rc = kwt_err(KWT_FAIL, "TLS with %s:%s failed: %s", u->host, u->port,
                     v != X509_V_OK ? X509_verify_cert_error_string(v)
                                    : "handshake refused (see --cacert, --cert)");
        goto out;
    }
    if ((rc = bind_csr(s, lc, csr, csr_key, &body)))
        goto out;
    kwt_buf_printf(&req, "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(body), body);
    size_t off = 0;
    while (off < req.len) {
        int w = SSL_write(s, req.s + off, (int)(req.len - off));
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    char buf[8192];
    int n;
    while ((n = SSL_read(s, buf, sizeof(buf))) > 0 && in.len < RESP_MAX)
        kwt_buf_addn(&in, buf, (size_t)n);
    char *he = in.s ? strstr(in.s, "\r\n\r\n") : NULL;
    if (!he || sscanf(in.s, "HTTP/1.%*d %d", code) != 1) {
        rc = kwt_err(KWT_FAIL, "%s:%s sent no HTTP answer", u->host, u->port);
        goto out;
    }
    kwt_buf_addn(hdrs, in.s, (size_t)(he - in.s) + 2);
    kwt_buf_addn(resp, he + 4, in.len - (size_t)(he + 4 - in.s));
out:
    ERR_clear_error();
    if (req.s)
        OPENSSL_cleanse(req.s, req.len);
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    if (s)
        SSL_shutdown(s);
    SSL_free(s);
    if (fd >= 0)
        close(fd);
    EVP_PKEY_free(pk);
    SSL_CTX_free(ctx);
    OSSL_LIB_CTX_free(lc);
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    free(cnfp);
    free(cnf);
    kwt_buf_free(&req);
    kwt_buf_free(&in);
    free(body);
    return rc;
}
