/* SPDX-License-Identifier: Apache-2.0 */
/* Notifications: after an issue, a renewal, a revocation, and for each certificate found
 * expiring, keyward runs the hook named by keyward.conf's notify (or --notify) with one JSON
 * event on stdin. The events are queued while the command works and sent by kwt_notify_run
 * once it is done, so no hook runs while the CA is locked or before its change is committed.
 *
 * A hook is a program, not a shell command: fork and execve of its absolute path with no
 * arguments, an environment of PATH, HOME and LANG only (never a PIN or a KEYWARD_ variable),
 * no descriptor but stdin (the event), stdout (/dev/null) and stderr (read: its first line
 * goes into the failure report), its own process group, cwd /, and a time limit after which
 * the group is killed. Whatever the hook does, the command's outcome and exit code stay as
 * they were; a failure is a warning on stderr and a "notify-failed" audit line with the
 * reason. */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *json; /* the event, one line with its newline */
    char *event, *name, *serial;
} kwt_event;

static struct {
    char *hook, *dir;
    int timeout;
    bool syslog;
    kwt_event *ev;
    size_t n, cap;
} q;

static void iso_time(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The event is one line for any reader: U+2028 and U+2029 (which JSON allows raw, and which
 * some line readers split at) and C1 controls become \\u escapes. They occur only inside
 * strings (the rest of the document is ASCII), so the escapes keep the document the same. */
static char *one_line(const char *s)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            kwt_buf_printf(&b, "\\u%04x", 0x2000 + p[2] - 0x80);
            p += 2;
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            kwt_buf_printf(&b, "\\u%04x", p[1]);
            p++;
        } else {
            kwt_buf_addn(&b, (const char *)p, 1);
        }
    }
    return b.s;
}

void kwt_notify(kwt_ca *ca, const char *event, const char *name, const char *serial,
                const char *extra)
{
    const char *hook = kwt_g.notify ? kwt_g.notify : ca->conf.notify;
    if (kwt_g.dry_run || !hook || !*hook || !ca->dir)
        return;
    if (!q.hook) { /* one command works on one CA */
        q.hook = kwt_strdup(hook);
        q.dir = kwt_strdup(ca->dir);
        q.timeout = ca->conf.notify_timeout > 0 ? ca->conf.notify_timeout : 10;
        q.syslog = ca->conf.audit_syslog;
    }
    char now[32], na[32] = "";
    iso_time(time(NULL), now, sizeof(now));
    char *cp = kwt_asprintf("%s/certs/%s.pem", ca->dir, serial);
    X509 *x = kwt_load_cert(cp);
    free(cp);
    char *subject = x ? kwt_cert_subject(x) : NULL;
    struct tm tm;
    if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    X509_free(x);
    kwt_meta m;
    kwt_meta_read(ca->dir, serial, &m);
    kwt_buf b = {0};
    kwt_buf_add(&b, "{\"event\":");
    kwt_buf_json_str(&b, event);
    kwt_buf_printf(&b, ",\"time\":\"%s\",\"ca\":", now);
    kwt_buf_json_str(&b, ca->dir);
    kwt_buf_add(&b, ",\"name\":");
    kwt_buf_json_str(&b, name);
    kwt_buf_add(&b, ",\"serial\":");
    kwt_buf_json_str(&b, serial);
    kwt_buf_add(&b, ",\"subject\":");
    if (subject)
        kwt_buf_json_str(&b, subject);
    else
        kwt_buf_add(&b, "null");
    kwt_buf_add(&b, ",\"not_after\":");
    if (*na)
        kwt_buf_printf(&b, "\"%s\"", na);
    else
        kwt_buf_add(&b, "null");
    kwt_buf_add(&b, ",\"profile\":");
    if (m.profile && *m.profile)
        kwt_buf_json_str(&b, m.profile);
    else
        kwt_buf_add(&b, "null");
    kwt_buf_add(&b, ",");
    kwt_meta_json(&b, &m); /* tags, note, auto_renew */
    if (extra && *extra)
        kwt_buf_printf(&b, ",%s", extra);
    kwt_buf_add(&b, "}\n");
    free(subject);
    kwt_meta_free(&m);
    if (q.n == q.cap) {
        q.cap = q.cap ? q.cap * 2 : 16;
        q.ev = realloc(q.ev, q.cap * sizeof(*q.ev));
        if (!q.ev)
            abort();
    }
    q.ev[q.n++] =
        (kwt_event){one_line(b.s), kwt_strdup(event), kwt_strdup(name), kwt_strdup(serial)};
    kwt_buf_free(&b);
}

/* ---- running the hook ---- */

static int chld_pipe[2] = {-1, -1};

