/* SPDX-License-Identifier: Apache-2.0 */
/* kw-fault-shim.so: a PKCS#11 module for tests only. It wraps a real module and makes chosen
 * calls fail or stall, so tests can see what keyward does when a token misbehaves.
 *
 *   KW_SHIM_MODULE=/usr/lib/softhsm/libsofthsm2.so      the real module (required)
 *   KW_SHIM_FAIL=C_Sign:3:CKR_DEVICE_REMOVED            fail the 3rd C_Sign of the process
 *   KW_SHIM_FAIL=C_Sign:2-4:CKR_DEVICE_ERROR,C_Login:1+:CKR_PIN_EXPIRED
 *                                                       calls 2..4; every call from the 1st on
 *   KW_SHIM_DELAY=C_Sign:1:2000                         sleep 2000 ms before the 1st C_Sign
 *   KW_SHIM_DELAY_SERIAL=1                              a delayed call holds one lock of the
 *                                                       shim's while it sleeps and runs, as a
 *                                                       module that serialises its device does
 *   KW_SHIM_LOG=/path                                   append "C_Name" per call (call counts)
 *
 * A test that loaded the shim (through keyward) can change the fault rules while it runs:
 * dlopen(shim, RTLD_NOLOAD), then kw_shim_set_fail("C_Sign:1+:CKR_DEVICE_ERROR") or ("") to
 * stop failing; counters restart at 0. Returns 1 when the rules parsed.
 *
 * Calls are counted per function from 1, across threads. A CKR_ is given by name or number.
 * A failed sign or decrypt still finishes the real operation, as the standard says a failed
 * call ends it, so the real session is not left with an operation active. A rule that names
 * a function the shim does not wrap, or a CKR_ it does not know, makes C_GetFunctionList fail:
 * a test must never believe it injected a fault that never happened. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define MAX_RULES 16

typedef struct {
    char fn[40];
    unsigned long from, to; /* call numbers, inclusive; to = 0: no end */
    CK_RV rv;               /* fail rules */
    unsigned long ms;       /* delay rules */
} rule;

static rule fail_rules[MAX_RULES], delay_rules[MAX_RULES];
static int nfail, ndelay;
static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST shim_fl;
static void *real_handle;
static int log_fd = -1;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static int setup_ok;
/* KW_SHIM_DELAY_SERIAL: a module lock held across delayed calls. A fork while another thread
 * holds it leaves it held in the child, as a real module's lock would be. */
static int delay_serial;
static pthread_mutex_t serial_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int serial_held;

