/* SPDX-License-Identifier: Apache-2.0 */
/* keyward: CA and certificate lifecycle with every private key on a token.
 * main.c parses the global options and dispatches to one file per subcommand group. */
#include "kwt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <keyward/keyward.h>
#ifdef KWT_HAVE_KEYRING
#include "keyring.h"
#endif

static int help(int argc, char **argv)
{
#ifdef KWT_HAVE_KEYRING
    /* the keyring texts live with keyring.c (also built as a stand-alone tool) */
    if (argc >= 2 && !strcmp(argv[1], "keyring")) {
        char *kargv[] = {"keyring", argc > 2 ? argv[2] : "--help", "--help", NULL};
        return kwt_keyring_main(argc > 2 ? 3 : 2, kargv);
    }
#endif
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (int i = 1; i < argc; i++) {
        if (i > 1)
            kwt_buf_add(&b, " ");
        kwt_buf_add(&b, argv[i]);
    }
    int rc = kwt_usage(b.s, stdout);
    if (rc != 0)
        rc = kwt_err(KWT_USAGE, "no help for '%s' (try keyward --help)", b.s);
    kwt_buf_free(&b);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
} ca_cmds[] = {
    {"init", kwt_cmd_ca_init},       {"sign", kwt_cmd_ca_sign},       {"renew", kwt_cmd_ca_renew},
    {"revoke", kwt_cmd_ca_revoke},   {"crl", kwt_cmd_ca_crl},         {"list", kwt_cmd_ca_list},
    {"export", kwt_cmd_ca_export},   {"ocsp", kwt_cmd_ca_ocsp},       {"rotate", kwt_cmd_ca_rotate},
    {"stats", kwt_cmd_ca_stats},     {"metrics", kwt_cmd_ca_metrics}, {"backup", kwt_cmd_ca_backup},
    {"restore", kwt_cmd_ca_restore}, {"report", kwt_cmd_ca_report},   {"est", kwt_cmd_ca_est},
};

int kwt_cmd_ca(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        kwt_usage("ca", argc < 2 ? stderr : stdout);
        return argc < 2 ? KWT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof(ca_cmds) / sizeof(ca_cmds[0]); i++)
        if (!strcmp(argv[1], ca_cmds[i].name))
            return ca_cmds[i].fn(argc - 1, argv + 1);
    return kwt_err(KWT_USAGE, "unknown command 'ca %s' (see keyward help ca)", argv[1]);
}

static int dispatch(int argc, char **argv)
{
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        kwt_usage("", stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("keyward %s\n", KEYWARD_VERSION_STR);
        return 0;
    }
    if (!strcmp(cmd, "help"))
        return argc > 2 ? help(argc - 1, argv + 1) : (kwt_usage("", stdout), 0);
    if (!strcmp(cmd, "ca"))
        return kwt_cmd_ca(argc - 1, argv + 1);
    if (!strcmp(cmd, "req"))
        return kwt_cmd_req(argc - 1, argv + 1);
    if (!strcmp(cmd, "est"))
        return kwt_cmd_est(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify"))
        return kwt_cmd_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return kwt_cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "show"))
        return kwt_cmd_show(argc - 1, argv + 1);
    if (!strcmp(cmd, "uri2pem"))
        return kwt_cmd_uri2pem(argc - 1, argv + 1);
#ifdef KWT_HAVE_KEYRING
    if (!strcmp(cmd, "keyring"))
        return kwt_keyring_main(argc - 1, argv + 1);
#endif
    return kwt_err(KWT_USAGE, "unknown command '%s' (see keyward --help)", cmd);
}

/* -q (cron): what a command prints on stdout goes to a memory file, so a run that works is
 * silent; when it fails, the FAIL lines of its report (check, verify) are shown as errors. */
static int quiet_run(int argc, char **argv)
{
    fflush(stdout);
    int saved = dup(1), mem = memfd_create("keyward-stdout", MFD_CLOEXEC);
    if (saved < 0 || mem < 0 || dup2(mem, 1) < 0) {
        if (saved >= 0)
            close(saved);
        if (mem >= 0)
            close(mem);
        return dispatch(argc, argv); /* not quiet, but working */
    }
    close(mem);
    int rc = dispatch(argc, argv);
    fflush(stdout);
    kwt_buf out = {0};
    char tmp[8192];
    ssize_t n;
    if (rc != 0 && lseek(1, 0, SEEK_SET) == 0)
        while ((n = read(1, tmp, sizeof(tmp))) > 0)
            kwt_buf_addn(&out, tmp, (size_t)n);
    dup2(saved, 1);
    close(saved);
    for (char *l = out.s, *nl; l && *l; l = nl ? nl + 1 : NULL) {
        nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        if (!strncmp(l, "FAIL", 4))
            fprintf(stderr, "keyward: %s\n", l);
    }
    kwt_buf_free(&out);
    return rc;
}

