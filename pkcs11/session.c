/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions: a table of handles, one mutex per session held for the length of a call, so a
 * session closed by one thread while another uses it is freed only after that call ends. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

static kwk_session *table[KWK_MAX_SESSIONS]; /* handle h lives at table[h - 1] */

void kwk_key_clear(kwk_key *k)
{
    EVP_PKEY_free(k->pub);
    EVP_PKEY_free(k->priv);
    memset(k, 0, sizeof(*k));
}

void kwk_op_clear(kwk_op *op)
{
    kwk_key_clear(&op->key);
    EVP_MD_CTX_free(op->mdctx);
    if (op->buf)
        kw_secure_free(op->buf, op->buf_cap);
    free(op->label);
    memset(op, 0, sizeof(*op));
}

static void session_free(kwk_session *s)
{
    kwk_op_clear(&s->op);
    EVP_PKEY_CTX_free(s->ecdsa);
    free(s->found);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Lock order: a session's lock, then kwk_lock (a call on a session takes the module lock while
 * it runs). Finding a session needs kwk_lock, so the session's lock is only tried under it: when
 * a call on that session is in progress, kwk_lock is let go (that call may be waiting for it)
 * and the lookup is repeated. Blocking there instead deadlocked two threads using one session. */
static void pause_briefly(void)
{
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, NULL);
}

CK_RV kwk_session_get(CK_SESSION_HANDLE h, kwk_session **out)
{
    for (;;) {
        if (!kwk_initialized())
            return CKR_CRYPTOKI_NOT_INITIALIZED;
        pthread_mutex_lock(&kwk_lock);
        kwk_session *s = h >= 1 && h <= KWK_MAX_SESSIONS ? table[h - 1] : NULL;
        if (s == NULL) {
            pthread_mutex_unlock(&kwk_lock);
            return kwk_initialized() ? CKR_SESSION_HANDLE_INVALID : CKR_CRYPTOKI_NOT_INITIALIZED;
        }
        if (pthread_mutex_trylock(&s->lock) == 0) {
            pthread_mutex_unlock(&kwk_lock);
            *out = s;
            return CKR_OK;
        }
        pthread_mutex_unlock(&kwk_lock);
        pause_briefly();
    }
}

void kwk_session_put(kwk_session *s)
{
    pthread_mutex_unlock(&s->lock);
}

CK_RV kwk_session_get_op(CK_SESSION_HANDLE h, kwk_opkind want, kwk_session **out)
{
    CK_RV rv = kwk_session_get(h, out);
    if (rv != CKR_OK)
        return rv;
    if ((*out)->op.kind != want) {
        kwk_session_put(*out);
        return CKR_OPERATION_NOT_INITIALIZED;
    }
    return CKR_OK;
}

size_t kwk_session_count(kwk_token *t, int rw_only)
{
    size_t n = 0;
    for (size_t i = 0; i < KWK_MAX_SESSIONS; i++)
        if (table[i] && table[i]->tok == t && (!rw_only || (table[i]->flags & CKF_RW_SESSION)))
            n++;
    return n;
}

/* Remove a session from the table (kwk_lock held) and free it once no call is using it. */
static void session_close_locked(size_t i)
{
    kwk_session *s = table[i];
    kwk_token *t = s->tok;
    table[i] = NULL;
    /* Wait for a call in progress (no new one can find the session now); it may need kwk_lock
     * to finish, so that is let go meanwhile (see kwk_session_get). */
    while (pthread_mutex_trylock(&s->lock) != 0) {
        pthread_mutex_unlock(&kwk_lock);
        pause_briefly();
        pthread_mutex_lock(&kwk_lock);
    }
    pthread_mutex_unlock(&s->lock);
    kwk_objects_drop_session(t, s->handle);
    session_free(s);
    if (kwk_session_count(t, 0) == 0)
        t->logged_in = 0; /* the last session closing logs the user out */
}

void kwk_sessions_close_all(kwk_token *t)
{
    for (size_t i = 0; i < KWK_MAX_SESSIONS; i++)
        if (table[i] && (t == NULL || table[i]->tok == t))
            session_close_locked(i);
}

void kwk_sessions_after_fork(void)
{
    /* A call another thread had in progress at fork() never finishes in the child: give every
     * session a fresh, unlocked mutex. */
    for (size_t i = 0; i < KWK_MAX_SESSIONS; i++)
        if (table[i])
            pthread_mutex_init(&table[i]->lock, NULL);
}

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                    CK_SESSION_HANDLE_PTR out)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = kwk_token_by_slot(slot);
    CK_RV rv = t ? kwk_token_open(t) : CKR_SLOT_ID_INVALID;
    size_t i = 0;
    if (rv == CKR_OK) {
        while (i < KWK_MAX_SESSIONS && table[i])
            i++;
        if (i == KWK_MAX_SESSIONS)
            rv = CKR_SESSION_COUNT;
    }
    kwk_session *s = rv == CKR_OK ? calloc(1, sizeof(*s)) : NULL;
    if (rv == CKR_OK && s == NULL)
        rv = CKR_HOST_MEMORY;
    if (rv == CKR_OK) {
        pthread_mutex_init(&s->lock, NULL);
        s->handle = i + 1;
        s->tok = t;
        s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
        table[i] = s;
        *out = s->handle;
        KW_TRACE(KWK_COMP, "session %lu opened on %s (%s mode)", (unsigned long)s->handle, t->label,
                 kwk_mode_name(t->mode));
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    pthread_mutex_lock(&kwk_lock);
    CK_RV rv = CKR_SESSION_HANDLE_INVALID;
    if (h >= 1 && h <= KWK_MAX_SESSIONS && table[h - 1]) {
        session_close_locked(h - 1);
        rv = CKR_OK;
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = kwk_token_by_slot(slot);
    if (t)
        kwk_sessions_close_all(t);
    pthread_mutex_unlock(&kwk_lock);
    return t ? CKR_OK : CKR_SLOT_ID_INVALID;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    kwk_session *s;
    if (info == NULL)
        return kwk_initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&kwk_lock);
    int user = s->tok->logged_in;
    pthread_mutex_unlock(&kwk_lock);
    int rw = (s->flags & CKF_RW_SESSION) != 0;
    info->slotID = s->tok->slot;
    info->flags = s->flags;
    info->ulDeviceError = 0;
    info->state = user ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS)
                       : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION);
    kwk_session_put(s);
    return CKR_OK;
}

CK_RV C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_op_clear(&s->op);
    if (flags & CKF_FIND_OBJECTS) {
        free(s->found);
        s->found = NULL;
        s->finding = 0;
    }
    kwk_session_put(s);
    return CKR_OK;
}
