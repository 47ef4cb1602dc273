/* SPDX-License-Identifier: Apache-2.0 */
/* The CA's index.txt (openssl ca's database, one row a certificate, with keyward's NAME in its
 * file column), the issued/NAME.crt links and the random first serial. */
#include "kwt.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int kwt_index_parse_line(char *line, kwt_row *r)
{
    char *f[6];
    int n = 0;
    char *p = line;
    f[n++] = p;
    while (*p && n < 6) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
        p++;
    }
    if (n != 6 || strlen(f[0]) != 1 || !strchr("VRE", f[0][0]) || !*f[3])
        return -1;
    r->status = f[0][0];
    r->expiry = kwt_strdup(f[1]);
    r->revocation = kwt_strdup(f[2]);
    r->serial = kwt_strdup(f[3]);
    r->name = kwt_strdup(f[4]);
    r->subject = kwt_strdup(f[5]);
    return 0;
}

int kwt_index_load(kwt_index *ix, const char *path)
{
    memset(ix, 0, sizeof(*ix));
    char *text = kwt_read_file(path, NULL);
    if (!text)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        kwt_row r;
        if (kwt_index_parse_line(line, &r) != 0) {
            free(text);
            kwt_index_free(ix);
            errno = EINVAL;
            return -1;
        }
        if (ix->n == ix->cap) {
            ix->cap = ix->cap ? ix->cap * 2 : 64;
            kwt_row *nr = realloc(ix->rows, ix->cap * sizeof(*nr));
            if (!nr)
                abort();
            ix->rows = nr;
        }
        ix->rows[ix->n++] = r;
    }
    free(text);
    return 0;
}

int kwt_index_save(const kwt_index *ix, const char *path)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (size_t i = 0; i < ix->n; i++) {
        const kwt_row *r = &ix->rows[i];
        kwt_buf_printf(&b, "%c\t%s\t%s\t%s\t%s\t%s\n", r->status, r->expiry, r->revocation,
                       r->serial, r->name, r->subject);
    }
    int rc = kwt_write_atomic(path, b.s, b.len, 0600);
    kwt_buf_free(&b);
    return rc;
}

void kwt_index_free(kwt_index *ix)
{
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->rows[i].expiry);
        free(ix->rows[i].revocation);
        free(ix->rows[i].serial);
        free(ix->rows[i].name);
        free(ix->rows[i].subject);
    }
    free(ix->rows);
    memset(ix, 0, sizeof(*ix));
}

kwt_row *kwt_index_find_serial(kwt_index *ix, const char *serial)
{
    /* index serials are upper-case hex of even length; accept any case and leading zeros */
    while (serial[0] == '0' && serial[1])
        serial++;
    for (size_t i = 0; i < ix->n; i++) {
        const char *s = ix->rows[i].serial;
        while (s[0] == '0' && s[1])
            s++;
        if (!strcasecmp(s, serial))
            return &ix->rows[i];
    }
    return NULL;
}

kwt_row *kwt_index_find_name(kwt_index *ix, const char *name)
{
    for (size_t i = ix->n; i-- > 0;)
        if (!strcmp(ix->rows[i].name, name))
            return &ix->rows[i];
    return NULL;
}

bool *kwt_index_newest(const kwt_index *ix)
{
    bool *newest = calloc(ix->n ? ix->n : 1, sizeof(*newest));
    size_t cap = 64;
    while (cap < ix->n * 2)
        cap *= 2;
    const char **seen = newest ? calloc(cap, sizeof(*seen)) : NULL;
    if (!seen) {
        free(newest);
        return NULL;
    }
    for (size_t i = ix->n; i-- > 0;) {
        const char *name = ix->rows[i].name;
        unsigned long h = 5381;
        for (const char *c = name; *c; c++)
            h = h * 33 + (unsigned char)*c;
        size_t slot = h & (cap - 1);
        while (seen[slot] && strcmp(seen[slot], name) != 0)
            slot = (slot + 1) & (cap - 1);
        if (!seen[slot]) {
            seen[slot] = name;
            newest[i] = true;
        }
    }
    free(seen);
    return newest;
}

int kwt_ca_link_issued(kwt_ca *ca, const char *name, const char *serial)
{
    char *lp = kwt_asprintf("%s/issued/%s.crt", ca->dir, name);
    char *want = kwt_asprintf("../certs/%s.pem", serial);
    int rc = 0;
    if (kwt_g.dry_run) {
        printf("ln -sfn %s %s\n", want, lp);
    } else {
        rc = kwt_symlink_atomic(want, lp);
        if (rc)
            kwt_err(KWT_FAIL, "cannot link %s: %s", lp, strerror(errno));
    }
    free(want);
    free(lp);
    return rc ? KWT_FAIL : 0;
}

/* Random 128-bit starting serial (positive: top bit clear). */
int kwt_random_serial(char *out, size_t outlen)
{
    unsigned char r[16];
    if (outlen < 33 || RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    r[0] &= 0x7f;
    r[0] |= 0x10; /* keep 32 hex digits so it never looks like a short serial */
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02X", r[i]);
    return 0;
}
