/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the whole PEM key file path as a program meets it. The provider is linked in
 * and registered as a built-in; input goes through OpenSSL's decoder chain (PEM -> keyward's
 * PEM decoder -> DER -> URI decoder -> key lookup) against the fake PKCS#11 module of the unit
 * tests, so fuzzed URIs reach token matching, login and the object search too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include "fuzz.h"

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx);

static OSSL_LIB_CTX *libctx;

static int fake_pin(char *buf, size_t size, size_t *len, const OSSL_PARAM params[], void *arg)
{
    static const char pin[] = "4321"; /* the fake module's PIN; not a secret */
    if (size < sizeof(pin))
        return 0;
    memcpy(buf, pin, sizeof(pin) - 1);
    *len = sizeof(pin) - 1;
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("KEYWARD_MODULE", FAKE_MODULE_PATH, 1);
    libctx = OSSL_LIB_CTX_new();
    FUZZ_CHECK(libctx != NULL);
    FUZZ_CHECK(OSSL_PROVIDER_add_builtin(libctx, "keyward", OSSL_provider_init));
    FUZZ_CHECK(OSSL_PROVIDER_load(libctx, "default") != NULL);
    FUZZ_CHECK(OSSL_PROVIDER_load(libctx, "keyward") != NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    EVP_PKEY *pk = NULL;
    OSSL_DECODER_CTX *dc;
    const unsigned char *p = data;
    size_t left = size;

    if (libctx == NULL)
        LLVMFuzzerInitialize(NULL, NULL);
    dc = OSSL_DECODER_CTX_new_for_pkey(&pk, "PEM", NULL, NULL, EVP_PKEY_KEYPAIR, libctx, NULL);
    FUZZ_CHECK(dc != NULL);
    OSSL_DECODER_CTX_set_passphrase_cb(dc, fake_pin, NULL);
    if (OSSL_DECODER_from_data(dc, &p, &left))
        FUZZ_CHECK(pk != NULL);
    EVP_PKEY_free(pk);
    OSSL_DECODER_CTX_free(dc);
    ERR_clear_error();
    return 0;
}
