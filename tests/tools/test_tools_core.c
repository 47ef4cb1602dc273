/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the keyward command's core: validation, DN/SAN conversion, dates, config and
 * openssl.cnf generation, index parsing, state transactions and recovery, audit lines,
 * --dry-run quoting. No token and no openssl process needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_names(void **state)
{
    const char *why;
    assert_int_equal(kwt_valid_name("alice", &why), 0);
    assert_int_equal(kwt_valid_name("web.example.com", &why), 0);
    assert_int_equal(kwt_valid_name("a_b-c@d+e", &why), 0);
    assert_int_equal(kwt_valid_name("", &why), -1);
    assert_int_equal(kwt_valid_name("../x", &why), -1);
    assert_int_equal(kwt_valid_name("a/b", &why), -1);
    assert_int_equal(kwt_valid_name("a b", &why), -1);
    assert_int_equal(kwt_valid_name("-rf", &why), -1);
    assert_int_equal(kwt_valid_name("a\tb", &why), -1);
    assert_int_equal(kwt_valid_name("a;b", &why), -1);
    assert_int_equal(kwt_valid_name("$(id)", &why), -1);
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(kwt_valid_name(big, &why), -1);
}

static void test_device_ids(void **state)
{
    const char *why;
    assert_int_equal(kwt_valid_device_id("SN-0007", &why), 0);
    assert_int_equal(kwt_valid_device_id("abc123", &why), 0);
    assert_int_equal(kwt_valid_device_id("-x", &why), -1);
    assert_int_equal(kwt_valid_device_id("x-", &why), -1);
    assert_int_equal(kwt_valid_device_id("a.b", &why), -1);
    assert_int_equal(kwt_valid_device_id("a_b", &why), -1);
    assert_int_equal(kwt_valid_device_id("", &why), -1);
    assert_int_equal(
        kwt_valid_device_id("0123456789012345678901234567890123456789012345678901234567", &why),
        -1);
}

static void test_days_keytypes_reasons(void **state)
{
    const char *why, *alg;
    int d;
    char param[64];
    assert_int_equal(kwt_valid_days("365", &d, &why), 0);
    assert_int_equal(d, 365);
    assert_int_equal(kwt_valid_days("0", &d, &why), -1);
    assert_int_equal(kwt_valid_days("-3", &d, &why), -1);
    assert_int_equal(kwt_valid_days("10x", &d, &why), -1);
    assert_int_equal(kwt_valid_days("", &d, &why), -1);
    assert_int_equal(kwt_valid_days("99999", &d, &why), -1);
    assert_int_equal(kwt_parse_key_type("rsa:3072", &alg, param, sizeof(param), &why), 0);
    assert_string_equal(alg, "RSA");
    assert_string_equal(param, "rsa_keygen_bits:3072");
    assert_int_equal(kwt_parse_key_type("ec:P-521", &alg, param, sizeof(param), &why), 0);
    assert_string_equal(param, "ec_paramgen_curve:P-521");
    assert_int_equal(kwt_parse_key_type("rsa:1024", &alg, param, sizeof(param), &why), -1);
    assert_int_equal(kwt_parse_key_type("ec:secp256k1", &alg, param, sizeof(param), &why), -1);
    assert_int_equal(kwt_parse_key_type("dsa", &alg, param, sizeof(param), &why), -1);
    assert_string_equal(kwt_reason_canon("keycompromise"), "keyCompromise");
    assert_string_equal(kwt_reason_canon("cACompromise"), "CACompromise");
    assert_string_equal(kwt_reason_canon("removeFromCRL"), "removeFromCRL");
    assert_null(kwt_reason_canon("because"));
    assert_null(kwt_reason_canon(""));
}

