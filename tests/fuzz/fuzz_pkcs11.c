/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: keyward-pkcs11.so's entry points, compiled in. The token is a keyring in a fresh
 * anonymous session keyring joined at start (software mode forced), so nothing the fuzzer
 * creates reaches the user's keyrings and all of it goes away with the process.
 *
 * Input: the first byte picks the operation, the second the object; the rest feeds templates,
 * mechanisms with their parameters (PSS, OAEP) and data:
 *   0 C_FindObjectsInit/FindObjects/Final with a fuzzed template
 *   1 C_CreateObject with a fuzzed template, then C_SetAttributeValue and C_GetAttributeValue on
 *     the new object, which is destroyed again (with an imported private key's public half)
 *   2 C_GetAttributeValue with a fuzzed template (length queries, short and odd buffers)
 *   3 C_SetAttributeValue on the generated keys, whose label and ID are restored after
 *   4 C_SignInit with a fuzzed mechanism and parameters, then C_Sign or SignUpdate/SignFinal
 *   5 C_DecryptInit with a fuzzed mechanism, C_Decrypt of fuzzed bytes, of a fuzzed block under
 *     raw RSA (so the unpadding sees any padded block), or of a real PKCS#1/OAEP ciphertext
 *   6 C_VerifyInit/C_Verify with fuzzed mechanism and signature
 * Properties besides "no crash, no leak, no overflow": a private key's secret attributes are
 * never returned; private keys stay sensitive and unextractable whatever is set; a signature
 * the token made verifies on the token; a decryption's output fits the padding's bounds and a
 * real ciphertext decrypts to its plaintext. Each input leaves the token as it found it, so a
 * finding replays from its input alone. */
#include <keyutils.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "fuzz.h"
#include "kwk.h"

#define MAX_ATTRS 8

static CK_FUNCTION_LIST_PTR f;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE keys[6]; /* rsa priv, rsa pub, ec priv, ec pub, ed priv, ed pub */
static EVP_PKEY *rsa_pub;        /* the RSA key's public half, for raw and real ciphertexts */
static size_t rsa_len;
static struct {
    unsigned char label[64], id[64];
    CK_ULONG label_len, id_len;
} orig[6]; /* the generated keys' label and ID */
#define MAX_OBJS 64

typedef struct {
    const uint8_t *p;
    size_t n;
} rd;

static uint8_t u8(rd *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static uint32_t u32(rd *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | u8(r);
    return v;
}

/* A copy of the next len input bytes (zeros past the end) in a buffer of exactly len bytes, so
 * an overread of a value is an ASan report. */
static void *take(rd *r, size_t len)
{
    unsigned char *b = malloc(len ? len : 1);
    if (b == NULL)
        abort();
    for (size_t i = 0; i < len; i++)
        b[i] = u8(r);
    return b;
}

static const CK_ATTRIBUTE_TYPE attr_types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_VALUE,
    CKA_CERTIFICATE_TYPE,
    CKA_KEY_TYPE,
    CKA_SUBJECT,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_DERIVE,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_MODIFIABLE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_ALLOWED_MECHANISMS,
    CKA_KEYWARD_PKCS8,
    CKA_KEYWARD_MODE,
    CKA_KEYWARD_SERIAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_PUBLIC_KEY_INFO,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
};
#define N_ATTR_TYPES (sizeof(attr_types) / sizeof(attr_types[0]))

static const CK_ULONG ulongs[] = {
    CKO_DATA, CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY, CKK_RSA,
    CKK_EC,   CKK_EC_EDWARDS,  CKK_AES,        CKC_X_509,       1024,           2048,
    0,        ~(CK_ULONG)0,
};

/* A template whose values come from the input. out: values are output buffers (their bytes
 * are still filled from the input, so a module that reads them reads something defined). */
static CK_ULONG read_template(rd *r, CK_ATTRIBUTE *t)
{
    CK_ULONG n = u8(r) % (MAX_ATTRS + 1);
    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t sel = u8(r), lsel = u8(r);
        size_t len;
        t[i].type = sel == 255 ? (CK_ATTRIBUTE_TYPE)u32(r) : attr_types[sel % N_ATTR_TYPES];
        switch (lsel) {
        case 251:
            len = ((size_t)u8(r) << 8 | u8(r)) % 4097;
            t[i].pValue = take(r, len);
            t[i].ulValueLen = len;
            break;
        case 252: {
            CK_ULONG *v = malloc(sizeof(*v));
            if (v == NULL)
                abort();
            *v = ulongs[u8(r) % (sizeof(ulongs) / sizeof(ulongs[0]))];
            t[i].pValue = v;
            t[i].ulValueLen = sizeof(*v);
            break;
        }
        case 253:
        case 254: {
            CK_BBOOL *v = malloc(1);
            if (v == NULL)
                abort();
            *v = lsel == 253 ? CK_TRUE : CK_FALSE;
            t[i].pValue = v;
            t[i].ulValueLen = 1;
            break;
        }
        case 255:
            t[i].pValue = NULL;
            t[i].ulValueLen = u8(r);
            break;
        default:
            t[i].pValue = take(r, lsel);
            t[i].ulValueLen = lsel;
        }
    }
    return n;
}

