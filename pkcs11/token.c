/* SPDX-License-Identifier: Apache-2.0 */
/* A token's own state: its keyring opened and its mode probed, and its failed-login counter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "kw_log.h"
#include "kw_secmem.h"
#include "kwk.h"

void kwk_pad(unsigned char *dst, size_t n, const char *src)
{
    size_t l = strlen(src);
    memset(dst, ' ', n);
    memcpy(dst, src, l < n ? l : n);
}

/* Can this kernel hold an RSA private key? Load a throw-away RSA-512 key and see. A kernel
 * without the PKCS#8 parser answers EBADMSG. */
kwk_mode kwk_probe_kernel(kwk_serial ring)
{
    kwk_mode mode = KWK_MODE_SOFTWARE;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(kwk_libctx(), NULL, "RSA", (size_t)512);
    PKCS8_PRIV_KEY_INFO *p8 = pk ? EVP_PKEY2PKCS8(pk) : NULL;
    unsigned char *der = NULL;
    int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    kwk_serial k;

    if (len > 0 &&
        kwk_kr_add("asymmetric", "keyward:probe", der, (size_t)len, ring, &k) == CKR_OK) {
        mode = KWK_MODE_KERNEL;
        kwk_kr_remove(ring, k);
    }
    if (der)
        OPENSSL_clear_free(der, (size_t)len);
    PKCS8_PRIV_KEY_INFO_free(p8);
    EVP_PKEY_free(pk);
    KW_DEBUG(KWK_COMP, "kernel RSA private keys: %s -> %s mode",
             mode == KWK_MODE_KERNEL ? "supported" : "not supported (no PKCS#8 parser)",
             kwk_mode_name(mode));
    return mode;
}

CK_RV kwk_token_open(kwk_token *t)
{
    if (t->ring == 0) {
        CK_RV rv = kwk_kr_resolve(t->spec, &t->ring);
        if (rv != CKR_OK) {
            KW_DEBUG(KWK_COMP, "token %s: keyring %s unavailable", t->label, t->spec);
            return CKR_TOKEN_NOT_PRESENT;
        }
    }
    if (t->mode == KWK_MODE_NONE) {
        t->mode = t->force_software ? KWK_MODE_SOFTWARE : kwk_probe_kernel(t->ring);
        if (t->mode == KWK_MODE_SOFTWARE)
            KW_DEBUG(KWK_COMP,
                     "token %s: SOFTWARE mode: private keys live in user keys and are "
                     "used in user space",
                     t->label);
    }
    return CKR_OK;
}

/* Failed C_Login attempts are counted per token in its keyring, in a possessor-only user key
 * "keyward-pin-failures:LABEL" holding the number, so every process sharing the keyring sees the
 * same count and a restart does not reset it. A correct PIN removes it. */
static void failures_desc(const kwk_token *t, char *d, size_t cap)
{
    snprintf(d, cap, "keyward-pin-failures:%s", t->label);
}

unsigned kwk_token_pin_failures(const kwk_token *t)
{
    char d[64];
    unsigned char *buf;
    size_t len;
    unsigned n = 0;
    failures_desc(t, d, sizeof(d));
    kwk_serial k = t->ring ? kwk_kr_find(t->ring, d) : 0;
    if (k && kwk_kr_read(k, &buf, &len) == CKR_OK) {
        n = (unsigned)strtoul((const char *)buf, NULL, 10); /* buf is NUL-terminated */
        kw_secure_free(buf, len + 1);
    }
    return n;
}

void kwk_token_set_pin_failures(kwk_token *t, unsigned n)
{
    char d[64], v[16];
    failures_desc(t, d, sizeof(d));
    kwk_serial k = kwk_kr_find(t->ring, d);
    if (n == 0) {
        if (k)
            kwk_kr_remove(t->ring, k);
        return;
    }
    snprintf(v, sizeof(v), "%u", n);
    if (k == 0 || kwk_kr_update(k, v, strlen(v)) != CKR_OK)
        kwk_kr_add("user", d, v, strlen(v), t->ring, &k);
}

int kwk_token_need_login(const kwk_token *t)
{
    return t->have_pin && !t->logged_in;
}
