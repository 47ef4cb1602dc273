/* SPDX-License-Identifier: Apache-2.0 */
/* Module loading through p11-kit, fork detection, and token discovery. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "kw_log.h"
#include "kw_p11.h"
#include "kw_secmem.h"

#ifndef KW_P11_PROXY_PATH
#define KW_P11_PROXY_PATH "p11-kit-proxy.so"
#endif

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

#define KW_P11_RECOVER_MS 200

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static kw_p11_module *registry;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

static void gen_bump(kw_p11_module *mod)
{
    __atomic_add_fetch(&mod->gen, 1, __ATOMIC_RELEASE);
}

static void epoch_bump(kw_p11_module *mod)
{
    __atomic_add_fetch(&mod->epoch, 1, __ATOMIC_RELEASE);
}

/* Fork from a threaded process: the child has only the forking thread, so a lock another
 * thread held at that moment would stay held in the child for good. prepare takes every lock
 * of the call layer (registry, then each module, then its tokens: the order the code takes
 * them in) and waits until no thread is inside a module call; parent and child release them.
 * The child then re-initialises the module on first use (kw_p11_module_check). A fork made
 * from inside a module call (a module spawning a helper) leaves everything alone: this thread
 * may already hold the locks. */
static __thread int fork_skipped;

static void fork_prepare(void)
{
    fork_skipped = kw_p11_in_call();
    if (fork_skipped)
        return;
    pthread_mutex_lock(&registry_lock);
    for (kw_p11_module *mod = registry; mod != NULL; mod = mod->next) {
        pthread_mutex_lock(&mod->lock);
        for (size_t i = 0; i < mod->ntokens; i++)
            pthread_mutex_lock(&mod->tokens[i]->lock);
    }
    kw_p11_calls_quiesce();
}

static void fork_release(int in_child)
{
    if (fork_skipped)
        return;
    kw_p11_calls_open(in_child);
    for (kw_p11_module *mod = registry; mod != NULL; mod = mod->next) {
        if (in_child)
            epoch_bump(mod); /* the parent's sessions are not the child's to close */
        for (size_t i = mod->ntokens; i > 0; i--) {
            kw_p11_token *tok = mod->tokens[i - 1];
            if (in_child) {
                size_t kept = 0;
                /* Nobody waits on these in the child; a condition variable that had
                 * waiters (threads now gone) could block the child's first broadcast. */
                pthread_cond_init(&tok->cond, NULL);
                pthread_cond_init(&tok->login_cond, NULL);
                if (tok->login_busy) {
                    tok->login_busy = 0; /* its thread is not in the child */
                    tok->login_seq++;
                }
                /* Sessions the other threads held will never come back. */
                for (size_t j = 0; j < tok->nbusy; j++)
                    if (pthread_equal(tok->busy[j].owner, pthread_self()))
                        tok->busy[kept++] = tok->busy[j];
                tok->nbusy = kept;
            }
            pthread_mutex_unlock(&tok->lock);
        }
        pthread_mutex_unlock(&mod->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void fork_parent(void)
{
    fork_release(0);
}

/* This process's id, set when the fork handlers are registered and by fork_child: the fork
 * check runs several times per signature, and getpid() is a system call each time. Until the
 * handlers are registered it is 0 and getpid() is asked. A child made without fork()'s handlers
 * (_Fork, a raw clone) that goes on using its parent's keys is not detected. */
static pid_t self_pid;

static pid_t current_pid(void)
{
    pid_t p = __atomic_load_n(&self_pid, __ATOMIC_ACQUIRE);
    return p != 0 ? p : getpid();
}

static void fork_child(void)
{
    __atomic_store_n(&self_pid, getpid(), __ATOMIC_RELEASE);
    fork_release(1);
}

/* Close our sessions, finalise and release a module, in the process that opened them. */
static void module_shutdown(kw_p11_module *mod)
{
    if (mod->shut)
        return;
    mod->shut = 1;
    /* Sessions of a parent process are not ours to close after fork. */
    if (mod->pid != current_pid())
        return;
    for (size_t i = 0; i < mod->ntokens; i++) {
        kw_p11_token *tok = mod->tokens[i];
        for (size_t j = 0; j < tok->nidle; j++)
            (void)KW_P11_CALL(mod, C_CloseSession, tok->idle[j]);
        tok->nidle = 0;
    }
    if (mod->initialized)
        (void)KW_P11_CALL(mod, C_Finalize, NULL);
    if (mod->dl == NULL)
        p11_kit_module_release(mod->fl);
}

/* Modules such as SoftHSM tear down their own state in exit handlers registered when they were
 * loaded; OpenSSL unloads providers later still. Registered after the first load, this runs
 * before those, while the module can still be called. */
static void kw_p11_atexit(void)
{
    pthread_mutex_lock(&registry_lock);
    for (kw_p11_module *mod = registry; mod != NULL; mod = mod->next)
        module_shutdown(mod);
    pthread_mutex_unlock(&registry_lock);
}

static void register_atexit(void)
{
    atexit(kw_p11_atexit);
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) == 0)
        __atomic_store_n(&self_pid, getpid(), __ATOMIC_RELEASE);
}

static CK_RV module_initialize_raw(kw_p11_module *mod)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    /* The module may create its own threads and must use OS locking: we call it from many. */
    args.flags = CKF_OS_LOCKING_OK;
    return KW_P11_CALL(mod, C_Initialize, &args);
}

