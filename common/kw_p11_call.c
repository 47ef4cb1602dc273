/* SPDX-License-Identifier: Apache-2.0 */
/* CK_RV names, logging of every call, and the one mapping from CK_RV to kw_err. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <signal.h>
#include <time.h>

#include <openssl/err.h>

#include "kw_log.h"
#include "kw_p11_int.h"

const char *kw_p11_rv_name(CK_RV rv)
{
    switch (rv) {
#define N(x)                                                                                       \
    case x:                                                                                        \
        return #x;
        N(CKR_OK)
        N(CKR_CANCEL)
        N(CKR_HOST_MEMORY)
        N(CKR_SLOT_ID_INVALID)
        N(CKR_GENERAL_ERROR)
        N(CKR_FUNCTION_FAILED)
        N(CKR_ARGUMENTS_BAD)
        N(CKR_ATTRIBUTE_SENSITIVE)
        N(CKR_ATTRIBUTE_TYPE_INVALID)
        N(CKR_ATTRIBUTE_VALUE_INVALID)
        N(CKR_DATA_INVALID)
        N(CKR_DATA_LEN_RANGE)
        N(CKR_DEVICE_ERROR)
        N(CKR_DEVICE_MEMORY)
        N(CKR_DEVICE_REMOVED)
        N(CKR_ENCRYPTED_DATA_INVALID)
        N(CKR_ENCRYPTED_DATA_LEN_RANGE)
        N(CKR_FUNCTION_CANCELED)
        N(CKR_FUNCTION_NOT_SUPPORTED)
        N(CKR_KEY_HANDLE_INVALID)
        N(CKR_KEY_SIZE_RANGE)
        N(CKR_KEY_TYPE_INCONSISTENT)
        N(CKR_KEY_FUNCTION_NOT_PERMITTED)
        N(CKR_MECHANISM_INVALID)
        N(CKR_MECHANISM_PARAM_INVALID)
        N(CKR_OBJECT_HANDLE_INVALID)
        N(CKR_OPERATION_ACTIVE)
        N(CKR_OPERATION_NOT_INITIALIZED)
        N(CKR_PIN_INCORRECT)
        N(CKR_PIN_INVALID)
        N(CKR_PIN_LEN_RANGE)
        N(CKR_PIN_EXPIRED)
        N(CKR_PIN_LOCKED)
        N(CKR_SESSION_CLOSED)
        N(CKR_SESSION_COUNT)
        N(CKR_SESSION_HANDLE_INVALID)
        N(CKR_SESSION_READ_ONLY)
        N(CKR_SIGNATURE_INVALID)
        N(CKR_SIGNATURE_LEN_RANGE)
        N(CKR_TEMPLATE_INCOMPLETE)
        N(CKR_TEMPLATE_INCONSISTENT)
        N(CKR_TOKEN_NOT_PRESENT)
        N(CKR_TOKEN_NOT_RECOGNIZED)
        N(CKR_TOKEN_WRITE_PROTECTED)
        N(CKR_USER_ALREADY_LOGGED_IN)
        N(CKR_USER_NOT_LOGGED_IN)
        N(CKR_USER_PIN_NOT_INITIALIZED)
        N(CKR_USER_TYPE_INVALID)
        N(CKR_BUFFER_TOO_SMALL)
        N(CKR_CRYPTOKI_NOT_INITIALIZED)
        N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
        N(CKR_DOMAIN_PARAMS_INVALID)
        N(CKR_CURVE_NOT_SUPPORTED)
#undef N
    default:
        return "CKR_(vendor or unknown)";
    }
}

/* A remote module (p11-kit-client, or the proxy forwarding to one) writes to a socket; if its
 * server is gone the write raises SIGPIPE, which would kill a server that left it at the
 * default. Each call runs with SIGPIPE blocked, and a SIGPIPE it raised is consumed. */
static __thread sigset_t call_oldmask;
static __thread int call_pipe_was_pending;

/* A module that uses libcrypto in our process (SoftHSM2's C_Initialize looks for the "rdrand"
 * engine and fails) can leave errors on this thread's OpenSSL queue. They are not ours, and an
 * application that finds a stale error takes it for its own: nginx's SSL_get_error() then turns
 * a handshake that is waiting for the client into a failed one. Each call runs between a mark
 * and a pop to it, so whatever the module leaves is dropped (and logged). */
static __thread unsigned long call_err_before;

/* The call gate: calls in flight across all modules, and a fork waiting for them to end. A
 * fork while another thread is inside a module leaves that module's internal locks held in the
 * child, which has no thread to release them (SoftHSM2's C_Initialize then waits forever in
 * the child for a mutex a parent thread held in C_Sign). */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;
static unsigned long gate_in_flight;
static int gate_closed;
static __thread unsigned call_depth;

/* A fork waits at most this long for calls in flight; a module call that never returns (a
 * dead RPC server) must not make the application unable to fork. */
#define KW_P11_FORK_WAIT_MS 5000

