/* SPDX-License-Identifier: Apache-2.0 */
/* An openssl command line: built, printed (--dry-run, -v) in a form the shell takes back, and
 * the files a --dry-run showed instead of writing. */
#include "kwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void kwt_cmd_req_new(kwt_cmd *c, const char *key, const char *subj)
{
    kwt_cmd_init(c, "req");
    kwt_cmd_add(c, "-new");
    kwt_cmd_add(c, "-utf8");
    kwt_cmd_opt(c, "-key", key);
    kwt_cmd_opt(c, "-subj", subj);
}

void kwt_cmd_opt(kwt_cmd *c, const char *opt, const char *val)
{
    kwt_cmd_add(c, opt);
    kwt_cmd_add(c, val);
}

/* Single-quote a word for the shell when it needs it. */
void kwt_shq(FILE *f, const char *s)
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
        kwt_shq(f, cnf);
        fputc(' ', f);
    }
    for (int i = 0; i < c->argc; i++) {
        if (i)
            fputc(' ', f);
        kwt_shq(f, c->argv[i]);
    }
    fputc('\n', f);
}

/* Files a --dry-run printed instead of writing: a dry run still looks at the token with them. */
static struct dry_file {
    char *path, *content;
    struct dry_file *next;
} * dry_files;

const char *kwt_dry_file(const char *path)
{
    for (struct dry_file *f = dry_files; f; f = f->next)
        if (!strcmp(f->path, path))
            return f->content;
    return NULL;
}

void kwt_dry_show_file(const char *path, const char *content)
{
    struct dry_file *f = malloc(sizeof(*f));
    if (f) {
        *f = (struct dry_file){kwt_strdup(path), kwt_strdup(content), dry_files};
        dry_files = f;
    }
    fputs("cat > ", stdout);
    kwt_shq(stdout, path);
    fputs(" <<'KEYWARD_EOF'\n", stdout);
    fputs(content, stdout);
    if (*content && content[strlen(content) - 1] != '\n')
        fputc('\n', stdout);
    fputs("KEYWARD_EOF\n", stdout);
}
