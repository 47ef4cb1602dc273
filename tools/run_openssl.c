/* SPDX-License-Identifier: Apache-2.0 */
/* Every CA operation is a stock `openssl` command run with an argument vector (never a shell)
 * and OPENSSL_CONF set to a generated config, so an operator can repeat each step by hand.
 * --dry-run prints the steps as a shell script instead of running them. A failed run is
 * explained from openssl's messages. */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

bool kwt_children_no_tty;

/* The PIN typed at keyward's one prompt: a sealed memory file that every openssl child inherits
 * (-1: none), and a private directory holding the config the children load: the command's own
 * config included, with keyward-pin-source = fd:N on top (never written into the CA's files). */
static int pin_fd = -1;
static char *pin_dir, *pin_cnf;

static void pin_forget(void)
{
    if (pin_fd >= 0)
        close(pin_fd);
    pin_fd = -1;
    if (pin_dir)
        kwt_rm_rf(pin_dir);
    free(pin_dir);
    free(pin_cnf);
    pin_dir = pin_cnf = NULL;
}

void kwt_run_hand_pin(int fd, char *dir)
{
    pin_fd = fd;
    pin_dir = dir;
    kwt_children_no_tty = true; /* the children have the PIN: none asks again */
    atexit(pin_forget);
}

bool kwt_run_has_pin(void)
{
    return pin_fd >= 0;
}

/* The config a child loads: cnf, or (after a prompt) a wrapper that includes it and adds the
 * PIN's descriptor to the provider's section. Written before the fork. */
static const char *child_cnf(const char *cnf)
{
    if (pin_fd < 0 || !cnf || !pin_dir)
        return cnf;
    char *text =
        kwt_asprintf(".include %s\n\n[keyward_sect]\nkeyward-pin-source = fd:%d\n", cnf, pin_fd);
    char *p = kwt_path(pin_dir, "openssl.cnf");
    int rc = kwt_write_atomic(p, text, strlen(text), 0600);
    free(text);
    free(pin_cnf);
    pin_cnf = rc == 0 ? p : NULL;
    if (rc != 0)
        free(p);
    return pin_cnf ? pin_cnf : cnf;
}

/* openssl's error dump also names engines it failed to autoload; that is noise here. */
static bool noise(const char *line)
{
    return strstr(line, "rdrand") || strstr(line, "DSO support routines") ||
           strstr(line, "engine routines");
}

/* openssl's messages as continuation lines of a keyward error (every error line starts
 * "keyward:", see keyward(1)). */
static void show_errors(const char *text, bool all)
{
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        int n = nl ? (int)(nl - l) : (int)strlen(l);
        char line[2048];
        snprintf(line, sizeof(line), "%.*s", n, l);
        if (*line && (all || !noise(line)))
            fprintf(stderr, "keyward:   openssl: %s\n", line);
        l = nl ? nl + 1 : NULL;
    }
}

/* The value of "key = value" in an openssl.cnf that keyward generated (first match). */
static char *cnf_value(const char *cnf, const char *key)
{
    char *text = cnf ? kwt_read_file(cnf, NULL) : NULL;
    char *val = NULL;
    size_t kl = strlen(key);
    for (char *l = text; l && *l && !val;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        if (!strncmp(l, key, kl) && !strncmp(l + kl, " = ", 3))
            val = kwt_strdup(l + kl + 3);
        l = nl ? nl + 1 : NULL;
    }
    free(text);
    return val;
}

/* The first key URI the command names (-key, -keyfile, -in, keyward_uri:...). */
static const char *cmd_key(const kwt_cmd *c)
{
    for (int i = 2; i < c->argc; i++) {
        const char *a = c->argv[i];
        if (!strncmp(a, "keyward_uri:", 12))
            a += 12;
        if (!strncmp(a, "pkcs11:", 7))
            return a;
    }
    return NULL;
}

