/* SPDX-License-Identifier: Apache-2.0 */
/* The provider context: its settings from openssl.cnf, its PKCS#11 module (loaded on first use
 * or at start), and errors raised through the core's error stack with file, line and function. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include <keyward/keyward.h>

#include "kwp.h"

static void kwp_core_set_error(kwp_ctx *ctx, int reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctx->core_vset_error(ctx->core, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

/* Meson compiles with paths relative to the build directory ("../src/provider/key.c"): name
 * the file from the top of the source tree, as OpenSSL's own errors do. */
static const char *src_file(const char *f)
{
    const char *best = f;

    if (f == NULL)
        return NULL;
    for (const char *p = f; (p = strchr(p, '/')) != NULL; p++)
        if (strncmp(p + 1, "provider/", 9) == 0 || strncmp(p + 1, "common/", 7) == 0)
            best = p + 1;
    return best;
}

void kwp_raise_at(kwp_ctx *ctx, const char *file, int line, const char *func, int reason,
                  const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    if (ctx == NULL || ctx->core_new_error == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kw_redact_pins(msg);
    ctx->core_new_error(ctx->core);
    ctx->core_set_error_debug(ctx->core, src_file(file), line, func);
    kwp_core_set_error(ctx, reason, "%s", msg);
}

void kwp_raise_reason_at(kwp_ctx *ctx, const char *file, int line, const char *func, int reason)
{
    if (ctx == NULL || ctx->core_new_error == NULL)
        return;
    ctx->core_new_error(ctx->core);
    ctx->core_set_error_debug(ctx->core, src_file(file), line, func);
    kwp_core_set_error(ctx, reason, NULL);
}

void kwp_raise_last_at(kwp_ctx *ctx, const char *file, int line, const char *func)
{
    const char *msg, *efile, *efunc;
    int eline;
    kw_err e = kw_err_last(&msg);

    kw_err_where(&efile, &eline, &efunc);
    if (e != KW_OK && efile != NULL) {
        file = efile;
        line = eline;
        func = efunc;
    }
    if (e == KW_OK)
        kwp_raise_at(ctx, file, line, func, KWP_R(KW_ERR_P11), "%s", "operation failed");
    else
        kwp_raise_at(ctx, file, line, func, KWP_R(e), "%s", msg);
}

kw_p11_module *kwp_module(kwp_ctx *ctx)
{
    kw_p11_module *mod;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->mod == NULL) {
        ctx->mod = kw_p11_module_get(ctx->module_path);
        if (ctx->mod == NULL)
            kwp_raise_last(ctx);
    }
    mod = ctx->mod;
    pthread_mutex_unlock(&ctx->lock);
    return mod;
}

/* Read our keys from the provider's section in openssl.cnf. */
int kwp_ctx_read_config(kwp_ctx *ctx, const OSSL_DISPATCH *in)
{
    OSSL_FUNC_core_get_params_fn *get_params = NULL;
    char *module = NULL, *pin = NULL, *load = NULL;
    const char *env;

    for (; in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            get_params = OSSL_FUNC_core_get_params(in);
            break;
        case OSSL_FUNC_CORE_GET_LIBCTX:
            /* keyward links the application's libcrypto, so the core's context is an
             * OSSL_LIB_CTX it can fetch from (as OpenSSL's own default provider does). */
            ctx->hlibctx = (OSSL_LIB_CTX *)OSSL_FUNC_core_get_libctx(in)(ctx->core);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            ctx->core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            ctx->core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            ctx->core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        }
    }
    if (get_params != NULL) {
        OSSL_PARAM p[] = {OSSL_PARAM_utf8_ptr(KEYWARD_CONF_MODULE, &module, 0),
                          OSSL_PARAM_utf8_ptr(KEYWARD_CONF_PIN_SOURCE, &pin, 0),
                          OSSL_PARAM_utf8_ptr(KEYWARD_CONF_LOAD, &load, 0), OSSL_PARAM_END};
        if (!get_params(ctx->core, p))
            return 0;
    }
    env = getenv(KEYWARD_ENV_MODULE);
    if (env != NULL && *env != '\0')
        module = (char *)env;
    if (module != NULL && (ctx->module_path = strdup(module)) == NULL)
        return 0;
    if (pin != NULL && (ctx->pin_source = strdup(pin)) == NULL)
        return 0;
    if (load != NULL) {
        if (strcmp(load, "early") == 0) {
            ctx->load_early = 1;
        } else if (strcmp(load, "lazy") != 0) {
            /* Through kw_err so that KEYWARD_DEBUG shows it: openssl ignores a provider that
             * fails to load from the config unless config_diagnostics = 1. */
            kw_err_set(KW_ERR_INVALID, "%s must be \"lazy\" or \"early\", not \"%s\"",
                       KEYWARD_CONF_LOAD, load);
            kwp_raise_last(ctx);
            return 0;
        }
    }
    KW_DEBUG("prov", "init: module=%s pin-source=%s load=%s",
             ctx->module_path ? ctx->module_path : "(p11-kit proxy)",
             ctx->pin_source ? "(set)" : "(none)", ctx->load_early ? "early" : "lazy");
    return 1;
}
