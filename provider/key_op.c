/* SPDX-License-Identifier: Apache-2.0 */
/* Private-key operations on the token: a session, the object found again after fork or token
 * loss, a login when the token forgot it, and the error that names the real cause. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kw_secmem.h"
#include "kwp.h"

static const CK_FLAGS op_flag[] = {
    [KWP_OP_SIGN] = CKF_SIGN, [KWP_OP_DECRYPT] = CKF_DECRYPT, [KWP_OP_DERIVE] = CKF_DERIVE};

/* Tries of one private-key operation when the token goes away or its state is re-read; the
 * back-off between them is in the retry table (common/kw_p11_retry.c). */
#define KWP_OP_ATTEMPTS kw_p11_retry_tries(KW_P11_RETRY_PRIVATE_OP)

/* Find the key's object again after fork or token loss (handles are per session state). */
static kw_err key_refind(kwp_key *k)
{
    kw_p11_module *mod = kwp_module(k->pctx);
    kw_p11_token **toks = NULL;
    size_t n = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = k->has_private ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[3];
    CK_ULONG nt = 0, cnt = 0;
    CK_OBJECT_HANDLE o;
    int login;
    kw_err e;

    if (mod == NULL)
        return kw_err_last(NULL);
    if ((e = kw_p11_find_tokens(mod, k->puri, &toks, &n)) != KW_OK)
        return e;
    if (n == 0) {
        free(toks);
        return kw_err_set(KW_ERR_TOKEN_GONE, "token of key %s is not present", k->uri);
    }
    k->tok = toks[0];
    free(toks);
    login = kw_p11_token_login_required(k->tok) && k->has_private;
    if ((e = kw_p11_session_get(k->tok, login, &k->pin, &s)) != KW_OK)
        return e;
    if (login) {
        /* Someone logged the token out (another user of the module in this process, or the
         * token itself): private objects are invisible until we log in again. */
        CK_SESSION_INFO si;
        if (KW_P11_CALL(kw_p11_token_module(k->tok), C_GetSessionInfo, s, &si) == CKR_OK &&
            si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS &&
            (e = kw_p11_login(k->tok, s, &k->pin)) != KW_OK) {
            kw_p11_session_put(k->tok, s, CKR_OK);
            return e;
        }
    }
    t[nt++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    if (k->idlen > 0)
        t[nt++] = (CK_ATTRIBUTE){CKA_ID, k->id, k->idlen};
    if (k->label != NULL)
        t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, k->label, strlen(k->label)};
    e = kw_p11_find(k->tok, s, t, nt, &o, 1, &cnt);
    kw_p11_session_put(k->tok, s, CKR_OK);
    if (e != KW_OK)
        return e;
    if (cnt == 0)
        return kw_err_set(KW_ERR_OBJECT_NOT_FOUND, "key %s is no longer on its token", k->uri);
    k->handle = o;
    k->gen = kw_p11_token_gen(k->tok);
    KW_DEBUG("key", "re-found %s", k->uri);
    return KW_OK;
}

int kwp_key_ready(kwp_key *k)
{
    if (k == NULL || !k->has_private || k->tok == NULL ||
        kw_p11_module_check(kw_p11_token_module(k->tok)) == KW_OK)
        return 1;
    kwp_raise_last(k->pctx);
    return 0;
}

static CK_RV op_init(kw_p11_token *tok, CK_SESSION_HANDLE s, kwp_op op, CK_MECHANISM *mech,
                     CK_OBJECT_HANDLE h, const char **fn)
{
    kw_p11_module *mod = kw_p11_token_module(tok);

    switch (op) {
    case KWP_OP_SIGN:
        *fn = "C_SignInit";
        return KW_P11_CALL(mod, C_SignInit, s, mech, h);
    case KWP_OP_DECRYPT:
        *fn = "C_DecryptInit";
        return KW_P11_CALL(mod, C_DecryptInit, s, mech, h);
    default:
        return CKR_OK; /* C_DeriveKey has no separate init */
    }
}

