/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca sign` (one CSR or a batch in one openssl process) and `keyward ca renew`.
 * The CSR is checked here before openssl sees it, so bad input changes nothing. */
#include "kwt.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const profiles[] = {"client", "server", "device", "ocsp", "subca"};

static bool valid_profile(const char *p)
{
    for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
        if (!strcmp(p, profiles[i]))
            return true;
    return false;
}

static X509_REQ *load_csr(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509_REQ *r = PEM_read_X509_REQ(f, NULL, NULL, NULL);
    if (!r) {
        rewind(f);
        r = d2i_X509_REQ_fp(f, NULL);
    }
    fclose(f);
    return r;
}

/* Check a CSR for a profile. cn gets the CN (may be NULL when absent), sans the CSR's SANs in
 * openssl config form (NULL when none). Returns 0 or an exit code after printing why. */
static int check_csr(const char *path, const char *profile, char **cn, char **sans)
{
    *cn = *sans = NULL;
    FILE *probe = fopen(path, "r");
    if (!probe)
        return kwt_err(KWT_FAIL, "%s: %s", path, strerror(errno));
    fclose(probe);
    X509_REQ *r = load_csr(path);
    if (!r)
        return kwt_err(KWT_FAIL, "%s: not a certificate request (PEM or DER)", path);
    int rc = KWT_FAIL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    kwt_buf sb = {0};
    EVP_PKEY *pk = X509_REQ_get0_pubkey(r);
    if (!pk || X509_REQ_verify(r, pk) != 1) {
        kwt_err(KWT_FAIL, "%s: the CSR's signature does not verify (damaged or forged request)",
                path);
        goto out;
    }
    X509_NAME *nm = X509_REQ_get_subject_name(r);
    int idx = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    if (idx < 0) {
        kwt_err(KWT_FAIL, "%s: the CSR's subject has no CN", path);
        goto out;
    }
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx));
    unsigned char *u = NULL;
    int ul = ASN1_STRING_to_UTF8(&u, d);
    if (ul > 0)
        *cn = kwt_asprintf("%.*s", ul, u);
    OPENSSL_free(u);
    exts = X509_REQ_get_extensions(r);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
        if (nid == NID_basic_constraints) {
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
            bool isca = bc && bc->ca;
            BASIC_CONSTRAINTS_free(bc);
            if (isca && strcmp(profile, "subca") != 0) {
                kwt_err(KWT_FAIL,
                        "%s: the CSR asks for CA:TRUE, which the %s profile never grants "
                        "(use --profile subca for a subordinate CA)",
                        path, profile);
                goto out;
            }
        } else if (nid == NID_ext_key_usage && !strcmp(profile, "subca")) {
            kwt_err(KWT_FAIL, "%s: a subca CSR must not request extendedKeyUsage", path);
            goto out;
        } else if (nid == NID_subject_alt_name) {
            GENERAL_NAMES *gens = X509V3_EXT_d2i(e);
            for (int j = 0; gens && j < sk_GENERAL_NAME_num(gens); j++) {
                GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, j);
                const char *sep = sb.len ? "," : "";
                if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
                    ASN1_IA5STRING *s = g->d.ia5;
                    kwt_buf_printf(&sb, "%s%s:%.*s", sep,
                                   g->type == GEN_DNS     ? "DNS"
                                   : g->type == GEN_EMAIL ? "email"
                                                          : "URI",
                                   ASN1_STRING_length(s), ASN1_STRING_get0_data(s));
                } else if (g->type == GEN_IPADD) {
                    char ip[INET6_ADDRSTRLEN];
                    int l = ASN1_STRING_length(g->d.ip);
                    const unsigned char *b = ASN1_STRING_get0_data(g->d.ip);
                    if ((l == 4 && inet_ntop(AF_INET, b, ip, sizeof(ip))) ||
                        (l == 16 && inet_ntop(AF_INET6, b, ip, sizeof(ip))))
                        kwt_buf_printf(&sb, "%sIP:%s", sep, ip);
                } else if (g->type != GEN_OTHERNAME) {
                    GENERAL_NAMES_free(gens);
                    kwt_err(KWT_FAIL,
                            "%s: the CSR has a SAN type keyward does not copy "
                            "(only DNS, IP, email, URI)",
                            path);
                    goto out;
                }
            }
            GENERAL_NAMES_free(gens);
        } else if (nid != NID_key_usage && nid != NID_ext_key_usage &&
                   nid != NID_subject_key_identifier) {
            char oid[80];
            OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(e), 0);
            kwt_err(KWT_FAIL, "%s: the CSR requests extension %s, which keyward does not accept",
                    path, oid);
            goto out;
        }
    }
    if (sb.len) {
        /* SANs come from the requester: they pass the same checks as --san */
        const char *why;
        char *norm = kwt_san_to_conf(sb.s, &why);
        if (!norm) {
            kwt_err(KWT_FAIL, "%s: a SAN in the CSR is refused: %s", path, why);
            goto out;
        }
        *sans = norm;
    }
    rc = 0;
out:
    if (rc) {
        free(*cn);
        *cn = NULL;
    }
    kwt_buf_free(&sb);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    return rc;
}

static int check_ca_valid(kwt_ca *ca)
{
    char *p = kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(p);
    free(p);
    if (!x)
        return kwt_err(KWT_FAIL, "the CA certificate %s/ca.crt is missing or unreadable", ca->dir);
    int rc = 0;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        rc = kwt_err(KWT_FAIL, "the CA certificate has expired; rotate the CA (keyward ca "
                               "rotate) before issuing");
    X509_free(x);
    return rc;
}

static int store_meta(kwt_ca *ca, const char *serial, const char *csr, const char *profile,
                      int days, const char *san, const char *devid, const char *name)
{
    if (kwt_g.dry_run)
        return 0;
    char *cp = kwt_asprintf("%s/certs/%s.csr", ca->dir, serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca->dir, serial);
    char *meta = kwt_asprintf("name=%s\nprofile=%s\ndays=%d\nsan=%s\ndevice_id=%s\n", name, profile,
                              days, san ? san : "", devid ? devid : "");
    int rc = kwt_copy_file(csr, cp, 0644) || kwt_write_atomic(mp, meta, strlen(meta), 0644);
    if (rc)
        kwt_err(KWT_FAIL, "cannot store the request %s: %s", cp, strerror(errno));
    free(cp);
    free(mp);
    free(meta);
    return rc ? KWT_FAIL : 0;
}

int kwt_sign_one(kwt_ca *ca, const char *csr, const char *profile, const char *name, int days,
                 const char *san, const char *device_id, char **serial_out)
{
    return kwt_sign_one_gen(ca, 0, csr, profile, name, days, san, device_id, serial_out);
}

int kwt_sign_one_gen(kwt_ca *ca, int gen, const char *csr, const char *profile, const char *name,
                     int days, const char *san, const char *device_id, char **serial_out)
{
    *serial_out = NULL;
    char *cn = NULL, *csr_sans = NULL, *extra = NULL;
    /* an earlier generation signs with its own key and certificate (ca/ca-G.crt) */
    char *gen_key = NULL, *gen_cert = NULL;
    const char *why;
    if (gen == ca->conf.generation)
        gen = 0;
    if (gen) {
        gen_key = kwt_gen_key(&ca->conf, gen);
        gen_cert = kwt_gen_cert_path(ca, gen);
        if (!gen_key)
            return kwt_err(KWT_FAIL, "no key of CA generation %d in keyward.conf (old_keys)", gen);
    }
    int rc = check_csr(csr, profile, &cn, &csr_sans);
    if (rc) {
        free(gen_key);
        free(gen_cert);
        return rc;
    }
    kwt_buf all = {0};
    if (csr_sans)
        kwt_buf_add(&all, csr_sans);
    if (san) {
        extra = kwt_san_to_conf(san, &why);
        if (!extra) {
            rc = kwt_err(KWT_USAGE, "--san: %s", why);
            goto out;
        }
        kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", extra);
    }
    if (!strcmp(profile, "device")) {
        if (!device_id) {
            rc = kwt_err(KWT_USAGE, "the device profile needs --device-id ID");
            goto out;
        }
        char *want = kwt_asprintf("DNS:device-%s", device_id);
        if (!all.s || !strstr(all.s, want))
            kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", want);
        free(want);
        kwt_buf_printf(&all, ", otherName:%s;UTF8:%s", ca->conf.device_oid, device_id);
    } else if (device_id) {
        rc = kwt_err(KWT_USAGE, "--device-id is only for the device profile");
        goto out;
    }
    if (!strcmp(profile, "server") && !all.len) {
        rc = kwt_err(KWT_FAIL, "the server profile needs a subjectAltName (in the CSR or --san)");
        goto out;
    }
    /* the profile's CRL distribution point names the issuing generation's CRL */
    int cur_gen = ca->conf.generation;
    if (gen)
        ca->conf.generation = gen;
    char *prof = kwt_profile_text(&ca->conf, profile);
    ca->conf.generation = cur_gen;
    kwt_buf ext = {0};
    kwt_buf_printf(&ext, "# keyward %s profile for %s\n[ext_run]\n%s", profile, name, prof);
    free(prof);
    if (all.len)
        kwt_buf_printf(&ext, "subjectAltName = %s\n", all.s);
    char *extp = ca->stage ? kwt_path(ca->stage, "ext.cnf") : kwt_path(ca->dir, "ext-run.cnf");
    char *outp = ca->stage ? kwt_path(ca->stage, "new.crt") : kwt_path(ca->dir, "new.crt");
    char *ixp = kwt_state_path(ca, "index.txt");
    kwt_index ix0 = {0}, ix1 = {0};
    if (kwt_g.dry_run) {
        kwt_dry_show_file(extp, ext.s);
    } else if (kwt_write_atomic(extp, ext.s, ext.len, 0600) != 0 ||
               kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot prepare signing: %s", strerror(errno));
        goto out2;
    }
    char ds[16];
    snprintf(ds, sizeof(ds), "%d", days);
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-notext");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_add(&c, "-in");
    kwt_cmd_add(&c, csr);
    kwt_cmd_add(&c, "-days");
    kwt_cmd_add(&c, ds);
    kwt_cmd_add(&c, "-extfile");
    kwt_cmd_add(&c, extp);
    kwt_cmd_add(&c, "-extensions");
    kwt_cmd_add(&c, "ext_run");
    if (gen_cert) {
        kwt_cmd_add(&c, "-cert");
        kwt_cmd_add(&c, gen_cert);
    }
    kwt_cmd_add(&c, "-keyfile");
    kwt_cmd_add(&c, gen_key ? gen_key : ca->conf.ca_key);
    kwt_cmd_add(&c, "-out");
    kwt_cmd_add(&c, outp);
    rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    if (rc) {
        kwt_err(KWT_FAIL,
                "openssl ca refused to sign %s (policy: the CSR's %s must match the "
                "CA's; see the openssl message above)",
                csr,
                ca->conf.policy_match && *ca->conf.policy_match ? ca->conf.policy_match
                                                                : "subject");
        goto out2;
    }
    if (kwt_g.dry_run) {
        printf("# keyward then writes NAME %s into the new index row's file column and links "
               "issued/%s.crt to certs/SERIAL.pem\n",
               name, name);
        goto out2;
    }
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + 1) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add exactly one index row");
        goto out2;
    }
    kwt_row *r = &ix1.rows[ix1.n - 1];
    free(r->name);
    r->name = kwt_strdup(name);
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
        goto out2;
    }
    rc = store_meta(ca, r->serial, csr, profile, days, san, device_id, name);
    if (rc == 0)
        *serial_out = kwt_strdup(r->serial);
out2:
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    kwt_buf_free(&ext);
    free(extp);
    free(outp);
    free(ixp);
out:
    kwt_buf_free(&all);
    free(extra);
    free(cn);
    free(csr_sans);
    free(gen_key);
    free(gen_cert);
    return rc;
}

static void report(kwt_ca *ca, const char *name, const char *serial, bool first, bool last)
{
    char *p = kwt_asprintf("%s/issued/%s.crt", ca->dir, name);
    X509 *x = kwt_load_cert(p);
    char *fp = x ? kwt_cert_fingerprint(x) : kwt_strdup("");
    char *subj = x ? kwt_cert_subject(x) : kwt_strdup("");
    if (kwt_g.json) {
        kwt_buf b = {0};
        kwt_buf_add(&b, first ? "[{\"name\":" : " {\"name\":");
        kwt_buf_json_str(&b, name);
        kwt_buf_add(&b, ",\"path\":");
        kwt_buf_json_str(&b, p);
        kwt_buf_add(&b, ",\"serial\":");
        kwt_buf_json_str(&b, serial);
        kwt_buf_add(&b, ",\"subject\":");
        kwt_buf_json_str(&b, subj);
        kwt_buf_add(&b, ",\"sha256\":");
        kwt_buf_json_str(&b, fp);
        kwt_buf_add(&b, last ? "}]\n" : "},\n");
        fputs(b.s, stdout);
        kwt_buf_free(&b);
    } else {
        printf("issued %s\n  path:   %s\n  serial: %s\n  sha256: %s\n", name, p, serial, fp);
    }
    X509_free(x);
    free(fp);
    free(subj);
    free(p);
}

/* Name of a CSR in a batch: file name without directories and .csr. */
static char *batch_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *n = kwt_strdup(b);
    size_t l = strlen(n);
    if (l > 4 && !strcmp(n + l - 4, ".csr"))
        n[l - 4] = '\0';
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sign_batch(kwt_ca *ca, const char *src, const char *profile, int days)
{
    char **files = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(src);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".csr")) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    files = realloc(files, cap * sizeof(*files));
                }
                files[n++] = kwt_path(src, de->d_name);
            }
        }
        closedir(d);
        qsort(files, n, sizeof(*files), cmp_str);
    } else {
        char *text = kwt_read_file(src, NULL);
        if (!text)
            return kwt_err(KWT_USAGE, "--batch %s: not a directory or a list file (%s)", src,
                           strerror(errno));
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (!*l || *l == '#')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                files = realloc(files, cap * sizeof(*files));
            }
            files[n++] = kwt_strdup(l);
        }
        free(text);
    }
    int rc = 0;
    char **names = calloc(n ? n : 1, sizeof(char *));
    char *ixp = NULL;
    kwt_index ix0 = {0}, ix1 = {0};
    if (n == 0) {
        rc = kwt_err(KWT_USAGE, "--batch %s: no CSRs found", src);
        goto out;
    }
    if (n > 4000) {
        rc = kwt_err(KWT_USAGE, "--batch: at most 4000 CSRs per run (got %zu)", n);
        goto out;
    }
    if (!strcmp(profile, "device")) {
        rc = kwt_err(KWT_USAGE, "the device profile needs a device ID per certificate: sign "
                                "device CSRs one at a time");
        goto out;
    }
    ixp = kwt_state_path(ca, "index.txt");
    if (!kwt_g.dry_run && kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    /* Check everything first: one bad CSR stops the batch before anything is issued. */
    for (size_t i = 0; i < n; i++) {
        char *cn, *sans;
        const char *why;
        names[i] = batch_name(files[i]);
        if (kwt_valid_name(names[i], &why) != 0) {
            rc = kwt_err(KWT_USAGE, "%s: file name gives NAME '%s': %s", files[i], names[i], why);
            goto out;
        }
        if ((rc = check_csr(files[i], profile, &cn, &sans)))
            goto out;
        bool nosan = !sans;
        free(cn);
        free(sans);
        if (!strcmp(profile, "server") && nosan) {
            rc = kwt_err(KWT_FAIL, "%s: the server profile needs a subjectAltName in the CSR",
                         files[i]);
            goto out;
        }
        kwt_row *r = kwt_index_find_name(&ix0, names[i]);
        if (r && r->status == 'V') {
            rc = kwt_err(KWT_FAIL, "%s already has a valid certificate (serial %s); use ca renew",
                         names[i], r->serial);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) {
                rc = kwt_err(KWT_USAGE, "the batch has two CSRs named %s", names[i]);
                goto out;
            }
    }
    if ((rc = kwt_txn_begin(ca)))
        goto out;
    free(ixp);
    ixp = kwt_state_path(ca, "index.txt");
    char ds[16], sect[32];
    snprintf(ds, sizeof(ds), "%d", days);
    snprintf(sect, sizeof(sect), "ext_%s", profile);
    char *outp = kwt_state_path(ca, "batch.crt");
    kwt_cmd *c = malloc(sizeof(*c));
    kwt_cmd_init(c, "ca");
    kwt_cmd_add(c, "-batch");
    kwt_cmd_add(c, "-notext");
    kwt_cmd_add(c, "-utf8");
    kwt_cmd_add(c, "-days");
    kwt_cmd_add(c, ds);
    kwt_cmd_add(c, "-extensions");
    kwt_cmd_add(c, sect);
    kwt_cmd_add(c, "-keyfile");
    kwt_cmd_add(c, ca->conf.ca_key);
    kwt_cmd_add(c, "-out");
    kwt_cmd_add(c, outp);
    kwt_cmd_add(c, "-infiles");
    for (size_t i = 0; i < n; i++)
        kwt_cmd_add(c, files[i]);
    rc = kwt_run_progress(c, kwt_ca_cnf(ca), "Signature ok", (int)n);
    free(c);
    free(outp);
    if (rc || kwt_g.dry_run)
        goto out;
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + n) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add one index row per CSR; nothing issued");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        free(r->name);
        r->name = kwt_strdup(names[i]);
        if ((rc = store_meta(ca, r->serial, files[i], profile, days, NULL, NULL, names[i])))
            goto out;
    }
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s", ixp);
        goto out;
    }
    if ((rc = kwt_txn_commit(ca)))
        goto out;
    /* links and audit lines of a batch are flushed together (the links can be rebuilt from
     * the committed index anyway) */
    kwt_defer_sync = true;
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        kwt_ca_link_issued(ca, names[i], r->serial);
        kwt_audit(ca, "ca sign", names[i], r->serial, r->subject, 0);
    }
    kwt_defer_sync = false;
    int dfd = open(ca->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        syncfs(dfd);
        close(dfd);
    }
    for (size_t i = 0; i < n; i++)
        report(ca, names[i], ix1.rows[ix0.n + i].serial, i == 0, i + 1 == n);
out:
    if (rc)
        kwt_audit(ca, "ca sign --batch", NULL, NULL, src, rc);
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    for (size_t i = 0; i < n; i++) {
        free(files[i]);
        free(names[i]);
    }
    free(files);
    free(names);
    free(ixp);
    return rc;
}

int kwt_cmd_ca_sign(int argc, char **argv)
{
    const char *profile = NULL, *name = NULL, *days_s = NULL, *san = NULL, *devid = NULL,
               *batch = NULL;
    kwt_optspec spec[] = {{"--profile", &profile, NULL},
                          {"--name", &name, NULL},
                          {"--days", &days_s, NULL},
                          {"--san", &san, NULL},
                          {"--device-id", &devid, NULL},
                          {"--batch", &batch, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca sign", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *why;
    int days = 0;
    if (!profile)
        return kwt_err(KWT_USAGE, "ca sign: --profile client|server|device|ocsp|subca is required");
    if (!valid_profile(profile))
        return kwt_err(KWT_USAGE, "unknown profile '%s' (client, server, device, ocsp, subca)",
                       profile);
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (batch && (npos || name || san || devid))
        return kwt_err(KWT_USAGE, "--batch takes no CSR, --name, --san or --device-id");
    if (!batch && npos != 1)
        return kwt_err(KWT_USAGE, "ca sign: give one CSR file (or --batch)");
    if (name && kwt_valid_name(name, &why) != 0)
        return kwt_err(KWT_USAGE, "--name %s: %s", name, why);
    if (devid && kwt_valid_device_id(devid, &why) != 0)
        return kwt_err(KWT_USAGE, "--device-id: %s", why);
    if (san) {
        char *s = kwt_san_to_conf(san, &why);
        if (!s)
            return kwt_err(KWT_USAGE, "--san: %s", why);
        free(s);
    }
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    if (!days)
        days = ca.conf.default_days;
    if ((rc = check_ca_valid(&ca))) {
        kwt_audit(&ca, "ca sign", name, NULL, batch ? batch : pos[0], rc);
        kwt_ca_close(&ca);
        return rc;
    }
    if (batch) {
        rc = sign_batch(&ca, batch, profile, days);
        kwt_ca_close(&ca);
        return rc;
    }
    char *cn = NULL, *sans = NULL, *serial = NULL;
    if ((rc = check_csr(pos[0], profile, &cn, &sans)))
        goto out;
    if (!name) {
        if (!cn || kwt_valid_name(cn, &why) != 0) {
            rc = kwt_err(KWT_USAGE, "the CSR's CN '%s' cannot be used as NAME (%s); pass --name",
                         cn ? cn : "", why);
            goto out;
        }
        name = cn;
    }
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) == 0) {
        kwt_row *r = kwt_index_find_name(&ix, name);
        if (r && r->status == 'V')
            rc = kwt_err(KWT_FAIL,
                         "%s already has a valid certificate (serial %s); use `keyward ca renew "
                         "%s` or revoke it first",
                         name, r->serial, name);
    }
    kwt_index_free(&ix);
    free(ixp);
    if (rc)
        goto out;
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = kwt_sign_one(&ca, pos[0], profile, name, days, san, devid, &serial);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        report(&ca, name, serial, true, true);
    }
