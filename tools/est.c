/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward est enroll` and `keyward est reenroll`: the EST client (RFC 7030). The CSR is made on
 * the origin token by `keyward req` (the same code, in this process); it is posted over TLS
 * (libssl, in a private library context with the keyward provider, so a client key on the token
 * can authenticate the connection) and the certificate from the certs-only PKCS#7 answer is
 * stored atomically at --out. For a systemd timer: `est reenroll` renews with the current
 * certificate. */
#include "est_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Run `keyward req` in this process, its report kept off stdout (the --json document). */
static int make_csr(const est_client *o, const char *key, const char *subj, const char *san,
                    const char *devid, const char *out)
{
    const char *a[16];
    int n = 0;
    a[n++] = "req";
    a[n++] = "--key";
    a[n++] = key;
    a[n++] = "--subject";
    a[n++] = subj;
    if (san) {
        a[n++] = "--san";
        a[n++] = san;
    }
    if (devid) {
        a[n++] = "--device-id";
        a[n++] = devid;
    }
    if (o->module) {
        a[n++] = "--module";
        a[n++] = o->module;
    }
    if (o->pin_source) {
        a[n++] = "--pin-source";
        a[n++] = o->pin_source;
    }
    a[n++] = "--out";
    a[n++] = out;
    char *argv[17];
    for (int i = 0; i < n; i++)
        argv[i] = kwt_strdup(a[i]);
    argv[n] = NULL;
    fflush(stdout);
    int saved = dup(1), dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && dn >= 0)
        dup2(dn, 1);
    int rc = kwt_cmd_req(n, argv);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, 1);
        close(saved);
    }
    if (dn >= 0)
        close(dn);
    for (int i = 0; i < n; i++)
        free(argv[i]);
    return rc;
}

/* Printable text of an error answer, one line, bounded. */
static char *answer_text(const kwt_buf *b)
{
    kwt_buf t = {0};
    kwt_buf_addn(&t, "", 0);
    for (size_t i = 0; i < b->len && t.len < 300; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (c == '\n' || c == '\r')
            break;
        kwt_buf_addn(&t, c >= 0x20 && c < 0x7f ? (const char *)&c : "?", 1);
    }
    return t.s;
}

/* est reenroll --due when CURRENT is not due: say so, change nothing, exit 0. */
static int not_due(const est_client *o, X509 *cur, int window)
{
    char *serial = kwt_cert_serial(cur), *sub = kwt_cert_subject(cur);
    char end[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print_ex(b, X509_get0_notAfter(cur), ASN1_DTFLGS_ISO8601) == 1) {
        int n = BIO_read(b, end, sizeof(end) - 1);
        end[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    if (kwt_g.json) {
        kwt_buf j = {0};
        kwt_buf_add(&j, "{\"url\":");
        kwt_buf_json_str(&j, o->url);
        kwt_buf_add(&j, ",\"operation\":\"simplereenroll\",\"cert\":");
        kwt_buf_json_str(&j, o->cert);
        kwt_buf_add(&j, ",\"serial\":");
        kwt_buf_json_str(&j, serial);
        kwt_buf_add(&j, ",\"subject\":");
        kwt_buf_json_str(&j, sub);
        kwt_buf_add(&j, ",\"due\":false,\"not_after\":");
        kwt_buf_json_str(&j, end);
        kwt_buf_add(&j, "}\n");
        fputs(j.s, stdout);
        kwt_buf_free(&j);
    } else {
        printf("not due: %s (serial %s) ends %s, more than %d days from now; nothing "
               "re-enrolled\n",
               o->cert, serial, end, window);
    }
    free(serial);
    free(sub);
    return 0;
}

static int est_main(bool re, int argc, char **argv)
{
    est_client o = {0};
    o.module = getenv("KEYWARD_MODULE");
    const char *subject = NULL, *san = NULL, *devid = NULL, *out = NULL, *new_key = NULL,
               *tls_max = NULL;
    kwt_optspec spec[] = {
        {"--key", &o.key, NULL},       {"--new-key", &new_key, NULL},
        {"--subject", &subject, NULL}, {"--san", &san, NULL},
        {"--device-id", &devid, NULL}, {"--label", &o.label, NULL},
        {"--user", &o.user, NULL},     {"--password-file", &o.password_file, NULL},
        {"--cert", &o.cert, NULL},     {"--key-file", &o.key_file, NULL},
        {"--cacert", &o.cacert, NULL}, {"--out", &out, NULL},
        {"--module", &o.module, NULL}, {"--pin-source", &o.pin_source, NULL},
        {"--tls-max", &tls_max, NULL}, {NULL, NULL, NULL}};
    const char *pos[1], *why;
    const char *cmd = re ? "est reenroll" : "est enroll";
    int window = 0, npos, rc = kwt_take_due(&argc, argv, &window, cmd);
    if (rc)
        return rc;
    if (window && !re)
        return kwt_err(KWT_USAGE, "est enroll: --due goes with est reenroll");
    if (window < 0)
        window = EST_DUE_DAYS;
    rc = kwt_parse_args(cmd, argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1 || !o.key || !o.cacert || !out)
        return kwt_err(KWT_USAGE, "%s: URL, --key URI, --cacert FILE and --out CERT are required",
                       cmd);
    if (!kwt_valid_uri(o.key, &why))
        return kwt_err(KWT_USAGE, "--key: %s", why);
    if (tls_max && strcmp(tls_max, "1.2") && strcmp(tls_max, "1.3"))
        return kwt_err(KWT_USAGE, "--tls-max %s: 1.2 or 1.3", tls_max);
    o.tls_max = tls_max && !strcmp(tls_max, "1.2") ? TLS1_2_VERSION : 0;
    if (new_key && (!re || !kwt_valid_uri(new_key, &why)))
        return kwt_err(KWT_USAGE, "--new-key: %s", re ? why : "only est reenroll makes a new key");
    if (!re && !subject)
        return kwt_err(KWT_USAGE, "est enroll: --subject DN is required");
    if (re && (subject || san || devid || o.user))
        return kwt_err(KWT_USAGE, "est reenroll keeps the identity of --cert: no --subject, "
                                  "--san, --device-id or --user");
    if (re && !o.cert)
        return kwt_err(KWT_USAGE, "est reenroll: --cert CURRENT (the certificate it renews) is "
                                  "required");
    if ((o.user != NULL) != (o.password_file != NULL))
        return kwt_err(KWT_USAGE, "--user and --password-file go together");
    if (o.key_file && !o.cert)
        return kwt_err(KWT_USAGE, "--key-file goes with --cert");
    if (o.label)
        for (const char *p = o.label; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", *p))
                return kwt_err(KWT_USAGE, "--label %s: letters, digits, - and _ only", o.label);
    if ((rc = kwt_check_out_path("--out", out, false)))
        return rc;
    est_url u;
    if ((rc = est_url_parse(pos[0], &u)))
        return rc;
    o.url = pos[0];
    char *tmp = kwt_tmpdir(), *csrp = tmp ? kwt_path(tmp, "req.csr") : NULL, *subj_re = NULL;
    char *san_re = NULL;
    X509 *cur = NULL, *got = NULL;
    X509_REQ *csr = NULL;
    PKCS7 *p7 = NULL;
    kwt_buf resp = {0}, hdrs = {0};
    int code = 0;
    bool due = false;
    if (!csrp) {
        rc = kwt_err(KWT_FAIL, "cannot create a temporary directory: %s", strerror(errno));
        goto out;
    }
    if (re) {
        /* the identity of the current certificate: its subject and names */
        if (!(cur = kwt_load_cert(o.cert))) {
            rc = kwt_err(KWT_USAGE, "--cert %s: not a certificate", o.cert);
            goto out;
        }
        if (window) {
            /* --due: nothing to do (and no connection) while CURRENT has more than DAYS left */
            time_t limit = time(NULL) + (time_t)window * 86400;
            if (X509_cmp_time(X509_get0_notAfter(cur), &limit) > 0) {
                rc = not_due(&o, cur, window);
                goto out;
            }
            due = true;
        }
        subj_re = kwt_cert_subj_slash(cur, NULL);
        GENERAL_NAMES *g = X509_get_ext_d2i(cur, NID_subject_alt_name, NULL, NULL);
        kwt_buf sb = {0};
        for (int i = 0; g && i < sk_GENERAL_NAME_num(g); i++) {
            GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
            const char *t = n->type == GEN_DNS     ? "DNS"
                            : n->type == GEN_EMAIL ? "email"
                            : n->type == GEN_URI   ? "URI"
                                                   : NULL;
            if (t)
                kwt_buf_printf(&sb, "%s%s:%.*s", sb.len ? "," : "", t, ASN1_STRING_length(n->d.ia5),
                               (const char *)ASN1_STRING_get0_data(n->d.ia5));
            if (n->type == GEN_IPADD) {
                char ip[INET6_ADDRSTRLEN];
                int l = ASN1_STRING_length(n->d.ip);
                const unsigned char *d = ASN1_STRING_get0_data(n->d.ip);
                if ((l == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip))) ||
                    (l == 16 && inet_ntop(AF_INET6, d, ip, sizeof(ip))))
                    kwt_buf_printf(&sb, "%sIP:%s", sb.len ? "," : "", ip);
            }
        }
        GENERAL_NAMES_free(g);
        san_re = sb.s;
    }
    if ((rc = make_csr(&o, new_key ? new_key : o.key, re ? subj_re : subject, re ? san_re : san,
                       devid, csrp)))
        goto out;
    if (!(csr = kwt_load_csr(csrp))) {
        rc = kwt_err(KWT_FAIL, "cannot read the request keyward req made");
        goto out;
    }
    if ((rc = est_post(&o, &u, re ? "simplereenroll" : "simpleenroll", csr,
                       new_key ? new_key : o.key, &code, &resp, &hdrs)))
        goto out;
    if (code != 200) {
        char *t = answer_text(&resp);
        char *ra = hdrs.s ? strcasestr(hdrs.s, "\r\nRetry-After:") : NULL;
        long secs = ra ? strtol(ra + 14, NULL, 10) : 0;
        if (secs > 0)
            rc = kwt_err(KWT_FAIL, "the EST server answered %d: %s (retry after %ld seconds)", code,
                         t, secs);
        else
            rc = kwt_err(KWT_FAIL, "the EST server answered %d: %s", code, t);
        free(t);
        goto out;
    }
    /* certs-only PKCS#7, base64 */
    kwt_buf clean = {0};
    for (size_t i = 0; i < resp.len; i++)
        if (!strchr(" \t\r\n", resp.s[i]))
            kwt_buf_addn(&clean, resp.s + i, 1);
    unsigned char *p7d = clean.len ? malloc(clean.len) : NULL;
    int pl = p7d ? EVP_DecodeBlock(p7d, (unsigned char *)clean.s, (int)clean.len) : -1;
    if (pl > 0) {
        pl -= (clean.s[clean.len - 1] == '=') + (clean.s[clean.len - 2] == '=');
        const unsigned char *pp = p7d;
        p7 = d2i_PKCS7(NULL, &pp, pl);
    }
    free(p7d);
    kwt_buf_free(&clean);
    STACK_OF(X509) *certs = p7 && PKCS7_type_is_signed(p7) && p7->d.sign ? p7->d.sign->cert : NULL;
    for (int i = 0; certs && i < sk_X509_num(certs) && !got; i++)
        if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), X509_REQ_get0_pubkey(csr)) == 1)
            got = X509_dup(sk_X509_value(certs, i));
    ERR_clear_error();
    if (!got) {
        rc = kwt_err(KWT_FAIL, "the EST server's answer holds no certificate for this key");
        goto out;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len = b && PEM_write_bio_X509(b, got) == 1 ? BIO_get_mem_data(b, &pem) : 0;
    if (len <= 0 || kwt_write_atomic(out, pem, (size_t)len, 0644) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", out, strerror(errno));
    BIO_free(b);
    if (rc == 0) {
        char *serial = kwt_cert_serial(got), *sub = kwt_cert_subject(got);
        if (kwt_g.json) {
            kwt_buf j = {0};
            kwt_buf_add(&j, "{\"url\":");
            kwt_buf_json_str(&j, o.url);
            kwt_buf_add(&j, ",\"operation\":");
            kwt_buf_json_str(&j, re ? "simplereenroll" : "simpleenroll");
            kwt_buf_add(&j, ",\"cert\":");
            kwt_buf_json_str(&j, out);
            kwt_buf_add(&j, ",\"serial\":");
            kwt_buf_json_str(&j, serial);
            kwt_buf_add(&j, ",\"subject\":");
            kwt_buf_json_str(&j, sub);
            if (window)
                kwt_buf_printf(&j, ",\"due\":%s", due ? "true" : "false");
            kwt_buf_add(&j, "}\n");
            fputs(j.s, stdout);
            kwt_buf_free(&j);
        } else {
            printf("%s: certificate %s (serial %s) written to %s\n",
                   re ? "re-enrolled" : "enrolled", sub, serial, out);
        }
        free(serial);
        free(sub);
    }
out:
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    free(csrp);
    free(subj_re);
    free(san_re);
    X509_free(cur);
    X509_free(got);
    X509_REQ_free(csr);
    PKCS7_free(p7);
    kwt_buf_free(&resp);
    kwt_buf_free(&hdrs);
    est_url_free(&u);
    return rc;
}

int kwt_cmd_est(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        kwt_usage("est", argc < 2 ? stderr : stdout);
        return argc < 2 ? KWT_USAGE : 0;
    }
    if (!strcmp(argv[1], "enroll"))
        return est_main(false, argc - 1, argv + 1);
    if (!strcmp(argv[1], "reenroll"))
        return est_main(true, argc - 1, argv + 1);
    return kwt_err(KWT_USAGE, "unknown command 'est %s' (enroll, reenroll)", argv[1]);
}
