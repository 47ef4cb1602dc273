/* SPDX-License-Identifier: Apache-2.0 */
/* ASYM_CIPHER for RSA token keys: decryption on the token (PKCS#1 v1.5, OAEP with a label, raw,
 * and the TLS 1.2 RSA key exchange), encryption with the public half in the default provider. */
#include <stdlib.h>
#include <string.h>

/* RSA_padding_check_PKCS1_OAEP_mgf1 (constant-time, the default provider's own) is deprecated
 * API in 3.0 but has no replacement for decoding a block the token decrypted raw. */
#undef OPENSSL_NO_DEPRECATED
#include <openssl/rsa.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "kw_secmem.h"
#include "kwp.h"

typedef struct {
    kwp_ctx *pctx;
    kwp_key *key;
    int pad;
    EVP_MD *oaep_md;
    EVP_MD *mgf1_md;
    unsigned char *label;
    size_t labellen;
    unsigned int tls_client_version;
    unsigned int tls_alt_version;
} kwp_rsa_cipher;

static OSSL_FUNC_asym_cipher_newctx_fn ac_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn ac_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn ac_dupctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn ac_init;
static OSSL_FUNC_asym_cipher_decrypt_init_fn ac_init;
static OSSL_FUNC_asym_cipher_encrypt_fn ac_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_fn ac_decrypt;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn ac_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn ac_gettable_ctx_params;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn ac_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn ac_settable_ctx_params;

static void *ac_newctx(void *provctx)
{
    kwp_rsa_cipher *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        c->pctx = provctx;
        c->pad = RSA_PKCS1_PADDING;
    }
    return c;
}

static void ac_freectx(void *vctx)
{
    kwp_rsa_cipher *c = vctx;
    if (c == NULL)
        return;
    kwp_key_free(c->key);
    EVP_MD_free(c->oaep_md);
    EVP_MD_free(c->mgf1_md);
    free(c->label);
    free(c);
}

static void *ac_dupctx(void *vctx)
{
    kwp_rsa_cipher *c = vctx, *d = malloc(sizeof(*d));
    if (d == NULL)
        return NULL;
    *d = *c;
    d->label = NULL;
    if (c->labellen > 0 && (d->label = malloc(c->labellen)) == NULL) {
        free(d);
        return NULL;
    }
    if (d->label != NULL)
        memcpy(d->label, c->label, c->labellen);
    if (d->key != NULL)
        kwp_key_ref(d->key);
    if (d->oaep_md != NULL)
        EVP_MD_up_ref(d->oaep_md);
    if (d->mgf1_md != NULL)
        EVP_MD_up_ref(d->mgf1_md);
    return d;
}

static int ac_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int ac_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    kwp_rsa_cipher *c = vctx;
    kwp_key *k = keydata;

    if (k == NULL || strcmp(k->alg, "RSA") != 0 || k->pub == NULL) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_KEY_USAGE),
                  "key is not usable for RSA encryption (an RSA-PSS key only signs)");
        return 0;
    }
    kwp_key_free(c->key);
    c->key = kwp_key_ref(k);
    return kwp_key_ready(k) && ac_set_ctx_params(c, params);
}

static int ac_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    kwp_rsa_cipher *c = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = p->data;
            pad = strcmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                  : strcmp(s, OSSL_PKEY_RSA_PAD_MODE_OAEP) == 0  ? RSA_PKCS1_OAEP_PADDING
                  : strcmp(s, OSSL_PKEY_RSA_PAD_MODE_NONE) == 0  ? RSA_NO_PADDING
                                                                 : -1;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            return 0;
        }
        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_OAEP_PADDING && pad != RSA_NO_PADDING &&
            pad != RSA_PKCS1_WITH_TLS_PADDING) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_MECHANISM),
                      "RSA padding mode is not supported for decryption (pkcs1, oaep, none)");
            return 0;
        }
        c->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL) {
        const char *name;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !kwp_md_fetch(c->pctx, &c->oaep_md, name))
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL) {
        const char *name;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !kwp_md_fetch(c->pctx, &c->mgf1_md, name))
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL) {
        void *v = NULL;
        size_t len = 0;
        if (!OSSL_PARAM_get_octet_string(p, &v, 0, &len))
            return 0;
        free(c->label);
        c->label = v;
        c->labellen = len;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION)) != NULL &&
        !OSSL_PARAM_get_uint(p, &c->tls_client_version))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION)) !=
            NULL &&
        !OSSL_PARAM_get_uint(p, &c->tls_alt_version))
        return 0;
    return 1;
}

static const OSSL_PARAM *ac_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
        OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
        OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
        OSSL_PARAM_END};
    return p;
}

