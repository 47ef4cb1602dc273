/* SPDX-License-Identifier: Apache-2.0 */
/* DECODER: a PEM key file carrying a pkcs11: URI (ours or pkcs11-provider's) becomes the token
 * key it names, so any program that loads a PEM private key file gets the token key. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <keyward/keyward.h>

#include "kw_secmem.h"
#include "kwp.h"

#define KWP_PEM_LABEL_P11PROV "PKCS#11 PROVIDER URI"
#define KWP_STRUCTURE         "keyward-uri"

typedef struct {
    kwp_ctx *pctx;
    const char *alg; /* the key type this decoder instance produces */
} kwp_dec;

static OSSL_FUNC_decoder_newctx_fn dec_rsa_newctx;
static OSSL_FUNC_decoder_newctx_fn dec_ec_newctx;
static OSSL_FUNC_decoder_newctx_fn dec_rsapss_newctx;
static OSSL_FUNC_decoder_newctx_fn dec_ed25519_newctx;
static OSSL_FUNC_decoder_newctx_fn dec_ed448_newctx;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_does_selection_fn dec_does_selection;
static OSSL_FUNC_decoder_decode_fn dec_pem_decode;
static OSSL_FUNC_decoder_decode_fn dec_uri_decode;
static OSSL_FUNC_decoder_export_object_fn dec_export_object;

static void *dec_newctx(kwp_ctx *pctx, const char *alg)
{
    kwp_dec *d = calloc(1, sizeof(*d));
    if (d != NULL) {
        d->pctx = pctx;
        d->alg = alg;
    }
    return d;
}

static void *dec_rsa_newctx(void *provctx)
{
    return dec_newctx(provctx, "RSA");
}

static void *dec_ec_newctx(void *provctx)
{
    return dec_newctx(provctx, "EC");
}

static void *dec_rsapss_newctx(void *provctx)
{
    return dec_newctx(provctx, "RSA-PSS");
}

static void *dec_ed25519_newctx(void *provctx)
{
    return dec_newctx(provctx, "ED25519");
}

static void *dec_ed448_newctx(void *provctx)
{
    return dec_newctx(provctx, "ED448");
}

static void dec_freectx(void *vctx)
{
    free(vctx);
}

static int dec_does_selection(void *provctx, int selection)
{
    return selection == 0 || (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

typedef struct {
    OSSL_PASSPHRASE_CALLBACK *cb;
    void *arg;
} kwp_dec_prompt;

static int dec_prompt(void *arg, const char *label, char *buf, size_t cap)
{
    kwp_dec_prompt *pr = arg;
    size_t len = 0;
    if (pr->cb == NULL || !pr->cb(buf, cap - 1, &len, NULL, pr->arg))
        return 0;
    buf[len < cap ? len : cap - 1] = '\0';
    return 1;
}

/* PEM -> DER for our labels only: the DER then goes to dec_uri_decode (or a file store). */
static int dec_pem_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                          void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    kwp_dec *d = vctx;
    BIO *in = BIO_new_from_core_bio(d->pctx->libctx, cin);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long len = 0;
    int ok = 1; /* "not ours" is not an error: other decoders get their turn */

    if (in == NULL)
        return 0;
    ERR_set_mark();
    if (PEM_read_bio(in, &name, &header, &der, &len) > 0 &&
        (strcmp(name, KEYWARD_PEM_LABEL_URI) == 0 || strcmp(name, KWP_PEM_LABEL_P11PROV) == 0)) {
        OSSL_PARAM p[3];
        p[0] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der, (size_t)len);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE,
                                                (char *)KWP_STRUCTURE, 0);
        p[2] = OSSL_PARAM_construct_end();
        ERR_pop_to_mark();
        ok = data_cb(p, data_cbarg);
    } else {
        ERR_pop_to_mark();
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(in);
    return ok;
}

/* Does the URI name a public key object (type=public)? pkcs11-provider writes key files for
 * public keys too. */
static int uri_names_public(const char *uristr)
{
    P11KitUri *uri = NULL;
    CK_ATTRIBUTE_PTR a;
    CK_OBJECT_CLASS cls = CK_UNAVAILABLE_INFORMATION;

    if (kw_uri_parse(uristr, &uri) != KW_OK) {
        kw_err_clear(); /* kwp_key_open_uri says what is wrong with it */
        return 0;
    }
    a = p11_kit_uri_get_attribute(uri, CKA_CLASS);
    if (a != NULL && a->ulValueLen == sizeof(cls))
        memcpy(&cls, a->pValue, sizeof(cls));
    p11_kit_uri_free(uri);
    return cls == CKO_PUBLIC_KEY;
}

/* OpenSSL asks each key type's decoder in turn (RSA, RSA-PSS, EC, Ed25519, Ed448), and each
 * would open the key on the token (slots, search, attributes) to learn its type, or try the
 * PIN again after a wrong one. The first decoder to open it leaves the outcome here, the key or
 * the error, for the next ones of the same decode: taken (and so removed) by the same thread for
 * the same URI within 250 ms, and left again only while no decoder has claimed the key, so a key
 * file read again later (a server reload, a retry with the right PIN) opens the key afresh. */