/* ECDH: the shared secret becomes a session object, is read once and destroyed. */
static CK_RV op_derive(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                       CK_OBJECT_HANDLE h, unsigned char *out, size_t *outlen, const char **fn)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL f = CK_FALSE, t = CK_TRUE;
    CK_ULONG len = (CK_ULONG)*outlen;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},       {CKA_SENSITIVE, &f, sizeof(f)},
        {CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_VALUE_LEN, &len, sizeof(len)},
    };
    CK_ATTRIBUTE v = {CKA_VALUE, out, (CK_ULONG)*outlen};
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
    kw_p11_module *mod = kw_p11_token_module(tok);
    CK_RV rv;

    *fn = "C_DeriveKey";
    rv = KW_P11_CALL(mod, C_DeriveKey, s, mech, h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &secret);
    if (rv != CKR_OK)
        return rv;
    *fn = "C_GetAttributeValue";
    rv = KW_P11_CALL(mod, C_GetAttributeValue, s, secret, &v, 1);
    if (rv == CKR_OK)
        *outlen = v.ulValueLen;
    (void)KW_P11_CALL(mod, C_DestroyObject, s, secret);
    return rv;
}

static CK_RV op_run(kw_p11_token *tok, CK_SESSION_HANDLE s, kwp_op op, CK_MECHANISM *mech,
                    CK_OBJECT_HANDLE h, const unsigned char *in, size_t inlen, unsigned char *out,
                    size_t *outlen, const char **fn)
{
    CK_ULONG olen = (CK_ULONG)*outlen;
    kw_p11_module *mod = kw_p11_token_module(tok);
    CK_RV rv;

    switch (op) {
    case KWP_OP_SIGN:
        *fn = "C_Sign";
        rv = KW_P11_CALL(mod, C_Sign, s, (CK_BYTE *)in, inlen, out, &olen);
        break;
    case KWP_OP_DECRYPT:
        *fn = "C_Decrypt";
        rv = KW_P11_CALL(mod, C_Decrypt, s, (CK_BYTE *)in, inlen, out, &olen);
        break;
    default:
        return op_derive(tok, s, mech, h, out, outlen, fn);
    }
    if (rv == CKR_OK)
        *outlen = olen;
    return rv;
}

int kwp_key_private_op(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                       size_t inlen, unsigned char *out, size_t *outlen)
{
    return kwp_key_private_op_st(k, op, mech, in, inlen, out, outlen, NULL);
}

