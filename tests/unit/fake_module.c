/* SPDX-License-Identifier: Apache-2.0 */
/* A tiny PKCS#11 module for unit tests of the call layer: two tokens, a few objects, a PIN,
 * login and open-session counters and switches (environment) to make a token vanish, to leave
 * libcrypto errors on the caller's queue, as SoftHSM2 does, or to make C_Login slow. Not a
 * real token. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <p11-kit/pkcs11.h>

#define FAKE_PIN "4321"

typedef struct {
    CK_OBJECT_CLASS cls;
    const char *label;
    unsigned char id;
} fake_obj;

static const fake_obj objs[] = {
    {CKO_PRIVATE_KEY, "alpha", 1},
    {CKO_PUBLIC_KEY, "alpha", 1},
    {CKO_PRIVATE_KEY, "beta", 2},
    {CKO_CERTIFICATE, "beta", 2},
};
#define NOBJ (sizeof(objs) / sizeof(objs[0]))

static int initialized;
static int logged_in;
static int login_calls;
static int open_sessions[3]; /* per slot */
static CK_ULONG found[NOBJ], nfound, fpos;

static void pad(CK_UTF8CHAR *dst, size_t n, const char *s)
{
    memset(dst, ' ', n);
    memcpy(dst, s, strlen(s));
}

static int token_gone(CK_SLOT_ID slot)
{
    const char *g = getenv("FAKE_P11_GONE");
    return g != NULL && (CK_SLOT_ID)atoi(g) == slot;
}

static CK_RV f_Initialize(CK_VOID_PTR a)
{
    if (initialized)
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    initialized = 1;
    return CKR_OK;
}

static CK_RV f_Finalize(CK_VOID_PTR a)
{
    initialized = 0;
    logged_in = 0;
    memset(open_sessions, 0, sizeof(open_sessions)); /* C_Finalize closes every session */
    return CKR_OK;
}

static CK_RV f_GetInfo(CK_INFO_PTR i)
{
    memset(i, 0, sizeof(*i));
    i->cryptokiVersion.major = 2;
    i->cryptokiVersion.minor = 40;
    pad(i->manufacturerID, sizeof(i->manufacturerID), "keyward tests");
    pad(i->libraryDescription, sizeof(i->libraryDescription), "fake");
    return CKR_OK;
}

/* FAKE_P11_OSSL_ERRORS=1: push an error on this thread's OpenSSL queue and return CKR_OK
 * (SoftHSM2's C_Initialize leaves four, from its failed search for the "rdrand" engine). */
static void ossl_litter(void)
{
    const char *e = getenv("FAKE_P11_OSSL_ERRORS");
    if (e != NULL && *e == '1')
        ERR_raise_data(ERR_LIB_USER, 99, "the fake module's own libcrypto error");
}

/* Sleep for the milliseconds in the environment variable var, if set. */
static void env_delay(const char *var)
{
    const char *v = getenv(var);
    int ms = v != NULL ? atoi(v) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static CK_RV f_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
    /* FAKE_P11_SLOTS_DELAY_MS=N: a slow slot list (the call layer holds its module lock). */
    env_delay("FAKE_P11_SLOTS_DELAY_MS");
    ossl_litter();
    CK_SLOT_ID ids[2];
    CK_ULONG c = 0;
    for (CK_SLOT_ID s = 1; s <= 2; s++)
        if (!token_gone(s))
            ids[c++] = s;
    if (list != NULL) {
        if (*n < c) {
            *n = c;
            return CKR_BUFFER_TOO_SMALL;
        }
        memcpy(list, ids, c * sizeof(*ids));
    }
    *n = c;
    return CKR_OK;
}

static CK_RV f_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR i)
{
    memset(i, 0, sizeof(*i));
    pad(i->slotDescription, sizeof(i->slotDescription), s == 1 ? "slot one" : "slot two");
    pad(i->manufacturerID, sizeof(i->manufacturerID), "keyward tests");
    i->flags = CKF_TOKEN_PRESENT;
    return CKR_OK;
}

static CK_RV f_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR i)
{
    ossl_litter();
    if (s < 1 || s > 2)
        return CKR_SLOT_ID_INVALID;
    if (token_gone(s))
        return CKR_TOKEN_NOT_PRESENT;
    memset(i, 0, sizeof(*i));
    pad(i->label, sizeof(i->label), s == 1 ? "first" : "second");
    pad(i->manufacturerID, sizeof(i->manufacturerID), "keyward tests");
    pad(i->model, sizeof(i->model), "fake");
    pad(i->serialNumber, sizeof(i->serialNumber), s == 1 ? "0001" : "0002");
    i->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | (s == 1 ? CKF_LOGIN_REQUIRED : 0);
    i->ulMaxSessionCount = 2;
    return CKR_OK;
}

static CK_RV f_OpenSession(CK_SLOT_ID s, CK_FLAGS fl, CK_VOID_PTR app, CK_NOTIFY n,
                           CK_SESSION_HANDLE_PTR h)
{
    if (token_gone(s))
        return CKR_TOKEN_NOT_PRESENT;
    if (s < 1 || s > 2)
        return CKR_SLOT_ID_INVALID;
    if (open_sessions[s] >= 2)
        return CKR_SESSION_COUNT;
    /* Handles are never reused, like a real token's. */
    static CK_ULONG serial;
    open_sessions[s]++;
    *h = (s << 8) | (++serial & 0xff);
    return CKR_OK;
}

