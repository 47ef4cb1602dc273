/* SPDX-License-Identifier: Apache-2.0 */
/* Listing for OSSL_STORE: a URI's keys and certificates on every token it names, filtered by the
 * OSSL_STORE_SEARCH(3) fields; a private key without a match lists its public half. */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp_store.h"

typedef struct {
    OSSL_PASSPHRASE_CALLBACK *cb;
    void *arg;
} kwp_prompt;

/* Same public key? An RSA-PSS private key (restricted by CKA_ALLOWED_MECHANISMS) has a plain
 * RSA public key object beside it: EVP_PKEY_eq calls those different types, so compare the
 * modulus and exponent. Leaves no error behind. */
static int same_public(const EVP_PKEY *a, const EVP_PKEY *b)
{
    BIGNUM *na = NULL, *nb = NULL, *ea = NULL, *eb = NULL;
    int same;

    ERR_set_mark();
    same = EVP_PKEY_eq(a, b) == 1;
    if (!same && EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_N, &na) &&
        EVP_PKEY_get_bn_param(b, OSSL_PKEY_PARAM_RSA_N, &nb) &&
        EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_E, &ea) &&
        EVP_PKEY_get_bn_param(b, OSSL_PKEY_PARAM_RSA_E, &eb))
        same = BN_cmp(na, nb) == 0 && BN_cmp(ea, eb) == 0;
    ERR_pop_to_mark();
    BN_free(na);
    BN_free(nb);
    BN_free(ea);
    BN_free(eb);
    return same;
}

/* Does the digest of der match the fingerprint searched for? */
static int fp_match(const kwp_search *f, const unsigned char *der, int len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    return der != NULL && len > 0 && EVP_Digest(der, (size_t)len, md, &mdlen, f->md, NULL) == 1 &&
           mdlen == f->fplen && CRYPTO_memcmp(md, f->fp, mdlen) == 0;
}

/* A certificate (DER from CKA_VALUE) against the search: parsed, so that names compare as
 * X.509 says (the token's CKA_SUBJECT bytes may be encoded differently, or missing). */
static int cert_matches(kwp_store *st, const unsigned char *der, CK_ULONG len)
{
    const kwp_search *f = &st->find;
    const unsigned char *q = der;
    X509 *x;
    int ok;

    if (f->subject == NULL && f->issuer == NULL && f->serial == NULL && f->md == NULL)
        return 1;
    ERR_set_mark();
    x = X509_new_ex(st->pctx->hlibctx, KWP_HELPER_PROPQ);
    ok = x != NULL && d2i_X509(&x, &q, (long)len) != NULL;
    if (ok && f->subject != NULL)
        ok = X509_NAME_cmp(X509_get_subject_name(x), f->subject) == 0;
    if (ok && f->issuer != NULL)
        ok = X509_NAME_cmp(X509_get_issuer_name(x), f->issuer) == 0;
    if (ok && f->serial != NULL) {
        BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        ok = sn != NULL && BN_cmp(sn, f->serial) == 0;
        BN_free(sn);
    }
    if (ok && f->md != NULL) {
        unsigned char *spki = NULL;
        int spkilen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
        ok = fp_match(f, der, (int)len) || fp_match(f, spki, spkilen);
        OPENSSL_free(spki);
    }
    X509_free(x);
    ERR_pop_to_mark();
    return ok;
}

static int key_matches(kwp_store *st, const kwp_key *k)
{
    const kwp_search *f = &st->find;
    unsigned char *spki = NULL;
    int len, ok;

    /* Names and serial numbers are certificates' attributes: no key has them. */
    if (f->subject != NULL || f->issuer != NULL || f->serial != NULL)
        return 0;
    if (f->md == NULL)
        return 1;
    ERR_set_mark();
    len = i2d_PUBKEY(k->pub, &spki);
    ok = fp_match(f, spki, len);
    OPENSSL_free(spki);
    ERR_pop_to_mark();
    return ok;
}

/* The public half of a token private key as a key of its own, with no private object behind
 * it: what a caller that expects public keys gets for a private key. */
