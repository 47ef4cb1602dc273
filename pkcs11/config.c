/* SPDX-License-Identifier: Apache-2.0 */
/* Token configuration. File format, one token per line, '#' starts a comment:
 *   token LABEL KEYRING [pin-scrypt=LOGN:R:P:SALTHEX:KEYHEX] [pin-max-tries=N] [software]
 * KEYRING is user:NAME, user-session:NAME, session:NAME, persistent:NAME or serial:N.
 * Without a file: one token "keyring" on user:keyward. */
#include <ctype.h>
#include <stdint.h>
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

/* hex of exactly n bytes (n == 0: any length up to cap, at least 16 bytes) */
static int parse_hex(const char *s, size_t len, unsigned char *out, size_t n, size_t cap,
                     size_t *got)
{
    if (len % 2 || (n ? len != 2 * n : len < 32 || len > 2 * cap))
        return 0;
    for (size_t i = 0; i < len / 2; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0)
            return 0;
        out[i] = (unsigned char)(h << 4 | l);
    }
    if (got)
        *got = len / 2;
    return 1;
}

/* LOGN:R:P:SALTHEX:KEYHEX; N = 2^LOGN from 2^14 (about 16 MiB and 50 ms per try) to 2^22. */
static int parse_scrypt(const char *v, kwk_token *t)
{
    char salt[200], key[80];
    int end = 0;
    if (sscanf(v, "%u:%u:%u:%199[0-9a-fA-F]:%79[0-9a-fA-F]%n", &t->pin_logn, &t->pin_r, &t->pin_p,
               salt, key, &end) != 5 ||
        v[end] != '\0')
        return 0;
    if (t->pin_logn < 14 || t->pin_logn > 22 || t->pin_r < 1 || t->pin_r > 32 || t->pin_p < 1 ||
        t->pin_p > 16 || ((uint64_t)128 * t->pin_r << t->pin_logn) > ((uint64_t)1 << 30))
        return 0; /* at most 1 GiB of scrypt memory per try */
    return parse_hex(salt, strlen(salt), t->pin_salt, 0, sizeof(t->pin_salt), &t->pin_salt_len) &&
           parse_hex(key, strlen(key), t->pin_key, sizeof(t->pin_key), 0, NULL);
}

/* A configuration error stops C_Initialize: say why where the operator looks, not only in the
 * debug log. */
static CK_RV bad(const char *path, int line, const char *what)
{
    fprintf(stderr, "keyward-pkcs11: %s:%d: %s\n", path, line, what);
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
        t->pin_max_tries = 10;
        for (int i = 3; i < nw; i++) {
            char *end = NULL;
            if (strncmp(w[i], "pin-sha256=", 11) == 0) {
                fclose(f);
                return bad(path, lineno,
                           "pin-sha256= (an unsalted SHA-256 of the PIN) is no longer accepted: "
                           "replace it with pin-scrypt=14:8:1:SALT:KEY, made as keyward-pkcs11(8) "
                           "shows under \"Configuration\" (the PIN is asked again)");
            } else if (strncmp(w[i], "pin-scrypt=", 11) == 0) {
                if (!parse_scrypt(w[i] + 11, t)) {
                    fclose(f);
                    return bad(path, lineno,
                               "pin-scrypt= wants LOGN:R:P:SALTHEX:KEYHEX (LOGN 14..22, R 1..32, "
                               "P 1..16, a salt of 16 to 64 bytes, a 32-byte key)");
                }
                t->have_pin = 1;
            } else if (strncmp(w[i], "pin-max-tries=", 14) == 0) {
                unsigned long v = strtoul(w[i] + 14, &end, 10);
                if (end == w[i] + 14 || *end != '\0' || v < 1 || v > 1000) {
                    fclose(f);
                    return bad(path, lineno, "pin-max-tries= wants a number from 1 to 1000");
                }
                t->pin_max_tries = (unsigned)v;
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
