/* SPDX-License-Identifier: Apache-2.0 */
/* The one place that calls PKCS#11 as a consumer: module loading (p11-kit), tokens, a session
 * pool per token, login, CK_RV mapping and fork detection. Every C_* call goes through
 * KW_P11_CALL so that it is logged and its failure is mapped to a kw_err in one place. */
#ifndef KW_P11_H
#define KW_P11_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "kw_err.h"

typedef struct kw_p11_module kw_p11_module;
typedef struct kw_p11_token kw_p11_token;

/* Asks for a PIN when the token needs a login and no other source has one.
 * Writes at most cap-1 bytes and a NUL; returns 1 on success. */
typedef int (*kw_pin_prompt_fn)(void *arg, const char *token_label, char *buf, size_t cap);

/* Where a PIN comes from, first hit wins: the URI's pin-value, the URI's pin-source, the
 * configured pin-source, then the prompt. */
typedef struct {
    const char *uri_pin_value;  /* from pin-value= (not owned) */
    const char *uri_pin_source; /* from pin-source= (not owned) */
    const char *conf_pin_source;
    kw_pin_prompt_fn prompt;
    void *prompt_arg;
} kw_pin_ctx;

/* A token of a module: its slot, its information and its session pool (kw_p11_int.h; callers
 * use the functions below). */

/* No token sets every flag bit: a mechanism whose C_GetMechanismInfo was not called yet. */
#define KW_MECH_FLAGS_UNKNOWN (~(CK_FLAGS)0)

/* ---- module ---- */
/* Load (or share) a module by path; NULL path = p11-kit proxy. Reference counted. */
kw_p11_module *kw_p11_module_get(const char *path);
void kw_p11_module_put(kw_p11_module *mod);
CK_FUNCTION_LIST *kw_p11_module_fl(kw_p11_module *mod);
const char *kw_p11_module_path(kw_p11_module *mod);
/* Bumped at every C_Initialize of the module and in a forked child: a session opened in an
 * older epoch is not this process's to close. Lock-free. */
unsigned kw_p11_module_epoch(kw_p11_module *mod);
/* Re-initialise after fork if needed; cheap when nothing changed. */
kw_err kw_p11_module_check(kw_p11_module *mod);

/* ---- tokens ---- */
/* Find tokens whose slot/token info match the URI. *out is an array of borrowed pointers,
 * freed by the caller with free(). A token that disappeared is re-found by label and serial. */
kw_err kw_p11_find_tokens(kw_p11_module *mod, P11KitUri *uri, kw_p11_token ***out, size_t *n);
int kw_p11_token_has_mech(kw_p11_token *tok, CK_MECHANISM_TYPE m, CK_FLAGS need);
/* Mark a token as gone after CKR_DEVICE_REMOVED and the like: its sessions are dropped. */
void kw_p11_token_lost(kw_p11_token *tok);
/* The token's information as last read (label, serial, flags). */
const CK_TOKEN_INFO *kw_p11_token_info(const kw_p11_token *tok);
kw_p11_module *kw_p11_token_module(const kw_p11_token *tok);
/* The token's generation: it changes whenever sessions and object handles learnt before may be
 * stale (fork, token loss, a new slot, re-initialisation). Never 0. Read without a lock. */
unsigned kw_p11_token_gen(const kw_p11_token *tok);
/* Is the token there, as far as the module last told (read without a lock)? */
int kw_p11_token_present(const kw_p11_token *tok);
/* Does the token ask for a user login (CKF_LOGIN_REQUIRED)? */
int kw_p11_token_login_required(const kw_p11_token *tok);
/* The token answered inconsistently (state read half-written): lost, and the module is
 * re-initialised at the next token search when none of our sessions is in use. */
void kw_p11_token_suspect(kw_p11_token *tok);

/* ---- sessions ---- */
/* Take a session from the token's pool, opening one or waiting while all are busy. When login
 * is true the user is logged in (PIN from pin, cached after first success). */
kw_err kw_p11_session_get(kw_p11_token *tok, int login, const kw_pin_ctx *pin,
                          CK_SESSION_HANDLE *out);
/* Return a session. rv is the last CK_RV seen on it: a dead session is dropped, not pooled. */
void kw_p11_session_put(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_RV rv);
/* Log in on a session the caller holds (used after CKR_USER_NOT_LOGGED_IN). */
kw_err kw_p11_login(kw_p11_token *tok, CK_SESSION_HANDLE s, const kw_pin_ctx *pin);

