/* SPDX-License-Identifier: Apache-2.0 */
/* Key generation on the token: the key pair is created there, sensitive and not extractable,
 * with the CKA_ID and label named by the keyward_uri parameter. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <keyward/keyward.h>

#include "kwp_keymgmt.h"

typedef struct {
    kwp_ctx *pctx;
    CK_KEY_TYPE type;
    const char *alg;
    size_t bits;
    unsigned long e;
    char curve[32];
    char *uri;
} kwp_gen_ctx;

void *kwp_km_gen_init(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg, int selection,
                      const OSSL_PARAM params[])
{
    kwp_gen_ctx *g;

    if (!(selection & OSSL_KEYMGMT_SELECT_KEYPAIR))
        return NULL;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->pctx = ctx;
    g->type = type;
    g->alg = alg;
    g->bits = 2048;
    g->e = 65537;
    strcpy(g->curve, "P-256");
    if (!kwp_km_gen_set_params(g, params)) {
        kwp_km_gen_cleanup(g);
        return NULL;
    }
    return g;
}

void kwp_km_gen_cleanup(void *genctx)
{
    kwp_gen_ctx *g = genctx;
    if (g == NULL)
        return;
    free(g->uri);
    free(g);
}

int kwp_km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    kwp_gen_ctx *g = genctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, KEYWARD_PARAM_URI)) != NULL) {
        const char *s = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
            return 0;
        free(g->uri);
        if ((g->uri = strdup(s)) == NULL)
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_BITS)) != NULL &&
        !OSSL_PARAM_get_size_t(p, &g->bits))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E)) != NULL &&
        !OSSL_PARAM_get_ulong(p, &g->e))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL) {
        const char *s = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || strlen(s) >= sizeof(g->curve))
            return 0;
        strcpy(g->curve, s);
    }
    return 1;
}

const OSSL_PARAM *kwp_km_rsa_gen_settable(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(KEYWARD_PARAM_URI, NULL, 0),
                                   OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_BITS, NULL),
                                   OSSL_PARAM_ulong(OSSL_PKEY_PARAM_RSA_E, NULL), OSSL_PARAM_END};
    return p;
}

const OSSL_PARAM *kwp_km_ed_gen_settable(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(KEYWARD_PARAM_URI, NULL, 0),
                                   OSSL_PARAM_END};
    return p;
}

const OSSL_PARAM *kwp_km_ec_gen_settable(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {OSSL_PARAM_utf8_string(KEYWARD_PARAM_URI, NULL, 0),
                                   OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
                                   OSSL_PARAM_END};
    return p;
}

/* DER of the named curve's OID, for CKA_EC_PARAMS. */
static int curve_der(const char *name, unsigned char **der)
{
    int nid = EC_curve_nist2nid(name);
    if (nid == NID_undef)
        nid = OBJ_sn2nid(name);
    if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1 && nid != NID_secp521r1)
        return -1;
    *der = NULL;
    return i2d_ASN1_OBJECT(OBJ_nid2obj(nid), der);
}

