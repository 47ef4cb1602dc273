/* SPDX-License-Identifier: Apache-2.0 */
/* The object cache: keys in the token's keyring, read into a table of objects (their
 * descriptions decoded by desc.c, public payloads parsed), looked up by handle, and snapshotted
 * for operations. Handles are key serials, so they stay valid across sessions, processes and
 * fork. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "kw_secmem.h"
#include "kwk.h"

CK_KEY_TYPE kwk_pkey_ktype(const EVP_PKEY *pk)
{
    if (pk == NULL)
        return CK_UNAVAILABLE_INFORMATION;
    if (EVP_PKEY_is_a(pk, "RSA"))
        return CKK_RSA;
    if (EVP_PKEY_is_a(pk, "EC"))
        return CKK_EC;
    if (EVP_PKEY_is_a(pk, "ED25519") || EVP_PKEY_is_a(pk, "ED448"))
        return CKK_EC_EDWARDS;
    return CK_UNAVAILABLE_INFORMATION;
}

void kwk_object_free(kwk_object *o)
{
    EVP_PKEY_free(o->pub);
    EVP_PKEY_free(o->priv);
    if (o->der)
        kw_secure_free(o->der, o->der_len);
    memset(o, 0, sizeof(*o));
}

void kwk_objects_free(kwk_token *t)
{
    for (size_t i = 0; i < t->nobjs; i++)
        kwk_object_free(&t->objs[i]);
    free(t->objs);
    t->objs = NULL;
    t->nobjs = t->capobjs = 0;
}

static kwk_object *obj_append(kwk_token *t)
{
    if (t->nobjs == t->capobjs) {
        size_t cap = t->capobjs ? 2 * t->capobjs : 16;
        kwk_object *n = realloc(t->objs, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        t->objs = n;
        t->capobjs = cap;
    }
    kwk_object *o = &t->objs[t->nobjs++];
    memset(o, 0, sizeof(*o));
    return o;
}

kwk_object *kwk_object_find(kwk_token *t, CK_OBJECT_HANDLE h)
{
    for (size_t i = 0; i < t->nobjs; i++)
        if (t->objs[i].handle == h)
            return &t->objs[i];
    return NULL;
}

/* Read a public or certificate payload into the object. */
static int load_payload(kwk_object *o)
{
    unsigned char *buf;
    size_t len;
    const unsigned char *p;
    if (kwk_kr_read(o->serial, &buf, &len) != CKR_OK)
        return 0;
    p = buf;
    if (o->kind == KWK_KIND_PUB) {
        o->pub = d2i_PUBKEY_ex(NULL, &p, (long)len, kwk_libctx(), NULL);
    } else {
        X509 *x = d2i_X509(NULL, &p, (long)len);
        if (x) {
            o->pub = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    if (o->kind == KWK_KIND_PUB && o->pub == NULL) {
        kw_secure_free(buf, len + 1);
        return 0;
    }
    o->der = buf; /* secure buffer of len + 1 bytes; der_len tracks len */
    o->der_len = len;
    return 1;
}

CK_RV kwk_objects_refresh(kwk_token *t)
{
    kwk_serial *ids;
    size_t n;
    CK_RV rv = kwk_token_open(t);
    if (rv != CKR_OK)
        return rv;
    rv = kwk_kr_list(t->ring, &ids, &n);
    if (rv != CKR_OK)
        return rv;
    for (size_t i = 0; i < t->nobjs; i++)
        t->objs[i].seen = t->objs[i].kind == KWK_KIND_SECRET;
    kwk_serial metas[256][2];
    size_t nmeta = 0;
    for (size_t i = 0; i < n; i++) {
        kwk_object *o = NULL;
        for (size_t j = 0; j < t->nobjs; j++)
            if (t->objs[j].serial == ids[i] && t->objs[j].kind != KWK_KIND_SECRET)
                o = &t->objs[j];
        if (o) {
            o->seen = 1;
            o->meta = 0;
            continue;
        }
        char type[32], *desc = NULL, label[KWK_MAX_LABEL];
        kwk_kind kind;
        unsigned flags;
        kwk_serial link;
        unsigned char id[KWK_MAX_ID];
        size_t id_len;
        if (kwk_kr_describe(ids[i], type, sizeof(type), &desc) != CKR_OK)
            continue; /* not viewable: not ours to show */
        kwk_mechs mechs = {0};
        kwk_extra x;
        int ours = kwk_desc_parse(type, desc, &kind, &flags, &link, id, &id_len, label, &mechs, &x);
        free(desc);
        if (!ours)
            continue;
        if (kind == KWK_KIND_META) {
            if (nmeta < 256) {
                metas[nmeta][0] = link;
                metas[nmeta++][1] = ids[i];
            }
            continue;
        }
        o = obj_append(t);
        if (o == NULL) {
            free(ids);
            return CKR_HOST_MEMORY;
        }
        o->handle = (CK_OBJECT_HANDLE)ids[i];
        o->serial = ids[i];
        o->kind = kind;
        o->flags = flags;
        o->link = link;
        memcpy(o->id, id, id_len);
        o->id_len = id_len;
        memcpy(o->label, label, sizeof(label));
        o->mechs = mechs;
        o->x = x;
        o->seen = 1;
        o->cls = kind == KWK_KIND_PUB    ? CKO_PUBLIC_KEY
                 : kind == KWK_KIND_CERT ? CKO_CERTIFICATE
                                         : CKO_PRIVATE_KEY;
        if ((kind == KWK_KIND_PUB || kind == KWK_KIND_CERT) && !load_payload(o)) {
            t->nobjs--;
            kwk_object_free(o);
            continue;
        }
        o->ktype = kind == KWK_KIND_CERT ? CK_UNAVAILABLE_INFORMATION : kwk_pkey_ktype(o->pub);
    }
    free(ids);
    /* Drop objects whose keys are gone (compacting the array). */
    size_t w = 0;
    for (size_t i = 0; i < t->nobjs; i++) {
        if (t->objs[i].seen)
            t->objs[w++] = t->objs[i];
        else
            kwk_object_free(&t->objs[i]);
    }
    t->nobjs = w;
    /* Private keys take their public half from the linked public key. */
    for (size_t i = 0; i < t->nobjs; i++) {
        kwk_object *o = &t->objs[i];
        if ((o->kind != KWK_KIND_PRIV && o->kind != KWK_KIND_SOFT) || o->pub)
            continue;
        kwk_object *p = NULL;
        for (size_t j = 0; j < t->nobjs; j++)
            if (t->objs[j].serial == o->link && t->objs[j].kind == KWK_KIND_PUB)
                p = &t->objs[j];
        if (p && EVP_PKEY_up_ref(p->pub)) {
            o->pub = p->pub;
            o->ktype = kwk_pkey_ktype(o->pub);
        } else {
            o->ktype = o->kind == KWK_KIND_PRIV ? CKK_RSA : CK_UNAVAILABLE_INFORMATION;
        }
    }
    /* Label/ID overrides written by C_SetAttributeValue. */
    for (size_t m = 0; m < nmeta; m++) {
        kwk_object *o = kwk_object_find(t, (CK_OBJECT_HANDLE)metas[m][0]);
        unsigned char *buf;
        size_t len;
        if (o == NULL || kwk_kr_read(metas[m][1], &buf, &len) != CKR_OK)
            continue;
        char type[] = "user", d[4200];
        kwk_kind kind;
        unsigned flags;
        kwk_serial link;
        snprintf(d, sizeof(d), "%.*s", (int)len, (const char *)buf);
        kw_secure_free(buf, len + 1);
        if (kwk_desc_parse(type, d, &kind, &flags, &link, o->id, &o->id_len, o->label, NULL, NULL))
            o->meta = metas[m][1];
    }
    return CKR_OK;
}

int kwk_object_visible(const kwk_session *s, const kwk_object *o)
{
    if (o->kind == KWK_KIND_SECRET && o->owner != s->handle)
        return 0;
    return !(o->flags & KWK_F_PRIVATE) || !kwk_token_need_login(s->tok);
}

CK_RV kwk_object_add_session(kwk_token *t, kwk_object *src)
{
    static CK_OBJECT_HANDLE next = 1;
    kwk_object *o = obj_append(t);
    if (o == NULL)
        return CKR_HOST_MEMORY;
    *o = *src;
    o->handle = 0x80000000UL | next++;
    o->seen = 1;
    src->handle = o->handle;
    return CKR_OK;
}

void kwk_objects_drop_session(kwk_token *t, CK_SESSION_HANDLE owner)
{
    size_t w = 0;
    for (size_t i = 0; i < t->nobjs; i++) {
        if (t->objs[i].kind == KWK_KIND_SECRET && t->objs[i].owner == owner)
            kwk_object_free(&t->objs[i]);
        else
            t->objs[w++] = t->objs[i];
    }
    t->nobjs = w;
}

CK_RV kwk_object_key(kwk_session *s, CK_OBJECT_HANDLE h, kwk_key *out)
{
    kwk_token *t = s->tok;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&kwk_lock);
    kwk_object *o = kwk_object_find(t, h);
    if (o == NULL && kwk_objects_refresh(t) == CKR_OK)
        o = kwk_object_find(t, h);
    CK_RV rv = CKR_OK;
    if (o == NULL || o->kind == KWK_KIND_CERT || o->kind == KWK_KIND_SECRET)
        rv = CKR_KEY_HANDLE_INVALID;
    else if (!kwk_object_visible(s, o))
        rv = CKR_USER_NOT_LOGGED_IN;
    else if (o->pub == NULL)
        rv = CKR_KEY_HANDLE_INVALID; /* private key whose public half was removed */
    else if (o->kind == KWK_KIND_SOFT && !kwk_kr_readable(o->serial)) {
        /* Removed, revoked or no longer possessed since it was decoded: the cached key goes. */
        EVP_PKEY_free(o->priv);
        o->priv = NULL;
        rv = CKR_KEY_HANDLE_INVALID;
    } else if (o->kind == KWK_KIND_SOFT && o->priv == NULL)
        rv = kwk_soft_load(o->serial, &o->priv);
    if (rv == CKR_OK) {
        out->cls = o->cls;
        out->ktype = o->ktype;
        out->mode = o->kind == KWK_KIND_PRIV   ? KWK_MODE_KERNEL
                    : o->kind == KWK_KIND_SOFT ? KWK_MODE_SOFTWARE
                                               : KWK_MODE_NONE;
        out->serial = o->serial;
        out->flags = o->flags;
        EVP_PKEY_up_ref(o->pub);
        out->pub = o->pub;
        if (o->priv && EVP_PKEY_up_ref(o->priv))
            out->priv = o->priv;
        out->mechs = o->mechs;
        out->bits = (size_t)EVP_PKEY_get_bits(o->pub);
        out->klen = (out->bits + 7) / 8;
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}
