/* SPDX-License-Identifier: Apache-2.0 */
/* What the CA's valid certificates already hold (public keys, subjects) and what was revoked
 * for keyCompromise: one key, one identity; a compromised key is never certified again. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SHA-256 of a public key's SubjectPublicKeyInfo. */
bool kwt_spki_sha256(EVP_PKEY *pk, unsigned char out[32])
{
    unsigned char *der = NULL;
    int len = pk ? i2d_PUBKEY(pk, &der) : -1;
    bool ok = len > 0 && EVP_Digest(der, (size_t)len, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok;
}

static int cmp_held(const void *a, const void *b)
{
    return memcmp(((const kwt_held_key *)a)->h, ((const kwt_held_key *)b)->h, 32);
}

static int cmp_held_subj(const void *a, const void *b)
{
    const char *x = ((const kwt_held_key *)a)->subj, *y = ((const kwt_held_key *)b)->subj;
    return !x || !y ? (x != NULL) - (y != NULL) : strcmp(x, y);
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "oid=value" of each RDN, sorted: the CA reorders a CSR's RDNs (its policy's order). With
 * fold, values in lower case: a copy in other case is the same name to a person. */
char *kwt_name_key_fold(const X509_NAME *n, bool fold)
{
    int c = X509_NAME_entry_count(n);
    char **items = calloc((size_t)(c > 0 ? c : 1), sizeof(*items));
    for (int i = 0; items && i < c; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        char oid[80];
        unsigned char *u = NULL;
        OBJ_obj2txt(oid, sizeof(oid), X509_NAME_ENTRY_get_object(e), 1);
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
        for (int j = 0; fold && j < ul; j++)
            u[j] = (unsigned char)tolower(u[j]);
        items[i] = kwt_asprintf("%s=%.*s", oid, ul > 0 ? ul : 0, u ? (char *)u : "");
        OPENSSL_free(u);
    }
    if (items)
        qsort(items, (size_t)(c > 0 ? c : 0), sizeof(*items), cmp_strp);
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (int i = 0; items && i < c; i++) {
        kwt_buf_printf(&b, "%s\n", items[i]);
        free(items[i]);
    }
    free(items);
    return b.s;
}

static char *name_key(const X509_NAME *n)
{
    return kwt_name_key_fold(n, true);
}

/* The public keys of the CA's unexpired valid certificates, sorted by SPKI hash (one pass over
 * the index, so a batch checks each of its CSRs without reading the CA again). */
kwt_held_key *kwt_held_keys(kwt_ca *ca, kwt_index *ix, size_t *n)
{
    kwt_held_key *k = calloc(ix->n ? ix->n : 1, sizeof(*k));
    long long now = (long long)time(NULL);
    *n = 0;
    for (size_t i = 0; k && i < ix->n; i++) {
        kwt_row *r = &ix->rows[i];
        /* openssl ca records keyCompromise as "date,keyTime,..." */
        bool compromised = r->status == 'R' && strstr(r->revocation, ",keyTime") != NULL;
        if (!compromised && (r->status != 'V' || kwt_asn1_to_time(r->expiry) <= now))
            continue;
        /* the key as the certificate encodes it (openssl ca encoded it as kwt_spki_sha256 does),
         * read without decoding: at 30,000 certificates decoding each key took seconds */
        char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
        X509_NAME *subj = NULL;
        if (kwt_cert_key_subject(p, k[*n].h, &subj) == 0) {
            k[*n].name = r->name;
            k[*n].serial = r->serial;
            k[*n].compromised = compromised;
            k[*n].subj = compromised ? NULL : name_key(subj);
            (*n)++;
        }
        X509_NAME_free(subj);
        free(p);
    }
    if (k)
        qsort(k, *n, sizeof(*k), cmp_held);
    return k;
}

/* The same entries sorted by subject, for kwt_check_subject_unique (free() it; the strings are
 * k's). */
kwt_held_key *kwt_held_by_subject(const kwt_held_key *k, size_t n)
{
    kwt_held_key *s = malloc((n ? n : 1) * sizeof(*s));
    if (s) {
        memcpy(s, k, n * sizeof(*s));
        qsort(s, n, sizeof(*s), cmp_held_subj);
    }
    return s;
}

void kwt_held_keys_free(kwt_held_key *k, size_t n)
{
    for (size_t i = 0; k && i < n; i++)
        free(k[i].subj);
    free(k);
}

/* The entries of k (sorted by cmp) equal to want: [*first, return value). */
static const kwt_held_key *held_range(const kwt_held_key *want, const kwt_held_key *k, size_t n,
                                      int (*cmp)(const void *, const void *),
                                      const kwt_held_key **first)
{
    const kwt_held_key *hit = n ? bsearch(want, k, n, sizeof(*k), cmp) : NULL, *end = hit;
    while (hit && hit > k && !cmp(hit - 1, want))
        hit--;
    while (end && end < k + n && !cmp(end, want))
        end++;
    *first = hit;
    return end;
}

/* Refuse a key revoked for keyCompromise, always: what was compromised stays so. */
int kwt_check_key_not_compromised(const char *label, X509_REQ *req, const kwt_held_key *k, size_t n)
{
    kwt_held_key want;
    const kwt_held_key *hit, *end;
    if (!kwt_spki_sha256(X509_REQ_get0_pubkey(req), want.h))
        return kwt_err(KWT_FAIL, "%s: cannot hash the CSR's public key", label);
    for (end = held_range(&want, k, n, cmp_held, &hit); hit && hit < end; hit++)
        if (hit->compromised)
            return kwt_err(
                KWT_FAIL,
                "%s: its public key was revoked for keyCompromise (%s, serial %s); a "
                "compromised key is never certified again: the requester needs a new key",
                label, hit->name, hit->serial);
    return 0;
}

/* Refuse a subject that another NAME holds a valid certificate for (a requester copying
 * someone's subject under a name of their own), unless the operator allows it. by_subj: from
 * kwt_held_by_subject. */
int kwt_check_subject_unique(const char *label, X509_REQ *req, const char *name,
                             const kwt_held_key *by_subj, size_t n)
{
    kwt_held_key want = {.subj = name_key(X509_REQ_get_subject_name(req))};
    const kwt_held_key *hit, *end;
    int rc = 0;
    for (end = held_range(&want, by_subj, n, cmp_held_subj, &hit); hit && hit < end && !rc; hit++)
        if (hit->subj && strcmp(hit->name, name) != 0)
            rc = kwt_err(KWT_FAIL,
                         "%s: its subject is that of %s's valid certificate (serial %s); renew %s "
                         "instead, or pass --allow-same-subject",
                         label, hit->name, hit->serial, hit->name);
    free(want.subj);
    return rc;
}

/* Refuse a key that another NAME already holds a valid certificate for: one key, one identity
 * (a requester re-sending a known key under a new name would get a second identity for it). */
int kwt_check_key_unique(const char *label, X509_REQ *req, const char *name, const kwt_held_key *k,
                         size_t n)
{
    kwt_held_key want;
    const kwt_held_key *hit, *end;
    if (!kwt_spki_sha256(X509_REQ_get0_pubkey(req), want.h))
        return kwt_err(KWT_FAIL, "%s: cannot hash the CSR's public key", label);
    for (end = held_range(&want, k, n, cmp_held, &hit); hit && hit < end; hit++)
        if (!hit->compromised && strcmp(hit->name, name) != 0)
            return kwt_err(KWT_FAIL,
                           "%s: its public key already holds a valid certificate, %s (serial %s); "
                           "sign it under that name (ca renew %s), revoke that one first, or pass "
                           "--allow-same-key",
                           label, hit->name, hit->serial, hit->name);
    return 0;
}
