/* SPDX-License-Identifier: Apache-2.0 */
/* Starting a module afresh: in a forked child, before its first use (kw_p11_module_check), and
 * when a token we knew stays away or the module stops answering (at a token search,
 * kw_p11_find_tokens). */
#include <stdlib.h>
#include <time.h>

#include "kw_log.h"
#include "kw_p11_int.h"

#define KW_P11_RECOVER_MS 200

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

        if (!tok->present || !kw_p11_pool_has_pin(&tok->pool))
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
            kw_p11_pool_reset(&mod->tokens[i]->pool);
            pthread_mutex_unlock(&mod->tokens[i]->lock);
        }
        mod->pid = me;
        /* SoftHSM2 rewrites its token file on every login; a sibling process that initialises
         * meanwhile can read it half-written and then sees no token (or an uninitialised one)
         * for good. Initialise again, briefly, until the tokens we had are back: up to ten
         * times over about a second, as many siblings forked at once (a server's children
         * under load) log in and rewrite it in turn. */
        for (int attempt = 0; attempt < kw_p11_retry_tries(KW_P11_RETRY_FORK_INIT); attempt++) {
            if (attempt > 0) {
                KW_DEBUG("p11", "after fork a token is missing from %s: initialising again",
                         mod->path);
                (void)KW_P11_CALL(mod, C_Finalize, NULL);
                kw_p11_retry_wait(KW_P11_RETRY_FORK_INIT, attempt);
            }
            rv = kw_p11_module_initialize_raw(mod);
            if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                /* The module kept its parent's state (SoftHSM2 without reset_on_fork,
                 * tpm2-pkcs11). It is this process's copy: finalise it and start afresh. */
                KW_DEBUG("p11",
                         "%s kept its parent's state across fork: finalising this "
                         "process's copy and initialising again",
                         mod->path);
                (void)KW_P11_CALL(mod, C_Finalize, NULL);
                rv = kw_p11_module_initialize(mod);
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
            if (kw_p11_tokens_refresh_locked(mod) != KW_OK)
                kw_err_clear();
            else if (kw_p11_tokens_back_locked(mod, was, n))
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
        busy += kw_p11_pool_nbusy(&mod->tokens[i]->pool);
    if (busy == 0) {
        mod->reinit = now;
        KW_DEBUG("p11", "re-initialising %s to recover a lost token", mod->path);
        for (size_t i = 0; i < mod->ntokens; i++) {
            kw_p11_token *tok = mod->tokens[i];
            kw_p11_pool_close_idle(tok);
            kw_p11_pool_reset(&tok->pool);
            /* The mechanism list is asked again: the token may have come back different. */
            free(tok->mechs);
            free(tok->mech_flags);
            tok->mechs = NULL;
            tok->mech_flags = NULL;
            tok->nmechs = 0;
        }
        if (mod->initialized)
            (void)KW_P11_CALL(mod, C_Finalize, NULL);
        rv = kw_p11_module_initialize(mod);
        mod->initialized = rv == CKR_OK;
        epoch_bump(mod);
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
    e = mod->initialized ? kw_p11_tokens_refresh_locked(mod)
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
            e = kw_p11_tokens_refresh_locked(mod);
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
