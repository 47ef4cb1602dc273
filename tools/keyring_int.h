/* SPDX-License-Identifier: Apache-2.0 */
/* keyward keyring: the token it works on (module, token, session, through common/kw_p11.h) and
 * its error lines, shared by the commands (keyring.c) and keyring_token.c. */
#ifndef KWT_KEYRING_INT_H
#define KWT_KEYRING_INT_H

#include "kw_p11.h"

/* The module, the token and a R/W session on it, all through the common call layer. */
typedef struct {
    kw_p11_module *mod;
    kw_p11_token *tok;
    CK_SESSION_HANDLE s;
    CK_RV last; /* the last CK_RV seen on s: a dead session is not pooled */
} kr_token;

/* keyring_token.c */
/* "keyward: keyring: ..." on stderr through kwt_err (--json's error.message too); returns 1. */
int kr_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *kr_last_error(void);
int kr_call_fail(kr_token *t, CK_RV rv, const char *fn, const char *what);
int kr_open(const char *label, kr_token *t);
void kr_close(kr_token *t);

#endif
