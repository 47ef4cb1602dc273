/* SPDX-License-Identifier: Apache-2.0 */
/* KEYEXCH: ECDH with a token EC key (CKM_ECDH1_DERIVE, no KDF) and a peer public key. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "kw_secmem.h"
#include "kwp.h"

typedef struct {
    kwp_ctx *pctx;
    kwp_key *key;
    kwp_key *peer;
} kwp_ecdh;

static OSSL_FUNC_keyexch_newctx_fn kx_newctx;
static OSSL_FUNC_keyexch_freectx_fn kx_freectx;
static OSSL_FUNC_keyexch_dupctx_fn kx_dupctx;
static OSSL_FUNC_keyexch_init_fn kx_init;
static OSSL_FUNC_keyexch_set_peer_fn kx_set_peer;
static OSSL_FUNC_keyexch_derive_fn kx_derive;
static OSSL_FUNC_keyexch_set_ctx_params_fn kx_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn kx_settable_ctx_params;

static void *kx_newctx(void *provctx)
{
    kwp_ecdh *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->pctx = provctx;
    return c;
}

static void kx_freectx(void *vctx)
{
    kwp_ecdh *c = vctx;
    if (c == NULL)
        return;
    kwp_key_free(c->key);
    kwp_key_free(c->peer);
    free(c);
}

static void *kx_dupctx(void *vctx)
{
    kwp_ecdh *c = vctx, *d = malloc(sizeof(*d));
    if (d == NULL)
        return NULL;
    *d = *c;
    if (d->key != NULL)
        kwp_key_ref(d->key);
    if (d->peer != NULL)
        kwp_key_ref(d->peer);
    return d;
}

static int kx_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    kwp_ecdh *c = vctx;
    kwp_key *k = keydata;

    if (k == NULL || k->type != CKK_EC || !k->has_private) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_KEY_USAGE),
                  "key is not usable for ECDH: an EC private key on a token is needed");
        return 0;
    }
    if (!kwp_key_ready(k))
        return 0;
    kwp_key_free(c->key);
    c->key = kwp_key_ref(k);
    return 1;
}

static int kx_set_peer(void *vctx, void *peerdata)
{
    kwp_ecdh *c = vctx;
    kwp_key *p = peerdata;

    if (p == NULL || p->type != CKK_EC || p->pub == NULL)
        return 0;
    if (c->key != NULL && EVP_PKEY_parameters_eq(c->key->pub, p->pub) != 1) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "peer key is on another curve");
        return 0;
    }
    kwp_key_free(c->peer);
    c->peer = kwp_key_ref(p);
    return 1;
}

static int kx_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    kwp_ecdh *c = vctx;
    size_t flen = ((size_t)EVP_PKEY_get_bits(c->key->pub) + 7) / 8;
    unsigned char point[160], buf[80];
    size_t plen = 0, len = flen;
    CK_ECDH1_DERIVE_PARAMS p;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
    int ok;

    if (secret == NULL) {
        *secretlen = flen;
        return 1;
    }
    if (c->peer == NULL) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "ECDH needs a peer key (none was set)");
        return 0;
    }
    if (flen > sizeof(buf) || EVP_PKEY_get_octet_string_param(c->peer->pub, OSSL_PKEY_PARAM_PUB_KEY,
                                                              point, sizeof(point), &plen) != 1) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "the peer's public point cannot be read");
        return 0;
    }
    memset(&p, 0, sizeof(p));
    p.kdf = CKD_NULL;
    p.pPublicData = point;
    p.ulPublicDataLen = plen;
    ok = kwp_key_private_op(c->key, KWP_OP_DERIVE, &mech, NULL, 0, buf, &len);
    if (ok && len != flen) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_P11),
                  "the token derived %zu bytes, not the %zu of the curve", len, flen);
        ok = 0;
    }
    if (ok) {
        /* A shorter buffer gets the secret's first bytes, as from the default provider. */
        len = outlen < flen ? outlen : flen;
        memcpy(secret, buf, len);
        *secretlen = len;
    }
    kw_wipe(buf, sizeof(buf));
    return ok;
}

static int kx_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    return 1; /* no KDF, no cofactor mode: plain ECDH as TLS and pkeyutl use it */
}

static const OSSL_PARAM *kx_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_END};
    return p;
}

const OSSL_DISPATCH kwp_ecdh_keyexch_functions[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))kx_newctx},
    {OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))kx_freectx},
    {OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))kx_dupctx},
    {OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))kx_init},
    {OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))kx_set_peer},
    {OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))kx_derive},
    {OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))kx_set_ctx_params},
    {OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, (void (*)(void))kx_settable_ctx_params},
    {0, NULL}};
