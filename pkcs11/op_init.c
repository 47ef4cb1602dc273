/* SPDX-License-Identifier: Apache-2.0 */
/* Starting an operation: which mechanisms go with which keys and uses, and their parameters. */
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kwk.h"

static CK_MECHANISM_TYPE hash_of(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_SHA1_RSA_PKCS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA1:
        return CKM_SHA_1;
    case CKM_SHA224_RSA_PKCS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA224:
        return CKM_SHA224;
    case CKM_SHA256_RSA_PKCS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA256:
        return CKM_SHA256;
    case CKM_SHA384_RSA_PKCS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA384:
        return CKM_SHA384;
    case CKM_SHA512_RSA_PKCS:
    case CKM_SHA512_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA512:
        return CKM_SHA512;
    }
    return 0;
}

static const EVP_MD *mgf_md(CK_RSA_PKCS_MGF_TYPE g)
{
    switch (g) {
    case CKG_MGF1_SHA1:
        return kwk_md(CKM_SHA_1);
    case CKG_MGF1_SHA224:
        return kwk_md(CKM_SHA224);
    case CKG_MGF1_SHA256:
        return kwk_md(CKM_SHA256);
    case CKG_MGF1_SHA384:
        return kwk_md(CKM_SHA384);
    case CKG_MGF1_SHA512:
        return kwk_md(CKM_SHA512);
    }
    return NULL;
}

/* Key type a mechanism needs; NONE for mechanisms this token does not do (CKK_RSA is 0). */
#define NONE CK_UNAVAILABLE_INFORMATION
static CK_KEY_TYPE mech_ktype(CK_MECHANISM_TYPE m, kwk_opkind kind)
{
    switch (m) {
    case CKM_RSA_PKCS:
    case CKM_RSA_X_509:
        return CKK_RSA;
    case CKM_RSA_PKCS_OAEP:
        return kind == KWK_OP_DECRYPT ? CKK_RSA : NONE;
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS:
    case CKM_SHA224_RSA_PKCS:
    case CKM_SHA256_RSA_PKCS:
    case CKM_SHA384_RSA_PKCS:
    case CKM_SHA512_RSA_PKCS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS:
        return kind == KWK_OP_DECRYPT ? NONE : CKK_RSA;
    case CKM_ECDSA:
    case CKM_ECDSA_SHA1:
    case CKM_ECDSA_SHA224:
    case CKM_ECDSA_SHA256:
    case CKM_ECDSA_SHA384:
    case CKM_ECDSA_SHA512:
        return kind == KWK_OP_DECRYPT ? NONE : CKK_EC;
    case CKM_EDDSA:
        return kind == KWK_OP_DECRYPT ? NONE : CKK_EC_EDWARDS;
    }
    return NONE;
}

static int no_param(const CK_MECHANISM *m)
{
    return m->pParameter == NULL && m->ulParameterLen == 0;
}

static CK_RV parse_params(kwk_op *op, const CK_MECHANISM *m)
{
    CK_MECHANISM_TYPE h = hash_of(m->mechanism);
    if (m->mechanism == CKM_RSA_PKCS_PSS || hash_of(m->mechanism) != 0) {
        if (h)
            op->md = kwk_md(h);
    }
    switch (m->mechanism) {
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS: {
        const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
        if (p == NULL || m->ulParameterLen != sizeof(*p))
            return CKR_MECHANISM_PARAM_INVALID;
        if ((h && p->hashAlg != h) || kwk_md(p->hashAlg) == NULL || mgf_md(p->mgf) == NULL)
            return CKR_MECHANISM_PARAM_INVALID;
        op->md = kwk_md(p->hashAlg);
        op->mgf1 = mgf_md(p->mgf);
        op->salt_len = p->sLen;
        if (p->sLen > KWK_MAX_RSA_BYTES)
            return CKR_MECHANISM_PARAM_INVALID;
        return CKR_OK;
    }
    case CKM_RSA_PKCS_OAEP: {
        const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;
        if (p == NULL || m->ulParameterLen != sizeof(*p))
            return CKR_MECHANISM_PARAM_INVALID;
        if (kwk_md(p->hashAlg) == NULL || mgf_md(p->mgf) == NULL ||
            (p->source != 0 && p->source != CKZ_DATA_SPECIFIED) ||
            (p->pSourceData == NULL && p->ulSourceDataLen > 0) || p->ulSourceDataLen > 4096)
            return CKR_MECHANISM_PARAM_INVALID;
        op->md = kwk_md(p->hashAlg);
        op->mgf1 = mgf_md(p->mgf);
        if (p->ulSourceDataLen) {
            op->label = malloc(p->ulSourceDataLen);
            if (op->label == NULL)
                return CKR_HOST_MEMORY;
            memcpy(op->label, p->pSourceData, p->ulSourceDataLen);
            op->label_len = p->ulSourceDataLen;
        }
        return CKR_OK;
    }
    case CKM_EDDSA:
        /* Only pure Ed25519/Ed448 (no context, no prehash): parameters absent. */
        return no_param(m) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
    default:
        return no_param(m) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
    }
}

CK_RV kwk_op_init(kwk_session *s, kwk_opkind kind, CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
    kwk_op *op = &s->op;
    if (op->kind != KWK_OP_NONE)
        return CKR_OPERATION_ACTIVE;
    if (m == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_KEY_TYPE need = mech_ktype(m->mechanism, kind);
    if (need == NONE)
        return CKR_MECHANISM_INVALID;
    CK_RV rv = kwk_object_key(s, key, &op->key);
    if (rv != CKR_OK)
        return rv;
    CK_OBJECT_CLASS want_cls = kind == KWK_OP_VERIFY ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY;
    if (op->key.cls != want_cls)
        rv = CKR_KEY_TYPE_INCONSISTENT;
    else if (op->key.ktype != need)
        rv = CKR_KEY_TYPE_INCONSISTENT;
    else if (kind == KWK_OP_SIGN && !(op->key.flags & KWK_F_SIGN))
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    else if (kind == KWK_OP_DECRYPT && !(op->key.flags & KWK_F_DECRYPT))
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    else if (!kwk_mechs_allow(&op->key.mechs, m->mechanism))
        /* Not in the key's CKA_ALLOWED_MECHANISMS: the code SoftHSM2 gives, and the one the
         * keyward provider reads as "this key does not allow it" (the token has it). */
        rv = CKR_MECHANISM_INVALID;
    else if (op->key.ktype == CKK_RSA && op->key.klen > KWK_MAX_RSA_BYTES)
        rv = CKR_KEY_SIZE_RANGE;
    else
        rv = parse_params(op, m);
    if (rv == CKR_OK && hash_of(m->mechanism)) {
        op->mdctx = EVP_MD_CTX_new();
        if (op->mdctx == NULL || !EVP_DigestInit_ex(op->mdctx, op->md, NULL))
            rv = CKR_HOST_MEMORY;
    }
    if (rv != CKR_OK) {
        kwk_op_clear(op);
        return rv;
    }
    op->kind = kind;
    op->mech = m->mechanism;
    KW_TRACE(KWK_COMP, "op %d mech 0x%lx key %d (%s mode)", (int)kind, (unsigned long)m->mechanism,
             (int)op->key.serial, kwk_mode_name(op->key.mode));
    return CKR_OK;
}

CK_RV kwk_op_start(CK_SESSION_HANDLE h, kwk_opkind kind, CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    rv = kwk_op_init(s, kind, m, key);
    kwk_session_put(s);
    return rv;
}
