/* SPDX-License-Identifier: Apache-2.0 */
#include "kw_err.h"

#include <stdarg.h>
#include <stdio.h>

#include "kw_log.h"

static __thread kw_err last_err;
static __thread char last_msg[512];
static __thread const char *last_file, *last_func;
static __thread int last_line;

kw_err kw_err_set_at(const char *file, int line, const char *func, kw_err e, const char *fmt, ...)
{
    va_list ap;
    last_err = e;
    last_file = file;
    last_line = line;
    last_func = func;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    kw_redact_pins(last_msg);
    KW_DEBUG("err", "%s: %s", kw_err_name(e), last_msg);
    return e;
}

kw_err kw_err_last(const char **msg)
{
    if (msg != NULL)
        *msg = last_msg;
    return last_err;
}

void kw_err_where(const char **file, int *line, const char **func)
{
    *file = last_file;
    *line = last_line;
    *func = last_func;
}

void kw_err_clear(void)
{
    last_err = KW_OK;
    last_msg[0] = '\0';
    last_file = last_func = NULL;
    last_line = 0;
}

const char *kw_err_name(kw_err e)
{
    static const char *const names[KW_ERR_MAX] = {
        [KW_OK] = "ok",
        [KW_ERR_URI] = "malformed pkcs11 URI",
        [KW_ERR_MODULE] = "PKCS#11 module cannot be loaded",
        [KW_ERR_TOKEN_NOT_FOUND] = "token not found",
        [KW_ERR_OBJECT_NOT_FOUND] = "object not found",
        [KW_ERR_AMBIGUOUS] = "URI matches more than one key",
        [KW_ERR_PIN_INCORRECT] = "PIN incorrect",
        [KW_ERR_PIN_LOCKED] = "PIN locked",
        [KW_ERR_PIN_SOURCE] = "PIN file unusable",
        [KW_ERR_PIN_REQUIRED] = "PIN required",
        [KW_ERR_MECHANISM] = "mechanism not supported by the token",
        [KW_ERR_KEY_USAGE] = "key not usable for this operation",
        [KW_ERR_TOKEN_GONE] = "token not present",
        [KW_ERR_EXPORT] = "private key cannot be exported",
        [KW_ERR_MEMORY] = "out of memory",
        [KW_ERR_INVALID] = "invalid argument",
        [KW_ERR_P11] = "PKCS#11 error",
    };
    if ((unsigned)e >= KW_ERR_MAX || names[e] == NULL)
        return "unknown error";
    return names[e];
}
