/* SPDX-License-Identifier: Apache-2.0 */
/* PIN sources: files must be private to the user, one line, absolute; the order of sources. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kw_log.h"
#include "kw_p11.h"
#include "kw_secmem.h"

static char dir[] = "/tmp/kw-pin-XXXXXX";

static const char *pin_file(const char *name, const char *content, mode_t mode)
{
    static char path[256];
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void expect_err(const char *source, kw_err want, const char *words)
{
    char *pin = (char *)1;
    const char *msg;
    assert_int_equal(kw_pin_from_source(source, &pin), want);
    assert_null(pin);
    kw_err_last(&msg);
    assert_non_null(strstr(msg, words));
}

static void test_pin_file_ok(void **state)
{
    char src[300], *pin = NULL;
    snprintf(src, sizeof(src), "file:%s", pin_file("ok", "1234\n", 0600));
    assert_int_equal(kw_pin_from_source(src, &pin), KW_OK);
    assert_string_equal(pin, "1234"); /* trailing newline dropped */
    kw_secure_strfree(pin);
    /* A bare absolute path and a read-only file work too. */
    assert_int_equal(kw_pin_from_source(pin_file("ro", "abc", 0400), &pin), KW_OK);
    assert_string_equal(pin, "abc");
    kw_secure_strfree(pin);
}

static void test_pin_file_refused(void **state)
{
    char src[300];
    snprintf(src, sizeof(src), "file:%s", pin_file("open", "1234", 0644));
    expect_err(src, KW_ERR_PIN_SOURCE, "accessible by group or others");
    snprintf(src, sizeof(src), "file:%s", pin_file("grp", "1234", 0640));
    expect_err(src, KW_ERR_PIN_SOURCE, "chmod 600");
    snprintf(src, sizeof(src), "file:%s/missing", dir);
    expect_err(src, KW_ERR_PIN_SOURCE, "cannot be opened");
    snprintf(src, sizeof(src), "file:%s", pin_file("two", "1234\n5678\n", 0600));
    expect_err(src, KW_ERR_PIN_SOURCE, "more than one line");
    snprintf(src, sizeof(src), "file:%s", pin_file("empty", "\n", 0600));
    expect_err(src, KW_ERR_PIN_SOURCE, "empty");
    expect_err("file:relative/pin", KW_ERR_PIN_SOURCE, "absolute");
    expect_err("env:PIN", KW_ERR_PIN_SOURCE, "not supported");
    snprintf(src, sizeof(src), "file:%s", dir);
    expect_err(src, KW_ERR_PIN_SOURCE, "not a regular file");
}

static int prompt_calls;
static int prompt(void *arg, const char *label, char *buf, size_t cap)
{
    prompt_calls++;
    assert_string_equal(label, "tok");
    snprintf(buf, cap, "%s", (const char *)arg);
    return 1;
}

static void test_pin_order(void **state)
{
    char src[300], *pin;
    kw_pin_ctx c = {0};

    snprintf(src, sizeof(src), "file:%s", pin_file("conf", "fromconf", 0600));
    c.conf_pin_source = src;
    c.prompt = prompt;
    c.prompt_arg = "typed";
    assert_int_equal(kw_pin_resolve(&c, "tok", &pin), KW_OK);
    assert_string_equal(pin, "fromconf");
    kw_secure_strfree(pin);
    c.uri_pin_value = "fromuri";
    assert_int_equal(kw_pin_resolve(&c, "tok", &pin), KW_OK);
    assert_string_equal(pin, "fromuri");
    kw_secure_strfree(pin);
    c.uri_pin_value = NULL;
    c.conf_pin_source = NULL;
    prompt_calls = 0;
    assert_int_equal(kw_pin_resolve(&c, "tok", &pin), KW_OK);
    assert_string_equal(pin, "typed");
    assert_int_equal(prompt_calls, 1);
    kw_secure_strfree(pin);
    c.prompt = NULL;
    assert_int_equal(kw_pin_resolve(&c, "tok", &pin), KW_ERR_PIN_REQUIRED);
}

