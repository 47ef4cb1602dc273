/* SPDX-License-Identifier: Apache-2.0 */
/* Writing objects into the token's keyring. A private key goes into the kernel as an
 * `asymmetric` key when the kernel can hold it (RSA with the PKCS#8 parser); otherwise, visibly,
 * into a possessor-only `user` key (software mode). Its public half is always stored beside it. */
#include <string.h>

#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

#define DESC_MAX 4200

static CK_RV add_user(kwk_token *t, kwk_kind kind, unsigned flags, const kwk_mechs *mechs,
                      const kwk_extra *x, kwk_serial link, const kwk_new_obj *m, const void *data,
                      size_t len, kwk_serial *out)
{
    char desc[DESC_MAX];
    /* add_key() replaces a key of the same type and description in place: two public keys or
     * certificates with the same label and ID (both empty, say) would become one, and the first
     * key pair's private key would then be linked to the second one's public key. Their link
     * field means nothing, so a number not yet used there (-1, -2, ...) keeps them apart.
     * Private keys link to their (unique) public key; a meta key is meant to be replaced. */
    for (kwk_serial alt = 0;; alt--) {
        if (!kwk_desc_format(desc, sizeof(desc), kind, flags, alt == 0 ? link : alt, m->id,
                             m->id_len, m->label, mechs, x))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if ((kind != KWK_KIND_PUB && kind != KWK_KIND_CERT) || !kwk_kr_has(t->ring, desc))
            break;
        if (alt < -4096)
            return CKR_DEVICE_MEMORY;
    }
    return kwk_kr_add("user", desc, data, len, t->ring, out);
}

CK_RV kwk_store_public(kwk_token *t, EVP_PKEY *pk, const kwk_new_obj *m, kwk_serial *out)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pk, &der);
    if (len <= 0)
        return kwk_rv_ossl("encode public key");
    /* The public key's own usages: the template's CKA_ENCRYPT / CKA_DERIVE / CKA_PRIVATE /
     * CKA_MODIFIABLE are kept, and read back as given (PKCS#11 3.0 4.1.1: honoured, not
     * dropped). */
    unsigned f =
        m->flags & (KWK_F_LOCAL | KWK_F_ENCRYPT | KWK_F_DERIVE | KWK_F_PRIVATE | KWK_F_READONLY);
    CK_RV rv = add_user(t, KWK_KIND_PUB, f, &m->mechs, &m->x, 0, m, der, (size_t)len, out);
    OPENSSL_free(der);
    return rv;
}

CK_RV kwk_store_cert(kwk_token *t, const unsigned char *der, size_t len, const kwk_new_obj *m,
                     kwk_serial *out)
{
    return add_user(t, KWK_KIND_CERT, m->flags & (KWK_F_PRIVATE | KWK_F_READONLY), NULL, &m->x, 0,
                    m, der, len, out);
}

CK_RV kwk_store_keypair(kwk_token *t, EVP_PKEY *pk, const kwk_new_obj *m, const kwk_new_obj *pub_m,
                        kwk_serial *priv, kwk_serial *pub)
{
    CK_RV rv = kwk_store_public(t, pk, pub_m, pub);
    if (rv != CKR_OK)
        return rv;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : -1;
    /* Encode straight into locked memory so the PKCS#8 can be wiped. */
    unsigned char *der = len > 0 ? kw_secure_alloc((size_t)len) : NULL, *p = der;
    if (der == NULL || i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != len) {
        rv = len > 0 ? CKR_HOST_MEMORY : kwk_rv_ossl("encode private key");
        goto fail;
    }
    char desc[DESC_MAX];
    rv = CKR_FUNCTION_NOT_SUPPORTED;
    if (EVP_PKEY_is_a(pk, "RSA") && t->mode == KWK_MODE_KERNEL) {
        if (!kwk_desc_format(desc, sizeof(desc), KWK_KIND_PRIV, m->flags, *pub, m->id, m->id_len,
                             m->label, &m->mechs, &m->x)) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto fail;
        }
        rv = kwk_kr_add("asymmetric", desc, der, (size_t)len, t->ring, priv);
        if (rv == CKR_OK)
            KW_DEBUG(KWK_COMP, "key '%s' loaded into the kernel (key %d): kernel mode", m->label,
                     (int)*priv);
    }
    if (rv == CKR_FUNCTION_NOT_SUPPORTED) {
        rv =
            add_user(t, KWK_KIND_SOFT, m->flags, &m->mechs, &m->x, *pub, m, der, (size_t)len, priv);
        if (rv == CKR_OK)
            KW_DEBUG(KWK_COMP, "key '%s' stored as a user key (key %d): SOFTWARE mode (%s)",
                     m->label, (int)*priv,
                     EVP_PKEY_is_a(pk, "RSA") ? "the kernel cannot hold RSA private keys here"
                                              : "the kernel cannot sign with this key type");
    }
fail:
    if (der)
        kw_secure_free(der, (size_t)len);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (rv != CKR_OK)
        kwk_kr_remove(t->ring, *pub);
    return rv;
}

CK_RV kwk_store_meta(kwk_token *t, kwk_object *o)
{
    char desc[DESC_MAX];
    kwk_new_obj m = {0};
    if (!kwk_desc_format(desc, sizeof(desc), KWK_KIND_META, o->flags, o->serial, o->id, o->id_len,
                         o->label, NULL, NULL))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (o->meta)
        return kwk_kr_update(o->meta, desc, strlen(desc));
    snprintf(m.label, sizeof(m.label), "%d", (int)o->serial);
    return add_user(t, KWK_KIND_META, 0, NULL, NULL, o->serial, &m, desc, strlen(desc), &o->meta);
}

CK_RV kwk_store_remove(kwk_token *t, kwk_object *o)
{
    CK_RV rv = kwk_kr_remove(t->ring, o->serial);
    if (rv == CKR_OK && o->meta)
        kwk_kr_remove(t->ring, o->meta);
    return rv;
}
