/* SPDX-License-Identifier: Apache-2.0 */
/* The EST client (est enroll, est reenroll): its options, the server URL, and the one request
 * (est_post.c) that est.c makes. */
#ifndef KWT_EST_INT_H
#define KWT_EST_INT_H

#include "kwt.h"

#include <openssl/x509.h>

#define RESP_MAX     (1024 * 1024)
#define TIMEOUT      30
#define EST_DUE_DAYS 30 /* est reenroll --due without DAYS, as ca renew --due's default */

typedef struct {
    char *host, *port, *path; /* path: the EST base, /.well-known/est */
} est_url;

typedef struct {
    const char *url, *label, *cacert, *user, *password_file, *cert, *key_file, *key;
    const char *module, *pin_source;
    int tls_max; /* TLS1_2_VERSION or 0 (1.3 when the server has it) */
} est_client;

/* est_post.c */
void est_url_free(est_url *u);
int est_url_parse(const char *s, est_url *u);
int est_post(const est_client *o, const est_url *u, const char *op, X509_REQ *csr,
             const char *csr_key, int *code, kwt_buf *resp, kwt_buf *hdrs);

#endif
