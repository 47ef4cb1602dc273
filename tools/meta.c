/* SPDX-License-Identifier: Apache-2.0 */
/* Per-certificate records (certs/SERIAL.meta): how it was signed (name, profile, days, SANs,
 * device ID) and the fleet metadata an operator gives (tags, note, auto-renew). One key=value
 * per line, so every value is checked to hold no newline before it is written. */
#include "kwt.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int kwt_valid_tag_key(const char *k, const char **why)
{
    size_t n = strlen(k);
    if (n == 0 || n > KWT_TAG_KEY_MAX) {
        *why = "a tag KEY must be 1 to 64 characters";
        return -1;
    }
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-", *p)) {
            *why = "a tag KEY may contain only letters, digits and _ . -";
            return -1;
        }
    return 0;
}

/* Printable UTF-8 of 1..max bytes: no NUL (cannot arrive through argv anyway), no C0 or C1
 * control (a newline would start a line of its own in the record), no DEL, no bidirectional
 * override (text that displays as other text), no overlong or surrogate encoding. */
int kwt_valid_meta_text(const char *s, size_t max, const char **why)
{
    size_t n = strlen(s);
    if (n == 0) {
        *why = "is empty";
        return -1;
    }
    if (n > max) {
        *why = "is too long";
        return -1;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i], cp, len;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                *why = "contains a control character (newline, tab, escape ...)";
                return -1;
            }
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            *why = "is not valid UTF-8";
            return -1;
        }
        if (i + len > n) {
            *why = "is not valid UTF-8";
            return -1;
        }
        for (unsigned j = 1; j < len; j++) {
            if ((u[i + j] & 0xc0) != 0x80) {
                *why = "is not valid UTF-8";
                return -1;
            }
            cp = (cp << 6) | (u[i + j] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            *why = "is not valid UTF-8";
            return -1;
        }
        if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
            *why = "contains a control character (C1 or line separator)";
            return -1;
        }
        if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
            *why = "contains a bidirectional-override character";
            return -1;
        }
        i += len;
    }
    return 0;
}

int kwt_parse_tag(const char *arg, kwt_tag *t, const char **why)
{
    const char *eq = strchr(arg, '=');
    t->key = t->value = NULL;
    if (!eq) {
        *why = "give KEY=VALUE";
        return -1;
    }
    char *k = kwt_asprintf("%.*s", (int)(eq - arg), arg);
    if (kwt_valid_tag_key(k, why) != 0) {
        free(k);
        return -1;
    }
    const char *vwhy;
    if (kwt_valid_meta_text(eq + 1, KWT_TAG_VALUE_MAX, &vwhy) != 0) {
        free(k);
        *why = !strcmp(vwhy, "is too long") ? "the VALUE is longer than 256 bytes"
               : !strcmp(vwhy, "is empty")  ? "the VALUE is empty"
                                            : vwhy;
        return -1;
    }
    t->key = k;
    t->value = kwt_strdup(eq + 1);
    return 0;
}

/* Takes every "--tag KV" and "--tag=KV" out of argv (up to "--"), so that the one-value option
 * parser sees the rest; each is checked, and a KEY given twice is refused. */