static int ac_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    kwp_rsa_cipher *c = vctx;
    OSSL_PARAM *p;
    const EVP_MD *oaep = c->oaep_md;

    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        if (p->data_type == OSSL_PARAM_INTEGER) {
            if (!OSSL_PARAM_set_int(p, c->pad))
                return 0;
        } else if (!OSSL_PARAM_set_utf8_string(
                       p, c->pad == RSA_PKCS1_OAEP_PADDING ? OSSL_PKEY_RSA_PAD_MODE_OAEP
                          : c->pad == RSA_NO_PADDING       ? OSSL_PKEY_RSA_PAD_MODE_NONE
                                                           : OSSL_PKEY_RSA_PAD_MODE_PKCSV15)) {
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, oaep ? EVP_MD_get0_name(oaep) : "SHA1"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL) {
        const EVP_MD *m = c->mgf1_md ? c->mgf1_md : oaep;
        if (!OSSL_PARAM_set_utf8_string(p, m ? EVP_MD_get0_name(m) : "SHA1"))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *ac_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0), OSSL_PARAM_END};
    return p;
}

/* The TLS 1.2 RSA key exchange must never tell a bad premaster secret from a good one: any
 * failure yields a random secret, chosen without a branch on the outcome. The token's own
 * PKCS#1 check may still differ in timing; prefer ECDHE suites (TLS 1.3 has no RSA exchange). */
static int tls_decrypt(kwp_rsa_cipher *c, unsigned char *out, size_t *outlen,
                       const unsigned char *in, size_t inlen)
{
    unsigned char buf[1024], rnd[48];
    size_t len = sizeof(buf);
    CK_MECHANISM mech = {CKM_RSA_PKCS, NULL, 0};
    unsigned int good;
    int ok;

    if (*outlen < 48 || RAND_bytes_ex(c->pctx->hlibctx, rnd, sizeof(rnd), 0) != 1)
        return 0;
    ERR_set_mark();
    ok = kwp_key_private_op(c->key, KWP_OP_DECRYPT, &mech, in, inlen, buf, &len);
    ERR_pop_to_mark();
    good = (unsigned int)ok & (len == 48);
    good &= (buf[0] == (c->tls_client_version >> 8) && buf[1] == (c->tls_client_version & 0xff)) |
            (c->tls_alt_version != 0 && buf[0] == (c->tls_alt_version >> 8) &&
             buf[1] == (c->tls_alt_version & 0xff));
    for (size_t i = 0; i < 48; i++) {
        unsigned char m = (unsigned char)(0u - good);
        out[i] = (unsigned char)((buf[i] & m) | (rnd[i] & ~m));
    }
    /* The version bytes are the client's either way, as RFC 5246 7.4.7.1 says. */
    out[0] = (unsigned char)(c->tls_client_version >> 8);
    out[1] = (unsigned char)(c->tls_client_version & 0xff);
    *outlen = 48;
    kw_wipe(buf, sizeof(buf));
    return 1;
}

static int oaep_via_raw(kwp_rsa_cipher *c, const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen)
{
    CK_MECHANISM raw = {CKM_RSA_X_509, NULL, 0};
    unsigned char em[1024];
    size_t emlen = sizeof(em), klen = kwp_key_max_size(c->key);
    int n;

    if (klen > sizeof(em) ||
        !kwp_key_private_op(c->key, KWP_OP_DECRYPT, &raw, in, inlen, em, &emlen) || emlen > klen)
        return 0;
    /* Left-pad to the key size: tokens may strip leading zero bytes. */
    if (emlen < klen) {
        memmove(em + (klen - emlen), em, emlen);
        memset(em, 0, klen - emlen);
    }
    /* The whole block, its first byte included: libcrypto checks that it is zero (RFC 8017
     * 7.1.2 step 3g) along with the rest, in constant time. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    n = RSA_padding_check_PKCS1_OAEP_mgf1(out, (int)*outlen, em, (int)klen, (int)klen, c->label,
                                          (int)c->labellen, c->oaep_md,
                                          c->mgf1_md ? c->mgf1_md : c->oaep_md);
#pragma GCC diagnostic pop
    kw_wipe(em, sizeof(em));
    if (n < 0) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "OAEP decoding failed");
        return 0;
    }
    *outlen = (size_t)n;
    return 1;
}

/* Bit of an OAEP parameter set in kwp_key.oaep_raw: digest x MGF1 digest x label or none.
 * -1 for digests PKCS#11 cannot name here (SHA-3...): those are always decoded on the host. */
static int oaep_slot(const EVP_MD *md, const EVP_MD *mgf1, size_t labellen)
{
    static const int nids[] = {NID_sha1, NID_sha224, NID_sha256, NID_sha384, NID_sha512};
    int a = -1, b = -1;

    for (int i = 0; i < 5; i++) {
        if (EVP_MD_get_type(md) == nids[i])
            a = i;
        if (EVP_MD_get_type(mgf1) == nids[i])
            b = i;
    }
    return a < 0 || b < 0 ? -1 : (a * 5 + b) * 2 + (labellen > 0);
}

/* A token that lacks OAEP, or this parameter set of it (SoftHSM2 has SHA-1 and no label only),
 * refuses at C_DecryptInit, before it has seen the ciphertext: the answer does not depend on
 * the input, so it is safe to remember. SoftHSM2 says CKR_ARGUMENTS_BAD for a parameter set it
 * lacks. A failure of C_Decrypt itself (a bad ciphertext) is never retried another way. */
static int oaep_unsupported(const kwp_op_status *st)
{
    return strcmp(st->fn, "C_DecryptInit") == 0 &&
           (st->rv == CKR_MECHANISM_INVALID || st->rv == CKR_MECHANISM_PARAM_INVALID ||
            st->rv == CKR_ARGUMENTS_BAD);
}

static int ac_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                      const unsigned char *in, size_t inlen);

