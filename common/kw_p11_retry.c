/* SPDX-License-Identifier: Apache-2.0 */
/* Every retry of the PKCS#11 call layer and the provider, in one table: what is tried again,
 * how many times, and the wait before each new try. Tokens that fail now and then (SoftHSM2
 * rewrites its state file on every login, and a sibling process can read it half-written) get
 * a few quick tries; a token that stays away fails within a second. */
#include <time.h>

#include "kw_p11.h"

static const struct {
    int tries;
    long wait_ms; /* before try n (n >= 1): wait_ms * step(n) */
    int step;     /* 0: constant; 1: linear, capped at cap; 2: doubling */
    int cap;
} policy[KW_P11_RETRY_N] = {
    /* SoftHSM2 answers CKR_GENERAL_ERROR now and then under concurrent logins */
    [KW_P11_RETRY_TOKEN_INFO] = {3, 20, 0, 0},
    [KW_P11_RETRY_MECH_LIST] = {3, 20, 0, 0},
    /* siblings forked at once rewrite the token file in turn: about a second in all */
    [KW_P11_RETRY_FORK_INIT] = {10, 30, 1, 5},
    /* 40, 80, 160, 320 ms: a token that stays away fails in about 0.6 s */
    [KW_P11_RETRY_PRIVATE_OP] = {5, 20, 2, 0},
    /* once more, at once: the listing finds the token again by label and serial */
    [KW_P11_RETRY_STORE_LIST] = {2, 0, 0, 0},
};

int kw_p11_retry_tries(kw_p11_retry_kind kind)
{
    return policy[kind].tries;
}

void kw_p11_retry_wait(kw_p11_retry_kind kind, int attempt)
{
    long ms = policy[kind].wait_ms;

    if (attempt <= 0 || ms == 0)
        return;
    if (policy[kind].step == 1)
        ms *= attempt < policy[kind].cap ? attempt : policy[kind].cap;
    else if (policy[kind].step == 2)
        ms <<= attempt;
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000 * 1000}, NULL);
}
