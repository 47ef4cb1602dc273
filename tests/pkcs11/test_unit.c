/* SPDX-License-Identifier: Apache-2.0 */
/* cmocka unit tests of keyward-pkcs11 internals: padding helpers against libcrypto, blinding,
 * the keyring description codec, attribute answering rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "kwk.h"

static EVP_PKEY *rsa; /* 2048-bit test key in the module's library context */

static int setup(void **state)
{
    rsa = EVP_PKEY_Q_keygen(kwk_libctx(), NULL, "RSA", (size_t)2048);
    return rsa ? 0 : -1;
}

static int teardown(void **state)
{
    EVP_PKEY_free(rsa);
    kwk_ossl_free();
    return 0;
}

/* Raw private operation with libcrypto (reference). */
static void raw_private(const unsigned char *in, unsigned char *out)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
    size_t ol = 256;
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
    assert_int_equal(EVP_PKEY_decrypt(c, out, &ol, in, 256), 1);
    assert_int_equal(ol, 256);
    EVP_PKEY_CTX_free(c);
}

static void test_pss_encode_verifies(void **state)
{
    const EVP_MD *md = kwk_md(CKM_SHA256);
    unsigned char h[32], em[256], sig[256];
    RAND_bytes(h, sizeof(h));
    for (size_t slen = 0; slen <= 64; slen += 32) {
        assert_true(kwk_pad_pss(em, rsa, h, md, md, slen));
        raw_private(em, sig);
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
        assert_int_equal(EVP_PKEY_verify_init(c), 1);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_signature_md(c, md);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)slen);
        assert_int_equal(EVP_PKEY_verify(c, sig, 256, h, 32), 1);
        h[0] ^= 1; /* a different hash must not verify */
        assert_int_not_equal(EVP_PKEY_verify(c, sig, 256, h, 32), 1);
        h[0] ^= 1;
        EVP_PKEY_CTX_free(c);
    }
    /* salt too long for the modulus */
    assert_false(kwk_pad_pss(em, rsa, h, md, md, 250));
}

static void encrypt_ref(int pad, const unsigned char *label, size_t llen, const unsigned char *msg,
                        size_t mlen, unsigned char *ct)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
    size_t cl = 256;
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    EVP_PKEY_CTX_set_rsa_padding(c, pad);
    if (pad == RSA_PKCS1_OAEP_PADDING) {
        EVP_PKEY_CTX_set_rsa_oaep_md(c, kwk_md(CKM_SHA256));
        EVP_PKEY_CTX_set_rsa_mgf1_md(c, kwk_md(CKM_SHA_1));
        if (llen) {
            unsigned char *l = OPENSSL_memdup(label, llen);
            EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, (int)llen);
        }
    }
    assert_int_equal(EVP_PKEY_encrypt(c, ct, &cl, msg, mlen), 1);
    EVP_PKEY_CTX_free(c);
}

static void test_oaep_decode(void **state)
{
    unsigned char msg[40], ct[256], em[256], out[256];
    const unsigned char label[] = "context";
    RAND_bytes(msg, sizeof(msg));
    encrypt_ref(RSA_PKCS1_OAEP_PADDING, label, 7, msg, sizeof(msg), ct);
    raw_private(ct, em);
    assert_int_equal(
        kwk_unpad_oaep(out, sizeof(out), em, 256, kwk_md(CKM_SHA256), kwk_md(CKM_SHA_1), label, 7),
        40);
    assert_memory_equal(out, msg, 40);
    /* wrong label, wrong hash, damaged block, short output buffer: all one failure */
    assert_int_equal(
        kwk_unpad_oaep(out, sizeof(out), em, 256, kwk_md(CKM_SHA256), kwk_md(CKM_SHA_1), label, 6),
        -1);
    assert_int_equal(
        kwk_unpad_oaep(out, sizeof(out), em, 256, kwk_md(CKM_SHA_1), kwk_md(CKM_SHA_1), label, 7),
        -1);
    assert_int_equal(
        kwk_unpad_oaep(out, 39, em, 256, kwk_md(CKM_SHA256), kwk_md(CKM_SHA_1), label, 7), -1);
    em[0] = 1;
    assert_int_equal(
        kwk_unpad_oaep(out, sizeof(out), em, 256, kwk_md(CKM_SHA256), kwk_md(CKM_SHA_1), label, 7),
        -1);
}