static kwp_key *public_half(kwp_store *st, const kwp_key *priv)
{
    kwp_key *k = kwp_key_new(st->pctx, priv->type, priv->alg);

    if (k == NULL)
        return NULL;
    k->tokinfo = priv->tokinfo;
    k->bits = priv->bits;
    if (EVP_PKEY_up_ref(priv->pub))
        k->pub = priv->pub;
    if (priv->idlen > 0 && (k->id = malloc(priv->idlen)) != NULL) {
        memcpy(k->id, priv->id, priv->idlen);
        k->idlen = priv->idlen;
    }
    if (priv->label != NULL)
        k->label = strdup(priv->label);
    /* Where it came from: the private key's URI names the object that holds it. */
    k->uri = priv->uri != NULL ? strdup(priv->uri) : NULL;
    if (k->pub == NULL || k->uri == NULL || kw_uri_parse(k->uri, &k->puri) != KW_OK ||
        (priv->idlen > 0 && k->id == NULL) || (priv->label != NULL && k->label == NULL)) {
        kwp_key_free(k);
        kw_err_set(KW_ERR_MEMORY, "out of memory");
        return NULL;
    }
    return k;
}

/* A PIN from OpenSSL's passphrase callback (the application's UI). */
static int store_prompt(void *arg, const char *label, char *buf, size_t cap)
{
    kwp_prompt *pr = arg;
    char info[128];
    size_t len = 0;
    OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, info, 0), OSSL_PARAM_END};

    if (pr->cb == NULL)
        return 0;
    snprintf(info, sizeof(info), "PIN for token %s", label);
    p[0].data_size = strlen(info);
    if (!pr->cb(buf, cap - 1, &len, p, pr->arg))
        return 0;
    buf[len < cap ? len : cap - 1] = '\0';
    return 1;
}

static int add_item(kwp_store *st, kwp_key *k, unsigned char *der, CK_ULONG derlen)
{
    kwp_item *ni = realloc(st->items, (st->n + 1) * sizeof(*ni));
    if (ni == NULL)
        return 0;
    st->items = ni;
    st->items[st->n++] = (kwp_item){k, der, derlen};
    return 1;
}

/* Objects of one class on one token that match the URI. */
static kw_err list_class(kwp_store *st, kw_p11_token *tok, CK_OBJECT_CLASS cls,
                         const kw_pin_ctx *pin)
{
    CK_ATTRIBUTE t[5];
    CK_ULONG nt, cnt = 0;
    CK_OBJECT_HANDLE h[KWP_STORE_MAX];
    CK_SESSION_HANDLE s;
    int login = cls == CKO_PRIVATE_KEY && kw_p11_token_login_required(tok);
    const char *alias = st->find.alias;
    kw_err e;

    /* Names and serial numbers are searched among certificates only. */
    if (cls != CKO_CERTIFICATE &&
        (st->find.subject != NULL || st->find.issuer != NULL || st->find.serial != NULL))
        return KW_OK;
    t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    nt = 1;
    for (CK_ULONG i = 0, m = kw_uri_object_template(st->uri, t + 1, 3); i < m; i++) {
        if (t[1 + i].type == CKA_CLASS)
            continue;
        /* An alias is a label: with the URI's object= as well, both must be the same. */
        if (t[1 + i].type == CKA_LABEL && alias != NULL) {
            if (t[1 + i].ulValueLen != strlen(alias) ||
                memcmp(t[1 + i].pValue, alias, strlen(alias)) != 0)
                return KW_OK;
            alias = NULL;
        }
        t[nt++] = t[1 + i];
    }
    if (alias != NULL)
        t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)alias, strlen(alias)};
    if ((e = kw_p11_session_get(tok, login, pin, &s)) != KW_OK)
        return e;
    e = kw_p11_find(tok, s, t, nt, h, KWP_STORE_MAX, &cnt);
    for (CK_ULONG i = 0; e == KW_OK && i < cnt; i++) {
        if (cls == CKO_CERTIFICATE) {
            unsigned char *der;
            CK_ULONG len;
            if (kw_p11_attr(tok, s, h[i], CKA_VALUE, &der, &len) != KW_OK)
                continue;
            if (!cert_matches(st, der, len)) {
                free(der);
            } else if (!add_item(st, NULL, der, len)) {
                free(der);
                e = kw_err_set(KW_ERR_MEMORY, "out of memory");
            }
        } else {
            kwp_key *k = kwp_key_from_object(st->pctx, tok, s, h[i], cls, pin);
            if (k != NULL && !key_matches(st, k)) {
                kwp_key_free(k);
                continue;
            }
            /* A key type keyward does not handle is skipped, not fatal, when listing. */
            if (k != NULL && !add_item(st, k, NULL, 0)) {
                kwp_key_free(k);
                e = kw_err_set(KW_ERR_MEMORY, "out of memory");
            }
        }
    }
    kw_p11_session_put(tok, s, CKR_OK);
    return e;
}