/* ---- --json: one envelope around every command's output ----
 * {"ok":BOOL, "command":"ca sign", "exit":N, "result":VALUE|null,
 *  "error":null|{"code":"usage"|"failed","message":TEXT}}
 * The command's own JSON (what it prints on stdout under --json) becomes "result"; text that a
 * command prints without a JSON form (help, version) becomes {"text":...}.
 * docs/keyward-json.schema.json describes every command's result. */

/* A small validating JSON scanner: advances *p past one value; false on a syntax error. */
static bool json_ws(const char **p, const char *e)
{
    while (*p < e && (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r'))
        (*p)++;
    return *p < e;
}

static bool json_value(const char **p, const char *e, int depth);

static bool json_string(const char **p, const char *e)
{
    if (*p >= e || **p != '"')
        return false;
    for ((*p)++; *p < e; (*p)++) {
        unsigned char c = (unsigned char)**p;
        if (c == '"') {
            (*p)++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            (*p)++;
            if (*p >= e || !strchr("\"\\/bfnrtu", **p))
                return false;
            if (**p == 'u') {
                for (int i = 0; i < 4; i++) {
                    (*p)++;
                    if (*p >= e || !strchr("0123456789abcdefABCDEF", **p) || !**p)
                        return false;
                }
            }
        }
    }
    return false;
}

static bool json_value(const char **p, const char *e, int depth)
{
    if (depth > 64 || !json_ws(p, e))
        return false;
    char c = **p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        (*p)++;
        if (!json_ws(p, e))
            return false;
        if (**p == close) {
            (*p)++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                if (!json_ws(p, e) || !json_string(p, e) || !json_ws(p, e) || **p != ':')
                    return false;
                (*p)++;
            }
            if (!json_value(p, e, depth + 1) || !json_ws(p, e))
                return false;
            if (**p == close) {
                (*p)++;
                return true;
            }
            if (**p != ',')
                return false;
            (*p)++;
        }
    }
    if (c == '"')
        return json_string(p, e);
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++)
        if ((size_t)(e - *p) >= strlen(words[i]) && !strncmp(*p, words[i], strlen(words[i]))) {
            *p += strlen(words[i]);
            return true;
        }
    const char *s = *p;
    if (*p < e && **p == '-')
        (*p)++;
    while (*p < e && strchr("0123456789.eE+-", **p) && **p)
        (*p)++;
    return *p > s && (s[0] != '-' || *p > s + 1);
}

/* The number of JSON values in s (0 when empty), or -1 when it is not a sequence of them. */
static int json_values(const char *s, size_t len)
{
    const char *p = s, *e = s + len;
    int n = 0;
    while (json_ws(&p, e)) {
        if (!json_value(&p, e, 0))
            return -1;
        n++;
    }
    return n;
}

static void command_name(int argc, char **argv, kwt_buf *b)
{
    kwt_buf_addn(b, "", 0);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        kwt_buf_add(b, "help");
        return;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        kwt_buf_add(b, "version");
        return;
    }
    for (int i = 1; i < argc && i < 3; i++) {
        if (argv[i][0] == '-')
            break;
        kwt_buf_printf(b, "%s%s", i > 1 ? " " : "", argv[i]);
        if (strcmp(argv[i], "ca") && strcmp(argv[i], "keyring") && strcmp(argv[i], "est") &&
            strcmp(argv[i], "help"))
            break;
    }
}

