/* SPDX-License-Identifier: Apache-2.0 */
/* Templates of new objects (C_CreateObject, C_GenerateKeyPair) checked strictly: unknown
 * attributes, wrong sizes and values the keyring token cannot honour (an extractable or
 * non-sensitive private key) are refused with the PKCS#11 code that names the problem. */
#include <string.h>

#include <openssl/objects.h>

#include "kwk.h"

static int all_digits(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

CK_RV kwk_tmpl_common(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_CLASS cls, kwk_new_obj *m,
                      const CK_ATTRIBUTE_TYPE *extra, size_t nextra)
{
    int priv = cls == CKO_PRIVATE_KEY;
    CK_RV rv = kwk_attr_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    memset(m, 0, sizeof(*m));
    m->flags = priv ? (KWK_F_SIGN | KWK_F_DECRYPT | KWK_F_DERIVE | KWK_F_PRIVATE) : 0;
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        int b = 0;
        CK_ULONG u;
        switch (a->type) {
        case CKA_CLASS:
            if ((rv = kwk_attr_ulong(a, 1, CKA_CLASS, &u)) != CKR_OK)
                return rv;
            if (u != cls)
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        case CKA_LABEL:
            if (a->ulValueLen >= KWK_MAX_LABEL ||
                (a->ulValueLen && memchr(a->pValue, '\0', a->ulValueLen)))
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(m->label, a->pValue, a->ulValueLen);
            m->label[a->ulValueLen] = '\0';
            continue;
        case CKA_ID:
            if (a->ulValueLen > KWK_MAX_ID)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(m->id, a->pValue, a->ulValueLen);
            m->id_len = a->ulValueLen;
            continue;
        case CKA_START_DATE:
        case CKA_END_DATE: {
            /* Kept in the description as given: empty, or a CK_DATE of 8 digits (YYYYMMDD, what
             * PKCS#11 defines; anything else could not be kept as it is). */
            unsigned char *d = a->type == CKA_START_DATE ? m->x.start : m->x.end;
            if (a->ulValueLen != 0 && (a->ulValueLen != 8 || !all_digits(a->pValue, 8)))
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(d, a->pValue, 8);
            *(a->type == CKA_START_DATE ? &m->x.start_len : &m->x.end_len) = a->ulValueLen;
            continue;
        }
        case CKA_SUBJECT:
            /* A certificate's must be its certificate's (create_cert checks it); a key's is kept
             * in the description (read back as given, found by it), up to KWK_MAX_SUBJECT bytes
             * (the description is at most 4095 bytes): a longer one is refused, not cut. */
            if (cls == CKO_CERTIFICATE)
                continue;
            if (a->ulValueLen > KWK_MAX_SUBJECT)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(m->x.subject, a->pValue, a->ulValueLen);
            m->x.subject_len = a->ulValueLen;
            continue;
        case CKA_ALLOWED_MECHANISMS:
            /* Kept with the key and enforced when an operation starts (an RSA-PSS key from
             * the provider lists only the PSS mechanisms). */
            if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
                return CKR_ATTRIBUTE_TYPE_INVALID;
            if ((rv = kwk_attr_mechs(a, &m->mechs)) != CKR_OK)
                return rv;
            continue;
        case CKA_LOCAL:
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_KEYWARD_MODE:
        case CKA_KEYWARD_SERIAL:
            return CKR_ATTRIBUTE_READ_ONLY;
        }
        if (kwk_attr_type_in(a->type, extra, nextra))
            continue;
        /* Booleans. */
        switch (a->type) {
        case CKA_TOKEN:
        case CKA_PRIVATE:
        case CKA_MODIFIABLE:
        case CKA_DESTROYABLE:
        case CKA_COPYABLE:
        case CKA_SENSITIVE:
        case CKA_EXTRACTABLE:
        case CKA_SIGN:
        case CKA_DECRYPT:
        case CKA_DERIVE:
        case CKA_UNWRAP:
        case CKA_SIGN_RECOVER:
        case CKA_ALWAYS_AUTHENTICATE:
        case CKA_WRAP_WITH_TRUSTED:
        case CKA_VERIFY:
        case CKA_ENCRYPT:
        case CKA_WRAP:
        case CKA_VERIFY_RECOVER:
        case CKA_TRUSTED:
            if ((rv = kwk_attr_bool(a, 1, a->type, &b)) != CKR_OK)
                return rv;
            break;
        default:
            return CKR_ATTRIBUTE_TYPE_INVALID;
        }
        int is_priv_attr = a->type == CKA_SENSITIVE || a->type == CKA_EXTRACTABLE ||
                           a->type == CKA_SIGN || a->type == CKA_DECRYPT || a->type == CKA_UNWRAP ||
                           a->type == CKA_SIGN_RECOVER || a->type == CKA_ALWAYS_AUTHENTICATE ||
                           a->type == CKA_WRAP_WITH_TRUSTED;
        int is_pub_attr = a->type == CKA_VERIFY || a->type == CKA_ENCRYPT || a->type == CKA_WRAP ||
                          a->type == CKA_VERIFY_RECOVER;
        if ((is_priv_attr && !priv) || (is_pub_attr && cls != CKO_PUBLIC_KEY) ||
            (a->type == CKA_DERIVE && cls == CKO_CERTIFICATE) ||
            (a->type == CKA_TRUSTED && cls == CKO_PRIVATE_KEY))
            return CKR_ATTRIBUTE_TYPE_INVALID;
        /* Session objects are not kept by this token (keys and certificates live in the
         * keyring); a key whose verification cannot be turned off: inconsistent templates. */
        if ((a->type == CKA_TOKEN && !b) || (a->type == CKA_VERIFY && !b))
            return CKR_TEMPLATE_INCONSISTENT;
        /* Values the keyring token cannot honour. */
        if ((a->type == CKA_SENSITIVE && !b) || (a->type == CKA_EXTRACTABLE && b) ||
            (a->type == CKA_COPYABLE && b) || (a->type == CKA_DESTROYABLE && !b) ||
            (a->type == CKA_ALWAYS_AUTHENTICATE && b) || (a->type == CKA_UNWRAP && b) ||
            (a->type == CKA_SIGN_RECOVER && b) || (a->type == CKA_WRAP && b) ||
            (a->type == CKA_VERIFY_RECOVER && b) || (a->type == CKA_TRUSTED && b) ||
            (a->type == CKA_WRAP_WITH_TRUSTED && b))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        /* CKA_MODIFIABLE=FALSE is kept (a flag in the description) and honoured: the object's
         * label and ID can then not be changed (C_SetAttributeValue: CKR_ACTION_PROHIBITED). */
        if (a->type == CKA_MODIFIABLE) {
            m->flags = b ? m->flags & ~(unsigned)KWK_F_READONLY : m->flags | KWK_F_READONLY;
            continue;
        }
        unsigned f = a->type == CKA_SIGN      ? KWK_F_SIGN
                     : a->type == CKA_ENCRYPT ? KWK_F_ENCRYPT
                     : a->type == CKA_DECRYPT ? KWK_F_DECRYPT
                     : a->type == CKA_DERIVE  ? KWK_F_DERIVE
                     : a->type == CKA_PRIVATE ? KWK_F_PRIVATE
                                              : 0;
        if (f && b)
            m->flags |= f;
        else if (f)
            m->flags &= ~f;
    }
    return CKR_OK;
}