/* A FIFO as PIN file was opened before the type check: open() waited for a writer forever
 * (issue 17). The alarm turns a hang into a failure. */
static void test_pin_fifo_refused(void **state)
{
    char path[300], src[310];
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(src, sizeof(src), "file:%s", path);
    signal(SIGALRM, SIG_DFL);
    alarm(5);
    expect_err(src, KW_ERR_PIN_SOURCE, "not a regular file");
    alarm(0);
    unlink(path);
}

/* The masking ran only to the first , ) or ': "pin-value=12,34SECRET" became "**,34SECRET". */
static void test_redact_to_end_of_value(void **state)
{
    char m1[] = "pkcs11:token=t;object=k?pin-value=12,34SECRET";
    char m2[] = "cannot use 'pkcs11:object=k?pin-value=a)b'c&module-name=x' (token absent)";
    char m3[] = "pkcs11:object=k?PIN-VALUE=9(9)9 rest";
    kw_redact_pins(m1);
    assert_null(strstr(m1, "34SECRET"));
    assert_non_null(strstr(m1, "pin-value=***"));
    kw_redact_pins(m2);
    assert_null(strstr(m2, "b'c"));
    assert_non_null(strstr(m2, "pin-value=***&module-name=x"));
    kw_redact_pins(m3);
    assert_string_equal(m3, "pkcs11:object=k?PIN-VALUE=*** rest");
}

static void test_secmem(void **state)
{
    unsigned char a[16], b[16];
    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_int_equal(kw_memcmp_ct(a, b, sizeof(a)), 0);
    b[15] ^= 1;
    assert_int_not_equal(kw_memcmp_ct(a, b, sizeof(a)), 0);
    kw_wipe(a, sizeof(a));
    for (size_t i = 0; i < sizeof(a); i++)
        assert_int_equal(a[i], 0);
    /* Secrets never share a page: munlock/MADV_DODUMP at one's free would expose the other. */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    char *s1 = kw_secure_alloc(32), *s2 = kw_secure_alloc(32);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_true((uintptr_t)s1 / pg != (uintptr_t)s2 / pg);
    assert_true((uintptr_t)(s1 + 31) / pg != (uintptr_t)s2 / pg);
    kw_secure_free(s1, 1); /* the size is the buffer's own, whatever the caller says */
    kw_secure_free(s2, 32);
}

/* fd:N (keyward's one prompt handed to its openssl children): a sealed memfd only, read from
 * its start every time; an ordinary open file of the process is refused. */
static void test_pin_fd(void **state)
{
    char src[32], *pin = NULL;
    int m = memfd_create("pin", MFD_ALLOW_SEALING);
    assert_true(m >= 0);
    assert_int_equal(write(m, "4321\n", 5), 5);
    assert_int_equal(fchmod(m, 0600), 0);
    snprintf(src, sizeof(src), "fd:%d", m);
    expect_err(src, KW_ERR_PIN_SOURCE, "sealed"); /* not sealed yet */
    assert_int_equal(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kw_pin_from_source(src, &pin), KW_OK);
        assert_string_equal(pin, "4321");
        kw_secure_strfree(pin);
    }
    assert_int_equal(fchmod(m, 0640), 0);
    expect_err(src, KW_ERR_PIN_SOURCE, "not private");
    close(m);
    expect_err(src, KW_ERR_PIN_SOURCE, "memfd");
    int f = open(pin_file("plain", "1234", 0600), O_RDONLY);
    snprintf(src, sizeof(src), "fd:%d", f);
    expect_err(src, KW_ERR_PIN_SOURCE, "sealed");
    close(f);
    expect_err("fd:3x", KW_ERR_PIN_SOURCE, "fd:NUMBER");
}

static int setup(void **state)
{
    return mkdtemp(dir) == NULL;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) != 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_file_ok), cmocka_unit_test(test_pin_file_refused),
        cmocka_unit_test(test_pin_order),   cmocka_unit_test(test_pin_fifo_refused),
        cmocka_unit_test(test_pin_fd),      cmocka_unit_test(test_redact_to_end_of_value),
        cmocka_unit_test(test_secmem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
