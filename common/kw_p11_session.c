/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions handed out and taken back, by the token's generation, so that one from before a
 * fork, a token loss or a re-initialisation is never handed out again; a login when needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kw_p11_int.h"
#include "kw_secmem.h"

/* Record s as handed out (tok->lock held). */
static int busy_add(kw_p11_token *tok, CK_SESSION_HANDLE s)
{
    if (tok->pool.nbusy == tok->pool.busy_cap) {
        size_t cap = tok->pool.busy_cap ? 2 * tok->pool.busy_cap : 8;
        kw_p11_busy *nb = realloc(tok->pool.busy, cap * sizeof(*nb));
        if (nb == NULL)
            return 0;
        tok->pool.busy = nb;
        tok->pool.busy_cap = cap;
    }
    tok->pool.busy[tok->pool.nbusy++] =
        (kw_p11_busy){s, tok->pool.gen, kw_p11_module_epoch(tok->mod), pthread_self()};
    return 1;
}

/* Take s off the handed-out list (tok->lock held). The same number can be out twice, from two
 * generations (a module re-initialised numbers its sessions afresh): the caller's own entry
 * first, then the oldest. Returns 0 when s was not handed out. */
static int busy_take(kw_p11_token *tok, CK_SESSION_HANDLE s, kw_p11_busy *out)
{
    size_t found = tok->pool.nbusy;

    for (size_t i = 0; i < tok->pool.nbusy; i++) {
        if (tok->pool.busy[i].h != s)
            continue;
        if (found == tok->pool.nbusy)
            found = i;
        if (pthread_equal(tok->pool.busy[i].owner, pthread_self())) {
            found = i;
            break;
        }
    }
    if (found == tok->pool.nbusy)
        return 0;
    *out = tok->pool.busy[found];
    tok->pool.busy[found] = tok->pool.busy[--tok->pool.nbusy];
    return 1;
}

/* Is s one of the pool's current sessions (idle or handed out in this generation)? */
static int session_live(kw_p11_token *tok, CK_SESSION_HANDLE s)
{
    for (size_t i = 0; i < tok->pool.nidle; i++)
        if (tok->pool.idle[i] == s)
            return 1;
    for (size_t i = 0; i < tok->pool.nbusy; i++)
        if (tok->pool.busy[i].h == s && tok->pool.busy[i].gen == tok->pool.gen)
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

        if (!kw_p11_token_present(tok)) {
            char label[33];
            kw_p11_label(tok->info.label, sizeof(tok->info.label), label, sizeof(label));
            pthread_mutex_unlock(&tok->lock);
            return kw_err_set(KW_ERR_TOKEN_GONE, "token \"%s\" is not present", label);
        }
        if (tok->pool.nidle > 0) {
            s = tok->pool.idle[--tok->pool.nidle];
        } else if (tok->pool.nopen < tok->pool.max_sessions) {
            CK_FLAGS fl = CKF_SERIAL_SESSION;
            if (!(tok->info.flags & CKF_WRITE_PROTECTED))
                fl |= CKF_RW_SESSION;
            rv = KW_P11_CALL(mod, C_OpenSession, tok->slot, fl, NULL, NULL, &s);
            if (rv == CKR_SESSION_COUNT && tok->pool.nopen > 0) {
                /* The token's real limit is lower than it said: wait for one of ours. */
                tok->pool.max_sessions = tok->pool.nopen;
                continue;
            }
            if (rv != CKR_OK) {
                pthread_mutex_unlock(&tok->lock);
                if (kw_p11_rv_is_gone(rv))
                    kw_p11_token_lost(tok);
                return kw_p11_fail(rv, "C_OpenSession", "opening a session on slot %lu",
                                   (unsigned long)tok->slot);
            }
            tok->pool.nopen++;
        } else {
            /* All sessions busy: wait instead of failing. */
            pthread_cond_wait(&tok->pool.cond, &tok->lock);
            continue;
        }
        if (!busy_add(tok, s)) {
            tok->pool.idle[tok->pool.nidle++] = s;
            pthread_cond_signal(&tok->pool.cond);
            pthread_mutex_unlock(&tok->lock);
            return kw_err_set(KW_ERR_MEMORY, "out of memory");
        }
        if (!login || tok->pool.logged_in)
            break;
        e = kw_p11_login_locked(tok, s, pin, &stale);
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
        tok->pool.idle[tok->pool.nidle++] = s; /* still a good session of this generation */
        pthread_cond_signal(&tok->pool.cond);
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
    if (b.gen != tok->pool.gen) {
        /* The pool was reset while s was out (fork, token loss, re-initialisation). */
        close_it = stale_should_close(tok, &b);
        pthread_cond_signal(&tok->pool.cond);
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
        tok->pool.logged_in = 0;
    tok->pool.idle[tok->pool.nidle++] = s; /* room: s is one of this generation's nopen */
    pthread_cond_signal(&tok->pool.cond);
    pthread_mutex_unlock(&tok->lock);
}