static void test_dn(void **state)
{
    const char *why;
    /* RFC 4514 (most specific first) to openssl's -subj order (least specific first) */
    char *s = kwt_dn_to_subj("CN=alice,O=Example,C=GB", &why);
    assert_string_equal(s, "/C=GB/O=Example/CN=alice");
    free(s);
    s = kwt_dn_to_subj("/CN=a\\/b/O=x", &why);
    assert_string_equal(s, "/CN=a\\/b/O=x");
    free(s);
    s = kwt_dn_to_subj("CN=a\\,b = \"q\",OU=x+y", &why);
    assert_string_equal(s, "/OU=x\\+y/CN=a,b = \"q\"");
    free(s);
    s = kwt_dn_to_subj("CN=ünïcødé", &why);
    assert_string_equal(s, "/CN=ünïcødé");
    free(s);
    assert_null(kwt_dn_to_subj("CN=a\nb", &why));
    assert_null(kwt_dn_to_subj("CN=a\x01", &why));
    assert_null(kwt_dn_to_subj("CN=\xff\xfe", &why));
    assert_null(kwt_dn_to_subj("CN=", &why));
    assert_null(kwt_dn_to_subj("", &why));
    assert_null(kwt_dn_to_subj("alice", &why));
    assert_null(kwt_dn_to_subj("NOPE=x", &why));
    assert_null(kwt_dn_to_subj("CN=x\\", &why));
}

static void test_san(void **state)
{
    const char *why;
    char *s =
        kwt_san_to_conf("DNS:a.example.com, IP:10.0.0.1,email:x@y.org,URI:spiffe://t/w", &why);
    assert_string_equal(s, "DNS:a.example.com, IP:10.0.0.1, email:x@y.org, URI:spiffe://t/w");
    free(s);
    s = kwt_san_to_conf("host.example,::1,*.wild.example", &why);
    assert_string_equal(s, "DNS:host.example, IP:::1, DNS:*.wild.example");
    free(s);
    assert_null(kwt_san_to_conf("DNS:bad_host", &why));
    assert_null(kwt_san_to_conf("DNS:-lead.example", &why));
    assert_null(kwt_san_to_conf("IP:1.2.3.400", &why));
    assert_null(kwt_san_to_conf("email:nobody", &why));
    assert_null(kwt_san_to_conf("URI:noscheme", &why));
    assert_null(kwt_san_to_conf("URI:x:$(id)", &why));
    assert_null(kwt_san_to_conf("DNS:a.com\nDNS:b.com", &why));
    assert_null(kwt_san_to_conf("DNS:a.*.com", &why));
    assert_null(kwt_san_to_conf("", &why));
    assert_null(kwt_san_to_conf(",,", &why));
}

static void test_dates(void **state)
{
    assert_int_equal(kwt_parse_date("1970-01-02"), 86400);
    assert_int_equal(kwt_parse_date("1970-01-01T01:00Z"), 3600);
    assert_int_equal(kwt_parse_date("19700101000010Z"), 10);
    assert_int_equal(kwt_parse_date("2024-02-29T12:00:00Z"), 1709208000);
    assert_true(kwt_parse_date("2023-02-29") < 0);
    assert_true(kwt_parse_date("2024-13-01") < 0);
    assert_true(kwt_parse_date("2024-01-01T25:00") < 0);
    assert_true(kwt_parse_date("yesterday") < 0);
    assert_true(kwt_parse_date("2024-01-01junk") < 0);
    assert_true(kwt_parse_date("now") > 1700000000);
    assert_int_equal(kwt_asn1_to_time("700101000010Z"), 10);
    assert_int_equal(kwt_asn1_to_time("19700101000010Z"), 10);
    assert_true(kwt_asn1_to_time("bad") < 0);
}

static void test_uris_and_conf_values(void **state)
{
    const char *why;
    assert_true(kwt_valid_uri("pkcs11:token=ca;object=k;pin-source=file:/p", &why));
    assert_false(kwt_valid_uri("pkcs11:token=ca;pin-value=1234", &why));
    assert_false(kwt_valid_uri("/etc/key.pem", &why));
    assert_false(kwt_valid_uri("pkcs11:token=a b", &why));
    assert_true(kwt_conf_safe("/usr/lib/softhsm/libsofthsm2.so"));
    assert_false(kwt_conf_safe("/x/$HOME"));
    assert_false(kwt_conf_safe("a#b"));
    assert_false(kwt_conf_safe("a\nb"));
}

