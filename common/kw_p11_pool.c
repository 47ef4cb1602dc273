/* SPDX-License-Identifier: Apache-2.0 */
/* A token's session pool as data: made, reset at a new generation, its idle sessions closed,
 * kept right in a fork child. kw_p11_session.c hands its sessions out. */
#include <stdlib.h>

#include "kw_p11_int.h"
#include "kw_secmem.h"

int kw_p11_pool_init(kw_p11_pool *p, const CK_TOKEN_INFO *info)
{
    pthread_cond_init(&p->cond, NULL);
    pthread_cond_init(&p->login_cond, NULL);
    p->gen = 1; /* 0 is the keys' "look again" */
    p->max_sessions = 16;
    if (info->ulMaxSessionCount != CK_EFFECTIVELY_INFINITE &&
        info->ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION && info->ulMaxSessionCount > 0 &&
        info->ulMaxSessionCount < p->max_sessions)
        p->max_sessions = info->ulMaxSessionCount;
    p->idle = calloc(p->max_sessions, sizeof(*p->idle));
    p->busy_cap = 2 * p->max_sessions;
    p->busy = calloc(p->busy_cap, sizeof(*p->busy));
    return p->idle != NULL && p->busy != NULL;
}

void kw_p11_pool_free(kw_p11_pool *p)
{
    kw_secure_strfree(p->pin);
    free(p->idle);
    free(p->busy);
    pthread_cond_destroy(&p->cond);
    pthread_cond_destroy(&p->login_cond);
}

void kw_p11_pool_reset(kw_p11_pool *p)
{
    p->nidle = 0;
    p->nopen = 0;
    p->logged_in = 0;
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE); /* kw_p11_token_gen reads it bare */
    pthread_cond_broadcast(&p->cond);
    pthread_cond_broadcast(&p->login_cond);
}

void kw_p11_pool_close_idle(kw_p11_token *tok)
{
    for (size_t j = 0; j < tok->pool.nidle; j++)
        (void)KW_P11_CALL(tok->mod, C_CloseSession, tok->pool.idle[j]);
    tok->pool.nidle = 0;
}

size_t kw_p11_pool_nbusy(const kw_p11_pool *p)
{
    return p->nbusy;
}

int kw_p11_pool_has_pin(const kw_p11_pool *p)
{
    return p->pin != NULL;
}

void kw_p11_pool_after_fork(kw_p11_pool *p)
{
    size_t kept = 0;

    /* Nobody waits on these in the child; a condition variable that had waiters (threads now
     * gone) could block the child's first broadcast. */
    pthread_cond_init(&p->cond, NULL);
    pthread_cond_init(&p->login_cond, NULL);
    if (p->login_busy) {
        p->login_busy = 0; /* its thread is not in the child */
        p->login_seq++;
    }
    /* Sessions the other threads held will never come back. */
    for (size_t j = 0; j < p->nbusy; j++)
        if (pthread_equal(p->busy[j].owner, pthread_self()))
            p->busy[kept++] = p->busy[j];
    p->nbusy = kept;
}