struct kwp_dec_pending {
    char *uri;
    kwp_key *k; /* NULL: opening failed with err/msg */
    kw_err err;
    char msg[512];
    pthread_t tid;
    struct timespec when;
};

static void pending_free(struct kwp_dec_pending *p)
{
    if (p != NULL) {
        kwp_key_free(p->k);
        kw_wipe(p->uri, strlen(p->uri)); /* a URI may carry pin-value */
        free(p->uri);
        free(p);
    }
}

void kwp_decoder_teardown(kwp_ctx *ctx)
{
    pending_free(ctx->dec_pending);
    ctx->dec_pending = NULL;
}

/* The pending outcome for uri, if this thread left it just now: 1 and *k (NULL with the thread's
 * kw_err set again when opening failed). The entry goes either way. */
static int pending_take(kwp_ctx *ctx, const char *uri, kwp_key **k)
{
    struct kwp_dec_pending *p;
    struct timespec now;
    int hit = 0;

    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&ctx->lock);
    p = ctx->dec_pending;
    ctx->dec_pending = NULL;
    pthread_mutex_unlock(&ctx->lock);
    if (p != NULL && pthread_equal(p->tid, pthread_self()) && strcmp(p->uri, uri) == 0 &&
        (now.tv_sec - p->when.tv_sec) * 1000 + (now.tv_nsec - p->when.tv_nsec) / 1000000 < 250) {
        hit = 1;
        *k = p->k;
        p->k = NULL;
        if (*k == NULL)
            kw_err_set(p->err, "%s", p->msg);
    }
    pending_free(p);
    return hit;
}

/* Leave this decode's outcome for the next decoder (replacing any older one). */
static void pending_leave(kwp_ctx *ctx, const char *uri, kwp_key *k)
{
    struct kwp_dec_pending *p = calloc(1, sizeof(*p)), *old;
    const char *msg = NULL;

    if (p == NULL || (p->uri = strdup(uri)) == NULL) {
        free(p);
        return;
    }
    p->k = k ? kwp_key_ref(k) : NULL;
    if (k == NULL) {
        p->err = kw_err_last(&msg);
        snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : "cannot open the key");
    }
    p->tid = pthread_self();
    clock_gettime(CLOCK_MONOTONIC, &p->when);
    pthread_mutex_lock(&ctx->lock);
    old = ctx->dec_pending;
    ctx->dec_pending = p;
    pthread_mutex_unlock(&ctx->lock);
    pending_free(old);
}

/* DER body of a key file -> the token key it names, as a reference. */
static int dec_uri_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                          void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    kwp_dec *d = vctx;
    BIO *in = BIO_new_from_core_bio(d->pctx->libctx, cin);
    unsigned char buf[8192];
    char *uri = NULL;
    int len, ok = 1;
    kwp_key *k = NULL;
    kwp_dec_prompt pr = {pw_cb, pw_cbarg};

    if (in == NULL)
        return 0;
    len = BIO_read(in, buf, sizeof(buf));
    BIO_free(in);
    if (len <= 0 || (uri = kwp_keyfile_der_decode(buf, len)) == NULL)
        return 1; /* not a key file of ours */
    KW_DEBUG("dec", "key file names %s", uri);
    if (!pending_take(d->pctx, uri, &k))
        k = kwp_key_open_uri(d->pctx, uri, !uri_names_public(uri), dec_prompt, &pr);
    if (k == NULL) {
        pending_leave(d->pctx, uri, NULL);
        kwp_raise_last(d->pctx);
        ok = 0;
    } else if (strcmp(k->alg, d->alg) != 0) {
        pending_leave(d->pctx, uri, k); /* another key type's decoder will claim it */
    } else {
        int type = OSSL_OBJECT_PKEY;
        kwp_keyref ref = {KWP_KEY_MAGIC, k};
        OSSL_PARAM p[4];
        p[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)k->alg, 0);
        p[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
        p[3] = OSSL_PARAM_construct_end();
        ok = data_cb(p, data_cbarg);
    }
    kwp_key_free(k);
    free(uri);
    return ok;
}

static int dec_export_object(void *vctx, const void *ref, size_t ref_size, OSSL_CALLBACK *cb,
                             void *cbarg)
{
    /* Another provider would need the private value: there is none to give. */
    return 0;
}

const OSSL_DISPATCH kwp_decoder_pem_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_rsa_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_pem_decode},
    {0, NULL}};

const OSSL_DISPATCH kwp_decoder_uri_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_rsa_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_uri_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL}};

const OSSL_DISPATCH kwp_decoder_uri_ec_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_ec_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_uri_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL}};

const OSSL_DISPATCH kwp_decoder_uri_ed25519_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_ed25519_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_uri_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL}};

const OSSL_DISPATCH kwp_decoder_uri_ed448_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_ed448_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_uri_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL}};

const OSSL_DISPATCH kwp_decoder_uri_rsapss_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_rsapss_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))dec_uri_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL}};