static char *mktmp(void)
{
    char *t = kwt_tmpdir();
    assert_non_null(t);
    return t;
}

/* notify, notify_timeout and audit_sink survive a save (ca rotate rewrites keyward.conf); a
 * relative hook or a bad value is an error that names the key, not a silent default */
static void test_conf_notify_keys(void **state)
{
    (void)state;
    char *dir = mktmp();
    char *p = kwt_path(dir, "keyward.conf");
    kwt_conf c, d;
    kwt_conf_defaults(&c);
    assert_int_equal(c.notify_timeout, 10);
    c.notify = kwt_strdup("/usr/local/bin/hook with space");
    c.notify_timeout = 3;
    c.audit_syslog = true;
    assert_int_equal(kwt_conf_save(&c, p), 0);
    assert_int_equal(kwt_conf_load(&d, p), 0);
    assert_null(d.bad);
    assert_string_equal(d.notify, c.notify);
    assert_int_equal(d.notify_timeout, 3);
    assert_true(d.audit_syslog);
    kwt_conf_free(&d);
    static const char *const bad[][2] = {{"notify = hook.sh\n", "notify = hook.sh: "},
                                         {"notify_timeout = 0\n", "notify_timeout = 0: "},
                                         {"notify_timeout = 601\n", "notify_timeout = 601: "},
                                         {"notify_timeout = 5s\n", "notify_timeout = 5s: "},
                                         {"audit_sink = journald\n", "audit_sink = journald: "}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kwt_write_atomic(p, bad[i][0], strlen(bad[i][0]), 0600), 0);
        assert_int_equal(kwt_conf_load(&d, p), 0);
        assert_non_null(d.bad);
        assert_ptr_equal(strstr(d.bad, bad[i][1]), d.bad);
        kwt_conf_free(&d);
    }
    const char *empty = "notify = \naudit_sink = file\n";
    assert_int_equal(kwt_write_atomic(p, empty, strlen(empty), 0600), 0);
    assert_int_equal(kwt_conf_load(&d, p), 0);
    assert_null(d.bad);
    assert_null(d.notify);
    assert_false(d.audit_syslog);
    kwt_conf_free(&d);
    kwt_conf_free(&c);
    kwt_rm_rf(dir);
    free(dir);
    free(p);
}

