/* SPDX-License-Identifier: Apache-2.0 */
/* The CA directory: config, generated openssl.cnf, locking and crash-safe state.
 *
 * index, serial, crlnumber and the CRL live together in DIR/state.N, and DIR/state is a
 * symlink to the current one. A writer takes an flock on DIR/.lock, copies the state into
 * state.N+1, lets openssl change the copy, fsyncs it and switches the symlink with one rename.
 * A crash anywhere leaves either the old or the new state, never a mix; openssl's own .old
 * files are not relied on. DIR/crl is a symlink to state/crl, so DIR/crl/crl.pem is always the
 * CRL that belongs to the current index. */
#include "kwt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KWT_PROVIDER_DIR
#define KWT_PROVIDER_DIR "/usr/lib/x86_64-linux-gnu/ossl-modules"
#endif

/* A UUID-based OID (ITU-T X.667, arc 2.25) so no registered arc is claimed. */
#define KWT_DEFAULT_DEVICE_OID "2.25.208833640913812316218453327405385622517"

const char *kwt_provider_path(void)
{
    const char *p = getenv("KEYWARD_PROVIDER_PATH");
    return p && *p ? p : KWT_PROVIDER_DIR "/keyward.so";
}

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

static void provider_stanza(kwt_buf *b, const char *module, const char *pin_source)
{
    kwt_buf_add(b, "openssl_conf = openssl_init\n\n[openssl_init]\nproviders = provider_sect\n\n"
                   "[provider_sect]\ndefault = default_sect\nkeyward = keyward_sect\n\n"
                   "[default_sect]\nactivate = 1\n\n[keyward_sect]\n");
    kwt_buf_printf(b, "module = %s\nactivate = 1\n", kwt_provider_path());
    if (module && *module)
        kwt_buf_printf(b, "keyward-module = %s\n", module);
    if (pin_source && *pin_source)
        kwt_buf_printf(b, "keyward-pin-source = %s\n", pin_source);
}

char *kwt_cnf_provider_text(const char *module, const char *pin_source)
{
    kwt_buf b = {0};
    kwt_buf_add(&b,
                "# Generated by keyward: loads the keyward provider next to the default one.\n");
    provider_stanza(&b, module, pin_source);
    kwt_buf_add(&b, "\n[req]\ndistinguished_name = req_dn\nstring_mask = utf8only\nutf8 = yes\n"
                    "default_md = sha256\n\n[req_dn]\n");
    return b.s;
}

static const char *const policy_fields[][2] = {
    {"C", "countryName"},
    {"ST", "stateOrProvinceName"},
    {"L", "localityName"},
    {"O", "organizationName"},
    {"OU", "organizationalUnitName"},
    {"CN", "commonName"},
    {"emailAddress", "emailAddress"},
    {"serialNumber", "serialNumber"},
    {"DC", "domainComponent"},
    {"UID", "userId"},
    {"title", "title"},
    {"GN", "givenName"},
    {"SN", "surname"},
    {"dnQualifier", "dnQualifier"},
    {"pseudonym", "pseudonym"},
    {"street", "streetAddress"},
    {"postalCode", "postalCode"},
};

static bool in_list(const char *list, const char *a, const char *b)
{
    char *copy = kwt_strdup(list), *save = NULL;
    bool found = false;
    for (char *t = strtok_r(copy, ", ", &save); t && !found; t = strtok_r(NULL, ", ", &save))
        found = !strcasecmp(t, a) || !strcasecmp(t, b);
    free(copy);
    return found;
}

int kwt_policy_match_nids(const kwt_conf *c, int *nids, int max)
{
    int n = 0;
    for (size_t i = 0; i < sizeof(policy_fields) / sizeof(policy_fields[0]) && n < max; i++)
        if (strcmp(policy_fields[i][0], "CN") &&
            in_list(c->policy_match ? c->policy_match : "", policy_fields[i][0],
                    policy_fields[i][1]) &&
            OBJ_txt2nid(policy_fields[i][1]) != NID_undef)
            nids[n++] = OBJ_txt2nid(policy_fields[i][1]);
    return n;
}

char *kwt_crl_url_for(const kwt_conf *c, int gen)
{
    if (!c->crl_url)
        return NULL;
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (const char *p = c->crl_url; *p;) {
        if (!strncmp(p, "{gen}", 5)) {
            kwt_buf_printf(&b, "%d", gen);
            p += 5;
        } else {
            kwt_buf_addn(&b, p++, 1);
        }
    }
    return b.s;
}

static void profile_common(kwt_buf *b, const kwt_conf *c)
{
    kwt_buf_add(b, "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n");
    /* each generation's certificates point at that generation's own CRL */
    char *url = kwt_crl_url_for(c, c->generation);
    if (url)
        kwt_buf_printf(b, "crlDistributionPoints = URI:%s\n", url);
    free(url);
}

