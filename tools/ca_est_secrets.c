/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: one-time enrolment secrets, stored as salted PBKDF2 hashes (--add-secret, the check
 * of a Basic login, and its removal once used). */
#include "ca_est_int.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- one-time secrets: "USER pbkdf2-sha256 ITER SALT HASH" lines (hex) ---- */

static int pbkdf2(const char *secret, size_t slen, const unsigned char *salt, size_t saltlen,
                  unsigned iter, unsigned char out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "PBKDF2", NULL);
    EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[5];
    p[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)secret, slen);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    p[2] = OSSL_PARAM_construct_uint(OSSL_KDF_PARAM_ITER, &iter);
    p[3] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    p[4] = OSSL_PARAM_construct_end();
    int ok = k && EVP_KDF_derive(k, out, 32, p) == 1;
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    return ok ? 0 : -1;
}

void est_hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static size_t unhex(const char *s, unsigned char *out, size_t max)
{
    size_t n = 0;
    for (; s[0] && s[1] && n < max; s += 2) {
        unsigned v;
        if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) ||
            sscanf(s, "%2x", &v) != 1)
            return 0;
        out[n++] = (unsigned char)v;
    }
    return *s ? 0 : n;
}

/* The secrets file without USER's line (and with add, when given, appended). */
static char *secrets_without(const char *text, const char *user, const char *add)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    size_t ul = strlen(user);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (!(len > ul && !strncmp(l, user, ul) && l[ul] == ' '))
            kwt_buf_addn(&b, l, len);
        l += len;
    }
    if (add)
        kwt_buf_add(&b, add);
    return b.s;
}

/* 0 when USER's secret is this one (the caller holds the secrets lock). */
int est_secret_check(const char *file, const char *user, const char *secret, size_t slen)
{
    char *text = kwt_read_file(file, NULL);
    int rc = -1;
    size_t ul = strlen(user);
    for (char *l = text; l && *l && rc != 0;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        char u[80], alg[32], salth[130], hashh[130];
        unsigned iter = 0;
        if (strlen(l) > ul && !strncmp(l, user, ul) && l[ul] == ' ' &&
            sscanf(l, "%79s %31s %u %129s %129s", u, alg, &iter, salth, hashh) == 5 &&
            !strcmp(u, user) && !strcmp(alg, "pbkdf2-sha256") && iter >= 1000) {
            unsigned char salt[64], want[32], got[32];
            size_t sl = unhex(salth, salt, sizeof(salt));
            if (sl && unhex(hashh, want, sizeof(want)) == 32 &&
                pbkdf2(secret, slen, salt, sl, iter, got) == 0 && CRYPTO_memcmp(got, want, 32) == 0)
                rc = 0;
            OPENSSL_cleanse(got, sizeof(got));
        }
        l = nl ? nl + 1 : NULL;
    }
    free(text);
    if (rc != 0) { /* an unknown user costs as much as a wrong secret */
        unsigned char salt[16] = {0}, got[32];
        pbkdf2(secret, slen, salt, sizeof(salt), PBKDF2_ITER, got);
    }
    return rc;
}

int est_secret_consume(const char *file, const char *user)
{
    char *text = kwt_read_file(file, NULL);
    char *rest = text ? secrets_without(text, user, NULL) : NULL;
    int rc = rest ? kwt_write_atomic(file, rest, strlen(rest), 0600) : -1;
    free(rest);
    free(text);
    return rc;
}

/* ca est --add-secret USER: the secret from --secret-file or stdin (its first line). */
int est_add_secret(kwt_ca *ca, const est_conf *c, const char *user, const char *from)
{
    if (!est_valid_user(user))
        return kwt_err(KWT_USAGE, "--add-secret %s: a user name is 1-64 letters, digits, - _ . @",
                       user);
    char *data = NULL;
    size_t len = 0;
    if (from) {
        if (!strncmp(from, "file:", 5))
            from += 5;
        struct stat st;
        if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077))
            return kwt_err(KWT_USAGE,
                           "--secret-file %s: must be a regular file readable by its owner "
                           "only (mode 0600 or 0400)",
                           from);
        data = kwt_read_file(from, &len);
    } else {
        kwt_buf b = {0};
        char tmp[256];
        size_t n;
        while ((n = fread(tmp, 1, sizeof(tmp), stdin)) > 0 && b.len < 4096)
            kwt_buf_addn(&b, tmp, n);
        data = b.s;
        len = b.len;
    }
    if (!data)
        return kwt_err(KWT_FAIL, "cannot read the secret: %s", strerror(errno));
    len = strcspn(data, "\r\n");
    int rc = 0;
    if (len < SECRET_MIN) {
        rc = kwt_err(KWT_USAGE, "the secret must have at least %d characters (on its first line)",
                     SECRET_MIN);
        goto out;
    }
    unsigned char salt[16], h[32];
    char salth[33], hh[65];
    if (RAND_bytes(salt, sizeof(salt)) != 1 || pbkdf2(data, len, salt, 16, PBKDF2_ITER, h) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot derive the secret's hash");
        goto out;
    }
    est_hex(salt, 16, salth);
    est_hex(h, 32, hh);
    char *line = kwt_asprintf("%s pbkdf2-sha256 %d %s %s\n", user, PBKDF2_ITER, salth, hh);
    char *d = est_dir(ca->dir);
    int lk = d ? est_lock_file(ca->dir, ".secrets.lock") : -1;
    char *text = lk >= 0 ? kwt_read_file(c->secrets, NULL) : NULL;
    char *all = lk >= 0 ? secrets_without(text ? text : "", user, line) : NULL;
    if (!all || kwt_write_atomic(c->secrets, all, strlen(all), 0600) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", c->secrets, strerror(errno));
    if (lk >= 0)
        close(lk);
    kwt_clear_error();
    kwt_audit(ca, "ca est add-secret", user, NULL, NULL, rc);
    if (rc == 0 && !kwt_g.json) {
        printf("one-time EST secret for %s stored in %s\n", user, c->secrets);
    } else if (rc == 0) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"user\":");
        kwt_buf_json_str(&j, user);
        kwt_buf_add(&j, ",\"secrets\":");
        kwt_buf_json_str(&j, c->secrets);
        kwt_buf_add(&j, "}\n");
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    }
    free(line);
    free(text);
    free(all);
    free(d);
out:
    OPENSSL_cleanse(data, strlen(data));
    free(data);
    return rc;
}
