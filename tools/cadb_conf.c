/* SPDX-License-Identifier: Apache-2.0 */
/* keyward.conf: the CA's settings, read and written. Reading is strict: a bad value, an unknown
 * or repeated key, a line without '=' or with a NUL or control byte is reported with its line
 * (kwt_ca_open refuses to go on), never replaced by a default. */
#include "kwt.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A UUID-based OID (ITU-T X.667, arc 2.25) so no registered arc is claimed. */
#define KWT_DEFAULT_DEVICE_OID "2.25.208833640913812316218453327405385622517"

void kwt_conf_defaults(kwt_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->key_type = kwt_strdup("ec:P-256");
    c->device_oid = kwt_strdup(KWT_DEFAULT_DEVICE_OID);
    c->policy_match = kwt_strdup("");
    c->default_days = 365;
    c->crl_days = 30;
    c->renew_due_days = 30;
    c->generation = 1;
    c->notify_timeout = 10;
}

void kwt_conf_free(kwt_conf *c)
{
    free(c->ca_key);
    free(c->module);
    free(c->pin_source);
    free(c->key_type);
    free(c->device_oid);
    free(c->policy_match);
    free(c->crl_url);
    free(c->ocsp_key);
    free(c->old_keys);
    free(c->notify);
    free(c->bad);
    memset(c, 0, sizeof(*c));
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = *v ? kwt_strdup(v) : NULL;
}

/* The first problem is reported, with the line it is on (kwt_ca_open prints PATH:LINE: msg). */
static void conf_bad(kwt_conf *c, int line, char *msg)
{
    if (c->bad) {
        free(msg);
    } else {
        c->bad = msg;
        c->bad_line = line;
    }
}

/* notify, notify_timeout, audit_sink: a wrong value is an error (kwt_ca_open reports it), not
 * a silent default: a hook that never runs, or an audit trail that is not where the operator
 * looks, would go unnoticed. */
static void conf_notify_key(kwt_conf *c, int line, const char *k, const char *v)
{
    if (!strcmp(k, "notify")) {
        set_str(&c->notify, v);
        if (*v && *v != '/')
            conf_bad(c, line,
                     kwt_asprintf("notify = %.64s: give the absolute path of the program to run "
                                  "(e.g. notify = /usr/local/bin/keyward-hook); it is run "
                                  "directly, without a shell or arguments",
                                  v));
    } else if (!strcmp(k, "notify_timeout")) {
        char *end = NULL;
        errno = 0;
        long t = *v >= '0' && *v <= '9' ? strtol(v, &end, 10) : 0;
        if (!end || *end || errno || t < 1 || t > 600)
            conf_bad(c, line,
                     kwt_asprintf("notify_timeout = %.64s: give the seconds a notify hook may "
                                  "run, 1 to 600 (default 10)",
                                  v));
        else
            c->notify_timeout = (int)t;
    } else if (!strcmp(v, "syslog") || !strcmp(v, "file") || !*v) {
        c->audit_syslog = !strcmp(v, "syslog");
    } else {
        conf_bad(c, line,
                 kwt_asprintf("audit_sink = %.64s: give file (audit.log only, the default) or "
                              "syslog (audit.log and syslog)",
                              v));
    }
}

/* A whole number from min to max, nothing else (no sign, no spaces, no unit, no overflow). */
static void conf_number(kwt_conf *c, int line, const char *k, const char *v, int *out, long min,
                        long max, const char *what)
{
    char *end = NULL;
    errno = 0;
    long n = *v >= '0' && *v <= '9' ? strtol(v, &end, 10) : 0;
    const char *wrong = !*v                           ? "empty"
                        : *v == '-'                   ? "negative"
                        : !end || *end                ? "not a whole number"
                        : errno || n < min || n > max ? "out of range"
                                                      : NULL;
    if (wrong)
        conf_bad(c, line,
                 kwt_asprintf("%s = %.64s%s: %s (give %s, %ld to %ld)", k, v,
                              strlen(v) > 64 ? "..." : "", wrong, what, min, max));
    else
        *out = (int)n;
}