char *kwt_profile_text(const kwt_conf *c, const char *profile)
{
    kwt_buf b = {0};
    if (!strcmp(profile, "ca")) {
        kwt_buf_add(&b, "basicConstraints = critical, CA:TRUE\n"
                        "keyUsage = critical, keyCertSign, cRLSign\n"
                        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n");
        return b.s;
    }
    if (!strcmp(profile, "client") || !strcmp(profile, "device"))
        kwt_buf_add(&b, "basicConstraints = critical, CA:FALSE\n"
                        "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n");
    else if (!strcmp(profile, "server"))
        kwt_buf_add(&b, "basicConstraints = critical, CA:FALSE\n"
                        "keyUsage = critical, digitalSignature, keyEncipherment\n"
                        "extendedKeyUsage = serverAuth\n");
    else if (!strcmp(profile, "ocsp"))
        kwt_buf_add(&b, "basicConstraints = critical, CA:FALSE\n"
                        "keyUsage = critical, digitalSignature\nextendedKeyUsage = OCSPSigning\n"
                        "noCheck = ignored\n");
    else if (!strcmp(profile, "subca"))
        kwt_buf_add(&b, "basicConstraints = critical, CA:TRUE, pathlen:0\n"
                        "keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n");
    else
        return NULL;
    profile_common(&b, c);
    return b.s;
}

const char *kwt_md_for_key_type(const char *key_type)
{
    /* a signature no weaker than the CA key: SHA-384 for P-384, SHA-512 for P-521 (RFC 5480) */
    if (key_type && !strcmp(key_type, "ec:P-384"))
        return "sha384";
    if (key_type && !strcmp(key_type, "ec:P-521"))
        return "sha512";
    return "sha256";
}

char *kwt_cnf_text(const kwt_conf *c, const char *dir, const char *state)
{
    kwt_buf b = {0};
    kwt_buf_add(&b, "# Generated by keyward from keyward.conf; regenerated on every change.\n"
                    "# Every keyward step is a stock openssl command run with OPENSSL_CONF set to\n"
                    "# this file (see keyward --dry-run). Keys stay on their tokens.\n");
    kwt_buf_printf(&b, "dir = %s\nstate = %s\n", dir, state);
    provider_stanza(&b, c->module, c->pin_source);
    const char *md = kwt_md_for_key_type(c->key_type);
    kwt_buf_printf(&b,
                   "\n[req]\ndistinguished_name = req_dn\nstring_mask = utf8only\nutf8 = yes\n"
                   "default_md = %s\n\n[req_dn]\n\n[ca]\ndefault_ca = CA_default\n\n[CA_default]\n"
                   "database = $state/index.txt\nserial = $state/serial\n"
                   "crlnumber = $state/crlnumber\nnew_certs_dir = $dir/certs\n"
                   "certificate = $dir/ca.crt\n",
                   md);
    if (c->ca_key)
        kwt_buf_printf(&b, "private_key = %s\n", c->ca_key);
    kwt_buf_printf(&b,
                   "default_md = %s\ndefault_days = %d\ndefault_crl_days = %d\n"
                   "policy = policy_keyward\nunique_subject = no\npreserve = yes\n"
                   "email_in_dn = no\nutf8 = yes\nstring_mask = utf8only\n"
                   "copy_extensions = none\ncrl_extensions = crl_ext\n",
                   md, c->default_days, c->crl_days);
    kwt_buf_add(&b, "\n# Fields not listed here are dropped from issued subjects.\n"
                    "[policy_keyward]\n");
    for (size_t i = 0; i < sizeof(policy_fields) / sizeof(policy_fields[0]); i++) {
        const char *mode = !strcmp(policy_fields[i][0], "CN") ? "supplied"
                           : in_list(c->policy_match ? c->policy_match : "", policy_fields[i][0],
                                     policy_fields[i][1])
                               ? "match"
                               : "optional";
        kwt_buf_printf(&b, "%s = %s\n", policy_fields[i][1], mode);
    }
    kwt_buf_add(&b, "\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n");
    static const char *profiles[] = {"ca", "client", "server", "device", "ocsp", "subca"};
    for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
        char *t = kwt_profile_text(c, profiles[i]);
        kwt_buf_printf(&b, "\n[ext_%s]\n%s", profiles[i], t);
        free(t);
    }
    return b.s;
}

static int write_cnf_to(kwt_ca *ca, const char *path, const char *state)
{
    char *text = kwt_cnf_text(&ca->conf, ca->dir, state);
    int rc = kwt_write_atomic(path, text, strlen(text), 0600);
    free(text);
    return rc;
}