static CK_RV module_initialize(kw_p11_module *mod)
{
    CK_RV rv = module_initialize_raw(mod);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        rv = CKR_OK; /* shared with another user in this process */
    return rv;
}

kw_p11_module *kw_p11_module_get(const char *path)
{
    kw_p11_module *mod;
    CK_RV rv;

    if (path == NULL || *path == '\0')
        path = KW_P11_PROXY_PATH;
    pthread_mutex_lock(&registry_lock);
    for (mod = registry; mod != NULL; mod = mod->next) {
        if (strcmp(mod->path, path) == 0) {
            mod->refs++;
            pthread_mutex_unlock(&registry_lock);
            return mod;
        }
    }
    mod = calloc(1, sizeof(*mod));
    if (mod == NULL || (mod->path = strdup(path)) == NULL) {
        free(mod);
        pthread_mutex_unlock(&registry_lock);
        kw_err_set(KW_ERR_MEMORY, "out of memory loading %s", path);
        return NULL;
    }
    if (strstr(path, "p11-kit-proxy") != NULL) {
        /* p11-kit will not load its own proxy as a module: it is a plain PKCS#11 library. */
        CK_C_GetFunctionList gfl;
        mod->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        gfl = mod->dl ? (CK_C_GetFunctionList)dlsym(mod->dl, "C_GetFunctionList") : NULL;
        if (gfl == NULL || gfl(&mod->fl) != CKR_OK)
            mod->fl = NULL;
    } else {
        /* Unmanaged: p11-kit's managed wrapper answers "initialised" in a forked child for a
         * module that kept its parent's state (tpm2-pkcs11), and its C_Finalize then only
         * drops a reference. We must see that and finalise for real (module_check). */
        mod->fl = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
    }
    if (mod->fl == NULL) {
        const char *why = mod->dl != NULL || strstr(path, "p11-kit-proxy") != NULL
                              ? dlerror()
                              : p11_kit_message();
        if (mod->dl != NULL)
            dlclose(mod->dl);
        kw_err_set(KW_ERR_MODULE, "cannot load PKCS#11 module %s: %s", path,
                   why ? why : "unknown reason");
        free(mod->path);
        free(mod);
        pthread_mutex_unlock(&registry_lock);
        return NULL;
    }
    pthread_mutex_init(&mod->lock, NULL);
    mod->guard_sigpipe = strstr(path, "p11-kit-client") != NULL || mod->dl != NULL;
    rv = module_initialize(mod);
    if (rv != CKR_OK) {
        kw_p11_fail(rv, "C_Initialize", "cannot initialise PKCS#11 module %s", path);
        kw_err_set(KW_ERR_MODULE, "cannot initialise PKCS#11 module %s: C_Initialize returned %s",
                   path, kw_p11_rv_name(rv));
        if (mod->dl != NULL)
            dlclose(mod->dl);
        else
            p11_kit_module_release(mod->fl);
        pthread_mutex_destroy(&mod->lock);
        free(mod->path);
        free(mod);
        pthread_mutex_unlock(&registry_lock);
        return NULL;
    }
    mod->pid = getpid();
    mod->initialized = 1;
    mod->gen = 1;
    mod->epoch = 1;
    mod->refs = 1;
    mod->next = registry;
    registry = mod;
    pthread_mutex_unlock(&registry_lock);
    pthread_once(&atexit_once, register_atexit);
    KW_DEBUG("p11", "loaded module %s", path);
    return mod;
}