static void test_pkcs1_type2_decode(void **state)
{
    unsigned char msg[48], ct[256], em[256], out[256];
    RAND_bytes(msg, sizeof(msg));
    encrypt_ref(RSA_PKCS1_PADDING, NULL, 0, msg, sizeof(msg), ct);
    raw_private(ct, em);
    assert_int_equal(kwk_unpad_pkcs1_type2(out, sizeof(out), em, 256), 48);
    assert_memory_equal(out, msg, 48);
    /* in place, as rsa.c uses it */
    assert_int_equal(kwk_unpad_pkcs1_type2(em, 256, em, 256), 48);
    assert_memory_equal(em, msg, 48);
    unsigned char bad[256];
    memset(bad, 0x55, sizeof(bad));
    bad[0] = 0;
    bad[1] = 2;
    assert_int_equal(kwk_unpad_pkcs1_type2(out, sizeof(out), bad, 256), -1); /* no separator */
    bad[5] = 0;
    assert_int_equal(kwk_unpad_pkcs1_type2(out, sizeof(out), bad, 256), -1); /* PS too short */
    bad[5] = 0x55;
    bad[20] = 0;
    assert_int_equal(kwk_unpad_pkcs1_type2(out, sizeof(out), bad, 256), 235);
    bad[1] = 1;
    assert_int_equal(kwk_unpad_pkcs1_type2(out, sizeof(out), bad, 256), -1); /* wrong block type */
}

static void test_pkcs1_type1_matches_libcrypto(void **state)
{
    const EVP_MD *md = kwk_md(CKM_SHA384);
    unsigned char h[48], di[128], em[256], sig[256], ref[256];
    size_t plen, rl = sizeof(ref);
    RAND_bytes(h, sizeof(h));
    const unsigned char *prefix = kwk_digestinfo_prefix(md, &plen);
    assert_non_null(prefix);
    memcpy(di, prefix, plen);
    memcpy(di + plen, h, 48);
    assert_true(kwk_pad_pkcs1_type1(em, 256, di, plen + 48));
    raw_private(em, sig);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
    assert_int_equal(EVP_PKEY_sign_init(c), 1);
    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING);
    EVP_PKEY_CTX_set_signature_md(c, md);
    assert_int_equal(EVP_PKEY_sign(c, ref, &rl, h, 48), 1);
    EVP_PKEY_CTX_free(c);
    /* PKCS#1 v1.5 is deterministic: our DigestInfo + padding gives libcrypto's signature */
    assert_memory_equal(sig, ref, 256);
    assert_false(kwk_pad_pkcs1_type1(em, 256, di, 246)); /* too long for the modulus */
}

static void test_blinding_roundtrip(void **state)
{
    unsigned char x[256], blinded[256], y[256], yb[256], ref[256];
    void *st;
    RAND_bytes(x, sizeof(x));
    x[0] = 0x01; /* below n */
    assert_int_equal(kwk_blind(rsa, x, 256, blinded, &st), CKR_OK);
    assert_memory_not_equal(blinded, x, 256);
    raw_private(blinded, yb);
    assert_int_equal(kwk_unblind(rsa, st, yb, 256, y), CKR_OK);
    raw_private(x, ref);
    assert_memory_equal(y, ref, 256);
    /* two blindings of the same input differ (fresh r each time) */
    unsigned char b2[256];
    assert_int_equal(kwk_blind(rsa, x, 256, b2, &st), CKR_OK);
    assert_memory_not_equal(b2, blinded, 256);
    assert_int_equal(kwk_unblind(rsa, st, b2, 256, y), CKR_OK);
    /* public op undoes the private one */
    unsigned char back[256];
    assert_int_equal(kwk_rsa_public_raw(rsa, ref, back, 256), CKR_OK);
    assert_memory_equal(back, x, 256);
}

/* The decoders are libcrypto's: a block that decodes gives libcrypto's message, one that does not
 * fails, for random damage anywhere in the block (leading byte included). */
