/* SPDX-License-Identifier: Apache-2.0 */
/* The provider's r || s to DER ECDSA-Sig-Value against libcrypto's i2d_ECDSA_SIG: random and
 * edge values (leading zeros, top bit set, all zero, all 0xff) for P-256, P-384 and P-521, the
 * long length form, and refusal of a short buffer or an odd or oversized input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rand.h>

#include "kwp.h"

/* libcrypto's encoding of the same r || s */
static int oracle(const unsigned char *rs, size_t half, unsigned char *out)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, (int)half, NULL), *s = BN_bin2bn(rs + half, (int)half, NULL);
    unsigned char *p = out;
    assert_true(es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s));
    int len = i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);
    assert_true(len > 0);
    return len;
}

static void check(const unsigned char *rs, size_t half)
{
    unsigned char mine[200], theirs[200];
    size_t len = 0;
    int want = oracle(rs, half, theirs);
    assert_true(kwp_ecdsa_sig_der(rs, 2 * half, mine, &len, sizeof(mine)));
    assert_int_equal(len, want);
    assert_memory_equal(mine, theirs, len);
    /* exactly the room it needs: fine; one octet less: refused, nothing claimed */
    assert_true(kwp_ecdsa_sig_der(rs, 2 * half, mine, &len, (size_t)want));
    size_t before = 12345;
    assert_false(kwp_ecdsa_sig_der(rs, 2 * half, mine, &before, (size_t)want - 1));
    assert_int_equal(before, 12345);
}

static void test_against_libcrypto(void **state)
{
    (void)state;
    static const size_t halves[] = {32, 48, 66};
    unsigned char rs[2 * KWP_ECDSA_MAX_HALF];
    for (size_t h = 0; h < sizeof(halves) / sizeof(halves[0]); h++) {
        size_t half = halves[h];
        for (int i = 0; i < 2000; i++) {
            assert_int_equal(RAND_bytes(rs, (int)(2 * half)), 1);
            switch (i % 8) { /* shapes random bytes rarely give */
            case 1:
                rs[0] = 0, rs[half] |= 0x80;
                break;
            case 2:
                memset(rs, 0, half - 1);
                break;
            case 3:
                memset(rs, 0, half), memset(rs + half, 0, half);
                break;
            case 4:
                memset(rs, 0xff, 2 * half);
                break;
            case 5:
                memset(rs + half, 0, half - 1), rs[2 * half - 1] = 0x80;
                break;
            case 6:
                rs[0] = 0x80, rs[half] = 0x7f;
                break;
            default:
                break;
            }
            check(rs, half);
        }
    }
}

static void test_refused(void **state)
{
    (void)state;
    unsigned char rs[2 * KWP_ECDSA_MAX_HALF + 2] = {1}, out[300];
    size_t len;
    assert_false(kwp_ecdsa_sig_der(rs, 0, out, &len, sizeof(out)));
    assert_false(kwp_ecdsa_sig_der(rs, 63, out, &len, sizeof(out)));
    assert_false(kwp_ecdsa_sig_der(rs, 2 * KWP_ECDSA_MAX_HALF + 2, out, &len, sizeof(out)));
    /* P-521 with both top bits set: 2 * (2 + 67) = 138 octets, the long length form */
    memset(rs, 0xff, 2 * KWP_ECDSA_MAX_HALF);
    assert_true(kwp_ecdsa_sig_der(rs, 2 * KWP_ECDSA_MAX_HALF, out, &len, sizeof(out)));
    assert_int_equal(len, 141);
    assert_int_equal(out[1], 0x81);
    assert_int_equal(out[2], 138);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_libcrypto),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
