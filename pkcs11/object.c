/* SPDX-License-Identifier: Apache-2.0 */
/* The object model: keys in the token's keyring, read into a cache of objects; attributes of
 * each object answered from the key's description and public payload. Handles are key serials,
 * so they stay valid across sessions, processes and fork. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

static const char *kind_names[] = {[KWK_KIND_PRIV] = "priv",
                                   [KWK_KIND_SOFT] = "soft",
                                   [KWK_KIND_PUB] = "pub",
                                   [KWK_KIND_CERT] = "cert",
                                   [KWK_KIND_META] = "meta"};
/* Bit i of the flags. Lower case only: upper-case hex after a '/' is the mechanism list, and
 * the extra attributes are upper case too, which older parsers (that skip unknown characters)
 * must not take for flags. */
static const char flag_chars[] = "lsdxper";
static const char hexdigits[] = "0123456789ABCDEF";

int kwk_desc_format(char *out, size_t cap, kwk_kind kind, unsigned flags, kwk_serial link,
                    const unsigned char *id, size_t id_len, const char *label,
                    const kwk_mechs *mechs, const kwk_extra *x)
{
    /* flag letters, the extra attributes ("+" tag value), then "/" and the allowed mechanisms,
     * comma-separated */
    char f[96 + 2 * KWK_MAX_SUBJECT + (2 * sizeof(CK_MECHANISM_TYPE) + 1) * KWK_MAX_MECHS],
        hex[2 * KWK_MAX_ID + 1];
    size_t nf = 0;
    for (int i = 0; flag_chars[i]; i++)
        if (flags & (1u << i))
            f[nf++] = flag_chars[i];
    if (nf == 0)
        f[nf++] = '-';
    if (x && x->subject_len) {
        f[nf++] = '+';
        f[nf++] = 'S';
        for (size_t i = 0; i < x->subject_len && i < KWK_MAX_SUBJECT; i++) {
            f[nf++] = hexdigits[x->subject[i] >> 4];
            f[nf++] = hexdigits[x->subject[i] & 15];
        }
    }
    if (x && x->start_len == 8)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+B%.8s", (const char *)x->start);
    if (x && x->end_len == 8)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+E%.8s", (const char *)x->end);
    if (x && x->category)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "+C%lu", (unsigned long)x->category);
    for (size_t i = 0; mechs && i < mechs->n && i < KWK_MAX_MECHS; i++)
        nf += (size_t)snprintf(f + nf, sizeof(f) - nf, "%c%lX", i ? ',' : '/',
                               (unsigned long)mechs->m[i]);
    f[nf] = '\0';
    for (size_t i = 0; i < id_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    hex[2 * id_len] = '\0';
    int n =
        snprintf(out, cap, "keyward:%s:%s:%d:%s:%s", kind_names[kind], f, (int)link, hex, label);
    return n > 0 && (size_t)n < cap;
}

/* "/1,D,43" after the flag letters: the key's CKA_ALLOWED_MECHANISMS. A list that does not
 * parse makes the key not ours (hidden), never a key without limits. */
static int parse_mechs(const char *p, kwk_mechs *mechs)
{
    kwk_mechs l = {0};
    for (;;) {
        unsigned long v = 0;
        size_t nd = 0;
        const char *d;
        for (; *p && (d = strchr(hexdigits, *p)) != NULL; p++, nd++)
            v = (v << 4) | (unsigned long)(d - hexdigits);
        if (nd == 0 || nd > 2 * sizeof(CK_MECHANISM_TYPE) || l.n == KWK_MAX_MECHS ||
            (*p != ',' && *p != '\0'))
            return 0;
        l.m[l.n++] = (CK_MECHANISM_TYPE)v;
        if (*p++ == '\0')
            break;
    }
    if (mechs)
        *mechs = l;
    return 1;
}

/* "+S3081..+B20260101" (what follows the flag letters, up to the '/'): the extra attributes. As
 * with the mechanisms, one that does not parse hides the key. */
