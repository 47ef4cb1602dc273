/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: pkcs11: URI parsing and the object template and PIN fields built from it
 * (common/kw_uri.c around p11-kit's parser). Properties checked besides "no crash":
 * the template has at most the room given, only CKA_CLASS/ID/LABEL, every value readable
 * over its whole length; a rejected URI leaves *out NULL and sets a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kw_p11.h"
#include "fuzz.h"

static unsigned touch(const void *p, CK_ULONG n)
{
    const volatile unsigned char *b = p;
    unsigned s = 0;
    for (CK_ULONG i = 0; i < n; i++)
        s += b[i];
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    P11KitUri *uri = NULL;
    const char *msg = NULL;
    volatile unsigned sink = 0;

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    if (kw_uri_parse(s, &uri) != KW_OK) {
        FUZZ_CHECK(uri == NULL);
        kw_err e = kw_err_last(&msg);
        FUZZ_CHECK(e == KW_ERR_URI || e == KW_ERR_MEMORY);
        FUZZ_CHECK(msg != NULL && msg[0] != '\0');
    } else {
        CK_ATTRIBUTE t[4];
        kw_pin_ctx pin = {0};

        for (CK_ULONG max = 0; max <= 4; max++) {
            memset(t, 0xa5, sizeof(t));
            CK_ULONG n = kw_uri_object_template(uri, t, max);
            FUZZ_CHECK(n <= max && n <= 3);
            for (CK_ULONG i = 0; i < n; i++) {
                FUZZ_CHECK(t[i].type == CKA_CLASS || t[i].type == CKA_ID || t[i].type == CKA_LABEL);
                if (t[i].type == CKA_CLASS)
                    FUZZ_CHECK(t[i].ulValueLen == sizeof(CK_OBJECT_CLASS));
                if (t[i].ulValueLen > 0)
                    sink += touch(t[i].pValue, t[i].ulValueLen);
            }
        }
        kw_uri_pin(uri, &pin);
        if (pin.uri_pin_value != NULL)
            sink += (unsigned)strlen(pin.uri_pin_value);
        if (pin.uri_pin_source != NULL)
            sink += (unsigned)strlen(pin.uri_pin_source);
        p11_kit_uri_free(uri);
    }
    kw_err_clear();
    free(s);
    (void)sink;
    return 0;
}