static void test_decoders_agree_with_libcrypto(void **state)
{
    unsigned char msg[40], ct[256], em[256], bad[256], out[256], ref[256];
    RAND_bytes(msg, sizeof(msg));
    encrypt_ref(RSA_PKCS1_OAEP_PADDING, NULL, 0, msg, sizeof(msg), ct);
    raw_private(ct, em);
    for (int i = 0; i < 300; i++) {
        unsigned char r[2];
        memcpy(bad, em, sizeof(bad));
        RAND_bytes(r, 2);
        if (i > 0)
            bad[r[0]] ^= (unsigned char)(r[1] | 1);
        int n = kwk_unpad_oaep(out, sizeof(out), bad, 256, kwk_md(CKM_SHA256), kwk_md(CKM_SHA_1),
                               NULL, 0);
        /* the reference: libcrypto's own OAEP decryption of the same block re-encrypted */
        unsigned char c2[256];
        size_t rl = sizeof(ref), cl = sizeof(c2);
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
        assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING);
        int below = EVP_PKEY_encrypt(c, c2, &cl, bad, 256) == 1;
        EVP_PKEY_CTX_free(c);
        if (!below) { /* the damaged block is not below n: not a valid input at all */
            assert_int_equal(n, -1);
            continue;
        }
        c = EVP_PKEY_CTX_new_from_pkey(kwk_libctx(), rsa, NULL);
        assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING);
        EVP_PKEY_CTX_set_rsa_oaep_md(c, kwk_md(CKM_SHA256));
        EVP_PKEY_CTX_set_rsa_mgf1_md(c, kwk_md(CKM_SHA_1));
        int ok = EVP_PKEY_decrypt(c, ref, &rl, c2, cl) == 1;
        EVP_PKEY_CTX_free(c);
        assert_int_equal(n, ok ? (int)rl : -1);
        if (ok)
            assert_memory_equal(out, ref, rl);
        if (i == 0)
            assert_int_equal(n, 40);
    }
    ERR_clear_error();
}

/* The pairs are libcrypto's BN_BLINDING, refreshed every use and replaced every 32: over 100
 * operations on one key no blinded value repeats and each unblinds to the right result. */
static void test_blinding_refresh(void **state)
{
    unsigned char x[256], ref[256], seen[100][8];
    RAND_bytes(x, sizeof(x));
    x[0] = 0x02;
    raw_private(x, ref);
    for (int i = 0; i < 100; i++) {
        unsigned char blinded[256], yb[256], y[256];
        void *st;
        assert_int_equal(kwk_blind(rsa, x, 256, blinded, &st), CKR_OK);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(seen[j], blinded, 8);
        memcpy(seen[i], blinded, 8);
        raw_private(blinded, yb);
        assert_int_equal(kwk_unblind(rsa, st, yb, 256, y), CKR_OK);
        assert_memory_equal(y, ref, 256);
    }
    assert_int_equal(ERR_peek_error(), 0); /* nothing left on the caller's error queue */
}

