/* SPDX-License-Identifier: Apache-2.0 */
/* This process's modules and its pid, kept right across fork: the registry of loaded modules
 * and its lock (the fork handlers take every lock of the layer, starting with it), the cached
 * pid, and the fork handlers. The child re-initialises a module on first use
 * (kw_p11_module_check, kw_p11_recover.c). */
#include <pthread.h>
#include <unistd.h>

#include "kw_p11_int.h"

pthread_mutex_t kw_p11_registry_lock = PTHREAD_MUTEX_INITIALIZER;
kw_p11_module *kw_p11_registry;

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
    pthread_mutex_lock(&kw_p11_registry_lock);
    for (kw_p11_module *mod = kw_p11_registry; mod != NULL; mod = mod->next) {
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
    for (kw_p11_module *mod = kw_p11_registry; mod != NULL; mod = mod->next) {
        if (in_child)
            epoch_bump(mod); /* the parent's sessions are not the child's to close */
        for (size_t i = mod->ntokens; i > 0; i--) {
            kw_p11_token *tok = mod->tokens[i - 1];
            if (in_child)
                kw_p11_pool_after_fork(&tok->pool);
            pthread_mutex_unlock(&tok->lock);
        }
        pthread_mutex_unlock(&mod->lock);
    }
    pthread_mutex_unlock(&kw_p11_registry_lock);
}

static void fork_parent(void)
{
    fork_release(0);
}

/* See current_pid (kw_p11_int.h). */
pid_t kw_p11_self_pid;

static void fork_child(void)
{
    __atomic_store_n(&kw_p11_self_pid, getpid(), __ATOMIC_RELEASE);
    fork_release(1);
}

void kw_p11_fork_watch(void)
{
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) == 0)
        __atomic_store_n(&kw_p11_self_pid, getpid(), __ATOMIC_RELEASE);
}