static void token_free(kw_p11_token *tok)
{
    kw_secure_strfree(tok->pin);
    free(tok->idle);
    free(tok->busy);
    free(tok->mechs);
    free(tok->mech_flags);
    pthread_mutex_destroy(&tok->lock);
    pthread_cond_destroy(&tok->cond);
    pthread_cond_destroy(&tok->login_cond);
    free(tok);
}

void kw_p11_module_put(kw_p11_module *mod)
{
    kw_p11_module **pp;

    if (mod == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    if (--mod->refs > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (pp = &registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == mod) {
            *pp = mod->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);

    module_shutdown(mod);
    for (size_t i = 0; i < mod->ntokens; i++)
        token_free(mod->tokens[i]);
    free(mod->tokens);
    pthread_mutex_destroy(&mod->lock);
    free(mod->path);
    free(mod);
}

CK_FUNCTION_LIST *kw_p11_module_fl(kw_p11_module *mod)
{
    return mod->fl;
}

int kw_p11_module_guards_sigpipe(kw_p11_module *mod)
{
    return mod->guard_sigpipe;
}

const char *kw_p11_module_path(kw_p11_module *mod)
{
    return mod->path;
}

/* Lock-free: callers check it on every operation while holding their own key lock, which
 * must not wait behind a fork handler holding mod->lock. */
unsigned kw_p11_module_gen(kw_p11_module *mod)
{
    return __atomic_load_n(&mod->gen, __ATOMIC_ACQUIRE);
}

unsigned kw_p11_module_epoch(kw_p11_module *mod)
{
    return __atomic_load_n(&mod->epoch, __ATOMIC_ACQUIRE);
}

static kw_err refresh_tokens_locked(kw_p11_module *mod);

/* Forget a token's sessions without closing them (they belong to a dead generation). Those
 * handed out become stale: their holders' kw_p11_session_put drops them (pool_gen). */
static void token_reset_locked(kw_p11_token *tok)
{
    tok->nidle = 0;
    tok->nopen = 0;
    tok->logged_in = 0;
    tok->pool_gen++;
    pthread_cond_broadcast(&tok->cond);
    pthread_cond_broadcast(&tok->login_cond);
}

/* Are all tokens that were present before still there (same label and serial)? */
static int tokens_back_locked(kw_p11_module *mod, const int *was, size_t n)
{
    for (size_t i = 0; i < n && i < mod->ntokens; i++)
        if (was[i] && !mod->tokens[i]->present)
            return 0;
    return 1;
}

/* Right after C_Initialize in a child, nobody is logged in: login state belongs to an
 * application (a process). A new session that is already in a user state means the module kept
 * the parent's state across fork instead of starting afresh. Asked only of tokens we logged in
 * to. Called with mod->lock held. */
static int kept_parent_login_locked(kw_p11_module *mod)
{
    int kept = 0;

    for (size_t i = 0; !kept && i < mod->ntokens; i++) {
        kw_p11_token *tok = mod->tokens[i];
        CK_SESSION_HANDLE s;
        CK_SESSION_INFO si;

        if (!tok->present || tok->pin == NULL)
            continue;
        if (KW_P11_CALL(mod, C_OpenSession, tok->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) !=
            CKR_OK)
            continue;
        if (KW_P11_CALL(mod, C_GetSessionInfo, s, &si) == CKR_OK)
            kept = si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS ||
                   si.state == CKS_RW_SO_FUNCTIONS;
        (void)KW_P11_CALL(mod, C_CloseSession, s);
    }
    return kept;
}

kw_err kw_p11_module_check(kw_p11_module *mod)
{
    CK_RV rv = CKR_OK;
    pid_t me = current_pid();

    if (mod->pid == me && !__atomic_load_n(&mod->fork_unsafe, __ATOMIC_RELAXED))
        return KW_OK;
    pthread_mutex_lock(&mod->lock);
    if (mod->pid != me) {
        size_t n = mod->ntokens;
        int *was = calloc(n + 1, sizeof(*was));

        if (was == NULL) {
            pthread_mutex_unlock(&mod->lock);
            return kw_err_set(KW_ERR_MEMORY, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            was[i] = mod->tokens[i]->present;
        /* A child: PKCS#11 says it must C_Initialize; the parent's sessions are not its own. */
        KW_DEBUG("p11", "fork detected (pid %d -> %d): re-initialising %s", (int)mod->pid, (int)me,
                 mod->path);
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&mod->tokens[i]->lock);
            token_reset_locked(mod->tokens[i]);
            pthread_mutex_unlock(&mod->tokens[i]->lock);
        }
        gen_bump(mod);
        mod->pid = me;
        /* SoftHSM2 rewrites its token file on every login; a sibling process that initialises
         * meanwhile can read it half-written and then sees no token (or an uninitialised one)
         * for good. Initialise again, briefly, until the tokens we had are back: up to ten
         * times over about a second, as many siblings forked at once (a server's children
         * under load) log in and rewrite it in turn. */
        for (int attempt = 0; attempt < 10; attempt++) {
            if (attempt > 0) {
                KW_DEBUG("p11", "after fork a token is missing from %s: initialising again",
                         mod->path);
                (void)KW_P11_CALL(mod, C_Finalize, NULL);
                nanosleep(&(struct timespec){0, (attempt < 5 ? attempt : 5) * 30 * 1000 * 1000L},
                          NULL);
            }
            rv = module_initialize_raw(mod);
            if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                /* The module kept its parent's state (SoftHSM2 without reset_on_fork,
                 * tpm2-pkcs11). It is this process's copy: finalise it and start afresh. */
                KW_DEBUG("p11",
                         "%s kept its parent's state across fork: finalising this "
                         "process's copy and initialising again",
                         mod->path);
                (void)KW_P11_CALL(mod, C_Finalize, NULL);
                rv = module_initialize(mod);
                if (rv != CKR_OK) {
                    mod->fork_rv = rv;
                    __atomic_store_n(&mod->fork_unsafe, 1, __ATOMIC_RELAXED);
                    break;
                }
            }
            mod->initialized = rv == CKR_OK;
            if (rv != CKR_OK)
                continue;
            epoch_bump(mod);
            /* Slot ids need not survive re-initialisation: learn them again before use. */
            if (refresh_tokens_locked(mod) != KW_OK)
                kw_err_clear();
            else if (tokens_back_locked(mod, was, n))
                break;
        }
        free(was);
        if (rv == CKR_OK && kept_parent_login_locked(mod))
            /* Through p11-kit's proxy a module's "already initialised" is hidden and its
             * finalisation only drops a reference: nothing more can be done from here. */
            KW_DEBUG("p11",
                     "warning: %s still has the parent's login after fork: the module "
                     "shares its parent's state",
                     mod->path);
        if (!mod->fork_unsafe && rv != CKR_OK) {
            pthread_mutex_unlock(&mod->lock);
            return kw_p11_fail(rv, "C_Initialize", "re-initialising %s after fork", mod->path);
        }
    }
    if (mod->fork_unsafe) {
        /* tpm2-pkcs11 with tpm2-abrmd: its D-Bus client (GLib) cannot connect again in a
         * forked child. Using the parent's copy, every worker would talk through the parent's
         * one TPM connection and sessions and trample each other (failed signatures, and
         * authorisation failures that can lock the TPM). So the child does not, and says why. */
        pthread_mutex_unlock(&mod->lock);
        return kw_err_set(KW_ERR_MODULE,
                          "PKCS#11 module %s kept its parent's state across fork and cannot "
                          "start afresh in this process (pid %d; C_Initialize: %s), so it "
                          "would share the parent's sessions: refused. Serve the token from "
                          "one process with `p11-kit server` and load p11-kit-client.so here "
                          "(docs/scale-out.md), or run a single process",
                          mod->path, (int)me, kw_p11_rv_name(mod->fork_rv));
    }
    pthread_mutex_unlock(&mod->lock);
    return KW_OK;
}

void kw_p11_token_suspect(kw_p11_token *tok)
{
    pthread_mutex_lock(&tok->mod->lock);
    tok->mod->want_reinit = 1;
    pthread_mutex_unlock(&tok->mod->lock);
    kw_p11_token_lost(tok);
}

void kw_p11_token_lost(kw_p11_token *tok)
{
    kw_p11_module *mod = tok->mod;

    pthread_mutex_lock(&mod->lock);
    tok->present = 0;
    gen_bump(mod);
    pthread_mutex_unlock(&mod->lock);
    pthread_mutex_lock(&tok->lock);
    /* Sessions of a removed token are invalid; closing them is harmless if they are not. */
    for (size_t j = 0; j < tok->nidle; j++)
        (void)KW_P11_CALL(mod, C_CloseSession, tok->idle[j]);
    token_reset_locked(tok);
    pthread_mutex_unlock(&tok->lock);
}

void kw_p11_label(const CK_UTF8CHAR *padded, size_t n, char *out, size_t cap)
{
    while (n > 0 && (padded[n - 1] == ' ' || padded[n - 1] == '\0'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, padded, n);
    out[n] = '\0';
}

static int same_token(const CK_TOKEN_INFO *a, const CK_TOKEN_INFO *b)
{
    return memcmp(a->label, b->label, sizeof(a->label)) == 0 &&
           memcmp(a->serialNumber, b->serialNumber, sizeof(a->serialNumber)) == 0;
}

static kw_p11_token *token_new(kw_p11_module *mod, CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
    kw_p11_token *tok = calloc(1, sizeof(*tok));
    if (tok == NULL)
        return NULL;
    tok->mod = mod;
    tok->slot = slot;
    tok->info = *info;
    pthread_mutex_init(&tok->lock, NULL);
    pthread_cond_init(&tok->cond, NULL);
    pthread_cond_init(&tok->login_cond, NULL);
    tok->max_sessions = 16;
    if (info->ulMaxSessionCount != CK_EFFECTIVELY_INFINITE &&
        info->ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION && info->ulMaxSessionCount > 0 &&
        info->ulMaxSessionCount < tok->max_sessions)
        tok->max_sessions = info->ulMaxSessionCount;
    tok->idle = calloc(tok->max_sessions, sizeof(*tok->idle));
    tok->busy_cap = 2 * tok->max_sessions;
    tok->busy = calloc(tok->busy_cap, sizeof(*tok->busy));
    if (tok->idle == NULL || tok->busy == NULL) {
        token_free(tok);
        return NULL;
    }
    tok->present = 1;
    return tok;
}

/* SoftHSM2 answers CKR_GENERAL_ERROR now and then while other processes log in to the same
 * token; a token is only taken for gone when it keeps failing. */
static CK_RV get_token_info(kw_p11_module *mod, CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    CK_RV rv = CKR_OK;

    for (int i = 0; i < 3; i++) {
        rv = KW_P11_CALL(mod, C_GetTokenInfo, slot, info);
        if (rv != CKR_GENERAL_ERROR && rv != CKR_DEVICE_ERROR && rv != CKR_FUNCTION_FAILED)
            break;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return rv;
}

/* Refresh the slot list; called with mod->lock held. */
static kw_err refresh_tokens_locked(kw_p11_module *mod)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;

    rv = KW_P11_CALL(mod, C_GetSlotList, CK_TRUE, NULL, &n);
    if (rv == CKR_OK && n > 0) {
        slots = calloc(n, sizeof(*slots));
        if (slots == NULL)
            return kw_err_set(KW_ERR_MEMORY, "out of memory listing slots");
        rv = KW_P11_CALL(mod, C_GetSlotList, CK_TRUE, slots, &n);
    }
    if (rv != CKR_OK) {
        free(slots);
        return kw_p11_fail(rv, "C_GetSlotList", "listing slots of %s", mod->path);
    }
    size_t known = mod->ntokens;
    int *was = calloc(known + 1, sizeof(*was));
    if (was == NULL) {
        free(slots);
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < mod->ntokens; i++) {
        was[i] = mod->tokens[i]->present;
        mod->tokens[i]->present = 0;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        kw_p11_token *tok = NULL;

        if (get_token_info(mod, slots[i], &info) != CKR_OK)
            continue;
        for (size_t j = 0; j < mod->ntokens; j++) {
            if (same_token(&mod->tokens[j]->info, &info)) {
                tok = mod->tokens[j];
                break;
            }
        }
        /* A slot whose token was never initialised (SoftHSM2 always has one) holds no
         * objects and refuses sessions: it is no token a URI can mean. */
        if (tok == NULL && !(info.flags & CKF_TOKEN_INITIALIZED)) {
            KW_TRACE("p11", "slot %lu: token not initialised, skipped", (unsigned long)slots[i]);
            continue;
        }
        if (tok != NULL) {
            pthread_mutex_lock(&tok->lock);
            if (tok->slot != slots[i]) {
                /* The token came back in another slot: its old sessions are gone. */
                tok->slot = slots[i];
                token_reset_locked(tok);
            }
            tok->info = info;
            tok->present = 1;
            pthread_mutex_unlock(&tok->lock);
            continue;
        }
        tok = token_new(mod, slots[i], &info);
        kw_p11_token **nt = realloc(mod->tokens, (mod->ntokens + 1) * sizeof(*nt));
        if (tok == NULL || nt == NULL) {
            if (tok != NULL)
                token_free(tok);
            free(slots);
            return kw_err_set(KW_ERR_MEMORY, "out of memory");
        }
        mod->tokens = nt;
        mod->tokens[mod->ntokens++] = tok;
    }
    /* A token that went away takes its sessions and login with it. */
    for (size_t i = 0; i < known; i++) {
        kw_p11_token *tok = mod->tokens[i];
        if (was[i] && !tok->present) {
            KW_DEBUG("p11", "token in slot %lu is gone", (unsigned long)tok->slot);
            pthread_mutex_lock(&tok->lock);
            token_reset_locked(tok);
            pthread_mutex_unlock(&tok->lock);
            gen_bump(mod);
        }
    }
    free(was);
    free(slots);
    return KW_OK;
}

/* Start the module afresh when a token we knew stays away or the module stopped answering:
 * SoftHSM2 keeps failing a token whose store came back, and p11-kit-client connects to its
 * server only in C_Initialize. Only done when none of our sessions is in use (C_Finalize would
 * pull it from under its user), at most every KW_P11_RECOVER_MS (a token that stays away is
 * not hammered, one that is back is used again within that time). Called with mod->lock held. */
static int module_recover_locked(kw_p11_module *mod)
{
    struct timespec now;
    size_t busy = 0;
    CK_RV rv;

    if (mod->pid != current_pid())
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!mod->want_reinit && (mod->reinit.tv_sec != 0 || mod->reinit.tv_nsec != 0) &&
        (now.tv_sec - mod->reinit.tv_sec) * 1000000000L + (now.tv_nsec - mod->reinit.tv_nsec) <
            KW_P11_RECOVER_MS * 1000000L) {
        KW_TRACE("p11", "recovery of %s skipped: last try less than %d ms ago", mod->path,
                 KW_P11_RECOVER_MS);
        return 0;
    }
    for (size_t i = 0; i < mod->ntokens; i++)
        pthread_mutex_lock(&mod->tokens[i]->lock);
    /* Every session handed out counts, a stale one too: its holder may be inside a call. */
    for (size_t i = 0; i < mod->ntokens; i++)
        busy += mod->tokens[i]->nbusy;
    if (busy == 0) {
        mod->reinit = now;
        KW_DEBUG("p11", "re-initialising %s to recover a lost token", mod->path);
        for (size_t i = 0; i < mod->ntokens; i++) {
            kw_p11_token *tok = mod->tokens[i];
            for (size_t j = 0; j < tok->nidle; j++)
                (void)KW_P11_CALL(mod, C_CloseSession, tok->idle[j]);
            token_reset_locked(tok);
            /* The mechanism list is asked again: the token may have come back different. */
            free(tok->mechs);
            free(tok->mech_flags);
            tok->mechs = NULL;
            tok->mech_flags = NULL;
            tok->nmechs = 0;
        }
        if (mod->initialized)
            (void)KW_P11_CALL(mod, C_Finalize, NULL);
        rv = module_initialize(mod);
        mod->initialized = rv == CKR_OK;
        epoch_bump(mod);
        gen_bump(mod);
    }
    for (size_t i = mod->ntokens; i > 0; i--)
        pthread_mutex_unlock(&mod->tokens[i - 1]->lock);
    if (busy != 0)
        KW_DEBUG("p11", "recovery of %s waits: %zu sessions in use", mod->path, busy);
    return busy == 0 && mod->initialized;
}

/* Is there a token we have seen before, now absent, that the URI names? */
static int lost_token_wanted_locked(kw_p11_module *mod, P11KitUri *uri)
{
    for (size_t i = 0; i < mod->ntokens; i++) {
        kw_p11_token *tok = mod->tokens[i];
        if (tok->present)
            continue;
        if (uri == NULL || p11_kit_uri_match_token_info(uri, &tok->info))
            return 1;
    }
    return 0;
}

static int token_matches(kw_p11_module *mod, kw_p11_token *tok, P11KitUri *uri, CK_SLOT_ID want)
{
    CK_SLOT_INFO sinfo;

    if (!tok->present)
        return 0;
    if (uri == NULL)
        return 1;
    if (!p11_kit_uri_match_token_info(uri, &tok->info))
        return 0;
    if (want != (CK_SLOT_ID)-1 && want != tok->slot)
        return 0;
    if (KW_P11_CALL(mod, C_GetSlotInfo, tok->slot, &sinfo) == CKR_OK &&
        !p11_kit_uri_match_slot_info(uri, &sinfo))
        return 0;
    return 1;
}

kw_err kw_p11_find_tokens(kw_p11_module *mod, P11KitUri *uri, kw_p11_token ***out, size_t *n)
{
    CK_INFO minfo;
    CK_SLOT_ID want_slot = (CK_SLOT_ID)-1;
    kw_err e;

    *out = NULL;
    *n = 0;
    if ((e = kw_p11_module_check(mod)) != KW_OK)
        return e;
    if (uri != NULL)
        want_slot = p11_kit_uri_get_slot_id(uri);

    pthread_mutex_lock(&mod->lock);
    e = mod->initialized ? refresh_tokens_locked(mod)
                         : kw_err_set(KW_ERR_TOKEN_GONE,
                                      "PKCS#11 module %s is not initialised (re-initialising it "
                                      "failed; it is tried again on use)",
                                      mod->path);
    if (e != KW_OK || mod->want_reinit || lost_token_wanted_locked(mod, uri)) {
        int found = 0;
        for (size_t i = 0; e == KW_OK && !mod->want_reinit && i < mod->ntokens; i++)
            found |= token_matches(mod, mod->tokens[i], uri, want_slot);
        if (!found && module_recover_locked(mod)) {
            mod->want_reinit = 0;
            kw_err_clear();
            e = refresh_tokens_locked(mod);
        }
    }
    if (e == KW_OK && uri != NULL && KW_P11_CALL(mod, C_GetInfo, &minfo) == CKR_OK &&
        !p11_kit_uri_match_module_info(uri, &minfo)) {
        pthread_mutex_unlock(&mod->lock);
        return KW_OK;
    }
    if (e == KW_OK && mod->ntokens > 0) {
        *out = calloc(mod->ntokens, sizeof(**out));
        if (*out == NULL)
            e = kw_err_set(KW_ERR_MEMORY, "out of memory");
    }
    for (size_t i = 0; e == KW_OK && i < mod->ntokens; i++) {
        if (token_matches(mod, mod->tokens[i], uri, want_slot))
            (*out)[(*n)++] = mod->tokens[i];
    }
    pthread_mutex_unlock(&mod->lock);
    if (e != KW_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return e;
}

int kw_p11_token_has_mech(kw_p11_token *tok, CK_MECHANISM_TYPE m, CK_FLAGS need)
{
    kw_p11_module *mod = tok->mod;
    int found = 0;

    /* A forked child must initialise the module before it may ask anything. */
    if (kw_p11_module_check(mod) != KW_OK)
        return 0;
    pthread_mutex_lock(&mod->lock);
    int usable = mod->initialized;
    pthread_mutex_unlock(&mod->lock);
    pthread_mutex_lock(&tok->lock);
    usable &= tok->present;
    pthread_mutex_unlock(&tok->lock);
    if (!usable) {
        /* A lost token or module: this may be the first call after it came back, so try to
         * recover here too (rate limited), else nothing would ever ask again. */
        kw_p11_token **toks = NULL;
        size_t n = 0;
        if (kw_p11_find_tokens(mod, NULL, &toks, &n) != KW_OK)
            kw_err_clear();
        free(toks);
    }
    pthread_mutex_lock(&tok->lock);
    /* The list is fetched once per token (this is asked on every signature); a failure is not
     * cached, and is retried briefly since SoftHSM2 fails now and then under concurrent
     * logins. Each mechanism's flags are asked the first time that mechanism is: a token lists
     * 70 or more, a process uses two or three, and over a network each call is a round trip. */
    for (int attempt = 0; tok->mechs == NULL && attempt < (tok->present ? 3 : 1); attempt++) {
        CK_ULONG cnt = 0;
        if (attempt > 0)
            nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        if (KW_P11_CALL(mod, C_GetMechanismList, tok->slot, NULL, &cnt) != CKR_OK || cnt == 0)
            continue;
        /* Twice the room: p11-kit 0.24's RPC client, dropping mechanisms it cannot carry,
         * moves the list with a length one entry too long and reads past its end (ASan). */
        tok->mechs = calloc(2 * cnt, sizeof(*tok->mechs));
        tok->mech_flags = calloc(cnt, sizeof(*tok->mech_flags));
        if (tok->mechs != NULL && tok->mech_flags != NULL &&
            KW_P11_CALL(mod, C_GetMechanismList, tok->slot, tok->mechs, &cnt) == CKR_OK) {
            tok->nmechs = cnt;
            for (CK_ULONG i = 0; i < cnt; i++)
                tok->mech_flags[i] = KW_MECH_FLAGS_UNKNOWN;
        } else {
            free(tok->mechs);
            free(tok->mech_flags);
            tok->mechs = NULL;
            tok->mech_flags = NULL;
        }
    }
    for (CK_ULONG i = 0; i < tok->nmechs; i++)
        if (tok->mechs[i] == m) {
            if (tok->mech_flags[i] == KW_MECH_FLAGS_UNKNOWN) {
                CK_MECHANISM_INFO mi;
                /* A failed answer counts as "no flags": the mechanism is not used. */
                tok->mech_flags[i] =
                    KW_P11_CALL(mod, C_GetMechanismInfo, tok->slot, m, &mi) == CKR_OK ? mi.flags
                                                                                      : 0;
            }
            found = (tok->mech_flags[i] & need) == need;
            break;
        }
    pthread_mutex_unlock(&tok->lock);
    return found;
}