/* Items from index `from` on become the public halves of their private keys. */
static kw_err to_public_halves(kwp_store *st, size_t from)
{
    for (size_t i = from; i < st->n; i++) {
        kwp_key *k = st->items[i].key, *pub;
        if (k == NULL || !k->has_private)
            continue;
        if ((pub = public_half(st, k)) == NULL)
            return kw_err_last(NULL);
        kwp_key_free(k);
        st->items[i].key = pub;
    }
    return KW_OK;
}

static int store_list_once(kwp_store *st, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    kw_p11_module *mod = kwp_module(st->pctx);
    kw_p11_token **toks = NULL;
    size_t ntok = 0;
    CK_ATTRIBUTE_PTR ca = p11_kit_uri_get_attribute(st->uri, CKA_CLASS);
    CK_OBJECT_CLASS want = CK_UNAVAILABLE_INFORMATION;
    kwp_prompt pr = {pw_cb, pw_arg};
    kw_pin_ctx pin = {0};
    kw_err e = KW_OK;

    if (mod == NULL)
        return 0;
    if (ca != NULL && ca->ulValueLen == sizeof(want))
        memcpy(&want, ca->pValue, sizeof(want));
    else if (st->expect == OSSL_STORE_INFO_PKEY)
        want = CKO_PRIVATE_KEY;
    else if (st->expect == OSSL_STORE_INFO_PUBKEY)
        want = CKO_PUBLIC_KEY;
    else if (st->expect == OSSL_STORE_INFO_CERT)
        want = CKO_CERTIFICATE;

    if ((e = kw_p11_find_tokens(mod, st->uri, &toks, &ntok)) != KW_OK)
        goto fail;
    if (ntok == 0) {
        kw_err_set(KW_ERR_TOKEN_NOT_FOUND, "token not found: no token matches %s", st->uristr);
        goto fail;
    }
    kw_uri_pin(st->uri, &pin);
    pin.conf_pin_source = st->pctx->pin_source;
    pin.prompt = store_prompt;
    pin.prompt_arg = &pr;
    for (size_t i = 0; i < ntok; i++) {
        if (want == CK_UNAVAILABLE_INFORMATION || want == CKO_PRIVATE_KEY) {
            size_t before = st->n;
            e = list_class(st, toks[i], CKO_PRIVATE_KEY, &pin);
            /* Listing everything without a PIN: show what needs none. */
            if (e == KW_ERR_PIN_REQUIRED && want == CK_UNAVAILABLE_INFORMATION)
                e = KW_OK;
            /* A caller that expects public keys (OSSL_STORE_expect) gets the public half of
             * the private key a URI names, as it would from a private key file. */
            if (e == KW_OK && st->expect == OSSL_STORE_INFO_PUBKEY)
                e = to_public_halves(st, before);
            if (e != KW_OK)
                goto fail;
        }
        if (want == CK_UNAVAILABLE_INFORMATION || want == CKO_PUBLIC_KEY) {
            /* A public key whose private half was listed already adds nothing. */
            size_t before = st->n;
            if ((e = list_class(st, toks[i], CKO_PUBLIC_KEY, &pin)) != KW_OK)
                goto fail;
            if (want == CK_UNAVAILABLE_INFORMATION) {
                for (size_t j = before; j < st->n; j++) {
                    for (size_t m = 0; m < before; m++) {
                        if (st->items[m].key != NULL && st->items[m].key->has_private &&
                            same_public(st->items[m].key->pub, st->items[j].key->pub)) {
                            kwp_key_free(st->items[j].key);
                            st->items[j--] = st->items[--st->n];
                            break;
                        }
                    }
                }
            }
        }
        if (want == CK_UNAVAILABLE_INFORMATION || want == CKO_CERTIFICATE)
            if ((e = list_class(st, toks[i], CKO_CERTIFICATE, &pin)) != KW_OK)
                goto fail;
    }
    if (st->n == 0 && want == CKO_PUBLIC_KEY && ca == NULL) {
        /* Public keys expected and no public key object matches: the public halves of the
         * private keys that do (a token may keep no public objects). Only a PIN the URI or the
         * configuration has is used: no prompt for what may well not exist. */
        kw_pin_ctx quiet = pin;
        quiet.prompt = NULL;
        for (size_t i = 0; i < ntok; i++) {
            size_t before = st->n;
            e = list_class(st, toks[i], CKO_PRIVATE_KEY, &quiet);
            if (e == KW_OK)
                e = to_public_halves(st, before);
            if (e == KW_ERR_PIN_REQUIRED) {
                kw_err_clear();
                e = KW_OK;
            }
            if (e != KW_OK)
                goto fail;
        }
    }
    if (st->n == 0 && want == CKO_PRIVATE_KEY && ca == NULL) {
        /* Nothing private: say so if a public key is what the URI names, rather than
         * "object not found" about an object that is there. */
        for (size_t i = 0; i < ntok && st->n == 0; i++)
            if (list_class(st, toks[i], CKO_PUBLIC_KEY, &pin) != KW_OK)
                kw_err_clear();
        if (st->n > 0) {
            for (size_t i = 0; i < st->n; i++)
                kwp_key_free(st->items[i].key);
            st->n = 0;
            kw_err_set(KW_ERR_KEY_USAGE,
                       "key not usable for this operation: only a public key matches %s, so "
                       "there is no private key to use",
                       st->uristr);
            e = KW_ERR_KEY_USAGE;
            goto fail;
        }
    }
    free(toks);
    {
        size_t nprivate = 0;
        for (size_t i = 0; i < st->n; i++)
            nprivate += st->items[i].key != NULL && st->items[i].key->has_private;
        for (size_t i = 0; nprivate > 1 && i < st->n; i++)
            if (st->items[i].key != NULL && st->items[i].key->has_private)
                st->items[i].key->ambiguous = 1;
    }
    if (st->n == 0) {
        kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "object not found: nothing on the token matches %s",
                   st->uristr);
        kwp_raise_last(st->pctx);
        return 0;
    }
    return 1;
