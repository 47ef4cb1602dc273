/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward est enroll` and `keyward est reenroll`: the EST client (RFC 7030). The CSR is made on
 * the origin token by `keyward req` (the same code, in this process); it is posted over TLS
 * (libssl, in a private library context with the keyward provider, so a client key on the token
 * can authenticate the connection) and the certificate from the certs-only PKCS#7 answer is
 * stored atomically at --out. For a systemd timer: `est reenroll` renews with the current
 * certificate. */
#include "kwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX     (1024 * 1024)
#define TIMEOUT      30
#define EST_DUE_DAYS 30 /* est reenroll --due without DAYS, as ca renew --due's default */

typedef struct {
    char *host, *port, *path; /* path: the EST base, /.well-known/est */
} est_url;

static void url_free(est_url *u)
{
    free(u->host);
    free(u->port);
    free(u->path);
}

/* https://HOST[:PORT][/PATH]; [v6]:port too. */
static int url_parse(const char *s, est_url *u)
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
        url_free(u);
        return kwt_err(KWT_USAGE, "URL %s: not https://HOST[:PORT][/PATH]", s);
    }
    return 0;
}

static EVP_PKEY *load_key(OSSL_LIB_CTX *lc, const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, lc, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pk = NULL;
    while (st && !pk && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *in = OSSL_STORE_load(st);
        if (!in)
            break;
        if (OSSL_STORE_INFO_get_type(in) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(in);
        OSSL_STORE_INFO_free(in);
    }
    OSSL_STORE_close(st);
    return pk;
}

/* A secret file as a PIN file is: regular, owner-only; its first line. */
static char *read_secret(const char *opt, const char *path)
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

typedef struct {
    const char *url, *label, *cacert, *user, *password_file, *cert, *key_file, *key;
    const char *module, *pin_source;
    int tls_max; /* TLS1_2_VERSION or 0 (1.3 when the server has it) */
} est_client;

/* RFC 7030 section 3.5 binds a request to its TLS connection by the connection's channel
 * binding. TLS 1.2: tls-unique (RFC 5929), the first Finished message of the handshake: the
 * client's in a full handshake, the server's in an abbreviated (resumed) one. TLS 1.3 has no
 * tls-unique; its replacement is tls-exporter (RFC 9266): 32 bytes of the keying material
 * exporter with the label "EXPORTER-Channel-Binding" and an empty context. */
size_t kwt_tls_channel_binding(SSL *s, unsigned char *out, size_t max, const char **kind)
{
    if (SSL_version(s) == TLS1_3_VERSION) {
        static const char label[] = "EXPORTER-Channel-Binding";
        *kind = "tls-exporter";
        if (max < 32 ||
            SSL_export_keying_material(s, out, 32, label, sizeof(label) - 1, NULL, 0, 1) != 1)
            return 0;
        return 32;
    }
    if (SSL_version(s) != TLS1_2_VERSION)
        return 0;
    *kind = "tls-unique";
    bool own = (SSL_is_server(s) != 0) == (SSL_session_reused(s) != 0);
    size_t n = own ? SSL_get_finished(s, out, max) : SSL_get_peer_finished(s, out, max);
    return n <= max ? n : 0;
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
    EVP_PKEY *pk = load_key(lc, key);
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
static int post(const est_client *o, const est_url *u, const char *op, X509_REQ *csr,
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
        pk = load_key(lc, fk ? fk : kuri);
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
        if (!(secret = read_secret("--password-file", o->password_file))) {
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

/* Run `keyward req` in this process, its report kept off stdout (the --json document). */
static int make_csr(const est_client *o, const char *key, const char *subj, const char *san,
                    const char *devid, const char *out)
{
    const char *a[16];
    int n = 0;
    a[n++] = "req";
    a[n++] = "--key";
    a[n++] = key;
    a[n++] = "--subject";
    a[n++] = subj;
    if (san) {
        a[n++] = "--san";
        a[n++] = san;
    }
    if (devid) {
        a[n++] = "--device-id";
        a[n++] = devid;
    }
    if (o->module) {
        a[n++] = "--module";
        a[n++] = o->module;
    }
    if (o->pin_source) {
        a[n++] = "--pin-source";
        a[n++] = o->pin_source;
    }
    a[n++] = "--out";
    a[n++] = out;
    char *argv[17];
    for (int i = 0; i < n; i++)
        argv[i] = kwt_strdup(a[i]);
    argv[n] = NULL;
    fflush(stdout);
    int saved = dup(1), dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && dn >= 0)
        dup2(dn, 1);
    int rc = kwt_cmd_req(n, argv);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, 1);
        close(saved);
    }
    if (dn >= 0)
        close(dn);
    for (int i = 0; i < n; i++)
        free(argv[i]);
    return rc;
}

/* Printable text of an error answer, one line, bounded. */
static char *answer_text(const kwt_buf *b)
{
    kwt_buf t = {0};
    kwt_buf_addn(&t, "", 0);
    for (size_t i = 0; i < b->len && t.len < 300; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (c == '\n' || c == '\r')
            break;
        kwt_buf_addn(&t, c >= 0x20 && c < 0x7f ? (const char *)&c : "?", 1);
    }
    return t.s;
}

/* est reenroll --due when CURRENT is not due: say so, change nothing, exit 0. */
static int not_due(const est_client *o, X509 *cur, int window)
{
    char *serial = kwt_cert_serial(cur), *sub = kwt_cert_subject(cur);
    char end[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print_ex(b, X509_get0_notAfter(cur), ASN1_DTFLGS_ISO8601) == 1) {
        int n = BIO_read(b, end, sizeof(end) - 1);
        end[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    if (kwt_g.json) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"url\":");
        kwt_buf_json_str(&j, o->url);
        kwt_buf_add(&j, ",\"operation\":\"simplereenroll\",\"cert\":");
        kwt_buf_json_str(&j, o->cert);
        kwt_buf_add(&j, ",\"serial\":");
        kwt_buf_json_str(&j, serial);
        kwt_buf_add(&j, ",\"subject\":");
        kwt_buf_json_str(&j, sub);
        kwt_buf_add(&j, ",\"due\":false,\"not_after\":");
        kwt_buf_json_str(&j, end);
        kwt_buf_add(&j, "}\n");
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    } else {
        printf("not due: %s (serial %s) ends %s, more than %d days from now; nothing "
               "re-enrolled\n",
               o->cert, serial, end, window);
    }
    free(serial);
    free(sub);
    return 0;
}

static int est_main(bool re, int argc, char **argv)
{
    est_client o = {0};
    o.module = getenv("KEYWARD_MODULE");
    const char *subject = NULL, *san = NULL, *devid = NULL, *out = NULL, *new_key = NULL,
               *tls_max = NULL;
    kwt_optspec spec[] = {
        {"--key", &o.key, NULL},       {"--new-key", &new_key, NULL},
        {"--subject", &subject, NULL}, {"--san", &san, NULL},
        {"--device-id", &devid, NULL}, {"--label", &o.label, NULL},
        {"--user", &o.user, NULL},     {"--password-file", &o.password_file, NULL},
        {"--cert", &o.cert, NULL},     {"--key-file", &o.key_file, NULL},
        {"--cacert", &o.cacert, NULL}, {"--out", &out, NULL},
        {"--module", &o.module, NULL}, {"--pin-source", &o.pin_source, NULL},
        {"--tls-max", &tls_max, NULL}, {NULL, NULL, NULL}};
    const char *pos[1], *why;
    const char *cmd = re ? "est reenroll" : "est enroll";
    int window = 0, npos, rc = kwt_take_due(&argc, argv, &window, cmd);
    if (rc)
        return rc;
    if (window && !re)
        return kwt_err(KWT_USAGE, "est enroll: --due goes with est reenroll");
    if (window < 0)
        window = EST_DUE_DAYS;
    rc = kwt_parse_args(cmd, argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1 || !o.key || !o.cacert || !out)
        return kwt_err(KWT_USAGE, "%s: URL, --key URI, --cacert FILE and --out CERT are required",
                       cmd);
    if (!kwt_valid_uri(o.key, &why))
        return kwt_err(KWT_USAGE, "--key: %s", why);
    if (tls_max && strcmp(tls_max, "1.2") && strcmp(tls_max, "1.3"))
        return kwt_err(KWT_USAGE, "--tls-max %s: 1.2 or 1.3", tls_max);
    o.tls_max = tls_max && !strcmp(tls_max, "1.2") ? TLS1_2_VERSION : 0;
    if (new_key && (!re || !kwt_valid_uri(new_key, &why)))
        return kwt_err(KWT_USAGE, "--new-key: %s", re ? why : "only est reenroll makes a new key");
    if (!re && !subject)
        return kwt_err(KWT_USAGE, "est enroll: --subject DN is required");
    if (re && (subject || san || devid || o.user))
        return kwt_err(KWT_USAGE, "est reenroll keeps the identity of --cert: no --subject, "
                                  "--san, --device-id or --user");
    if (re && !o.cert)
        return kwt_err(KWT_USAGE, "est reenroll: --cert CURRENT (the certificate it renews) is "
                                  "required");
    if ((o.user != NULL) != (o.password_file != NULL))
        return kwt_err(KWT_USAGE, "--user and --password-file go together");
    if (o.key_file && !o.cert)
        return kwt_err(KWT_USAGE, "--key-file goes with --cert");
    if (o.label)
        for (const char *p = o.label; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", *p))
                return kwt_err(KWT_USAGE, "--label %s: letters, digits, - and _ only", o.label);
    if ((rc = kwt_check_out_path("--out", out, false)))
        return rc;
    est_url u;
    if ((rc = url_parse(pos[0], &u)))
        return rc;
    o.url = pos[0];
    char *tmp = kwt_tmpdir(), *csrp = tmp ? kwt_path(tmp, "req.csr") : NULL, *subj_re = NULL;
    char *san_re = NULL;
    X509 *cur = NULL, *got = NULL;
    X509_REQ *csr = NULL;
    PKCS7 *p7 = NULL;
    kwt_buf resp = {0}, hdrs = {0};
    int code = 0;
    bool due = false;
    if (!csrp) {
        rc = kwt_err(KWT_FAIL, "cannot create a temporary directory: %s", strerror(errno));
        goto out;
    }
    if (re) {
        /* the identity of the current certificate: its subject and names */
        if (!(cur = kwt_load_cert(o.cert))) {
            rc = kwt_err(KWT_USAGE, "--cert %s: not a certificate", o.cert);
            goto out;
        }
        if (window) {
            /* --due: nothing to do (and no connection) while CURRENT has more than DAYS left */
            time_t limit = time(NULL) + (time_t)window * 86400;
            if (X509_cmp_time(X509_get0_notAfter(cur), &limit) > 0) {
                rc = not_due(&o, cur, window);
                goto out;
            }
            due = true;
        }
        subj_re = kwt_cert_subj_slash(cur, NULL);
        GENERAL_NAMES *g = X509_get_ext_d2i(cur, NID_subject_alt_name, NULL, NULL);
        kwt_buf sb = {0};
        for (int i = 0; g && i < sk_GENERAL_NAME_num(g); i++) {
            GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
            const char *t = n->type == GEN_DNS     ? "DNS"
                            : n->type == GEN_EMAIL ? "email"
                            : n->type == GEN_URI   ? "URI"
                                                   : NULL;
            if (t)
                kwt_buf_printf(&sb, "%s%s:%.*s", sb.len ? "," : "", t, ASN1_STRING_length(n->d.ia5),
                               (const char *)ASN1_STRING_get0_data(n->d.ia5));
            if (n->type == GEN_IPADD) {
                char ip[INET6_ADDRSTRLEN];
                int l = ASN1_STRING_length(n->d.ip);
                const unsigned char *d = ASN1_STRING_get0_data(n->d.ip);
                if ((l == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip))) ||
                    (l == 16 && inet_ntop(AF_INET6, d, ip, sizeof(ip))))
                    kwt_buf_printf(&sb, "%sIP:%s", sb.len ? "," : "", ip);
            }
        }
        GENERAL_NAMES_free(g);
        san_re = sb.s;
    }
    if ((rc = make_csr(&o, new_key ? new_key : o.key, re ? subj_re : subject, re ? san_re : san,
                       devid, csrp)))
        goto out;
    if (!(csr = kwt_load_csr(csrp))) {
        rc = kwt_err(KWT_FAIL, "cannot read the request keyward req made");
        goto out;
    }
    if ((rc = post(&o, &u, re ? "simplereenroll" : "simpleenroll", csr, new_key ? new_key : o.key,
                   &code, &resp, &hdrs)))
        goto out;
    if (code != 200) {
        char *t = answer_text(&resp);
        char *ra = hdrs.s ? strcasestr(hdrs.s, "\r\nRetry-After:") : NULL;
        long secs = ra ? strtol(ra + 14, NULL, 10) : 0;
        if (secs > 0)
            rc = kwt_err(KWT_FAIL, "the EST server answered %d: %s (retry after %ld seconds)", code,
                         t, secs);
        else
            rc = kwt_err(KWT_FAIL, "the EST server answered %d: %s", code, t);
        free(t);
        goto out;
    }
    /* certs-only PKCS#7, base64 */
    kwt_buf clean = {0};
    for (size_t i = 0; i < resp.len; i++)
        if (!strchr(" \t\r\n", resp.s[i]))
            kwt_buf_addn(&clean, resp.s + i, 1);
    unsigned char *p7d = clean.len ? malloc(clean.len) : NULL;
    int pl = p7d ? EVP_DecodeBlock(p7d, (unsigned char *)clean.s, (int)clean.len) : -1;
    if (pl > 0) {
        pl -= (clean.s[clean.len - 1] == '=') + (clean.s[clean.len - 2] == '=');
        const unsigned char *pp = p7d;
        p7 = d2i_PKCS7(NULL, &pp, pl);
    }
    free(p7d);
    kwt_buf_free(&clean);
    STACK_OF(X509) *certs = p7 && PKCS7_type_is_signed(p7) && p7->d.sign ? p7->d.sign->cert : NULL;
    for (int i = 0; certs && i < sk_X509_num(certs) && !got; i++)
        if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), X509_REQ_get0_pubkey(csr)) == 1)
            got = X509_dup(sk_X509_value(certs, i));
    ERR_clear_error();
    if (!got) {
        rc = kwt_err(KWT_FAIL, "the EST server's answer holds no certificate for this key");
        goto out;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len = b && PEM_write_bio_X509(b, got) == 1 ? BIO_get_mem_data(b, &pem) : 0;
    if (len <= 0 || kwt_write_atomic(out, pem, (size_t)len, 0644) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", out, strerror(errno));
    BIO_free(b);
    if (rc == 0) {
        char *serial = kwt_cert_serial(got), *sub = kwt_cert_subject(got);
        if (kwt_g.json) {
            kwt_buf j = {0};
            kwt_buf_add(&j, "{\"url\":");
            kwt_buf_json_str(&j, o.url);
            kwt_buf_add(&j, ",\"operation\":");
            kwt_buf_json_str(&j, re ? "simplereenroll" : "simpleenroll");
            kwt_buf_add(&j, ",\"cert\":");
            kwt_buf_json_str(&j, out);
            kwt_buf_add(&j, ",\"serial\":");
            kwt_buf_json_str(&j, serial);
            kwt_buf_add(&j, ",\"subject\":");
            kwt_buf_json_str(&j, sub);
            if (window)
                kwt_buf_printf(&j, ",\"due\":%s", due ? "true" : "false");
            kwt_buf_add(&j, "}\n");
            fputs(j.s, stdout);
            kwt_buf_free(&j);
        } else {
            printf("%s: certificate %s (serial %s) written to %s\n",
                   re ? "re-enrolled" : "enrolled", sub, serial, out);
        }
        free(serial);
        free(sub);
    }
out:
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    free(csrp);
    free(subj_re);
    free(san_re);
    X509_free(cur);
    X509_free(got);
    X509_REQ_free(csr);
    PKCS7_free(p7);
    kwt_buf_free(&resp);
    kwt_buf_free(&hdrs);
    url_free(&u);
    return rc;
}

int kwt_cmd_est(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        kwt_usage("est", argc < 2 ? stderr : stdout);
        return argc < 2 ? KWT_USAGE : 0;
    }
    if (!strcmp(argv[1], "enroll"))
        return est_main(false, argc - 1, argv + 1);
    if (!strcmp(argv[1], "reenroll"))
        return est_main(true, argc - 1, argv + 1);
    return kwt_err(KWT_USAGE, "unknown command 'est %s' (enroll, reenroll)", argv[1]);
}
