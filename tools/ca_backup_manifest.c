/* SPDX-License-Identifier: Apache-2.0 */
/* ca backup and ca restore: the MANIFEST member (every entry with its mode, size and SHA-256),
 * written and parsed, and the SHA-256 helpers. */
#include "ca_backup_int.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void hex(const unsigned char *h, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

void bk_md_final_hex(EVP_MD_CTX *md, char out[65])
{
    unsigned char h[32];
    unsigned int hl = 0;
    out[0] = '\0';
    if (EVP_DigestFinal_ex(md, h, &hl) == 1 && hl == 32)
        hex(h, 32, out);
}

bool bk_sha256_hex(const void *data, size_t len, char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(md, data, len) == 1;
    if (ok)
        bk_md_final_hex(md, out);
    EVP_MD_CTX_free(md);
    return ok && out[0];
}

/* ---- the manifest ---- */

char *bk_manifest_text(const bk_set *s, const char *dir, const char *state)
{
    kwt_buf b = {0};
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    kwt_buf_add(&b, BK_MAGIC "\n");
    kwt_buf_printf(&b, "# keyward ca backup at %s of ", ts);
    bk_esc(&b, dir);
    kwt_buf_printf(&b, " (current state %s)\n", state);
    kwt_buf_add(&b, "# TYPE MODE SIZE SHA-256 PATH [TARGET]; names with %XX escapes\n");
    for (size_t i = 0; i < s->n; i++) {
        const bk_entry *e = &s->e[i];
        if (e->type == 'f')
            kwt_buf_printf(&b, "f %04o %llu %s ", e->mode, e->size, e->sha);
        else
            kwt_buf_printf(&b, "%c %04o - - ", e->type, e->mode);
        bk_esc(&b, e->path);
        if (e->type == 'l') {
            kwt_buf_add(&b, " ");
            bk_esc(&b, e->target);
        }
        kwt_buf_add(&b, "\n");
    }
    return b.s;
}

/* Parses a manifest into s; NULL, or why it is refused (in why). */
const char *bk_manifest_parse(char *text, bk_set *s, char *why, size_t wl)
{
    char *save = NULL;
    int lineno = 0;
    bool magic = false;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (!magic) {
            if (strcmp(l, BK_MAGIC) != 0)
                return "it does not start with \"" BK_MAGIC "\"";
            magic = true;
            continue;
        }
        if (l[0] == '#')
            continue;
        char *f[6] = {NULL}, *tok = NULL;
        int n = 0;
        for (char *w = strtok_r(l, " ", &tok); w && n < 6; w = strtok_r(NULL, " ", &tok))
            f[n++] = w;
        char type = f[0] && strlen(f[0]) == 1 ? f[0][0] : 0;
        char *end = NULL;
        unsigned long mode = f[1] ? strtoul(f[1], &end, 8) : 0;
        if (!strchr("fdl", type) || !type || n != (type == 'l' ? 6 : 5) || !end || *end ||
            mode > 07777) {
            snprintf(why, wl, "line %d is damaged", lineno);
            return why;
        }
        char *path = bk_unesc(f[4]), *target = type == 'l' ? bk_unesc(f[5]) : NULL;
        const char *bad = !path || (type == 'l' && !target) ? "a bad %XX escape" : NULL;
        if (!bad)
            bad = bk_path_problem(path);
        if (!bad && !strcmp(path, BK_MANIFEST))
            bad = "the manifest's own name";
        if (bad) {
            snprintf(why, wl, "line %d: %s: %s", lineno, path ? bk_shown(path) : f[4], bad);
            free(path);
            free(target);
            return why;
        }
        bk_entry *e = bk_set_add(s, type, path);
        if (!e) {
            snprintf(why, wl, "it lists %s twice", bk_shown(path));
            free(path);
            free(target);
            return why;
        }
        e->mode = (unsigned)mode;
        e->target = target;
        if (type == 'f') {
            unsigned long long size = strtoull(f[2], &end, 10);
            bool hexok = strlen(f[3]) == 64 && strspn(f[3], "0123456789abcdef") == 64;
            if (*end || !*f[2] || f[2][0] == '-' || !hexok) {
                snprintf(why, wl, "line %d (%s) has a damaged size or SHA-256", lineno,
                         bk_shown(path));
                free(path);
                return why;
            }
            e->size = size;
            memcpy(e->sha, f[3], 65);
        }
        free(path);
    }
    if (!magic)
        return "it is empty";
    for (size_t i = 0; i < s->n; i++) {
        const char *bad = bk_entry_problem(s, &s->e[i]);
        if (bad) {
            snprintf(why, wl, "%s: %s", bk_shown(s->e[i].path), bad);
            return why;
        }
    }
    return NULL;
}