int kwt_take_tags(const char *cmd, int *argc, char **argv, kwt_meta *m)
{
    int out = 1;
    bool only_pos = false;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!only_pos && !strcmp(a, "--"))
            only_pos = true;
        if (!only_pos && !strcmp(a, "--tag")) {
            if (i + 1 >= *argc)
                return kwt_err(KWT_USAGE, "%s: --tag needs KEY=VALUE", cmd);
            v = argv[++i];
        } else if (!only_pos && !strncmp(a, "--tag=", 6)) {
            v = a + 6;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        kwt_tag t;
        const char *why;
        if (kwt_parse_tag(v, &t, &why) != 0)
            return kwt_err(KWT_USAGE,
                           "%s: --tag: %s (KEY: letters, digits, _ . - up to 64; VALUE: printable "
                           "text up to 256 bytes, no control characters)",
                           cmd, why);
        for (size_t j = 0; j < m->ntags; j++)
            if (!strcmp(m->tags[j].key, t.key)) {
                int rc = kwt_err(KWT_USAGE, "%s: --tag %s given twice", cmd, t.key);
                free(t.key);
                free(t.value);
                return rc;
            }
        if (m->ntags >= KWT_TAGS_MAX) {
            free(t.key);
            free(t.value);
            return kwt_err(KWT_USAGE, "%s: at most %d --tag options", cmd, KWT_TAGS_MAX);
        }
        m->tags[m->ntags++] = t;
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

static char *line_value(const char *line, size_t len, const char *key)
{
    size_t kl = strlen(key);
    if (len > kl && !strncmp(line, key, kl) && line[kl] == '=')
        return kwt_asprintf("%.*s", (int)(len - kl - 1), line + kl + 1);
    return NULL;
}

void kwt_meta_init(kwt_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->auto_renew = true;
}

/* The record's text fields, each replaced by its line's value. */
static char **text_field(kwt_meta *m, const char *l, size_t len, char **v)
{
    static const struct {
        const char *key;
        size_t off;
    } fields[] = {
        {"name", offsetof(kwt_meta, name)}, {"profile", offsetof(kwt_meta, profile)},
        {"san", offsetof(kwt_meta, san)},   {"device_id", offsetof(kwt_meta, device_id)},
        {"note", offsetof(kwt_meta, note)},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if ((*v = line_value(l, len, fields[i].key)))
            return (char **)((char *)m + fields[i].off);
    return NULL;
}

void kwt_meta_parse(const char *text, kwt_meta *m)
{
    kwt_meta_init(m);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char *v, **field;
        if ((field = text_field(m, l, len, &v))) {
            free(*field);
            *field = v;
        } else if ((v = line_value(l, len, "days"))) {
            m->days = atoi(v);
            free(v);
        } else if ((v = line_value(l, len, "auto_renew"))) {
            m->auto_renew = strcmp(v, "0") != 0;
            free(v);
        } else if (len > 4 && !strncmp(l, "tag.", 4) && m->ntags < KWT_TAGS_MAX) {
            const char *eq = memchr(l, '=', len);
            if (eq && eq > l + 4) {
                m->tags[m->ntags].key = kwt_asprintf("%.*s", (int)(eq - l - 4), l + 4);
                m->tags[m->ntags].value =
                    kwt_asprintf("%.*s", (int)(len - (size_t)(eq - l) - 1), eq + 1);
                m->ntags++;
            }
        }
        l = nl ? nl + 1 : NULL;
    }
}

int kwt_meta_read(const char *cadir, const char *serial, kwt_meta *m)
{
    char *p = kwt_asprintf("%s/certs/%s.meta", cadir, serial);
    char *text = kwt_read_file(p, NULL);
    free(p);
    kwt_meta_parse(text ? text : "", m);
    free(text);
    return text ? 0 : -1;
}

char *kwt_meta_text(const kwt_meta *m)
{
    kwt_buf b = {0};
    kwt_buf_printf(&b, "name=%s\nprofile=%s\ndays=%d\nsan=%s\ndevice_id=%s\n",
                   m->name ? m->name : "", m->profile ? m->profile : "", m->days,
                   m->san ? m->san : "", m->device_id ? m->device_id : "");
    for (size_t i = 0; i < m->ntags; i++)
        kwt_buf_printf(&b, "tag.%s=%s\n", m->tags[i].key, m->tags[i].value);
    if (m->note)
        kwt_buf_printf(&b, "note=%s\n", m->note);
    kwt_buf_printf(&b, "auto_renew=%d\n", m->auto_renew ? 1 : 0);
    return b.s;
}

const char *kwt_meta_tag(const kwt_meta *m, const char *key)
{
    for (size_t i = 0; i < m->ntags; i++)
        if (!strcmp(m->tags[i].key, key))
            return m->tags[i].value;
    return NULL;
}

bool kwt_meta_match(const kwt_meta *m, const kwt_meta *filter)
{
    for (size_t i = 0; i < filter->ntags; i++) {
        const char *v = kwt_meta_tag(m, filter->tags[i].key);
        if (!v || strcmp(v, filter->tags[i].value))
            return false;
    }
    return true;
}

/* {"tags":{...},"note":..,"auto_renew":..} members (without braces), for JSON output and the
 * audit log. */
void kwt_meta_json(kwt_buf *b, const kwt_meta *m)
{
    kwt_buf_add(b, "\"tags\":{");
    for (size_t i = 0; i < m->ntags; i++) {
        if (i)
            kwt_buf_add(b, ",");
        kwt_buf_json_str(b, m->tags[i].key);
        kwt_buf_add(b, ":");
        kwt_buf_json_str(b, m->tags[i].value);
    }
    kwt_buf_add(b, "},\"note\":");
    if (m->note)
        kwt_buf_json_str(b, m->note);
    else
        kwt_buf_add(b, "null");
    kwt_buf_printf(b, ",\"auto_renew\":%s", m->auto_renew ? "true" : "false");
}

void kwt_meta_free(kwt_meta *m)
{
    free(m->name);
    free(m->profile);
    free(m->san);
    free(m->device_id);
    free(m->note);
    for (size_t i = 0; i < m->ntags; i++) {
        free(m->tags[i].key);
        free(m->tags[i].value);
    }
    kwt_meta_init(m);
}
