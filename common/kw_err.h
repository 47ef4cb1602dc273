/* SPDX-License-Identifier: Apache-2.0 */
/* Error classes shared by the PKCS#11 call layer and its users. The last error of a thread holds
 * a class and a message a person understands; the provider turns it into an OpenSSL error,
 * the tools print it. */
#ifndef KW_ERR_H
#define KW_ERR_H

typedef enum {
    KW_OK = 0,
    KW_ERR_URI,              /* malformed or unsupported pkcs11: URI */
    KW_ERR_MODULE,           /* PKCS#11 module cannot be loaded or initialised */
    KW_ERR_TOKEN_NOT_FOUND,  /* no token matches the URI */
    KW_ERR_OBJECT_NOT_FOUND, /* no object matches the URI */
    KW_ERR_AMBIGUOUS,        /* more than one key matches where one is needed */
    KW_ERR_PIN_INCORRECT,    /* token rejected the PIN */
    KW_ERR_PIN_LOCKED,       /* PIN locked or expired on the token */
    KW_ERR_PIN_SOURCE,       /* PIN file missing, unreadable or too open */
    KW_ERR_PIN_REQUIRED,     /* login needed and no PIN available */
    KW_ERR_MECHANISM,        /* token lacks the mechanism */
    KW_ERR_KEY_USAGE,        /* key not usable for this operation */
    KW_ERR_TOKEN_GONE,       /* token removed, device error */
    KW_ERR_EXPORT,           /* private key value requested */
    KW_ERR_MEMORY,
    KW_ERR_INVALID, /* invalid argument / parameter */
    KW_ERR_P11,     /* other PKCS#11 failure */
    KW_ERR_MAX
} kw_err;

/* Set the thread's last error (returns e, so `return kw_err_set(...)` works), remembering where
 * it was set so that the provider's error stack names the real file, line and function. */
#define kw_err_set(e, ...) kw_err_set_at(__FILE__, __LINE__, __func__, (e), __VA_ARGS__)
kw_err kw_err_set_at(const char *file, int line, const char *func, kw_err e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The thread's last error; *msg (may be NULL) gets its text, valid until the next set. */
kw_err kw_err_last(const char **msg);
/* Where the thread's last error was set (NULL file and func, line 0, when none is). */
void kw_err_where(const char **file, int *line, const char **func);
void kw_err_clear(void);
/* Short name of an error class, for reason strings. */
const char *kw_err_name(kw_err e);

#endif
