/* SPDX-License-Identifier: Apache-2.0 */
/* pkcs11: URI helpers around p11-kit's parser (RFC 7512). */
#include <string.h>

#include "kw_p11.h"

static const char *uri_result_text(int r)
{
    switch (r) {
    case P11_KIT_URI_BAD_SCHEME:
        return "not a pkcs11: URI";
    case P11_KIT_URI_BAD_ENCODING:
        return "bad percent-encoding";
    case P11_KIT_URI_BAD_SYNTAX:
        return "bad syntax";
    case P11_KIT_URI_BAD_VERSION:
        return "bad library-version";
    case P11_KIT_URI_NO_MEMORY:
        return "out of memory";
    default:
        return "cannot be parsed";
    }
}

kw_err kw_uri_parse(const char *s, P11KitUri **out)
{
    P11KitUri *uri;
    int r;

    *out = NULL;
    if (s == NULL || strncmp(s, "pkcs11:", 7) != 0)
        return kw_err_set(KW_ERR_URI, "malformed pkcs11 URI: must start with \"pkcs11:\"");
    uri = p11_kit_uri_new();
    if (uri == NULL)
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    r = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, uri);
    if (r != P11_KIT_URI_OK) {
        p11_kit_uri_free(uri);
        /* The URI may carry pin-value: don't echo it back. */
        return kw_err_set(KW_ERR_URI, "malformed pkcs11 URI: %s", uri_result_text(r));
    }
    if (p11_kit_uri_any_unrecognized(uri)) {
        p11_kit_uri_free(uri);
        return kw_err_set(KW_ERR_URI, "malformed pkcs11 URI: unrecognised attribute");
    }
    *out = uri;
    return KW_OK;
}

CK_ULONG kw_uri_object_template(P11KitUri *uri, CK_ATTRIBUTE *tmpl, CK_ULONG max)
{
    static const CK_ATTRIBUTE_TYPE types[] = {CKA_CLASS, CKA_ID, CKA_LABEL};
    CK_ULONG n = 0;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && n < max; i++) {
        CK_ATTRIBUTE_PTR a = p11_kit_uri_get_attribute(uri, types[i]);
        if (a != NULL)
            tmpl[n++] = *a;
    }
    return n;
}

void kw_uri_pin(P11KitUri *uri, kw_pin_ctx *pin)
{
    pin->uri_pin_value = p11_kit_uri_get_pin_value(uri);
    pin->uri_pin_source = p11_kit_uri_get_pin_source(uri);
}