int kwt_ca_write_cnf(kwt_ca *ca)
{
    char *p = kwt_path(ca->dir, "openssl.cnf");
    char *state = kwt_path(ca->dir, "state");
    int rc = 0;
    if (kwt_g.dry_run) {
        char *text = kwt_cnf_text(&ca->conf, ca->dir, state);
        kwt_dry_show_file(p, text);
        free(text);
    } else {
        rc = write_cnf_to(ca, p, state);
        if (rc)
            kwt_err(KWT_FAIL, "cannot write %s: %s", p, strerror(errno));
    }
    free(state);
    free(p);
    return rc ? KWT_FAIL : 0;
}

const char *kwt_ca_cnf(kwt_ca *ca)
{
    static char *live;
    if (ca->stage_cnf)
        return ca->stage_cnf;
    free(live);
    live = kwt_path(ca->dir, "openssl.cnf");
    return live;
}

char *kwt_state_path(kwt_ca *ca, const char *name)
{
    if (ca->stage)
        return kwt_path(ca->stage, name);
    return kwt_asprintf("%s/state/%s", ca->dir, name);
}

static int current_gen(const char *dir)
{
    char *l = kwt_path(dir, "state");
    char buf[PATH_MAX];
    ssize_t n = readlink(l, buf, sizeof(buf) - 1);
    free(l);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, "state.", 6) != 0)
        return -1;
    return atoi(buf + 6);
}

