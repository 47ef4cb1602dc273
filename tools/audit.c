/* SPDX-License-Identifier: Apache-2.0 */
/* DIR/audit.log: one JSON line per state change (who, what, outcome), never a secret; with
 * audit_sink = syslog in keyward.conf, the same line also goes to syslog (journald). */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

const char *kwt_audit_meta;

char *kwt_audit_line(const char *op, const char *name, const char *serial, const char *subject,
                     int rc, const char *err)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    kwt_buf b = {0};
    kwt_buf_add(&b, "{\"time\":");
    kwt_buf_json_str(&b, ts);
    kwt_buf_add(&b, ",\"op\":");
    kwt_buf_json_str(&b, op);
    if (name) {
        kwt_buf_add(&b, ",\"name\":");
        kwt_buf_json_str(&b, name);
    }
    if (serial) {
        kwt_buf_add(&b, ",\"serial\":");
        kwt_buf_json_str(&b, serial);
    }
    if (subject) {
        kwt_buf_add(&b, ",\"subject\":");
        kwt_buf_json_str(&b, subject);
    }
    if (kwt_audit_meta) {
        kwt_buf_add(&b, ",\"meta\":");
        kwt_buf_add(&b, kwt_audit_meta);
    }
    kwt_buf_add(&b, ",\"outcome\":");
    kwt_buf_json_str(&b, rc == 0 ? "ok" : "failed");
    if (rc != 0) {
        kwt_buf_add(&b, ",\"error\":");
        kwt_buf_json_str(&b, err && *err ? err : "failed");
    }
    kwt_buf_printf(&b, ",\"uid\":%u,\"user\":", (unsigned)uid);
    kwt_buf_json_str(&b, pw ? pw->pw_name : "");
    kwt_buf_printf(&b, ",\"pid\":%ld}\n", (long)getpid());
    return b.s;
}

static void audit_append(kwt_ca *ca, const char *line, int rc)
{
    char *p = kwt_path(ca->dir, "audit.log");
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line) ||
        (!kwt_defer_sync && fsync(fd) != 0))
        fprintf(stderr, "keyward: warning: cannot append to %s: %s\n", p, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(p);
    if (ca->conf.audit_syslog) {
        /* authpriv: the facility of authorization records, readable by root only on most
         * systems; the socket is opened on first use, close-on-exec */
        static bool opened;
        if (!opened)
            openlog("keyward", LOG_PID, LOG_AUTHPRIV);
        opened = true;
        syslog(LOG_AUTHPRIV | (rc == 0 ? LOG_INFO : LOG_WARNING), "%.*s", (int)strcspn(line, "\n"),
               line);
    }
}

void kwt_audit(kwt_ca *ca, const char *op, const char *name, const char *serial,
               const char *subject, int rc)
{
    if (kwt_g.dry_run || !ca || !ca->dir)
        return;
    char *line = kwt_audit_line(op, name, serial, subject, rc, kwt_last_error());
    audit_append(ca, line, rc);
    free(line);
}

void kwt_audit_err(kwt_ca *ca, const char *op, const char *name, const char *serial,
                   const char *subject, const char *err)
{
    if (kwt_g.dry_run || !ca || !ca->dir)
        return;
    char *line = kwt_audit_line(op, name, serial, subject, KWT_FAIL, err);
    audit_append(ca, line, KWT_FAIL);
    free(line);
}