static int parse_extra(char *p, kwk_extra *x)
{
    while (p) {
        char *next = strchr(p, '+'), tag = *p;
        size_t n;
        if (next)
            *next++ = '\0';
        if (tag == '\0')
            return 0;
        n = strlen(++p);
        if (tag == 'S' && n && n % 2 == 0 && n / 2 <= KWK_MAX_SUBJECT) {
            for (size_t i = 0; i < n; i += 2) {
                const char *hi = strchr(hexdigits, p[i]), *lo = strchr(hexdigits, p[i + 1]);
                if (hi == NULL || lo == NULL)
                    return 0;
                x->subject[i / 2] = (unsigned char)((hi - hexdigits) << 4 | (lo - hexdigits));
            }
            x->subject_len = n / 2;
        } else if ((tag == 'B' || tag == 'E') && n == 8 && strspn(p, "0123456789") == 8) {
            memcpy(tag == 'B' ? x->start : x->end, p, 8);
            *(tag == 'B' ? &x->start_len : &x->end_len) = 8;
        } else if (tag == 'C' && n == 1 && *p >= '1' && *p <= '3') {
            x->category = (CK_ULONG)(*p - '0');
        } else {
            return 0;
        }
        p = next;
    }
    return 1;
}

int kwk_desc_parse(const char *type, const char *desc, kwk_kind *kind, unsigned *flags,
                   kwk_serial *link, unsigned char *id, size_t *id_len, char *label,
                   kwk_mechs *mechs, kwk_extra *x)
{
    char buf[4200];
    char *f[6], *p = buf;
    kwk_extra unused;
    if (mechs)
        mechs->n = 0;
    if (x == NULL)
        x = &unused;
    memset(x, 0, sizeof(*x));
    if (strncmp(desc, "keyward:", 8) != 0 || strlen(desc) >= sizeof(buf))
        return 0;
    strcpy(buf, desc + 8);
    for (int i = 0; i < 4; i++) {
        f[i] = p;
        p = strchr(p, ':');
        if (p == NULL)
            return 0;
        *p++ = '\0';
    }
    f[4] = p; /* the label may hold colons */
    *kind = 0;
    for (int k = KWK_KIND_PRIV; k <= KWK_KIND_META; k++)
        if (strcmp(f[0], kind_names[k]) == 0)
            *kind = k;
    if (*kind == 0 || (*kind == KWK_KIND_PRIV) != (strcmp(type, "asymmetric") == 0) ||
        (*kind != KWK_KIND_PRIV && strcmp(type, "user") != 0))
        return 0;
    char *ml = strchr(f[1], '/');
    if (ml) {
        *ml++ = '\0';
        if (!parse_mechs(ml, mechs))
            return 0;
    }
    char *extra = strchr(f[1], '+');
    if (extra) {
        *extra++ = '\0';
        if (!parse_extra(extra, x))
            return 0;
    }
    *flags = 0;
    for (const char *c = f[1]; *c; c++) {
        const char *q = strchr(flag_chars, *c);
        if (q)
            *flags |= 1u << (q - flag_chars);
    }
    *link = (kwk_serial)strtol(f[2], NULL, 10);
    size_t hl = strlen(f[3]);
    if (hl % 2 || hl / 2 > KWK_MAX_ID)
        return 0;
    for (size_t i = 0; i < hl / 2; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)f[3][2 * i]) || !isxdigit((unsigned char)f[3][2 * i + 1]) ||
            sscanf(f[3] + 2 * i, "%2x", &v) != 1)
            return 0;
        id[i] = (unsigned char)v;
    }
    *id_len = hl / 2;
    snprintf(label, KWK_MAX_LABEL, "%s", f[4]);
    return 1;
}

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

/* ---- attribute values ---- */

typedef struct {
    unsigned char small[sizeof(CK_ULONG)];
    unsigned char *heap;
    const unsigned char *p;
    size_t len;
} aval;

static void aval_free(aval *v)
{
    OPENSSL_free(v->heap);
}

static CK_RV v_bool(aval *v, int b)
{
    v->small[0] = b ? CK_TRUE : CK_FALSE;
    v->p = v->small;
    v->len = 1;
    return CKR_OK;
}
static CK_RV v_ulong(aval *v, CK_ULONG u)
{
    memcpy(v->small, &u, sizeof(u));
    v->p = v->small;
    v->len = sizeof(u);
    return CKR_OK;
}
static CK_RV v_bytes(aval *v, const void *p, size_t len)
{
    v->p = p;
    v->len = len;
    return CKR_OK;
}
static CK_RV v_heap(aval *v, unsigned char *p, int len)
{
    if (len < 0 || p == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    v->heap = p;
    v->p = p;
    v->len = (size_t)len;
    return CKR_OK;
}

static CK_RV v_bn(aval *v, EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pk, name, &bn))
        return CKR_ATTRIBUTE_TYPE_INVALID;
    int n = BN_num_bytes(bn);
    unsigned char *b = OPENSSL_malloc(n ? (size_t)n : 1);
    if (b)
        BN_bn2bin(bn, b);
    BN_free(bn);
    return v_heap(v, b, n);
}