fail:
    free(toks);
    kwp_raise_last(st->pctx);
    return 0;
}

/* List once more when the token went away in the middle (recovery re-finds it): a failed
 * listing reads like an empty one to `openssl storeutl`, which exits 0 either way. */
int kwp_store_list(kwp_store *st, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    const int tries = kw_p11_retry_tries(KW_P11_RETRY_STORE_LIST);

    /* The errors of a try that is followed by another are dropped; the last try's stay. */
    for (int attempt = 1; attempt < tries; attempt++) {
        ERR_set_mark();
        int ok = store_list_once(st, pw_cb, pw_arg);
        if (ok || kw_err_last(NULL) != KW_ERR_TOKEN_GONE) {
            ERR_clear_last_mark();
            return ok;
        }
        ERR_pop_to_mark();
        kwp_store_items_free(st);
        KW_DEBUG("store", "token went away while listing %s: listing again", st->uristr);
        kw_p11_retry_wait(KW_P11_RETRY_STORE_LIST, attempt);
    }
    return store_list_once(st, pw_cb, pw_arg);
}

void kwp_store_items_free(kwp_store *st)
{
    for (size_t i = 0; i < st->n; i++) {
        kwp_key_free(st->items[i].key);
        free(st->items[i].der);
    }
    st->n = 0;
}
