/* SPDX-License-Identifier: Apache-2.0 */
/* Internal interfaces of the keyward provider. */
#ifndef KWP_H
#define KWP_H

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "kw_err.h"
#include "kw_log.h"
#include "kw_p11.h"

/* Helper crypto (hashing, public-key operations, AlgorithmIdentifiers, DigestInfo) is fetched
 * from the application's library context, with its default properties (fips=yes included), by
 * a query that excludes keyward's own algorithms: it can never recurse into keyward. */
#define KWP_HELPER_PROPQ "provider!=keyward"

typedef struct kwp_ctx {
    const OSSL_CORE_HANDLE *core;
    OSSL_LIB_CTX *libctx;  /* from the core's dispatch, for the BIOs it hands us */
    OSSL_LIB_CTX *hlibctx; /* the application's, where keyward is loaded (NULL: the default
                            * context); not ours to free */
    char *module_path;
    char *pin_source;
    int load_early;
    pthread_mutex_t lock;
    kw_p11_module *mod; /* loaded on first use unless keyward-load = early */
    OSSL_FUNC_core_new_error_fn *core_new_error;
    OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
    OSSL_FUNC_core_vset_error_fn *core_vset_error;
    struct kwp_dec_pending *dec_pending; /* decoder.c: one key file's key between decoders */
} kwp_ctx;

/* Drop what the decoders left pending (provider teardown). */
void kwp_decoder_teardown(kwp_ctx *ctx);

/* ---- the provider context (provctx.c) ---- */
/* Settings from the provider's openssl.cnf section and the core's error functions. */
int kwp_ctx_read_config(kwp_ctx *ctx, const OSSL_DISPATCH *in);

/* Reason codes: one per kw_err class. */
#define KWP_R(e) ((int)(e))

/* Raise an OpenSSL error naming the caller's file, line and function. */
#define kwp_raise(ctx, reason, ...)                                                                \
    kwp_raise_at((ctx), __FILE__, __LINE__, __func__, (reason), __VA_ARGS__)