/* CKA_EC_PARAMS: DER OID of the curve. */
static CK_RV v_ec_params(aval *v, EVP_PKEY *pk)
{
    char name[64];
    int nid;
    if (EVP_PKEY_is_a(pk, "ED25519"))
        nid = NID_ED25519;
    else if (EVP_PKEY_is_a(pk, "ED448"))
        nid = NID_ED448;
    else if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                            NULL))
        nid = OBJ_txt2nid(name);
    else
        return CKR_ATTRIBUTE_TYPE_INVALID;
    unsigned char *der = NULL;
    int len = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der);
    return v_heap(v, der, len);
}

/* CKA_EC_POINT: the public point (or Edwards key) as a DER OCTET STRING. */
static CK_RV v_ec_point(aval *v, EVP_PKEY *pk)
{
    unsigned char pt[256];
    size_t len = sizeof(pt);
    if (EVP_PKEY_is_a(pk, "EC")) {
        if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
                                             &len))
            return CKR_ATTRIBUTE_TYPE_INVALID;
    } else if (!EVP_PKEY_get_raw_public_key(pk, pt, &len)) {
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int dl = -1;
    if (os && ASN1_OCTET_STRING_set(os, pt, (int)len))
        dl = i2d_ASN1_OCTET_STRING(os, &der);
    ASN1_OCTET_STRING_free(os);
    return v_heap(v, der, dl);
}

static CK_RV v_cert_field(aval *v, const kwk_object *o, CK_ATTRIBUTE_TYPE type)
{
    if (type == CKA_CHECK_VALUE) { /* the first 3 bytes of the SHA-1 of CKA_VALUE */
        unsigned char md[EVP_MAX_MD_SIZE], *cv = OPENSSL_malloc(3);
        const EVP_MD *sha1 = kwk_md(CKM_SHA_1);
        if (cv == NULL || sha1 == NULL || !EVP_Digest(o->der, o->der_len, md, NULL, sha1, NULL)) {
            OPENSSL_free(cv);
            return kwk_rv_ossl("certificate check value");
        }
        memcpy(cv, md, 3);
        return v_heap(v, cv, 3);
    }
    const unsigned char *p = o->der;
    X509 *x = d2i_X509(NULL, &p, (long)o->der_len);
    unsigned char *der = NULL;
    int len = -1;
    if (x == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    if (type == CKA_SUBJECT)
        len = i2d_X509_NAME(X509_get_subject_name(x), &der);
    else if (type == CKA_ISSUER)
        len = i2d_X509_NAME(X509_get_issuer_name(x), &der);
    else
        len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der);
    X509_free(x);
    return v_heap(v, der, len);
}

