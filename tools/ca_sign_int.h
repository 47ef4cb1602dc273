/* SPDX-License-Identifier: Apache-2.0 */
/* The pieces of ca sign and ca renew (ca_sign*.c, ca_renew*.c) as they call each other. */
#ifndef KWT_CA_SIGN_INT_H
#define KWT_CA_SIGN_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "kwt.h"

/* ---- the request (ca_sign_csr.c) ---- */
bool kwt_valid_profile(const char *p); /* client, server, device, ocsp, subca */
/* Read the CSR at path once (PEM or DER, a regular file of at most 1 MiB); 0 or an exit code
 * after printing why. */
int kwt_csr_read_once(const char *path, X509_REQ **out);
/* The copy openssl signs: the request as parsed, in PEM, 0600, in the staging state. */
int kwt_csr_private_copy(kwt_ca *ca, X509_REQ *r, char **out);
/* A NAME of 16 or more hex digits (ca revoke could take it for a serial). */
bool kwt_looks_like_serial(const char *name);
/* Check a parsed CSR for a profile. cn gets the CN (NULL when absent), sans the CSR's SANs in
 * keyward's list form (NULL when none). Returns 0 or an exit code after printing why. */
int kwt_check_csr(const char *label, X509_REQ *r, const char *profile, const kwt_conf *conf,
                  const char *device_id, char **cn, char **sans);
/* The CA's policy_match as openssl ca applies it, checked before openssl runs. */
int kwt_check_policy_match(const char *label, X509_REQ *req, X509 *cacert, const kwt_conf *conf);

/* ---- what the CA's certificates hold (ca_sign_held.c) ---- */
typedef struct {
    unsigned char h[32]; /* SHA-256 of the SubjectPublicKeyInfo */
    const char *name, *serial;
    bool compromised; /* revoked for keyCompromise: never certified again */
    char *subj;       /* name_key() of a valid certificate's subject */
} kwt_held_key;
bool kwt_spki_sha256(EVP_PKEY *pk, unsigned char out[32]);
/* The keys of the unexpired valid certificates and the compromised ones, sorted by hash. */
kwt_held_key *kwt_held_keys(kwt_ca *ca, kwt_index *ix, size_t *n);
/* The same entries sorted by subject (free() it; the strings are k's). */
kwt_held_key *kwt_held_by_subject(const kwt_held_key *k, size_t n);
void kwt_held_keys_free(kwt_held_key *k, size_t n);
/* 0, or an exit code after printing why the request is refused. */
int kwt_check_key_not_compromised(const char *label, X509_REQ *req, const kwt_held_key *k,
                                  size_t n);
int kwt_check_subject_unique(const char *label, X509_REQ *req, const char *name,
                             const kwt_held_key *by_subj, size_t n);
int kwt_check_key_unique(const char *label, X509_REQ *req, const char *name, const kwt_held_key *k,
                         size_t n);
/* "oid=value" of each RDN, sorted; with fold, values in lower case. */
char *kwt_name_key_fold(const X509_NAME *n, bool fold);

/* ---- extensions (ca_sign_ext.c) ---- */
/* The subjectAltName keyward writes: the CSR's checked names, --san, the device names. */
int kwt_san_for(const kwt_conf *conf, const char *profile, const char *csr_sans, const char *san,
                const char *device_id, char **out);
/* The [ext_run] section of a profile for generation gen (0: the current one). */
char *kwt_ext_section(kwt_ca *ca, int gen, const char *profile, bool rsa, const char *name,
                      const char *san);
/* After a run that copied requests' subjectAltNames: the certificate has only the profile's
 * extensions and the request's vetted subjectAltName. */
int kwt_check_issued(kwt_ca *ca, const char *serial, X509_REQ *req, const char *label);

/* ---- signing (ca_sign_req.c) ---- */
/* A certificate never outlives the CA certificate that issued it: days cut to what is left. */
int kwt_clamp_days(kwt_ca *ca, int gen, int days);
int kwt_check_ca_valid(kwt_ca *ca); /* ca.crt readable and unexpired */
/* certs/SERIAL.csr and .meta (md: tags, note, auto-renew; NULL: none). */
int kwt_store_meta(kwt_ca *ca, const char *serial, const char *csr, const char *profile, int days,
                   const char *san, const char *devid, const char *name, const kwt_meta *md);
/* Sign one parsed request (label names it in messages) in an open transaction. */
int kwt_sign_req(kwt_ca *ca, int gen, const char *label, X509_REQ *req, const char *profile,
                 const char *name, int days, const char *san, const char *device_id,
                 const kwt_meta *md, char **serial_out);

/* ---- output (ca_sign_out.c) ---- */
void kwt_dry_mark(kwt_ca *ca); /* --dry-run: before openssl ca */
/* --dry-run: after openssl ca, what keyward does (NAME in the index, links, records). */
void kwt_dry_record(kwt_ca *ca, size_t n, char *const *names, char *const *csrs,
                    const char *profile, int days, const char *san, const char *devid,
                    const kwt_meta *md);
/* One issued certificate, text or JSON ({"issued":[...]} from first to last, tail added). */
void kwt_sign_report(kwt_ca *ca, const char *name, const char *serial, bool first, bool last,
                     const char *tail);

/* ---- the commands' parts ---- */
int kwt_sign_batch(kwt_ca *ca, const char *src, const char *profile, int days, bool same_key,
                   bool same_subject, const kwt_meta *md); /* ca_sign_batch.c */
int kwt_renew_due(int window, int days_override);          /* ca_renew_due.c */

#endif
