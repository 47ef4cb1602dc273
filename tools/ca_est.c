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
#include "kwt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EST_NAME     "est-server"
#define EST_DAYS     365
#define BODY_MAX     (64 * 1024)
#define HEAD_MAX     8192
#define DEADLINE     10 /* default seconds for a whole request, and again for the answer */
#define MAX_CHILDREN 64
#define MAX_LABELS   32
#define MAX_DNS      16
#define PBKDF2_ITER  200000
#define SECRET_MIN   8

enum { AUTH_BASIC = 1, AUTH_CERT = 2 };

typedef struct {
    char *name, *profile;
    int auth;
    bool require_cb; /* a request must carry the TLS channel binding (RFC 7030 §3.5) */
} est_label;

typedef struct {
    est_label labels[MAX_LABELS];
    int nlabels;
    char *secrets;   /* file of salted secret hashes */
    char *bootstrap; /* PEM file of the bootstrap CA(s) for TLS client certificates */
    char *key;       /* URI of the server's TLS key */
    char *dns[MAX_DNS];
    int ndns;
    long rate_n, rate_secs; /* enrolments per identity per window; 0: no limit */
    unsigned deadline;      /* seconds a connection has to send its request */
} est_conf;

static unsigned deadline = DEADLINE; /* the child's, from est_conf */

static volatile sig_atomic_t stop, child_exited;

static void on_signal(int sig)
{
    if (sig == SIGCHLD)
        child_exited = 1;
    else
        stop = 1;
}

static void conf_free(est_conf *c)
{
    for (int i = 0; i < c->nlabels; i++) {
        free(c->labels[i].name);
        free(c->labels[i].profile);
    }
    for (int i = 0; i < c->ndns; i++)
        free(c->dns[i]);
    free(c->secrets);
    free(c->bootstrap);
    free(c->key);
    memset(c, 0, sizeof(*c));
}

static bool valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

/* User names of one-time secrets: what a Basic header and the secrets file can carry. */
static bool valid_user(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.@", *p))
            return false;
    return true;
}

/* The config file: one setting a line, words separated by blanks, # comments.
 *   label NAME profile client|server|device auth basic|cert|both [require_channel_binding]
 *   secrets PATH        bootstrap_ca PATH        key URI
 *   dns NAME            rate_limit N SECONDS */