static void test_conf_roundtrip_and_cnf(void **state)
{
    char *dir = mktmp();
    char *p = kwt_path(dir, "keyward.conf");
    kwt_conf c;
    kwt_conf_defaults(&c);
    c.ca_key = kwt_strdup("pkcs11:token=ca;object=k");
    c.module = kwt_strdup("/usr/lib/softhsm/libsofthsm2.so");
    c.pin_source = kwt_strdup("file:/etc/pin");
    free(c.policy_match);
    c.policy_match = kwt_strdup("O,OU");
    c.crl_url = kwt_strdup("http://crl.example/ca.crl");
    c.crl_days = 7;
    c.generation = 3;
    c.old_keys = kwt_strdup("1:pkcs11:token=ca;object=a 2:pkcs11:token=ca;object=b");
    assert_int_equal(kwt_conf_save(&c, p), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    kwt_conf d;
    assert_int_equal(kwt_conf_load(&d, p), 0);
    assert_string_equal(d.ca_key, c.ca_key);
    assert_string_equal(d.module, c.module);
    assert_string_equal(d.pin_source, c.pin_source);
    assert_string_equal(d.policy_match, "O,OU");
    assert_string_equal(d.old_keys, c.old_keys);
    assert_int_equal(d.crl_days, 7);
    assert_int_equal(d.generation, 3);
    assert_int_equal(d.default_days, 365);
    char *cnf = kwt_cnf_text(&d, "/ca", "/ca/state");
    assert_non_null(strstr(cnf, "openssl_conf = openssl_init"));
    assert_non_null(strstr(cnf, "keyward-module = /usr/lib/softhsm/libsofthsm2.so"));
    assert_non_null(strstr(cnf, "keyward-pin-source = file:/etc/pin"));
    assert_non_null(strstr(cnf, "database = $state/index.txt"));
    assert_non_null(strstr(cnf, "organizationName = match"));
    assert_non_null(strstr(cnf, "organizationalUnitName = match"));
    assert_non_null(strstr(cnf, "commonName = supplied"));
    assert_non_null(strstr(cnf, "countryName = optional"));
    assert_non_null(strstr(cnf, "[ext_subca]\nbasicConstraints = critical, CA:TRUE, pathlen:0"));
    assert_non_null(strstr(cnf, "crlDistributionPoints = URI:http://crl.example/ca.crl"));
    assert_non_null(strstr(cnf, "extendedKeyUsage = OCSPSigning"));
    assert_null(strstr(cnf, "pin-value"));
    free(cnf);
    assert_null(kwt_profile_text(&d, "admin"));
    kwt_conf_free(&c);
    kwt_conf_free(&d);
    kwt_rm_rf(dir);
    free(dir);
    free(p);
}

/* Every bad keyward.conf value, key or line is reported with its line, never defaulted. */
static void test_conf_strict(void **state)
{
    (void)state;
    char *dir = mktmp();
    char *p = kwt_path(dir, "keyward.conf");
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        int line;
        const char *msg; /* the start of c->bad */
    } bad[] = {
        {"default_days = 3x\n", 0, 1, "default_days = 3x: not a whole number (give the days"},
        {"# c\ndefault_days = -5\n", 0, 2, "default_days = -5: negative (give"},
        {"default_days = 99999999999\n", 0, 1, "default_days = 99999999999: out of range"},
        {"default_days = 99999999999999999999999\n", 0, 1, "default_days = 9999"},
        {"default_days = 0\n", 0, 1, "default_days = 0: out of range (give"},
        {"default_days = 36501\n", 0, 1, "default_days = 36501: out of range"},
        {"default_days = \n", 0, 1, "default_days = : empty"},
        {"default_days = +5\n", 0, 1, "default_days = +5: not a whole number"},
        {"default_days = 5 5\n", 0, 1, "default_days = 5 5: not a whole number"},
        {"crl_days = 3651\n", 0, 1, "crl_days = 3651: out of range (give the days until a CRL"},
        {"renew_due_days = 0x10\n", 0, 1, "renew_due_days = 0x10: not a whole number"},
        {"generation = 0\n", 0, 1, "generation = 0: out of range"},
        {"\n\ngeneration = 2.5\n", 0, 3, "generation = 2.5: not a whole number"},
        {"default_days = 30\ncrl_days = 7\ndefault_days = 60\n", 0, 3,
         "default_days is set again, first on line 1 (keep"},
        {"defualt_days = 30\n", 0, 1, "unknown key \"defualt_days\" (fix its spelling"},
        {"x = 1\n", 0, 1,
         "unknown key \"x\" (fix its spelling or remove the line; the keys are ca_key, module, "},
        {"= 30\n", 0, 1, "no key before '='"},
        {"ca_key = a\ndefault_days 30\n", 0, 2, "no '=' in \"default_days 30\""},
        {"default_days = 3\0"
         "0\n",
         18, 1, "NUL byte in the line"},
        {"ca_key = a\x01\n", 0, 1, "control character 0x01"},
        {"ca_key = a\rb\n", 0, 1, "control character 0x0d"},
        {"crl_days = 7\r\r\n", 0, 1, "control character 0x0d"},
        {"notify_timeout = 99999999999999999999\n", 0, 1, "notify_timeout = 9999"},
        {"notify_timeout = -1\n", 0, 1, "notify_timeout = -1: "},
    };
    kwt_conf d;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        assert_int_equal(kwt_write_atomic(p, bad[i].text, len, 0600), 0);
        assert_int_equal(kwt_conf_load(&d, p), 0);
        if (!d.bad || strncmp(d.bad, bad[i].msg, strlen(bad[i].msg)) != 0 ||
            d.bad_line != bad[i].line)
            fail_msg("case %zu: want line %d \"%s\", got line %d \"%s\"", i, bad[i].line,
                     bad[i].msg, d.bad_line, d.bad ? d.bad : "(nothing)");
        kwt_conf_free(&d);
    }
    /* a very long line is refused without echoing it; a long bad value is cut in the message */
    static const struct {
        const char *key, *fill, *msg;
        int n;
        size_t max;
    } longs[] = {
        {"ca_key = ", "x", "line of 20009 bytes, longer than 16384 (shorten it)", 20000, 200},
        {"default_days = ", "9", "...: out of range", 200, 300}};
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++) {
        kwt_buf b = {0};
        kwt_buf_add(&b, longs[i].key);
        for (int j = 0; j < longs[i].n; j++)
            kwt_buf_add(&b, longs[i].fill);
        kwt_buf_add(&b, "\n");
        assert_int_equal(kwt_write_atomic(p, b.s, b.len, 0600), 0);
        kwt_buf_free(&b);
        assert_int_equal(kwt_conf_load(&d, p), 0);
        assert_non_null(d.bad);
        assert_non_null(strstr(d.bad, longs[i].msg));
        assert_true(strlen(d.bad) < longs[i].max);
        kwt_conf_free(&d);
    }
    /* CRLF, blank lines, comments, spaces and the edges of each range are fine */
    const char *good = "# x\r\n\r\n  default_days = 36500\r\ncrl_days=1\r\n"
                       "\trenew_due_days =\t007 \r\ngeneration = 1000000\r\nca_key = a b\r\n";
    assert_int_equal(kwt_write_atomic(p, good, strlen(good), 0600), 0);
    assert_int_equal(kwt_conf_load(&d, p), 0);
    assert_null(d.bad);
    assert_int_equal(d.default_days, 36500);
    assert_int_equal(d.crl_days, 1);
    assert_int_equal(d.renew_due_days, 7);
    assert_int_equal(d.generation, 1000000);
    assert_string_equal(d.ca_key, "a b");
    kwt_conf_free(&d);
    /* what kwt_conf_save writes loads back without a complaint */
    kwt_conf c;
    kwt_conf_defaults(&c);
    assert_int_equal(kwt_conf_save(&c, p), 0);
    assert_int_equal(kwt_conf_load(&d, p), 0);
    assert_null(d.bad);
    kwt_conf_free(&d);
    kwt_conf_free(&c);
    kwt_rm_rf(dir);
    free(dir);
    free(p);
}

