/* SPDX-License-Identifier: Apache-2.0 */
/* OSSL_STORE for the pkcs11: scheme: keys as references, certificates as DER; the searches of
 * OSSL_STORE_SEARCH(3) (subject, issuer and serial, key fingerprint, alias). Listing and
 * matching are in store_list.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp.h"

#include "kwp_store.h"

static OSSL_FUNC_store_open_fn store_open;
static OSSL_FUNC_store_settable_ctx_params_fn store_settable;
static OSSL_FUNC_store_set_ctx_params_fn store_set_params;
static OSSL_FUNC_store_load_fn store_load;
static OSSL_FUNC_store_eof_fn store_eof;
static OSSL_FUNC_store_close_fn store_close;

static void *store_open(void *provctx, const char *uri)
{
    kwp_store *st;
    P11KitUri *pu;

    if (kw_uri_parse(uri, &pu) != KW_OK) {
        kwp_raise_last(provctx);
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL || (st->uristr = strdup(uri)) == NULL) {
        free(st);
        p11_kit_uri_free(pu);
        return NULL;
    }
    st->pctx = provctx;
    st->uri = pu;
    return st;
}

/* libcrypto's OSSL_STORE_supports_search() reads this list to learn which searches we do. */
static const OSSL_PARAM *store_settable(void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
                                   OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, NULL, 0),
                                   OSSL_PARAM_octet_string(OSSL_STORE_PARAM_ISSUER, NULL, 0),
                                   OSSL_PARAM_BN(OSSL_STORE_PARAM_SERIAL, NULL, 0),
                                   OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_DIGEST, NULL, 0),
                                   OSSL_PARAM_octet_string(OSSL_STORE_PARAM_FINGERPRINT, NULL, 0),
                                   OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_ALIAS, NULL, 0),
                                   OSSL_PARAM_END};
    return p;
}

/* A DER X.509 Name (as OSSL_STORE_find encodes one) into *out. */
static int param_name(kwp_store *st, const OSSL_PARAM *p, X509_NAME **out)
{
    const void *der = NULL;
    const unsigned char *q;
    size_t len = 0;
    X509_NAME *n = NULL;

    if (OSSL_PARAM_get_octet_string_ptr(p, &der, &len) && len > 0 && len < 65536) {
        q = der;
        ERR_set_mark();
        n = d2i_X509_NAME(NULL, &q, (long)len);
        ERR_pop_to_mark();
        if (n != NULL && q != (const unsigned char *)der + len) {
            X509_NAME_free(n);
            n = NULL;
        }
    }
    if (n == NULL) {
        kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID),
                  "store search by %s: the value is not a DER-encoded X.509 name", p->key);
        return 0;
    }
    X509_NAME_free(*out);
    *out = n;
    return 1;
}

/* The digest of a fingerprint search: by name, or (no name given, as `openssl storeutl
 * -fingerprint` without -sha256 passes it) the SHA-1 or SHA-2 digest of that length. */
static int search_digest(kwp_store *st, const char *name)
{
    static const char *const by_len[] = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512"};
    kwp_search *f = &st->find;

    EVP_MD_free(f->md);
    f->md = NULL;
    ERR_set_mark();
    if (name != NULL && *name != '\0') {
        f->md = EVP_MD_fetch(st->pctx->hlibctx, name, KWP_HELPER_PROPQ);
    } else {
        for (size_t i = 0; f->md == NULL && i < sizeof(by_len) / sizeof(by_len[0]); i++) {
            f->md = EVP_MD_fetch(st->pctx->hlibctx, by_len[i], KWP_HELPER_PROPQ);
            if (f->md != NULL && (size_t)EVP_MD_get_size(f->md) != f->fplen) {
                EVP_MD_free(f->md);
                f->md = NULL;
            }
        }
    }
    ERR_pop_to_mark();
    if (f->md == NULL) {
        kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID),
                  "store search by key fingerprint: digest %s is not available",
                  name != NULL && *name != '\0' ? name : "(none given, none of that length)");
        return 0;
    }
    if ((size_t)EVP_MD_get_size(f->md) != f->fplen) {
        kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID),
                  "store search by key fingerprint: %zu bytes given, but %s makes %d", f->fplen,
                  EVP_MD_get0_name(f->md), EVP_MD_get_size(f->md));
        return 0;
    }
    return 1;
}

static int store_set_params(void *vctx, const OSSL_PARAM params[])
{
    kwp_store *st = vctx;
    kwp_search *f = &st->find;
    const OSSL_PARAM *p;
    char *digest = NULL;
    int ok = 1;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT)) != NULL &&
        !OSSL_PARAM_get_int(p, &st->expect))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT)) != NULL &&
        !param_name(st, p, &f->subject))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ISSUER)) != NULL &&
        !param_name(st, p, &f->issuer))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SERIAL)) != NULL &&
        !OSSL_PARAM_get_BN(p, &f->serial)) {
        kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID), "store search by serial: not a number");
        return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ALIAS)) != NULL) {
        free(f->alias);
        f->alias = NULL;
        if (p->data_type != OSSL_PARAM_UTF8_STRING || p->data == NULL ||
            (f->alias = strndup(p->data, p->data_size)) == NULL) {
            kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID), "store search by alias: not a string");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_FINGERPRINT)) != NULL) {
        OPENSSL_free(f->fp);
        f->fp = NULL;
        f->fplen = 0;
        if (!OSSL_PARAM_get_octet_string(p, (void **)&f->fp, 0, &f->fplen) || f->fplen == 0) {
            kwp_raise(st->pctx, KWP_R(KW_ERR_INVALID),
                      "store search by key fingerprint: no fingerprint given");
            return 0;
        }
        p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_DIGEST);
        if (p != NULL && p->data != NULL && !OSSL_PARAM_get_utf8_string(p, &digest, 0))
            return 0;
        ok = search_digest(st, digest);
        OPENSSL_free(digest);
    }
    return ok;
}

static void search_free(kwp_search *f)
{
    X509_NAME_free(f->subject);
    X509_NAME_free(f->issuer);
    BN_free(f->serial);
    EVP_MD_free(f->md);
    OPENSSL_free(f->fp);
    free(f->alias);
}

static int store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    kwp_store *st = vctx;
    kwp_item *it;
    int type;
    kwp_keyref ref;
    OSSL_PARAM p[4];

    if (!st->listed) {
        st->listed = 1;
        if (!kwp_store_list(st, pw_cb, pw_cbarg))
            return 0;
    }
    if (st->pos >= st->n)
        return 0;
    it = &st->items[st->pos++];
    if (it->key != NULL) {
        kwp_key *k = it->key;
        ref.magic = KWP_KEY_MAGIC;
        ref.key = k;
        type = OSSL_OBJECT_PKEY;
        p[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)k->alg, 0);
        p[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
    } else {
        type = OSSL_OBJECT_CERT;
        p[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, "CERTIFICATE", 0);
        p[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, it->der, it->derlen);
    }
    p[3] = OSSL_PARAM_construct_end();
    return object_cb(p, object_cbarg);
}

static int store_eof(void *vctx)
{
    kwp_store *st = vctx;
    return st->listed && st->pos >= st->n;
}

static int store_close(void *vctx)
{
    kwp_store *st = vctx;
    kwp_store_items_free(st);
    free(st->items);
    free(st->uristr);
    p11_kit_uri_free(st->uri);
    search_free(&st->find);
    free(st);
    return 1;
}

const OSSL_DISPATCH kwp_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close},
    {0, NULL}};