static void free_template(CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++)
        free(t[i].pValue);
}

static int is_secret_attr(CK_ATTRIBUTE_TYPE a)
{
    return a == CKA_PRIVATE_EXPONENT || a == CKA_PRIME_1 || a == CKA_PRIME_2 ||
           a == CKA_EXPONENT_1 || a == CKA_EXPONENT_2 || a == CKA_COEFFICIENT || a == CKA_VALUE ||
           a == CKA_KEYWARD_PKCS8;
}

static CK_OBJECT_CLASS class_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    CK_OBJECT_CLASS c = (CK_OBJECT_CLASS)-1;
    CK_ATTRIBUTE a = {CKA_CLASS, &c, sizeof(c)};
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return (CK_OBJECT_CLASS)-1;
    return c;
}

/* C_GetAttributeValue with the template's buffers as output; secret attributes of private keys
 * never come back. */
static void get_attrs(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *t, CK_ULONG n)
{
    int priv = class_of(s, o) == CKO_PRIVATE_KEY;
    CK_RV rv = f->C_GetAttributeValue(s, o, t, n);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
        rv != CKR_BUFFER_TOO_SMALL)
        return;
    for (CK_ULONG i = 0; priv && i < n; i++)
        if (is_secret_attr(t[i].type))
            FUZZ_CHECK(t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION);
}

static void check_private_stays_private(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE;
    CK_ATTRIBUTE a[] = {{CKA_SENSITIVE, &sens, 1}, {CKA_EXTRACTABLE, &extr, 1}};
    if (class_of(s, o) != CKO_PRIVATE_KEY)
        return;
    FUZZ_CHECK(f->C_GetAttributeValue(s, o, a, 2) == CKR_OK);
    FUZZ_CHECK(sens == CK_TRUE && extr == CK_FALSE);
}

static const CK_MECHANISM_TYPE mech_types[] = {
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_EDDSA,
    CKM_ECDH1_DERIVE,
    CKM_AES_CBC,
    CKM_SHA256,
};
#define N_MECHS (sizeof(mech_types) / sizeof(mech_types[0]))

static const CK_ULONG hashes[] = {CKM_SHA_1,  CKM_SHA224, CKM_SHA256,           CKM_SHA384,
                                  CKM_SHA512, CKM_MD5,    0x2b0 /* SHA3-256 */, 0};
static const CK_ULONG mgfs[] = {
    CKG_MGF1_SHA1, CKG_MGF1_SHA224, CKG_MGF1_SHA256, CKG_MGF1_SHA384, CKG_MGF1_SHA512, 0, 0x77};

typedef struct {
    CK_MECHANISM m;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    void *owned; /* parameter bytes or OAEP label taken from the input */
} fmech;

