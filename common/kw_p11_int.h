/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the kw_p11 call layer: the module's state, shared by the files that load it
 * (kw_p11_module.c), keep it right across fork (kw_p11_fork.c), track its tokens
 * (kw_p11_tokens.c) and start it afresh (kw_p11_recover.c). Not for the layer's users: they
 * see kw_p11.h only. */
#ifndef KW_P11_INT_H
#define KW_P11_INT_H

#include <time.h>
#include <unistd.h>

#include "kw_p11.h"

struct kw_p11_module {
    char *path;
    CK_FUNCTION_LIST *fl;
    void *dl; /* dlopen handle when we loaded p11-kit's proxy ourselves */
    int refs;
    pid_t pid;
    unsigned gen;         /* atomic: read without the lock (kw_p11_module_gen) */
    unsigned epoch;       /* atomic: see kw_p11_module_epoch */
    pthread_mutex_t lock; /* guards tokens and re-initialisation */
    kw_p11_token **tokens;
    size_t ntokens;
    int shut;               /* module finalised and released; only memory left to free */
    int guard_sigpipe;      /* module talks to a socket: see kw_p11_call_begin */
    int initialized;        /* C_Initialize succeeded in this process (pid) */
    struct timespec reinit; /* last recovery attempt (C_Finalize + C_Initialize) */
    int want_reinit;        /* a token's state looked corrupt: re-initialise when idle */
    int fork_unsafe;        /* in a child: the module kept the parent's state; refused */
    CK_RV fork_rv;          /* why it could not start afresh in the child */
    kw_p11_module *next;
};

/* ---- kw_p11_fork.c: this process's modules and pid ---- */
/* Every loaded module, guarded by kw_p11_registry_lock (taken before any module's lock). */
extern pthread_mutex_t kw_p11_registry_lock;
extern kw_p11_module *kw_p11_registry;
/* See current_pid. */
extern pid_t kw_p11_self_pid;
/* Register the fork handlers and start caching the pid (once, after the first load). */
void kw_p11_fork_watch(void);

static inline void gen_bump(kw_p11_module *mod)
{
    __atomic_add_fetch(&mod->gen, 1, __ATOMIC_RELEASE);
}

static inline void epoch_bump(kw_p11_module *mod)
{
    __atomic_add_fetch(&mod->epoch, 1, __ATOMIC_RELEASE);
}

/* This process's id, set when the fork handlers are registered and by fork_child: the fork
 * check runs several times per signature, and getpid() is a system call each time. Until the
 * handlers are registered it is 0 and getpid() is asked. A child made without fork()'s handlers
 * (_Fork, a raw clone) that goes on using its parent's keys is not detected. */
static inline pid_t current_pid(void)
{
    pid_t p = __atomic_load_n(&kw_p11_self_pid, __ATOMIC_ACQUIRE);
    return p != 0 ? p : getpid();
}

/* ---- kw_p11_module.c ---- */
/* C_Initialize with the arguments every (re-)initialisation uses; the second one takes
 * CKR_CRYPTOKI_ALREADY_INITIALIZED for success (shared with another user in this process). */
CK_RV kw_p11_module_initialize_raw(kw_p11_module *mod);
CK_RV kw_p11_module_initialize(kw_p11_module *mod);

/* ---- kw_p11_tokens.c: the token list ---- */
void kw_p11_token_free(kw_p11_token *tok);
/* Forget a token's sessions without closing them (they belong to a dead generation). Those
 * handed out become stale: their holders' kw_p11_session_put drops them (pool_gen). */
void kw_p11_token_reset_locked(kw_p11_token *tok);
/* Are all tokens that were present before still there (same label and serial)? */
int kw_p11_tokens_back_locked(kw_p11_module *mod, const int *was, size_t n);
/* Refresh the slot list; called with mod->lock held. */
kw_err kw_p11_tokens_refresh_locked(kw_p11_module *mod);

#endif
