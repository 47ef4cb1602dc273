/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca init`: the CA directory is built under a temporary name and renamed into place,
 * so a crash leaves either no CA or a complete one. */
#include "kwt.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int mk(const char *base, const char *sub)
{
    char *p = sub ? kwt_path(base, sub) : kwt_strdup(base);
    int rc = 0;
    if (kwt_g.dry_run)
        printf("mkdir -m 700 %s\n", p);
    else if (mkdir(p, 0700) != 0)
        rc = kwt_err(KWT_FAIL, "cannot create %s: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int put(const char *base, const char *name, const char *content)
{
    char *p = kwt_path(base, name);
    int rc = 0;
    if (kwt_g.dry_run)
        kwt_dry_show_file(p, content);
    else if (kwt_write_atomic(p, content, strlen(content), 0600) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int lnk(const char *base, const char *name, const char *target)
{
    char *p = kwt_path(base, name);
    int rc = 0;
    if (kwt_g.dry_run)
        printf("ln -sfn %s %s\n", target, p);
    else if (symlink(target, p) != 0)
        rc = kwt_err(KWT_FAIL, "cannot create %s: %s", p, strerror(errno));
    free(p);
    return rc;
}

/* Absolute path of dir, which need not exist yet (its parent must). */
static char *abs_dir(const char *dir)
{
    char *a = kwt_strdup(dir), *b = kwt_strdup(dir);
    char *parent = dirname(a), *base = basename(b);
    char real[PATH_MAX];
    char *r = NULL;
    if (realpath(parent, real) && strcmp(base, ".") && strcmp(base, "..") && strcmp(base, "/"))
        r = kwt_asprintf("%s/%s", strcmp(real, "/") ? real : "", base);
    free(a);
    free(b);
    return r;
}

/* Self-signed CA certificate for the key at conf->ca_key, mode 0644. */
int kwt_ca_selfsign(kwt_ca *ca, const char *subj, int days, const char *out)
{
    char serial[40], setserial[48], ds[16];
    if (kwt_random_serial(serial, sizeof(serial)) != 0)
        return kwt_err(KWT_FAIL, "no random numbers");
    snprintf(setserial, sizeof(setserial), "0x%s", serial);
    snprintf(ds, sizeof(ds), "%d", days);
    kwt_cmd c;
    kwt_cmd_init(&c, "req");
    kwt_cmd_add(&c, "-new");
    kwt_cmd_add(&c, "-x509");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_opt(&c, "-key", ca->conf.ca_key);
    char mdopt[16];
    snprintf(mdopt, sizeof(mdopt), "-%s", kwt_md_for_key_type(ca->conf.key_type));
    kwt_cmd_add(&c, mdopt);
    kwt_cmd_opt(&c, "-subj", subj);
    kwt_cmd_opt(&c, "-days", ds);
    kwt_cmd_opt(&c, "-set_serial", setserial);
    kwt_cmd_opt(&c, "-extensions", "ext_ca");
    kwt_cmd_opt(&c, "-out", out);
    return kwt_run_public(&c, kwt_ca_cnf(ca), out);
}

int kwt_cmd_ca_init(int argc, char **argv)
{
    const char *key = NULL, *subject = NULL, *key_type = "ec:P-256", *days_s = "3650",
               *module = getenv("KEYWARD_MODULE"), *pin_source = NULL, *crl_days = NULL,
               *policy = NULL, *crl_url = NULL, *default_days = NULL;
    bool use_existing = false, force = false;
    kwt_optspec spec[] = {{"--key", &key, NULL},
                          {"--subject", &subject, NULL},
                          {"--key-type", &key_type, NULL},
                          {"--days", &days_s, NULL},
                          {"--module", &module, NULL},
                          {"--pin-source", &pin_source, NULL},
                          {"--crl-days", &crl_days, NULL},
                          {"--default-days", &default_days, NULL},
                          {"--policy-match", &policy, NULL},
                          {"--crl-url", &crl_url, NULL},
                          {"--use-existing", NULL, &use_existing},
                          {"--force", NULL, &force},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca init", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *why, *alg;
    char param[64];
    int days;
    if (!key || !subject)
        return kwt_err(KWT_USAGE, "ca init: --key URI and --subject DN are required");
    if (!kwt_valid_uri(key, &why))
        return kwt_err(KWT_USAGE, "--key: %s", why);
    if (kwt_parse_key_type(key_type, &alg, param, sizeof(param), &why) != 0)
        return kwt_err(KWT_USAGE, "--key-type: %s", why);
    if (kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    kwt_ca ca;
    memset(&ca, 0, sizeof(ca));
    ca.lock_fd = -1;
    kwt_conf_defaults(&ca.conf);
    kwt_conf *cf = &ca.conf;
    cf->ca_key = kwt_strdup(key);
    free(cf->key_type);
    cf->key_type = kwt_strdup(key_type);
    rc = KWT_USAGE;
    char *subj = kwt_dn_to_subj(subject, &why);
    if (!subj) {
        kwt_err(KWT_USAGE, "--subject: %s", why);
        goto out;
    }
    if (module) {
        if (!kwt_conf_safe(module) || access(module, R_OK) != 0) {
            kwt_err(KWT_USAGE, "--module %s: not a readable file (or contains $ # quotes)", module);
            goto out;
        }
        cf->module = kwt_strdup(module);
    }
    if (pin_source) {
        struct stat st;
        if (strncmp(pin_source, "file:", 5) != 0 || !kwt_conf_safe(pin_source) ||
            pin_source[5] != '/') {
            kwt_err(KWT_USAGE, "--pin-source must be file:/absolute/path of a file holding the PIN "
                               "(mode 0600 or 0400); a PIN is never taken on the command line");
            goto out;
        }
        if (stat(pin_source + 5, &st) != 0 || (st.st_mode & 077)) {
            kwt_err(KWT_USAGE, "--pin-source %s: the file must exist with mode 0600 or 0400",
                    pin_source + 5);
            goto out;
        }
        cf->pin_source = kwt_strdup(pin_source);
    }
    if (crl_days && kwt_valid_days(crl_days, &cf->crl_days, &why) != 0) {
        kwt_err(KWT_USAGE, "--crl-days: %s", why);
        goto out;
    }
    if (default_days && kwt_valid_days(default_days, &cf->default_days, &why) != 0) {
        kwt_err(KWT_USAGE, "--default-days: %s", why);
        goto out;
    }
    if (policy) {
        if (!kwt_conf_safe(policy) || strpbrk(policy, "=\n")) {
            kwt_err(KWT_USAGE, "--policy-match: a comma list of RDN names like O,OU");
            goto out;
        }
        free(cf->policy_match);
        cf->policy_match = kwt_strdup(policy);
    }
    if (crl_url) {
        if (!kwt_conf_safe(crl_url) || strpbrk(crl_url, " ,") || !strstr(crl_url, "://")) {
            kwt_err(KWT_USAGE, "--crl-url: an http(s) URL without spaces, commas or quotes");
            goto out;
        }
        cf->crl_url = kwt_strdup(crl_url);
    }
    char *final = abs_dir(kwt_g.dir);
    if (!final || !kwt_conf_safe(final) || strchr(final, ' ')) {
        kwt_err(KWT_USAGE,
                "CA directory %s: its parent must exist and the path must not contain "
                "spaces, $, #, quotes or backslashes (it is written into openssl.cnf)",
                kwt_g.dir);
        free(final);
        goto out;
    }
    rc = KWT_FAIL;
    char *confp = kwt_path(final, "keyward.conf");
    bool exists = kwt_exists(confp);
    free(confp);
    if (exists && !force) {
        kwt_err(KWT_FAIL,
                "a CA already exists in %s; re-creating it would invalidate every certificate it "
                "issued. Pass --force to replace it (the old directory is kept as %s.replaced-*)",
                final, final);
        free(final);
        goto out;
    }
    if (!exists && kwt_exists(final) && rmdir(final) != 0 && !kwt_g.dry_run) {
        kwt_err(KWT_FAIL, "%s exists and is not an empty directory nor a keyward CA", final);
        free(final);
        goto out;
    }
    /* Build under a temporary name; in --dry-run the printed steps use the final one. */
    char *build =
        kwt_g.dry_run ? kwt_strdup(final) : kwt_asprintf("%s.init-%ld", final, (long)getpid());
    ca.dir = build;
    if (kwt_g.dry_run)
        printf("#!/bin/sh -e\n# keyward ca init, step by step\numask 077\n");
    else
        kwt_rm_rf(build);
    if (mk(build, NULL) || mk(build, "certs") || mk(build, "issued") || mk(build, "ca") ||
        mk(build, "state.1") || mk(build, "state.1/crl") || lnk(build, "state", "state.1") ||
        lnk(build, "crl", "state/crl"))
        goto fail;
    char serial[40];
    if (kwt_random_serial(serial, sizeof(serial)) != 0) {
        kwt_err(KWT_FAIL, "no random numbers for the serial");
        goto fail;
    }
    strcat(serial, "\n");
    char *state = kwt_path(build, "state");
    char *cnftext = kwt_cnf_text(cf, build, state);
    free(state);
    char *conftext = NULL;
    {
        /* keyward.conf via a temp file so dry-run can show it */
        char *tmpp = kwt_path(build, "keyward.conf");
        if (!kwt_g.dry_run) {
            if (kwt_conf_save(cf, tmpp) != 0) {
                kwt_err(KWT_FAIL, "cannot write %s: %s", tmpp, strerror(errno));
                free(tmpp);
                free(cnftext);
                goto fail;
            }
        } else {
            char *td = kwt_tmpdir();
            char *t = td ? kwt_path(td, "keyward.conf") : NULL;
            if (t && kwt_conf_save(cf, t) == 0)
                conftext = kwt_read_file(t, NULL);
            if (td)
                kwt_rm_rf(td);
            free(t);
            free(td);
            kwt_dry_show_file(tmpp, conftext ? conftext : "");
        }
        free(tmpp);
        free(conftext);
    }
    int prc = put(build, "openssl.cnf", cnftext) || put(build, ".lock", "") ||
              put(build, "state.1/index.txt", "") ||
              put(build, "state.1/index.txt.attr", "unique_subject = no\n") ||
              put(build, "state.1/serial", serial) || put(build, "state.1/crlnumber", "1000\n");
    free(cnftext);
    if (prc)
        goto fail;
    bool created;
    char *cnf = kwt_path(build, "openssl.cnf");
    char *keypem = kwt_path(build, "ca/ca-key-1.pem");
    rc = pin_source ? 0 : kwt_pin_prompt_once(key, cnf); /* genpkey, x509, ca -gencrl */
    if (rc == 0)
        rc = kwt_ensure_key(key, key_type, cnf, !use_existing, true, &created, keypem);
    free(keypem);
    free(cnf);
    if (rc)
        goto fail;
    char *crt = kwt_path(build, "ca.crt");
    rc = kwt_ca_selfsign(&ca, subj, days, crt);
    if (rc == 0) {
        char *gen1 = kwt_path(build, "ca/ca-1.crt");
        if (kwt_g.dry_run)
            printf("cp %s %s\n", crt, gen1);
        else if (kwt_copy_file(crt, gen1, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", gen1, strerror(errno));
        free(gen1);
    }
    free(crt);
    if (rc == 0)
        rc = kwt_ca_make_crl(&ca, 0);
    if (rc)
        goto fail;
    if (!kwt_g.dry_run) {
        if (exists) {
            char *old = kwt_asprintf("%s.replaced-%ld", final, (long)time(NULL));
            if (rename(final, old) != 0) {
                kwt_err(KWT_FAIL, "cannot move the old CA aside: %s", strerror(errno));
                free(old);
                goto fail;
            }
            fprintf(stderr, "keyward: the previous CA was moved to %s\n", old);
            free(old);
        }
        if (rename(build, final) != 0) {
            kwt_err(KWT_FAIL, "cannot move %s into place: %s", build, strerror(errno));
            goto fail;
        }
        char *parent = kwt_strdup(final);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
        kwt_fsync_dir(parent);
        free(parent);
        free(build);
        ca.dir = final;
        final = NULL;
        kwt_ca_write_cnf(&ca); /* paths now name the final directory */
        kwt_clear_error();
        kwt_audit(&ca, "ca init", NULL, NULL, subject, 0);
        if (kwt_g.json) {
            kwt_buf js = {0};
            kwt_buf_add(&js, "{\"dir\":");
            kwt_buf_json_str(&js, ca.dir);
            kwt_buf_printf(&js, ",\"key_created\":%s,\"certificate\":", created ? "true" : "false");
            char *cp = kwt_path(ca.dir, "ca.crt"), *crl = kwt_path(ca.dir, "crl/crl.pem");
            kwt_buf_json_str(&js, cp);
            kwt_buf_add(&js, ",\"crl\":");
            kwt_buf_json_str(&js, crl);
            kwt_buf_add(&js, "}\n");
            fputs(js.s, stdout);
            kwt_buf_free(&js);
            free(cp);
            free(crl);
        } else
            printf("CA created in %s (%s key on the token: %s)\n  certificate: %s/ca.crt\n"
                   "  CRL:         %s/crl/crl.pem\n",
                   ca.dir, created ? "new" : "existing", key, ca.dir, ca.dir);
    } else {
        free(final);
        final = NULL;
    }
    rc = 0;
    goto out;
fail:
    if (!kwt_g.dry_run && ca.dir)
        kwt_rm_rf(ca.dir);
    free(final);
    if (!rc)
        rc = KWT_FAIL;
out:
    free(subj);
    kwt_conf_free(&ca.conf);
    free(ca.dir);
    return rc;
}