CK_RV kwk_tmpl_usage(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                     unsigned *flags)
{
    int b;
    if (cls == CKO_PUBLIC_KEY && kt != CKK_RSA && kwk_attr_bool(t, n, CKA_ENCRYPT, &b) == CKR_OK &&
        b)
        return CKR_TEMPLATE_INCONSISTENT;
    if (cls == CKO_PRIVATE_KEY && kt != CKK_RSA && kwk_attr_bool(t, n, CKA_DECRYPT, &b) == CKR_OK &&
        b)
        return CKR_TEMPLATE_INCONSISTENT;
    if (kt == CKK_RSA && kwk_attr_bool(t, n, CKA_DERIVE, &b) == CKR_OK && b)
        return CKR_TEMPLATE_INCONSISTENT;
    /* Defaults by key type: decryption for RSA, derivation for EC (and for an Edwards key only
     * when asked: pkcs11-tool asks, and the value is then kept as given). */
    if (kt != CKK_RSA)
        *flags &= ~(unsigned)KWK_F_DECRYPT;
    if (kt != CKK_EC && kwk_attr_bool(t, n, CKA_DERIVE, &b) != CKR_OK)
        *flags &= ~(unsigned)KWK_F_DERIVE;
    return CKR_OK;
}

const char *kwk_curve_name(const CK_ATTRIBUTE *params, int *edwards)
{
    const unsigned char *p = params ? params->pValue : NULL;
    *edwards = 0;
    if (p == NULL || params->ulValueLen < 2)
        return NULL;
    if (p[0] == 0x13) { /* PrintableString curve name (PKCS#11 3.0 allows it for Edwards) */
        size_t l = params->ulValueLen - 2;
        if (p[1] != l)
            return NULL;
        if (l == 12 && memcmp(p + 2, "edwards25519", 12) == 0)
            return *edwards = 1, "ED25519";
        if (l == 10 && memcmp(p + 2, "edwards448", 10) == 0)
            return *edwards = 1, "ED448";
        return NULL;
    }
    ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)params->ulValueLen);
    int nid = obj ? OBJ_obj2nid(obj) : NID_undef;
    ASN1_OBJECT_free(obj);
    if (p != (const unsigned char *)params->pValue + params->ulValueLen)
        return NULL;
    switch (nid) {
    case NID_X9_62_prime256v1:
        return "P-256";
    case NID_secp384r1:
        return "P-384";
    case NID_secp521r1:
        return "P-521";
    case NID_ED25519:
        return *edwards = 1, "ED25519";
    case NID_ED448:
        return *edwards = 1, "ED448";
    }
    return NULL;
}