static int conf_load(est_conf *c, const char *cadir, const char *path)
{
    memset(c, 0, sizeof(*c));
    char *text = NULL;
    if (path) {
        text = kwt_read_file(path, NULL);
        if (!text)
            return kwt_err(KWT_USAGE, "--config %s: %s", path, strerror(errno));
    }
    int rc = 0, line = 0;
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && rc == 0;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *w[8], *s2 = NULL;
        int n = 0;
        char *hash = strchr(l, '#');
        if (hash)
            *hash = '\0';
        for (char *t = strtok_r(l, " \t\r", &s2); t && n < 8; t = strtok_r(NULL, " \t\r", &s2))
            w[n++] = t;
        if (n == 0)
            continue;
        if (!strcmp(w[0], "label") &&
            (n == 6 || (n == 7 && !strcmp(w[6], "require_channel_binding"))) &&
            !strcmp(w[2], "profile") && !strcmp(w[4], "auth")) {
            int auth = !strcmp(w[5], "basic")  ? AUTH_BASIC
                       : !strcmp(w[5], "cert") ? AUTH_CERT
                       : !strcmp(w[5], "both") ? AUTH_BASIC | AUTH_CERT
                                               : 0;
            if (!valid_label(w[1]))
                rc = kwt_err(KWT_USAGE, "%s:%d: label %s: letters, digits, - and _ only", path,
                             line, w[1]);
            else if (strcmp(w[3], "client") && strcmp(w[3], "server") && strcmp(w[3], "device"))
                rc = kwt_err(KWT_USAGE,
                             "%s:%d: profile %s: EST enrols client, server or device "
                             "certificates",
                             path, line, w[3]);
            else if (!auth)
                rc = kwt_err(KWT_USAGE, "%s:%d: auth must be basic, cert or both", path, line);
            else if (c->nlabels == MAX_LABELS)
                rc = kwt_err(KWT_USAGE, "%s:%d: more than %d labels", path, line, MAX_LABELS);
            for (int i = 0; rc == 0 && i < c->nlabels; i++)
                if (!strcmp(c->labels[i].name, w[1]))
                    rc = kwt_err(KWT_USAGE, "%s:%d: label %s given twice", path, line, w[1]);
            if (rc == 0) {
                c->labels[c->nlabels].name = kwt_strdup(w[1]);
                c->labels[c->nlabels].profile = kwt_strdup(w[3]);
                c->labels[c->nlabels].require_cb = n == 7;
                c->labels[c->nlabels++].auth = auth;
            }
        } else if ((!strcmp(w[0], "secrets") || !strcmp(w[0], "bootstrap_ca")) && n == 2) {
            char **dst = w[0][0] == 's' ? &c->secrets : &c->bootstrap;
            free(*dst);
            *dst = kwt_strdup(w[1]);
        } else if (!strcmp(w[0], "key") && n == 2) {
            const char *why;
            if (!kwt_valid_uri(w[1], &why))
                rc = kwt_err(KWT_USAGE, "%s:%d: key: %s", path, line, why);
            free(c->key);
            c->key = kwt_strdup(w[1]);
        } else if (!strcmp(w[0], "dns") && n == 2) {
            const char *why;
            char *t = kwt_asprintf("DNS:%s", w[1]), *s = kwt_san_to_conf(t, &why);
            if (!s)
                rc = kwt_err(KWT_USAGE, "%s:%d: dns %s: %s", path, line, w[1], why);
            else if (c->ndns == MAX_DNS)
                rc = kwt_err(KWT_USAGE, "%s:%d: more than %d dns names", path, line, MAX_DNS);
            else
                c->dns[c->ndns++] = kwt_strdup(w[1]);
            free(s);
            free(t);
        } else if (!strcmp(w[0], "deadline") && n == 2) {
            char *e;
            long d = strtol(w[1], &e, 10);
            if (*e || d < 1 || d > 600)
                rc = kwt_err(KWT_USAGE, "%s:%d: deadline SECONDS (1 to 600)", path, line);
            c->deadline = (unsigned)d;
        } else if (!strcmp(w[0], "rate_limit") && n == 3) {
            char *e1, *e2;
            c->rate_n = strtol(w[1], &e1, 10);
            c->rate_secs = strtol(w[2], &e2, 10);
            if (*e1 || *e2 || c->rate_n < 1 || c->rate_secs < 1 || c->rate_secs > 86400 * 366)
                rc = kwt_err(KWT_USAGE, "%s:%d: rate_limit N SECONDS (both positive)", path, line);
        } else {
            rc = kwt_err(KWT_USAGE,
                         "%s:%d: not understood (label NAME profile P auth basic|cert|both "
                         "[require_channel_binding], "
                         "secrets PATH, bootstrap_ca PATH, key URI, dns NAME, rate_limit N "
                         "SECONDS, deadline SECONDS)",
                         path, line);
        }
    }
    free(text);
    bool have_default = false;
    for (int i = 0; i < c->nlabels; i++)
        have_default = have_default || !strcmp(c->labels[i].name, "default");
    if (rc == 0 && !have_default && c->nlabels < MAX_LABELS) {
        c->labels[c->nlabels].name = kwt_strdup("default");
        c->labels[c->nlabels].profile = kwt_strdup("client");
        c->labels[c->nlabels++].auth = AUTH_BASIC;
    }
    if (!c->deadline)
        c->deadline = DEADLINE;
    if (rc == 0 && !c->secrets)
        c->secrets = kwt_asprintf("%s/est/secrets", cadir);
    for (int i = 0; rc == 0 && i < c->nlabels; i++)
        if ((c->labels[i].auth & AUTH_CERT) && !c->bootstrap && c->labels[i].auth == AUTH_CERT)
            rc = kwt_err(KWT_USAGE,
                         "%s: label %s authenticates by certificate only, but no bootstrap_ca "
                         "file is configured",
                         path ? path : "EST config", c->labels[i].name);
    if (rc)
        conf_free(c);
    return rc;
}

/* DIR/est: the server's private files (0700). */
static char *est_dir(const char *cadir)
{
    char *d = kwt_asprintf("%s/est", cadir);
    if (mkdir(d, 0700) != 0 && errno != EEXIST) {
        kwt_err(KWT_FAIL, "cannot create %s: %s", d, strerror(errno));
        free(d);
        return NULL;
    }
    return d;
}

