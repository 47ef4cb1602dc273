/* SPDX-License-Identifier: Apache-2.0 */
/* Every CA operation is a stock `openssl` command run with an argument vector (never a shell)
 * and OPENSSL_CONF set to a generated config, so an operator can repeat each step by hand.
 * --dry-run prints the steps as a shell script instead of running them. */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *kwt_openssl_bin(void)
{
    const char *o = getenv("KEYWARD_OPENSSL");
    return o && *o ? o : "openssl";
}

void kwt_cmd_init(kwt_cmd *c, const char *sub)
{
    c->argc = 0;
    c->argv[c->argc++] = kwt_openssl_bin();
    c->argv[c->argc++] = sub;
    c->argv[c->argc] = NULL;
}

void kwt_cmd_add(kwt_cmd *c, const char *arg)
{
    if (c->argc >= (int)(sizeof(c->argv) / sizeof(c->argv[0])) - 1) {
        fputs("keyward: internal error: too many openssl arguments\n", stderr);
        exit(KWT_FAIL);
    }
    c->argv[c->argc++] = arg;
    c->argv[c->argc] = NULL;
}

/* Single-quote a word for the shell when it needs it. */
static void shq(FILE *f, const char *s)
{
    if (*s &&
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@%+") ==
            strlen(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

void kwt_print_argv(FILE *f, const kwt_cmd *c, const char *cnf)
{
    if (cnf) {
        fputs("OPENSSL_CONF=", f);
        shq(f, cnf);
        fputc(' ', f);
    }
    for (int i = 0; i < c->argc; i++) {
        if (i)
            fputc(' ', f);
        shq(f, c->argv[i]);
    }
    fputc('\n', f);
}

void kwt_dry_show_file(const char *path, const char *content)
{
    fputs("cat > ", stdout);
    shq(stdout, path);
    fputs(" <<'KEYWARD_EOF'\n", stdout);
    fputs(content, stdout);
    if (*content && content[strlen(content) - 1] != '\n')
        fputc('\n', stdout);
    fputs("KEYWARD_EOF\n", stdout);
}

/* openssl's error dump also names engines it failed to autoload; that is noise here. */
static bool noise(const char *line)
{
    return strstr(line, "rdrand") || strstr(line, "DSO support routines") ||
           strstr(line, "engine routines");
}

static void show_errors(int fd, bool all)
{
    if (lseek(fd, 0, SEEK_SET) != 0)
        return;
    FILE *f = fdopen(dup(fd), "r");
    if (!f)
        return;
    char line[2048];
    while (fgets(line, sizeof(line), f)) {
        if (all || !noise(line))
            fprintf(stderr, "  openssl: %s", line);
    }
    fclose(f);
}

static int run(const kwt_cmd *c, const char *cnf, char **stdout_to, char **stderr_to)
{
    if (stdout_to)
        *stdout_to = NULL;
    if (stderr_to)
        *stderr_to = NULL;
    if (kwt_g.dry_run && !stderr_to) {
        kwt_print_argv(stdout, c, cnf);
        return 0;
    }
    if (kwt_g.verbose)
        kwt_print_argv(stderr, c, cnf);
    int outp[2] = {-1, -1};
    if (stdout_to && pipe2(outp, O_CLOEXEC) != 0)
        return kwt_err(KWT_FAIL, "pipe: %s", strerror(errno));
    char errtmpl[] = "/tmp/keyward-err.XXXXXX";
    int errfd = mkstemp(errtmpl);
    if (errfd >= 0)
        unlink(errtmpl);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return kwt_err(KWT_FAIL, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (cnf)
            setenv("OPENSSL_CONF", cnf, 1);
        if (stdout_to)
            dup2(outp[1], 1);
        else if (kwt_g.json) /* keep machine output clean */
            dup2(errfd >= 0 ? errfd : 2, 1);
        if (errfd >= 0 && (!kwt_g.verbose || stderr_to))
            dup2(errfd, 2);
        execvp(c->argv[0], (char *const *)c->argv);
        fprintf(stderr, "keyward: cannot run %s: %s\n", c->argv[0], strerror(errno));
        _exit(127);
    }
    kwt_buf out = {0};
    if (stdout_to) {
        close(outp[1]);
        char tmp[8192];
        for (;;) {
            ssize_t n = read(outp[0], tmp, sizeof(tmp));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            kwt_buf_addn(&out, tmp, (size_t)n);
        }
        close(outp[0]);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (stderr_to && errfd >= 0) {
        kwt_buf eb = {0};
        kwt_buf_addn(&eb, "", 0);
        char tmp[4096];
        ssize_t n;
        if (lseek(errfd, 0, SEEK_SET) == 0)
            while ((n = read(errfd, tmp, sizeof(tmp))) > 0)
                kwt_buf_addn(&eb, tmp, (size_t)n);
        *stderr_to = eb.s;
    } else if (!ok) {
        fprintf(stderr, "keyward: this openssl command failed (exit %d):\n  ",
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        kwt_print_argv(stderr, c, cnf);
        if (errfd >= 0)
            show_errors(errfd, false);
    }
    if (errfd >= 0)
        close(errfd);
    if (stdout_to) {
        if (!out.s)
            kwt_buf_addn(&out, "", 0);
        *stdout_to = out.s;
    }
    return ok ? 0 : KWT_FAIL;
}

int kwt_run(const kwt_cmd *c, const char *cnf, char **stdout_to)
{
    return run(c, cnf, stdout_to, NULL);
}

int kwt_run_quiet(const kwt_cmd *c, const char *cnf, char **stdout_to, char **stderr_to)
{
    return run(c, cnf, stdout_to, stderr_to);
}

int kwt_run_progress(const kwt_cmd *c, const char *cnf, const char *tick, int total)
{
    if (kwt_g.dry_run || !isatty(2) || kwt_g.verbose)
        return kwt_run(c, cnf, NULL);
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0)
        return kwt_err(KWT_FAIL, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return kwt_err(KWT_FAIL, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (cnf)
            setenv("OPENSSL_CONF", cnf, 1);
        dup2(errp[1], 2);
        dup2(errp[1], 1);
        execvp(c->argv[0], (char *const *)c->argv);
        _exit(127);
    }
    close(errp[1]);
    FILE *f = fdopen(errp[0], "r");
    char line[2048];
    int done = 0;
    kwt_buf keep = {0}; /* everything, shown only if openssl fails */
    while (f && fgets(line, sizeof(line), f)) {
        kwt_buf_add(&keep, line);
        if (strstr(line, tick)) {
            done++;
            int width = 40, fill = total ? done * width / total : width;
            fprintf(stderr, "\r[%.*s%*s] %d/%d", fill, "########################################",
                    width - fill, "", done, total);
        }
    }
    if (f)
        fclose(f);
    fputc('\n', stderr);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok) {
        fprintf(stderr, "keyward: this openssl command failed:\n  ");
        kwt_print_argv(stderr, c, cnf);
        for (char *l = keep.s, *nl; l && *l; l = nl ? nl + 1 : NULL) {
            nl = strchr(l, '\n');
            if (nl)
                *nl = '\0';
            if (!noise(l))
                fprintf(stderr, "  openssl: %s\n", l);
        }
    }
    kwt_buf_free(&keep);
    return ok ? 0 : KWT_FAIL;
}
