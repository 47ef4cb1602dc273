/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the PKCS#11 call layer against a fake module: URI to token and object
 * matching, login and PIN handling (no retry on a wrong PIN), the bounded session pool,
 * a token that goes away and comes back, errors a module leaves on the OpenSSL queue, and
 * CK_RV mapping. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "kw_p11.h"
#include "kw_secmem.h"

static kw_p11_module *mod;

static int login_calls(void)
{
    int (*fn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "fake_p11_login_calls");
    void *h = dlopen(FAKE_MODULE_PATH, RTLD_NOW | RTLD_NOLOAD);
    if (h != NULL)
        fn = (int (*)(void))dlsym(h, "fake_p11_login_calls");
    return fn ? fn() : -1;
}

static size_t tokens_for(const char *s, kw_p11_token ***toks)
{
    P11KitUri *uri;
    size_t n = 99;
    assert_int_equal(kw_uri_parse(s, &uri), KW_OK);
    assert_int_equal(kw_p11_find_tokens(mod, uri, toks, &n), KW_OK);
    p11_kit_uri_free(uri);
    return n;
}

static void test_find_tokens(void **state)
{
    kw_p11_token **t;
    char label[33];

    assert_int_equal(tokens_for("pkcs11:", &t), 2);
    free(t);
    assert_int_equal(tokens_for("pkcs11:token=second", &t), 1);
    kw_p11_label(t[0]->info.label, sizeof(t[0]->info.label), label, sizeof(label));
    assert_string_equal(label, "second");
    free(t);
    assert_int_equal(tokens_for("pkcs11:serial=0001", &t), 1);
    kw_p11_label(t[0]->info.label, sizeof(t[0]->info.label), label, sizeof(label));
    assert_string_equal(label, "first");
    free(t);
    assert_int_equal(tokens_for("pkcs11:token=nope", &t), 0);
    free(t);
    assert_int_equal(tokens_for("pkcs11:slot-description=slot%20two", &t), 1);
    free(t);
    /* A module attribute that does not match hides every token. */
    assert_int_equal(tokens_for("pkcs11:library-manufacturer=someone%20else", &t), 0);
    free(t);
}

static void test_uri_errors(void **state)
{
    P11KitUri *uri;
    const char *msg;

    assert_int_equal(kw_uri_parse("pkcs11:token=%zz", &uri), KW_ERR_URI);
    assert_null(uri);
    kw_err_last(&msg);
    assert_non_null(strstr(msg, "malformed pkcs11 URI"));
    assert_int_equal(kw_uri_parse("file:/etc/passwd", &uri), KW_ERR_URI);
    assert_int_equal(kw_uri_parse(NULL, &uri), KW_ERR_URI);
    /* A pin-value must never be echoed back in an error. */
    assert_int_equal(kw_uri_parse("pkcs11:pin-value=s3cret;token=%zz", &uri), KW_ERR_URI);
    kw_err_last(&msg);
    assert_null(strstr(msg, "s3cret"));
}

static void test_object_template(void **state)
{
    P11KitUri *uri;
    CK_ATTRIBUTE t[3];
    kw_pin_ctx pin = {0};

    assert_int_equal(kw_uri_parse("pkcs11:token=first;object=alpha;type=private;id=%01;"
                                  "pin-source=file:/x",
                                  &uri),
                     KW_OK);
    assert_int_equal(kw_uri_object_template(uri, t, 3), 3);
    assert_int_equal(t[0].type, CKA_CLASS);
    assert_int_equal(*(CK_OBJECT_CLASS *)t[0].pValue, CKO_PRIVATE_KEY);
    assert_int_equal(t[1].type, CKA_ID);
    assert_int_equal(t[1].ulValueLen, 1);
    assert_int_equal(t[2].type, CKA_LABEL);
    assert_memory_equal(t[2].pValue, "alpha", 5);
    kw_uri_pin(uri, &pin);
    assert_string_equal(pin.uri_pin_source, "file:/x");
    assert_null(pin.uri_pin_value);
    p11_kit_uri_free(uri);
}

