/* SPDX-License-Identifier: Apache-2.0 */
/* The EST server (ca est): its configuration, request and TLS types, and the calls between its
 * files (ca_est.c the command and server loop; _conf, _secrets, _tls, _http, _auth, _enroll). */
#ifndef KWT_CA_EST_INT_H
#define KWT_CA_EST_INT_H

#include "kwt.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>

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

/* What the server serves TLS with, and what that was made from. */
typedef struct {
    SSL_CTX *ctx;
    OSSL_LIB_CTX *lc;
    kwt_reload watch; /* renew_at: the server certificate is within a week of its end */
} est_tls;

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

/* ca_est_conf.c */
void est_conf_free(est_conf *c);
bool est_valid_user(const char *s);
int est_conf_load(est_conf *c, const char *cadir, const char *path);
char *est_dir(const char *cadir);
int est_lock_file(const char *cadir, const char *name);

/* ca_est_secrets.c */
void est_hex(const unsigned char *b, size_t n, char *out);
int est_secret_check(const char *file, const char *user, const char *secret, size_t slen);
int est_secret_consume(const char *file, const char *user);
int est_add_secret(kwt_ca *ca, const est_conf *c, const char *user, const char *from);

/* ca_est_tls.c */
int est_ensure_cert(kwt_ca *ca, const est_conf *c, const char *host);
SSL_CTX *est_tls_ctx(kwt_ca *ca, const est_conf *c, OSSL_LIB_CTX **lcp);
void est_tls_mark(kwt_ca *ca, est_tls *t);
void est_tls_refresh(kwt_ca *ca, const est_conf *c, const char *host, est_tls *t);
int est_binding_check(SSL *s, X509_REQ *q, const char **kind, const char **why);

/* ca_est_http.c */
void est_reply(SSL *s, int code, const char *ctype, const char *body, size_t len,
               const char *extra);
void est_reply_text(SSL *s, int code, const char *msg, const char *extra);
int est_read_request(est_req *r);
unsigned char *est_unbase64(const char *s, size_t n, size_t *out);
char *est_base64_lines(const unsigned char *d, size_t n, size_t *len);
void est_reply_certs(SSL *s, STACK_OF(X509) * certs);

/* ca_est_auth.c */
char *est_device_id_of(const GENERAL_NAMES *gens, const char *oid, bool *bad);
char *est_req_device_id(X509_REQ *q, const char *oid, bool *bad);
bool est_bootstrap_ok(const est_conf *c, SSL *s, X509 *peer);
long est_rate_check(kwt_ca *ca, const est_conf *c, const char *identity);
bool est_current_cert(kwt_ca *ca, X509 *peer, char **name, char **profile);
int est_basic_creds(const char *auth, char **user, char **secret, size_t *slen);

/* ca_est_enroll.c */
void est_serve_enroll(est_req *r, const est_label *lb, bool re);

#endif