int kwt_ca_open(kwt_ca *ca, bool writer)
{
    memset(ca, 0, sizeof(*ca));
    ca->lock_fd = -1;
    char real[PATH_MAX];
    if (!realpath(kwt_g.dir, real))
        return kwt_err(KWT_FAIL,
                       "no CA directory at %s (%s); create one with `keyward ca init` or pass "
                       "--dir",
                       kwt_g.dir, strerror(errno));
    ca->dir = kwt_strdup(real);
    char *confp = kwt_path(ca->dir, "keyward.conf");
    int rc = kwt_conf_load(&ca->conf, confp);
    free(confp);
    if (rc != 0) {
        kwt_err(KWT_FAIL, "%s is not a keyward CA directory (no keyward.conf)", ca->dir);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    if (ca->conf.bad) {
        kwt_err(KWT_FAIL, "%s/keyward.conf: %s", ca->dir, ca->conf.bad);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    if (writer && !kwt_g.dry_run) {
        char *lp = kwt_path(ca->dir, ".lock");
        /* Not O_CLOEXEC: openssl children inherit the lock, so if keyward dies mid-operation
         * the next writer waits until its openssl has finished too (killing openssl instead
         * could interrupt it inside a token write). */
        ca->lock_fd = open(lp, O_RDWR | O_CREAT, 0600);
        free(lp);
        if (ca->lock_fd < 0 || flock(ca->lock_fd, LOCK_EX) != 0) {
            kwt_err(KWT_FAIL, "cannot lock the CA directory %s: %s", ca->dir, strerror(errno));
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        if (kwt_ca_recover(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        /* the provider path or module may differ from the last run (installed vs build) */
        if (kwt_ca_write_cnf(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
        /* a writer signs with the CA key: no pin_source, on a terminal, one prompt */
        if (kwt_ca_pin_prompt(ca) != 0) {
            kwt_ca_close(ca);
            return KWT_FAIL;
        }
    }
    ca->gen = current_gen(ca->dir);
    if (ca->gen < 0) {
        kwt_err(KWT_FAIL,
                "%s/state is missing or not a link to state.N: the CA directory is "
                "damaged",
                ca->dir);
        kwt_ca_close(ca);
        return KWT_FAIL;
    }
    return 0;
}

void kwt_ca_close(kwt_ca *ca)
{
    if (ca->stage)
        kwt_txn_abort(ca);
    if (ca->lock_fd >= 0)
        close(ca->lock_fd); /* releases the flock */
    kwt_conf_free(&ca->conf);
    free(ca->dir);
    memset(ca, 0, sizeof(*ca));
    ca->lock_fd = -1;
}

void kwt_ca_unlock(kwt_ca *ca)
{
    if (ca->lock_fd >= 0) {
        close(ca->lock_fd); /* releases the flock */
        ca->lock_fd = -1;
    }
}

int kwt_ca_reopen(const kwt_ca *ca, kwt_ca *out)
{
    const char *saved = kwt_g.dir;
    kwt_g.dir = ca->dir;
    int rc = kwt_ca_open(out, true);
    kwt_g.dir = saved;
    return rc;
}

void kwt_reload_mark(const kwt_ca *ca, kwt_reload *w, time_t renew_at)
{
    char *cp = kwt_path(ca->dir, "keyward.conf");
    if (stat(cp, &w->conf_st) != 0)
        memset(&w->conf_st, 0, sizeof(w->conf_st));
    free(cp);
    w->renew_at = renew_at;
    w->retry_at = 0;
}

bool kwt_reload_due(const kwt_ca *ca, const kwt_reload *w, time_t now)
{
    struct stat st;
    char *cp = kwt_path(ca->dir, "keyward.conf");
    int src = stat(cp, &st);
    free(cp);
    bool changed =
        src == 0 &&
        (st.st_ino != w->conf_st.st_ino || st.st_mtim.tv_sec != w->conf_st.st_mtim.tv_sec ||
         st.st_mtim.tv_nsec != w->conf_st.st_mtim.tv_nsec || st.st_size != w->conf_st.st_size);
    bool ending = w->renew_at != (time_t)-1 && now >= w->renew_at;
    return (changed || ending) && now >= w->retry_at;
}

static bool is_tmp_name(const char *n)
{
    return strstr(n, ".tmp.") != NULL || strstr(n, ".lnk.") != NULL;
}

static void remove_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (is_tmp_name(de->d_name)) {
            char *p = kwt_path(dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

/* ca rotate commits by saving keyward.conf with generation N, then copies ca/ca-N.crt to
 * ca.crt. A rotate killed between the two leaves ca.crt equal to ca/ca-(N-1).crt; only that
 * exact state is rolled forward (an operator's own ca.crt is left alone). */
static int roll_forward_ca_cert(kwt_ca *ca)
{
    int n = ca->conf.generation;
    if (n < 2)
        return 0;
    char *newp = kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, n);
    char *oldp = kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, n - 1);
    char *cacrt = kwt_path(ca->dir, "ca.crt");
    size_t nl = 0, ol = 0, cl = 0;
    char *nw = kwt_read_file(newp, &nl), *od = kwt_read_file(oldp, &ol);
    char *cur = kwt_read_file(cacrt, &cl);
    int rc = 0;
    if (nw && od && cur && cl == ol && memcmp(cur, od, ol) == 0 &&
        (nl != ol || memcmp(nw, od, nl) != 0)) {
        if (kwt_g.verbose)
            fprintf(stderr, "keyward: finishing an interrupted rotation: %s becomes ca.crt\n",
                    newp);
        if (kwt_write_atomic(cacrt, nw, nl, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot finish the interrupted CA rotation (%s to %s): %s", newp,
                         cacrt, strerror(errno));
    }
    free(nw);
    free(od);
    free(cur);
    free(newp);
    free(oldp);
    free(cacrt);
    return rc;
}

int kwt_ca_recover(kwt_ca *ca)
{
    int gen = current_gen(ca->dir);
    if (gen < 0)
        return 0; /* reported by the caller */
    char cur[32];
    snprintf(cur, sizeof(cur), "state.%d", gen);
    DIR *d = opendir(ca->dir);
    if (!d)
        return kwt_err(KWT_FAIL, "cannot read %s: %s", ca->dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        /* staging states of writers that died before their commit */
        if (!strncmp(de->d_name, "state.", 6) && strcmp(de->d_name, cur) != 0) {
            char *p = kwt_path(ca->dir, de->d_name);
            if (kwt_g.verbose)
                fprintf(stderr, "keyward: removing unfinished state %s\n", p);
            kwt_rm_rf(p);
            free(p);
        }
    }
    closedir(d);
    remove_tmp_files(ca->dir);
    if (roll_forward_ca_cert(ca) != 0)
        return KWT_FAIL;
    char *issued = kwt_path(ca->dir, "issued");
    remove_tmp_files(issued);
    /* issued/NAME.crt must point at the newest valid certificate of NAME; walk the index
     * from the end and remember names already seen (a hash set: indexes get large) */
    kwt_index ix = {0};
    char *ip = kwt_asprintf("%s/%s/index.txt", ca->dir, cur);
    if (kwt_index_load(&ix, ip) == 0 && ix.n) {
        size_t cap = 64;
        while (cap < ix.n * 2)
            cap *= 2;
        const char **seen = calloc(cap, sizeof(*seen));
        for (size_t i = ix.n; seen && i-- > 0;) {
            kwt_row *r = &ix.rows[i];
            unsigned long h = 5381;
            for (const char *c = r->name; *c; c++)
                h = h * 33 + (unsigned char)*c;
            size_t slot = h & (cap - 1);
            while (seen[slot] && strcmp(seen[slot], r->name) != 0)
                slot = (slot + 1) & (cap - 1);
            if (seen[slot])
                continue; /* an older row of a name already handled */
            seen[slot] = r->name;
            if (r->status != 'V' || !strcmp(r->name, "unknown"))
                continue;
            char *lp = kwt_asprintf("%s/%s.crt", issued, r->name);
            char *want = kwt_asprintf("../certs/%s.pem", r->serial);
            char buf[PATH_MAX];
            ssize_t n = readlink(lp, buf, sizeof(buf) - 1);
            if (n < 0 || (size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0)
                kwt_symlink_atomic(want, lp);
            free(want);
            free(lp);
        }
        free(seen);
    }
    kwt_index_free(&ix);
    free(ip);
    free(issued);
    return 0;
}

static int fsync_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = kwt_path(dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                rc |= fsync_tree(p);
            } else if (S_ISREG(st.st_mode)) {
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || fsync(fd) != 0)
                    rc = -1;
                if (fd >= 0)
                    close(fd);
            }
        }
        free(p);
    }
    closedir(d);
    rc |= kwt_fsync_dir(dir);
    return rc;
}

int kwt_txn_begin(kwt_ca *ca)
{
    if (kwt_g.dry_run)
        return 0; /* the printed commands work on the live state */
    ca->stage = kwt_asprintf("%s/state.%d", ca->dir, ca->gen + 1);
    kwt_rm_rf(ca->stage);
    char *crl = kwt_path(ca->stage, "crl");
    if (mkdir(ca->stage, 0700) != 0 || mkdir(crl, 0755) != 0) {
        free(crl);
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot create the staging state: %s", strerror(e));
    }
    free(crl);
    const char *files[] = {"index.txt", "index.txt.attr", "serial", "crlnumber"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && rc == 0; i++) {
        char *from = kwt_asprintf("%s/state.%d/%s", ca->dir, ca->gen, files[i]);
        char *to = kwt_path(ca->stage, files[i]);
        rc = kwt_exists(from) ? kwt_copy_file(from, to, 0600) : 0;
        free(from);
        free(to);
    }
    /* the published CRLs (every generation's and the bundle) stay world-readable */
    char *crlsrc = kwt_asprintf("%s/state.%d/crl", ca->dir, ca->gen);
    DIR *d = rc == 0 ? opendir(crlsrc) : NULL;
    struct dirent *de;
    while (d && rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || is_tmp_name(de->d_name))
            continue;
        char *from = kwt_path(crlsrc, de->d_name);
        char *to = kwt_asprintf("%s/crl/%s", ca->stage, de->d_name);
        struct stat st;
        if (lstat(from, &st) == 0 && S_ISREG(st.st_mode))
            rc = kwt_copy_file(from, to, 0644);
        free(from);
        free(to);
    }
    if (d)
        closedir(d);
    free(crlsrc);
    if (rc != 0) {
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot copy the CA state: %s", strerror(e));
    }
    ca->stage_cnf = kwt_path(ca->stage, "openssl.cnf");
    kwt_defer_sync = true; /* the commit makes everything durable with one syncfs */
    if (write_cnf_to(ca, ca->stage_cnf, ca->stage) != 0) {
        int e = errno;
        kwt_txn_abort(ca);
        return kwt_err(KWT_FAIL, "cannot write the staging openssl.cnf: %s", strerror(e));
    }
    return 0;
}

int kwt_txn_commit(kwt_ca *ca)
{
    if (kwt_g.dry_run || !ca->stage)
        return 0;
    /* openssl does not fsync what it writes, and our own writes in the transaction deferred
     * theirs: one syncfs makes the staging state and new certificates durable before the
     * switch can expose them */
    int dfd = open(ca->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd < 0 ? -1 : syncfs(dfd);
    if (dfd >= 0)
        close(dfd);
    kwt_defer_sync = false;
    if (rc != 0)
        rc = fsync_tree(ca->stage); /* syncfs unsupported: flush file by file */
    if (rc != 0)
        return kwt_err(KWT_FAIL, "cannot flush the new CA state to disk: %s", strerror(errno));
    char target[32];
    snprintf(target, sizeof(target), "state.%d", ca->gen + 1);
    char *link = kwt_path(ca->dir, "state");
    rc = kwt_symlink_atomic(target, link);
    free(link);
    if (rc != 0)
        return kwt_err(KWT_FAIL, "cannot switch to the new CA state: %s", strerror(errno));
    char *old = kwt_asprintf("%s/state.%d", ca->dir, ca->gen);
    kwt_rm_rf(old);
    free(old);
    ca->gen++;
    free(ca->stage);
    free(ca->stage_cnf);
    ca->stage = ca->stage_cnf = NULL;
    return 0;
}

void kwt_txn_abort(kwt_ca *ca)
{
    kwt_defer_sync = false;
    if (ca->stage)
        kwt_rm_rf(ca->stage);
    free(ca->stage);
    free(ca->stage_cnf);
    ca->stage = ca->stage_cnf = NULL;
}

/* ---- index.txt ---- */

int kwt_index_parse_line(char *line, kwt_row *r)
{
    char *f[6];
    int n = 0;
    char *p = line;
    f[n++] = p;
    while (*p && n < 6) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
        p++;
    }
    if (n != 6 || strlen(f[0]) != 1 || !strchr("VRE", f[0][0]) || !*f[3])
        return -1;
    r->status = f[0][0];
    r->expiry = kwt_strdup(f[1]);
    r->revocation = kwt_strdup(f[2]);
    r->serial = kwt_strdup(f[3]);
    r->name = kwt_strdup(f[4]);
    r->subject = kwt_strdup(f[5]);
    return 0;
}

int kwt_index_load(kwt_index *ix, const char *path)
{
    memset(ix, 0, sizeof(*ix));
    char *text = kwt_read_file(path, NULL);
    if (!text)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        kwt_row r;
        if (kwt_index_parse_line(line, &r) != 0) {
            free(text);
            kwt_index_free(ix);
            errno = EINVAL;
            return -1;
        }
        if (ix->n == ix->cap) {
            ix->cap = ix->cap ? ix->cap * 2 : 64;
            kwt_row *nr = realloc(ix->rows, ix->cap * sizeof(*nr));
            if (!nr)
                abort();
            ix->rows = nr;
        }
        ix->rows[ix->n++] = r;
    }
    free(text);
    return 0;
}

int kwt_index_save(const kwt_index *ix, const char *path)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (size_t i = 0; i < ix->n; i++) {
        const kwt_row *r = &ix->rows[i];
        kwt_buf_printf(&b, "%c\t%s\t%s\t%s\t%s\t%s\n", r->status, r->expiry, r->revocation,
                       r->serial, r->name, r->subject);
    }
    int rc = kwt_write_atomic(path, b.s, b.len, 0600);
    kwt_buf_free(&b);
    return rc;
}

void kwt_index_free(kwt_index *ix)
{
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->rows[i].expiry);
        free(ix->rows[i].revocation);
        free(ix->rows[i].serial);
        free(ix->rows[i].name);
        free(ix->rows[i].subject);
    }
    free(ix->rows);
    memset(ix, 0, sizeof(*ix));
}