static void read_mech(rd *r, fmech *fm)
{
    uint8_t sel = u8(r), psel = u8(r);
    memset(fm, 0, sizeof(*fm));
    fm->m.mechanism = sel == 255 ? (CK_MECHANISM_TYPE)u32(r) : mech_types[sel % N_MECHS];
    switch (psel % 6) {
    case 0:
        break;
    case 1:
        fm->pss.hashAlg = hashes[u8(r) % (sizeof(hashes) / sizeof(hashes[0]))];
        fm->pss.mgf = mgfs[u8(r) % (sizeof(mgfs) / sizeof(mgfs[0]))];
        fm->pss.sLen = (CK_ULONG)u8(r) << (u8(r) % 24);
        fm->m.pParameter = &fm->pss;
        /* mostly the right size; sometimes one short */
        fm->m.ulParameterLen = sizeof(fm->pss) - (psel >= 250);
        break;
    case 2: {
        size_t ll = u8(r) % 64;
        fm->oaep.hashAlg = hashes[u8(r) % (sizeof(hashes) / sizeof(hashes[0]))];
        fm->oaep.mgf = mgfs[u8(r) % (sizeof(mgfs) / sizeof(mgfs[0]))];
        fm->oaep.source = u8(r) % 3; /* 1 is CKZ_DATA_SPECIFIED */
        if (ll != 63) {
            fm->owned = take(r, ll);
            fm->oaep.pSourceData = fm->owned;
        }
        fm->oaep.ulSourceDataLen = ll;
        fm->m.pParameter = &fm->oaep;
        fm->m.ulParameterLen = sizeof(fm->oaep) - (psel >= 250);
        break;
    }
    case 3: {
        size_t len = u8(r);
        fm->owned = take(r, len);
        fm->m.pParameter = fm->owned;
        fm->m.ulParameterLen = len;
        break;
    }
    case 4:
        fm->m.pParameter = NULL;
        fm->m.ulParameterLen = u8(r);
        break;
    default:
        /* the mechanism's usual parameters, to get past the checks */
        if (fm->m.mechanism == CKM_RSA_PKCS_OAEP) {
            fm->oaep.hashAlg = CKM_SHA256;
            fm->oaep.mgf = CKG_MGF1_SHA256;
            fm->oaep.source = CKZ_DATA_SPECIFIED;
            fm->m.pParameter = &fm->oaep;
            fm->m.ulParameterLen = sizeof(fm->oaep);
        } else if (fm->m.mechanism == CKM_RSA_PKCS_PSS ||
                   (fm->m.mechanism >= CKM_SHA256_RSA_PKCS_PSS &&
                    fm->m.mechanism <= CKM_SHA512_RSA_PKCS_PSS)) {
            fm->pss.hashAlg = CKM_SHA256;
            fm->pss.mgf = CKG_MGF1_SHA256;
            fm->pss.sLen = 32;
            fm->m.pParameter = &fm->pss;
            fm->m.ulParameterLen = sizeof(fm->pss);
        }
    }
}

static CK_OBJECT_HANDLE pick_key(rd *r, uint8_t sel)
{
    if (sel % 8 == 7)
        return (CK_OBJECT_HANDLE)u32(r);
    return keys[sel % 8 % 6];
}

/* Single-shot output: a length query first, or a buffer of a fuzzed size. */
static CK_RV call_out(rd *r, int sign, CK_SESSION_HANDLE s, unsigned char *in, CK_ULONG inlen,
                      unsigned char **out, CK_ULONG *outlen)
{
    CK_RV rv;
    uint8_t how = u8(r);
    *out = NULL;
    *outlen = 0;
    if (how % 2 == 0) {
        rv =
            sign ? f->C_Sign(s, in, inlen, NULL, outlen) : f->C_Decrypt(s, in, inlen, NULL, outlen);
        if (rv != CKR_OK)
            return rv;
        FUZZ_CHECK(*outlen <= 8192);
    } else {
        *outlen = u8(r) * 3;
    }
    *out = malloc(*outlen ? *outlen : 1);
    if (*out == NULL)
        abort();
    return sign ? f->C_Sign(s, in, inlen, *out, outlen) : f->C_Decrypt(s, in, inlen, *out, outlen);
}