/* An flock on DIR/est/NAME; -1 on failure. */
static int lock_file(const char *cadir, const char *name)
{
    char *p = kwt_asprintf("%s/est/%s", cadir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---- one-time secrets: "USER pbkdf2-sha256 ITER SALT HASH" lines (hex) ---- */

static int pbkdf2(const char *secret, size_t slen, const unsigned char *salt, size_t saltlen,
                  unsigned iter, unsigned char out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "PBKDF2", NULL);
    EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[5];
    p[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)secret, slen);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    p[2] = OSSL_PARAM_construct_uint(OSSL_KDF_PARAM_ITER, &iter);
    p[3] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    p[4] = OSSL_PARAM_construct_end();
    int ok = k && EVP_KDF_derive(k, out, 32, p) == 1;
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static size_t unhex(const char *s, unsigned char *out, size_t max)
{
    size_t n = 0;
    for (; s[0] && s[1] && n < max; s += 2) {
        unsigned v;
        if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) ||
            sscanf(s, "%2x", &v) != 1)
            return 0;
        out[n++] = (unsigned char)v;
    }
    return *s ? 0 : n;
}

/* The secrets file without USER's line (and with add, when given, appended). */
static char *secrets_without(const char *text, const char *user, const char *add)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    size_t ul = strlen(user);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (!(len > ul && !strncmp(l, user, ul) && l[ul] == ' '))
            kwt_buf_addn(&b, l, len);
        l += len;
    }
    if (add)
        kwt_buf_add(&b, add);
    return b.s;
}

/* 0 when USER's secret is this one (the caller holds the secrets lock). */
static int secret_check(const char *file, const char *user, const char *secret, size_t slen)
{
    char *text = kwt_read_file(file, NULL);
    int rc = -1;
    size_t ul = strlen(user);
    for (char *l = text; l && *l && rc != 0;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        char u[80], alg[32], salth[130], hashh[130];
        unsigned iter = 0;
        if (strlen(l) > ul && !strncmp(l, user, ul) && l[ul] == ' ' &&
            sscanf(l, "%79s %31s %u %129s %129s", u, alg, &iter, salth, hashh) == 5 &&
            !strcmp(u, user) && !strcmp(alg, "pbkdf2-sha256") && iter >= 1000) {
            unsigned char salt[64], want[32], got[32];
            size_t sl = unhex(salth, salt, sizeof(salt));
            if (sl && unhex(hashh, want, sizeof(want)) == 32 &&
                pbkdf2(secret, slen, salt, sl, iter, got) == 0 && CRYPTO_memcmp(got, want, 32) == 0)
                rc = 0;
            OPENSSL_cleanse(got, sizeof(got));
        }
        l = nl ? nl + 1 : NULL;
    }
    free(text);
    if (rc != 0) { /* an unknown user costs as much as a wrong secret */
        unsigned char salt[16] = {0}, got[32];
        pbkdf2(secret, slen, salt, sizeof(salt), PBKDF2_ITER, got);
    }
    return rc;
}

static int secret_consume(const char *file, const char *user)
{
    char *text = kwt_read_file(file, NULL);
    char *rest = text ? secrets_without(text, user, NULL) : NULL;
    int rc = rest ? kwt_write_atomic(file, rest, strlen(rest), 0600) : -1;
    free(rest);
    free(text);
    return rc;
}