static void gate_init(void)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&gate_cond, &a);
    pthread_condattr_destroy(&a);
}

static void gate_enter(void)
{
    /* A module that calls back into us (it never should) is already counted. */
    if (call_depth++ > 0)
        return;
    pthread_once(&gate_once, gate_init);
    pthread_mutex_lock(&gate_lock);
    while (gate_closed)
        pthread_cond_wait(&gate_cond, &gate_lock);
    gate_in_flight++;
    pthread_mutex_unlock(&gate_lock);
}

static void gate_leave(void)
{
    if (--call_depth > 0)
        return;
    pthread_mutex_lock(&gate_lock);
    gate_in_flight--;
    if (gate_closed && gate_in_flight == 0)
        pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

int kw_p11_in_call(void)
{
    return call_depth > 0;
}

/* prepare: returns holding gate_lock, so that no thread is half-way through the gate when the
 * process forks. */
void kw_p11_calls_quiesce(void)
{
    struct timespec until;
    int waited = 0;

    pthread_once(&gate_once, gate_init);
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += KW_P11_FORK_WAIT_MS / 1000;
    until.tv_nsec += (KW_P11_FORK_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&gate_lock);
    gate_closed = 1;
    while (gate_in_flight > 0) {
        waited = 1;
        if (pthread_cond_timedwait(&gate_cond, &gate_lock, &until) != 0)
            break;
    }
    if (gate_in_flight > 0)
        KW_DEBUG("p11",
                 "fork: %lu PKCS#11 calls still in flight after %d ms; forking anyway (the "
                 "child re-initialises the module)",
                 gate_in_flight, KW_P11_FORK_WAIT_MS);
    else if (waited)
        KW_TRACE("p11", "fork waited for PKCS#11 calls in flight to end");
}

void kw_p11_calls_open(int in_child)
{
    if (in_child) {
        /* The other threads are gone: their calls and their waits with them. */
        gate_in_flight = 0;
        gate_init();
    }
    gate_closed = 0;
    if (!in_child)
        pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

/* What a call needs of its module: the function list, and whether to guard SIGPIPE. */
CK_FUNCTION_LIST *kw_p11_module_fl(kw_p11_module *mod)
{
    return mod->fl;
}

int kw_p11_module_guards_sigpipe(kw_p11_module *mod)
{
    return mod->guard_sigpipe;
}

int kw_p11_call_begin(kw_p11_module *mod)
{
    sigset_t pipe, pending;

    gate_enter();

    /* Only the debug log compares (a module's error vs one the caller had); no peek without it. */
    call_err_before = kw_log_level() >= 1 ? ERR_peek_last_error() : 0;
    ERR_set_mark();
    if (!kw_p11_module_guards_sigpipe(mod))
        return 0;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    call_pipe_was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &call_oldmask);
    return 1;
}

CK_RV kw_p11_called(kw_p11_module *mod, const char *fn, CK_RV rv)
{
    if (kw_p11_module_guards_sigpipe(mod)) {
        sigset_t pipe, pending;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        sigemptyset(&pending);
        if (!call_pipe_was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            (void)sigtimedwait(&pipe, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &call_oldmask, NULL);
    }
    if (kw_log_level() >= 1) {
        unsigned long left = ERR_peek_last_error();
        if (left != 0 && left != call_err_before) {
            char what[256];
            ERR_error_string_n(left, what, sizeof(what));
            KW_DEBUG("p11", "%s left OpenSSL errors on the queue (dropped): %s", fn, what);
        }
    }
    ERR_pop_to_mark();
    gate_leave();
    if (rv != CKR_OK)
        KW_DEBUG("p11", "%s -> %s (0x%lx)", fn, kw_p11_rv_name(rv), (unsigned long)rv);
    else
        KW_TRACE("p11", "%s -> CKR_OK", fn);
    return rv;
}

int kw_p11_rv_is_gone(CK_RV rv)
{
    return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR ||
           rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID ||
           rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

kw_err kw_p11_rv_to_err(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return KW_OK;
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
        return KW_ERR_MEMORY;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
        return KW_ERR_PIN_INCORRECT;
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
        return KW_ERR_PIN_LOCKED;
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
        return KW_ERR_PIN_REQUIRED;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
        return KW_ERR_MECHANISM;
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_HANDLE_INVALID:
        return KW_ERR_KEY_USAGE;
    case CKR_ARGUMENTS_BAD:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_TEMPLATE_INCONSISTENT:
        return KW_ERR_INVALID;
    default:
        return kw_p11_rv_is_gone(rv) ? KW_ERR_TOKEN_GONE : KW_ERR_P11;
    }
}

kw_err kw_p11_fail(CK_RV rv, const char *fn, const char *fmt, ...)
{
    char ctx[256];
    va_list ap;
    kw_err e = kw_p11_rv_to_err(rv);

    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    return kw_err_set(e, "%s: %s failed with %s", ctx, fn, kw_p11_rv_name(rv));
}
