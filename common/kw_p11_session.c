/* SPDX-License-Identifier: Apache-2.0 */
/* Session pool per token, login with PIN caching, object search and attribute reads. */
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kw_p11.h"
#include "kw_secmem.h"

static kw_err do_login_locked(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pinctx)
{
    kw_p11_module *mod = tok->mod;
    char label[33];
    char *pin = NULL;
    CK_RV rv;
    kw_err e;

    kw_p11_label(tok->info.label, sizeof(tok->info.label), label, sizeof(label));
    if (tok->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
        rv = KW_P11_CALL(mod, C_Login, s, CKU_USER, NULL, 0);
    } else {
        if (tok->pin != NULL) {
            pin = kw_secure_strndup(tok->pin, strlen(tok->pin));
            if (pin == NULL)
                return kw_err_set(KW_ERR_MEMORY, "out of memory");
        } else if ((e = kw_pin_resolve(pinctx, label, &pin)) != KW_OK) {
            return e;
        }
        rv = KW_P11_CALL(mod, C_Login, s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    }
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        tok->logged_in = 1;
        if (pin != NULL && tok->pin == NULL)
            tok->pin = pin; /* kept in locked memory for re-login after fork or logout */
        else
            kw_secure_strfree(pin);
        return KW_OK;
    }
    kw_secure_strfree(pin);
    if (tok->pin != NULL && rv == CKR_PIN_INCORRECT) {
        /* The cached PIN stopped working: drop it, never retry with it. */
        kw_secure_strfree(tok->pin);
        tok->pin = NULL;
    }
    if (rv == CKR_PIN_INCORRECT)
        return kw_err_set(KW_ERR_PIN_INCORRECT,
                          "PIN incorrect for token \"%s\" (not retried, so the token is not "
                          "locked by keyward; check the PIN source)",
                          label);
    if (rv == CKR_PIN_LOCKED)
        return kw_err_set(KW_ERR_PIN_LOCKED, "PIN of token \"%s\" is locked", label);
    if ((rv == CKR_USER_PIN_NOT_INITIALIZED && (tok->info.flags & CKF_USER_PIN_INITIALIZED)) ||
        rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR)
        /* SoftHSM2 can read its token file half-written by another process (it rewrites it on
         * every login) and then fail or forget the PIN until re-initialised: take it as a lost
         * token, which recovery re-reads. The PIN was not judged, so a retry cannot lock it. */
        return kw_err_set(KW_ERR_TOKEN_GONE,
                          "login to token \"%s\" failed with %s (its state changed under us "
                          "or it went away); it will be re-read",
                          label, kw_p11_rv_name(rv));
    if (rv == CKR_PIN_EXPIRED)
        return kw_err_set(KW_ERR_PIN_LOCKED, "PIN of token \"%s\" has expired", label);
    return kw_p11_fail(rv, "C_Login", "login to token \"%s\"", label);
}

kw_err kw_p11_login(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pin)
{
    kw_err e;
    pthread_mutex_lock(&tok->lock);
    tok->logged_in = 0;
    e = do_login_locked(tok, s, pin);
    pthread_mutex_unlock(&tok->lock);
    return e;
}

