/* SPDX-License-Identifier: Apache-2.0 */
/* The OSSL_STORE context shared by storemgmt.c (the dispatch functions, the search parameters)
 * and store_list.c (listing a URI's objects on its tokens and matching them). */
#ifndef KWP_STORE_H
#define KWP_STORE_H

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/x509.h>

#include "kwp.h"

#define KWP_STORE_MAX 256

typedef struct {
    kwp_key *key;       /* a key, or */
    unsigned char *der; /* a certificate */
    CK_ULONG derlen;
} kwp_item;

/* What OSSL_STORE_find asked for (OSSL_STORE_SEARCH(3)); an unset field does not filter. A key
 * fingerprint is the digest of a key's SubjectPublicKeyInfo; a certificate matches by the
 * digest of its DER (what `openssl x509 -fingerprint` prints) or of its key's. */
typedef struct {
    X509_NAME *subject; /* certificates with this subject */
    X509_NAME *issuer;  /* certificates with this issuer and serial */
    BIGNUM *serial;
    EVP_MD *md; /* fingerprint digest */
    unsigned char *fp;
    size_t fplen;
    char *alias; /* CKA_LABEL */
} kwp_search;

typedef struct {
    kwp_ctx *pctx;
    char *uristr;
    P11KitUri *uri;
    int expect;
    kwp_search find;
    int listed;
    kwp_item *items;
    size_t n, pos;
} kwp_store;

/* List every object the URI names that the search allows, once (store_load's first call). */
int kwp_store_list(kwp_store *st, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg);
/* Free what was listed (kept by the store until store_close). */
void kwp_store_items_free(kwp_store *st);

#endif