static void test_index(void **state)
{
    char *dir = mktmp();
    char *p = kwt_path(dir, "index.txt");
    const char *text = "V\t271122222940Z\t\t0A\talice\t/O=Example/CN=alice\n"
                       "R\t271122222940Z\t261122222940Z,keyCompromise\t0B\tbob\t/CN=bob\n"
                       "V\t271122222940Z\t\t0C\talice\t/CN=alice\n";
    assert_int_equal(kwt_write_atomic(p, text, strlen(text), 0600), 0);
    kwt_index ix;
    assert_int_equal(kwt_index_load(&ix, p), 0);
    assert_int_equal(ix.n, 3);
    assert_string_equal(kwt_index_find_name(&ix, "alice")->serial, "0C");
    assert_string_equal(kwt_index_find_serial(&ix, "b")->name, "bob");
    assert_string_equal(kwt_index_find_serial(&ix, "000b")->name, "bob");
    assert_null(kwt_index_find_serial(&ix, "FF"));
    assert_null(kwt_index_find_name(&ix, "carol"));
    char *p2 = kwt_path(dir, "index2.txt");
    assert_int_equal(kwt_index_save(&ix, p2), 0);
    char *back = kwt_read_file(p2, NULL);
    assert_string_equal(back, text);
    free(back);
    kwt_index_free(&ix);
    const char *bad = "V\tonly three\tfields\n";
    assert_int_equal(kwt_write_atomic(p, bad, strlen(bad), 0600), 0);
    assert_int_equal(kwt_index_load(&ix, p), -1);
    /* damaged rows: refused (the message names PATH:LINE, see tools-bad-input) */
    static const struct {
        const char *text;
        size_t len;
    } damaged[] = {
        {"V\t271122222940Z\t\t0A\talice\t/CN=alice\nV\t271122222940Z\t\t0B\tbob\n", 0},
        {"V\t271122222940Z\t\t0A\talice\t/CN=alice\textra\n", 0},
        {"V\t271122222940Z\t\t0A\talice\t/CN=alice", 0}, /* no newline: openssl ca drops it */
        {"V\t271122222940Z\t\t0A\ta\0ice\t/CN=alice\n", 37},
        {"X\t271122222940Z\t\t0A\talice\t/CN=alice\n", 0},
        {"V\t271122222940Z\t\t\talice\t/CN=alice\n", 0},
        {"\n", 0},
    };
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        size_t len = damaged[i].len ? damaged[i].len : strlen(damaged[i].text);
        assert_int_equal(kwt_write_atomic(p, damaged[i].text, len, 0600), 0);
        if (kwt_index_load(&ix, p) != -1 || errno != EINVAL)
            fail_msg("damaged index %zu was read", i);
    }
    /* a tab inside a field (TXT_DB escapes it as \<tab>) and an empty file round-trip */
    const char *esc = "V\t271122222940Z\t\t0A\talice\t/CN=a\\\tb\n";
    assert_int_equal(kwt_write_atomic(p, esc, strlen(esc), 0600), 0);
    assert_int_equal(kwt_index_load(&ix, p), 0);
    assert_int_equal(ix.n, 1);
    assert_string_equal(ix.rows[0].subject, "/CN=a\tb");
    assert_int_equal(kwt_index_save(&ix, p2), 0);
    back = kwt_read_file(p2, NULL);
    assert_string_equal(back, esc);
    free(back);
    kwt_index_free(&ix);
    assert_int_equal(kwt_write_atomic(p, "", 0, 0600), 0);
    assert_int_equal(kwt_index_load(&ix, p), 0);
    assert_int_equal(ix.n, 0);
    assert_int_equal(kwt_index_save(&ix, p2), 0);
    size_t blen = 1;
    back = kwt_read_file(p2, &blen);
    assert_int_equal(blen, 0);
    free(back);
    kwt_index_free(&ix);
    kwt_rm_rf(dir);
    free(dir);
    free(p);
    free(p2);
}

