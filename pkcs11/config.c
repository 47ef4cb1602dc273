/* SPDX-License-Identifier: Apache-2.0 */
/* Token configuration. File format, one token per line, '#' starts a comment:
 *   token LABEL KEYRING [pin-sha256=HEX] [software]
 * KEYRING is user:NAME, user-session:NAME, session:NAME, persistent:NAME or serial:N.
 * Without a file: one token "keyring" on user:keyward. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_log.h"
#include "kwk.h"

#define DEFAULT_CONF "/etc/keyward/pkcs11.conf"

const char *kwk_config_path(void)
{
    const char *p = getenv("KEYWARD_PKCS11_CONF");
    return p && *p ? p : DEFAULT_CONF;
}

static int hexval(int c)
{
    return isdigit(c)                               ? c - '0'
           : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                    : -1;
}

static int parse_hex32(const char *s, unsigned char out[32])
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 32; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0)
            return 0;
        out[i] = (unsigned char)(h << 4 | l);
    }
    return 1;
}

static CK_RV bad(const char *path, int line, const char *what)
{
    KW_DEBUG(KWK_COMP, "%s:%d: %s", path, line, what);
    return CKR_GENERAL_ERROR;
}

CK_RV kwk_config_load(kwk_token *toks, size_t cap, size_t *n)
{
    const char *path = kwk_config_path();
    FILE *f = fopen(path, "re");
    char line[1024];
    int lineno = 0;

    *n = 0;
    if (f == NULL) {
        /* The default file is optional; a file named by the environment must exist. */
        if (errno != ENOENT || getenv("KEYWARD_PKCS11_CONF"))
            return bad(path, 0, strerror(errno));
        snprintf(toks[0].label, sizeof(toks[0].label), "keyring");
        snprintf(toks[0].spec, sizeof(toks[0].spec), "user:keyward");
        *n = 1;
        return CKR_OK;
    }
    while (fgets(line, sizeof(line), f)) {
        char *save = NULL, *w[8];
        int nw = 0;
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        for (char *t = strtok_r(line, " \t\r\n", &save); t && nw < 8;
             t = strtok_r(NULL, " \t\r\n", &save))
            w[nw++] = t;
        if (nw == 0)
            continue;
        if (strcmp(w[0], "token") != 0 || nw < 3) {
            fclose(f);
            return bad(path, lineno, "expected: token LABEL KEYRING [options]");
        }
        if (*n >= cap) {
            fclose(f);
            return bad(path, lineno, "too many tokens");
        }
        kwk_token *t = &toks[*n];
        memset(t, 0, sizeof(*t));
        if (strlen(w[1]) > 32) {
            fclose(f);
            return bad(path, lineno, "token label longer than 32 bytes");
        }
        snprintf(t->label, sizeof(t->label), "%s", w[1]);
        snprintf(t->spec, sizeof(t->spec), "%s", w[2]);
        for (int i = 3; i < nw; i++) {
            if (strncmp(w[i], "pin-sha256=", 11) == 0 && parse_hex32(w[i] + 11, t->pin_sha256)) {
                t->have_pin = 1;
            } else if (strcmp(w[i], "software") == 0) {
                t->force_software = 1;
            } else {
                fclose(f);
                return bad(path, lineno, "unknown token option");
            }
        }
        (*n)++;
    }
    fclose(f);
    if (*n == 0)
        return bad(path, lineno, "no token declared");
    return CKR_OK;
}