void kwp_raise_at(kwp_ctx *ctx, const char *file, int line, const char *func, int reason,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The reason alone (its text from the provider's reason strings): for errors raised on a hot
 * path and cleared by the caller, where formatting a message would cost more than the work. */
#define kwp_raise_reason(ctx, reason)                                                              \
    kwp_raise_reason_at((ctx), __FILE__, __LINE__, __func__, (reason))
void kwp_raise_reason_at(kwp_ctx *ctx, const char *file, int line, const char *func, int reason);
/* Raise the thread's last kw_err as an OpenSSL error, at the place it was set (else here). */
#define kwp_raise_last(ctx) kwp_raise_last_at((ctx), __FILE__, __LINE__, __func__)
void kwp_raise_last_at(kwp_ctx *ctx, const char *file, int line, const char *func);
/* The loaded module, loading it on first use. NULL with an error raised on failure. */
kw_p11_module *kwp_module(kwp_ctx *ctx);

/* ---- key objects (key.c) ---- */
#define KWP_KEY_MAGIC 0x6b77704bU

typedef struct kwp_key {
    unsigned magic;
    atomic_int refs;
    kwp_ctx *pctx;
    CK_KEY_TYPE type; /* CKK_RSA, CKK_EC, CKK_EC_EDWARDS */
    const char *alg;  /* OpenSSL's name: RSA, EC, ED25519, ED448 */
    int has_private;  /* a token private key object backs it */
    EVP_PKEY *pub;    /* public half, in the helper libctx; may be NULL only while empty */
    int bits;

    /* where the private object lives; re-found after fork or token loss */
    char *uri;       /* canonical URI for display and key files (no PIN) */
    P11KitUri *puri; /* parsed, for re-finding the token */
    kw_p11_token *tok;
    CK_OBJECT_HANDLE handle;
    unsigned gen;          /* kw_p11_token_gen when handle was found; 0: find it again */
    CK_TOKEN_INFO tokinfo; /* identity of the token: label + serial */
    unsigned char *id;
    CK_ULONG idlen;
    char *label;
    CK_BBOOL always_auth;
    CK_MECHANISM_TYPE *allowed; /* the private object's CKA_ALLOWED_MECHANISMS; NULL: any */
    CK_ULONG nallowed;
    /* OAEP parameter sets (kwp_oaep_slot) the token refused at C_DecryptInit for this key:
     * those are decrypted raw and decoded here, without trying the token's OAEP again. */
    _Atomic unsigned long long oaep_raw;
    _Atomic unsigned long long oaep_ok; /* parameter sets the token decrypted a probe with */
    int ambiguous;  /* listed by a URI that matched more private keys than this one */
    kw_pin_ctx pin; /* sources only; strings owned below */
    char *pin_value, *pin_source;
    pthread_mutex_t lock;
} kwp_key;

/* What the store and decoder hand to KEYMGMT load. Its size differs from a pointer so that a
 * default-provider keymgmt, offered it by mistake, refuses it instead of misreading it. */
typedef struct {
    unsigned magic;
    kwp_key *key;
} kwp_keyref;

kwp_key *kwp_key_new(kwp_ctx *ctx, CK_KEY_TYPE type, const char *alg);
kwp_key *kwp_key_ref(kwp_key *k);
void kwp_key_free(kwp_key *k);
/* A token key from a private or public object found on tok through session s. */
kwp_key *kwp_key_from_object(kwp_ctx *ctx, kw_p11_token *tok, CK_SESSION_HANDLE s,
                             CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls, const kw_pin_ctx *pin);
/* key_pub.c: the key's public half (k->pub), allowed mechanisms and RSA-PSS typing; 0 with a
 * kw_err set when the token holds no public half for it. */
int kwp_key_load_public(kwp_ctx *ctx, kwp_key *k, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                        CK_OBJECT_CLASS cls);
/* Open the first private key (or public key when want_private is 0) a URI names. */
kwp_key *kwp_key_open_uri(kwp_ctx *ctx, const char *uri, int want_private, kw_pin_prompt_fn prompt,
                          void *prompt_arg);
/* Build the canonical URI of a key from token info and id/label. */
char *kwp_key_make_uri(const CK_TOKEN_INFO *ti, const unsigned char *id, CK_ULONG idlen,
                       const char *label, CK_OBJECT_CLASS cls);
/* key_op.c: run a private-key operation: init (Sign or Decrypt), then one-shot. Handles
 * re-finding the object, login, relogin on CKR_USER_NOT_LOGGED_IN and retries after token loss. */
typedef enum { KWP_OP_SIGN, KWP_OP_DECRYPT, KWP_OP_DERIVE } kwp_op;
/* Can this process use the key's module (after fork it may not: a module that kept its
 * parent's state is refused)? Raises the reason when not. Public-only keys are always ready. */
int kwp_key_ready(kwp_key *k);
int kwp_key_private_op(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                       size_t inlen, unsigned char *out, size_t *outlen);
/* The same, telling the caller which call failed with what (rv CKR_GENERAL_ERROR and fn "" when
 * it failed before reaching the token), for decisions that must not depend on the input. */
typedef struct {
    CK_RV rv;
    const char *fn;
} kwp_op_status;
int kwp_key_private_op_st(kwp_key *k, kwp_op op, CK_MECHANISM *mech, const unsigned char *in,
                          size_t inlen, unsigned char *out, size_t *outlen, kwp_op_status *st);
/* Does the private object's CKA_ALLOWED_MECHANISMS allow m (or list none)? */
int kwp_key_allows(const kwp_key *k, CK_MECHANISM_TYPE m);
/* Maximum output size of a private operation (signature size). */
size_t kwp_key_max_size(const kwp_key *k);

/* ---- digests to PKCS#11 (mech.c) ---- */
/* The PKCS#11 digest and MGF1 of an OpenSSL digest: SHA-1/2 only (CK_UNAVAILABLE_INFORMATION
 * and 0 otherwise); other digests are hashed on the host. */
CK_MECHANISM_TYPE kwp_md_mech(const EVP_MD *md);
CK_RSA_PKCS_MGF_TYPE kwp_md_mgf(const EVP_MD *md);
const char *kwp_mech_name(CK_MECHANISM_TYPE m);
/* Fetch a digest (any fixed-size one OpenSSL has) into *slot; raises an error naming it if not. */
int kwp_md_fetch(kwp_ctx *ctx, EVP_MD **slot, const char *name);

/* Operation names only keyward implements, which its key managers give for their keys
 * (OSSL_FUNC_keymgmt_query_operation_name). OpenSSL 3.0 fetches the operation a key names with
 * no provider preference: under the standard names ("ECDSA") it first picks the default
 * provider's, tries to export the token key there, is refused and only then takes keyward's,
 * an error raised and cleared at every EVP_DigestSignInit, i.e. every TLS handshake. The
 * standard names stay registered for explicit fetches. */
#define KWP_OP_RSA     "KEYWARD-RSA"
#define KWP_OP_ECDSA   "KEYWARD-ECDSA"
#define KWP_OP_ECDH    "KEYWARD-ECDH"
#define KWP_OP_ED25519 "KEYWARD-ED25519"
#define KWP_OP_ED448   "KEYWARD-ED448"

/* ---- ecdsa_der.c: a token's r || s as the DER ECDSA-Sig-Value; 0 when it does not fit ---- */
#define KWP_ECDSA_MAX_HALF 66 /* P-521 */
int kwp_ecdsa_sig_der(const unsigned char *rs, size_t rslen, unsigned char *sig, size_t *siglen,
                      size_t sigsize);

/* ---- key file (keyfile.c): PEM "KEYWARD KEY URI" and pkcs11-provider's form ---- */
int kwp_keyfile_der_encode(const char *uri, unsigned char **der, int *derlen);
/* Parse a DER body of either format; returns a malloc'd URI or NULL. */
char *kwp_keyfile_der_decode(const unsigned char *der, long len);

/* ---- dispatch tables ---- */
extern const OSSL_DISPATCH kwp_store_functions[];
extern const OSSL_DISPATCH kwp_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ec_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_rsapss_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_decoder_uri_rsapss_functions[];
extern const OSSL_DISPATCH kwp_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ed448_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_eddsa_signature_functions[];
extern const OSSL_DISPATCH kwp_decoder_uri_ed25519_functions[];
extern const OSSL_DISPATCH kwp_decoder_uri_ed448_functions[];
extern const OSSL_DISPATCH kwp_rsa_signature_functions[];
extern const OSSL_DISPATCH kwp_ecdsa_signature_functions[];
extern const OSSL_DISPATCH kwp_rsa_asym_cipher_functions[];
extern const OSSL_DISPATCH kwp_ecdh_keyexch_functions[];
extern const OSSL_DISPATCH kwp_encoder_uri_pem_functions[];
extern const OSSL_DISPATCH kwp_encoder_uri_der_functions[];
extern const OSSL_DISPATCH kwp_encoder_text_functions[];
extern const OSSL_DISPATCH kwp_decoder_pem_functions[];
extern const OSSL_DISPATCH kwp_decoder_uri_functions[];
extern const OSSL_DISPATCH kwp_decoder_uri_ec_functions[];

#endif