kwt_row *kwt_index_find_serial(kwt_index *ix, const char *serial)
{
    /* index serials are upper-case hex of even length; accept any case and leading zeros */
    while (serial[0] == '0' && serial[1])
        serial++;
    for (size_t i = 0; i < ix->n; i++) {
        const char *s = ix->rows[i].serial;
        while (s[0] == '0' && s[1])
            s++;
        if (!strcasecmp(s, serial))
            return &ix->rows[i];
    }
    return NULL;
}

kwt_row *kwt_index_find_name(kwt_index *ix, const char *name)
{
    for (size_t i = ix->n; i-- > 0;)
        if (!strcmp(ix->rows[i].name, name))
            return &ix->rows[i];
    return NULL;
}

bool *kwt_index_newest(const kwt_index *ix)
{
    bool *newest = calloc(ix->n ? ix->n : 1, sizeof(*newest));
    size_t cap = 64;
    while (cap < ix->n * 2)
        cap *= 2;
    const char **seen = newest ? calloc(cap, sizeof(*seen)) : NULL;
    if (!seen) {
        free(newest);
        return NULL;
    }
    for (size_t i = ix->n; i-- > 0;) {
        const char *name = ix->rows[i].name;
        unsigned long h = 5381;
        for (const char *c = name; *c; c++)
            h = h * 33 + (unsigned char)*c;
        size_t slot = h & (cap - 1);
        while (seen[slot] && strcmp(seen[slot], name) != 0)
            slot = (slot + 1) & (cap - 1);
        if (!seen[slot]) {
            seen[slot] = name;
            newest[i] = true;
        }
    }
    free(seen);
    return newest;
}