static CK_RV attr_value(const kwk_object *o, CK_ATTRIBUTE_TYPE type, aval *v)
{
    int priv = o->cls == CKO_PRIVATE_KEY, pubk = o->cls == CKO_PUBLIC_KEY;
    int key = priv || pubk || o->cls == CKO_SECRET_KEY;
    int local = (o->flags & KWK_F_LOCAL) != 0;

    switch (type) {
    case CKA_CLASS:
        return v_ulong(v, o->cls);
    case CKA_TOKEN:
        return v_bool(v, o->kind != KWK_KIND_SECRET);
    case CKA_PRIVATE:
        return v_bool(v, (o->flags & KWK_F_PRIVATE) != 0);
    case CKA_MODIFIABLE:
        return v_bool(v, !(o->flags & KWK_F_READONLY));
    case CKA_DESTROYABLE:
        return v_bool(v, 1);
    case CKA_COPYABLE:
        return v_bool(v, 0);
    case CKA_LABEL:
        return v_bytes(v, o->label, strlen(o->label));
    case CKA_KEYWARD_SERIAL:
        return v_ulong(v, (CK_ULONG)o->serial);
    case CKA_ID:
        if (o->cls == CKO_SECRET_KEY)
            break;
        return v_bytes(v, o->id, o->id_len);
    case CKA_START_DATE:
        return v_bytes(v, o->x.start, o->x.start_len);
    case CKA_END_DATE:
        return v_bytes(v, o->x.end, o->x.end_len);
    }
    if (o->cls == CKO_CERTIFICATE) {
        switch (type) {
        case CKA_CERTIFICATE_TYPE:
            return v_ulong(v, CKC_X_509);
        case CKA_CERTIFICATE_CATEGORY:
            return v_ulong(v, o->x.category);
        case CKA_JAVA_MIDP_SECURITY_DOMAIN:
            return v_ulong(v, 0);
        case CKA_TRUSTED:
            return v_bool(v, 0);
        case CKA_VALUE:
            return v_bytes(v, o->der, o->der_len);
        case CKA_URL: /* the certificate itself is here: no URL, no hashes standing in for it */
        case CKA_HASH_OF_SUBJECT_PUBLIC_KEY:
        case CKA_HASH_OF_ISSUER_PUBLIC_KEY:
            return v_bytes(v, "", 0);
        case CKA_SUBJECT:
        case CKA_ISSUER:
        case CKA_SERIAL_NUMBER:
        case CKA_CHECK_VALUE:
            return v_cert_field(v, o, type);
        }
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    if (!key)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    switch (type) {
    case CKA_KEY_TYPE:
        return v_ulong(v, o->ktype);
    case CKA_LOCAL:
        return v_bool(v, local);
    case CKA_ALLOWED_MECHANISMS:
        /* empty: no list, every mechanism of the key's type (as SoftHSM2 answers) */
        return v_bytes(v, o->mechs.m, o->mechs.n * sizeof(CK_MECHANISM_TYPE));
    case CKA_DERIVE:
        return v_bool(v, (priv || pubk) && o->ktype != CKK_RSA && (o->flags & KWK_F_DERIVE));
    case CKA_KEY_GEN_MECHANISM:
        if (!local)
            return v_ulong(v, CK_UNAVAILABLE_INFORMATION);
        return v_ulong(v, o->ktype == CKK_RSA  ? CKM_RSA_PKCS_KEY_PAIR_GEN
                          : o->ktype == CKK_EC ? CKM_EC_KEY_PAIR_GEN
                                               : CKM_EC_EDWARDS_KEY_PAIR_GEN);
    }
    if (o->cls == CKO_SECRET_KEY) {
        int sens = (o->flags & KWK_F_SENSITIVE) != 0, extr = (o->flags & KWK_F_EXTRACTABLE) != 0;
        switch (type) {
        case CKA_VALUE:
            if (sens || !extr)
                return CKR_ATTRIBUTE_SENSITIVE;
            return v_bytes(v, o->der, o->der_len);
        case CKA_VALUE_LEN:
            return v_ulong(v, o->der_len);
        case CKA_SENSITIVE:
        case CKA_ALWAYS_SENSITIVE:
            return v_bool(v, sens);
        case CKA_EXTRACTABLE:
            return v_bool(v, extr);
        case CKA_NEVER_EXTRACTABLE:
            return v_bool(v, !extr);
        case CKA_ENCRYPT:
        case CKA_DECRYPT:
        case CKA_SIGN:
        case CKA_VERIFY:
        case CKA_WRAP:
        case CKA_UNWRAP:
            return v_bool(v, 0);
        }
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    EVP_PKEY *pk = o->pub;
    if (priv) {
        switch (type) {
        case CKA_KEYWARD_MODE:
            return v_bytes(
                v, kwk_mode_name(o->kind == KWK_KIND_PRIV ? KWK_MODE_KERNEL : KWK_MODE_SOFTWARE),
                o->kind == KWK_KIND_PRIV ? 6 : 8);
        case CKA_SENSITIVE:
            return v_bool(v, 1);
        case CKA_EXTRACTABLE:
        case CKA_SIGN_RECOVER:
        case CKA_UNWRAP:
        case CKA_WRAP_WITH_TRUSTED:
        case CKA_ALWAYS_AUTHENTICATE:
            return v_bool(v, 0);
        case CKA_ALWAYS_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE:
            return v_bool(v, local);
        case CKA_SIGN:
            return v_bool(v, (o->flags & KWK_F_SIGN) != 0);
        case CKA_DECRYPT:
            return v_bool(v, o->ktype == CKK_RSA && (o->flags & KWK_F_DECRYPT));
        case CKA_SUBJECT:
            return v_bytes(v, o->x.subject, o->x.subject_len);
        case CKA_PRIVATE_EXPONENT:
        case CKA_PRIME_1:
        case CKA_PRIME_2:
        case CKA_EXPONENT_1:
        case CKA_EXPONENT_2:
        case CKA_COEFFICIENT:
            if (o->ktype != CKK_RSA)
                return CKR_ATTRIBUTE_TYPE_INVALID;
            return CKR_ATTRIBUTE_SENSITIVE;
        case CKA_VALUE:
            if (o->ktype == CKK_RSA)
                return CKR_ATTRIBUTE_TYPE_INVALID;
            return CKR_ATTRIBUTE_SENSITIVE;
        }
    } else {
        switch (type) {
        case CKA_SUBJECT:
            return v_bytes(v, o->x.subject, o->x.subject_len);
        case CKA_VERIFY:
            return v_bool(v, 1);
        case CKA_ENCRYPT:
            return v_bool(v, o->ktype == CKK_RSA && (o->flags & KWK_F_ENCRYPT));
        case CKA_VERIFY_RECOVER:
        case CKA_WRAP:
        case CKA_TRUSTED:
            return v_bool(v, 0);
        case CKA_VALUE:
            return CKR_ATTRIBUTE_TYPE_INVALID;
        }
    }
    if (pk == NULL)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    if (type == CKA_PUBLIC_KEY_INFO) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pk, &der);
        return v_heap(v, der, len);
    }
    if (o->ktype == CKK_RSA) {
        switch (type) {
        case CKA_MODULUS:
            return v_bn(v, pk, OSSL_PKEY_PARAM_RSA_N);
        case CKA_PUBLIC_EXPONENT:
            return v_bn(v, pk, OSSL_PKEY_PARAM_RSA_E);
        case CKA_MODULUS_BITS:
            return v_ulong(v, (CK_ULONG)EVP_PKEY_get_bits(pk));
        }
    } else if (o->ktype == CKK_EC || o->ktype == CKK_EC_EDWARDS) {
        switch (type) {
        case CKA_EC_PARAMS:
            return v_ec_params(v, pk);
        case CKA_EC_POINT:
            return v_ec_point(v, pk);
        }
    }
    return CKR_ATTRIBUTE_TYPE_INVALID;
}

