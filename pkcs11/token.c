/* SPDX-License-Identifier: Apache-2.0 */
/* Slots and tokens (one slot per configured keyring), mechanisms per mode, login. */
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

static void pad(unsigned char *dst, size_t n, const char *src)
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

static unsigned pin_failures(const kwk_token *t)
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

static void set_pin_failures(kwk_token *t, unsigned n)
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

CK_RV C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    CK_ULONG n = 0;
    for (size_t i = 0; i < kwk_token_count(); i++)
        if (!present || kwk_token_open(kwk_token_at(i)) == CKR_OK)
            n++;
    CK_RV rv = CKR_OK;
    if (list != NULL && *count < n) {
        rv = CKR_BUFFER_TOO_SMALL;
    } else if (list != NULL) {
        CK_ULONG j = 0;
        for (size_t i = 0; i < kwk_token_count(); i++)
            if (!present || kwk_token_at(i)->ring != 0)
                list[j++] = i;
    }
    *count = n;
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = kwk_token_by_slot(slot);
    if (t == NULL) {
        pthread_mutex_unlock(&kwk_lock);
        return CKR_SLOT_ID_INVALID;
    }
    char d[80];
    snprintf(d, sizeof(d), "keyward kernel keyring %.40s", t->spec);
    memset(info, 0, sizeof(*info));
    pad(info->slotDescription, sizeof(info->slotDescription), d);
    pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
    info->flags = kwk_token_open(t) == CKR_OK ? CKF_TOKEN_PRESENT : 0;
    info->hardwareVersion.major = 0;
    info->firmwareVersion.major = 0;
    pthread_mutex_unlock(&kwk_lock);
    return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&kwk_lock);
    kwk_token *t = kwk_token_by_slot(slot);
    CK_RV rv = t ? kwk_token_open(t) : CKR_SLOT_ID_INVALID;
    if (rv == CKR_OK) {
        char serial[17];
        memset(info, 0, sizeof(*info));
        pad(info->label, sizeof(info->label), t->label);
        pad(info->manufacturerID, sizeof(info->manufacturerID), "keyward");
        /* The model says where private keys live: never silent about software mode. */
        pad(info->model, sizeof(info->model), kwk_mode_name(t->mode));
        snprintf(serial, sizeof(serial), "%08x", (unsigned)t->ring);
        pad(info->serialNumber, sizeof(info->serialNumber), serial);
        info->flags = CKF_RNG | CKF_TOKEN_INITIALIZED;
        if (t->have_pin) {
            unsigned fails = pin_failures(t);
            info->flags |= CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED;
            if (fails >= t->pin_max_tries)
                info->flags |= CKF_USER_PIN_LOCKED;
            else if (fails + 1 == t->pin_max_tries)
                info->flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
            else if (fails > 0)
                info->flags |= CKF_USER_PIN_COUNT_LOW;
        }
        info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
        info->ulSessionCount = kwk_session_count(t, 0);
        info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
        info->ulRwSessionCount = kwk_session_count(t, 1);
        info->ulMaxPinLen = 256;
        info->ulMinPinLen = t->have_pin ? 1 : 0;
        info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
        info->hardwareVersion.major = 0;
        info->firmwareVersion.major = t->mode == KWK_MODE_KERNEL ? 1 : 0;
        pad(info->utcTime, sizeof(info->utcTime), "");
    }
    pthread_mutex_unlock(&kwk_lock);
    return rv;
}

/* Mechanisms. Kernel mode does RSA; EC and EdDSA keys are always in software mode, so they are
 * listed in both modes. Flags say what the token really does with each. */
typedef struct {
    CK_MECHANISM_TYPE m;
    CK_ULONG min, max;
    CK_FLAGS flags;
} mech_info;

#define RSA_SV (CKF_SIGN | CKF_VERIFY)
static const mech_info mechs[] = {
    {CKM_RSA_PKCS_KEY_PAIR_GEN, 1024, 4096, CKF_GENERATE_KEY_PAIR},
    {CKM_RSA_PKCS, 512, 4096, RSA_SV | CKF_DECRYPT},
    {CKM_RSA_X_509, 512, 4096, RSA_SV | CKF_DECRYPT},
    {CKM_RSA_PKCS_OAEP, 512, 4096, CKF_DECRYPT},
    {CKM_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA1_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA224_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA256_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA384_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA512_RSA_PKCS, 512, 4096, RSA_SV},
    {CKM_SHA1_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA224_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA256_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA384_RSA_PKCS_PSS, 512, 4096, RSA_SV},
    {CKM_SHA512_RSA_PKCS_PSS, 512, 4096, RSA_SV},
#define EC_FL (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)
    {CKM_EC_KEY_PAIR_GEN, 256, 521, CKF_GENERATE_KEY_PAIR | EC_FL},
    {CKM_ECDSA, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA1, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA224, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA256, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA384, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDSA_SHA512, 256, 521, CKF_SIGN | CKF_VERIFY | EC_FL},
    {CKM_ECDH1_DERIVE, 256, 521, CKF_DERIVE | EC_FL},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, 255, 448, CKF_GENERATE_KEY_PAIR},
    {CKM_EDDSA, 255, 448, CKF_SIGN | CKF_VERIFY},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (kwk_token_by_slot(slot) == NULL)
        return CKR_SLOT_ID_INVALID;
    if (list != NULL && *count < NMECHS) {
        *count = NMECHS;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (list != NULL)
        for (size_t i = 0; i < NMECHS; i++)
            list[i] = mechs[i].m;
    *count = NMECHS;
    return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    if (!kwk_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    if (kwk_token_by_slot(slot) == NULL)
        return CKR_SLOT_ID_INVALID;
    for (size_t i = 0; i < NMECHS; i++) {
        if (mechs[i].m != type)
            continue;
        info->ulMinKeySize = mechs[i].min;
        info->ulMaxKeySize = mechs[i].max;
        info->flags = mechs[i].flags;
        return CKR_OK;
    }
    return CKR_MECHANISM_INVALID;
}

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
    if (pin_failures(t) >= t->pin_max_tries) {
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
        set_pin_failures(t, 0);
        t->logged_in = 1;
        return CKR_OK;
    }
    unsigned n = pin_failures(t) + 1;
    set_pin_failures(t, n);
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

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_session_put(s);
    if (seed == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    return CKR_RANDOM_SEED_NOT_SUPPORTED; /* the kernel's RNG needs no help */
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
    kwk_session *s;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    kwk_session_put(s);
    if (out == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    if (len > 0 && RAND_bytes_ex(kwk_libctx(), out, len, 0) != 1)
        return kwk_rv_ossl("random");
    return CKR_OK;
}