/* Every key keyward.conf may hold: where it goes and how its value is read. */
enum conf_kind { CONF_STR, CONF_STR_EMPTY, CONF_NUM, CONF_NOTIFY };
static const struct {
    const char *name;
    enum conf_kind kind; /* CONF_STR: empty is NULL; CONF_STR_EMPTY: empty stays "" */
    size_t off;          /* of the char * or int in kwt_conf */
    long min, max;       /* CONF_NUM */
    const char *what;    /* CONF_NUM: what to give */
} conf_keys[] = {
#define S(k, f)                                                                                    \
    {                                                                                              \
        k, CONF_STR, offsetof(kwt_conf, f), 0, 0, NULL                                             \
    }
#define N(k, f, lo, hi, w)                                                                         \
    {                                                                                              \
        k, CONF_NUM, offsetof(kwt_conf, f), lo, hi, w                                              \
    }
    S("ca_key", ca_key),
    S("module", module),
    S("pin_source", pin_source),
    S("key_type", key_type),
    S("device_id_oid", device_oid),
    {"policy_match", CONF_STR_EMPTY, offsetof(kwt_conf, policy_match), 0, 0, NULL},
    S("crl_url", crl_url),
    S("ocsp_key", ocsp_key),
    S("old_keys", old_keys),
    N("default_days", default_days, 1, 36500, "the days a new certificate is valid"),
    N("crl_days", crl_days, 1, 3650, "the days until a CRL's next update"),
    N("renew_due_days", renew_due_days, 1, 36500,
      "the days before expiry that `ca renew --due` renews"),
    N("generation", generation, 1, 1000000, "the CA key generation, as `ca rotate` wrote it"),
    {"notify", CONF_NOTIFY, 0, 0, 0, NULL},
    {"notify_timeout", CONF_NOTIFY, 0, 0, 0, NULL},
    {"audit_sink", CONF_NOTIFY, 0, 0, 0, NULL},
#undef S
#undef N
};
#define CONF_NKEYS    (sizeof(conf_keys) / sizeof(conf_keys[0]))
#define CONF_MAX_LINE 16384

static void conf_set(kwt_conf *c, int line, size_t i, const char *v)
{
    char *field = (char *)c + conf_keys[i].off;
    switch (conf_keys[i].kind) {
    case CONF_STR:
        set_str((char **)(void *)field, v);
        break;
    case CONF_STR_EMPTY:
        free(*(char **)(void *)field);
        *(char **)(void *)field = kwt_strdup(v);
        break;
    case CONF_NUM:
        conf_number(c, line, conf_keys[i].name, v, (int *)(void *)field, conf_keys[i].min,
                    conf_keys[i].max, conf_keys[i].what);
        break;
    case CONF_NOTIFY:
        conf_notify_key(c, line, conf_keys[i].name, v);
        break;
    }
}

/* One line (NUL-terminated, without its newline and CR): comment, blank or KEY = VALUE.
 * seen[i]: the line where conf_keys[i] was set (0: not yet). */
static void conf_line(kwt_conf *c, int line, char *s, int *seen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '#' || !*s)
        return;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t') {
            conf_bad(c, line,
                     kwt_asprintf("control character 0x%02x in the line (keyward.conf is plain "
                                  "text: remove it)",
                                  (unsigned)(unsigned char)*p));
            return;
        }
    char *eq = strchr(s, '=');
    if (!eq) {
        conf_bad(
            c, line,
            kwt_asprintf("no '=' in \"%.64s%s\" (write KEY = VALUE, or start a comment with #)", s,
                         strlen(s) > 64 ? "..." : ""));
        return;
    }
    char *k = s, *v = eq + 1, *ke = eq;
    while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
        ke--;
    *ke = '\0';
    while (*v == ' ' || *v == '\t')
        v++;
    char *ve = v + strlen(v);
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        *--ve = '\0';
    size_t i = 0;
    while (i < CONF_NKEYS && strcmp(conf_keys[i].name, k) != 0)
        i++;
    if (i == CONF_NKEYS) {
        if (!*k) {
            conf_bad(c, line, kwt_strdup("no key before '=' (write KEY = VALUE)"));
            return;
        }
        kwt_buf known = {0};
        for (size_t j = 0; j < CONF_NKEYS; j++)
            kwt_buf_printf(&known, "%s%s", j ? ", " : "", conf_keys[j].name);
        conf_bad(c, line,
                 kwt_asprintf("unknown key \"%.64s%s\" (fix its spelling or remove the line; the "
                              "keys are %s)",
                              k, strlen(k) > 64 ? "..." : "", known.s));
        kwt_buf_free(&known);
        return;
    }
    if (seen[i]) {
        conf_bad(c, line,
                 kwt_asprintf("%s is set again, first on line %d (keep one of the two lines)", k,
                              seen[i]));
        return;
    }
    seen[i] = line;
    conf_set(c, line, i, v);
}