CK_RV kwk_object_get_attrs(kwk_token *t, const kwk_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_RV ret = CKR_OK;
    (void)t;
    for (CK_ULONG i = 0; i < n; i++) {
        aval v = {0};
        CK_RV rv = attr_value(o, tmpl[i].type, &v);
        if (rv == CKR_OK)
            rv = kwk_attr_put(&tmpl[i], v.p, v.len);
        else
            tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        aval_free(&v);
        /* Keep going: every attribute gets its answer; report the first problem. */
        if (rv != CKR_OK && ret == CKR_OK)
            ret = rv;
    }
    return ret;
}

int kwk_object_match(kwk_token *t, const kwk_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    (void)t;
    for (CK_ULONG i = 0; i < n; i++) {
        aval v = {0};
        int ok =
            attr_value(o, tmpl[i].type, &v) == CKR_OK && v.len == tmpl[i].ulValueLen &&
            (v.len == 0 || (tmpl[i].pValue != NULL && memcmp(v.p, tmpl[i].pValue, v.len) == 0));
        aval_free(&v);
        if (!ok)
            return 0;
    }
    return 1;
}

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

CK_RV kwk_object_set_attrs(kwk_token *t, kwk_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    if (o->flags & KWK_F_READONLY)
        return CKR_ACTION_PROHIBITED; /* made with CKA_MODIFIABLE=FALSE */
    char label[KWK_MAX_LABEL];
    unsigned char id[KWK_MAX_ID];
    size_t id_len = o->id_len;
    memcpy(label, o->label, sizeof(label));
    memcpy(id, o->id, sizeof(id));
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &tmpl[i];
        if (a->type == CKA_LABEL) {
            if (a->ulValueLen >= KWK_MAX_LABEL ||
                (a->ulValueLen && memchr(a->pValue, '\0', a->ulValueLen)))
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(label, a->pValue, a->ulValueLen);
            label[a->ulValueLen] = '\0';
        } else if (a->type == CKA_ID && o->cls != CKO_SECRET_KEY) {
            if (a->ulValueLen > KWK_MAX_ID)
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (a->ulValueLen)
                memcpy(id, a->pValue, a->ulValueLen);
            id_len = a->ulValueLen;
        } else {
            aval v = {0};
            CK_RV rv = attr_value(o, a->type, &v);
            aval_free(&v);
            return rv == CKR_ATTRIBUTE_TYPE_INVALID ? rv : CKR_ATTRIBUTE_READ_ONLY;
        }
    }
    memcpy(o->label, label, sizeof(label));
    memcpy(o->id, id, sizeof(id));
    o->id_len = id_len;
    if (o->kind == KWK_KIND_SECRET)
        return CKR_OK;
    return kwk_store_meta(t, o);
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
