/* SPDX-License-Identifier: Apache-2.0 */
/* C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal: the keyring is re-read at each search, so
 * keys loaded by other processes (keyward keyring import, a boot unit) show up. */
#include <stdlib.h>

#include "kwk.h"

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    if (s->finding) {
        kwk_session_put(s);
        return CKR_OPERATION_ACTIVE;
    }
    /* A value with a length but no pointer would be compared byte by byte. */
    rv = kwk_attr_check(tmpl, n);
    if (rv != CKR_OK) {
        kwk_session_put(s);
        return rv;
    }
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = s->tok;
    rv = kwk_objects_refresh(t);
    if (rv == CKR_OK) {
        free(s->found);
        s->found = calloc(t->nobjs ? t->nobjs : 1, sizeof(CK_OBJECT_HANDLE));
        s->nfound = s->found_pos = 0;
        if (s->found == NULL)
            rv = CKR_HOST_MEMORY;
        for (size_t i = 0; rv == CKR_OK && i < t->nobjs; i++)
            if (kwk_object_visible(s, &t->objs[i]) && kwk_object_match(t, &t->objs[i], tmpl, n))
                s->found[s->nfound++] = t->objs[i].handle;
        s->finding = rv == CKR_OK;
    }
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    if (out == NULL || count == NULL)
        rv = CKR_ARGUMENTS_BAD;
    else if (!s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else {
        CK_ULONG k = 0;
        while (k < max && s->found_pos < s->nfound)
            out[k++] = s->found[s->found_pos++];
        *count = k;
    }
    kwk_session_put(s);
    return rv;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    if (!s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    free(s->found);
    s->found = NULL;
    s->finding = 0;
    kwk_session_put(s);
    return rv;
}