/* Where the PIN of a run came from, for the hint (NULL: nowhere, openssl's prompt). */
static char *pin_origin(const char *uri, const char *cnf)
{
    const char *p = uri ? strstr(uri, "pin-source=") : NULL;
    if (p) {
        p += 11;
        return kwt_asprintf("%.*s (pin-source in the URI)", (int)strcspn(p, ";?&"), p);
    }
    char *v = cnf_value(cnf, "keyward-pin-source");
    if (!v)
        return NULL;
    /* fd: is keyward's own prompt (keys.c): typed, like openssl's */
    char *r = !strncmp(v, "fd:", 3)
                  ? NULL
                  : kwt_asprintf("%s (pin_source of keyward.conf, or --pin-source)", v);
    free(v);
    return r;
}

/* A keyward error line of openssl's dump: "...:error:CODE:keyward:FUNC:REASON:FILE:LINE:DATA". */
static bool keyward_line(const char *line, char *reason, size_t rl, char *data, size_t dl)
{
    const char *p = strstr(line, ":error:");
    if (!p || !(p = strchr(p + 7, ':')) || strncmp(p + 1, "keyward:", 8) != 0)
        return false;
    p += 9;
    const char *f[5]; /* func, reason, file, line, data */
    for (int i = 0; i < 4; i++) {
        f[i] = p;
        if (!(p = strchr(p, ':')))
            return false;
        p++;
    }
    f[4] = p;
    snprintf(reason, rl, "%.*s", (int)(strchr(f[1], ':') - f[1]), f[1]);
    snprintf(data, dl, "%.*s", (int)strcspn(f[4], "\n"), f[4]);
    return true;
}

static const struct {
    const char *reason, *hint;
} hints[] = {
    {"PIN required",
     "give the PIN in a file: --pin-source file:PATH (req, uri2pem, ca init; kept in "
     "keyward.conf as pin_source) or pin-source=file:PATH in the URI (mode 0600), or run "
     "keyward on a terminal to be asked"},
    {"PIN file unusable",
     "the PIN file must be a regular file owned by you, mode 0600 or 0400, with the PIN on one "
     "line"},
    {"PIN locked", "the token locked its user PIN after wrong tries: reset it with the security "
                   "officer PIN (e.g. pkcs11-tool --login --login-type so --init-pin)"},
    {"token not found",
     "is the token present, and does token= of the URI match its label? (p11tool "
     "--list-tokens; the module is KEYWARD_MODULE, --module or module in keyward.conf)"},
    {"token not present", "the token went away (unplugged, or its service stopped): reconnect it"},
    {"object not found", "there is no such key on the token: check object= and id= of the URI"},
    {"URI matches more than one key", "make the URI name one key (add object= or id=)"},
    {"PKCS#11 module cannot be loaded",
     "check the PKCS#11 module path (KEYWARD_MODULE, --module, or module in keyward.conf)"},
    {"mechanism not supported by the token", "the token cannot do this algorithm"},
};

static bool explain(const kwt_cmd *c, const char *cnf, const char *err, int depth);

/* A key file (KEYWARD KEY URI PEM) that openssl could not load: the decoder's reason is lost
 * ("STORE routines::unsupported"), so look at the URI it names directly. */
