/* SPDX-License-Identifier: Apache-2.0 */
/* keyward keyring: the keyring token through the common PKCS#11 call layer (the module by
 * path, the token by label, a R/W session), and its error lines with what to do. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyring_int.h"
#include "kwt.h"

/* Where the module was installed (set by the build); then the usual p11-kit module dirs. */
static const char *const module_paths[] = {
#ifdef KWK_MODULE_PATH
    KWK_MODULE_PATH,
#endif
    "/usr/local/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/keyward-pkcs11.so",
    "/usr/local/lib/pkcs11/keyward-pkcs11.so",
    "/usr/lib/pkcs11/keyward-pkcs11.so",
};

int kr_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* through kwt_err, so --json's error.message has the same text as stderr */
    return kwt_err(KWT_FAIL, "keyring: %s", msg);
}

/* The call layer's text of the last error, e.g. "...: C_CreateObject failed with CKR_...". */
const char *kr_last_error(void)
{
    const char *msg = NULL;
    kw_err_last(&msg);
    return msg && *msg ? msg : "PKCS#11 error";
}

/* What to do about the CK_RVs a keyring token gives for the state of the kernel keyring. */
static const char *keyring_hint(CK_RV rv)
{
    switch (rv) {
    case CKR_DEVICE_MEMORY:
        return ": keyring quota exceeded (see /proc/sys/kernel/keys/maxbytes)";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return ": permission denied by the keyring: this process does not possess it; link the "
               "user keyring into the session keyring (keyctl link @u @s) or use a session: token";
    case CKR_USER_NOT_LOGGED_IN:
        return ": the token needs a PIN";
    default:
        return "";
    }
}

/* A failed call: the call layer's CK_RV text, with what the keyring asks of the user. */
int kr_call_fail(kr_token *t, CK_RV rv, const char *fn, const char *what)
{
    t->last = rv;
    kw_p11_fail(rv, fn, "%s", what);
    return kr_fail("%s%s", kr_last_error(), keyring_hint(rv));
}

/* Load the module and take a R/W session on the token with the given label (or the first). */
int kr_open(const char *label, kr_token *t)
{
    const char *path = getenv("KEYWARD_PKCS11_MODULE");
    size_t npaths = sizeof(module_paths) / sizeof(module_paths[0]);
    kw_p11_token **toks = NULL;
    size_t n = 0;
    char l[33] = "";
    memset(t, 0, sizeof(*t));
    if (path == NULL || *path == '\0') {
        /* the first that is there; the last one's error when none is */
        for (size_t i = 0; i < npaths; i++)
            if (access(path = module_paths[i], F_OK) == 0)
                break;
    }
    if ((t->mod = kw_p11_module_get(path)) == NULL)
        return kr_fail("%s", kr_last_error());
    if (kw_p11_find_tokens(t->mod, NULL, &toks, &n) != KW_OK) {
        free(toks);
        return kr_fail("no keyring token available: %s", kr_last_error()); /* the real cause */
    }
    if (n == 0) {
        free(toks);
        return kr_fail("no keyring token available");
    }
    for (size_t i = 0; i < n && t->tok == NULL; i++) {
        const CK_TOKEN_INFO *ti = kw_p11_token_info(toks[i]);
        kw_p11_label(ti->label, sizeof(ti->label), l, sizeof(l));
        if (label == NULL || strcmp(l, label) == 0)
            t->tok = toks[i];
    }
    free(toks);
    if (t->tok == NULL)
        return kr_fail("no keyring token labelled '%s'", label ? label : "?");
    if (kw_p11_session_get(t->tok, 0, NULL, &t->s) != KW_OK) {
        t->tok = NULL;
        return kr_fail("cannot open a session on token '%s': %s", l, kr_last_error());
    }
    return 0;
}

void kr_close(kr_token *t)
{
    if (t->tok)
        kw_p11_session_put(t->tok, t->s, t->last);
    kw_p11_module_put(t->mod);
    memset(t, 0, sizeof(*t));
}
