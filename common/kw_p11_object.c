/* SPDX-License-Identifier: Apache-2.0 */
/* Objects through a session the caller holds: searches and attribute reads. */
#include <stdlib.h>

#include "kw_log.h"
#include "kw_p11_int.h"

kw_err kw_p11_find(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                   CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
    kw_p11_module *mod = tok->mod;
    CK_RV rv;

    *count = 0;
    rv = KW_P11_CALL(mod, C_FindObjectsInit, s, tmpl, n);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_FindObjectsInit", "searching objects");
    rv = KW_P11_CALL(mod, C_FindObjects, s, out, max, count);
    (void)KW_P11_CALL(mod, C_FindObjectsFinal, s);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_FindObjects", "searching objects");
    return KW_OK;
}

kw_err kw_p11_attr(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                   unsigned char **val, CK_ULONG *len)
{
    kw_p11_module *mod = tok->mod;
    CK_ATTRIBUTE a = {t, NULL, 0};
    CK_RV rv;

    *val = NULL;
    *len = 0;
    rv = KW_P11_CALL(mod, C_GetAttributeValue, s, o, &a, 1);
    /* Absence is an answer, not an error: callers probe for optional attributes. */
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        KW_TRACE("p11", "attribute 0x%lx not available", (unsigned long)t);
        return KW_ERR_INVALID;
    }
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1);
    if (a.pValue == NULL)
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    rv = KW_P11_CALL(mod, C_GetAttributeValue, s, o, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return KW_OK;
}

/* A fixed-size attribute into the caller's variable. */
static kw_err attr_fixed(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                         CK_ATTRIBUTE_TYPE t, void *v, CK_ULONG len)
{
    CK_ATTRIBUTE a = {t, v, len};
    CK_RV rv = KW_P11_CALL(tok->mod, C_GetAttributeValue, s, o, &a, 1);
    if (rv != CKR_OK)
        return kw_p11_fail(rv, "C_GetAttributeValue", "reading attribute 0x%lx", (unsigned long)t);
    return KW_OK;
}

kw_err kw_p11_attr_ulong(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                         CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
    return attr_fixed(tok, s, o, t, v, sizeof(*v));
}

kw_err kw_p11_attr_bool(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                        CK_ATTRIBUTE_TYPE t, CK_BBOOL *v)
{
    return attr_fixed(tok, s, o, t, v, sizeof(*v));
}