static kw_err gen_on_token(kwp_gen_ctx *g, kw_p11_token *tok, CK_SESSION_HANDLE s, P11KitUri *uri,
                           CK_OBJECT_HANDLE *priv)
{
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE_PTR aid = p11_kit_uri_get_attribute(uri, CKA_ID);
    CK_ATTRIBUTE_PTR alabel = p11_kit_uri_get_attribute(uri, CKA_LABEL);
    unsigned char rid[16], *ecpar = NULL;
    CK_BYTE e[4];
    CK_ULONG bits = g->bits;
    CK_ATTRIBUTE pub[8], prv[11], dup[2];
    CK_ULONG np = 0, nv = 0, cnt = 0;
    CK_OBJECT_HANDLE pubh, found;
    CK_MECHANISM mech = {g->type == CKK_RSA  ? CKM_RSA_PKCS_KEY_PAIR_GEN
                         : g->type == CKK_EC ? CKM_EC_KEY_PAIR_GEN
                                             : CKM_EC_EDWARDS_KEY_PAIR_GEN,
                         NULL, 0};
    /* Edwards curves by name, as PKCS#11 3.0 allows and SoftHSM2 expects. */
    static const CK_MECHANISM_TYPE pss_mechs[] = {CKM_RSA_PKCS_PSS,        CKM_SHA1_RSA_PKCS_PSS,
                                                  CKM_SHA224_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS,
                                                  CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS};
    static const unsigned char ed25519[] = "\x13\x0c"
                                           "edwards25519";
    static const unsigned char ed448[] = "\x13\x0a"
                                         "edwards448";
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_RV rv;
    kw_err err;
    int eclen = 0;

    if (aid == NULL) {
        /* No id in the URI: a random one, reported back in the key's URI. */
        if (RAND_bytes_ex(g->pctx->hlibctx, rid, sizeof(rid), 0) != 1)
            return kw_err_set(KW_ERR_MEMORY, "no random bytes for a key id");
    }
    /* Never a second key under the same name: the URI must keep naming one key. */
    dup[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    dup[1] = aid ? *aid : (CK_ATTRIBUTE){CKA_LABEL, alabel->pValue, alabel->ulValueLen};
    if ((err = kw_p11_find(tok, s, dup, 2, &found, 1, &cnt)) != KW_OK)
        return err;
    if (cnt > 0)
        return kw_err_set(KW_ERR_INVALID,
                          "a private key with this %s already exists on the token; choose "
                          "another id=/object= or remove the old key first",
                          aid ? "id" : "label");

    pub[np++] = (CK_ATTRIBUTE){CKA_TOKEN, &t, sizeof(t)};
    pub[np++] = (CK_ATTRIBUTE){CKA_VERIFY, &t, sizeof(t)};
    prv[nv++] = (CK_ATTRIBUTE){CKA_TOKEN, &t, sizeof(t)};
    prv[nv++] = (CK_ATTRIBUTE){CKA_PRIVATE, &t, sizeof(t)};
    prv[nv++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &t, sizeof(t)};
    prv[nv++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &f, sizeof(f)};
    prv[nv++] = (CK_ATTRIBUTE){CKA_SIGN, &t, sizeof(t)};
    if (g->type == CKK_RSA) {
        if (g->bits < 2048 || g->bits > 16384)
            return kw_err_set(KW_ERR_INVALID, "RSA key size %zu is not allowed (2048..16384)",
                              g->bits);
        e[0] = (CK_BYTE)(g->e >> 24);
        e[1] = (CK_BYTE)(g->e >> 16);
        e[2] = (CK_BYTE)(g->e >> 8);
        e[3] = (CK_BYTE)g->e;
        pub[np++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
        pub[np++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, e + (g->e < 0x1000000 ? 1 : 0),
                                   g->e < 0x1000000 ? 3 : 4};
        if (strcmp(g->alg, "RSA-PSS") == 0) {
            /* An RSA-PSS key signs with PSS and nothing else, on the token too. */
            prv[nv++] =
                (CK_ATTRIBUTE){CKA_ALLOWED_MECHANISMS, (void *)pss_mechs, sizeof(pss_mechs)};
        } else {
            pub[np++] = (CK_ATTRIBUTE){CKA_ENCRYPT, &t, sizeof(t)};
            prv[nv++] = (CK_ATTRIBUTE){CKA_DECRYPT, &t, sizeof(t)};
        }
    } else if (g->type == CKK_EC_EDWARDS) {
        int is448 = strcmp(g->alg, "ED448") == 0;
        pub[np++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)(is448 ? ed448 : ed25519),
                                   is448 ? sizeof(ed448) - 1 : sizeof(ed25519) - 1};
    } else {
        if ((eclen = curve_der(g->curve, &ecpar)) <= 0)
            return kw_err_set(KW_ERR_INVALID, "curve \"%s\" is not supported (P-256, P-384, P-521)",
                              g->curve);
        pub[np++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, ecpar, (CK_ULONG)eclen};
        prv[nv++] = (CK_ATTRIBUTE){CKA_DERIVE, &t, sizeof(t)};
    }
    if (aid != NULL) {
        pub[np++] = *aid;
        prv[nv++] = *aid;
    } else {
        pub[np++] = (CK_ATTRIBUTE){CKA_ID, rid, sizeof(rid)};
        prv[nv++] = (CK_ATTRIBUTE){CKA_ID, rid, sizeof(rid)};
    }
    if (alabel != NULL) {
        pub[np++] = *alabel;
        prv[nv++] = *alabel;
    }
    if (!kw_p11_token_has_mech(tok, mech.mechanism, CKF_GENERATE_KEY_PAIR)) {
        OPENSSL_free(ecpar);
        return kw_err_set(KW_ERR_MECHANISM,
                          "mechanism not supported by the token: cannot "
                          "generate %s key pairs",
                          g->alg);
    }
    rv = KW_P11_CALL(kw_p11_token_module(tok), C_GenerateKeyPair, s, &mech, pub, np, prv, nv, &pubh,
                     priv);
    OPENSSL_free(ecpar);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GenerateKeyPair", "generating a key pair");
    return KW_OK;
}

void *kwp_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    kwp_gen_ctx *g = genctx;
    kw_p11_module *mod;
    P11KitUri *uri = NULL;
    kw_p11_token **toks = NULL;
    size_t n = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE priv;
    kw_pin_ctx pin = {0};
    kwp_key *k = NULL;
    kw_err e;

    if (g->uri == NULL) {
        kwp_raise(g->pctx, KWP_R(KW_ERR_INVALID),
                  "key generation on a token needs -pkeyopt %s:'pkcs11:token=...;object=...'",
                  KEYWARD_PARAM_URI);
        return NULL;
    }
    if (kw_uri_parse(g->uri, &uri) != KW_OK)
        goto err;
    if (p11_kit_uri_get_attribute(uri, CKA_ID) == NULL &&
        p11_kit_uri_get_attribute(uri, CKA_LABEL) == NULL) {
        kw_err_set(KW_ERR_URI, "the URI of a new key needs id= or object=");
        goto err;
    }
    if ((mod = kwp_module(g->pctx)) == NULL)
        goto done;
    if (kw_p11_find_tokens(mod, uri, &toks, &n) != KW_OK)
        goto err;
    if (n == 0) {
        kw_err_set(KW_ERR_TOKEN_NOT_FOUND, "token not found: no token matches %s", g->uri);
        goto err;
    }
    if (n > 1) {
        kw_err_set(KW_ERR_AMBIGUOUS, "URI matches %zu tokens: name one with token= or serial=", n);
        goto err;
    }
    kw_uri_pin(uri, &pin);
    pin.conf_pin_source = g->pctx->pin_source;
    /* A token without CKF_LOGIN_REQUIRED (the keyring token) has no PIN to log in with. */
    if ((e = kw_p11_session_get(toks[0], kw_p11_token_login_required(toks[0]), &pin, &s)) != KW_OK)
        goto err;
    e = gen_on_token(g, toks[0], s, uri, &priv);
    if (e == KW_OK)
        k = kwp_key_from_object(g->pctx, toks[0], s, priv, CKO_PRIVATE_KEY, &pin);
    kw_p11_session_put(toks[0], s, CKR_OK);
    if (k == NULL)
        goto err;
    KW_DEBUG("gen", "generated %s", k->uri);
    goto done;
err:
    kwp_raise_last(g->pctx);
done:
    free(toks);
    if (uri != NULL)
        p11_kit_uri_free(uri);
    return k;
}