static int json_run(int argc, char **argv)
{
    fflush(stdout);
    int saved = dup(1), mem = memfd_create("keyward-json", MFD_CLOEXEC);
    if (saved < 0 || mem < 0 || dup2(mem, 1) < 0) {
        if (saved >= 0)
            close(saved);
        if (mem >= 0)
            close(mem);
        return kwt_err(KWT_FAIL, "cannot capture the output for --json: %s", strerror(errno));
    }
    close(mem);
    int rc = kwt_g.dry_run
                 ? kwt_err(KWT_USAGE, "--dry-run prints a shell script, which has no --json form")
             : argc < 2 ? kwt_err(KWT_USAGE, "no command given (see keyward --help)")
                        : dispatch(argc, argv);
    fflush(stdout);
    kwt_buf out = {0}, env = {0}, cmd = {0};
    kwt_buf_addn(&out, "", 0);
    char tmp[8192];
    ssize_t n;
    if (lseek(1, 0, SEEK_SET) == 0)
        while ((n = read(1, tmp, sizeof(tmp))) > 0)
            kwt_buf_addn(&out, tmp, (size_t)n);
    dup2(saved, 1);
    close(saved);
    command_name(argc, argv, &cmd);
    if (!cmd.len)
        kwt_buf_add(&cmd, "(none)");
    int values = json_values(out.s, out.len);
    kwt_buf_add(&env, "{\"ok\":");
    kwt_buf_add(&env, rc == 0 ? "true" : "false");
    kwt_buf_add(&env, ",\"command\":");
    kwt_buf_json_str(&env, cmd.s);
    kwt_buf_printf(&env, ",\"exit\":%d,\"result\":", rc);
    if (values == 1) {
        /* trim the trailing newline of the command's own document */
        while (out.len && (out.s[out.len - 1] == '\n' || out.s[out.len - 1] == ' '))
            out.s[--out.len] = '\0';
        kwt_buf_add(&env, out.s);
    } else if (values == 0) {
        kwt_buf_add(&env, "null");
    } else {
        /* text without a JSON form (help, version) */
        kwt_buf_add(&env, "{\"text\":");
        kwt_buf_json_str(&env, out.s);
        kwt_buf_add(&env, "}");
        if (values > 1)
            fprintf(stderr, "keyward: internal: %d JSON documents under --json\n", values);
    }
    kwt_buf_add(&env, ",\"error\":");
    if (rc == 0) {
        kwt_buf_add(&env, "null");
    } else {
        kwt_buf_printf(&env, "{\"code\":\"%s\",\"message\":", rc == KWT_USAGE ? "usage" : "failed");
        const char *m = kwt_last_error();
        kwt_buf_json_str(&env, m && *m ? m : "see the result");
        kwt_buf_add(&env, "}");
    }
    kwt_buf_add(&env, "}\n");
    fputs(env.s, stdout);
    fflush(stdout);
    kwt_buf_free(&out);
    kwt_buf_free(&env);
    kwt_buf_free(&cmd);
    return rc;
}

/* keyward __complete WORD...: for the bash completion (tools/keyward.bash-completion). Hidden
 * from the help; reads nothing but the usage texts, so it needs no CA directory or token. */
static int complete(int argc, char **argv)
{
    char *extra = NULL;
#ifdef KWT_HAVE_KEYRING
    /* the keyring's texts, as `keyward help keyring` prints them (glibc: stdout is a variable) */
    size_t len = 0;
    FILE *mem = open_memstream(&extra, &len), *out = stdout;
    if (mem) {
        char *kargv[] = {"keyring", "--help", NULL};
        fflush(stdout);
        stdout = mem;
        kwt_keyring_main(2, kargv);
        stdout = out;
        fclose(mem);
    }
#endif
    int rc = kwt_complete(argc, argv, extra, stdout);
    free(extra);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "__complete"))
        return complete(argc - 2, argv + 2);
    /* Global options may come anywhere before "--"; take them out of argv. */
    const char *env_dir = getenv("KEYWARD_DIR");
    kwt_g.dir = env_dir && *env_dir ? env_dir : "./pki";
    int out = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(argv[i], "--dir")) {
            if (i + 1 >= argc)
                return kwt_err(KWT_USAGE, "--dir needs a directory");
            kwt_g.dir = argv[++i];
        } else if (!strncmp(argv[i], "--dir=", 6)) {
            kwt_g.dir = argv[i] + 6;
        } else if (!strcmp(argv[i], "--notify") || !strncmp(argv[i], "--notify=", 9)) {
            if (argv[i][8] == '=')
                kwt_g.notify = argv[i] + 9;
            else if (i + 1 < argc)
                kwt_g.notify = argv[++i];
            else
                return kwt_err(KWT_USAGE, "--notify needs the absolute path of a program");
            if (kwt_g.notify[0] != '/')
                return kwt_err(KWT_USAGE,
                               "--notify %s: give the absolute path of the program to run (it is "
                               "run directly, without a shell or arguments)",
                               kwt_g.notify);
        } else if (!strcmp(argv[i], "--dry-run")) {
            kwt_g.dry_run = true;
        } else if (!strcmp(argv[i], "--json")) {
            kwt_g.json = true;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            kwt_g.verbose++;
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            kwt_g.quiet = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;
    argv[argc] = NULL;
    if (!*kwt_g.dir)
        return kwt_err(KWT_USAGE, "--dir is empty");
    if (argc < 2 && !kwt_g.json) {
        kwt_usage("", stderr);
        return KWT_USAGE;
    }
    if (kwt_g.quiet && kwt_g.verbose)
        return kwt_err(KWT_USAGE, "-q and -v contradict each other");
    /* a --dry-run script is what was asked for: -q keeps it */
    int rc = kwt_g.json                      ? json_run(argc, argv)
             : kwt_g.quiet && !kwt_g.dry_run ? quiet_run(argc, argv)
                                             : dispatch(argc, argv);
    /* the command is done and the CA unlocked: its notifications (never change rc) */
    kwt_notify_run();
    return rc;
}
