/* SPDX-License-Identifier: Apache-2.0 */
/* Login: one C_Login per token at a time, the PIN found without holding the token's lock,
 * cached in secure memory for re-login after fork or logout and dropped when refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kw_p11_int.h"
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
kw_err kw_p11_login_locked(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pinctx,
                           int *stale)
{
    unsigned gen = tok->pool.gen;
    login_view v;
    char *used = NULL;
    int cached_failed = 0;
    kw_err e;

    *stale = 0;
    /* Another waiter may have begun the next login by the time we wake: wait for that too. */
    while (tok->pool.login_busy) {
        unsigned seq = tok->pool.login_seq;
        while (tok->pool.login_seq == seq && tok->pool.gen == gen)
            pthread_cond_wait(&tok->pool.login_cond, &tok->lock);
        if (tok->pool.gen != gen) {
            *stale = 1;
            return KW_OK;
        }
        if (tok->pool.logged_in)
            return KW_OK;
        /* The token's verdict on the PIN is ours too; anything else (no PIN in that thread's
         * sources, token gone) says nothing about our PIN: try ourselves. */
        if (tok->pool.login_err == KW_ERR_PIN_INCORRECT || tok->pool.login_err == KW_ERR_PIN_LOCKED)
            return kw_err_set(tok->pool.login_err, "%s", tok->pool.login_msg);
    }
    tok->pool.login_busy = 1;
    tok->pool.logged_in = 0;
    kw_p11_label(tok->info.label, sizeof(tok->info.label), v.label, sizeof(v.label));
    v.flags = tok->info.flags;
    v.cached =
        tok->pool.pin != NULL ? kw_secure_strndup(tok->pool.pin, strlen(tok->pool.pin)) : NULL;
    if (tok->pool.pin != NULL && v.cached == NULL) {
        e = kw_err_set(KW_ERR_MEMORY, "out of memory");
    } else {
        pthread_mutex_unlock(&tok->lock);
        e = do_login(tok, s, pinctx, &v, &used, &cached_failed);
        pthread_mutex_lock(&tok->lock);
    }
    kw_secure_strfree(v.cached);
    if (e == KW_OK && used != NULL && tok->pool.pin == NULL) {
        tok->pool.pin = used; /* kept in locked memory for re-login after fork or logout */
        used = NULL;
    }
    kw_secure_strfree(used);
    if (cached_failed && tok->pool.pin != NULL) {
        /* The cached PIN stopped working: drop it, never retry with it. */
        kw_secure_strfree(tok->pool.pin);
        tok->pool.pin = NULL;
    }
    tok->pool.login_busy = 0;
    tok->pool.login_seq++;
    tok->pool.login_err = e;
    tok->pool.login_msg[0] = '\0';
    if (e != KW_OK) {
        const char *msg = NULL;
        kw_err_last(&msg);
        snprintf(tok->pool.login_msg, sizeof(tok->pool.login_msg), "%s", msg != NULL ? msg : "");
    }
    pthread_cond_broadcast(&tok->pool.login_cond);
    if (tok->pool.gen != gen) {
        *stale = 1;
        return KW_OK;
    }
    if (e == KW_OK)
        tok->pool.logged_in = 1;
    return e;
}

kw_err kw_p11_login(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pin)
{
    kw_err e;
    int stale;

    pthread_mutex_lock(&tok->lock);
    tok->pool.logged_in = 0; /* the caller saw the token forget the login */
    e = kw_p11_login_locked(tok, s, pin, &stale);
    pthread_mutex_unlock(&tok->lock);
    if (e == KW_OK && stale)
        /* The caller returns s (dropped as stale) and starts afresh. */
        return kw_err_set(KW_ERR_TOKEN_GONE, "the token's sessions were reset during login");
    return e;
}
