/* SPDX-License-Identifier: Apache-2.0 */
/* Validation of everything an operator types: names, DNs, SANs, device IDs, dates, reasons.
 * Values end up in argv of openssl and in generated config files, so anything that either of
 * them would read differently from what was meant is refused here, with the reason. */
#include "kwt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/objects.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int kwt_valid_name(const char *name, const char **why)
{
    size_t n = strlen(name);
    if (n == 0 || n > 128) {
        *why = "a name must be 1 to 128 characters";
        return -1;
    }
    if (name[0] == '.' || name[0] == '-') {
        *why = "a name must not start with '.' or '-'";
        return -1;
    }
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("._-@+", *p)) {
            *why = "a name may contain only letters, digits and . _ - @ + (no '/', spaces or "
                   "control characters)";
            return -1;
        }
    }
    return 0;
}

int kwt_valid_device_id(const char *id, const char **why)
{
    size_t n = strlen(id);
    /* It becomes the DNS label "device-<ID>", at most 63 characters. */
    if (n == 0 || n > 56) {
        *why = "a device ID must be 1 to 56 characters";
        return -1;
    }
    if (id[0] == '-' || id[n - 1] == '-') {
        *why = "a device ID must not start or end with '-'";
        return -1;
    }
    for (const char *p = id; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-') {
            *why = "a device ID may contain only letters, digits and '-' (it becomes a DNS label)";
            return -1;
        }
    }
    return 0;
}

int kwt_valid_days(const char *s, int *days, const char **why)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > 36500) {
        *why = "days must be a whole number from 1 to 36500";
        return -1;
    }
    *days = (int)v;
    return 0;
}

int kwt_parse_key_type(const char *s, const char **alg, char *param, size_t plen, const char **why)
{
    static const char *rsa[] = {"2048", "3072", "4096"};
    static const char *ec[] = {"P-256", "P-384", "P-521"};
    *why = "key type must be rsa:2048, rsa:3072, rsa:4096, ec:P-256, ec:P-384 or ec:P-521";
    if (!strncmp(s, "rsa:", 4)) {
        for (size_t i = 0; i < 3; i++)
            if (!strcmp(s + 4, rsa[i])) {
                *alg = "RSA";
                snprintf(param, plen, "rsa_keygen_bits:%s", rsa[i]);
                return 0;
            }
    } else if (!strncmp(s, "ec:", 3)) {
        for (size_t i = 0; i < 3; i++)
            if (!strcmp(s + 3, ec[i])) {
                *alg = "EC";
                snprintf(param, plen, "ec_paramgen_curve:%s", ec[i]);
                return 0;
            }
    }
    return -1;
}

const char *kwt_reason_canon(const char *s)
{
    static const char *reasons[] = {"unspecified",        "keyCompromise", "CACompromise",
                                    "affiliationChanged", "superseded",    "cessationOfOperation",
                                    "certificateHold",    "removeFromCRL"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (!strcasecmp(s, reasons[i]))
            return reasons[i];
    return NULL;
}

/* Valid UTF-8 without control characters. */
static bool text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p < 0x80) {
            p++;
            continue;
        }
        int n = (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0 || *p == 0xc0 || *p == 0xc1 || *p > 0xf4)
            return false;
        for (int i = 1; i <= n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += n + 1;
    }
    return true;
}

