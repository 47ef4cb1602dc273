/* SPDX-License-Identifier: Apache-2.0 */
/* keyward.conf: the CA's settings, read (a wrong notify, notify_timeout or audit_sink is
 * reported, not defaulted) and written. */
#include "kwt.h"

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

static void conf_bad(kwt_conf *c, char *msg)
{
    if (c->bad)
        free(msg); /* the first problem is reported */
    else
        c->bad = msg;
}

/* notify, notify_timeout, audit_sink: a wrong value is an error (kwt_ca_open reports it), not
 * a silent default: a hook that never runs, or an audit trail that is not where the operator
 * looks, would go unnoticed. */
static void conf_notify_key(kwt_conf *c, const char *k, const char *v)
{
    if (!strcmp(k, "notify")) {
        set_str(&c->notify, v);
        if (*v && *v != '/')
            conf_bad(c, kwt_asprintf("notify = %s: give the absolute path of the program to run "
                                     "(e.g. notify = /usr/local/bin/keyward-hook); it is run "
                                     "directly, without a shell or arguments",
                                     v));
    } else if (!strcmp(k, "notify_timeout")) {
        char *end = NULL;
        long t = strtol(v, &end, 10);
        if (!*v || *end || t < 1 || t > 600)
            conf_bad(c, kwt_asprintf("notify_timeout = %s: give the seconds a notify hook may "
                                     "run, 1 to 600 (default 10)",
                                     v));
        else
            c->notify_timeout = (int)t;
    } else if (!strcmp(v, "syslog") || !strcmp(v, "file") || !*v) {
        c->audit_syslog = !strcmp(v, "syslog");
    } else {
        conf_bad(c, kwt_asprintf("audit_sink = %s: give file (audit.log only, the default) or "
                                 "syslog (audit.log and syslog)",
                                 v));
    }
}

int kwt_conf_load(kwt_conf *c, const char *path)
{
    kwt_conf_defaults(c);
    char *text = kwt_read_file(path, NULL);
    if (!text)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '#' || !*line)
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        char *k = line, *v = eq + 1;
        char *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        *ke = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
            *--ve = '\0';
        if (!strcmp(k, "ca_key"))
            set_str(&c->ca_key, v);
        else if (!strcmp(k, "module"))
            set_str(&c->module, v);
        else if (!strcmp(k, "pin_source"))
            set_str(&c->pin_source, v);
        else if (!strcmp(k, "key_type"))
            set_str(&c->key_type, v);
        else if (!strcmp(k, "device_id_oid"))
            set_str(&c->device_oid, v);
        else if (!strcmp(k, "policy_match")) {
            free(c->policy_match);
            c->policy_match = kwt_strdup(v);
        } else if (!strcmp(k, "crl_url"))
            set_str(&c->crl_url, v);
        else if (!strcmp(k, "ocsp_key"))
            set_str(&c->ocsp_key, v);
        else if (!strcmp(k, "old_keys"))
            set_str(&c->old_keys, v);
        else if (!strcmp(k, "default_days"))
            c->default_days = atoi(v);
        else if (!strcmp(k, "crl_days"))
            c->crl_days = atoi(v);
        else if (!strcmp(k, "renew_due_days"))
            c->renew_due_days = atoi(v);
        else if (!strcmp(k, "generation"))
            c->generation = atoi(v);
        else if (!strcmp(k, "notify") || !strcmp(k, "notify_timeout") || !strcmp(k, "audit_sink"))
            conf_notify_key(c, k, v);
    }
    free(text);
    if (c->default_days < 1 || c->default_days > 36500)
        c->default_days = 365;
    if (c->crl_days < 1 || c->crl_days > 3650)
        c->crl_days = 30;
    if (c->renew_due_days < 1 || c->renew_due_days > 36500)
        c->renew_due_days = 30;
    if (c->generation < 1)
        c->generation = 1;
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