/* ca est --add-secret USER: the secret from --secret-file or stdin (its first line). */
static int add_secret(kwt_ca *ca, const est_conf *c, const char *user, const char *from)
{
    if (!valid_user(user))
        return kwt_err(KWT_USAGE, "--add-secret %s: a user name is 1-64 letters, digits, - _ . @",
                       user);
    char *data = NULL;
    size_t len = 0;
    if (from) {
        if (!strncmp(from, "file:", 5))
            from += 5;
        struct stat st;
        if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077))
            return kwt_err(KWT_USAGE,
                           "--secret-file %s: must be a regular file readable by its owner "
                           "only (mode 0600 or 0400)",
                           from);
        data = kwt_read_file(from, &len);
    } else {
        kwt_buf b = {0};
        char tmp[256];
        size_t n;
        while ((n = fread(tmp, 1, sizeof(tmp), stdin)) > 0 && b.len < 4096)
            kwt_buf_addn(&b, tmp, n);
        data = b.s;
        len = b.len;
    }
    if (!data)
        return kwt_err(KWT_FAIL, "cannot read the secret: %s", strerror(errno));
    len = strcspn(data, "\r\n");
    int rc = 0;
    if (len < SECRET_MIN) {
        rc = kwt_err(KWT_USAGE, "the secret must have at least %d characters (on its first line)",
                     SECRET_MIN);
        goto out;
    }
    unsigned char salt[16], h[32];
    char salth[33], hh[65];
    if (RAND_bytes(salt, sizeof(salt)) != 1 || pbkdf2(data, len, salt, 16, PBKDF2_ITER, h) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot derive the secret's hash");
        goto out;
    }
    hex(salt, 16, salth);
    hex(h, 32, hh);
    char *line = kwt_asprintf("%s pbkdf2-sha256 %d %s %s\n", user, PBKDF2_ITER, salth, hh);
    char *d = est_dir(ca->dir);
    int lk = d ? lock_file(ca->dir, ".secrets.lock") : -1;
    char *text = lk >= 0 ? kwt_read_file(c->secrets, NULL) : NULL;
    char *all = lk >= 0 ? secrets_without(text ? text : "", user, line) : NULL;
    if (!all || kwt_write_atomic(c->secrets, all, strlen(all), 0600) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", c->secrets, strerror(errno));
    if (lk >= 0)
        close(lk);
    kwt_clear_error();
    kwt_audit(ca, "ca est add-secret", user, NULL, NULL, rc);
    if (rc == 0 && !kwt_g.json) {
        printf("one-time EST secret for %s stored in %s\n", user, c->secrets);
    } else if (rc == 0) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"user\":");
        kwt_buf_json_str(&j, user);
        kwt_buf_add(&j, ",\"secrets\":");
        kwt_buf_json_str(&j, c->secrets);
        kwt_buf_add(&j, "}\n");
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    }
    free(line);
    free(text);
    free(all);
    free(d);
out:
    OPENSSL_cleanse(data, strlen(data));
    free(data);
    return rc;
}

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
static int ensure_cert(kwt_ca *ca, const est_conf *c, const char *host)
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