static const struct {
    const char *name;
    CK_RV rv;
} rv_names[] = {
    {"CKR_OK", CKR_OK},
    {"CKR_HOST_MEMORY", CKR_HOST_MEMORY},
    {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
    {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"CKR_SESSION_COUNT", CKR_SESSION_COUNT},
    {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"CKR_PIN_EXPIRED", CKR_PIN_EXPIRED},
    {"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
    {"CKR_PIN_LOCKED", CKR_PIN_LOCKED},
    {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
    {"CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID},
    {"CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE},
    {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
};

static int parse_rv(const char *s, CK_RV *rv)
{
    char *end;
    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++) {
        if (strcmp(s, rv_names[i].name) == 0) {
            *rv = rv_names[i].rv;
            return 1;
        }
    }
    errno = 0;
    *rv = strtoul(s, &end, 0);
    return errno == 0 && end != s && *end == '\0';
}

/* "N", "N-M" or "N+" */
static int parse_range(const char *s, unsigned long *from, unsigned long *to)
{
    char *end;
    *from = strtoul(s, &end, 10);
    if (end == s || *from == 0)
        return 0;
    if (*end == '\0') {
        *to = *from;
        return 1;
    }
    if (strcmp(end, "+") == 0) {
        *to = 0;
        return 1;
    }
    if (*end == '-') {
        const char *m = end + 1;
        *to = strtoul(m, &end, 10);
        return end != m && *end == '\0' && *to >= *from;
    }
    return 0;
}

static int known_fn(const char *fn);

/* Parse "FN:RANGE:VALUE[,...]" into rules; value is a CKR_ (fail) or milliseconds (delay). */
static int parse_rules(const char *var, const char *v, rule *rules, int *n, int is_fail)
{
    char *copy, *save = NULL, *item;
    int ok = 1;

    *n = 0;
    if (v == NULL || *v == '\0')
        return 1;
    copy = strdup(v);
    if (copy == NULL)
        return 0;
    for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *c1 = strchr(item, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        rule r = {0};
        if (c2 == NULL || *n >= MAX_RULES || (size_t)(c1 - item) >= sizeof(r.fn)) {
            ok = 0;
            break;
        }
        *c1 = *c2 = '\0';
        strcpy(r.fn, item);
        if (!known_fn(r.fn) || !parse_range(c1 + 1, &r.from, &r.to)) {
            ok = 0;
            break;
        }
        if (is_fail) {
            if (!parse_rv(c2 + 1, &r.rv)) {
                ok = 0;
                break;
            }
        } else {
            char *end;
            r.ms = strtoul(c2 + 1, &end, 10);
            if (end == c2 + 1 || *end != '\0') {
                ok = 0;
                break;
            }
        }
        rules[(*n)++] = r;
    }
    if (!ok)
        fprintf(stderr, "kw-fault-shim: bad %s entry (want FN:N[-M|+]:%s): %s\n", var,
                is_fail ? "CKR_..." : "MS", v);
    free(copy);
    return ok;
}

/* ---- per-function call counters ---- */

/* One entry a line; clang-format would re-flow this list differently on every run. */
/* clang-format off */
#define FN_LIST(X) \
    X(C_Initialize) \
    X(C_Finalize) \
    X(C_GetInfo) \
    X(C_GetSlotList) \
    X(C_GetSlotInfo) \
    X(C_GetTokenInfo) \
    X(C_GetMechanismList) \
    X(C_GetMechanismInfo) \
    X(C_OpenSession) \
    X(C_CloseSession) \
    X(C_CloseAllSessions) \
    X(C_GetSessionInfo) \
    X(C_Login) \
    X(C_Logout) \
    X(C_CreateObject) \
    X(C_CopyObject) \
    X(C_DestroyObject) \
    X(C_GetAttributeValue) \
    X(C_SetAttributeValue) \
    X(C_FindObjectsInit) \
    X(C_FindObjects) \
    X(C_FindObjectsFinal) \
    X(C_EncryptInit) \
    X(C_Encrypt) \
    X(C_DecryptInit) \
    X(C_Decrypt) \
    X(C_SignInit) \
    X(C_Sign) \
    X(C_SignUpdate) \
    X(C_SignFinal) \
    X(C_VerifyInit) \
    X(C_Verify) \
    X(C_GenerateKeyPair) \
    X(C_WrapKey) \
    X(C_DeriveKey) \
    X(C_GenerateRandom)
/* clang-format on */

#define X_ENUM(f) FN_##f,
enum { FN_LIST(X_ENUM) FN_COUNT };
#define X_NAME(f) #f,
static const char *const fn_names[FN_COUNT] = {FN_LIST(X_NAME)};
static atomic_ulong fn_calls[FN_COUNT];

static int known_fn(const char *fn)
{
    for (int i = 0; i < FN_COUNT; i++)
        if (strcmp(fn, fn_names[i]) == 0)
            return 1;
    return 0;
}

static void setup(void)
{
    const char *path = getenv("KW_SHIM_MODULE");
    const char *logp = getenv("KW_SHIM_LOG");
    CK_C_GetFunctionList gfl;

    if (path == NULL || *path == '\0') {
        fprintf(stderr, "kw-fault-shim: KW_SHIM_MODULE is not set\n");
        return;
    }
    if (!parse_rules("KW_SHIM_FAIL", getenv("KW_SHIM_FAIL"), fail_rules, &nfail, 1) ||
        !parse_rules("KW_SHIM_DELAY", getenv("KW_SHIM_DELAY"), delay_rules, &ndelay, 0))
        return;
    real_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (real_handle == NULL) {
        fprintf(stderr, "kw-fault-shim: cannot load %s: %s\n", path, dlerror());
        return;
    }
    gfl = (CK_C_GetFunctionList)dlsym(real_handle, "C_GetFunctionList");
    if (gfl == NULL || gfl(&real) != CKR_OK || real == NULL) {
        fprintf(stderr, "kw-fault-shim: %s has no usable C_GetFunctionList\n", path);
        return;
    }
    if (logp != NULL && *logp != '\0')
        log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    delay_serial = getenv("KW_SHIM_DELAY_SERIAL") != NULL && atoi(getenv("KW_SHIM_DELAY_SERIAL"));
    setup_ok = 1;
}

/* Count the call; sleep if a delay rule says so; return 1 and *rv when it must fail. */
static int inject(int fn, CK_RV *rv)
{
    unsigned long n = atomic_fetch_add(&fn_calls[fn], 1) + 1;

    if (log_fd >= 0) {
        char line[64];
        int len = snprintf(line, sizeof(line), "%s\n", fn_names[fn]);
        if (write(log_fd, line, (size_t)len) < 0) {
            /* a log we cannot write only loses counts */
        }
    }
    for (int i = 0; i < ndelay; i++) {
        rule *r = &delay_rules[i];
        if (strcmp(r->fn, fn_names[fn]) == 0 && n >= r->from && (r->to == 0 || n <= r->to)) {
            struct timespec ts = {(time_t)(r->ms / 1000), (long)(r->ms % 1000) * 1000000L};
            if (delay_serial && !serial_held) {
                pthread_mutex_lock(&serial_lock);
                serial_held = 1;
            }
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
    }
    for (int i = 0; i < nfail; i++) {
        rule *r = &fail_rules[i];
        if (strcmp(r->fn, fn_names[fn]) == 0 && n >= r->from && (r->to == 0 || n <= r->to)) {
            *rv = r->rv;
            return 1;
        }
    }
    return 0;
}

/* End of a call: the serial lock a delay took is released after the real call ran. */
static CK_RV done(CK_RV rv)
{
    if (serial_held) {
        serial_held = 0;
        pthread_mutex_unlock(&serial_lock);
    }
    return rv;
}

#define INJECT(f)                                                                                  \
    do {                                                                                           \
        CK_RV inj_;                                                                                \
        if (inject(FN_##f, &inj_))                                                                 \
            return done(inj_);                                                                     \
    } while (0)

/* A wrapper that counts, may fail, else calls the real function. */
#define WRAP(f, params, args)                                                                      \
    static CK_RV w_##f params                                                                      \
    {                                                                                              \
        INJECT(f);                                                                                 \
        return done(real->f args);                                                                 \
    }

WRAP(C_Initialize, (CK_VOID_PTR a), (a))
WRAP(C_Finalize, (CK_VOID_PTR a), (a))
WRAP(C_GetInfo, (CK_INFO_PTR i), (i))
WRAP(C_GetSlotList, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))
WRAP(C_GetSlotInfo, (CK_SLOT_ID s, CK_SLOT_INFO_PTR i), (s, i))
WRAP(C_GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
WRAP(C_GetMechanismList, (CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n), (s, l, n))
WRAP(C_GetMechanismInfo, (CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i), (s, t, i))
WRAP(C_OpenSession, (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h),
     (s, f, a, n, h))
WRAP(C_CloseSession, (CK_SESSION_HANDLE h), (h))
WRAP(C_CloseAllSessions, (CK_SLOT_ID s), (s))
WRAP(C_GetSessionInfo, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i), (h, i))
WRAP(C_Login, (CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n), (h, u, p, n))
WRAP(C_Logout, (CK_SESSION_HANDLE h), (h))
WRAP(C_CreateObject, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
     (h, t, n, o))
WRAP(C_CopyObject,
     (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
      CK_OBJECT_HANDLE_PTR c),
     (h, o, t, n, c))
WRAP(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o), (h, o))
WRAP(C_GetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
     (h, o, t, n))
WRAP(C_SetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
     (h, o, t, n))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, t, n))
WRAP(C_FindObjects, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n),
     (h, o, m, n))
WRAP(C_FindObjectsFinal, (CK_SESSION_HANDLE h), (h))
WRAP(C_EncryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
WRAP(C_Encrypt, (CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (h, d, n, o, on))
WRAP(C_DecryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
WRAP(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
WRAP(C_SignUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n), (h, d, n))
WRAP(C_VerifyInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
WRAP(C_Verify, (CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG sn),
     (h, d, n, s, sn))
WRAP(C_GenerateKeyPair,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
      CK_ATTRIBUTE_PTR st, CK_ULONG sn, CK_OBJECT_HANDLE_PTR ph, CK_OBJECT_HANDLE_PTR sh),
     (h, m, pt, pn, st, sn, ph, sh))
WRAP(C_WrapKey,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k,
      CK_BYTE_PTR o, CK_ULONG_PTR on),
     (h, m, w, k, o, on))
WRAP(C_DeriveKey,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR t, CK_ULONG n,
      CK_OBJECT_HANDLE_PTR k),
     (h, m, b, t, n, k))
WRAP(C_GenerateRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR b, CK_ULONG n), (h, b, n))

/* One-shot and final calls: on an injected failure the real operation is run to its end and
 * its output dropped, so the session is in the state the standard describes after an error. */
typedef CK_RV (*oneshot_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);

static void finish_oneshot(oneshot_fn f, CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n)
{
    unsigned char buf[16384];
    CK_ULONG len = sizeof(buf);
    (void)f(h, d, n, buf, &len);
    memset(buf, 0, sizeof(buf));
}

static CK_RV w_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s,
                      CK_ULONG_PTR sn)
{
    CK_RV inj;
    if (inject(FN_C_Sign, &inj)) {
        finish_oneshot(real->C_Sign, h, d, n);
        return done(inj);
    }
    return done(real->C_Sign(h, d, n, s, sn));
}

static CK_RV w_C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o,
                         CK_ULONG_PTR on)
{
    CK_RV inj;
    if (inject(FN_C_Decrypt, &inj)) {
        finish_oneshot(real->C_Decrypt, h, d, n);
        return done(inj);
    }
    return done(real->C_Decrypt(h, d, n, o, on));
}

static CK_RV w_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR sn)
{
    CK_RV inj;
    if (inject(FN_C_SignFinal, &inj)) {
        unsigned char buf[16384];
        CK_ULONG len = sizeof(buf);
        (void)real->C_SignFinal(h, buf, &len);
        return done(inj);
    }
    return done(real->C_SignFinal(h, s, sn));
}

int kw_shim_set_fail(const char *spec);

/* For tests that keep one process: not thread-safe against calls in flight (call it between
 * operations). */
__attribute__((visibility("default"))) int kw_shim_set_fail(const char *spec)
{
    rule tmp[MAX_RULES];
    int n = 0;

    memset(tmp, 0, sizeof(tmp));
    if (!parse_rules("kw_shim_set_fail", spec, tmp, &n, 1))
        return 0;
    memcpy(fail_rules, tmp, sizeof(tmp));
    nfail = n;
    for (int i = 0; i < FN_COUNT; i++)
        atomic_store(&fn_calls[i], 0);
    return 1;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&setup_once, setup);
    if (!setup_ok)
        return CKR_GENERAL_ERROR;
    /* Functions not wrapped pass straight through. */
    shim_fl = *real;
    shim_fl.C_GetFunctionList = C_GetFunctionList;
#define X_SET(f) shim_fl.f = w_##f;
    FN_LIST(X_SET)
#undef X_SET
    *out = &shim_fl;
    return CKR_OK;
}
