/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helper for the provider's cryptographic edge cases, each reached through libcrypto's API
 * where the openssl command line cannot reach it. Keys are opened by URI through OSSL_STORE
 * (keyward, as configured by OPENSSL_CONF); public keys given as files are read by the default
 * provider. Exit 0: the operation did what the subcommand says; 1: it did not (reason and the
 * OpenSSL error stack on stderr); 2: usage or set-up failure.
 *
 *   crypto_edge sign-props URI PROPS   digest-sign SHA-256 data with the application's default
 *                                      properties set to PROPS ("" for none), fetching keyward's
 *                                      algorithms with "-fips"; prints "signed" and verifies
 *   crypto_edge oaep-lead URI PUB MD   OAEP (MD for label hash and MGF1) through keyward: a good
 *                                      block decrypts, the same block with its leading byte
 *                                      0x5a must be refused, and a good one decrypts again
 *   crypto_edge md-change URI          digest-sign with SHA-256: changing the digest to SHA-512
 *                                      after data was fed must be refused, naming SHA-256 again
 *                                      is accepted, and the signature verifies as SHA-256
 *   crypto_edge ecdh-short URI PEERKEY TOKENPUB
 *                                      ECDH: the full secret equals the peer's; into a 16-byte
 *                                      buffer it is the secret's first 16 bytes
 *   crypto_edge match PRIVURI PUBURI [CERT]
 *                                      the token's private and public key are the same type and
 *                                      EVP_PKEY_eq; CERT's key matches the private key
 */
#include <stdio.h>
#include <stdlib.h>

/* RSA_padding_add_PKCS1_OAEP_mgf1 (deprecated in 3.0, no replacement) builds the test block. */
#undef OPENSSL_NO_DEPRECATED
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/store.h>
#include <openssl/x509.h>

static EVP_PKEY *load_key(const char *uri, const char *propq, int want_public)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, NULL, propq, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pkey = NULL;

    while (st != NULL && pkey == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info == NULL)
            break;
        if (!want_public && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        else if (want_public && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PUBKEY)
            pkey = OSSL_STORE_INFO_get1_PUBKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    if (pkey == NULL)
        fprintf(stderr, "crypto_edge: no %s key at %s\n", want_public ? "public" : "private", uri);
    return pkey;
}

static int fail(const char *what)
{
    fprintf(stderr, "crypto_edge: %s\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

/* Helper crypto must come from the application's context, under its default properties. */
static int sign_props(const char *uri, const char *props)
{
    static const unsigned char data[] = "keyward helper context";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY *pkey = load_key(uri, "-fips", 0);
    int ok;

    if (pkey == NULL || m == NULL)
        return 2;
    if (*props != '\0' && !EVP_set_default_properties(NULL, props))
        return fail("cannot set the default properties");
    ok = EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, "-fips", pkey, NULL) == 1 &&
         EVP_DigestSign(m, sig, &siglen, data, sizeof(data)) == 1;
    EVP_MD_CTX_free(m);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return fail("signing failed");
    }
    printf("signed (%zu bytes)\n", siglen);
    EVP_set_default_properties(NULL, "");
    m = EVP_MD_CTX_new();
    ok = m != NULL && EVP_DigestVerifyInit_ex(m, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
         EVP_DigestVerify(m, sig, siglen, data, sizeof(data)) == 1;
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pkey);
    return ok ? 0 : fail("the signature does not verify");
}

static EVP_PKEY *read_pem(const char *path, int private)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *pk = NULL;

    if (f == NULL) {
        perror(path);
        return NULL;
    }
    pk = private ? PEM_read_PrivateKey_ex(f, NULL, NULL, NULL, NULL, "provider=default")
                 : PEM_read_PUBKEY_ex(f, NULL, NULL, NULL, NULL, "provider=default");
    fclose(f);
    if (pk == NULL)
        fprintf(stderr, "crypto_edge: cannot read %s\n", path);
    return pk;
}

