/* SPDX-License-Identifier: Apache-2.0 */
/* C_Login and C_Logout: the PIN checked against its scrypt hash, failures counted. */
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

/* With kwk_lock held; let go while scrypt runs (tens of milliseconds by design), so other
 * sessions are not stalled behind a login. */
static CK_RV check_pin(kwk_token *t, const unsigned char *pin, size_t pin_len)
{
    unsigned char key[32], salt[sizeof(t->pin_salt)], want[32];
    unsigned logn = t->pin_logn, r = t->pin_r, p = t->pin_p;
    size_t salt_len = t->pin_salt_len;
    CK_RV rv = kwk_token_open(t);
    if (rv != CKR_OK)
        return rv;
    if (kwk_token_pin_failures(t) >= t->pin_max_tries) {
        KW_DEBUG(KWK_COMP, "token %s: PIN locked after %u failed logins", t->label,
                 t->pin_max_tries);
        return CKR_PIN_LOCKED;
    }
    memcpy(salt, t->pin_salt, salt_len);
    memcpy(want, t->pin_key, sizeof(want));
    pthread_mutex_unlock(&kwk_lock);
    int ok = pin != NULL &&
             EVP_PBE_scrypt_ex((const char *)pin, pin_len, salt, salt_len, (uint64_t)1 << logn, r,
                               p, (uint64_t)1 << 31, key, sizeof(key), kwk_libctx(), NULL) == 1 &&
             kw_memcmp_ct(key, want, sizeof(key)) == 0;
    kw_wipe(key, sizeof(key));
    pthread_mutex_lock(&kwk_lock);
    if (ok) {
        kwk_token_set_pin_failures(t, 0);
        t->logged_in = 1;
        return CKR_OK;
    }
    unsigned n = kwk_token_pin_failures(t) + 1;
    kwk_token_set_pin_failures(t, n);
    KW_DEBUG(KWK_COMP, "token %s: wrong PIN (%u of %u tries)", t->label, n, t->pin_max_tries);
    return CKR_PIN_INCORRECT;
}

CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    if (user != CKU_USER && user != CKU_SO && user != CKU_CONTEXT_SPECIFIC)
        rv = CKR_USER_TYPE_INVALID;
    else if (pin == NULL && pin_len > 0)
        rv = CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = s->tok;
    if (rv != CKR_OK) {
    } else if (user == CKU_SO) {
        rv = CKR_PIN_INCORRECT; /* the keyring token has no security officer */
    } else if (user == CKU_CONTEXT_SPECIFIC) {
        rv = t->logged_in || !t->have_pin ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
    } else if (t->logged_in) {
        rv = CKR_USER_ALREADY_LOGGED_IN;
    } else if (t->have_pin) {
        rv = check_pin(t, pin, pin_len);
    } else {
        t->logged_in = 1; /* no PIN configured: login is a formality */
    }
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&kwk_lock);
    if (!s->tok->logged_in)
        rv = CKR_USER_NOT_LOGGED_IN;
    s->tok->logged_in = 0;
    pthread_mutex_unlock(&kwk_lock);
    kwk_session_put(s);
    return rv;
}

CK_RV C_LoginUser(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                  CK_UTF8CHAR_PTR username, CK_ULONG username_len)
{
    /* No named users on a keyring token: only the anonymous user exists. */
    if (username != NULL && username_len > 0)
        return kwk_initialized() ? CKR_USER_TYPE_INVALID : CKR_CRYPTOKI_NOT_INITIALIZED;
    return C_Login(h, user, pin, pin_len);
}