static void op_sign(CK_SESSION_HANDLE s, rd *r, CK_OBJECT_HANDLE key)
{
    fmech fm;
    read_mech(r, &fm);
    if (f->C_SignInit(s, &fm.m, key) == CKR_OK) {
        size_t dlen = ((size_t)u8(r) << 2) | (u8(r) & 3);
        unsigned char *data = take(r, dlen), *sig = NULL;
        CK_ULONG slen = 0;
        if (u8(r) % 3 == 0) {
            CK_RV rv = CKR_OK;
            for (size_t off = 0; off < dlen && rv == CKR_OK; off += 97)
                rv = f->C_SignUpdate(s, data + off, dlen - off < 97 ? dlen - off : 97);
            if (rv == CKR_OK && f->C_SignFinal(s, NULL, &slen) == CKR_OK && slen <= 8192) {
                sig = malloc(slen ? slen : 1);
                if (sig == NULL || f->C_SignFinal(s, sig, &slen) != CKR_OK) {
                    free(sig);
                    sig = NULL;
                }
            }
        } else if (call_out(r, 1, s, data, dlen, &sig, &slen) != CKR_OK) {
            free(sig);
            sig = NULL;
        }
        /* What the token signed, the token verifies. */
        if (sig != NULL && key == keys[0] && f->C_VerifyInit(s, &fm.m, keys[1]) == CKR_OK)
            FUZZ_CHECK(f->C_Verify(s, data, dlen, sig, slen) == CKR_OK);
        if (sig != NULL && key == keys[2] && f->C_VerifyInit(s, &fm.m, keys[3]) == CKR_OK)
            FUZZ_CHECK(f->C_Verify(s, data, dlen, sig, slen) == CKR_OK);
        free(sig);
        free(data);
    }
    free(fm.owned);
}

static void op_verify(CK_SESSION_HANDLE s, rd *r, CK_OBJECT_HANDLE key)
{
    fmech fm;
    read_mech(r, &fm);
    if (f->C_VerifyInit(s, &fm.m, key) == CKR_OK) {
        size_t dlen = u8(r), slen = (size_t)u8(r) * 2;
        unsigned char *data = take(r, dlen), *sig = take(r, slen);
        (void)f->C_Verify(s, data, dlen, sig, slen);
        free(data);
        free(sig);
    }
    free(fm.owned);
}

