/* SPDX-License-Identifier: Apache-2.0 */
/* The object entry points that read or change one object by handle: C_GetAttributeValue,
 * C_SetAttributeValue, C_GetObjectSize. The values themselves are attr_value.c's. */
#include <pthread.h>

#include "kwk.h"

static CK_RV object_from_session(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, kwk_session **s,
                                 kwk_object **o)
{
    CK_RV rv = kwk_session_get(h, s);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&kwk_lock);
    *o = kwk_object_find((*s)->tok, oh);
    if (*o == NULL && kwk_objects_refresh((*s)->tok) == CKR_OK)
        *o = kwk_object_find((*s)->tok, oh);
    if (*o == NULL || !kwk_object_visible(*s, *o)) {
        pthread_mutex_unlock(&kwk_lock);
        kwk_session_put(*s);
        return CKR_OBJECT_HANDLE_INVALID;
    }
    return CKR_OK; /* kwk_lock held */
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl,
                          CK_ULONG n)
{
    kwk_session *s;
    kwk_object *o;
    if (tmpl == NULL && n > 0)
        return kwk_initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
    CK_RV rv = object_from_session(h, oh, &s, &o);
    if (rv != CKR_OK)
        return rv;
    rv = kwk_object_get_attrs(s->tok, o, tmpl, n);
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl,
                          CK_ULONG n)
{
    kwk_session *s;
    kwk_object *o;
    CK_RV rv = kwk_initialized() ? kwk_attr_check(tmpl, n) : CKR_CRYPTOKI_NOT_INITIALIZED;
    if (rv != CKR_OK)
        return rv;
    rv = object_from_session(h, oh, &s, &o);
    if (rv != CKR_OK)
        return rv;
    if (o->kind != KWK_KIND_SECRET && !(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    else
        rv = kwk_object_set_attrs(s->tok, o, tmpl, n);
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ULONG_PTR size)
{
    kwk_session *s;
    kwk_object *o;
    if (size == NULL)
        return kwk_initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
    CK_RV rv = object_from_session(h, oh, &s, &o);
    if (rv != CKR_OK)
        return rv;
    *size = CK_UNAVAILABLE_INFORMATION;
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return CKR_OK;
}
