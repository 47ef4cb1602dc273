/* SPDX-License-Identifier: Apache-2.0 */
/* Session pool per token, login with PIN caching, object search and attribute reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kw_p11.h"
#include "kw_secmem.h"

/* What a login needs from the token, copied under its lock. */
typedef struct {
    char label[33];
    CK_FLAGS flags;
    char *cached; /* copy of tok->pin (secure memory), or NULL */
} login_view;

/* C_Login, run without tok->lock (a PIN prompt can wait for a person; C_Login can take a
 * while). *used_pin gets the PIN that logged in (to cache) or NULL; *cached_failed says the
 * cached PIN was refused. */
static kw_err do_login(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pinctx,
                       login_view *v, char **used_pin, int *cached_failed)
{
    kw_p11_module *mod = tok->mod;
    const char *label = v->label;
    char *pin = NULL;
    int from_cache = 0;
    CK_RV rv;
    kw_err e;

    *used_pin = NULL;
    *cached_failed = 0;
    if (v->flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
        rv = KW_P11_CALL(mod, C_Login, s, CKU_USER, NULL, 0);
    } else {
        if (v->cached != NULL) {
            pin = v->cached;
            v->cached = NULL;
            from_cache = 1;
        } else if ((e = kw_pin_resolve(pinctx, label, &pin)) != KW_OK) {
            return e;
        }
        rv = KW_P11_CALL(mod, C_Login, s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    }
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        *used_pin = pin;
        return KW_OK;
    }
    kw_secure_strfree(pin);
    *cached_failed = from_cache && rv == CKR_PIN_INCORRECT;
    if (rv == CKR_PIN_INCORRECT)
        return kw_err_set(KW_ERR_PIN_INCORRECT,
                          "PIN incorrect for token \"%s\" (not retried, so the token is not "
                          "locked by keyward; check the PIN source)",
                          label);
    if (rv == CKR_PIN_LOCKED)
        return kw_err_set(KW_ERR_PIN_LOCKED, "PIN of token \"%s\" is locked", label);
    if ((rv == CKR_USER_PIN_NOT_INITIALIZED && (v->flags & CKF_USER_PIN_INITIALIZED)) ||
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

/* Log in on s, one login per token at a time. Called with tok->lock held, returns with it
 * held; the lock is released while the PIN is found and C_Login runs, so other threads keep
 * taking and returning sessions and recovery is not stalled. A thread that finds a login in
 * flight waits for it and takes its outcome: success, or its failure (so N threads with a wrong
 * PIN cost the token one failed attempt, not N). *stale: the pool was reset meanwhile (fork,
 * token loss), s is stale and the caller must not use it. */
static kw_err login_locked(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pinctx,
                           int *stale)
{
    unsigned gen = tok->pool_gen;
    login_view v;
    char *used = NULL;
    int cached_failed = 0;
    kw_err e;

    *stale = 0;
    /* Another waiter may have begun the next login by the time we wake: wait for that too. */
    while (tok->login_busy) {
        unsigned seq = tok->login_seq;
        while (tok->login_seq == seq && tok->pool_gen == gen)
            pthread_cond_wait(&tok->login_cond, &tok->lock);
        if (tok->pool_gen != gen) {
            *stale = 1;
            return KW_OK;
        }
        if (tok->logged_in)
            return KW_OK;
        /* The token's verdict on the PIN is ours too; anything else (no PIN in that thread's
         * sources, token gone) says nothing about our PIN: try ourselves. */
        if (tok->login_err == KW_ERR_PIN_INCORRECT || tok->login_err == KW_ERR_PIN_LOCKED)
            return kw_err_set(tok->login_err, "%s", tok->login_msg);
    }
    tok->login_busy = 1;
    tok->logged_in = 0;
    kw_p11_label(tok->info.label, sizeof(tok->info.label), v.label, sizeof(v.label));
    v.flags = tok->info.flags;
    v.cached = tok->pin != NULL ? kw_secure_strndup(tok->pin, strlen(tok->pin)) : NULL;
    if (tok->pin != NULL && v.cached == NULL) {
        e = kw_err_set(KW_ERR_MEMORY, "out of memory");
    } else {
        pthread_mutex_unlock(&tok->lock);
        e = do_login(tok, s, pinctx, &v, &used, &cached_failed);
        pthread_mutex_lock(&tok->lock);
    }
    kw_secure_strfree(v.cached);
    if (e == KW_OK && used != NULL && tok->pin == NULL) {
        tok->pin = used; /* kept in locked memory for re-login after fork or logout */
        used = NULL;
    }
    kw_secure_strfree(used);
    if (cached_failed && tok->pin != NULL) {
        /* The cached PIN stopped working: drop it, never retry with it. */
        kw_secure_strfree(tok->pin);
        tok->pin = NULL;
    }
    tok->login_busy = 0;
    tok->login_seq++;
    tok->login_err = e;
    tok->login_msg[0] = '\0';
    if (e != KW_OK) {
        const char *msg = NULL;
        kw_err_last(&msg);
        snprintf(tok->login_msg, sizeof(tok->login_msg), "%s", msg != NULL ? msg : "");
    }
    pthread_cond_broadcast(&tok->login_cond);
    if (tok->pool_gen != gen) {
        *stale = 1;
        return KW_OK;
    }
    if (e == KW_OK)
        tok->logged_in = 1;
    return e;
}

/* Record s as handed out (tok->lock held). */
static int busy_add(kw_p11_token *tok, CK_SESSION_HANDLE s)
{
    if (tok->nbusy == tok->busy_cap) {
        size_t cap = tok->busy_cap ? 2 * tok->busy_cap : 8;
        kw_p11_busy *nb = realloc(tok->busy, cap * sizeof(*nb));
        if (nb == NULL)
            return 0;
        tok->busy = nb;
        tok->busy_cap = cap;
    }
    tok->busy[tok->nbusy++] =
        (kw_p11_busy){s, tok->pool_gen, kw_p11_module_epoch(tok->mod), pthread_self()};
    return 1;
}

/* Take s off the handed-out list (tok->lock held). The same number can be out twice, from two
 * generations (a module re-initialised numbers its sessions afresh): the caller's own entry
 * first, then the oldest. Returns 0 when s was not handed out. */
static int busy_take(kw_p11_token *tok, CK_SESSION_HANDLE s, kw_p11_busy *out)
{
    size_t found = tok->nbusy;

    for (size_t i = 0; i < tok->nbusy; i++) {
        if (tok->busy[i].h != s)
            continue;
        if (found == tok->nbusy)
            found = i;
        if (pthread_equal(tok->busy[i].owner, pthread_self())) {
            found = i;
            break;
        }
    }
    if (found == tok->nbusy)
        return 0;
    *out = tok->busy[found];
    tok->busy[found] = tok->busy[--tok->nbusy];
    return 1;
}

/* Is s one of the pool's current sessions (idle or handed out in this generation)? */
static int session_live(kw_p11_token *tok, CK_SESSION_HANDLE s)
{
    for (size_t i = 0; i < tok->nidle; i++)
        if (tok->idle[i] == s)
            return 1;
    for (size_t i = 0; i < tok->nbusy; i++)
        if (tok->busy[i].h == s && tok->busy[i].gen == tok->pool_gen)
            return 1;
    return 0;
}

/* A session that came back after its pool was reset (tok->lock held). It is not pooled (that
 * would hand a dead or foreign handle to the next caller) and does not count as open. Returns
 * 1 when the caller should close it: still this process's module initialisation, so the
 * handle is ours and may still be open; never a parent's after fork, nor a number the module
 * has since given to one of our current sessions. */
static int stale_should_close(kw_p11_token *tok, const kw_p11_busy *b)
{
    KW_DEBUG("p11", "session %lu came back after its pool was reset: dropped", (unsigned long)b->h);
    return b->epoch == kw_p11_module_epoch(tok->mod) && !session_live(tok, b->h);
}

kw_err kw_p11_login(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pin)
{
    kw_err e;
    int stale;

    pthread_mutex_lock(&tok->lock);
    tok->logged_in = 0; /* the caller saw the token forget the login */
    e = login_locked(tok, s, pin, &stale);
    pthread_mutex_unlock(&tok->lock);
    if (e == KW_OK && stale)
        /* The caller returns s (dropped as stale) and starts afresh. */
        return kw_err_set(KW_ERR_TOKEN_GONE, "the token's sessions were reset during login");
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
    for (;;) {
        kw_p11_busy b;
        int stale, close_it;

        if (!tok->present) {
            char label[33];
            kw_p11_label(tok->info.label, sizeof(tok->info.label), label, sizeof(label));
            pthread_mutex_unlock(&tok->lock);
            return kw_err_set(KW_ERR_TOKEN_GONE, "token \"%s\" is not present", label);
        }
        if (tok->nidle > 0) {
            s = tok->idle[--tok->nidle];
        } else if (tok->nopen < tok->max_sessions) {
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
        } else {
            /* All sessions busy: wait instead of failing. */
            pthread_cond_wait(&tok->cond, &tok->lock);
            continue;
        }
        if (!busy_add(tok, s)) {
            tok->idle[tok->nidle++] = s;
            pthread_cond_signal(&tok->cond);
            pthread_mutex_unlock(&tok->lock);
            return kw_err_set(KW_ERR_MEMORY, "out of memory");
        }
        if (!login || tok->logged_in)
            break;
        e = login_locked(tok, s, pin, &stale);
        if (e == KW_OK && !stale)
            break;
        busy_take(tok, s, &b);
        if (stale) {
            /* The pool was reset while we logged in: s is stale, take a fresh one. */
            close_it = stale_should_close(tok, &b);
            pthread_mutex_unlock(&tok->lock);
            if (close_it)
                (void)KW_P11_CALL(mod, C_CloseSession, s);
            pthread_mutex_lock(&tok->lock);
            continue;
        }
        tok->idle[tok->nidle++] = s; /* still a good session of this generation */
        pthread_cond_signal(&tok->cond);
        pthread_mutex_unlock(&tok->lock);
        if (e == KW_ERR_TOKEN_GONE)
            kw_p11_token_suspect(tok);
        return e;
    }
    pthread_mutex_unlock(&tok->lock);
    *out = s;
    return KW_OK;
}

void kw_p11_session_put(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_RV rv)
{
    kw_p11_busy b;
    int close_it = 0;

    pthread_mutex_lock(&tok->lock);
    if (!busy_take(tok, s, &b)) {
        pthread_mutex_unlock(&tok->lock);
        KW_DEBUG("p11", "session %lu returned but not handed out: ignored", (unsigned long)s);
        return;
    }
    if (b.gen != tok->pool_gen) {
        /* The pool was reset while s was out (fork, token loss, re-initialisation). */
        close_it = stale_should_close(tok, &b);
        pthread_cond_signal(&tok->cond);
        pthread_mutex_unlock(&tok->lock);
        if (close_it)
            (void)KW_P11_CALL(tok->mod, C_CloseSession, s);
        return;
    }
    if (kw_p11_rv_is_gone(rv)) {
        pthread_mutex_unlock(&tok->lock);
        /* Other sessions of the token are likely dead too: drop them all. */
        kw_p11_token_lost(tok);
        return;
    }
    if (rv == CKR_USER_NOT_LOGGED_IN)
        tok->logged_in = 0;
    tok->idle[tok->nidle++] = s; /* room: s is one of this generation's nopen */
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