int kwt_ca_link_issued(kwt_ca *ca, const char *name, const char *serial)
{
    char *lp = kwt_asprintf("%s/issued/%s.crt", ca->dir, name);
    char *want = kwt_asprintf("../certs/%s.pem", serial);
    int rc = 0;
    if (kwt_g.dry_run) {
        printf("ln -sfn %s %s\n", want, lp);
    } else {
        rc = kwt_symlink_atomic(want, lp);
        if (rc)
            kwt_err(KWT_FAIL, "cannot link %s: %s", lp, strerror(errno));
    }
    free(want);
    free(lp);
    return rc ? KWT_FAIL : 0;
}

/* One generation's CRL, signed by that generation's own key (a relying party matches a CRL to
 * the issuing key by its authorityKeyIdentifier): crl/gen-G.pem and crl/gen-G.crl (DER). */
static int make_gen_crl(kwt_ca *ca, int g, const char *cert, const char *key, const char *days)
{
    char *pn = kwt_asprintf("crl/gen-%d.pem", g), *dn = kwt_asprintf("crl/gen-%d.crl", g);
    char *pem = kwt_state_path(ca, pn), *der = kwt_state_path(ca, dn);
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-gencrl");
    kwt_cmd_add(&c, "-crldays");
    kwt_cmd_add(&c, days);
    if (cert) {
        kwt_cmd_add(&c, "-cert");
        kwt_cmd_add(&c, cert);
    }
    kwt_cmd_add(&c, "-keyfile");
    kwt_cmd_add(&c, key);
    kwt_cmd_add(&c, "-out");
    kwt_cmd_add(&c, pem);
    int rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    if (rc == 0) {
        kwt_cmd_init(&c, "crl");
        kwt_cmd_add(&c, "-in");
        kwt_cmd_add(&c, pem);
        kwt_cmd_add(&c, "-outform");
        kwt_cmd_add(&c, "DER");
        kwt_cmd_add(&c, "-out");
        kwt_cmd_add(&c, der);
        rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    }
    /* a CRL is public: relying parties and the web server that publishes it must read it */
    if (rc == 0 && kwt_g.dry_run)
        printf("chmod 0644 %s %s\n", pem, der);
    if (rc == 0 && !kwt_g.dry_run && (chmod(pem, 0644) != 0 || chmod(der, 0644) != 0))
        rc = kwt_err(KWT_FAIL, "cannot make %s public: %s", pem, strerror(errno));
    free(pn);
    free(dn);
    free(pem);
    free(der);
    return rc;
}