/* A minimal CA directory: keyward.conf and state -> state.1 with an index. */
static char *make_ca_dir(void)
{
    char *dir = mktmp();
    kwt_conf c;
    kwt_conf_defaults(&c);
    c.ca_key = kwt_strdup("pkcs11:token=ca;object=k");
    char *p = kwt_path(dir, "keyward.conf");
    assert_int_equal(kwt_conf_save(&c, p), 0);
    free(p);
    kwt_conf_free(&c);
    char *s1 = kwt_path(dir, "state.1"), *crl = kwt_path(dir, "state.1/crl");
    char *issued = kwt_path(dir, "issued"), *certs = kwt_path(dir, "certs");
    assert_int_equal(mkdir(s1, 0700), 0);
    assert_int_equal(mkdir(crl, 0700), 0);
    assert_int_equal(mkdir(issued, 0700), 0);
    assert_int_equal(mkdir(certs, 0700), 0);
    char *ln = kwt_path(dir, "state");
    assert_int_equal(symlink("state.1", ln), 0);
    char *ix = kwt_path(dir, "state.1/index.txt");
    const char *row = "V\t271122222940Z\t\t0A\talice\t/CN=alice\n";
    assert_int_equal(kwt_write_atomic(ix, row, strlen(row), 0600), 0);
    char *serial = kwt_path(dir, "state.1/serial");
    assert_int_equal(kwt_write_atomic(serial, "0B\n", 3, 0600), 0);
    free(s1);
    free(crl);
    free(issued);
    free(certs);
    free(ln);
    free(ix);
    free(serial);
    return dir;
}

