/* SPDX-License-Identifier: Apache-2.0 */
/* The URI key file's DER codec: round trip, pkcs11-provider's form, and refusal of damage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>

#include "kwp.h"

static const char *uri = "pkcs11:token=t;id=%01;object=k;type=private";

static void test_roundtrip(void **state)
{
    unsigned char *der;
    int len;
    char *back;

    assert_true(kwp_keyfile_der_encode(uri, &der, &len));
    /* SEQUENCE { INTEGER 1, UTF8String uri } */
    assert_int_equal(der[0], 0x30);
    assert_int_equal(der[2], 0x02);
    assert_int_equal(der[4], 0x01);
    back = kwp_keyfile_der_decode(der, len);
    assert_non_null(back);
    assert_string_equal(back, uri);
    free(back);
    /* Truncated or with trailing bytes: refused. */
    assert_null(kwp_keyfile_der_decode(der, len - 1));
    OPENSSL_free(der);
}

static long der_seq(unsigned char *out, unsigned char t1, const char *s1, const char *s2)
{
    size_t l1 = strlen(s1), l2 = strlen(s2);
    out[0] = 0x30;
    out[1] = (unsigned char)(4 + l1 + l2);
    out[2] = t1;
    out[3] = (unsigned char)l1;
    memcpy(out + 4, s1, l1);
    out[4 + l1] = 0x0c; /* UTF8String */
    out[5 + l1] = (unsigned char)l2;
    memcpy(out + 6 + l1, s2, l2);
    return (long)(6 + l1 + l2);
}

static void test_p11prov_form(void **state)
{
    unsigned char buf[256];
    long len = der_seq(buf, 0x1a /* VisibleString */, "PKCS#11 Provider URI v1.0", uri);
    char *back = kwp_keyfile_der_decode(buf, len);
    assert_non_null(back);
    assert_string_equal(back, uri);
    free(back);
}

static void test_refused(void **state)
{
    unsigned char buf[256];
    long len;

    /* Not a pkcs11: URI. */
    len = der_seq(buf, 0x1a, "PKCS#11 Provider URI v1.0", "file:/etc/shadow");
    assert_null(kwp_keyfile_der_decode(buf, len));
    /* Control characters (a newline would let a URI smuggle a second line into logs). */
    len = der_seq(buf, 0x1a, "x", "pkcs11:token=a\nb");
    assert_null(kwp_keyfile_der_decode(buf, len));
    /* Garbage. */
    memset(buf, 0xff, 64);
    assert_null(kwp_keyfile_der_decode(buf, 64));
    assert_null(kwp_keyfile_der_decode(buf, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_p11prov_form),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
