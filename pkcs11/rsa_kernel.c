/* SPDX-License-Identifier: Apache-2.0 */
/* RSA private operations inside the kernel, always through the raw operation (enc=raw), blinded.
 *
 * Blinding: the kernel's RSA (mpi_powm) is not constant-time and does no blinding. We send
 * x * r^e mod n for a random r and multiply the result by r^-1: the kernel then exponentiates a
 * value the caller neither chose nor sees, so timing that depends on the base no longer
 * correlates with attacker-chosen input (the classic remote timing attacks on RSA need that
 * correlation). PKCS#1 v1.5 signatures take the same path (the padded block is built in user
 * space): the kernel's enc=pkcs1 would exponentiate a block the caller chose, unblinded.
 *
 * The pairs (r^e, r^-1) are libcrypto's BN_BLINDING, one per key (modulus) and process,
 * refreshed as libcrypto refreshes its own: squared after each use, and replaced by a fresh
 * random pair every BN_BLINDING_COUNTER uses. A child after fork never reuses its parent's. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

#define BLIND_SLOTS 32
typedef struct {
    BIGNUM *n; /* the modulus the blinding belongs to */
    pid_t pid;
    unsigned long last_use;
    int refs; /* operations between convert and invert */
    BN_BLINDING *b;
} blind_slot;
static blind_slot slots[BLIND_SLOTS];
static unsigned long use_clock;
/* Guards the table and every BN_BLINDING in it (held only for the modular arithmetic, never
 * across the kernel call); init.c holds it across fork so a child finds it consistent. */
pthread_mutex_t kwk_blind_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    blind_slot *slot; /* NULL: a one-off blinding owned by this state */
    BN_BLINDING *own;
    BIGNUM *rinv; /* r^-1 for this operation (the slot's pair moves on) */
} unblind_state;

static void slot_clear(blind_slot *s)
{
    BN_BLINDING_free(s->b);
    BN_free(s->n);
    memset(s, 0, sizeof(*s));
}

void kwk_blind_free_all(void)
{
    pthread_mutex_lock(&kwk_blind_lock);
    for (int i = 0; i < BLIND_SLOTS; i++)
        slot_clear(&slots[i]);
    pthread_mutex_unlock(&kwk_blind_lock);
}

/* A slot for modulus n (kwk_blind_lock held): this process's, or a free or least recently used
 * idle one, made fresh. NULL when every slot is in use. */
static blind_slot *slot_for(const BIGNUM *n, const BIGNUM *e, BN_CTX *ctx)
{
    pid_t pid = getpid();
    blind_slot *victim = NULL;
    for (int i = 0; i < BLIND_SLOTS; i++) {
        blind_slot *s = &slots[i];
        if (s->b && s->pid == pid && BN_cmp(s->n, n) == 0)
            return s;
        /* Another process's slot (inherited across fork): its users are not in this process,
         * and its random state must not be reused here. */
        if (s->b && s->pid != pid)
            slot_clear(s);
        /* Replace a free slot first, else the least recently used idle one. */
        if (s->refs == 0 && (victim == NULL || (victim->b != NULL &&
                                                (s->b == NULL || s->last_use < victim->last_use))))
            victim = s;
    }
    if (victim == NULL)
        return NULL;
    slot_clear(victim);
    victim->n = BN_dup(n);
    victim->b = BN_BLINDING_create_param(NULL, e, victim->n, ctx, NULL, NULL);
    if (victim->n == NULL || victim->b == NULL) {
        slot_clear(victim);
        return NULL;
    }
    victim->pid = pid;
    return victim;
}