int kwp_key_private_op_st(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                          size_t inlen, unsigned char *out, size_t *outlen, kwp_op_status *st)
{
    kw_p11_token *tok;
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s;
    CK_RV rv = CKR_OK;
    const char *fn = "";
    kw_err e;
    static const char *const verbs[] = {"sign", "decrypt", "derive"};

    if (st != NULL) {
        st->rv = CKR_GENERAL_ERROR; /* failed before reaching the token */
        st->fn = "";
    }

    if (!k->has_private) {
        kw_err_set(KW_ERR_KEY_USAGE, "key %s is a public key: no private key to %s with", k->uri,
                   verbs[op]);
        kwp_raise_last(k->pctx);
        return 0;
    }
    if (k->ambiguous) {
        /* Listing may show every match; using an arbitrary one of them must not happen. */
        kw_err_set(KW_ERR_AMBIGUOUS,
                   "the URI this key was loaded with matches more than one private key: add "
                   "id= or object= to choose one (this one is %s)",
                   k->uri);
        kwp_raise_last(k->pctx);
        return 0;
    }
    tok = k->tok; /* for the error below, should no try reach the token */
    for (int attempt = 0; attempt < KWP_OP_ATTEMPTS; attempt++) {
        kw_p11_retry_wait(KW_P11_RETRY_PRIVATE_OP, attempt);
        pthread_mutex_lock(&k->lock);
        e = KW_OK;
        if ((kw_p11_module_check(kw_p11_token_module(k->tok))) != KW_OK ||
            k->gen != kw_p11_token_gen(k->tok) || !kw_p11_token_present(k->tok))
            e = key_refind(k);
        tok = k->tok;
        h = k->handle;
        pthread_mutex_unlock(&k->lock);
        if (e == KW_OK)
            e = kw_p11_session_get(tok, kw_p11_token_login_required(tok), &k->pin, &s);
        if (e == KW_ERR_TOKEN_GONE && attempt + 1 < KWP_OP_ATTEMPTS) {
            /* Again after finding the token again (recovery may re-initialise it), backing
             * off: other processes may be rewriting the token's state meanwhile. */
            pthread_mutex_lock(&k->lock);
            k->gen = 0;
            pthread_mutex_unlock(&k->lock);
            continue;
        }
        if (e != KW_OK)
            break;
        for (int relogin = 0; relogin < 2; relogin++) {
            rv = op_init(tok, s, op, mech, h, &fn);
            /* The token forgot our login (another process logged out, token reset). */
            if (rv == CKR_USER_NOT_LOGGED_IN && relogin == 0 &&
                kw_p11_login(tok, s, &k->pin) == KW_OK)
                continue;
            break;
        }
        if (rv == CKR_OK && k->always_auth && op != KWP_OP_DERIVE) {
            char *pin = NULL;
            if (kw_pin_resolve(&k->pin, "context", &pin) == KW_OK) {
                rv = KW_P11_CALL(kw_p11_token_module(tok), C_Login, s, CKU_CONTEXT_SPECIFIC,
                                 (CK_UTF8CHAR *)pin, strlen(pin));
                fn = "C_Login";
                kw_secure_strfree(pin);
            }
        }
        if (rv == CKR_OK)
            rv = op_run(tok, s, op, mech, h, in, inlen, out, outlen, &fn);
        kw_p11_session_put(tok, s, rv);
        if (rv == CKR_OK)
            return 1;
        /* Once more, with the object found again: the token was reset or came back, or the
         * handle went stale (SoftHSM2 invalidates handles when its store changes). */
        if (attempt + 1 < KWP_OP_ATTEMPTS &&
            (kw_p11_rv_is_gone(rv) || rv == CKR_OBJECT_HANDLE_INVALID ||
             rv == CKR_KEY_HANDLE_INVALID)) {
            pthread_mutex_lock(&k->lock);
            k->gen = 0;
            pthread_mutex_unlock(&k->lock);
            continue;
        }
        break;
    }
    if (st != NULL && rv != CKR_OK) {
        st->rv = rv;
        st->fn = fn;
    }
    if (rv != CKR_OK) {
        if (rv == CKR_MECHANISM_INVALID && kw_p11_token_has_mech(tok, mech->mechanism, op_flag[op]))
            /* The token has it; this key does not allow it (CKA_ALLOWED_MECHANISMS). */
            kw_err_set(KW_ERR_KEY_USAGE,
                       "key %s is not usable for this operation: it does not allow %s (see its "
                       "CKA_ALLOWED_MECHANISMS), though the token has it (%s: %s)",
                       k->uri, kwp_mech_name(mech->mechanism), fn, kw_p11_rv_name(rv));
        else if (rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID)
            kw_err_set(KW_ERR_MECHANISM, "token refused mechanism %s for key %s (%s: %s)",
                       kwp_mech_name(mech->mechanism), k->uri, fn, kw_p11_rv_name(rv));
        else if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_KEY_TYPE_INCONSISTENT)
            kw_err_set(KW_ERR_KEY_USAGE, "key %s is not usable for this operation (%s: %s)", k->uri,
                       fn, kw_p11_rv_name(rv));
        else
            kw_p11_fail(rv, fn, "key %s", k->uri);
    }
    kwp_raise_last(k->pctx);
    return 0;
}