static void test_desc_codec(void **state)
{
    char d[600], label[KWK_MAX_LABEL];
    unsigned char id[KWK_MAX_ID], want_id[3] = {0x00, 0xab, 0xff};
    kwk_kind kind;
    unsigned flags;
    kwk_serial link;
    size_t id_len;
    assert_true(kwk_desc_format(d, sizeof(d), KWK_KIND_PRIV, KWK_F_LOCAL | KWK_F_SIGN, 1234,
                                want_id, 3, "web:tls key", NULL, NULL));
    assert_string_equal(d, "keyward:priv:ls:1234:00abff:web:tls key");
    assert_true(
        kwk_desc_parse("asymmetric", d, &kind, &flags, &link, id, &id_len, label, NULL, NULL));
    assert_int_equal(kind, KWK_KIND_PRIV);
    assert_int_equal(flags, KWK_F_LOCAL | KWK_F_SIGN);
    assert_int_equal(link, 1234);
    assert_int_equal(id_len, 3);
    assert_memory_equal(id, want_id, 3);
    assert_string_equal(label, "web:tls key");
    /* a private kind must be an asymmetric key, the others user keys */
    assert_false(kwk_desc_parse("user", d, &kind, &flags, &link, id, &id_len, label, NULL, NULL));
    assert_false(kwk_desc_parse("asymmetric", "keyward:pub:-:0::x", &kind, &flags, &link, id,
                                &id_len, label, NULL, NULL));
    assert_false(kwk_desc_parse("user", "keyward:pub:-:0:0g:x", &kind, &flags, &link, id, &id_len,
                                label, NULL, NULL));
    assert_false(kwk_desc_parse("user", "keyward:pub:-:0:abc:x", &kind, &flags, &link, id, &id_len,
                                label, NULL, NULL));
    assert_false(kwk_desc_parse("user", "other:pub:-:0::x", &kind, &flags, &link, id, &id_len,
                                label, NULL, NULL));
    assert_true(kwk_desc_parse("user", "keyward:cert:-:0::", &kind, &flags, &link, id, &id_len,
                               label, NULL, NULL));
    assert_int_equal(kind, KWK_KIND_CERT);
    assert_int_equal(id_len, 0);
    assert_string_equal(label, "");

    /* CKA_ALLOWED_MECHANISMS after the flags, upper-case hex: an RSA-PSS key's list round-trips,
     * an old description has none, a broken list hides the key instead of lifting its limits */
    kwk_mechs ml = {3, {CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, 0x8000abcdUL}}, back;
    assert_true(kwk_desc_format(d, sizeof(d), KWK_KIND_SOFT, KWK_F_SIGN | KWK_F_DECRYPT, 7, want_id,
                                1, "pss:key", &ml, NULL));
    assert_string_equal(d, "keyward:soft:sd/D,43,8000ABCD:7:00:pss:key");
    assert_true(kwk_desc_parse("user", d, &kind, &flags, &link, id, &id_len, label, &back, NULL));
    assert_int_equal(flags, KWK_F_SIGN | KWK_F_DECRYPT);
    assert_int_equal(back.n, 3);
    assert_memory_equal(back.m, ml.m, 3 * sizeof(CK_MECHANISM_TYPE));
    assert_string_equal(label, "pss:key");
    assert_true(kwk_desc_parse("user", "keyward:soft:sd:7::k", &kind, &flags, &link, id, &id_len,
                               label, &back, NULL));
    assert_int_equal(back.n, 0);
    const char *broken[] = {"keyward:soft:s/:7::k",    "keyward:soft:s/d:7::k",
                            "keyward:soft:s/D,:7::k",  "keyward:soft:s/D,,1:7::k",
                            "keyward:soft:s/0x1:7::k", "keyward:soft:s/11111111111111111:7::k"};
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
        assert_false(kwk_desc_parse("user", broken[i], &kind, &flags, &link, id, &id_len, label,
                                    &back, NULL));
    ml.n = KWK_MAX_MECHS;
    for (size_t i = 0; i < KWK_MAX_MECHS; i++)
        ml.m[i] = ~(CK_MECHANISM_TYPE)0 - i;
    assert_true(kwk_desc_format(d, sizeof(d), KWK_KIND_PUB, 0, 0, NULL, 0, "", &ml, NULL));
    assert_true(kwk_desc_parse("user", d, &kind, &flags, &link, id, &id_len, label, &back, NULL));
    assert_int_equal(back.n, KWK_MAX_MECHS);
    assert_memory_equal(back.m, ml.m, sizeof(ml.m));
    assert_int_equal(flags, 0);

    /* CKA_SUBJECT, the dates and the certificate category between the flags and the list, upper
     * case (an older parser skips them and reads the same flags); 'r' is CKA_MODIFIABLE=FALSE */
    kwk_extra x = {{0x30, 0x00, 0xab}, 3, "20260102", "20361231", 8, 8, 2}, xb;
    ml.n = 1;
    ml.m[0] = CKM_ECDSA;
    assert_true(kwk_desc_format(d, sizeof(d), KWK_KIND_SOFT, KWK_F_SIGN | KWK_F_READONLY, 7, NULL,
                                0, "k", &ml, &x));
    assert_string_equal(d, "keyward:soft:sr+S3000AB+B20260102+E20361231+C2/1041:7::k");
    assert_true(kwk_desc_parse("user", d, &kind, &flags, &link, id, &id_len, label, &back, &xb));
    assert_int_equal(flags, KWK_F_SIGN | KWK_F_READONLY);
    assert_int_equal(back.n, 1);
    assert_memory_equal(&xb, &x, sizeof(x));
    assert_true(kwk_desc_parse("user", "keyward:soft:s:7::k", &kind, &flags, &link, id, &id_len,
                               label, NULL, &xb));
    assert_int_equal(xb.subject_len + xb.start_len + xb.end_len + xb.category, 0);
    const char *bad_x[] = {"keyward:soft:s+S300:7::k",     "keyward:soft:s+Sab:7::k",
                           "keyward:soft:s+B2026010:7::k", "keyward:soft:s+E2026-1-1:7::k",
                           "keyward:soft:s+C4:7::k",       "keyward:soft:s+Q1:7::k",
                           "keyward:soft:s+:7::k"};
    for (size_t i = 0; i < sizeof(bad_x) / sizeof(bad_x[0]); i++)
        assert_false(
            kwk_desc_parse("user", bad_x[i], &kind, &flags, &link, id, &id_len, label, NULL, &xb));
}

