/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the canonical URI the provider builds for a token key (kwp_key_make_uri, from
 * token info, CKA_ID and CKA_LABEL that a token hands us) must parse back to the same token
 * and object, and survive the key file round trip. Token info and attributes are untrusted:
 * any bytes a module returns must give a URI that names exactly that object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fuzz.h"
#include "kwp.h"

/* Labels and ids far longer than any token uses would exceed the key file's URI bound
 * (8192 characters, three per byte when percent-encoded); keep inside it. */
#define MAX_ATTR 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_CERTIFICATE,
                                              CKO_SECRET_KEY};
    CK_TOKEN_INFO ti;
    CK_OBJECT_CLASS cls;
    const uint8_t *p = data;
    size_t left = size;

    if (left < 2 + sizeof(ti.label) + sizeof(ti.manufacturerID) + sizeof(ti.model) +
                   sizeof(ti.serialNumber))
        return 0;
    memset(&ti, 0, sizeof(ti));
    cls = classes[*p % 4];
    size_t idlen = p[1];
    p += 2;
    left -= 2;
    memcpy(ti.label, p, sizeof(ti.label));
    p += sizeof(ti.label);
    memcpy(ti.manufacturerID, p, sizeof(ti.manufacturerID));
    p += sizeof(ti.manufacturerID);
    memcpy(ti.model, p, sizeof(ti.model));
    p += sizeof(ti.model);
    memcpy(ti.serialNumber, p, sizeof(ti.serialNumber));
    p += sizeof(ti.serialNumber);
    left -=
        sizeof(ti.label) + sizeof(ti.manufacturerID) + sizeof(ti.model) + sizeof(ti.serialNumber);
    if (idlen > left)
        idlen = left;
    const uint8_t *id = p;
    p += idlen;
    left -= idlen;
    if (left > MAX_ATTR)
        left = MAX_ATTR;
    char *label = NULL;
    if (left > 0) {
        label = malloc(left + 1);
        if (label == NULL)
            return 0;
        memcpy(label, p, left);
        label[left] = '\0';
    }

    char *s = kwp_key_make_uri(&ti, id, idlen, label, cls);
    FUZZ_CHECK(s != NULL);

    P11KitUri *uri = NULL;
    FUZZ_CHECK(kw_uri_parse(s, &uri) == KW_OK);
    FUZZ_CHECK(p11_kit_uri_match_token_info(uri, &ti) == 1);
    CK_ATTRIBUTE t[3];
    CK_ULONG n = kw_uri_object_template(uri, t, 3);
    int seen_cls = 0, seen_id = 0, seen_label = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type == CKA_CLASS) {
            seen_cls = 1;
            FUZZ_CHECK(t[i].ulValueLen == sizeof(cls) &&
                       memcmp(t[i].pValue, &cls, sizeof(cls)) == 0);
        } else if (t[i].type == CKA_ID) {
            seen_id = 1;
            FUZZ_CHECK(t[i].ulValueLen == idlen && memcmp(t[i].pValue, id, idlen) == 0);
        } else if (t[i].type == CKA_LABEL) {
            seen_label = 1;
            FUZZ_CHECK(label != NULL && t[i].ulValueLen == strlen(label) &&
                       memcmp(t[i].pValue, label, t[i].ulValueLen) == 0);
        }
    }
    FUZZ_CHECK(seen_cls);
    FUZZ_CHECK(seen_id == (idlen > 0));
    FUZZ_CHECK(seen_label == (label != NULL));
    /* No PIN can come from a URI we made. */
    FUZZ_CHECK(p11_kit_uri_get_pin_value(uri) == NULL);
    p11_kit_uri_free(uri);

    unsigned char *der = NULL;
    int derlen = 0;
    FUZZ_CHECK(kwp_keyfile_der_encode(s, &der, &derlen));
    char *back = kwp_keyfile_der_decode(der, derlen);
    FUZZ_CHECK(back != NULL && strcmp(back, s) == 0);
    free(back);
    OPENSSL_free(der);
    free(s);
    free(label);
    return 0;
}