/* Raw RSA with the public key in the default provider: em must be as long as the modulus. */
static int raw_encrypt(EVP_PKEY *pub, const unsigned char *em, size_t klen, unsigned char *ct)
{
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new_from_pkey(NULL, pub, "provider=default");
    size_t ctlen = klen;
    int ok = e != NULL && EVP_PKEY_encrypt_init(e) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(e, RSA_NO_PADDING) == 1 &&
             EVP_PKEY_encrypt(e, ct, &ctlen, em, klen) == 1 && ctlen == klen;
    EVP_PKEY_CTX_free(e);
    return ok;
}

static int oaep_keyward(EVP_PKEY *priv, const EVP_MD *md, const unsigned char *ct, size_t ctlen,
                        unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
    int ok = d != NULL && EVP_PKEY_decrypt_init(d) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(d, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(d, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(d, md) == 1 &&
             EVP_PKEY_decrypt(d, out, outlen, ct, ctlen) == 1;
    EVP_PKEY_CTX_free(d);
    return ok;
}

/* RFC 8017 7.1.2 step 3g: the encoded block's first byte must be zero. */
static int oaep_lead(const char *uri, const char *pubfile, const char *mdname)
{
    static const unsigned char msg[] = "keyward OAEP leading byte";
    unsigned char em[1024], ct[1024], out[1024];
    size_t outlen;
    EVP_PKEY *pub = read_pem(pubfile, 0), *priv = load_key(uri, NULL, 0);
    EVP_MD *md = EVP_MD_fetch(NULL, mdname, "provider=default");
    size_t klen;
    int rc = 1;

    if (pub == NULL || priv == NULL || md == NULL)
        return 2;
    klen = (size_t)EVP_PKEY_get_size(pub);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (klen > sizeof(em) ||
        RSA_padding_add_PKCS1_OAEP_mgf1(em, (int)klen, msg, sizeof(msg), NULL, 0, md, md) != 1)
        return fail("cannot build an OAEP block");
#pragma GCC diagnostic pop
    if (em[0] != 0 || !raw_encrypt(pub, em, klen, ct))
        return fail("cannot encrypt the good block");
    outlen = sizeof(out);
    if (!oaep_keyward(priv, md, ct, klen, out, &outlen) || outlen != sizeof(msg) ||
        memcmp(out, msg, outlen) != 0)
        return fail("the good block did not decrypt to the message");
    printf("good block: decrypted\n");

    em[0] = 0x5a;
    if (!raw_encrypt(pub, em, klen, ct))
        return fail("cannot encrypt the bad block");
    outlen = sizeof(out);
    if (oaep_keyward(priv, md, ct, klen, out, &outlen)) {
        fprintf(stderr, "crypto_edge: a block starting 0x5a was accepted (%zu bytes)\n", outlen);
        goto done;
    }
    printf("block starting 0x5a: refused\n");
    ERR_print_errors_fp(stdout);

    em[0] = 0;
    outlen = sizeof(out);
    if (!raw_encrypt(pub, em, klen, ct) || !oaep_keyward(priv, md, ct, klen, out, &outlen) ||
        outlen != sizeof(msg) || memcmp(out, msg, outlen) != 0) {
        fail("the good block did not decrypt the second time");
        goto done;
    }
    printf("good block again: decrypted\n");
    rc = 0;
done:
    EVP_MD_free(md);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(priv);
    return rc;
}

/* Once data is fed, the digest is fixed, as in OpenSSL's own providers. */
static int md_change(const char *uri)
{
    static const unsigned char data[] = "keyward digest change";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY *pkey = load_key(uri, NULL, 0);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int rc = 1;

    if (pkey == NULL || m == NULL)
        return 2;
    if (EVP_DigestSignInit_ex(m, &pc, "SHA256", NULL, NULL, pkey, NULL) != 1 ||
        EVP_DigestSignUpdate(m, data, 10) != 1)
        return fail("cannot start the digest-sign");
    if (EVP_PKEY_CTX_set_signature_md(pc, EVP_sha512()) > 0) {
        fprintf(stderr, "crypto_edge: the digest changed to SHA-512 in the middle\n");
        goto done;
    }
    printf("change to SHA-512: refused\n");
    ERR_print_errors_fp(stdout);
    if (EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) <= 0) {
        fail("naming the same digest again was refused");
        goto done;
    }
    if (EVP_DigestSignUpdate(m, data + 10, sizeof(data) - 10) != 1 ||
        EVP_DigestSignFinal(m, sig, &siglen) != 1) {
        fail("signing failed");
        goto done;
    }
    EVP_MD_CTX_free(m);
    m = EVP_MD_CTX_new();
    if (m == NULL || EVP_DigestVerifyInit_ex(m, NULL, "SHA256", NULL, NULL, pkey, NULL) != 1 ||
        EVP_DigestVerify(m, sig, siglen, data, sizeof(data)) != 1) {
        fail("the signature is not a SHA-256 one over the data");
        goto done;
    }
    printf("signature: SHA-256, verified\n");
    rc = 0;
done:
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pkey);
    return rc;
}

