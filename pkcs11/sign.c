/* SPDX-License-Identifier: Apache-2.0 */
/* C_Sign* and C_Verify*: single- and multi-part, length queries, then the key's mechanism. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

static size_t sig_len(const kwk_op *op)
{
    switch (op->key.ktype) {
    case CKK_RSA:
        return op->key.klen;
    case CKK_EC:
        return 2 * op->key.klen;
    default:
        return EVP_PKEY_is_a(op->key.pub, "ED448") ? 114 : 64;
    }
}

static CK_RV buffer(kwk_op *op, const unsigned char *p, size_t n)
{
    if (n == 0)
        return CKR_OK;
    if (op->buf_len + n > KWK_MAX_BUFFERED)
        return CKR_DATA_LEN_RANGE;
    if (op->buf_len + n > op->buf_cap) {
        size_t cap = (op->buf_len + n) * 2;
        unsigned char *b = kw_secure_alloc(cap);
        if (b == NULL)
            return CKR_HOST_MEMORY;
        if (op->buf) {
            memcpy(b, op->buf, op->buf_len);
            kw_secure_free(op->buf, op->buf_cap);
        }
        op->buf = b;
        op->buf_cap = cap;
    }
    memcpy(op->buf + op->buf_len, p, n);
    op->buf_len += n;
    return CKR_OK;
}

static CK_RV update(kwk_op *op, const unsigned char *p, size_t n)
{
    if (p == NULL && n > 0)
        return CKR_ARGUMENTS_BAD;
    if (op->mdctx)
        return EVP_DigestUpdate(op->mdctx, p, n) ? CKR_OK : CKR_FUNCTION_FAILED;
    return buffer(op, p, n);
}

/* The input of the signature primitive: the hash for hash-and-sign mechanisms, else the data. */
static CK_RV finish_input(kwk_op *op, unsigned char *hash, const unsigned char **in, size_t *inlen)
{
    if (op->mdctx) {
        unsigned int hl;
        if (!EVP_DigestFinal_ex(op->mdctx, hash, &hl))
            return CKR_FUNCTION_FAILED;
        *in = hash;
        *inlen = hl;
    } else {
        *in = op->buf ? op->buf : (const unsigned char *)"";
        *inlen = op->buf_len;
    }
    return CKR_OK;
}

static CK_RV do_sign(kwk_session *s, const unsigned char *in, size_t inlen, unsigned char *out,
                     size_t *outlen)
{
    kwk_op *op = &s->op;
    switch (op->key.ktype) {
    case CKK_RSA:
        *outlen = op->key.klen;
        return kwk_rsa_sign(op, in, inlen, out);
    case CKK_EC:
        return kwk_soft_ecdsa(&op->key, &s->ecdsa, in, inlen, out, outlen);
    default:
        return kwk_soft_eddsa(&op->key, in, inlen, out, outlen);
    }
}

static CK_RV do_verify(kwk_op *op, const unsigned char *in, size_t inlen, const unsigned char *sig,
                       size_t slen)
{
    const kwk_key *k = &op->key;
    CK_RV rv = CKR_SIGNATURE_INVALID;
    if (slen != sig_len(op))
        return CKR_SIGNATURE_LEN_RANGE;
    if (k->ktype == CKK_RSA && op->mech != CKM_RSA_PKCS_PSS && !(op->md && op->mgf1)) {
        /* PKCS#1 v1.5 and raw: recompute the encoded message and compare. */
        unsigned char em[KWK_MAX_RSA_BYTES], back[KWK_MAX_RSA_BYTES], di[128];
        const unsigned char *t = in;
        size_t tlen = inlen, plen;
        if (op->mech == CKM_RSA_X_509) {
            if (inlen > k->klen)
                return CKR_DATA_LEN_RANGE;
            memset(em, 0, k->klen - inlen);
            memcpy(em + k->klen - inlen, in, inlen);
        } else {
            if (op->md) {
                const unsigned char *prefix = kwk_digestinfo_prefix(op->md, &plen);
                memcpy(di, prefix, plen);
                memcpy(di + plen, in, inlen);
                t = di;
                tlen = plen + inlen;
            }
            if (!kwk_pad_pkcs1_type1(em, k->klen, t, tlen))
                return CKR_DATA_LEN_RANGE;
        }
        if (kwk_rsa_public_raw(k->pub, sig, back, k->klen) == CKR_OK &&
            memcmp(back, em, k->klen) == 0)
            rv = CKR_OK;
        return rv;
    }
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), k->pub, NULL);
    if (c == NULL)
        return CKR_HOST_MEMORY;
    if (k->ktype == CKK_RSA) { /* PSS */
        if (inlen != (size_t)EVP_MD_get_size(op->md)) {
            EVP_PKEY_CTX_free(c);
            return CKR_DATA_LEN_RANGE;
        }
        if (EVP_PKEY_verify_init(c) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) > 0 &&
            EVP_PKEY_CTX_set_signature_md(c, op->md) > 0 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(c, op->mgf1) > 0 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)op->salt_len) > 0 &&
            EVP_PKEY_verify(c, sig, slen, in, inlen) == 1)
            rv = CKR_OK;
    } else if (k->ktype == CKK_EC) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)(slen / 2), NULL),
               *s = BN_bin2bn(sig + slen / 2, (int)(slen / 2), NULL);
        unsigned char *der = NULL;
        int dl = -1;
        if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
            r = s = NULL;
            dl = i2d_ECDSA_SIG(es, &der);
        }
        if (dl > 0 && EVP_PKEY_verify_init(c) > 0 &&
            EVP_PKEY_verify(c, der, (size_t)dl, in, inlen) == 1)
            rv = CKR_OK;
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        OPENSSL_free(der);
    } else {
        EVP_MD_CTX *mc = EVP_MD_CTX_new();
        if (mc && EVP_DigestVerifyInit_ex(mc, NULL, NULL, kwk_libctx(), NULL, k->pub, NULL) > 0 &&
            EVP_DigestVerify(mc, sig, slen, in, inlen) == 1)
            rv = CKR_OK;
        EVP_MD_CTX_free(mc);
    }
    EVP_PKEY_CTX_free(c);
    ERR_clear_error();
    return rv;
}