CK_RV kwk_blind(EVP_PKEY *pub, const unsigned char *in, size_t klen, unsigned char *blinded,
                void **state)
{
    BIGNUM *n = NULL, *e = NULL, *x = NULL;
    BN_CTX *ctx = BN_CTX_new_ex(kwk_libctx());
    unblind_state *st = OPENSSL_zalloc(sizeof(*st));
    CK_RV rv = CKR_FUNCTION_FAILED;
    *state = NULL;
    ERR_set_mark();
    if (ctx == NULL || st == NULL || (st->rinv = BN_new()) == NULL ||
        !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) ||
        (x = BN_bin2bn(in, (int)klen, NULL)) == NULL)
        goto end;
    pthread_mutex_lock(&kwk_blind_lock);
    blind_slot *s = slot_for(n, e, ctx);
    BN_BLINDING *b = s ? s->b : NULL;
    if (s) {
        s->refs++;
        s->last_use = ++use_clock;
    } else { /* every slot busy: a blinding for this operation alone */
        b = st->own = BN_BLINDING_create_param(NULL, e, n, ctx, NULL, NULL);
    }
    /* x * r^e mod n; r^-1 copied out, the pair then moves on (libcrypto's update). */
    int ok = b != NULL && BN_BLINDING_convert_ex(x, st->rinv, b, ctx);
    pthread_mutex_unlock(&kwk_blind_lock);
    st->slot = s;
    if (ok && BN_bn2binpad(x, blinded, (int)klen) == (int)klen) {
        *state = st;
        st = NULL;
        rv = CKR_OK;
    }
end:
    if (st != NULL)
        kwk_unblind(pub, st, NULL, klen, NULL);
    ERR_pop_to_mark();
    BN_clear_free(x);
    BN_free(n);
    BN_free(e);
    BN_CTX_free(ctx);
    return rv;
}

/* y * r^-1 mod n into out; frees the state (in == NULL: only that). */
CK_RV kwk_unblind(EVP_PKEY *pub, void *state, const unsigned char *in, size_t klen,
                  unsigned char *out)
{
    unblind_state *st = state;
    BIGNUM *y = NULL;
    BN_CTX *ctx = BN_CTX_new_ex(kwk_libctx());
    CK_RV rv = CKR_FUNCTION_FAILED;
    (void)pub;
    if (st == NULL) {
        BN_CTX_free(ctx);
        return rv;
    }
    ERR_set_mark();
    if (in != NULL && ctx != NULL && (y = BN_bin2bn(in, (int)klen, NULL)) != NULL) {
        pthread_mutex_lock(&kwk_blind_lock);
        BN_BLINDING *b = st->slot ? st->slot->b : st->own;
        int ok = b != NULL && BN_BLINDING_invert_ex(y, st->rinv, b, ctx);
        pthread_mutex_unlock(&kwk_blind_lock);
        if (ok && BN_bn2binpad(y, out, (int)klen) == (int)klen)
            rv = CKR_OK;
    }
    ERR_pop_to_mark();
    pthread_mutex_lock(&kwk_blind_lock);
    if (st->slot)
        st->slot->refs--;
    pthread_mutex_unlock(&kwk_blind_lock);
    BN_BLINDING_free(st->own);
    BN_clear_free(st->rinv);
    OPENSSL_free(st);
    BN_clear_free(y);
    BN_CTX_free(ctx);
    return rv;
}

CK_RV kwk_kernel_rsa_raw(const kwk_key *k, const unsigned char *in, unsigned char *out)
{
    unsigned char blinded[KWK_MAX_RSA_BYTES], res[KWK_MAX_RSA_BYTES];
    void *st = NULL;
    CK_RV rv = kwk_blind(k->pub, in, k->klen, blinded, &st);
    /* Says where the private operation ran (tests check it in the debug log). */
    KW_TRACE(KWK_COMP, "RSA private operation in the kernel: key %d, enc=raw, blinded",
             (int)k->serial);
    if (rv == CKR_OK)
        rv = kwk_kr_pkey_decrypt(k->serial, "enc=raw", blinded, k->klen, res, k->klen);
    if (rv == CKR_OK)
        rv = kwk_unblind(k->pub, st, res, k->klen, out);
    else if (st)
        kwk_unblind(k->pub, st, NULL, k->klen, NULL); /* frees the state */
    kw_wipe(blinded, sizeof(blinded));
    kw_wipe(res, sizeof(res));
    return rv;
}
