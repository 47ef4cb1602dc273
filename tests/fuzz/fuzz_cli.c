/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the keyward CLI's parsers of what operators type (tools/validate.c): DNs, SAN
 * lists, device IDs, certificate names, dates, revocation reasons, day counts and key types.
 * The first byte picks the parser, the rest is the argument. Properties besides "no crash":
 * a refusal says why; what is accepted and goes into an openssl config or command line carries
 * no line break (no config injection) and no NUL; a reason is one of openssl's spellings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kwt.h"

static const char *const reasons[] = {"unspecified",        "keyCompromise", "CACompromise",
                                      "affiliationChanged", "superseded",    "cessationOfOperation",
                                      "certificateHold",    "removeFromCRL"};

static void no_line_break(const char *s)
{
    FUZZ_CHECK(strchr(s, '\n') == NULL && strchr(s, '\r') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    char *arg, *out;
    int ok;

    if (size == 0)
        return 0;
    arg = malloc(size);
    if (arg == NULL)
        return 0;
    memcpy(arg, data + 1, size - 1);
    arg[size - 1] = '\0';

    switch (data[0] % 8) {
    case 0:
        out = kwt_dn_to_subj(arg, &why);
        FUZZ_CHECK(out != NULL || (why != NULL && *why != '\0'));
        if (out != NULL) {
            no_line_break(out);
            FUZZ_CHECK(out[0] == '/');
        }
        free(out);
        break;
    case 1:
        out = kwt_san_to_conf(arg, &why);
        FUZZ_CHECK(out != NULL || (why != NULL && *why != '\0'));
        if (out != NULL)
            no_line_break(out);
        free(out);
        break;
    case 2:
        ok = kwt_valid_device_id(arg, &why) == 0;
        FUZZ_CHECK(ok || (why != NULL && *why != '\0'));
        if (ok)
            no_line_break(arg);
        break;
    case 3:
        ok = kwt_valid_name(arg, &why) == 0;
        FUZZ_CHECK(ok || (why != NULL && *why != '\0'));
        /* A name becomes a file name in the CA directory: never a path. */
        if (ok)
            FUZZ_CHECK(strchr(arg, '/') == NULL && strcmp(arg, "..") != 0 && strcmp(arg, ".") != 0);
        break;
    case 4:
        (void)kwt_parse_date(arg);
        break;
    case 5: {
        const char *r = kwt_reason_canon(arg);
        int known = 0;
        for (size_t i = 0; r != NULL && i < sizeof(reasons) / sizeof(reasons[0]); i++)
            known |= strcmp(r, reasons[i]) == 0;
        FUZZ_CHECK(r == NULL || known);
        break;
    }
    case 6: {
        int days = -1;
        ok = kwt_valid_days(arg, &days, &why) == 0;
        FUZZ_CHECK(ok ? days > 0 : (why != NULL && *why != '\0'));
        break;
    }
    default: {
        const char *alg = NULL;
        char param[64];
        ok = kwt_parse_key_type(arg, &alg, param, sizeof(param), &why) == 0;
        FUZZ_CHECK(ok ? (alg != NULL && memchr(param, '\0', sizeof(param)) != NULL)
                      : (why != NULL && *why != '\0'));
        if (ok)
            no_line_break(param);
        break;
    }
    }
    free(arg);
    return 0;
}