/* direct: the whole input of a single-part C_Sign without a hash (CKM_ECDSA, CKM_RSA_PKCS,
 * CKM_EDDSA...), signed where the caller holds it. Buffering it would take a page of locked
 * memory per signature (four system calls, half the time of a software-mode ECDSA signature
 * in a sandbox), and the data to be signed is no secret. NULL: what update() gathered. */
static CK_RV sign_final(kwk_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR siglen,
                        const unsigned char *direct, size_t dlen)
{
    kwk_op *op = &s->op;
    unsigned char hash[EVP_MAX_MD_SIZE], out[KWK_MAX_RSA_BYTES];
    const unsigned char *in;
    size_t inlen, olen = sizeof(out), need = sig_len(op);
    if (siglen == NULL) {
        kwk_op_clear(op);
        return CKR_ARGUMENTS_BAD;
    }
    if (sig == NULL) {
        *siglen = need;
        return CKR_OK; /* a length query keeps the operation */
    }
    if (*siglen < need) {
        *siglen = need;
        return CKR_BUFFER_TOO_SMALL;
    }
    CK_RV rv = CKR_OK;
    if (direct != NULL) {
        in = direct;
        inlen = dlen;
    } else {
        rv = finish_input(op, hash, &in, &inlen);
    }
    if (rv == CKR_OK)
        rv = do_sign(s, in, inlen, out, &olen);
    if (rv == CKR_OK) {
        memcpy(sig, out, olen);
        *siglen = olen;
    }
    kw_wipe(hash, sizeof(hash));
    kwk_op_clear(op);
    return rv;
}

#define SESSION_OP(h, s, want)                                                                     \
    kwk_session *s;                                                                                \
    CK_RV rv = kwk_session_get_op(h, (want), &s);                                                  \
    if (rv != CKR_OK)                                                                              \
        return rv;

/* C_SignUpdate and C_VerifyUpdate: the operation becomes multi-part. */
static CK_RV multipart_update(CK_SESSION_HANDLE h, kwk_opkind kind, CK_BYTE_PTR part, CK_ULONG len)
{
    SESSION_OP(h, s, kind);
    s->op.multipart = 1;
    rv = update(&s->op, part, len);
    if (rv != CKR_OK)
        kwk_op_clear(&s->op);
    kwk_session_put(s);
    return rv;
}

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    return kwk_op_start(h, KWK_OP_SIGN, m, key);
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
             CK_ULONG_PTR siglen)
{
    SESSION_OP(h, s, KWK_OP_SIGN);
    if (s->op.multipart) {
        rv = CKR_OPERATION_ACTIVE;
    } else if (data == NULL && len > 0) {
        kwk_op_clear(&s->op);
        rv = CKR_ARGUMENTS_BAD;
    } else if (sig == NULL || siglen == NULL || *siglen < sig_len(&s->op)) {
        rv = sign_final(s, sig, siglen, NULL, 0); /* length query or short buffer: data kept */
    } else if (s->op.mdctx == NULL && s->op.buf_len == 0) {
        if (len > KWK_MAX_BUFFERED) {
            kwk_op_clear(&s->op);
            rv = CKR_DATA_LEN_RANGE;
        } else {
            rv = sign_final(s, sig, siglen, len ? data : (const unsigned char *)"", len);
        }
    } else {
        rv = update(&s->op, data, len);
        if (rv == CKR_OK)
            rv = sign_final(s, sig, siglen, NULL, 0);
        else
            kwk_op_clear(&s->op);
    }
    kwk_session_put(s);
    return rv;
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    return multipart_update(h, KWK_OP_SIGN, part, len);
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    SESSION_OP(h, s, KWK_OP_SIGN);
    rv = sign_final(s, sig, siglen, NULL, 0);
    kwk_session_put(s);
    return rv;
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    return kwk_op_start(h, KWK_OP_VERIFY, m, key);
}

static CK_RV verify_final(kwk_session *s, CK_BYTE_PTR sig, CK_ULONG slen)
{
    unsigned char hash[EVP_MAX_MD_SIZE];
    const unsigned char *in;
    size_t inlen;
    CK_RV rv = sig == NULL ? CKR_ARGUMENTS_BAD : finish_input(&s->op, hash, &in, &inlen);
    if (rv == CKR_OK)
        rv = do_verify(&s->op, in, inlen, sig, slen);
    kwk_op_clear(&s->op);
    return rv;
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG slen)
{
    SESSION_OP(h, s, KWK_OP_VERIFY);
    if (s->op.multipart) {
        rv = CKR_OPERATION_ACTIVE;
    } else {
        rv = update(&s->op, data, len);
        rv = rv == CKR_OK ? verify_final(s, sig, slen) : (kwk_op_clear(&s->op), rv);
    }
    kwk_session_put(s);
    return rv;
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    return multipart_update(h, KWK_OP_VERIFY, part, len);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG slen)
{
    SESSION_OP(h, s, KWK_OP_VERIFY);
    rv = verify_final(s, sig, slen);
    kwk_session_put(s);
    return rv;
}
