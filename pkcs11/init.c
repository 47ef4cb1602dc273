/* SPDX-License-Identifier: Apache-2.0 */
/* C_Initialize and C_Finalize, and what a fork needs: the module's locks held across it. */
#include <pthread.h>

#include "kw_log.h"
#include "kwk.h"

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Fork: the child gets copies of sessions and keeps its keyring possession, so it may go on using
 * the module (CKF_INTERFACE_FORK_SAFE). Only the locks need care: hold them across fork. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&kwk_lock);
    pthread_mutex_lock(&kwk_blind_lock);
}
static void fork_parent(void)
{
    pthread_mutex_unlock(&kwk_blind_lock);
    pthread_mutex_unlock(&kwk_lock);
}
static void fork_child(void)
{
    pthread_mutex_unlock(&kwk_blind_lock);
    pthread_mutex_unlock(&kwk_lock);
    kwk_sessions_after_fork();
}
static void atfork_setup(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

CK_RV C_Initialize(CK_VOID_PTR init_args)
{
    CK_C_INITIALIZE_ARGS *a = init_args;
    CK_RV rv;

    if (a != NULL) {
        int have_fns = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
        int all_fns = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
        if (a->pReserved != NULL || (have_fns && !all_fns))
            return CKR_ARGUMENTS_BAD;
        /* We lock with pthreads; callers that insist on their own primitives are refused. */
        if (have_fns && !(a->flags & CKF_OS_LOCKING_OK))
            return CKR_CANT_LOCK;
    }
    pthread_once(&atfork_once, atfork_setup);
    pthread_mutex_lock(&kwk_lock);
    if (kwk_initialized()) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    }
    rv = kwk_state_load();
    if (rv == CKR_OK && kwk_libctx() == NULL)
        rv = CKR_GENERAL_ERROR;
    if (rv == CKR_OK) {
        kwk_state_set_initialized(1);
        KW_DEBUG(KWK_COMP, "initialised: %zu token(s) from %s", kwk_token_count(),
                 kwk_config_path());
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

CK_RV C_Finalize(CK_VOID_PTR reserved)
{
    if (reserved != NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    if (!kwk_initialized()) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    kwk_sessions_close_all(NULL);
    for (size_t i = 0; i < kwk_token_count(); i++)
        kwk_objects_free(kwk_token_at(i));
    kwk_state_set_initialized(0);
    pthread_mutex_unlock(&kwk_lock);
    kwk_blind_free_all();
    kwk_ossl_free();
    return CKR_OK;
}