static void on_chld(int sig)
{
    (void)sig;
    int e = errno;
    if (write(chld_pipe[1], "c", 1) < 0) { /* full: a wake-up is pending anyway */
    }
    errno = e;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The hook file itself: there, a regular executable file, and not one that someone other than
 * root or this user could have changed (it runs with the CA operator's rights). */
static char *check_hook(const char *hook)
{
    struct stat st;
    if (stat(hook, &st) != 0)
        return kwt_asprintf("%s: %s%s", hook, strerror(errno),
                            strchr(hook, ' ') ? " (notify names one program, without arguments)"
                                              : "");
    if (!S_ISREG(st.st_mode))
        return kwt_asprintf("%s is not a regular file", hook);
    if (access(hook, X_OK) != 0)
        return kwt_asprintf("%s is not executable (chmod 0755 it)", hook);
    if (st.st_mode & 022)
        return kwt_asprintf("%s is writable by group or others (mode %04o): not run (chmod "
                            "go-w it)",
                            hook, (unsigned)(st.st_mode & 07777));
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return kwt_asprintf("%s belongs to uid %u, neither root nor this user: not run", hook,
                            (unsigned)st.st_uid);
    return NULL;
}

/* The first line of what the hook wrote to stderr, printable ASCII only, for the report. */
static void stderr_line(kwt_buf *out, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (s[i] == '\n' || s[i] == '\r' || s[i] == ' '))
        i++;
    size_t start = i;
    for (; i < len && s[i] != '\n' && i - start < 200; i++) {
        char c = s[i];
        kwt_buf_addn(out, c >= 0x20 && c < 0x7f ? &c : "?", 1);
    }
}

static const char *const hook_env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                       "/sbin:/bin",
                                       "HOME=/", "LANG=C.UTF-8", NULL};