kw_err kw_p11_session_get(kw_p11_token *tok, int login, const kw_pin_ctx *pin,
                          CK_SESSION_HANDLE *out)
{
    kw_p11_module *mod = tok->mod;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv;
    kw_err e;

    if ((e = kw_p11_module_check(mod)) != KW_OK)
        return e;
    pthread_mutex_lock(&tok->lock);
    if (!tok->present) {
        char label[33];
        pthread_mutex_unlock(&tok->lock);
        kw_p11_label(tok->info.label, sizeof(tok->info.label), label, sizeof(label));
        return kw_err_set(KW_ERR_TOKEN_GONE, "token \"%s\" is not present", label);
    }
    for (;;) {
        if (tok->nidle > 0) {
            s = tok->idle[--tok->nidle];
            break;
        }
        if (tok->nopen < tok->max_sessions) {
            CK_FLAGS fl = CKF_SERIAL_SESSION;
            if (!(tok->info.flags & CKF_WRITE_PROTECTED))
                fl |= CKF_RW_SESSION;
            rv = KW_P11_CALL(mod, C_OpenSession, tok->slot, fl, NULL, NULL, &s);
            if (rv == CKR_SESSION_COUNT && tok->nopen > 0) {
                /* The token's real limit is lower than it said: wait for one of ours. */
                tok->max_sessions = tok->nopen;
                continue;
            }
            if (rv != CKR_OK) {
                pthread_mutex_unlock(&tok->lock);
                if (kw_p11_rv_is_gone(rv))
                    kw_p11_token_lost(tok);
                return kw_p11_fail(rv, "C_OpenSession", "opening a session on slot %lu",
                                   (unsigned long)tok->slot);
            }
            tok->nopen++;
            break;
        }
        /* All sessions busy: wait instead of failing. */
        pthread_cond_wait(&tok->cond, &tok->lock);
    }
    if (login && !tok->logged_in) {
        e = do_login_locked(tok, s, pin);
        if (e != KW_OK) {
            tok->idle[tok->nidle++] = s; /* the slot array has room: s came from the pool */
            pthread_cond_signal(&tok->cond);
            pthread_mutex_unlock(&tok->lock);
            if (e == KW_ERR_TOKEN_GONE)
                kw_p11_token_suspect(tok);
            return e;
        }
    }
    pthread_mutex_unlock(&tok->lock);
    *out = s;
    return KW_OK;
}

void kw_p11_session_put(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_RV rv)
{
    if (kw_p11_rv_is_gone(rv)) {
        /* Other sessions of the token are likely dead too: drop them all. */
        kw_p11_token_lost(tok);
        return;
    }
    pthread_mutex_lock(&tok->lock);
    if (rv == CKR_USER_NOT_LOGGED_IN)
        tok->logged_in = 0;
    if (tok->nidle < tok->nopen) {
        tok->idle[tok->nidle++] = s;
    } else if (tok->nopen > 0) {
        /* The pool was reset while s was out (fork, token loss): s is stale. */
    }
    pthread_cond_signal(&tok->cond);
    pthread_mutex_unlock(&tok->lock);
}

kw_err kw_p11_find(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                   CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
    kw_p11_module *mod = tok->mod;
    CK_RV rv;

    *count = 0;
    rv = KW_P11_CALL(mod, C_FindObjectsInit, s, tmpl, n);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_FindObjectsInit", "searching objects");
    rv = KW_P11_CALL(mod, C_FindObjects, s, out, max, count);
    (void)KW_P11_CALL(mod, C_FindObjectsFinal, s);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_FindObjects", "searching objects");
    return KW_OK;
}

kw_err kw_p11_attr(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                   unsigned char **val, CK_ULONG *len)
{
    kw_p11_module *mod = tok->mod;
    CK_ATTRIBUTE a = {t, NULL, 0};
    CK_RV rv;

    *val = NULL;
    *len = 0;
    rv = KW_P11_CALL(mod, C_GetAttributeValue, s, o, &a, 1);
    /* Absence is an answer, not an error: callers probe for optional attributes. */
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        KW_TRACE("p11", "attribute 0x%lx not available", (unsigned long)t);
        return KW_ERR_INVALID;
    }
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1);
    if (a.pValue == NULL)
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    rv = KW_P11_CALL(mod, C_GetAttributeValue, s, o, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return KW_OK;
}

kw_err kw_p11_attr_ulong(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                         CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
    CK_ATTRIBUTE a = {t, v, sizeof(*v)};
    CK_RV rv = KW_P11_CALL(tok->mod, C_GetAttributeValue, s, o, &a, 1);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    return KW_OK;
}

kw_err kw_p11_attr_bool(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                        CK_ATTRIBUTE_TYPE t, CK_BBOOL *v)
{
    CK_ATTRIBUTE a = {t, v, sizeof(*v)};
    CK_RV rv = KW_P11_CALL(tok->mod, C_GetAttributeValue, s, o, &a, 1);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    return KW_OK;
}