static const EVP_MD *md_of(CK_ULONG h)
{
    switch (h) {
    case CKM_SHA_1:
        return EVP_sha1();
    case CKM_SHA224:
        return EVP_sha224();
    case CKM_SHA256:
        return EVP_sha256();
    case CKM_SHA384:
        return EVP_sha384();
    case CKM_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

static const EVP_MD *mgf_of(CK_ULONG g)
{
    switch (g) {
    case CKG_MGF1_SHA1:
        return EVP_sha1();
    case CKG_MGF1_SHA224:
        return EVP_sha224();
    case CKG_MGF1_SHA256:
        return EVP_sha256();
    case CKG_MGF1_SHA384:
        return EVP_sha384();
    case CKG_MGF1_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

/* Encrypt in under the RSA public key with OpenSSL: raw (pad RSA_NO_PADDING, in is the block),
 * PKCS#1 v1.5 or OAEP with the mechanism's parameters. 0 when OpenSSL refuses. */
static size_t encrypt_pub(int pad, const fmech *fm, const unsigned char *in, size_t inlen,
                          unsigned char *out)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(rsa_pub, NULL);
    size_t outlen = rsa_len;
    int ok = c != NULL && EVP_PKEY_encrypt_init(c) > 0 && EVP_PKEY_CTX_set_rsa_padding(c, pad) > 0;
    if (ok && pad == RSA_PKCS1_OAEP_PADDING) {
        const EVP_MD *md = md_of(fm->oaep.hashAlg), *mgf = mgf_of(fm->oaep.mgf);
        ok = md != NULL && mgf != NULL && EVP_PKEY_CTX_set_rsa_oaep_md(c, md) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(c, mgf) > 0;
        if (ok && fm->oaep.ulSourceDataLen > 0 && fm->oaep.pSourceData != NULL) {
            void *l = OPENSSL_memdup(fm->oaep.pSourceData, fm->oaep.ulSourceDataLen);
            ok = l != NULL && EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, fm->oaep.ulSourceDataLen) > 0;
            if (!ok)
                OPENSSL_free(l);
        }
    }
    ok = ok && EVP_PKEY_encrypt(c, out, &outlen, in, inlen) > 0;
    EVP_PKEY_CTX_free(c);
    return ok ? outlen : 0;
}

static void op_decrypt(CK_SESSION_HANDLE s, rd *r, CK_OBJECT_HANDLE key)
{
    fmech fm;
    unsigned char ct[KWK_MAX_RSA_BYTES], *pt = NULL, *msg = NULL;
    size_t ctlen = 0, mlen = 0;
    uint8_t how = u8(r);
    CK_ULONG outlen = 0;
    CK_RV rv;

    read_mech(r, &fm);
    if (f->C_DecryptInit(s, &fm.m, key) != CKR_OK)
        goto out;
    switch (how % 4) {
    case 0: /* bytes as they come */
        ctlen = (((size_t)u8(r) << 8) | u8(r)) % (sizeof(ct) + 1);
        for (size_t i = 0; i < ctlen; i++)
            ct[i] = u8(r);
        break;
    case 1: { /* any padded block the private key will see after the RSA operation */
        unsigned char block[KWK_MAX_RSA_BYTES];
        for (size_t i = 0; i < rsa_len; i++)
            block[i] = u8(r);
        block[0] = 0; /* below the modulus */
        ctlen = encrypt_pub(RSA_NO_PADDING, &fm, block, rsa_len, ct);
        break;
    }
    default: /* a real ciphertext of fuzzed plaintext: it must decrypt to that plaintext */
        mlen = u8(r);
        msg = take(r, mlen);
        if (fm.m.mechanism == CKM_RSA_PKCS)
            ctlen = encrypt_pub(RSA_PKCS1_PADDING, &fm, msg, mlen, ct);
        else if (fm.m.mechanism == CKM_RSA_PKCS_OAEP && fm.m.pParameter == &fm.oaep &&
                 fm.m.ulParameterLen == sizeof(fm.oaep) && fm.oaep.source == CKZ_DATA_SPECIFIED)
            ctlen = encrypt_pub(RSA_PKCS1_OAEP_PADDING, &fm, msg, mlen, ct);
        if (ctlen == 0) {
            free(msg);
            msg = NULL;
        }
    }
    rv = call_out(r, 0, s, ct, (CK_ULONG)ctlen, &pt, &outlen);
    if (rv == CKR_OK && key == keys[0]) {
        FUZZ_CHECK(outlen <= rsa_len);
        if (fm.m.mechanism == CKM_RSA_PKCS)
            FUZZ_CHECK(outlen + 11 <= rsa_len);
        if (msg != NULL && fm.m.mechanism == CKM_RSA_PKCS)
            FUZZ_CHECK(outlen == mlen && memcmp(pt, msg, mlen) == 0);
    }
    /* A real OAEP ciphertext with parameters the token accepted decrypts to its plaintext. */
    if (msg != NULL && key == keys[0] && fm.m.mechanism == CKM_RSA_PKCS_OAEP &&
        rv != CKR_BUFFER_TOO_SMALL && pt != NULL && rv != CKR_MECHANISM_PARAM_INVALID)
        FUZZ_CHECK(rv == CKR_OK && outlen == mlen && memcmp(pt, msg, mlen) == 0);
    free(pt);
    free(msg);
out:
    free(fm.owned);
}

static void op_find(CK_SESSION_HANDLE s, rd *r)
{
    CK_ATTRIBUTE t[MAX_ATTRS];
    CK_ULONG n = read_template(r, t);
    if (f->C_FindObjectsInit(s, u8(r) == 0xff ? NULL : t, n) == CKR_OK) {
        CK_OBJECT_HANDLE found[4];
        CK_ULONG got;
        int rounds = 0;
        while (rounds++ < 16 && f->C_FindObjects(s, found, 1 + u8(r) % 4, &got) == CKR_OK &&
               got > 0)
            FUZZ_CHECK(got <= 4);
        f->C_FindObjectsFinal(s);
    }
    free_template(t, n);
}

/* Every object handle on the token (at most cap). */
static CK_ULONG list_objects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h, CK_ULONG cap)
{
    CK_ULONG got = 0;
    FUZZ_CHECK(f->C_FindObjectsInit(s, NULL, 0) == CKR_OK);
    FUZZ_CHECK(f->C_FindObjects(s, h, cap, &got) == CKR_OK);
    FUZZ_CHECK(f->C_FindObjectsFinal(s) == CKR_OK);
    return got;
}

static void op_create(CK_SESSION_HANDLE s, rd *r)
{
    CK_ATTRIBUTE t[MAX_ATTRS], t2[MAX_ATTRS];
    CK_ULONG n = read_template(r, t), n2;
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE, before[MAX_OBJS], after[MAX_OBJS];
    CK_ULONG nb = list_objects(s, before, MAX_OBJS);

    if (f->C_CreateObject(s, t, n, &o) == CKR_OK) {
        check_private_stays_private(s, o);
        n2 = read_template(r, t2);
        (void)f->C_SetAttributeValue(s, o, t2, n2);
        check_private_stays_private(s, o);
        free_template(t2, n2);
        n2 = read_template(r, t2);
        get_attrs(s, o, t2, n2);
        free_template(t2, n2);
        FUZZ_CHECK(f->C_DestroyObject(s, o) == CKR_OK);
    }
    free_template(t, n);
    /* An imported private key brings its public half as a second object: that goes too, so the
     * token is as it was and the next input does not depend on this one. */
    CK_ULONG na = list_objects(s, after, MAX_OBJS);
    for (CK_ULONG i = 0; i < na; i++) {
        int old = 0;
        for (CK_ULONG j = 0; j < nb && !old; j++)
            old = after[i] == before[j];
        if (!old)
            FUZZ_CHECK(f->C_DestroyObject(s, after[i]) == CKR_OK);
    }
    FUZZ_CHECK(list_objects(s, after, MAX_OBJS) == nb);
}

static void op_set(CK_SESSION_HANDLE s, rd *r, CK_OBJECT_HANDLE key)
{
    CK_ATTRIBUTE t[MAX_ATTRS];
    CK_ULONG n = read_template(r, t);
    (void)f->C_SetAttributeValue(s, key, t, n);
    check_private_stays_private(s, key);
    free_template(t, n);
    /* Label and ID (all a token key lets one change) back as generated, so that the next input
     * finds the token as every input does. */
    for (int i = 0; i < 6; i++) {
        CK_ATTRIBUTE a[] = {{CKA_LABEL, orig[i].label, orig[i].label_len},
                            {CKA_ID, orig[i].id, orig[i].id_len}};
        FUZZ_CHECK(f->C_SetAttributeValue(s, keys[i], a, 2) == CKR_OK);
    }
}

static EVP_PKEY *rsa_public(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub)
{
    unsigned char n[KWK_MAX_RSA_BYTES], e[16];
    CK_ATTRIBUTE a[] = {{CKA_MODULUS, n, sizeof(n)}, {CKA_PUBLIC_EXPONENT, e, sizeof(e)}};
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *p = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    BIGNUM *bn = NULL, *be = NULL;

    FUZZ_CHECK(f->C_GetAttributeValue(s, pub, a, 2) == CKR_OK);
    rsa_len = a[0].ulValueLen;
    bn = BN_bin2bn(n, (int)a[0].ulValueLen, NULL);
    be = BN_bin2bn(e, (int)a[1].ulValueLen, NULL);
    FUZZ_CHECK(b != NULL && c != NULL && bn != NULL && be != NULL);
    FUZZ_CHECK(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) &&
               OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be));
    p = OSSL_PARAM_BLD_to_param(b);
    FUZZ_CHECK(p != NULL && EVP_PKEY_fromdata_init(c) > 0 &&
               EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, p) > 0);
    OSSL_PARAM_free(p);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    BN_free(bn);
    BN_free(be);
    return k;
}