/* A failure that says the token cannot do this OAEP parameter set at all (not: it is gone, or
 * logged out). */
static int oaep_param_failure(CK_RV rv)
{
    return rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_ARGUMENTS_BAD ||
           rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
           rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
           rv == CKR_DATA_INVALID;
}

/* An OAEP label (pSourceData) is where tokens differ most: SoftHSM2 takes one at C_DecryptInit
 * and then fails every C_Decrypt with CKR_GENERAL_ERROR, whatever the ciphertext. Whether the
 * token can do a labelled parameter set is therefore learnt from a ciphertext of our own (a
 * random message encrypted on the host), once per key and parameter set, never from the
 * caller's ciphertext: 1 the token does it, 0 it does not (decode on the host), -1 error. */
static int oaep_probe(kwp_rsa_cipher *c, CK_MECHANISM *mech, int slot)
{
    kwp_key *k = c->key;
    unsigned char msg[16], ct[1024], pt[1024];
    size_t ctlen = 0, ptlen = sizeof(pt);
    kwp_op_status st;
    if (RAND_bytes_ex(c->pctx->hlibctx, msg, sizeof(msg), 0) != 1 ||
        !ac_encrypt(c, ct, &ctlen, sizeof(ct), msg, sizeof(msg)))
        return -1;
    ERR_set_mark();
    int ok = kwp_key_private_op_st(k, KWP_OP_DECRYPT, mech, ct, ctlen, pt, &ptlen, &st);
    if (ok && ptlen == sizeof(msg) && CRYPTO_memcmp(pt, msg, sizeof(msg)) == 0) {
        ERR_pop_to_mark();
        atomic_fetch_or(&k->oaep_ok, 1ULL << slot);
        return 1;
    }
    if (!ok && !oaep_param_failure(st.rv)) {
        ERR_clear_last_mark(); /* the token is gone or logged out: say so */
        return -1;
    }
    ERR_pop_to_mark();
    atomic_fetch_or(&k->oaep_raw, 1ULL << slot);
    KW_DEBUG("oaep", "token failed a labelled OAEP probe (%s): decoding on the host for %s",
             ok ? "wrong plaintext" : kw_p11_rv_name(st.rv), k->uri);
    return 0;
}

static int oaep_decrypt(kwp_rsa_cipher *c, const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen)
{
    kwp_key *k = c->key;
    const EVP_MD *md, *mgf1;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_MECHANISM mech = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
    kwp_op_status st;
    int slot, ok;

    if (c->oaep_md == NULL && !kwp_md_fetch(c->pctx, &c->oaep_md, "SHA1"))
        return 0;
    md = c->oaep_md;
    mgf1 = c->mgf1_md ? c->mgf1_md : md;
    slot = oaep_slot(md, mgf1, c->labellen);
    if (slot >= 0 && kw_p11_token_has_mech(k->tok, CKM_RSA_PKCS_OAEP, CKF_DECRYPT) &&
        (atomic_load(&k->oaep_raw) & (1ULL << slot)) == 0) {
        oaep.hashAlg = kwp_md_mech(md);
        oaep.mgf = kwp_md_mgf(mgf1);
        oaep.source = CKZ_DATA_SPECIFIED;
        oaep.pSourceData = c->label;
        oaep.ulSourceDataLen = c->labellen;
        int probe = 1;
        if (c->labellen > 0 && (atomic_load(&k->oaep_ok) & (1ULL << slot)) == 0 &&
            kw_p11_token_has_mech(k->tok, CKM_RSA_X_509, CKF_DECRYPT))
            probe = oaep_probe(c, &mech, slot);
        if (probe < 0)
            return 0;
        if (probe == 0)
            return oaep_via_raw(c, in, inlen, out, outlen);
        ERR_set_mark();
        ok = kwp_key_private_op_st(k, KWP_OP_DECRYPT, &mech, in, inlen, out, outlen, &st);
        if (ok || !oaep_unsupported(&st) ||
            !kw_p11_token_has_mech(k->tok, CKM_RSA_X_509, CKF_DECRYPT)) {
            ERR_clear_last_mark();
            return ok;
        }
        ERR_pop_to_mark();
        atomic_fetch_or(&k->oaep_raw, 1ULL << slot);
        KW_DEBUG("oaep", "token refused OAEP %s/%s%s (%s): decoding on the host for %s",
                 EVP_MD_get0_name(md), EVP_MD_get0_name(mgf1), c->labellen ? " with a label" : "",
                 kw_p11_rv_name(st.rv), k->uri);
    }
    if (!kw_p11_token_has_mech(k->tok, CKM_RSA_X_509, CKF_DECRYPT)) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_MECHANISM),
                  "mechanism not supported by the token: OAEP with %s needs CKM_RSA_PKCS_OAEP "
                  "for it or CKM_RSA_X_509",
                  EVP_MD_get0_name(md));
        return 0;
    }
    return oaep_via_raw(c, in, inlen, out, outlen);
}

