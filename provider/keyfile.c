/* SPDX-License-Identifier: Apache-2.0 */
/* The key file that carries a URI instead of a key.
 *
 *   KeywardKeyUri ::= SEQUENCE {
 *       version  INTEGER,      -- 1
 *       uri      UTF8String    -- RFC 7512 pkcs11: URI, without PIN
 *   }
 *
 * in a PEM block labelled "KEYWARD KEY URI". pkcs11-provider's files are read too:
 *   SEQUENCE { desc VisibleString, uri UTF8String } labelled "PKCS#11 PROVIDER URI". */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>

#include "kwp.h"

typedef struct {
    ASN1_INTEGER *version;
    ASN1_UTF8STRING *uri;
} KWP_KEYFILE;

ASN1_SEQUENCE(KWP_KEYFILE) =
    {
        ASN1_SIMPLE(KWP_KEYFILE, version, ASN1_INTEGER),
        ASN1_SIMPLE(KWP_KEYFILE, uri, ASN1_UTF8STRING),
} static_ASN1_SEQUENCE_END(KWP_KEYFILE)

        typedef struct {
    ASN1_VISIBLESTRING *desc;
    ASN1_UTF8STRING *uri;
} KWP_P11PROV_KEYFILE;

ASN1_SEQUENCE(KWP_P11PROV_KEYFILE) =
    {
        ASN1_SIMPLE(KWP_P11PROV_KEYFILE, desc, ASN1_VISIBLESTRING),
        ASN1_SIMPLE(KWP_P11PROV_KEYFILE, uri, ASN1_UTF8STRING),
} static_ASN1_SEQUENCE_END(KWP_P11PROV_KEYFILE)

#define KWP_KEYFILE_VERSION 1

        int kwp_keyfile_der_encode(const char *uri, unsigned char **der, int *derlen)
{
    KWP_KEYFILE *kf = (KWP_KEYFILE *)ASN1_item_new(ASN1_ITEM_rptr(KWP_KEYFILE));
    int ok = 0;

    *der = NULL;
    if (kf != NULL && ASN1_INTEGER_set(kf->version, KWP_KEYFILE_VERSION) &&
        ASN1_STRING_set(kf->uri, uri, (int)strlen(uri))) {
        *derlen = ASN1_item_i2d((ASN1_VALUE *)kf, der, ASN1_ITEM_rptr(KWP_KEYFILE));
        ok = *derlen > 0;
    }
    ASN1_item_free((ASN1_VALUE *)kf, ASN1_ITEM_rptr(KWP_KEYFILE));
    return ok;
}

static char *uri_copy(const ASN1_UTF8STRING *s)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);

    /* A URI is printable ASCII: refuse NULs and controls rather than pass them on. */
    if (len < 8 || len > 8192 || memcmp(d, "pkcs11:", 7) != 0)
        return NULL;
    for (int i = 0; i < len; i++)
        if (d[i] < 0x21 || d[i] > 0x7e)
            return NULL;
    return strndup((const char *)d, (size_t)len);
}

char *kwp_keyfile_der_decode(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    char *uri = NULL;
    KWP_KEYFILE *kf;
    KWP_P11PROV_KEYFILE *pf;

    kf = (KWP_KEYFILE *)ASN1_item_d2i(NULL, &p, len, ASN1_ITEM_rptr(KWP_KEYFILE));
    if (kf != NULL && p == der + len) {
        if (ASN1_INTEGER_get(kf->version) == KWP_KEYFILE_VERSION)
            uri = uri_copy(kf->uri);
        ASN1_item_free((ASN1_VALUE *)kf, ASN1_ITEM_rptr(KWP_KEYFILE));
        return uri;
    }
    ASN1_item_free((ASN1_VALUE *)kf, ASN1_ITEM_rptr(KWP_KEYFILE));
    p = der;
    pf = (KWP_P11PROV_KEYFILE *)ASN1_item_d2i(NULL, &p, len, ASN1_ITEM_rptr(KWP_P11PROV_KEYFILE));
    if (pf != NULL && p == der + len)
        uri = uri_copy(pf->uri);
    ASN1_item_free((ASN1_VALUE *)pf, ASN1_ITEM_rptr(KWP_P11PROV_KEYFILE));
    return uri;
}