char *kwt_dn_to_subj(const char *dn, const char **why)
{
    if (!dn || !*dn) {
        *why = "the subject is empty";
        return NULL;
    }
    if (!text_ok(dn)) {
        *why = "the subject contains a control character (newline, tab, ...) or invalid UTF-8";
        return NULL;
    }
    bool slash = dn[0] == '/';
    char sep = slash ? '/' : ',';
    const char *p = slash ? dn + 1 : dn;
    kwt_buf out = {0};
    kwt_buf type = {0}, val = {0};
    /* RFC 4514 writes the most specific RDN first (CN=alice,O=Example), openssl's -subj the
     * least specific first (/O=Example/CN=alice): a comma DN's RDNs go in reverse */
    size_t starts[64], rdns = 0;
    for (;;) {
        /* type */
        type.len = 0;
        kwt_buf_addn(&type, "", 0);
        while (*p == ' ' && !slash)
            p++;
        while (*p && *p != '=' && *p != sep)
            kwt_buf_addn(&type, p++, 1);
        while (type.len && type.s[type.len - 1] == ' ')
            type.s[--type.len] = '\0';
        if (*p != '=') {
            *why = "each part of the subject must be TYPE=value (e.g. CN=name,O=org)";
            goto fail;
        }
        p++;
        if (OBJ_txt2nid(type.s) == NID_undef) {
            *why = "the subject has an attribute type OpenSSL does not know (use CN, O, OU, C, "
                   "ST, L, emailAddress, serialNumber, DC, UID ...)";
            goto fail;
        }
        val.len = 0;
        kwt_buf_addn(&val, "", 0);
        while (*p && *p != sep) {
            if (*p == '\\') {
                p++;
                if (!*p) {
                    *why = "the subject ends with a lone backslash";
                    goto fail;
                }
            }
            kwt_buf_addn(&val, p++, 1);
        }
        if (val.len == 0) {
            *why = "the subject has an empty value";
            goto fail;
        }
        if (rdns == sizeof(starts) / sizeof(starts[0])) {
            *why = "the subject has more than 64 RDNs";
            goto fail;
        }
        starts[rdns] = out.len;
        kwt_buf_add(&out, "/");
        kwt_buf_add(&out, type.s);
        kwt_buf_add(&out, "=");
        for (size_t i = 0; i < val.len; i++) {
            /* openssl -subj splits on '/' and '+' and unescapes '\' */
            if (val.s[i] == '/' || val.s[i] == '\\' || val.s[i] == '+')
                kwt_buf_add(&out, "\\");
            kwt_buf_addn(&out, val.s + i, 1);
        }
        rdns++;
        if (!*p)
            break;
        p++;
        if (!*p && slash)
            break;
    }
    kwt_buf_free(&type);
    kwt_buf_free(&val);
    if (slash)
        return out.s;
    kwt_buf rev = {0};
    kwt_buf_addn(&rev, "", 0);
    for (size_t i = rdns; i-- > 0;)
        kwt_buf_addn(&rev, out.s + starts[i], (i + 1 < rdns ? starts[i + 1] : out.len) - starts[i]);
    kwt_buf_free(&out);
    return rev.s;
fail:
    kwt_buf_free(&type);
    kwt_buf_free(&val);
    kwt_buf_free(&out);
    return NULL;
}

static bool dns_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    const char *label = s;
    for (const char *p = s;; p++) {
        if (*p == '.' || !*p) {
            size_t ln = (size_t)(p - label);
            if (ln == 0 || ln > 63 || label[0] == '-' || p[-1] == '-')
                return false;
            if (!*p)
                break;
            label = p + 1;
            continue;
        }
        if (*p == '*' && p == s && p[1] == '.')
            continue; /* wildcard as the whole leftmost label */
        if (!isalnum((unsigned char)*p) && *p != '-')
            return false;
    }
    /* a wildcard covers one label of a registered name, never a whole TLD (*.com); a name whose
     * last label is all digits is an IP address written as a DNS name */
    const char *last = strrchr(s, '.');
    last = last ? last + 1 : s;
    if (strspn(last, "0123456789") == strlen(last))
        return false;
    if (s[0] == '*') {
        int dots = 0;
        for (const char *p = s + 2; *p; p++)
            dots += *p == '.';
        if (dots < 1)
            return false;
    }
    return true;
}

