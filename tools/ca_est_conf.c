/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: est.conf (labels, secrets file, bootstrap CAs, key, names, limits) and the server's
 * private directory DIR/est with its lock files. */
#include "ca_est_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void est_conf_free(est_conf *c)
{
    for (int i = 0; i < c->nlabels; i++) {
        free(c->labels[i].name);
        free(c->labels[i].profile);
    }
    for (int i = 0; i < c->ndns; i++)
        free(c->dns[i]);
    free(c->secrets);
    free(c->bootstrap);
    free(c->key);
    memset(c, 0, sizeof(*c));
}

static bool valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

/* User names of one-time secrets: what a Basic header and the secrets file can carry. */
bool est_valid_user(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.@", *p))
            return false;
    return true;
}

/* The config file: one setting a line, words separated by blanks, # comments.
 *   label NAME profile client|server|device auth basic|cert|both [require_channel_binding]
 *   secrets PATH        bootstrap_ca PATH        key URI
 *   dns NAME            rate_limit N SECONDS */
int est_conf_load(est_conf *c, const char *cadir, const char *path)
{
    memset(c, 0, sizeof(*c));
    char *text = NULL;
    if (path) {
        text = kwt_read_file(path, NULL);
        if (!text)
            return kwt_err(KWT_USAGE, "--config %s: %s", path, strerror(errno));
    }
    int rc = 0, line = 0;
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && rc == 0;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *w[8], *s2 = NULL;
        int n = 0;
        char *hash = strchr(l, '#');
        if (hash)
            *hash = '\0';
        for (char *t = strtok_r(l, " \t\r", &s2); t && n < 8; t = strtok_r(NULL, " \t\r", &s2))
            w[n++] = t;
        if (n == 0)
            continue;
        if (!strcmp(w[0], "label") &&
            (n == 6 || (n == 7 && !strcmp(w[6], "require_channel_binding"))) &&
            !strcmp(w[2], "profile") && !strcmp(w[4], "auth")) {
            int auth = !strcmp(w[5], "basic")  ? AUTH_BASIC
                       : !strcmp(w[5], "cert") ? AUTH_CERT
                       : !strcmp(w[5], "both") ? AUTH_BASIC | AUTH_CERT
                                               : 0;
            if (!valid_label(w[1]))
                rc = kwt_err(KWT_USAGE, "%s:%d: label %s: letters, digits, - and _ only", path,
                             line, w[1]);
            else if (strcmp(w[3], "client") && strcmp(w[3], "server") && strcmp(w[3], "device"))
                rc = kwt_err(KWT_USAGE,
                             "%s:%d: profile %s: EST enrols client, server or device "
                             "certificates",
                             path, line, w[3]);
            else if (!auth)
                rc = kwt_err(KWT_USAGE, "%s:%d: auth must be basic, cert or both", path, line);
            else if (c->nlabels == MAX_LABELS)
                rc = kwt_err(KWT_USAGE, "%s:%d: more than %d labels", path, line, MAX_LABELS);
            for (int i = 0; rc == 0 && i < c->nlabels; i++)
                if (!strcmp(c->labels[i].name, w[1]))
                    rc = kwt_err(KWT_USAGE, "%s:%d: label %s given twice", path, line, w[1]);
            if (rc == 0) {
                c->labels[c->nlabels].name = kwt_strdup(w[1]);
                c->labels[c->nlabels].profile = kwt_strdup(w[3]);
                c->labels[c->nlabels].require_cb = n == 7;
                c->labels[c->nlabels++].auth = auth;
            }
        } else if ((!strcmp(w[0], "secrets") || !strcmp(w[0], "bootstrap_ca")) && n == 2) {
            char **dst = w[0][0] == 's' ? &c->secrets : &c->bootstrap;
            free(*dst);
            *dst = kwt_strdup(w[1]);
        } else if (!strcmp(w[0], "key") && n == 2) {
            const char *why;
            if (!kwt_valid_uri(w[1], &why))
                rc = kwt_err(KWT_USAGE, "%s:%d: key: %s", path, line, why);
            free(c->key);
            c->key = kwt_strdup(w[1]);
        } else if (!strcmp(w[0], "dns") && n == 2) {
            const char *why;
            char *t = kwt_asprintf("DNS:%s", w[1]), *s = kwt_san_to_conf(t, &why);
            if (!s)
                rc = kwt_err(KWT_USAGE, "%s:%d: dns %s: %s", path, line, w[1], why);
            else if (c->ndns == MAX_DNS)
                rc = kwt_err(KWT_USAGE, "%s:%d: more than %d dns names", path, line, MAX_DNS);
            else
                c->dns[c->ndns++] = kwt_strdup(w[1]);
            free(s);
            free(t);
        } else if (!strcmp(w[0], "deadline") && n == 2) {
            char *e;
            long d = strtol(w[1], &e, 10);
            if (*e || d < 1 || d > 600)
                rc = kwt_err(KWT_USAGE, "%s:%d: deadline SECONDS (1 to 600)", path, line);
            c->deadline = (unsigned)d;
        } else if (!strcmp(w[0], "rate_limit") && n == 3) {
            char *e1, *e2;
            c->rate_n = strtol(w[1], &e1, 10);
            c->rate_secs = strtol(w[2], &e2, 10);
            if (*e1 || *e2 || c->rate_n < 1 || c->rate_secs < 1 || c->rate_secs > 86400 * 366)
                rc = kwt_err(KWT_USAGE, "%s:%d: rate_limit N SECONDS (both positive)", path, line);
        } else {
            rc = kwt_err(KWT_USAGE,
                         "%s:%d: not understood (label NAME profile P auth basic|cert|both "
                         "[require_channel_binding], "
                         "secrets PATH, bootstrap_ca PATH, key URI, dns NAME, rate_limit N "
                         "SECONDS, deadline SECONDS)",
                         path, line);
        }
    }
    free(text);
    bool have_default = false;
    for (int i = 0; i < c->nlabels; i++)
        have_default = have_default || !strcmp(c->labels[i].name, "default");
    if (rc == 0 && !have_default && c->nlabels < MAX_LABELS) {
        c->labels[c->nlabels].name = kwt_strdup("default");
        c->labels[c->nlabels].profile = kwt_strdup("client");
        c->labels[c->nlabels++].auth = AUTH_BASIC;
    }
    if (!c->deadline)
        c->deadline = DEADLINE;
    if (rc == 0 && !c->secrets)
        c->secrets = kwt_asprintf("%s/est/secrets", cadir);
    for (int i = 0; rc == 0 && i < c->nlabels; i++)
        if ((c->labels[i].auth & AUTH_CERT) && !c->bootstrap && c->labels[i].auth == AUTH_CERT)
            rc = kwt_err(KWT_USAGE,
                         "%s: label %s authenticates by certificate only, but no bootstrap_ca "
                         "file is configured",
                         path ? path : "EST config", c->labels[i].name);
    if (rc)
        est_conf_free(c);
    return rc;
}

/* DIR/est: the server's private files (0700). */
char *est_dir(const char *cadir)
{
    char *d = kwt_asprintf("%s/est", cadir);
    if (mkdir(d, 0700) != 0 && errno != EEXIST) {
        kwt_err(KWT_FAIL, "cannot create %s: %s", d, strerror(errno));
        free(d);
        return NULL;
    }
    return d;
}

/* An flock on DIR/est/NAME; -1 on failure. */
int est_lock_file(const char *cadir, const char *name)
{
    char *p = kwt_asprintf("%s/est/%s", cadir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}