static void test_attr_put_rules(void **state)
{
    unsigned char buf[4];
    CK_ATTRIBUTE a = {CKA_LABEL, NULL, 0};
    assert_int_equal(kwk_attr_put(&a, "hello", 5), CKR_OK); /* length query */
    assert_int_equal(a.ulValueLen, 5);
    a.pValue = buf;
    a.ulValueLen = sizeof(buf);
    assert_int_equal(kwk_attr_put(&a, "hello", 5), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    a.ulValueLen = sizeof(buf);
    assert_int_equal(kwk_attr_put(&a, "hi", 2), CKR_OK);
    assert_int_equal(a.ulValueLen, 2);
    CK_ATTRIBUTE bad[] = {{CKA_LABEL, NULL, 8}};
    assert_int_equal(kwk_attr_check(bad, 1), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(kwk_attr_check(NULL, 1), CKR_ARGUMENTS_BAD);
    CK_BBOOL t = CK_TRUE, junk = 7;
    CK_ATTRIBUTE b[] = {{CKA_SIGN, &t, 1}, {CKA_DECRYPT, &junk, 1}, {CKA_DERIVE, &t, 4}};
    int v;
    assert_int_equal(kwk_attr_bool(b, 3, CKA_SIGN, &v), CKR_OK);
    assert_true(v);
    assert_int_equal(kwk_attr_bool(b, 3, CKA_DECRYPT, &v), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(kwk_attr_bool(b, 3, CKA_DERIVE, &v), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(kwk_attr_bool(b, 3, CKA_TOKEN, &v), CKR_TEMPLATE_INCOMPLETE);
}

static void test_curve_names(void **state)
{
    unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    unsigned char ed[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};
    unsigned char trailing[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x00};
    CK_ATTRIBUTE a = {CKA_EC_PARAMS, p384, sizeof(p384)};
    int edw;
    assert_string_equal(kwk_curve_name(&a, &edw), "P-384");
    assert_false(edw);
    a.pValue = ed;
    a.ulValueLen = sizeof(ed);
    assert_string_equal(kwk_curve_name(&a, &edw), "ED25519");
    assert_true(edw);
    a.pValue = trailing;
    a.ulValueLen = sizeof(trailing);
    assert_null(kwk_curve_name(&a, &edw));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pss_encode_verifies),
        cmocka_unit_test(test_oaep_decode),
        cmocka_unit_test(test_pkcs1_type2_decode),
        cmocka_unit_test(test_pkcs1_type1_matches_libcrypto),
        cmocka_unit_test(test_blinding_roundtrip),
        cmocka_unit_test(test_blinding_refresh),
        cmocka_unit_test(test_decoders_agree_with_libcrypto),
        cmocka_unit_test(test_desc_codec),
        cmocka_unit_test(test_attr_put_rules),
        cmocka_unit_test(test_curve_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