static int derive(EVP_PKEY *key, EVP_PKEY *peer, const char *propq, unsigned char *out,
                  size_t *outlen)
{
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, key, propq);
    int ok = d != NULL && EVP_PKEY_derive_init(d) == 1 && EVP_PKEY_derive_set_peer(d, peer) == 1 &&
             EVP_PKEY_derive(d, out, outlen) == 1;
    EVP_PKEY_CTX_free(d);
    return ok;
}

/* A buffer shorter than the secret gets its first bytes, as the default provider gives. */
static int ecdh_short(const char *uri, const char *peerfile, const char *tokpubfile)
{
    unsigned char ref[160], full[160], part[16];
    size_t reflen = sizeof(ref), fulllen = sizeof(full), partlen = sizeof(part);
    EVP_PKEY *priv = load_key(uri, NULL, 0), *peer = read_pem(peerfile, 1);
    EVP_PKEY *tokpub = read_pem(tokpubfile, 0);
    int rc = 1;

    if (priv == NULL || peer == NULL || tokpub == NULL)
        return 2;
    if (!derive(peer, tokpub, "provider=default", ref, &reflen))
        return fail("the peer cannot derive");
    if (!derive(priv, peer, NULL, full, &fulllen) || fulllen != reflen ||
        memcmp(full, ref, reflen) != 0) {
        fail("the token's secret differs from the peer's");
        goto done;
    }
    printf("full secret: %zu bytes, equal to the peer's\n", fulllen);
    if (!derive(priv, peer, NULL, part, &partlen)) {
        fail("derive into a 16-byte buffer failed");
        goto done;
    }
    if (partlen != sizeof(part) || memcmp(part, ref, sizeof(part)) != 0) {
        fprintf(stderr, "crypto_edge: 16-byte derive gave %zu bytes, not the secret's first 16\n",
                partlen);
        goto done;
    }
    printf("16-byte buffer: the secret's first 16 bytes\n");
    rc = 0;
done:
    EVP_PKEY_free(priv);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(tokpub);
    return rc;
}

static int match(const char *privuri, const char *puburi, const char *certfile)
{
    EVP_PKEY *priv = load_key(privuri, NULL, 0), *pub = load_key(puburi, NULL, 1);
    int rc = 1;

    if (priv == NULL || pub == NULL)
        return 2;
    printf("private: %s, public: %s\n", EVP_PKEY_get0_type_name(priv),
           EVP_PKEY_get0_type_name(pub));
    if (EVP_PKEY_eq(priv, pub) != 1) {
        fail("the private and the public key do not match");
        goto done;
    }
    printf("EVP_PKEY_eq: match\n");
    if (certfile != NULL) {
        FILE *f = fopen(certfile, "r");
        X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        if (f != NULL)
            fclose(f);
        if (x == NULL || X509_check_private_key(x, priv) != 1) {
            X509_free(x);
            fail("the certificate's key does not match the private key");
            goto done;
        }
        X509_free(x);
        printf("certificate: matches the private key\n");
    }
    rc = 0;
done:
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "oaep-lead") == 0)
        return oaep_lead(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "md-change") == 0)
        return md_change(argv[2]);
    if (argc == 5 && strcmp(argv[1], "ecdh-short") == 0)
        return ecdh_short(argv[2], argv[3], argv[4]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "match") == 0)
        return match(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
    if (argc == 4 && strcmp(argv[1], "sign-props") == 0)
        return sign_props(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of crypto_edge.c\n");
    return 2;
}
