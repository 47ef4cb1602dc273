/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the kw_p11 call layer: the module's and its tokens' state, shared by the files that
 * load it (kw_p11_module.c), keep it right across fork (kw_p11_fork.c), track its tokens
 * (kw_p11_tokens.c), start it afresh (kw_p11_recover.c), keep a pool of sessions (kw_p11_pool.c),
 * hand them out (kw_p11_session.c) and log in (kw_p11_login.c). Not for the layer's users: they see
 * kw_p11.h only. */
#ifndef KW_P11_INT_H
#define KW_P11_INT_H

#include <time.h>
#include <unistd.h>

#include "kw_p11.h"

/* A session handed out by the pool: which pool generation it belongs to and which thread
 * holds it (a handle number alone is ambiguous once a module numbers sessions afresh). */
typedef struct {
    CK_SESSION_HANDLE h;
    unsigned gen;   /* pool gen when it was handed out */
    unsigned epoch; /* module initialisation it was opened in */
    pthread_t owner;
} kw_p11_busy;

/* A token's session pool and login state, guarded by the token's lock. Only kw_p11_pool.c,
 * kw_p11_session.c and kw_p11_login.c read its fields; the other files use the kw_p11_pool_*
 * functions. */
typedef struct {
    pthread_cond_t cond; /* a session came back */
    CK_SESSION_HANDLE *idle;
    size_t nidle;
    size_t nopen; /* sessions of gen: idle ones and those handed out */
    size_t max_sessions;
    kw_p11_busy *busy; /* handed out, of this generation or an older one */
    size_t nbusy, busy_cap;
    /* The token's generation: bumped (atomically, under the token's lock) at every pool reset:
     * fork, token loss, a new slot, re-initialisation. Sessions and object handles from an
     * older one are stale; kw_p11_token_gen reads it without the lock. Starts at 1. */
    unsigned gen;
    int logged_in; /* user logged in, in gen */
    /* One login in flight per token, run without the lock; the others wait for its end. */
    int login_busy;
    unsigned login_seq; /* logins finished (or abandoned by fork) */
    kw_err login_err;   /* how the last one ended, and why */
    char login_msg[256];
    pthread_cond_t login_cond;
    char *pin; /* cached PIN (secure memory) for re-login after fork or logout */
} kw_p11_pool;

struct kw_p11_token {
    kw_p11_module *mod;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
    pthread_mutex_t lock;
    kw_p11_pool pool;
    CK_MECHANISM_TYPE *mechs; /* cached mechanism list and flags */
    CK_FLAGS *mech_flags;     /* KW_MECH_FLAGS_UNKNOWN until that mechanism is first asked */
    CK_ULONG nmechs;
    int present; /* written under mod->lock, atomically: kw_p11_token_present reads it bare */
};

/* ---- kw_p11_pool.c: the session pool (with tok->lock held unless said) ---- */
/* Sized from the token's ulMaxSessionCount (at most 16). 0 when out of memory. */
int kw_p11_pool_init(kw_p11_pool *p, const CK_TOKEN_INFO *info);
void kw_p11_pool_free(kw_p11_pool *p); /* no lock: the token is being freed */
/* Forget the sessions without closing them (they belong to a dead generation). Those handed
 * out become stale: their holders' kw_p11_session_put drops them. */
void kw_p11_pool_reset(kw_p11_pool *p);
/* Close the idle sessions (this process's, still open). */
void kw_p11_pool_close_idle(kw_p11_token *tok);
/* Sessions handed out, stale ones too (their holders may be inside a call). */
size_t kw_p11_pool_nbusy(const kw_p11_pool *p);
/* Was a PIN cached, i.e. did we log in to this token? */
int kw_p11_pool_has_pin(const kw_p11_pool *p);
/* In a fork child: only the forking thread's sessions and no login in flight survive. */
void kw_p11_pool_after_fork(kw_p11_pool *p);
/* ---- kw_p11_login.c ---- */
/* Log in on s, one login per token at a time; tok->lock held, released while C_Login runs. */
kw_err kw_p11_login_locked(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pinctx,
                           int *stale);

struct kw_p11_module {
    char *path;
    CK_FUNCTION_LIST *fl;
    void *dl; /* dlopen handle when we loaded p11-kit's proxy ourselves */
    int refs;
    pid_t pid;
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
/* Under mod->lock; kw_p11_token_present reads it without one. */
void kw_p11_token_set_present(kw_p11_token *tok, int present);
/* Are all tokens that were present before still there (same label and serial)? */
int kw_p11_tokens_back_locked(kw_p11_module *mod, const int *was, size_t n);
/* Refresh the slot list; called with mod->lock held. */
kw_err kw_p11_tokens_refresh_locked(kw_p11_module *mod);

#endif
