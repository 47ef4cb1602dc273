/* SPDX-License-Identifier: Apache-2.0 */
/* C_DeriveKey: CKM_ECDH1_DERIVE with CKD_NULL on software-mode EC keys (the kernel has no ECDH).
 * The shared secret becomes a CKK_GENERIC_SECRET session object held in this process's memory
 * (secure buffer), visible to the session that made it and gone when that session closes. Its
 * template is honoured or refused: nothing in it is silently dropped. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

/* The template of the derived key: what it asks for, or the CK_RV that refuses it. */
static CK_RV derive_template(const CK_ATTRIBUTE *t, CK_ULONG n, size_t flen, kwk_object *o)
{
    CK_RV rv = kwk_attr_check(t, n);
    o->flags = KWK_F_EXTRACTABLE; /* defaults: not sensitive, extractable, public */
    o->der_len = flen;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        const CK_ATTRIBUTE *a = &t[i];
        CK_ULONG u = 0;
        int b = 0;
        switch (a->type) {
        case CKA_CLASS:
        case CKA_KEY_TYPE:
        case CKA_VALUE_LEN:
            if ((rv = kwk_attr_ulong(a, 1, a->type, &u)) != CKR_OK)
                break;
            if (a->type == CKA_CLASS && u != CKO_SECRET_KEY)
                rv = CKR_TEMPLATE_INCONSISTENT;
            else if (a->type == CKA_KEY_TYPE && u != CKK_GENERIC_SECRET)
                rv = CKR_TEMPLATE_INCONSISTENT; /* only generic secrets: no cipher keys here */
            else if (a->type == CKA_VALUE_LEN && (u == 0 || u > flen))
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
            else if (a->type == CKA_VALUE_LEN)
                o->der_len = u;
            break;
        case CKA_ALLOWED_MECHANISMS:
            rv = kwk_attr_mechs(a, &o->mechs); /* kept and read back (no mechanism here uses it) */
            break;
        case CKA_LABEL:
            if (a->ulValueLen >= KWK_MAX_LABEL ||
                (a->ulValueLen && memchr(a->pValue, '\0', a->ulValueLen)))
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
            else if (a->ulValueLen)
                memcpy(o->label, a->pValue, a->ulValueLen);
            break;
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_SENSITIVE:
        case CKA_EXTRACTABLE:
        case CKA_MODIFIABLE:
        case CKA_DESTROYABLE:
        case CKA_COPYABLE:
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_WRAP:
        case CKA_UNWRAP:
        case CKA_DERIVE:
            if ((rv = kwk_attr_bool(a, 1, a->type, &b)) != CKR_OK)
                break;
            if (a->type == CKA_PRIVATE || a->type == CKA_SENSITIVE || a->type == CKA_EXTRACTABLE) {
                unsigned f = a->type == CKA_PRIVATE     ? KWK_F_PRIVATE
                             : a->type == CKA_SENSITIVE ? KWK_F_SENSITIVE
                                                        : KWK_F_EXTRACTABLE;
                o->flags = b ? o->flags | f : o->flags & ~f;
                break;
            }
            /* A token object, or a key this token could use, are beyond it: refused, not
             * quietly made otherwise (PKCS#11 3.0 4.1.1). */
            if ((a->type == CKA_MODIFIABLE || a->type == CKA_DESTROYABLE) ? !b : b)
                rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        default:
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
        }
    }
    return rv;
}

