/* SPDX-License-Identifier: Apache-2.0 */
/* The CA's index.txt (openssl ca's database, one row a certificate, with keyward's NAME in its
 * file column), read and written with OpenSSL's TXT_DB as openssl ca does; the issued/NAME.crt
 * links and the random first serial. */
#include "kwt.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/txt_db.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IX_FIELDS 6 /* status, expiry, revocation, serial, filename (our NAME), subject */

/* What TXT_DB_read would refuse, or read differently from what openssl ca means, with the line
 * it is on: it does not say which line (nor, after failing, why), and it silently drops a last
 * line without a newline and reads a NUL byte as the end of the line. 0 when the text is fine. */
static int ix_check(const char *path, const char *text, size_t len)
{
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        line++;
        if (!nl)
            return kwt_err(KWT_FAIL,
                           "%s:%zu: the last line has no newline, so openssl ca would ignore it "
                           "(the file was cut short: restore index.txt from a backup)",
                           path, line);
        size_t n = (size_t)(nl - s);
        pos += n + 1;
        if (memchr(s, '\0', n))
            return kwt_err(KWT_FAIL,
                           "%s:%zu: NUL byte in a row (the file is damaged: restore index.txt "
                           "from a backup)",
                           path, line);
        if (*s == '#') /* TXT_DB skips comment lines (and so would not write them back) */
            continue;
        int fields = 1;
        bool no_serial = true;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\t' && !(i && s[i - 1] == '\\')) /* "\\\t": a tab inside a field */
                fields++;
            else if (fields == 4)
                no_serial = false;
        }
        if (fields != IX_FIELDS)
            return kwt_err(KWT_FAIL,
                           "%s:%zu: row has %d tab-separated field%s where openssl ca's index has "
                           "%d: status, expiry, revocation, serial, file, subject (restore "
                           "index.txt from a backup or fix that row)",
                           path, line, fields, fields == 1 ? "" : "s", IX_FIELDS);
        if (n < 2 || !strchr("VRE", s[0]) || s[1] != '\t')
            return kwt_err(KWT_FAIL,
                           "%s:%zu: status is not V, R or E (restore index.txt from a backup or "
                           "fix that row)",
                           path, line);
        if (no_serial)
            return kwt_err(KWT_FAIL,
                           "%s:%zu: row has no serial (restore index.txt from a backup or fix "
                           "that row)",
                           path, line);
    }
    return 0;
}

int kwt_index_load(kwt_index *ix, const char *path)
{
    memset(ix, 0, sizeof(*ix));
    size_t len = 0;
    char *text = kwt_read_file(path, &len);
    if (!text)
        return -1;
    if (len > INT_MAX) {
        free(text);
        kwt_err(KWT_FAIL, "%s: %zu bytes, too large for an index (restore it from a backup)", path,
                len);
        errno = EFBIG;
        return -1;
    }
    if (ix_check(path, text, len) != 0) {
        free(text);
        errno = EINVAL;
        return -1;
    }
    BIO *in = BIO_new_mem_buf(text, (int)len);
    TXT_DB *db = in ? TXT_DB_read(in, IX_FIELDS) : NULL;
    BIO_free(in);
    free(text);
    if (!db) {
        kwt_err(KWT_FAIL, "%s: OpenSSL's TXT_DB cannot read it (restore index.txt from a backup)",
                path);
        errno = EINVAL;
        return -1;
    }
    int n = sk_OPENSSL_PSTRING_num(db->data);
    ix->cap = n > 0 ? (size_t)n : 1;
    ix->rows = calloc(ix->cap, sizeof(*ix->rows));
    if (!ix->rows)
        abort();
    for (int i = 0; i < n; i++) {
        OPENSSL_STRING *f = sk_OPENSSL_PSTRING_value(db->data, i);
        kwt_row *r = &ix->rows[ix->n++];
        r->status = f[0][0];
        r->expiry = kwt_strdup(f[1]);
        r->revocation = kwt_strdup(f[2]);
        r->serial = kwt_strdup(f[3]);
        r->name = kwt_strdup(f[4]);
        r->subject = kwt_strdup(f[5]);
    }
    TXT_DB_free(db);
    return 0;
}

/* Written by TXT_DB_write, as openssl ca writes it (a tab inside a field escaped), to a temp file
 * that is fsynced and renamed over path. */
int kwt_index_save(const kwt_index *ix, const char *path)
{
    BIO *empty = BIO_new_mem_buf("", 0);
    TXT_DB *db = empty ? TXT_DB_read(empty, IX_FIELDS) : NULL;
    BIO_free(empty);
    BIO *out = db ? BIO_new(BIO_s_mem()) : NULL;
    int rc = out ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < ix->n; i++) {
        const kwt_row *r = &ix->rows[i];
        char st[2] = {r->status, '\0'};
        const char *v[IX_FIELDS] = {st, r->expiry, r->revocation, r->serial, r->name, r->subject};
        /* a new row: the fields apart, row[IX_FIELDS] NULL (TXT_DB_free frees each field) */
        OPENSSL_STRING *row = OPENSSL_zalloc(sizeof(*row) * (IX_FIELDS + 1));
        for (int j = 0; row && j < IX_FIELDS; j++)
            if (!(row[j] = OPENSSL_strdup(v[j] ? v[j] : "")))
                rc = -1;
        if (!row || rc != 0 || TXT_DB_insert(db, row) != 1) {
            for (int j = 0; row && j < IX_FIELDS; j++)
                OPENSSL_free(row[j]);
            OPENSSL_free(row);
            rc = -1;
        }
    }
    if (rc == 0 && TXT_DB_write(out, db) < 0)
        rc = -1;
    if (rc == 0) {
        char *data = NULL;
        long n = BIO_get_mem_data(out, &data);
        rc = kwt_write_atomic(path, n > 0 ? data : "", n > 0 ? (size_t)n : 0, 0600);
    } else {
        errno = ENOMEM;
    }
    BIO_free(out);
    TXT_DB_free(db);
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