static int ac_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                      const unsigned char *in, size_t inlen)
{
    kwp_rsa_cipher *c = vctx;
    size_t ksize = kwp_key_max_size(c->key);
    CK_MECHANISM mech = {CKM_RSA_PKCS, NULL, 0};
    unsigned char buf[1024];
    size_t len = sizeof(buf);
    int ok;

    if (out == NULL) {
        *outlen = c->pad == RSA_PKCS1_WITH_TLS_PADDING ? 48 : ksize;
        return 1;
    }
    if (c->pad == RSA_PKCS1_WITH_TLS_PADDING) {
        *outlen = outsize;
        return tls_decrypt(c, out, outlen, in, inlen);
    }
    if (c->pad == RSA_PKCS1_OAEP_PADDING) {
        ok = oaep_decrypt(c, in, inlen, buf, &len);
    } else {
        if (c->pad == RSA_NO_PADDING)
            mech.mechanism = CKM_RSA_X_509;
        if (!kw_p11_token_has_mech(c->key->tok, mech.mechanism, CKF_DECRYPT)) {
            kwp_raise(c->pctx, KWP_R(KW_ERR_MECHANISM),
                      "mechanism not supported by the token: it cannot decrypt with %s",
                      kwp_mech_name(mech.mechanism));
            return 0;
        }
        ok = kwp_key_private_op(c->key, KWP_OP_DECRYPT, &mech, in, inlen, buf, &len);
    }
    if (ok && len > outsize) {
        kwp_raise(c->pctx, KWP_R(KW_ERR_INVALID), "output buffer too small");
        ok = 0;
    }
    if (ok) {
        memcpy(out, buf, len);
        *outlen = len;
    }
    kw_wipe(buf, sizeof(buf));
    return ok;
}

static int ac_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                      const unsigned char *in, size_t inlen)
{
    kwp_rsa_cipher *c = vctx;
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new_from_pkey(c->pctx->hlibctx, c->key->pub, KWP_HELPER_PROPQ);
    int ok =
        e != NULL && EVP_PKEY_encrypt_init(e) == 1 && EVP_PKEY_CTX_set_rsa_padding(e, c->pad) == 1;

    if (ok && c->pad == RSA_PKCS1_OAEP_PADDING) {
        if (c->oaep_md != NULL)
            ok = EVP_PKEY_CTX_set_rsa_oaep_md(e, c->oaep_md) == 1;
        if (ok && c->mgf1_md != NULL)
            ok = EVP_PKEY_CTX_set_rsa_mgf1_md(e, c->mgf1_md) == 1;
        if (ok && c->labellen > 0) {
            unsigned char *l = OPENSSL_memdup(c->label, c->labellen);
            ok = l != NULL && EVP_PKEY_CTX_set0_rsa_oaep_label(e, l, (int)c->labellen) == 1;
            if (!ok)
                OPENSSL_free(l);
        }
    }
    if (ok) {
        *outlen = outsize;
        ok = EVP_PKEY_encrypt(e, out, outlen, in, inlen) == 1;
    }
    EVP_PKEY_CTX_free(e);
    return ok;
}

const OSSL_DISPATCH kwp_rsa_asym_cipher_functions[] = {
    {OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))ac_newctx},
    {OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))ac_freectx},
    {OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))ac_dupctx},
    {OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))ac_init},
    {OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))ac_encrypt},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))ac_init},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))ac_decrypt},
    {OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))ac_get_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))ac_gettable_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))ac_set_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))ac_settable_ctx_params},
    {0, NULL}};