char *kwt_gen_key(const kwt_conf *c, int g)
{
    if (g == c->generation)
        return c->ca_key ? kwt_strdup(c->ca_key) : NULL;
    char *save = NULL, *list = c->old_keys ? kwt_strdup(c->old_keys) : NULL, *found = NULL;
    for (char *t = list ? strtok_r(list, " ", &save) : NULL; t && !found;
         t = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(t, ':');
        if (colon && atoi(t) == g)
            found = kwt_strdup(colon + 1);
    }
    free(list);
    return found;
}

char *kwt_gen_cert_path(const kwt_ca *ca, int g)
{
    if (g == ca->conf.generation)
        return kwt_path(ca->dir, "ca.crt");
    return kwt_asprintf("%s/ca/ca-%d.crt", ca->dir, g);
}

static bool key_known(const kwt_ca *ca, int g)
{
    char *k = kwt_gen_key(&ca->conf, g);
    bool known = k != NULL;
    free(k);
    return known;
}

static bool cert_unexpired(const kwt_ca *ca, int g)
{
    char *p = kwt_gen_cert_path(ca, g);
    X509 *x = kwt_load_cert(p);
    bool live = x && X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
    X509_free(x);
    free(p);
    return live;
}

bool kwt_gen_live(const kwt_ca *ca, int g)
{
    if (g == ca->conf.generation)
        return true;
    char *p = kwt_gen_cert_path(ca, g), *key = kwt_gen_key(&ca->conf, g);
    X509 *x = kwt_load_cert(p);
    bool live = key && x && X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
    X509_free(x);
    free(p);
    free(key);
    return live;
}

/* SHA-256 (hex) of the index's revoked rows: what every generation's CRL lists. */
static void revoked_digest(kwt_ca *ca, char out[65])
{
    char *ixp = kwt_state_path(ca, "index.txt");
    char *text = kwt_read_file(ixp, NULL);
    free(ixp);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned char h[32];
    unsigned int hl = 0;
    out[0] = '\0';
    if (m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1) {
        for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
            nl = strchr(l, '\n');
            size_t len = nl ? (size_t)(nl - l) : strlen(l);
            if (l[0] == 'R')
                EVP_DigestUpdate(m, l, len + 1);
        }
        if (EVP_DigestFinal_ex(m, h, &hl) == 1)
            for (unsigned i = 0; i < hl; i++)
                snprintf(out + 2 * i, 3, "%02x", h[i]);
    }
    EVP_MD_CTX_free(m);
    free(text);
}

/* An earlier generation's CRL is made again only when it would differ or age: missing, the
 * revocations changed since it was made (crl/gen-G.digest), past half its period, or the
 * operator asked for a period (ca crl --days). Rotations are rare, but a CA that rotated often
 * would otherwise pay one signature per generation on every change. */
static bool gen_crl_due(kwt_ca *ca, int g, const char *pem, const char *digest, int days)
{
    if (days > 0 || kwt_g.dry_run)
        return true;
    char *dn = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn);
    char *had = kwt_read_file(dp, NULL);
    free(dn);
    free(dp);
    bool due = !had || strcmp(had, digest) != 0;
    free(had);
    FILE *f = due ? NULL : fopen(pem, "r");
    X509_CRL *c = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!due) {
        int d = 0, sec = 0;
        due = !c || !X509_CRL_get0_nextUpdate(c) ||
              ASN1_TIME_diff(&d, &sec, NULL, X509_CRL_get0_nextUpdate(c)) != 1 ||
              (long long)d * 86400 + sec < (long long)ca->conf.crl_days * 86400 / 2;
    }
    X509_CRL_free(c);
    return due;
}

