/* SPDX-License-Identifier: Apache-2.0 */
/* The pieces of ca ocsp (ca_ocsp*.c) as they call each other. */
#ifndef KWT_CA_OCSP_INT_H
#define KWT_CA_OCSP_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "kwt.h"

#define KWT_OCSP_MAX_GENS 128

/* ---- responder certificates (ca_ocsp_signers.c) ---- */
/* Live CA generations, newest first, with their CA certificates. */
typedef struct {
    int gen[KWT_OCSP_MAX_GENS];
    X509 *cacert[KWT_OCSP_MAX_GENS];
    int n;
} kwt_ocsp_gens;
void kwt_ocsp_gens_load(kwt_ca *ca, kwt_ocsp_gens *gs);
void kwt_ocsp_gens_free(kwt_ocsp_gens *gs);
/* NAME of generation g's responder certificate in the index (and issued/NAME.crt). */
char *kwt_ocsp_responder_name(const kwt_ca *ca, int g);
bool kwt_ocsp_signed_by(X509 *x, X509 *cacert); /* x carries a signature of cacert's key */
/* Every live generation gets a valid responder certificate from its own key (key: --key, for
 * all of them; NULL: keyward.conf's ocsp_key, where one is missing). */
int kwt_ocsp_ensure_signers(kwt_ca *ca, const char *key);

/* ---- HTTP (ca_ocsp_http.c) ---- */
/* Read one HTTP request; the OCSP request bytes go to *req. 0 ok, -1 bad request. */
int kwt_ocsp_read_request(int fd, kwt_buf *req);
void kwt_ocsp_http_reply(int fd, int code, const char *ctype, const void *body, size_t len);
/* An OCSP response without a body: malformedRequest, internalError, unauthorized. */
void kwt_ocsp_status_reply(int fd, int status);

#endif
