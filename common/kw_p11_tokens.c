/* SPDX-License-Identifier: Apache-2.0 */
/* The token list of a module: discovery (slot list, token info, tokens that come back in
 * another slot), a token's loss and the reset of its session pool, and token memory. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kw_log.h"
#include "kw_p11_int.h"
#include "kw_secmem.h"

void kw_p11_token_free(kw_p11_token *tok)
{
    kw_p11_pool_free(&tok->pool);
    free(tok->mechs);
    free(tok->mech_flags);
    pthread_mutex_destroy(&tok->lock);
    free(tok);
}

const CK_TOKEN_INFO *kw_p11_token_info(const kw_p11_token *tok)
{
    return &tok->info;
}

kw_p11_module *kw_p11_token_module(const kw_p11_token *tok)
{
    return tok->mod;
}

unsigned kw_p11_token_gen(const kw_p11_token *tok)
{
    return __atomic_load_n(&tok->pool.gen, __ATOMIC_ACQUIRE);
}

int kw_p11_token_present(const kw_p11_token *tok)
{
    return __atomic_load_n(&tok->present, __ATOMIC_ACQUIRE);
}

int kw_p11_token_login_required(const kw_p11_token *tok)
{
    return (tok->info.flags & CKF_LOGIN_REQUIRED) != 0;
}

void kw_p11_token_set_present(kw_p11_token *tok, int present)
{
    __atomic_store_n(&tok->present, present, __ATOMIC_RELEASE);
}

/* Are all tokens that were present before still there (same label and serial)? */
int kw_p11_tokens_back_locked(kw_p11_module *mod, const int *was, size_t n)
{
    for (size_t i = 0; i < n && i < mod->ntokens; i++)
        if (was[i] && !mod->tokens[i]->present)
            return 0;
    return 1;
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
    kw_p11_token_set_present(tok, 0);
    pthread_mutex_unlock(&mod->lock);
    pthread_mutex_lock(&tok->lock);
    /* Sessions of a removed token are invalid; closing them is harmless if they are not. */
    kw_p11_pool_close_idle(tok);
    kw_p11_pool_reset(&tok->pool);
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
    if (!kw_p11_pool_init(&tok->pool, info)) {
        kw_p11_token_free(tok);
        return NULL;
    }
    kw_p11_token_set_present(tok, 1);
    return tok;
}
/* SoftHSM2 answers CKR_GENERAL_ERROR now and then while other processes log in to the same
 * token; a token is only taken for gone when it keeps failing. */
static CK_RV get_token_info(kw_p11_module *mod, CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    CK_RV rv = CKR_OK;

    for (int i = 0; i < kw_p11_retry_tries(KW_P11_RETRY_TOKEN_INFO); i++) {
        rv = KW_P11_CALL(mod, C_GetTokenInfo, slot, info);
        if (rv != CKR_GENERAL_ERROR && rv != CKR_DEVICE_ERROR && rv != CKR_FUNCTION_FAILED)
            break;
        kw_p11_retry_wait(KW_P11_RETRY_TOKEN_INFO, i + 1);
    }
    return rv;
}

/* Refresh the slot list; called with mod->lock held. */
kw_err kw_p11_tokens_refresh_locked(kw_p11_module *mod)
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
        kw_p11_token_set_present(mod->tokens[i], 0);
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
                kw_p11_pool_reset(&tok->pool);
            }
            tok->info = info;
            kw_p11_token_set_present(tok, 1);
            pthread_mutex_unlock(&tok->lock);
            continue;
        }
        tok = token_new(mod, slots[i], &info);
        kw_p11_token **nt = realloc(mod->tokens, (mod->ntokens + 1) * sizeof(*nt));
        if (tok == NULL || nt == NULL) {
            if (tok != NULL)
                kw_p11_token_free(tok);
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
            kw_p11_pool_reset(&tok->pool);
            pthread_mutex_unlock(&tok->lock);
        }
    }
    free(was);
    free(slots);
    return KW_OK;
}