int kwt_ca_make_crl(kwt_ca *ca, int days)
{
    char ds[16], digest[65];
    snprintf(ds, sizeof(ds), "%d", days > 0 ? days : ca->conf.crl_days);
    int n = ca->conf.generation, rc = 0;
    revoked_digest(ca, digest);
    /* every generation whose CA certificate is unexpired keeps a CRL from its own key, so
     * certificates issued before a rotation stay checkable; newest first in the bundle, so a
     * reader that takes only the first CRL of crl.pem gets the current one */
    kwt_buf bundle = {0};
    kwt_buf_addn(&bundle, "", 0);
    for (int g = n; g >= 1 && rc == 0; g--) {
        char *pn = kwt_asprintf("crl/gen-%d.pem", g), *dn = kwt_asprintf("crl/gen-%d.crl", g);
        char *pem = kwt_state_path(ca, pn), *der = kwt_state_path(ca, dn);
        if (kwt_gen_live(ca, g)) {
            if (g == n || gen_crl_due(ca, g, pem, digest, days)) {
                char *key = kwt_gen_key(&ca->conf, g);
                char *cert = g == n ? NULL : kwt_gen_cert_path(ca, g);
                rc = make_gen_crl(ca, g, cert, key, ds);
                free(key);
                free(cert);
                char *dn2 = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn2);
                if (rc == 0 && !kwt_g.dry_run && g < n &&
                    kwt_write_atomic(dp, digest, strlen(digest), 0644) != 0)
                    rc = kwt_err(KWT_FAIL, "cannot write %s: %s", dp, strerror(errno));
                free(dn2);
                free(dp);
            }
            if (rc == 0 && kwt_g.dry_run) {
                kwt_buf_printf(&bundle, " %s", pem);
            } else if (rc == 0) {
                size_t l = 0;
                char *t = kwt_read_file(pem, &l);
                if (!t)
                    rc = kwt_err(KWT_FAIL, "cannot read %s: %s", pem, strerror(errno));
                else
                    kwt_buf_addn(&bundle, t, l);
                free(t);
            }
        } else if (g < n && !key_known(ca, g) && cert_unexpired(ca, g)) {
            /* its certificates may still be valid: keep the last CRL (keyward check reports it
             * stale in time) rather than withdraw it */
            fprintf(stderr,
                    "keyward: warning: CA generation %d has no key in keyward.conf old_keys; its "
                    "CRL crl/gen-%d.pem is not renewed\n",
                    g, g);
            if (!kwt_g.dry_run) {
                size_t l = 0;
                char *t = kwt_read_file(pem, &l);
                if (t)
                    kwt_buf_addn(&bundle, t, l);
                free(t);
            }
        } else if (!kwt_g.dry_run) {
            unlink(pem); /* an expired generation has nothing left to revoke */
            unlink(der);
            char *dn2 = kwt_asprintf("crl/gen-%d.digest", g), *dp = kwt_state_path(ca, dn2);
            unlink(dp);
            free(dn2);
            free(dp);
        }
        /* the names before per-generation CRLs */
        char *legacy = kwt_asprintf("crl/crl-%d.pem", g), *lp = kwt_state_path(ca, legacy);
        if (!kwt_g.dry_run)
            unlink(lp);
        free(legacy);
        free(lp);
        free(pn);
        free(dn);
        free(pem);
        free(der);
    }
    char *pem = kwt_state_path(ca, "crl/crl.pem"), *der = kwt_state_path(ca, "crl/crl.der");
    char *curname = kwt_asprintf("crl/gen-%d.crl", n), *cur = kwt_state_path(ca, curname);
    if (rc == 0 && kwt_g.dry_run) {
        printf("cat%s > %s\ncp %s %s\nchmod 0644 %s %s\n", bundle.s, pem, cur, der, pem, der);
    } else if (rc == 0) {
        if (kwt_write_atomic(pem, bundle.s, bundle.len, 0644) != 0 ||
            kwt_copy_file(cur, der, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write the CRL bundle %s: %s", pem, strerror(errno));
    }
    kwt_buf_free(&bundle);
    free(curname);
    free(cur);
    free(pem);
    free(der);
    return rc;
}

/* Random 128-bit starting serial (positive: top bit clear). */
int kwt_random_serial(char *out, size_t outlen)
{
    unsigned char r[16];
    if (outlen < 33 || RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    r[0] &= 0x7f;
    r[0] |= 0x10; /* keep 32 hex digits so it never looks like a short serial */
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02X", r[i]);
    return 0;
}
