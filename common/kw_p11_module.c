/* SPDX-License-Identifier: Apache-2.0 */
/* Module loading through p11-kit: the registry's entries (one per path, reference counted),
 * C_Initialize, and the shutdown at exit or last release. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "kw_log.h"
#include "kw_p11_int.h"

#ifndef KW_P11_PROXY_PATH
#define KW_P11_PROXY_PATH "p11-kit-proxy.so"
#endif

static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

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
        kw_p11_pool_close_idle(mod->tokens[i]);
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
    pthread_mutex_lock(&kw_p11_registry_lock);
    for (kw_p11_module *mod = kw_p11_registry; mod != NULL; mod = mod->next)
        module_shutdown(mod);
    pthread_mutex_unlock(&kw_p11_registry_lock);
}

static void register_atexit(void)
{
    atexit(kw_p11_atexit);
    kw_p11_fork_watch();
}

CK_RV kw_p11_module_initialize_raw(kw_p11_module *mod)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    /* The module may create its own threads and must use OS locking: we call it from many. */
    args.flags = CKF_OS_LOCKING_OK;
    return KW_P11_CALL(mod, C_Initialize, &args);
}

CK_RV kw_p11_module_initialize(kw_p11_module *mod)
{
    CK_RV rv = kw_p11_module_initialize_raw(mod);
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
    pthread_mutex_lock(&kw_p11_registry_lock);
    for (mod = kw_p11_registry; mod != NULL; mod = mod->next) {
        if (strcmp(mod->path, path) == 0) {
            mod->refs++;
            pthread_mutex_unlock(&kw_p11_registry_lock);
            return mod;
        }
    }
    mod = calloc(1, sizeof(*mod));
    if (mod == NULL || (mod->path = strdup(path)) == NULL) {
        free(mod);
        pthread_mutex_unlock(&kw_p11_registry_lock);
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
        pthread_mutex_unlock(&kw_p11_registry_lock);
        return NULL;
    }
    pthread_mutex_init(&mod->lock, NULL);
    mod->guard_sigpipe = strstr(path, "p11-kit-client") != NULL || mod->dl != NULL;
    rv = kw_p11_module_initialize(mod);
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
        pthread_mutex_unlock(&kw_p11_registry_lock);
        return NULL;
    }
    mod->pid = getpid();
    mod->initialized = 1;
    mod->epoch = 1;
    mod->refs = 1;
    mod->next = kw_p11_registry;
    kw_p11_registry = mod;
    pthread_mutex_unlock(&kw_p11_registry_lock);
    pthread_once(&atexit_once, register_atexit);
    KW_DEBUG("p11", "loaded module %s", path);
    return mod;
}

void kw_p11_module_put(kw_p11_module *mod)
{
    kw_p11_module **pp;

    if (mod == NULL)
        return;
    pthread_mutex_lock(&kw_p11_registry_lock);
    if (--mod->refs > 0) {
        pthread_mutex_unlock(&kw_p11_registry_lock);
        return;
    }
    for (pp = &kw_p11_registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == mod) {
            *pp = mod->next;
            break;
        }
    }
    pthread_mutex_unlock(&kw_p11_registry_lock);

    module_shutdown(mod);
    for (size_t i = 0; i < mod->ntokens; i++)
        kw_p11_token_free(mod->tokens[i]);
    free(mod->tokens);
    pthread_mutex_destroy(&mod->lock);
    free(mod->path);
    free(mod);
}

const char *kw_p11_module_path(kw_p11_module *mod)
{
    return mod->path;
}

/* Lock-free: callers check it on every operation while holding their own key lock, which
 * must not wait behind a fork handler holding mod->lock. */
unsigned kw_p11_module_epoch(kw_p11_module *mod)
{
    return __atomic_load_n(&mod->epoch, __ATOMIC_ACQUIRE);
}
