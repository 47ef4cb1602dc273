/* SPDX-License-Identifier: Apache-2.0 */
/* Key objects: a reference to a token key (never its value) plus its public half. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwp.h"

kwp_key *kwp_key_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg)
{
    kwp_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->magic = KWP_KEY_MAGIC;
    atomic_init(&k->refs, 1);
    k->pctx = ctx;
    k->type = type;
    k->alg = alg;
    k->handle = CK_INVALID_HANDLE;
    k->pin.conf_pin_source = ctx->pin_source;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

kwp_key *kwp_key_ref(kwp_key *k)
{
    atomic_fetch_add(&k->refs, 1);
    return k;
}

void kwp_key_free(kwp_key *k)
{
    if (k == NULL || atomic_fetch_sub(&k->refs, 1) > 1)
        return;
    EVP_PKEY_free(k->pub);
    free(k->allowed);
    free(k->uri);
    if (k->puri != NULL)
        p11_kit_uri_free(k->puri);
    free(k->id);
    free(k->label);
    kw_secure_strfree(k->pin_value);
    free(k->pin_source);
    pthread_mutex_destroy(&k->lock);
    k->magic = 0;
    free(k);
}

int kwp_key_allows(const kwp_key *k, CK_MECHANISM_TYPE m)
{
    if (k->nallowed == 0)
        return 1;
    for (CK_ULONG i = 0; i < k->nallowed; i++)
        if (k->allowed[i] == m)
            return 1;
    return 0;
}

size_t kwp_key_max_size(const kwp_key *k)
{
    return k->pub != NULL ? (size_t)EVP_PKEY_get_size(k->pub) : 0;
}

char *kwp_key_make_uri(const CK_TOKEN_INFO *ti, const unsigned char *id, CK_ULONG idlen,
                       const char *label, CK_OBJECT_CLASS cls)
{
    P11KitUri *uri = p11_kit_uri_new();
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    *p11_kit_uri_get_token_info(uri) = *ti;
    if (idlen > 0) {
        CK_ATTRIBUTE a = {CKA_ID, (void *)id, idlen};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (label != NULL) {
        CK_ATTRIBUTE a = {CKA_LABEL, (void *)label, strlen(label)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    {
        CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}

/* ---- public half ---- */

kwp_key *kwp_key_from_object(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s,
                             CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls, const kw_pin_ctx *pin)
{
    CK_KEY_TYPE type;
    CK_ULONG len;
    unsigned char *label = NULL;
    kwp_key *k;
    kw_err e;

    if (kw_p11_attr_ulong(tok, s, h, CKA_KEY_TYPE, &type) != KW_OK)
        return NULL;
    if (type != CKK_RSA && type != CKK_EC && type != CKK_EC_EDWARDS) {
        kw_err_set(KW_ERR_KEY_USAGE, "key type 0x%lx is not supported by keyward yet",
                   (unsigned long)type);
        return NULL;
    }
    k = kwp_key_new(ctx, type, type == CKK_RSA ? "RSA" : type == CKK_EC ? "EC" : NULL);
    if (k == NULL)
        return NULL;
    k->tok = tok;
    k->tokinfo = *kw_p11_token_info(tok);
    k->handle = h;
    k->gen = kw_p11_token_gen(tok);
    k->has_private = cls == CKO_PRIVATE_KEY;
    if (kw_p11_attr(tok, s, h, CKA_ID, &k->id, &k->idlen) != KW_OK)
        k->idlen = 0;
    if (kw_p11_attr(tok, s, h, CKA_LABEL, &label, &len) == KW_OK) {
        k->label = strndup((char *)label, len);
        free(label);
    }
    if (k->has_private &&
        kw_p11_attr_bool(tok, s, h, CKA_ALWAYS_AUTHENTICATE, &k->always_auth) != KW_OK)
        k->always_auth = CK_FALSE;
    if (pin != NULL) {
        if (pin->uri_pin_value != NULL)
            k->pin_value = kw_secure_strndup(pin->uri_pin_value, 256);
        if (pin->uri_pin_source != NULL)
            k->pin_source = strdup(pin->uri_pin_source);
        k->pin.uri_pin_value = k->pin_value;
        k->pin.uri_pin_source = k->pin_source;
    }
    k->uri = kwp_key_make_uri(kw_p11_token_info(tok), k->id, k->idlen, k->label, cls);
    if (k->uri == NULL || (e = kw_uri_parse(k->uri, &k->puri)) != KW_OK) {
        kw_err_set(KW_ERR_MEMORY, "cannot build the key's URI");
        kwp_key_free(k);
        return NULL;
    }
    if (!kwp_key_load_public(ctx, k, s, h, cls)) {
        kwp_key_free(k);
        return NULL;
    }
    k->bits = EVP_PKEY_get_bits(k->pub);
    if (type == CKK_EC_EDWARDS)
        k->alg = EVP_PKEY_is_a(k->pub, "ED448") ? "ED448" : "ED25519";
    kw_err_clear();
    KW_DEBUG("key", "opened %s key %s (%d bits)", k->alg, k->uri, k->bits);
    return k;
}

