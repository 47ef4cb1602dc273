/* SPDX-License-Identifier: Apache-2.0 */
/* A token's mechanism cache: the list asked once per token, each mechanism's flags asked the
 * first time that mechanism is. */
#include <stdlib.h>
#include <time.h>

#include "kw_p11_int.h"

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
    usable &= kw_p11_token_present(tok);
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
    for (int attempt = 0;
         tok->mechs == NULL &&
         attempt < (kw_p11_token_present(tok) ? kw_p11_retry_tries(KW_P11_RETRY_MECH_LIST) : 1);
         attempt++) {
        CK_ULONG cnt = 0;
        kw_p11_retry_wait(KW_P11_RETRY_MECH_LIST, attempt);
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