static EVP_PKEY *load_key(OSSL_LIB_CTX *lc, const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, lc, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pk = NULL;
    while (st && !pk && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *in = OSSL_STORE_load(st);
        if (in && OSSL_STORE_INFO_get_type(in) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(in);
        OSSL_STORE_INFO_free(in);
        if (!in)
            break;
    }
    OSSL_STORE_close(st);
    return pk;
}

/* What the server serves TLS with, and what that was made from. */
typedef struct {
    SSL_CTX *ctx;
    OSSL_LIB_CTX *lc;
    kwt_reload watch; /* renew_at: the server certificate is within a week of its end */
} est_tls;

static SSL_CTX *tls_ctx(kwt_ca *ca, const est_conf *c, OSSL_LIB_CTX **lcp)
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
    if (!(pk = load_key(lc, c->key)) || SSL_CTX_use_PrivateKey(ctx, pk) != 1 ||
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
static void tls_mark(kwt_ca *ca, est_tls *t)
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
static void tls_refresh(kwt_ca *ca, const est_conf *c, const char *host, est_tls *t)
{
    time_t now = time(NULL);
    if (!kwt_reload_due(ca, &t->watch, now))
        return;
    kwt_ca nca;
    int rc = kwt_ca_reopen(ca, &nca);
    OSSL_LIB_CTX *lc = NULL;
    SSL_CTX *ctx = NULL;
    if (rc == 0) {
        rc = ensure_cert(&nca, c, host);
        kwt_ca_unlock(&nca);
    }
    if (rc == 0 && !(ctx = tls_ctx(&nca, c, &lc)))
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
    tls_mark(ca, t);
    if (kwt_g.verbose)
        fprintf(stderr, "keyward: EST server TLS certificate reloaded (CA generation %d)\n",
                ca->conf.generation);
}

/* ---- HTTP ---- */

typedef struct {
    SSL *ssl;
    kwt_ca *ca;
    const est_conf *conf;
    const char *peer; /* client address */
    char method[8], path[256];
    long clen;
    char *auth; /* Authorization header value; NULL: none */
    kwt_buf body;
} est_req;

static void ssl_write_all(SSL *s, const char *p, size_t n)
{
    while (n) {
        int w = SSL_write(s, p, n > 65536 ? 65536 : (int)n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static const char *status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 501:
        return "Not Implemented";
    }
    return "Internal Server Error";
}

/* extra: more header lines ("Retry-After: 60\r\n"), may be NULL */
static void reply(SSL *s, int code, const char *ctype, const char *body, size_t len,
                  const char *extra)
{
    kwt_buf b = {0};
    kwt_buf_printf(
        &b,
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
        "Connection: close\r\n%s\r\n",
        code, status_text(code), ctype,
        code == 200 && strncmp(ctype, "text/", 5) ? "Content-Transfer-Encoding: base64\r\n" : "",
        len, extra ? extra : "");
    kwt_buf_addn(&b, body, len);
    ssl_write_all(s, b.s, b.len);
    kwt_buf_free(&b);
}

static void reply_text(SSL *s, int code, const char *msg, const char *extra)
{
    char *t = kwt_asprintf("%s\n", msg);
    reply(s, code, "text/plain; charset=utf-8", t, strlen(t), extra);
    free(t);
}

/* Read the request head and body: 0, or the HTTP status to answer (400, 411, 413). */
static int read_request(est_req *r)
{
    kwt_buf in = {0};
    char tmp[4096];
    char *hend = NULL;
    while (!hend) {
        int n = SSL_read(r->ssl, tmp, sizeof(tmp));
        if (n <= 0) {
            kwt_buf_free(&in);
            return -1;
        }
        kwt_buf_addn(&in, tmp, (size_t)n);
        if (memchr(in.s, '\0', in.len)) {
            kwt_buf_free(&in);
            return 400;
        }
        hend = strstr(in.s, "\r\n\r\n");
        if (!hend && in.len > HEAD_MAX) {
            kwt_buf_free(&in);
            return 400;
        }
    }
    size_t hlen = (size_t)(hend - in.s) + 4;
    *hend = '\0';
    int rc = 0;
    char proto[16];
    if (sscanf(in.s, "%7s %255s %15s", r->method, r->path, proto) != 3 ||
        strncmp(proto, "HTTP/1.", 7)) {
        kwt_buf_free(&in);
        return 400;
    }
    r->clen = -1;
    bool chunked = false;
    for (char *l = strstr(in.s, "\r\n"); l && rc == 0; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, "Content-Length:", 15)) {
            char *e;
            r->clen = strtol(l + 15, &e, 10);
            if (r->clen < 0 || (*e && *e != '\r' && *e != ' '))
                rc = 400;
        } else if (!strncasecmp(l, "Authorization:", 14)) {
            size_t n = strcspn(l + 14, "\r");
            free(r->auth);
            r->auth = kwt_asprintf("%.*s", (int)n, l + 14);
        } else if (!strncasecmp(l, "Transfer-Encoding:", 18)) {
            chunked = true;
        }
    }
    if (rc == 0 && !strcmp(r->method, "POST")) {
        if (r->clen > BODY_MAX)
            rc = 413;
        else if (r->clen < 0 || chunked)
            rc = 411;
    }
    if (rc == 0 && r->clen > 0) {
        size_t have = in.len - hlen;
        if (have > (size_t)r->clen)
            have = (size_t)r->clen;
        kwt_buf_addn(&r->body, in.s + hlen, have);
        while (r->body.len < (size_t)r->clen) {
            int n = SSL_read(r->ssl, tmp, sizeof(tmp));
            if (n <= 0)
                break;
            kwt_buf_addn(&r->body, tmp, (size_t)n);
        }
        if (r->body.len < (size_t)r->clen)
            rc = -1;
    }
    kwt_buf_free(&in);
    return rc;
}

/* base64 (blanks and line ends ignored) -> bytes; NULL when it is not base64 */
static unsigned char *unbase64(const char *s, size_t n, size_t *out)
{
    kwt_buf c = {0};
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            kwt_buf_addn(&c, s + i, 1);
    unsigned char *d = NULL;
    if (c.len && c.len % 4 == 0) {
        d = malloc(c.len);
        int k = d ? EVP_DecodeBlock(d, (unsigned char *)c.s, (int)c.len) : -1;
        if (k < 0) {
            free(d);
            d = NULL;
        } else {
            size_t pad = (c.s[c.len - 1] == '=') + (c.s[c.len - 2] == '=');
            *out = (size_t)k - pad;
        }
    }
    kwt_buf_free(&c);
    return d;
}

static char *base64_lines(const unsigned char *d, size_t n, size_t *len)
{
    EVP_ENCODE_CTX *e = EVP_ENCODE_CTX_new();
    char *out = malloc(n * 2 + 80);
    int l1 = 0, l2 = 0;
    if (!e || !out) {
        EVP_ENCODE_CTX_free(e);
        free(out);
        return NULL;
    }
    EVP_EncodeInit(e);
    EVP_EncodeUpdate(e, (unsigned char *)out, &l1, d, (int)n);
    EVP_EncodeFinal(e, (unsigned char *)out + l1, &l2);
    EVP_ENCODE_CTX_free(e);
    *len = (size_t)(l1 + l2);
    return out;
}

/* A certs-only PKCS#7 (RFC 7030 §4.1.3 and §4.2.3) of these certificates, base64. */
static void reply_certs(SSL *s, STACK_OF(X509) * certs)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    int n = -1;
    if (p7 && PKCS7_set_type(p7, NID_pkcs7_signed) && PKCS7_content_new(p7, NID_pkcs7_data)) {
        bool ok = true;
        for (int i = 0; i < sk_X509_num(certs) && ok; i++)
            ok = PKCS7_add_certificate(p7, sk_X509_value(certs, i)) == 1;
        if (ok)
            n = i2d_PKCS7(p7, &der);
    }
    size_t len = 0;
    char *b64 = n > 0 ? base64_lines(der, (size_t)n, &len) : NULL;
    if (b64)
        reply(s, 200, "application/pkcs7-mime; smime-type=certs-only", b64, len, NULL);
    else
        reply_text(s, 500, "cannot encode the certificates", NULL);
    free(b64);
    OPENSSL_free(der);
    PKCS7_free(p7);
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
    reply_certs(r->ssl, st);
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
    char *b64 = base64_lines((unsigned char *)d.s, d.len, &len);
    reply(r->ssl, 200, "application/csrattrs", b64, len, NULL);
    free(b64);
    kwt_buf_free(&in);
    kwt_buf_free(&d);
}