static void cleanup(void)
{
    if (f != NULL)
        f->C_Finalize(NULL);
    EVP_PKEY_free(rsa_pub);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char conf[] = "/tmp/kwk-fuzz-conf.XXXXXX";
    static const char text[] = "token fuzz session:kwk-fuzz software\n";
    CK_SESSION_HANDLE s;
    CK_ULONG n = 1;
    CK_BBOOL yes = CK_TRUE;
    CK_ULONG bits = 1024;
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    CK_MECHANISM mrsa = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM mec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM med = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE prsa[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_TOKEN, &yes, 1}};
    CK_ATTRIBUTE pec[] = {{CKA_EC_PARAMS, (void *)p256, sizeof(p256)}, {CKA_TOKEN, &yes, 1}};
    CK_ATTRIBUTE ped[] = {{CKA_EC_PARAMS, (void *)ed25519, sizeof(ed25519)}, {CKA_TOKEN, &yes, 1}};
    CK_ATTRIBUTE tok[] = {{CKA_TOKEN, &yes, 1}};
    int fd;

    /* A keyring of our own: whatever the fuzzer stores dies with this process. */
    if (keyctl_join_session_keyring(NULL) < 0) {
        perror("keyctl_join_session_keyring");
        abort();
    }
    fd = mkstemp(conf);
    FUZZ_CHECK(fd >= 0 && write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1));
    close(fd);
    setenv("KEYWARD_PKCS11_CONF", conf, 1);
    FUZZ_CHECK(C_GetFunctionList(&f) == CKR_OK);
    FUZZ_CHECK(f->C_Initialize(NULL) == CKR_OK);
    unlink(conf);
    atexit(cleanup);
    FUZZ_CHECK(f->C_GetSlotList(CK_TRUE, &slot, &n) == CKR_OK && n == 1);
    FUZZ_CHECK(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) ==
               CKR_OK);
    FUZZ_CHECK(f->C_GenerateKeyPair(s, &mrsa, prsa, 2, tok, 1, &keys[1], &keys[0]) == CKR_OK);
    FUZZ_CHECK(f->C_GenerateKeyPair(s, &mec, pec, 2, tok, 1, &keys[3], &keys[2]) == CKR_OK);
    FUZZ_CHECK(f->C_GenerateKeyPair(s, &med, ped, 2, tok, 1, &keys[5], &keys[4]) == CKR_OK);
    rsa_pub = rsa_public(s, keys[1]);
    for (int i = 0; i < 6; i++) {
        CK_ATTRIBUTE a[] = {{CKA_LABEL, orig[i].label, sizeof(orig[i].label)},
                            {CKA_ID, orig[i].id, sizeof(orig[i].id)}};
        FUZZ_CHECK(f->C_GetAttributeValue(s, keys[i], a, 2) == CKR_OK);
        orig[i].label_len = a[0].ulValueLen;
        orig[i].id_len = a[1].ulValueLen;
    }
    f->C_CloseSession(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, size};
    CK_SESSION_HANDLE s;
    uint8_t op = u8(&r), ksel = u8(&r);
    CK_OBJECT_HANDLE key;

    /* A session per input: an operation a previous input left active does not carry over. */
    FUZZ_CHECK(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) ==
               CKR_OK);
    key = pick_key(&r, ksel);
    switch (op % 7) {
    case 0:
        op_find(s, &r);
        break;
    case 1:
        op_create(s, &r);
        break;
    case 2: {
        CK_ATTRIBUTE t[MAX_ATTRS];
        CK_ULONG n = read_template(&r, t);
        get_attrs(s, key, t, n);
        free_template(t, n);
        break;
    }
    case 3:
        op_set(s, &r, key);
        break;
    case 4:
        op_sign(s, &r, key);
        break;
    case 5:
        op_decrypt(s, &r, key);
        break;
    default:
        op_verify(s, &r, key);
    }
    FUZZ_CHECK(f->C_CloseSession(s) == CKR_OK);
    return 0;
}