out:
    if (!kwt_g.dry_run)
        kwt_audit(&ca, "ca sign", name, serial, pos[0], rc);
    free(cn);
    free(sans);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}

/* ---- renew ---- */

static char *meta_get(const char *meta, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = meta; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && !strncmp(l, key, kl) && l[kl] == '=')
            return kwt_asprintf("%.*s", (int)(len - kl - 1), l + kl + 1);
        l = nl ? nl + 1 : NULL;
    }
    return NULL;
}

int kwt_cmd_ca_renew(int argc, char **argv)
{
    const char *days_s = NULL, *csr = NULL;
    bool keep_old = false;
    kwt_optspec spec[] = {{"--days", &days_s, NULL},
                          {"--csr", &csr, NULL},
                          {"--keep-old", NULL, &keep_old},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca renew", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *why;
    int days = 0;
    if (npos != 1)
        return kwt_err(KWT_USAGE, "ca renew: give the NAME of the certificate");
    if (kwt_valid_name(pos[0], &why) != 0)
        return kwt_err(KWT_USAGE, "NAME %s: %s", pos[0], why);
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    const char *name = pos[0];
    char *old_serial = NULL, *meta = NULL, *profile = NULL, *san = NULL, *devid = NULL,
         *mdays = NULL, *oldcsr = NULL, *serial = NULL;
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    kwt_row *r = kwt_index_find_name(&ix, name);
    if (!r) {
        rc = kwt_err(KWT_FAIL, "no certificate named %s in this CA", name);
        goto out;
    }
    if (r->status == 'R') {
        rc = kwt_err(KWT_FAIL,
                     "the newest certificate of %s (serial %s) is revoked; sign a new "
                     "CSR with ca sign instead",
                     name, r->serial);
        goto out;
    }
    old_serial = kwt_strdup(r->serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca.dir, old_serial);
    meta = kwt_read_file(mp, NULL);
    free(mp);
    if (!meta) {
        rc = kwt_err(KWT_FAIL, "no signing record for serial %s (certs/%s.meta)", old_serial,
                     old_serial);
        goto out;
    }
    profile = meta_get(meta, "profile");
    san = meta_get(meta, "san");
    devid = meta_get(meta, "device_id");
    mdays = meta_get(meta, "days");
    if (!profile || !valid_profile(profile)) {
        rc = kwt_err(KWT_FAIL, "the signing record of %s is damaged", old_serial);
        goto out;
    }
    if (!days)
        days = mdays ? atoi(mdays) : ca.conf.default_days;
    if (days < 1)
        days = ca.conf.default_days;
    oldcsr = kwt_asprintf("%s/certs/%s.csr", ca.dir, old_serial);
    if ((rc = check_ca_valid(&ca)) || (rc = kwt_txn_begin(&ca)))
        goto out;
    rc = kwt_sign_one(&ca, csr ? csr : oldcsr, profile, name, days, san && *san ? san : NULL,
                      devid && *devid ? devid : NULL, &serial);
    if (rc == 0 && !keep_old)
        rc = kwt_revoke_serial(&ca, old_serial, "superseded", -1);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        report(&ca, name, serial, true, true);
        if (!kwt_g.json)
            printf("  replaces serial %s%s\n", old_serial,
                   keep_old ? " (kept valid)" : " (revoked: superseded)");
    }
out:
    if (!kwt_g.dry_run)
        kwt_audit(&ca, csr ? "ca renew (rekey)" : "ca renew", name, serial, old_serial, rc);
    kwt_index_free(&ix);
    free(ixp);
    free(old_serial);
    free(meta);
    free(profile);
    free(san);
    free(devid);
    free(mdays);
    free(oldcsr);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}