static CK_ULONG find_label(kw_p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                           const char *label)
{
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    assert_int_equal(kw_p11_find(tok, s, t, 2, h, 4, &n), KW_OK);
    return n;
}

static void test_login_and_objects(void **state)
{
    kw_p11_token **t;
    CK_SESSION_HANDLE s;
    kw_pin_ctx bad = {.uri_pin_value = "0000"};
    kw_pin_ctx none = {0};
    kw_pin_ctx good = {.uri_pin_value = "4321"};
    const char *msg;
    int before;

    assert_int_equal(tokens_for("pkcs11:token=first", &t), 1);
    /* Public objects without login; the private key is invisible. */
    assert_int_equal(kw_p11_session_get(t[0], 0, NULL, &s), KW_OK);
    assert_int_equal(find_label(t[0], s, CKO_PUBLIC_KEY, "alpha"), 1);
    assert_int_equal(find_label(t[0], s, CKO_PRIVATE_KEY, "alpha"), 0);
    kw_p11_session_put(t[0], s, CKR_OK);

    /* No PIN anywhere: a clear error, and the token is not even asked. */
    before = login_calls();
    assert_int_equal(kw_p11_session_get(t[0], 1, &none, &s), KW_ERR_PIN_REQUIRED);
    assert_int_equal(login_calls(), before);

    /* Wrong PIN: exactly one C_Login, no retry loop that could lock the token. */
    before = login_calls();
    assert_int_equal(kw_p11_session_get(t[0], 1, &bad, &s), KW_ERR_PIN_INCORRECT);
    assert_int_equal(login_calls(), before + 1);
    kw_err_last(&msg);
    assert_non_null(strstr(msg, "PIN incorrect"));
    assert_null(strstr(msg, "0000"));

    assert_int_equal(kw_p11_session_get(t[0], 1, &good, &s), KW_OK);
    assert_int_equal(find_label(t[0], s, CKO_PRIVATE_KEY, "alpha"), 1);
    kw_p11_session_put(t[0], s, CKR_OK);
    /* Logged in once per token: the next session needs no PIN. */
    before = login_calls();
    assert_int_equal(kw_p11_session_get(t[0], 1, &none, &s), KW_OK);
    assert_int_equal(login_calls(), before);
    kw_p11_session_put(t[0], s, CKR_OK);
    free(t);
}

struct waiter {
    kw_p11_token *tok;
    CK_SESSION_HANDLE s;
    int done;
};

static void *take_session(void *arg)
{
    struct waiter *w = arg;
    if (kw_p11_session_get(w->tok, 0, NULL, &w->s) == KW_OK)
        __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_session_pool_waits(void **state)
{
    kw_p11_token **t;
    CK_SESSION_HANDLE a, b;
    struct waiter w = {0};
    pthread_t th;

    assert_int_equal(tokens_for("pkcs11:token=second", &t), 1);
    w.tok = t[0];
    /* The fake token allows two sessions in all; the pool must wait, not fail. */
    assert_int_equal(kw_p11_session_get(t[0], 0, NULL, &a), KW_OK);
    assert_int_equal(kw_p11_session_get(t[0], 0, NULL, &b), KW_OK);
    assert_int_equal(pthread_create(&th, NULL, take_session, &w), 0);
    usleep(100000);
    assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST), 0);
    kw_p11_session_put(t[0], a, CKR_OK);
    pthread_join(th, NULL);
    assert_int_equal(w.done, 1);
    assert_int_equal(w.s, a);
    kw_p11_session_put(t[0], w.s, CKR_OK);
    kw_p11_session_put(t[0], b, CKR_OK);
    free(t);
}

