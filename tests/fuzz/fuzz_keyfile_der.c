/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the key file DER decoder (provider/keyfile.c), both our KeywardKeyUri and
 * pkcs11-provider's form. A decoded URI must be what the decoder promises (printable ASCII,
 * "pkcs11:" prefix, bounded) and must survive encode -> decode unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "fuzz.h"
#include "kwp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *uri = kwp_keyfile_der_decode(data, (long)size);
    unsigned char *der = NULL;
    int derlen = 0;

    if (uri == NULL)
        return 0;
    size_t n = strlen(uri);
    FUZZ_CHECK(n >= 8 && n <= 8192);
    FUZZ_CHECK(memcmp(uri, "pkcs11:", 7) == 0);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(uri[i] > 0x20 && uri[i] < 0x7f);

    FUZZ_CHECK(kwp_keyfile_der_encode(uri, &der, &derlen));
    char *again = kwp_keyfile_der_decode(der, derlen);
    FUZZ_CHECK(again != NULL && strcmp(again, uri) == 0);
    free(again);
    OPENSSL_free(der);
    free(uri);
    return 0;
}
