/* SPDX-License-Identifier: Apache-2.0 */
/* Reading caller templates and answering C_GetAttributeValue, with PKCS#11's rules for sizes. */
#include <string.h>

#include "kwk.h"

CK_RV kwk_attr_check(const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    if (tmpl == NULL && n > 0)
        return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].pValue == NULL && tmpl[i].ulValueLen > 0 &&
            tmpl[i].ulValueLen != CK_UNAVAILABLE_INFORMATION)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    return CKR_OK;
}

const CK_ATTRIBUTE *kwk_attr_get(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE t)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == t)
            return &tmpl[i];
    return NULL;
}

CK_RV kwk_attr_bool(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE t, int *val)
{
    const CK_ATTRIBUTE *a = kwk_attr_get(tmpl, n, t);
    if (a == NULL)
        return CKR_TEMPLATE_INCOMPLETE; /* callers treat this as "absent" */
    if (a->ulValueLen != sizeof(CK_BBOOL) || a->pValue == NULL)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    CK_BBOOL b = *(const CK_BBOOL *)a->pValue;
    if (b != CK_TRUE && b != CK_FALSE)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *val = b == CK_TRUE;
    return CKR_OK;
}

CK_RV kwk_attr_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE t, CK_ULONG *val)
{
    const CK_ATTRIBUTE *a = kwk_attr_get(tmpl, n, t);
    if (a == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    if (a->ulValueLen != sizeof(CK_ULONG) || a->pValue == NULL)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    memcpy(val, a->pValue, sizeof(CK_ULONG));
    return CKR_OK;
}

CK_RV kwk_attr_mechs(const CK_ATTRIBUTE *a, kwk_mechs *out)
{
    size_t n = a->ulValueLen / sizeof(CK_MECHANISM_TYPE);
    if (a->ulValueLen % sizeof(CK_MECHANISM_TYPE) || n > KWK_MAX_MECHS || (n && a->pValue == NULL))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (n)
        memcpy(out->m, a->pValue, n * sizeof(CK_MECHANISM_TYPE));
    out->n = n;
    return CKR_OK;
}

int kwk_mechs_allow(const kwk_mechs *l, CK_MECHANISM_TYPE m)
{
    if (l->n == 0)
        return 1;
    for (size_t i = 0; i < l->n; i++)
        if (l->m[i] == m)
            return 1;
    return 0;
}

CK_RV kwk_attr_put(CK_ATTRIBUTE *a, const void *val, size_t len)
{
    if (a->pValue == NULL) {
        a->ulValueLen = len;
        return CKR_OK;
    }
    if (a->ulValueLen < len) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (len)
        memcpy(a->pValue, val, len);
    a->ulValueLen = len;
    return CKR_OK;
}

CK_RV kwk_attr_put_bool(CK_ATTRIBUTE *a, int v)
{
    CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
    return kwk_attr_put(a, &b, sizeof(b));
}

CK_RV kwk_attr_put_ulong(CK_ATTRIBUTE *a, CK_ULONG v)
{
    return kwk_attr_put(a, &v, sizeof(v));
}

int kwk_attr_type_in(CK_ATTRIBUTE_TYPE t, const CK_ATTRIBUTE_TYPE *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == t)
            return 1;
    return 0;
}