static void test_token_gone_and_back(void **state)
{
    kw_p11_token **t;
    kw_p11_token *first;
    CK_SESSION_HANDLE s;

    assert_int_equal(tokens_for("pkcs11:token=first", &t), 1);
    first = t[0];
    free(t);
    setenv("FAKE_P11_GONE", "1", 1);
    assert_int_equal(tokens_for("pkcs11:token=first", &t), 0);
    free(t);
    assert_int_equal(kw_p11_session_get(first, 0, NULL, &s), KW_ERR_TOKEN_GONE);
    unsetenv("FAKE_P11_GONE");
    assert_int_equal(tokens_for("pkcs11:token=first", &t), 1);
    assert_ptr_equal(t[0], first); /* the same token object, found again */
    assert_int_equal(kw_p11_session_get(t[0], 0, NULL, &s), KW_OK);
    kw_p11_session_put(t[0], s, CKR_OK);
    free(t);
}

/* Errors the module pushes on this thread's OpenSSL queue are dropped after each call; those
 * the application had before the call stay, in order. */
static void test_module_openssl_errors(void **state)
{
    kw_p11_token **t;

    ERR_clear_error();
    setenv("FAKE_P11_OSSL_ERRORS", "1", 1);
    assert_int_equal(tokens_for("pkcs11:token=first", &t), 1);
    free(t);
    assert_int_equal(ERR_peek_error(), 0);

    ERR_raise_data(ERR_LIB_USER, 7, "the application's own");
    assert_int_equal(tokens_for("pkcs11:token=second", &t), 1);
    free(t);
    unsetenv("FAKE_P11_OSSL_ERRORS");
    unsigned long e = ERR_get_error();
    assert_int_equal(ERR_GET_LIB(e), ERR_LIB_USER);
    assert_int_equal(ERR_GET_REASON(e), 7);
    assert_int_equal(ERR_get_error(), 0);
}

static void test_rv_mapping(void **state)
{
    static const struct {
        CK_RV rv;
        kw_err e;
    } map[] = {
        {CKR_OK, KW_OK},
        {CKR_PIN_INCORRECT, KW_ERR_PIN_INCORRECT},
        {CKR_PIN_LOCKED, KW_ERR_PIN_LOCKED},
        {CKR_PIN_EXPIRED, KW_ERR_PIN_LOCKED},
        {CKR_USER_NOT_LOGGED_IN, KW_ERR_PIN_REQUIRED},
        {CKR_MECHANISM_INVALID, KW_ERR_MECHANISM},
        {CKR_KEY_FUNCTION_NOT_PERMITTED, KW_ERR_KEY_USAGE},
        {CKR_DEVICE_REMOVED, KW_ERR_TOKEN_GONE},
        {CKR_TOKEN_NOT_PRESENT, KW_ERR_TOKEN_GONE},
        {CKR_SESSION_HANDLE_INVALID, KW_ERR_TOKEN_GONE},
        {CKR_HOST_MEMORY, KW_ERR_MEMORY},
        {CKR_GENERAL_ERROR, KW_ERR_P11},
    };
    const char *msg;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_int_equal(kw_p11_rv_to_err(map[i].rv), map[i].e);
    assert_int_equal(kw_p11_fail(CKR_DEVICE_REMOVED, "C_Sign", "signing with %s", "k"),
                     KW_ERR_TOKEN_GONE);
    kw_err_last(&msg);
    assert_string_equal(msg, "signing with k: C_Sign failed with CKR_DEVICE_REMOVED");
    assert_string_equal(kw_err_name(KW_ERR_TOKEN_NOT_FOUND), "token not found");
}

static int setup(void **state)
{
    mod = kw_p11_module_get(FAKE_MODULE_PATH);
    return mod == NULL;
}

static int teardown(void **state)
{
    kw_p11_module_put(mod);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_tokens),           cmocka_unit_test(test_uri_errors),
        cmocka_unit_test(test_object_template),       cmocka_unit_test(test_login_and_objects),
        cmocka_unit_test(test_session_pool_waits),    cmocka_unit_test(test_token_gone_and_back),
        cmocka_unit_test(test_module_openssl_errors), cmocka_unit_test(test_rv_mapping),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
