/* SPDX-License-Identifier: Apache-2.0 */
/* The module's global state: the lock, whether it is initialised, and the configured tokens.
 * Everything else reaches the tokens through these accessors. */
#include <pthread.h>
#include <string.h>

#include "kwk.h"

pthread_mutex_t kwk_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static kwk_token tokens[KWK_MAX_TOKENS];
static size_t ntokens;

int kwk_initialized(void)
{
    return initialized;
}

kwk_token *kwk_token_by_slot(CK_SLOT_ID slot)
{
    return slot < ntokens ? &tokens[slot] : NULL;
}

size_t kwk_token_count(void)
{
    return ntokens;
}

kwk_token *kwk_token_at(size_t i)
{
    return i < ntokens ? &tokens[i] : NULL;
}

const char *kwk_mode_name(kwk_mode m)
{
    return m == KWK_MODE_KERNEL ? "kernel" : m == KWK_MODE_SOFTWARE ? "software" : "unknown";
}

/* With kwk_lock held: read the configuration into a fresh token table. */
CK_RV kwk_state_load(void)
{
    CK_RV rv;

    memset(tokens, 0, sizeof(tokens));
    ntokens = 0;
    rv = kwk_config_load(tokens, KWK_MAX_TOKENS, &ntokens);
    if (rv == CKR_OK)
        for (size_t i = 0; i < ntokens; i++)
            tokens[i].slot = i;
    return rv;
}

/* With kwk_lock held. */
void kwk_state_set_initialized(int on)
{
    initialized = on;
    if (!on)
        ntokens = 0;
}