static void test_txn_commit_abort_recover(void **state)
{
    char *dir = make_ca_dir();
    setenv("KEYWARD_PROVIDER_PATH", "/nonexistent/keyward.so", 1);
    kwt_g.dir = dir;
    kwt_ca ca;
    assert_int_equal(kwt_ca_open(&ca, true), 0);
    assert_int_equal(ca.gen, 1);
    /* recovery linked issued/alice.crt to its certificate */
    char *lnk = kwt_path(dir, "issued/alice.crt");
    char buf[256];
    ssize_t n = readlink(lnk, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "../certs/0A.pem");
    /* abort leaves the live state alone */
    assert_int_equal(kwt_txn_begin(&ca), 0);
    char *sp = kwt_state_path(&ca, "serial");
    assert_non_null(strstr(sp, "state.2"));
    assert_int_equal(kwt_write_atomic(sp, "FF\n", 3, 0600), 0);
    free(sp);
    kwt_txn_abort(&ca);
    char *live = kwt_path(dir, "state/serial");
    char *v = kwt_read_file(live, NULL);
    assert_string_equal(v, "0B\n");
    free(v);
    /* commit switches atomically */
    assert_int_equal(kwt_txn_begin(&ca), 0);
    sp = kwt_state_path(&ca, "serial");
    assert_int_equal(kwt_write_atomic(sp, "0C\n", 3, 0600), 0);
    free(sp);
    assert_int_equal(kwt_txn_commit(&ca), 0);
    assert_int_equal(ca.gen, 2);
    v = kwt_read_file(live, NULL);
    assert_string_equal(v, "0C\n");
    free(v);
    char *old = kwt_path(dir, "state.1");
    assert_false(kwt_exists(old));
    /* a writer that died before its commit leaves state.3: the next writer removes it and the
     * live state is untouched */
    assert_int_equal(kwt_txn_begin(&ca), 0);
    sp = kwt_state_path(&ca, "serial");
    assert_int_equal(kwt_write_atomic(sp, "99\n", 3, 0600), 0);
    free(sp);
    char *stage = kwt_strdup(ca.stage);
    free(ca.stage);
    free(ca.stage_cnf);
    ca.stage = ca.stage_cnf = NULL; /* "crash": forget it without cleaning up */
    kwt_ca_close(&ca);
    assert_true(kwt_exists(stage));
    assert_int_equal(kwt_ca_open(&ca, true), 0);
    assert_false(kwt_exists(stage));
    v = kwt_read_file(live, NULL);
    assert_string_equal(v, "0C\n");
    free(v);
    /* the writer regenerated openssl.cnf */
    char *cnf = kwt_path(dir, "openssl.cnf");
    assert_true(kwt_exists(cnf));
    kwt_ca_close(&ca);
    free(cnf);
    free(stage);
    free(old);
    free(live);
    free(lnk);
    kwt_rm_rf(dir);
    free(dir);
}