/* The device ID a name list carries: the otherName under the CA's device OID (UTF8String), or
 * a DNS name device-ID. NULL when none; *bad when it has two that differ or one unreadable. */
static char *device_id_of(const GENERAL_NAMES *gens, const char *oid, bool *bad)
{
    ASN1_OBJECT *dev = oid ? OBJ_txt2obj(oid, 1) : NULL;
    char *id = NULL;
    *bad = false;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !*bad; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *v = NULL;
        size_t skip = 0;
        if (g->type == GEN_OTHERNAME && dev && !OBJ_cmp(g->d.otherName->type_id, dev)) {
            const ASN1_TYPE *t = g->d.otherName->value;
            if (!t || t->type != V_ASN1_UTF8STRING) {
                *bad = true;
                break;
            }
            v = t->value.utf8string;
        } else if (g->type == GEN_DNS && ASN1_STRING_length(g->d.dNSName) > 7 &&
                   !strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), "device-", 7)) {
            v = g->d.dNSName;
            skip = 7;
        }
        if (!v)
            continue;
        const char *d = (const char *)ASN1_STRING_get0_data(v) + skip;
        size_t n = (size_t)ASN1_STRING_length(v) - skip;
        const char *why;
        char *t = kwt_asprintf("%.*s", (int)n, d);
        if (memchr(d, '\0', n) || kwt_valid_device_id(t, &why) != 0 || (id && strcmp(id, t))) {
            *bad = true;
            free(t);
        } else {
            free(id);
            id = t;
        }
    }
    ASN1_OBJECT_free(dev);
    if (*bad) {
        free(id);
        id = NULL;
    }
    return id;
}

static char *req_device_id(X509_REQ *q, const char *oid, bool *bad)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(q);
    int i = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    GENERAL_NAMES *g = i >= 0 ? X509V3_EXT_d2i(X509v3_get_ext(exts, i)) : NULL;
    char *id = device_id_of(g, oid, bad);
    GENERAL_NAMES_free(g);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return id;
}

