/* SPDX-License-Identifier: Apache-2.0 */
/* RSA private operations inside the kernel.
 *
 * Blinding: the kernel's RSA (mpi_powm) is not constant-time and does no blinding. For the raw
 * operation we send x * r^e mod n for a fresh random r and multiply the result by r^-1: the
 * kernel then exponentiates a value the caller neither chose nor sees, so timing that depends on
 * the base no longer correlates with attacker-chosen input (the classic remote timing attacks on
 * RSA decryption need that correlation). What stays: timing that depends on the exponent alone,
 * which is the same for every call. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

typedef struct {
    BIGNUM *rinv;
} unblind_state;

CK_RV kwk_blind(EVP_PKEY *pub, const unsigned char *in, size_t klen, unsigned char *blinded,
                void **state)
{
    BIGNUM *n = NULL, *e = NULL, *r = BN_secure_new(), *rinv = NULL, *x = NULL;
    BN_CTX *ctx = BN_CTX_secure_new_ex(kwk_libctx());
    CK_RV rv = CKR_FUNCTION_FAILED;
    *state = NULL;
    if (r == NULL || ctx == NULL || !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e) ||
        (x = BN_bin2bn(in, (int)klen, BN_secure_new())) == NULL)
        goto end;
    BN_set_flags(r, BN_FLG_CONSTTIME);
    /* r must be invertible mod n; a non-invertible r would reveal a factor, so it is
     * astronomically unlikely, but retry rather than fail. */
    for (int i = 0; i < 8 && rinv == NULL; i++) {
        if (!BN_priv_rand_range_ex(r, n, 0, ctx))
            goto end;
        if (BN_is_zero(r))
            continue;
        rinv = BN_mod_inverse(NULL, r, n, ctx);
    }
    if (rinv == NULL)
        goto end;
    /* x * r^e mod n */
    if (!BN_mod_exp(r, r, e, n, ctx) || !BN_mod_mul(x, x, r, n, ctx) ||
        BN_bn2binpad(x, blinded, (int)klen) != (int)klen)
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
    BN_clear_free(r);
    BN_clear_free(x);
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
    BN_CTX *ctx = BN_CTX_secure_new_ex(kwk_libctx());
    CK_RV rv = CKR_FUNCTION_FAILED;
    if (st != NULL && ctx != NULL && EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) &&
        (y = BN_bin2bn(in, (int)klen, BN_secure_new())) != NULL &&
        BN_mod_mul(y, y, st->rinv, n, ctx) && BN_bn2binpad(y, out, (int)klen) == (int)klen)
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
    return kwk_kr_pkey_sign(k->serial, "enc=pkcs1", di, dilen, out, k->klen);
}