kwp_key *kwp_key_open_uri(kwp_ctx *ctx, const char *uristr, int want_private,
                          kw_pin_prompt_fn prompt, void *prompt_arg)
{
    kw_p11_module *mod;
    P11KitUri *uri = NULL;
    kw_p11_token **toks = NULL;
    size_t n = 0;
    kwp_key *k = NULL;
    kw_pin_ctx pin = {0};
    CK_OBJECT_CLASS cls = want_private ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[4];
    CK_ULONG nt;
    kw_err e;

    if (kw_uri_parse(uristr, &uri) != KW_OK)
        return NULL;
    if ((mod = kwp_module(ctx)) == NULL)
        goto done;
    if (kw_p11_find_tokens(mod, uri, &toks, &n) != KW_OK)
        goto done;
    if (n == 0) {
        kw_err_set(KW_ERR_TOKEN_NOT_FOUND, "token not found: no token matches %s", uristr);
        goto done;
    }
    kw_uri_pin(uri, &pin);
    pin.conf_pin_source = ctx->pin_source;
    pin.prompt = prompt;
    pin.prompt_arg = prompt_arg;
    t[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    nt = 1 + kw_uri_object_template(uri, t + 1, 3);
    /* A type= in the URI must agree with the class we want; it is not searched twice. */
    for (CK_ULONG i = 1; i < nt; i++) {
        if (t[i].type != CKA_CLASS)
            continue;
        if (t[i].ulValueLen != sizeof(cls) || memcmp(t[i].pValue, &cls, sizeof(cls)) != 0) {
            kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "object not found: %s names no %s key", uristr,
                       want_private ? "private" : "public");
            goto done;
        }
        t[i] = t[--nt];
        i--;
    }
    for (size_t i = 0; i < n && k == NULL; i++) {
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE o[2];
        CK_ULONG cnt = 0;
        int login = want_private && kw_p11_token_login_required(toks[i]);

        if ((e = kw_p11_session_get(toks[i], login, &pin, &s)) != KW_OK)
            goto done;
        e = kw_p11_find(toks[i], s, t, nt, o, 2, &cnt);
        if (e == KW_OK && cnt > 1)
            e = kw_err_set(KW_ERR_AMBIGUOUS,
                           "URI matches more than one key on the token: add id= or object=");
        if (e == KW_OK && cnt == 1)
            k = kwp_key_from_object(ctx, toks[i], s, o[0], cls, &pin);
        kw_p11_session_put(toks[i], s, CKR_OK);
        if (e != KW_OK || (cnt == 1 && k == NULL))
            goto done;
    }
    if (k == NULL)
        kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "object not found: no %s key matches %s",
                   want_private ? "private" : "public", uristr);
done:
    free(toks);
    p11_kit_uri_free(uri);
    return k;
}