/* ---- objects ---- */
/* Find up to max objects matching a template. */
kw_err kw_p11_find(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                   CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count);
/* Get one attribute into a new malloc'd buffer (*val, *len). CKR_ATTRIBUTE_TYPE_INVALID and
 * sensitive attributes give KW_ERR_INVALID with *val NULL. */
kw_err kw_p11_attr(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                   unsigned char **val, CK_ULONG *len);
kw_err kw_p11_attr_ulong(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                         CK_ATTRIBUTE_TYPE t, CK_ULONG *v);
kw_err kw_p11_attr_bool(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                        CK_ATTRIBUTE_TYPE t, CK_BBOOL *v);

/* ---- calls and errors ---- */
/* Every PKCS#11 call: begin (SIGPIPE guard for remote modules), the call, then its logging,
 * in that order (the comma operator sequences them). */
int kw_p11_call_begin(kw_p11_module *mod);
CK_RV kw_p11_called(kw_p11_module *mod, const char *fn, CK_RV rv);
/* Fork handlers (kw_p11_fork.c): no fork happens while a call is in a module, so a child
 * never inherits a module's internal locks held by another thread. quiesce closes the gate
 * and waits (bounded) for calls in flight; open reopens it, in the parent or the child. */
void kw_p11_calls_quiesce(void);
void kw_p11_calls_open(int in_child);
/* Is this thread inside a module call (a module that forks from a call, e.g. to spawn a
 * helper: the fork handlers then leave everything alone)? */
int kw_p11_in_call(void);
int kw_p11_module_guards_sigpipe(kw_p11_module *mod);
#define KW_P11_CALL(mod, fn, ...)                                                                  \
    ((void)kw_p11_call_begin(mod),                                                                 \
     kw_p11_called((mod), #fn, kw_p11_module_fl(mod)->fn(__VA_ARGS__)))
/* Map a failed call to the thread's last error, with context; returns the kw_err. */
kw_err kw_p11_fail(CK_RV rv, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Retries, one table for all (kw_p11_retry.c): how many tries a kind of failure gets, and the
 * wait before try number attempt (none before the first). */
typedef enum {
    KW_P11_RETRY_TOKEN_INFO, /* C_GetTokenInfo failing with a general or device error */
    KW_P11_RETRY_MECH_LIST,  /* C_GetMechanismList failing on a present token */
    KW_P11_RETRY_FORK_INIT,  /* a forked child's C_Initialize that does not find every token */
    KW_P11_RETRY_PRIVATE_OP, /* a private-key operation after token loss or a stale handle */
    KW_P11_RETRY_STORE_LIST, /* an OSSL_STORE listing cut short by token loss */
    KW_P11_RETRY_N
} kw_p11_retry_kind;
int kw_p11_retry_tries(kw_p11_retry_kind kind);
void kw_p11_retry_wait(kw_p11_retry_kind kind, int attempt);

kw_err kw_p11_rv_to_err(CK_RV rv);
const char *kw_p11_rv_name(CK_RV rv);
/* Does this CK_RV mean the token or session went away? */
int kw_p11_rv_is_gone(CK_RV rv);

/* ---- URI helpers ---- */
/* Parse a pkcs11: URI; on error sets KW_ERR_URI naming the problem. */
kw_err kw_uri_parse(const char *s, P11KitUri **out);
/* Object template from a URI: class (if given), id, label. Attributes point into the URI. */
CK_ULONG kw_uri_object_template(P11KitUri *uri, CK_ATTRIBUTE *tmpl, CK_ULONG max);
/* Fill a pin context's URI fields. */
void kw_uri_pin(P11KitUri *uri, kw_pin_ctx *pin);

/* ---- PIN sources ---- */
/* Read a PIN from a source "file:/path" or "/path". Refuses files readable by group/others or
 * not owned by the caller (or root). Result in secure memory: kw_secure_strfree it. */
kw_err kw_pin_from_source(const char *source, char **pin);
/* Resolve a PIN from the context (value, sources, prompt). */
kw_err kw_pin_resolve(const kw_pin_ctx *ctx, const char *token_label, char **pin);

/* Token label as a C string without the padding. */
void kw_p11_label(const CK_UTF8CHAR *padded, size_t n, char *out, size_t cap);

#endif