char *kwt_san_to_conf(const char *list, const char **why)
{
    if (!list || !*list) {
        *why = "the SAN list is empty";
        return NULL;
    }
    if (!text_ok(list)) {
        *why = "the SAN list contains a control character or invalid UTF-8";
        return NULL;
    }
    kwt_buf out = {0};
    char *copy = kwt_strdup(list);
    char *save = NULL;
    for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        while (*e == ' ')
            e++;
        char *end = e + strlen(e);
        while (end > e && end[-1] == ' ')
            *--end = '\0';
        if (!*e)
            continue;
        const char *kind, *v;
        char *colon = strchr(e, ':');
        if (colon && (!strncasecmp(e, "DNS:", 4) || !strncasecmp(e, "IP:", 3) ||
                      !strncasecmp(e, "email:", 6) || !strncasecmp(e, "URI:", 4))) {
            *colon = '\0';
            kind = e;
            v = colon + 1;
        } else {
            unsigned char ipb[16];
            v = e;
            kind = (inet_pton(AF_INET, e, ipb) == 1 || inet_pton(AF_INET6, e, ipb) == 1) ? "IP"
                                                                                         : "DNS";
        }
        if (strpbrk(v, "$#\"'\\;= ")) {
            *why = "a SAN entry contains a character that is not allowed there ($ # \" ' \\ ; = "
                   "or a space)";
            goto fail;
        }
        const char *ck;
        if (!strcasecmp(kind, "DNS")) {
            ck = "DNS";
            if (!dns_ok(v)) {
                *why = "a DNS SAN is not a valid host name (letters, digits, '-', dots; '*.' "
                       "only as the first label)";
                goto fail;
            }
        } else if (!strcasecmp(kind, "IP")) {
            unsigned char ipb[16];
            ck = "IP";
            if (inet_pton(AF_INET, v, ipb) != 1 && inet_pton(AF_INET6, v, ipb) != 1) {
                *why = "an IP SAN is not a valid IPv4 or IPv6 address";
                goto fail;
            }
        } else if (!strcasecmp(kind, "email")) {
            ck = "email";
            const char *at = strchr(v, '@');
            if (!at || at == v || !dns_ok(at + 1) || strchr(at + 1, '@')) {
                *why = "an email SAN must be local@domain";
                goto fail;
            }
        } else {
            ck = "URI";
            if (!strchr(v, ':')) {
                *why = "a URI SAN must have a scheme (scheme:...)";
                goto fail;
            }
            /* schemes that run or embed content where a URI is shown or followed */
            static const char *const bad[] = {"javascript:", "data:", "vbscript:", "file:"};
            for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (!strncasecmp(v, bad[i], strlen(bad[i]))) {
                    *why = "a URI SAN with a javascript:, data:, vbscript: or file: scheme is "
                           "refused";
                    goto fail;
                }
        }
        if (out.len)
            kwt_buf_add(&out, ", ");
        kwt_buf_printf(&out, "%s:%s", ck, v);
    }
    free(copy);
    if (!out.s) {
        *why = "the SAN list is empty";
        return NULL;
    }
    return out.s;
fail:
    free(copy);
    kwt_buf_free(&out);
    return NULL;
}

long long kwt_parse_date(const char *s)
{
    if (!strcmp(s, "now"))
        return (long long)time(NULL);
    struct tm tm = {0};
    int n = 0;
    size_t len = strlen(s);
    if (len == 15 && s[14] == 'Z' &&
        sscanf(s, "%4d%2d%2d%2d%2d%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) == 6 &&
        n == 14) {
        /* YYYYMMDDHHMMSSZ */
    } else {
        const char *p = s;
        n = 0;
        if (sscanf(p, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
            return -1;
        p += n;
        if (*p == 'T' || *p == ' ') {
            int m = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &m) != 2 || m != 5)
                return -1;
            p += 1 + m;
            if (*p == ':') {
                if (sscanf(p + 1, "%2d%n", &tm.tm_sec, &m) != 1 || m != 2)
                    return -1;
                p += 3;
            }
        }
        if (*p == 'Z')
            p++;
        if (*p)
            return -1;
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970 || tm.tm_year > 9999)
        return -1;
    int mon = tm.tm_mon, mday = tm.tm_mday;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    /* timegm normalises 31 Feb into March: refuse days that do not exist */
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mon + 1 != mon || back.tm_mday != mday)
        return -1;
    return (long long)t;
}

bool kwt_conf_safe(const char *s)
{
    if (!text_ok(s))
        return false;
    return strpbrk(s, "$#\"'\\\n") == NULL;
}

bool kwt_valid_uri(const char *uri, const char **why)
{
    if (strncmp(uri, "pkcs11:", 7) != 0) {
        *why = "a key must be a pkcs11: URI (RFC 7512), e.g. pkcs11:token=ca;object=ca-key";
        return false;
    }
    if (!text_ok(uri) || strpbrk(uri, " \"'\\$#")) {
        *why = "the pkcs11: URI contains spaces, quotes or control characters (percent-encode "
               "them)";
        return false;
    }
    if (strstr(uri, "pin-value=")) {
        *why = "the URI carries a PIN (pin-value=); keyward takes PINs only from a pin-source "
               "file, the CA config or a prompt, never from a command line";
        return false;
    }
    return true;
}