static bool explain_key_file(const kwt_cmd *c, const char *cnf, const char *err, int depth)
{
    const char *from = strstr(err, "key from ");
    if (depth > 0 || !from || !strstr(err, "unsupported"))
        return false;
    char *path = kwt_asprintf("%.*s", (int)strcspn(from + 9, "\n"), from + 9);
    char *pem = kwt_read_file(path, NULL);
    bool named = false;
    if (pem && strstr(pem, "-----BEGIN KEYWARD KEY URI-----")) {
        BIO *b = BIO_new_mem_buf(pem, -1);
        char *name = NULL, *hdr = NULL;
        unsigned char *der = NULL;
        long len = 0;
        if (b && PEM_read_bio(b, &name, &hdr, &der, &len) > 0) {
            /* SEQUENCE { version INTEGER, uri UTF8String } */
            const unsigned char *q = der;
            ASN1_SEQUENCE_ANY *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &q, len);
            ASN1_TYPE *t = seq && sk_ASN1_TYPE_num(seq) >= 2 ? sk_ASN1_TYPE_value(seq, 1) : NULL;
            if (t && t->type == V_ASN1_UTF8STRING) {
                char *uri = kwt_asprintf("%.*s", ASN1_STRING_length(t->value.utf8string),
                                         (const char *)ASN1_STRING_get0_data(t->value.utf8string));
                kwt_cmd p;
                kwt_cmd_init(&p, "pkey");
                kwt_cmd_opt(&p, "-in", uri);
                kwt_cmd_add(&p, "-noout");
                char *pout = NULL, *perr = NULL;
                if (kwt_run_quiet(&p, cnf, &pout, &perr) != 0 && perr)
                    named = explain(&p, cnf, perr, depth + 1);
                if (named)
                    fprintf(stderr,
                            "keyward:   (the key file %s names %s; openssl %s said only "
                            "\"unsupported\")\n",
                            path, uri, c->argv[1]);
                free(pout);
                free(perr);
                free(uri);
            }
            sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
        }
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        OPENSSL_free(der);
        BIO_free(b);
    }
    free(pem);
    free(path);
    return named;
}

static bool explain(const kwt_cmd *c, const char *cnf, const char *err, int depth)
{
    /* the provider itself missing: openssl 3.0 goes on without it and then fails at the URI */
    char *prov = cnf_value(cnf, "module");
    if (prov && access(prov, R_OK) != 0) {
        kwt_cause("keyward.so not found at %s (the provider that reaches the token): set "
                  "KEYWARD_PROVIDER_PATH to it (in a build tree: BUILDDIR/provider/keyward.so) or "
                  "install keyward",
                  prov);
        free(prov);
        return true;
    }
    free(prov);
    char reason[128] = "", data[1024] = "";
    bool found = false;
    for (const char *l = err; l && *l && !found;) {
        found = keyward_line(l, reason, sizeof(reason), data, sizeof(data));
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    if (!found)
        return explain_key_file(c, cnf, err, depth);
    const char *key = cmd_key(c);
    char *what = !key ? kwt_asprintf("openssl %s failed", c->argv[1])
                 : !strcmp(c->argv[1], "genpkey")
                     ? kwt_asprintf("generating the key %s on its token failed", key)
                     : kwt_asprintf("openssl %s could not use the key %s", c->argv[1], key);
    char *hint = NULL;
    if (!strcmp(reason, "PIN incorrect")) {
        char *from = pin_origin(key, cnf);
        hint = from ? kwt_asprintf("the token refused the PIN from %s: put the token's user PIN "
                                   "there (wrong tries can lock the token)",
                                   from)
                    : kwt_strdup("the token refused the PIN that was typed");
        free(from);
    } else if (strstr(data, "CKR_KEY_FUNCTION_NOT_PERMITTED")) {
        hint = kwt_strdup("the token does not allow this key here; with the kernel keyring token "
                          "this process does not possess the keyring: link @u into the session "
                          "keyring (keyctl link @u @s) or use a session: token");
    } else {
        for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]) && !hint; i++)
            if (!strcmp(reason, hints[i].reason))
                hint = kwt_strdup(hints[i].hint);
    }
    kwt_cause("%s: %s (%s)%s%s", what, reason, data, hint ? "; " : "", hint ? hint : "");
    free(what);
    free(hint);
    return true;
}

bool kwt_explain_failure(const kwt_cmd *c, const char *cnf, const char *err)
{
    return explain(c, cnf, err ? err : "", 0);
}