/* The client certificate chains to the configured bootstrap CA(s). */
static bool bootstrap_ok(const est_conf *c, SSL *s, X509 *peer)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *v = X509_STORE_CTX_new();
    bool ok = st && v && c->bootstrap && X509_STORE_load_file(st, c->bootstrap) == 1 &&
              X509_STORE_CTX_init(v, st, peer, SSL_get_peer_cert_chain(s)) == 1 &&
              X509_verify_cert(v) == 1;
    X509_STORE_CTX_free(v);
    X509_STORE_free(st);
    ERR_clear_error();
    return ok;
}

/* Per-identity rate limit: 0 allowed (counted), else the seconds to wait. */
static long rate_check(kwt_ca *ca, const est_conf *c, const char *identity)
{
    if (!c->rate_n)
        return 0;
    unsigned char md[32];
    char idh[65];
    SHA256((const unsigned char *)identity, strlen(identity), md);
    hex(md, 16, idh);
    int lk = lock_file(ca->dir, ".rate.lock");
    if (lk < 0)
        return 0;
    char *p = kwt_asprintf("%s/est/rate", ca->dir);
    char *text = kwt_read_file(p, NULL);
    time_t now = time(NULL);
    kwt_buf out = {0};
    kwt_buf_addn(&out, "", 0);
    long wait = 0;
    bool found = false;
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        char h[65];
        long long start;
        long count;
        if (sscanf(l, "%64s %lld %ld", h, &start, &count) != 3 || start + c->rate_secs <= now)
            continue; /* expired windows are dropped */
        if (!strcmp(h, idh)) {
            found = true;
            if (count >= c->rate_n)
                wait = (long)(start + c->rate_secs - now);
            else
                count++;
        }
        kwt_buf_printf(&out, "%s %lld %ld\n", h, start, count);
    }
    if (!found)
        kwt_buf_printf(&out, "%s %lld 1\n", idh, (long long)now);
    kwt_write_atomic(p, out.s, out.len, 0600);
    close(lk);
    kwt_buf_free(&out);
    free(text);
    free(p);
    return wait > 0 ? wait : 0;
}

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
    reply_text(r->ssl, status, why, extra);
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

/* The client certificate is this CA's current certificate of its NAME: *name and *profile set
 * (its signing record's profile). */
static bool current_cert(kwt_ca *ca, X509 *peer, char **name, char **profile)
{
    char *serial = kwt_cert_serial(peer);
    kwt_index ix = {0};
    char *ip = kwt_path(ca->dir, "state/index.txt");
    bool ok = false;
    if (serial && kwt_index_load(&ix, ip) == 0) {
        kwt_row *row = kwt_index_find_serial(&ix, serial);
        kwt_row *newest = row ? kwt_index_find_name(&ix, row->name) : NULL;
        if (row && row == newest && row->status == 'V') {
            char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, row->serial);
            X509 *x = kwt_load_cert(p);
            free(p);
            kwt_meta m;
            kwt_meta_init(&m);
            if (x && X509_cmp(x, peer) == 0 && kwt_meta_read(ca->dir, row->serial, &m) == 0 &&
                m.profile) {
                ok = true;
                *name = kwt_strdup(row->name);
                *profile = kwt_strdup(m.profile);
            }
            kwt_meta_free(&m);
            X509_free(x);
        }
    }
    kwt_index_free(&ix);
    free(ip);
    free(serial);
    return ok;
}

/* Basic credentials "user:secret" (base64); 0 when well-formed. */
static int basic_creds(const char *auth, char **user, char **secret, size_t *slen)
{
    while (auth && *auth == ' ')
        auth++;
    if (!auth || strncasecmp(auth, "Basic ", 6))
        return -1;
    auth += 6;
    size_t n = 0;
    unsigned char *d = unbase64(auth, strlen(auth), &n);
    char *colon = d ? memchr(d, ':', n) : NULL;
    if (!colon || memchr(d, '\0', n)) {
        if (d)
            OPENSSL_cleanse(d, n);
        free(d);
        return -1;
    }
    *user = kwt_asprintf("%.*s", (int)(colon - (char *)d), (char *)d);
    *slen = n - (size_t)(colon - (char *)d) - 1;
    *secret = kwt_asprintf("%.*s", (int)*slen, colon + 1);
    OPENSSL_cleanse(d, n);
    free(d);
    return 0;
}