static void test_open_missing(void **state)
{
    kwt_g.dir = "/nonexistent/keyward-ca";
    kwt_ca ca;
    assert_int_equal(kwt_ca_open(&ca, false), KWT_FAIL);
    assert_non_null(strstr(kwt_last_error(), "no CA directory"));
    char *dir = mktmp();
    kwt_g.dir = dir;
    assert_int_equal(kwt_ca_open(&ca, true), KWT_FAIL);
    assert_non_null(strstr(kwt_last_error(), "not a keyward CA directory"));
    kwt_rm_rf(dir);
    free(dir);
}

static void test_audit_line(void **state)
{
    char *l = kwt_audit_line("ca sign", "we\"ird\n", "0A", "/CN=x", 1, "bad \\ thing");
    assert_non_null(strstr(l, "\"op\":\"ca sign\""));
    assert_non_null(strstr(l, "\"name\":\"we\\\"ird\\u000a\""));
    assert_non_null(strstr(l, "\"outcome\":\"failed\""));
    assert_non_null(strstr(l, "\"error\":\"bad \\\\ thing\""));
    assert_non_null(strstr(l, "\"uid\":"));
    assert_non_null(strstr(l, "\"time\":\"20"));
    assert_int_equal(l[strlen(l) - 1], '\n');
    assert_null(strchr(l, '\n') == l + strlen(l) - 1 ? NULL : l); /* exactly one line */
    free(l);
    l = kwt_audit_line("ca crl", NULL, NULL, NULL, 0, "ignored");
    assert_non_null(strstr(l, "\"outcome\":\"ok\""));
    assert_null(strstr(l, "error"));
    free(l);
}

static void test_dry_run_quoting(void **state)
{
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-keyfile");
    kwt_cmd_add(&c, "pkcs11:token=ca;object=k");
    kwt_cmd_add(&c, "-subj");
    kwt_cmd_add(&c, "/CN=it's $(x)");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kwt_print_argv(f, &c, "/ca/openssl.cnf");
    fclose(f);
    assert_string_equal(buf, "OPENSSL_CONF=/ca/openssl.cnf openssl ca -keyfile "
                             "'pkcs11:token=ca;object=k' -subj '/CN=it'\\''s $(x)'\n");
    free(buf);
}

static void test_parse_args(void **state)
{
    const char *key = NULL, *pos[2];
    bool force = false;
    kwt_optspec spec[] = {{"--key", &key, NULL}, {"--force", NULL, &force}, {NULL, NULL, NULL}};
    char *argv1[] = {"x", "--key=pkcs11:a", "file", "--force", NULL};
    int npos;
    assert_int_equal(kwt_parse_args("x", 4, argv1, spec, pos, 2, &npos), 0);
    assert_string_equal(key, "pkcs11:a");
    assert_true(force);
    assert_int_equal(npos, 1);
    assert_string_equal(pos[0], "file");
    char *argv2[] = {"x", "--nope", NULL};
    assert_int_equal(kwt_parse_args("x", 2, argv2, spec, pos, 2, &npos), KWT_USAGE);
    char *argv3[] = {"x", "--key", NULL};
    assert_int_equal(kwt_parse_args("x", 2, argv3, spec, pos, 2, &npos), KWT_USAGE);
    char *argv4[] = {"x", "--force=1", NULL};
    assert_int_equal(kwt_parse_args("x", 2, argv4, spec, pos, 2, &npos), KWT_USAGE);
    char *argv5[] = {"x", "a", "b", "c", NULL};
    assert_int_equal(kwt_parse_args("x", 4, argv5, spec, pos, 2, &npos), KWT_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_device_ids),
        cmocka_unit_test(test_days_keytypes_reasons),
        cmocka_unit_test(test_dn),
        cmocka_unit_test(test_san),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_uris_and_conf_values),
        cmocka_unit_test(test_conf_roundtrip_and_cnf),
        cmocka_unit_test(test_conf_notify_keys),
        cmocka_unit_test(test_conf_strict),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_txn_commit_abort_recover),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_audit_line),
        cmocka_unit_test(test_dry_run_quoting),
        cmocka_unit_test(test_parse_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