/* A failed run: its cause when one is recognised, else the command and openssl's messages. */
static void failed(const kwt_cmd *c, const char *cnf, int st, const char *err)
{
    if (kwt_explain_failure(c, cnf, err)) {
        if (kwt_g.verbose) {
            fputs("keyward:   the openssl command was: ", stderr);
            kwt_print_argv(stderr, c, cnf);
            show_errors(err, true);
        }
        return;
    }
    fprintf(stderr, "keyward: this openssl command failed (exit %d): ",
            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    kwt_print_argv(stderr, c, cnf);
    show_errors(err, false);
}

void kwt_run_failed(const kwt_cmd *c, const char *cnf, const char *err)
{
    failed(c, cnf, 1 << 8, err ? err : ""); /* as an exit status of 1 */
}

/* Start openssl with the CA's config, never on a terminal it could prompt on; out_fd and err_fd
 * (when >= 0) become its stdout and stderr. */
static pid_t spawn(const kwt_cmd *c, const char *cnf, int out_fd, int err_fd)
{
    const char *ccnf = child_cnf(cnf);
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) != 0)
        return pid;
    if (ccnf)
        setenv("OPENSSL_CONF", ccnf, 1);
    if (kwt_children_no_tty) { /* openssl must not prompt by itself: no terminal, no stdin */
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        setsid();
        if (nul >= 0)
            dup2(nul, 0);
    }
    if (out_fd >= 0)
        dup2(out_fd, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
    execvp(c->argv[0], (char *const *)c->argv);
    fprintf(stderr, "keyward: cannot run %s: %s\n", c->argv[0], strerror(errno));
    _exit(127);
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
    int out_fd = stdout_to ? outp[1] : kwt_g.json ? (errfd >= 0 ? errfd : 2) /* clean JSON */ : -1;
    pid_t pid = spawn(c, cnf, out_fd, errfd >= 0 && (!kwt_g.verbose || stderr_to) ? errfd : -1);
    if (pid < 0)
        return kwt_err(KWT_FAIL, "fork: %s", strerror(errno));
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
    kwt_buf eb = {0};
    kwt_buf_addn(&eb, "", 0);
    if (errfd >= 0 && (stderr_to || !ok)) {
        char tmp[4096];
        ssize_t n;
        if (lseek(errfd, 0, SEEK_SET) == 0)
            while ((n = read(errfd, tmp, sizeof(tmp))) > 0)
                kwt_buf_addn(&eb, tmp, (size_t)n);
    }
    if (stderr_to) {
        *stderr_to = eb.s;
        eb.s = NULL;
    } else if (!ok) {
        failed(c, cnf, st, eb.s);
    }
    kwt_buf_free(&eb);
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

int kwt_run_public(const kwt_cmd *c, const char *cnf, const char *out)
{
    int rc = kwt_run(c, cnf, NULL);
    /* published to relying parties, whatever the operator's umask */
    if (rc == 0 && !kwt_g.dry_run && chmod(out, 0644) != 0)
        rc = kwt_err(KWT_FAIL, "cannot make %s public: %s", out, strerror(errno));
    return rc;
}

int kwt_run_quiet(const kwt_cmd *c, const char *cnf, char **stdout_to, char **stderr_to)
{
    return run(c, cnf, stdout_to, stderr_to);
}

int kwt_run_progress(const kwt_cmd *c, const char *cnf, const char *tick, int total)
{
    if (kwt_g.dry_run || !isatty(2) || kwt_g.verbose || kwt_g.quiet)
        return kwt_run(c, cnf, NULL);
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0)
        return kwt_err(KWT_FAIL, "pipe: %s", strerror(errno));
    pid_t pid = spawn(c, cnf, errp[1], errp[1]);
    if (pid < 0)
        return kwt_err(KWT_FAIL, "fork: %s", strerror(errno));
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
    if (!ok)
        failed(c, cnf, st, keep.s ? keep.s : "");
    kwt_buf_free(&keep);
    return ok ? 0 : KWT_FAIL;
}