/* RFC 7030 §3.5: a client binds its request to the TLS connection by putting the base64 of the
 * connection's channel binding in the request's challengePassword attribute. -1: the request
 * has no challengePassword; 0: it matches this connection (*kind says which binding); 1: it does
 * not (*why). */
static int binding_check(SSL *s, X509_REQ *q, const char **kind, const char **why)
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

static void serve_enroll(est_req *r, const est_label *lb, bool re)
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
    unsigned char *der = unbase64(r->body.s, r->body.len, &dlen);
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
        if (!current_cert(r->ca, peer, &pname, &profile)) {
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
            basic_creds(r->auth, &user, &secret, &slen) == 0) {
            if (!valid_user(user) || (slock = lock_file(r->ca->dir, ".secrets.lock")) < 0 ||
                secret_check(r->conf->secrets, user, secret, slen) != 0) {
                o.identity = kwt_asprintf("user:%s", valid_user(user) ? user : "(invalid name)");
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
            if (!bootstrap_ok(r->conf, r->ssl, peer)) {
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
            devid = req_device_id(q, r->ca->conf.device_oid, &bad);
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
                char *have = device_id_of(g, r->ca->conf.device_oid, &bad);
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
    int cb = binding_check(r->ssl, q, &cbkind, &cbwhy);
    if (cb > 0 || (cb < 0 && lb->require_cb)) {
        refuse(r, &o, 403,
               cb > 0 ? cbwhy
                      : "this label requires the TLS channel binding (RFC 7030 section 3.5) in "
                        "the request's challengePassword",
               NULL);
        goto out;
    }
    o.binding = cb == 0 ? cbkind : NULL;
    long wait = rate_check(r->ca, r->conf, o.identity);
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
            reply_text(r->ssl, 500, "the CA could not issue the certificate (see its audit log)",
                       NULL);
        } else {
            refuse(r, &o, st, msg, NULL);
            free(msg);
        }
        goto out;
    }
    if (slock >= 0 && secret_consume(r->conf->secrets, user) != 0)
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
    alarm(deadline);
    reply_certs(r->ssl, st);
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

static void serve_one(est_req *r)
{
    int st = read_request(r);
    alarm(deadline); /* the request is in: a new deadline for the answer */
    if (st) {
        if (st > 0)
            reply_text(r->ssl, st,
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
        reply_text(r->ssl, 404, "not an EST path (/.well-known/est/...)", NULL);
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
        reply_text(r->ssl, 404, "no such EST label", NULL);
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
        serve_enroll(r, lb, op[6] == 'r');
    } else if (!strcmp(op, "serverkeygen") || !strcmp(op, "fullcmc")) {
        reply_text(r->ssl, 501,
                   "not offered: keys are made where they live (on the client's token), never "
                   "by the CA",
                   NULL);
    } else if (!strcmp(op, "cacerts") || !strcmp(op, "csrattrs") || !strcmp(op, "simpleenroll") ||
               !strcmp(op, "simplereenroll")) {
        reply_text(r->ssl, 405, "method not allowed", NULL);
    } else {
        reply_text(r->ssl, 404, "no such EST operation", NULL);
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
    if ((rc = conf_load(&c, ca.dir, cfg))) {
        free(defcfg);
        kwt_ca_close(&ca);
        return rc;
    }
    free(defcfg);
    if (add) {
        rc = add_secret(&ca, &c, add, sfile);
        conf_free(&c);
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
        rc = ensure_cert(&ca, &c, host);
    if (rc == 0 && !kwt_g.dry_run && c.key) {
        char *line = kwt_asprintf("%s\n", c.key);
        kwt_write_atomic(kp, line, strlen(line), 0600);
        free(line);
    }
    free(kp);
    free(d);
    kwt_ca_unlock(&ca); /* serving signs through ca sign, which takes the lock per request */
    est_tls tls = {0};
    tls.ctx = rc == 0 && !kwt_g.dry_run ? tls_ctx(&ca, &c, &tls.lc) : NULL;
    if (rc || kwt_g.dry_run || !tls.ctx) {
        conf_free(&c);
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
    tls_mark(&ca, &tls);
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
        tls_refresh(&ca, &c, host, &tls);
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
    conf_free(&c);
    kwt_ca_close(&ca);
    return rc;
}