int kwt_conf_load(kwt_conf *c, const char *path)
{
    kwt_conf_defaults(c);
    size_t len = 0;
    char *text = kwt_read_file(path, &len);
    if (!text)
        return -1;
    int seen[CONF_NKEYS] = {0};
    int line = 0;
    for (size_t pos = 0; pos < len && !c->bad;) {
        char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + 1;
        line++;
        if (n && s[n - 1] == '\r') /* CRLF (a file edited on Windows) */
            n--;
        if (memchr(s, '\0', n))
            conf_bad(c, line,
                     kwt_strdup("NUL byte in the line (keyward.conf is plain text: remove it)"));
        else if (n > CONF_MAX_LINE)
            conf_bad(
                c, line,
                kwt_asprintf("line of %zu bytes, longer than %d (shorten it)", n, CONF_MAX_LINE));
        else {
            s[n] = '\0';
            conf_line(c, line, s, seen);
        }
    }
    free(text);
    return 0;
}

int kwt_conf_save(const kwt_conf *c, const char *path)
{
    kwt_buf b = {0};
    kwt_buf_add(&b,
                "# keyward CA configuration (read by keyward; openssl.cnf is generated from it)\n"
                "# No PIN here: pin_source names a file (mode 0600/0400) that holds it.\n");
    kwt_buf_printf(&b, "ca_key = %s\n", c->ca_key ? c->ca_key : "");
    kwt_buf_printf(&b, "module = %s\n", c->module ? c->module : "");
    kwt_buf_printf(&b, "pin_source = %s\n", c->pin_source ? c->pin_source : "");
    kwt_buf_printf(&b, "key_type = %s\n", c->key_type ? c->key_type : "");
    kwt_buf_printf(&b, "# days of a new leaf certificate, and until a CRL's next update\n");
    kwt_buf_printf(&b, "default_days = %d\ncrl_days = %d\nrenew_due_days = %d\n", c->default_days,
                   c->crl_days, c->renew_due_days);
    kwt_buf_printf(&b,
                   "# RDNs (short names, comma list) of a CSR's subject that must equal the "
                   "CA's\npolicy_match = %s\n",
                   c->policy_match ? c->policy_match : "");
    kwt_buf_printf(&b, "# OID of the otherName SAN that carries a device ID\ndevice_id_oid = %s\n",
                   c->device_oid ? c->device_oid : "");
    kwt_buf_printf(&b,
                   "# CRL distribution point put into issued certificates (optional)\n"
                   "crl_url = %s\n",
                   c->crl_url ? c->crl_url : "");
    kwt_buf_printf(&b, "ocsp_key = %s\n", c->ocsp_key ? c->ocsp_key : "");
    kwt_buf_printf(&b, "generation = %d\n", c->generation);
    kwt_buf_printf(&b,
                   "# keys of earlier CA generations (N:URI), kept to sign their CRLs\n"
                   "old_keys = %s\n",
                   c->old_keys ? c->old_keys : "");
    kwt_buf_printf(&b,
                   "# program run with one JSON event on stdin after each issue, renewal,\n"
                   "# revocation and expiry warning (absolute path; empty: none), and the seconds\n"
                   "# it may take\nnotify = %s\nnotify_timeout = %d\n",
                   c->notify ? c->notify : "", c->notify_timeout);
    kwt_buf_printf(&b,
                   "# audit lines go to audit.log (file), or also to syslog (syslog)\n"
                   "audit_sink = %s\n",
                   c->audit_syslog ? "syslog" : "file");
    int rc = kwt_write_atomic(path, b.s, b.len, 0600);
    kwt_buf_free(&b);
    return rc;
}