/* Run the hook with ev on stdin; NULL when it read the event and exited 0, else why not. */
static char *run_hook(const char *hook, int timeout, const char *ev, bool *timed_out)
{
    *timed_out = false;
    char *why = check_hook(hook);
    if (why)
        return why;
    kwt_buf msg = {0}, w = {0}; /* what the hook wrote to stderr; why it failed */
    int in[2] = {-1, -1}, err[2] = {-1, -1}, ex[2] = {-1, -1};
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(in, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        pipe2(ex, O_CLOEXEC) != 0) {
        why = kwt_asprintf("cannot make its pipes: %s", strerror(errno));
        goto close_all;
    }
    char *const argv[] = {(char *)hook, NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        why = kwt_asprintf("cannot fork: %s", strerror(errno));
        goto close_all;
    }
    if (pid == 0) {
        /* only async-signal-safe calls from here on */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        setpgid(0, 0);
        if (dup2(in[0], 0) < 0 || dup2(devnull, 1) < 0 || dup2(err[1], 2) < 0 || chdir("/") != 0)
            goto child_fail;
        /* nothing else is inherited: not the CA lock, not a token session */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
            for (int fd = 3; fd < 65536; fd++)
                if (fd != ex[1])
                    close(fd);
        execve(hook, argv, (char *const *)hook_env);
    child_fail:;
        int e = errno;
        if (write(ex[1], &e, sizeof(e)) < 0) {
        }
        _exit(127);
    }
    setpgid(pid, pid); /* also here: kill(-pid) must work even before the child ran */
    close(err[1]);
    close(ex[1]);
    err[1] = ex[1] = -1;
    int e = 0;
    ssize_t r;
    while ((r = read(ex[0], &e, sizeof(e))) < 0 && errno == EINTR) {
    }
    /* in[0] stays open here: writing never raises SIGPIPE, and what the hook left unread
     * can be counted */
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    size_t len = strlen(ev), off = 0;
    int status = 0;
    bool exited = false;
    long long deadline = now_ms() + (long long)timeout * 1000;
    if (r == (ssize_t)sizeof(e)) { /* execve failed: the child is gone */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        why = kwt_asprintf("cannot run %s: %s", hook, strerror(e));
        goto close_all;
    }
    while (!exited) {
        struct pollfd p[3];
        int np = 0, iw = -1, ie = -1;
        p[np++] = (struct pollfd){chld_pipe[0], POLLIN, 0};
        if (in[1] >= 0) {
            iw = np;
            p[np++] = (struct pollfd){in[1], POLLOUT, 0};
        }
        if (err[0] >= 0) {
            ie = np;
            p[np++] = (struct pollfd){err[0], POLLIN, 0};
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            *timed_out = true;
            kwt_buf_printf(&w, "%s did not finish within %d s (killed)", hook, timeout);
            break;
        }
        if (poll(p, (nfds_t)np, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
            break;
        if (p[0].revents) {
            char buf[64];
            while (read(chld_pipe[0], buf, sizeof(buf)) > 0) {
            }
        }
        if (iw >= 0 && p[iw].revents) {
            ssize_t wn = write(in[1], ev + off, len - off);
            if (wn > 0)
                off += (size_t)wn;
            if (off == len || (wn < 0 && errno != EAGAIN && errno != EINTR)) {
                close(in[1]); /* the hook sees end of input */
                in[1] = -1;
            }
        }
        if (ie >= 0 && p[ie].revents) {
            char buf[512];
            ssize_t n = read(err[0], buf, sizeof(buf));
            if (n > 0 && msg.len < 4096)
                kwt_buf_addn(&msg, buf, (size_t)n);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(err[0]);
                err[0] = -1;
            }
        }
        pid_t wp = waitpid(pid, &status, WNOHANG);
        exited = wp == pid || (wp < 0 && errno == ECHILD);
    }
    if (!exited && !*timed_out) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        why = kwt_asprintf("cannot wait for %s: %s", hook, strerror(errno));
        goto close_all;
    }
    /* what it wrote before it exited (a child of the hook may hold stderr open: no waiting) */
    while (err[0] >= 0 && msg.len < 4096) {
        char buf[512];
        ssize_t n = read(err[0], buf, sizeof(buf));
        if (n <= 0)
            break;
        kwt_buf_addn(&msg, buf, (size_t)n);
    }
    int unread = 0;
    if (ioctl(in[0], FIONREAD, &unread) != 0)
        unread = 0;
    size_t left_over = (len - off) + (size_t)unread;
    if (!*timed_out && WIFSIGNALED(status))
        kwt_buf_printf(&w, "%s was killed by signal %d (%s)", hook, WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
    else if (!*timed_out && WIFEXITED(status) && WEXITSTATUS(status) != 0)
        kwt_buf_printf(&w, "%s exited with status %d", hook, WEXITSTATUS(status));
    else if (!*timed_out && left_over)
        kwt_buf_printf(&w,
                       "%s exited without reading its event (%zu of %zu bytes left on its "
                       "stdin)",
                       hook, left_over, len);
    if (w.len && msg.len) {
        kwt_buf line = {0};
        stderr_line(&line, msg.s, msg.len);
        if (line.len)
            kwt_buf_printf(&w, ": %s", line.s);
        kwt_buf_free(&line);
    }
    why = w.s;
    w.s = NULL;
close_all:
    kwt_buf_free(&msg);
    kwt_buf_free(&w);
    for (int *fd = (int[]){in[0], in[1], err[0], err[1], ex[0], ex[1], devnull, -2}; *fd != -2;
         fd++)
        if (*fd >= 0)
            close(*fd);
    return why;
}

/* After this many hooks in a row that hit the time limit, the rest of the run's events are
 * not sent (each gets its notify-failed line): a hung endpoint must not hold a batch of
 * thousands for hours. */
#define KWT_NOTIFY_MAX_TIMEOUTS 3
/* Warnings on stderr for the first failures; the audit log has every one. */
#define KWT_NOTIFY_MAX_WARNINGS 5

void kwt_notify_run(void)
{
    if (!q.n)
        return;
    kwt_ca ca;
    memset(&ca, 0, sizeof(ca));
    ca.dir = q.dir;
    ca.conf.audit_syslog = q.syslog;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    bool ready =
        pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) == 0 && sigaction(SIGCHLD, &sa, &old) == 0;
    size_t failed = 0, timeouts = 0;
    for (size_t i = 0; i < q.n; i++) {
        kwt_event *e = &q.ev[i];
        bool to = false;
        char *why = !ready ? kwt_asprintf("cannot watch the hook: %s", strerror(errno))
                    : timeouts >= KWT_NOTIFY_MAX_TIMEOUTS
                        ? kwt_asprintf("not sent: %s timed out %d times in a row in this run",
                                       q.hook, KWT_NOTIFY_MAX_TIMEOUTS)
                        : run_hook(q.hook, q.timeout, e->json, &to);
        timeouts = to ? timeouts + 1 : timeouts >= KWT_NOTIFY_MAX_TIMEOUTS ? timeouts : 0;
        if (!why) {
            if (kwt_g.verbose)
                fprintf(stderr, "keyward: notified %s: %s %s (serial %s)\n", q.hook, e->event,
                        e->name, e->serial);
            continue;
        }
        if (++failed <= KWT_NOTIFY_MAX_WARNINGS)
            fprintf(stderr,
                    "keyward: warning: the notify hook failed for the %s event of %s (serial "
                    "%s): %s; the operation itself is done\n",
                    e->event, e->name, e->serial, why);
        char *err = kwt_asprintf("%s event: %s", e->event, why);
        kwt_audit_err(&ca, "notify-failed", e->name, e->serial, NULL, err);
        free(err);
        free(why);
    }
    if (failed > KWT_NOTIFY_MAX_WARNINGS)
        fprintf(stderr,
                "keyward: warning: the notify hook failed for %zu of %zu events (each has a "
                "notify-failed line in %s/audit.log)\n",
                failed, q.n, q.dir);
    if (ready)
        sigaction(SIGCHLD, &old, NULL);
    for (int k = 0; k < 2; k++)
        if (chld_pipe[k] >= 0)
            close(chld_pipe[k]);
    chld_pipe[0] = chld_pipe[1] = -1;
    for (size_t i = 0; i < q.n; i++) {
        free(q.ev[i].json);
        free(q.ev[i].event);
        free(q.ev[i].name);
        free(q.ev[i].serial);
    }
    free(q.ev);
    free(q.hook);
    free(q.dir);
    memset(&q, 0, sizeof(q));
}
