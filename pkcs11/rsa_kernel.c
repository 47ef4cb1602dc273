/* SPDX-License-Identifier: Apache-2.0 */
/* RSA private operations inside the kernel.
 *
 * Blinding: the kernel's RSA (mpi_powm) is not constant-time and does no blinding. For the raw
 * operation we send x * r^e mod n for a fresh random r and multiply the result by r^-1: the
 * kernel then exponentiates a value the caller neither chose nor sees, so timing that depends on
 * the base no longer correlates with attacker-chosen input (the classic remote timing attacks on
 * RSA decryption need that correlation). What stays: timing that depends on the exponent alone,
 * which is the same for every call. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

typedef struct {
    BIGNUM *rinv;
} unblind_state;

/* Blinding pairs (u = r^e, rinv = r^-1) per key, refreshed by squaring as libcrypto does: a
 * fresh pair costs a modular inversion (about half an RSA-2048 private operation), a squared one
 * two multiplications. A pair is used at most BLIND_USES times and never across fork. */
#define BLIND_SLOTS 32
#define BLIND_USES  32
typedef struct {
    BIGNUM *n; /* the modulus the pair belongs to */
    pid_t pid;
    int uses;
    BIGNUM *u, *rinv;
} blind_pair;
static blind_pair pairs[BLIND_SLOTS];
static pthread_mutex_t pairs_lock = PTHREAD_MUTEX_INITIALIZER;

static int fresh_pair(const BIGNUM *n, const BIGNUM *e, BN_CTX *ctx, BIGNUM *u, BIGNUM *rinv)
{
    /* r^-1 without a constant-time inversion: invert r*s for a second random s with the fast
     * Euclid, then multiply by s; the inversion only sees r*s, which says nothing about r.
     * A non-invertible value would reveal a factor of n (astronomically unlikely): retry. */
    BIGNUM *r = BN_new(), *s = BN_new(), *rs = BN_new(), *inv = NULL;
    int ok = 0;
    for (int i = 0; r && s && rs && i < 8 && !ok; i++) {
        if (!BN_priv_rand_range_ex(r, n, 0, ctx) || !BN_priv_rand_range_ex(s, n, 0, ctx))
            break;
        if (BN_is_zero(r) || BN_is_zero(s) || !BN_mod_mul(rs, r, s, n, ctx))
            continue;
        inv = BN_mod_inverse(NULL, rs, n, ctx);
        ok = inv && BN_mod_mul(rinv, inv, s, n, ctx) && BN_mod_exp(u, r, e, n, ctx);
        BN_clear_free(inv);
    }
    BN_clear_free(r);
    BN_clear_free(s);
    BN_clear_free(rs);
    return ok;
}

/* Next pair for this key into u/rinv (fresh or squared). */
static int next_pair(const BIGNUM *n, const BIGNUM *e, BN_CTX *ctx, BIGNUM *u, BIGNUM *rinv)
{
    pid_t pid = getpid();
    int ok = 0;
    pthread_mutex_lock(&pairs_lock);
    blind_pair *p = NULL, *victim = &pairs[0];
    for (int i = 0; i < BLIND_SLOTS; i++) {
        if (pairs[i].n && pairs[i].pid == pid && BN_cmp(pairs[i].n, n) == 0)
            p = &pairs[i];
        if (pairs[i].uses > victim->uses || pairs[i].n == NULL)
            victim = &pairs[i];
    }
    if (p && p->uses < BLIND_USES && BN_mod_sqr(p->u, p->u, n, ctx) &&
        BN_mod_sqr(p->rinv, p->rinv, n, ctx) && BN_copy(u, p->u) && BN_copy(rinv, p->rinv)) {
        p->uses++;
        ok = 1;
    }
    pthread_mutex_unlock(&pairs_lock);
    if (ok)
        return 1;
    /* The inversion happens outside the lock; the new pair then replaces an old one. */
    if (!fresh_pair(n, e, ctx, u, rinv))
        return 0;
    pthread_mutex_lock(&pairs_lock);
    if (p == NULL)
        p = victim;
    if (p->u == NULL) {
        p->u = BN_new();
        p->rinv = BN_new();
        p->n = BN_new();
    }
    if (p->u && p->rinv && p->n && BN_copy(p->u, u) && BN_copy(p->rinv, rinv) && BN_copy(p->n, n)) {
        p->pid = pid;
        p->uses = 1;
    } else {
        BN_free(p->n);
        p->n = NULL;
    }
    pthread_mutex_unlock(&pairs_lock);
    return 1;
}

CK_RV kwk_blind(EVP_PKEY *pub, const unsigned char *in, size_t klen, unsigned char *blinded,
                void **state)
{
    BIGNUM *n0 = NULL, *n = BN_new(), *e = NULL, *u = BN_new(), *rinv = BN_new(), *x = NULL;
    BN_CTX *ctx = BN_CTX_new_ex(kwk_libctx());
    CK_RV rv = CKR_FUNCTION_FAILED;
    *state = NULL;
    /* BN_copy drops the constant-time flag libcrypto puts on n: only public and masked values
     * meet n here, and the flag costs more than the RSA operation. */
    if (n == NULL || u == NULL || rinv == NULL || ctx == NULL ||
        !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n0) || !BN_copy(n, n0) ||
        !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) ||
        (x = BN_bin2bn(in, (int)klen, NULL)) == NULL)
        goto end;
    if (!next_pair(n, e, ctx, u, rinv))
        goto end;
    /* x * r^e mod n */
    if (!BN_mod_mul(x, x, u, n, ctx) || BN_bn2binpad(x, blinded, (int)klen) != (int)klen)
        goto end;
    unblind_state *st = OPENSSL_zalloc(sizeof(*st));
    if (st == NULL)
        goto end;
    st->rinv = rinv;
    rinv = NULL;
    *state = st;
    rv = CKR_OK;
end:
    BN_clear_free(rinv);
    BN_clear_free(u);
    BN_clear_free(x);
    BN_free(n0);
    BN_free(n);
    BN_free(e);
    BN_CTX_free(ctx);
    return rv;
}

CK_RV kwk_unblind(EVP_PKEY *pub, void *state, const unsigned char *in, size_t klen,
                  unsigned char *out)
{
    unblind_state *st = state;
    BIGNUM *n = NULL, *y = NULL;
    BN_CTX *ctx = BN_CTX_new_ex(kwk_libctx());
    CK_RV rv = CKR_FUNCTION_FAILED;
    if (st != NULL && ctx != NULL && EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) &&
        (y = BN_bin2bn(in, (int)klen, NULL)) != NULL && BN_mod_mul(y, y, st->rinv, n, ctx) &&
        BN_bn2binpad(y, out, (int)klen) == (int)klen)
        rv = CKR_OK;
    if (st) {
        BN_clear_free(st->rinv);
        OPENSSL_free(st);
    }
    BN_clear_free(y);
    BN_free(n);
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
        kwk_unblind(k->pub, st, blinded, k->klen, res); /* frees the state */
    kw_wipe(blinded, sizeof(blinded));
    kw_wipe(res, sizeof(res));
    return rv;
}

CK_RV kwk_kernel_rsa_pkcs1(const kwk_key *k, const unsigned char *di, size_t dilen,
                           unsigned char *out)
{
    /* enc=pkcs1 without hash=: the kernel pads the DigestInfo we give it (any hash). */
    KW_TRACE(KWK_COMP, "RSA private operation in the kernel: key %d, enc=pkcs1", (int)k->serial);
    return kwk_kr_pkey_sign(k->serial, "enc=pkcs1", di, dilen, out, k->klen);
}