/* The peer's point: raw (04 || x || y) or wrapped in a DER OCTET STRING. */
static EVP_PKEY *peer_key(EVP_PKEY *own, const unsigned char *p, size_t len)
{
    char group[64];
    const unsigned char *q = p;
    long l;
    int tag, cls;
    if (len > 2 && p[0] == 0x04 && !(ASN1_get_object(&q, &l, &tag, &cls, (long)len) & 0x80) &&
        tag == V_ASN1_OCTET_STRING && q + l == p + len) {
        len = (size_t)l;
        p = q;
    }
    if (!EVP_PKEY_get_utf8_string_param(own, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL))
        return NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(kwk_libctx(), "EC", NULL);
    EVP_PKEY *pk = NULL;
    if (bld && c && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, p, len) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(c) > 0 &&
        EVP_PKEY_fromdata(c, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(c);
    return pk;
}

static CK_RV ecdh(const kwk_key *k, const CK_ECDH1_DERIVE_PARAMS *p, unsigned char *out,
                  size_t flen)
{
    CK_RV rv = CKR_MECHANISM_PARAM_INVALID;
    ERR_set_mark();
    EVP_PKEY *peer = peer_key(k->priv, p->pPublicData, p->ulPublicDataLen);
    EVP_PKEY_CTX *c = peer ? EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), k->priv, NULL) : NULL;
    size_t olen = flen;
    /* set_peer_ex(..., 1) checks the point is on the curve (no invalid-curve attack). */
    if (peer &&
        (c == NULL || EVP_PKEY_derive_init(c) <= 0 || EVP_PKEY_derive_set_peer_ex(c, peer, 1) <= 0))
        rv = CKR_MECHANISM_PARAM_INVALID;
    else if (peer && (EVP_PKEY_derive(c, out, &olen) <= 0 || olen != flen))
        rv = CKR_FUNCTION_FAILED;
    else if (peer)
        rv = CKR_OK;
    if (rv != CKR_OK)
        KW_DEBUG(KWK_COMP, "ECDH with key %d: %s", (int)k->serial,
                 rv == CKR_MECHANISM_PARAM_INVALID ? "the peer's point is not on the key's curve"
                                                   : "libcrypto failed");
    ERR_pop_to_mark();
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(peer);
    return rv;
}

CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                  CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_key k = {0};
    kwk_object o = {0};
    const CK_ECDH1_DERIVE_PARAMS *p = m ? m->pParameter : NULL;
    if (m == NULL || out == NULL || (tmpl == NULL && n > 0))
        rv = CKR_ARGUMENTS_BAD;
    else if (m->mechanism != CKM_ECDH1_DERIVE)
        rv = CKR_MECHANISM_INVALID;
    else if (p == NULL || m->ulParameterLen != sizeof(*p) || p->pPublicData == NULL ||
             p->ulPublicDataLen == 0 || p->ulPublicDataLen > 1024)
        rv = CKR_MECHANISM_PARAM_INVALID;
    else if (p->kdf != CKD_NULL || p->pSharedData != NULL || p->ulSharedDataLen != 0)
        rv = CKR_MECHANISM_PARAM_INVALID; /* no KDF: the raw shared secret, as TLS uses it */
    else if ((rv = kwk_object_key(s, base, &k)) != CKR_OK)
        ;
    else if (k.cls != CKO_PRIVATE_KEY || k.ktype != CKK_EC)
        rv = CKR_KEY_TYPE_INCONSISTENT;
    else if (!(k.flags & KWK_F_DERIVE))
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    else if (!kwk_mechs_allow(&k.mechs, CKM_ECDH1_DERIVE))
        rv = CKR_MECHANISM_INVALID; /* not in its CKA_ALLOWED_MECHANISMS */
    else if (k.priv == NULL)
        rv = CKR_KEY_HANDLE_INVALID;
    else
        rv = derive_template(tmpl, n, k.klen, &o);
    unsigned char *secret = rv == CKR_OK ? kw_secure_alloc(k.klen) : NULL;
    if (rv == CKR_OK && secret == NULL)
        rv = CKR_HOST_MEMORY;
    if (rv == CKR_OK)
        rv = ecdh(&k, p, secret, k.klen);
    if (rv == CKR_OK) {
        /* CKA_VALUE_LEN shorter than the secret keeps its leading bytes. */
        o.kind = KWK_KIND_SECRET;
        o.cls = CKO_SECRET_KEY;
        o.ktype = CKK_GENERIC_SECRET;
        o.owner = s->handle;
        o.der = secret;
        pthread_mutex_lock(&kwk_lock);
        rv = kwk_object_add_session(s->tok, &o);
        pthread_mutex_unlock(&kwk_lock);
        if (rv == CKR_OK) {
            secret = NULL; /* the object owns it */
            *out = o.handle;
            KW_TRACE(KWK_COMP, "ECDH with key %d: session object 0x%lx", (int)k.serial,
                     (unsigned long)o.handle);
        }
    }
    if (secret)
        kw_secure_free(secret, k.klen);
    kwk_key_clear(&k);
    kwk_session_put(s);
    return rv;
}