static CK_RV f_CloseSession(CK_SESSION_HANDLE h)
{
    CK_SLOT_ID s = h >> 8;
    if (s >= 1 && s <= 2 && open_sessions[s] > 0)
        open_sessions[s]--;
    return CKR_OK;
}

static CK_RV f_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    /* FAKE_P11_LOGIN_DELAY_MS=N: a token that takes its time (a PIN pad, a slow KDF). */
    env_delay("FAKE_P11_LOGIN_DELAY_MS");
    __atomic_add_fetch(&login_calls, 1, __ATOMIC_SEQ_CST);
    if (logged_in)
        return CKR_USER_ALREADY_LOGGED_IN;
    if (pin == NULL || len != strlen(FAKE_PIN) || memcmp(pin, FAKE_PIN, len) != 0)
        return CKR_PIN_INCORRECT;
    logged_in = 1;
    return CKR_OK;
}

static CK_RV f_Logout(CK_SESSION_HANDLE h)
{
    logged_in = 0;
    return CKR_OK;
}

static int attr_match(const fake_obj *o, const CK_ATTRIBUTE *a)
{
    switch (a->type) {
    case CKA_CLASS:
        return a->ulValueLen == sizeof(CK_OBJECT_CLASS) && *(CK_OBJECT_CLASS *)a->pValue == o->cls;
    case CKA_LABEL:
        return a->ulValueLen == strlen(o->label) && memcmp(a->pValue, o->label, a->ulValueLen) == 0;
    case CKA_ID:
        return a->ulValueLen == 1 && *(unsigned char *)a->pValue == o->id;
    default:
        return 0;
    }
}

static CK_RV f_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    nfound = fpos = 0;
    /* Only token one has objects; private ones need login. */
    if ((h >> 8) != 1)
        return CKR_OK;
    for (CK_ULONG i = 0; i < NOBJ; i++) {
        int ok = objs[i].cls != CKO_PRIVATE_KEY || logged_in;
        for (CK_ULONG j = 0; ok && j < n; j++)
            ok = attr_match(&objs[i], &t[j]);
        if (ok)
            found[nfound++] = i + 1;
    }
    return CKR_OK;
}

static CK_RV f_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max,
                           CK_ULONG_PTR c)
{
    *c = 0;
    while (fpos < nfound && *c < max)
        o[(*c)++] = found[fpos++];
    return CKR_OK;
}

static CK_RV f_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    return CKR_OK;
}

static CK_RV f_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                                 CK_ULONG n)
{
    CK_RV rv = CKR_OK;
    if (o < 1 || o > NOBJ)
        return CKR_OBJECT_HANDLE_INVALID;
    for (CK_ULONG i = 0; i < n; i++) {
        const void *v = NULL;
        CK_ULONG len = 0;
        if (t[i].type == CKA_LABEL) {
            v = objs[o - 1].label;
            len = strlen(objs[o - 1].label);
        } else if (t[i].type == CKA_ID) {
            v = &objs[o - 1].id;
            len = 1;
        } else if (t[i].type == CKA_CLASS) {
            v = &objs[o - 1].cls;
            len = sizeof(CK_OBJECT_CLASS);
        } else {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            continue;
        }
        if (t[i].pValue != NULL) {
            if (t[i].ulValueLen < len) {
                rv = CKR_BUFFER_TOO_SMALL;
                continue;
            }
            memcpy(t[i].pValue, v, len);
        }
        t[i].ulValueLen = len;
    }
    return rv;
}

/* Test hooks, read through dlsym by the unit tests. */
int fake_p11_login_calls(void);
__attribute__((visibility("default"))) int fake_p11_login_calls(void)
{
    return __atomic_load_n(&login_calls, __ATOMIC_SEQ_CST);
}

/* Sessions open on a slot, as the token counts them (a leaked handle shows here). */
int fake_p11_open_sessions(CK_SLOT_ID slot);
__attribute__((visibility("default"))) int fake_p11_open_sessions(CK_SLOT_ID slot)
{
    return slot >= 1 && slot <= 2 ? open_sessions[slot] : -1;
}

static CK_RV f_unsupported(void)
{
    return CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_FUNCTION_LIST fl;

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);
__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    /* Every entry we don't implement answers CKR_FUNCTION_NOT_SUPPORTED. */
    size_t first = offsetof(CK_FUNCTION_LIST, C_Initialize);
    void (**slots)(void) = (void (**)(void))((char *)&fl + first);
    for (size_t i = 0; i < (sizeof(fl) - first) / sizeof(*slots); i++)
        slots[i] = (void (*)(void))f_unsupported;
    fl.version.major = 2;
    fl.version.minor = 40;
    fl.C_Initialize = f_Initialize;
    fl.C_Finalize = f_Finalize;
    fl.C_GetInfo = f_GetInfo;
    fl.C_GetFunctionList = C_GetFunctionList;
    fl.C_GetSlotList = f_GetSlotList;
    fl.C_GetSlotInfo = f_GetSlotInfo;
    fl.C_GetTokenInfo = f_GetTokenInfo;
    fl.C_OpenSession = f_OpenSession;
    fl.C_CloseSession = f_CloseSession;
    fl.C_Login = f_Login;
    fl.C_Logout = f_Logout;
    fl.C_FindObjectsInit = f_FindObjectsInit;
    fl.C_FindObjects = f_FindObjects;
    fl.C_FindObjectsFinal = f_FindObjectsFinal;
    fl.C_GetAttributeValue = f_GetAttributeValue;
    *out = &fl;
    return CKR_OK;
}
