/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward check`: health of a CA for cron and systemd timers. One line per check; exit 1 when
 * any check fails (warnings alone do not fail). */
#include "kwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int nfail, nlines;
static kwt_buf out;

static void res(const char *check, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void res(const char *check, const char *result, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (!strcmp(result, "FAIL"))
        nfail++;
    if (kwt_g.json) {
        kwt_buf_add(&out, nlines ? ",{\"check\":" : "{\"check\":");
        kwt_buf_json_str(&out, check);
        kwt_buf_add(&out, ",\"result\":");
        kwt_buf_json_str(&out, result);
        kwt_buf_add(&out, ",\"detail\":");
        kwt_buf_json_str(&out, detail);
        kwt_buf_add(&out, "}");
    } else {
        kwt_buf_printf(&out, "%-4s %-12s %s\n", result, check, detail);
    }
    nlines++;
}

static void check_mode(const char *path, mode_t forbidden, const char *what)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        res("permissions", "FAIL", "%s %s: %s", what, path, strerror(errno));
        return;
    }
    if (st.st_mode & forbidden)
        res("permissions", "FAIL", "%s %s has mode %04o; group/others must not have access", what,
            path, (unsigned)(st.st_mode & 07777));
    else if (st.st_uid != getuid() && st.st_uid != 0)
        res("permissions", "FAIL", "%s %s is owned by uid %u, not by this user", what, path,
            (unsigned)st.st_uid);
}

static EVP_PKEY *pubkey_of_uri(const char *uri, const char *cnf)
{
    kwt_cmd c;
    kwt_cmd_init(&c, "pkey");
    kwt_cmd_opt(&c, "-in", uri);
    kwt_cmd_add(&c, "-pubout");
    char *pem = NULL, *err = NULL;
    EVP_PKEY *pk = NULL;
    if (kwt_run_quiet(&c, cnf, &pem, &err) == 0 && pem) {
        BIO *b = BIO_new_mem_buf(pem, -1);
        pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
        BIO_free(b);
    } else if (err) {
        /* keep the provider's reason (token not found, PIN ...), drop the rest */
        char *k = strstr(err, "keyward:");
        char *nl = k ? strchr(k, '\n') : NULL;
        if (nl)
            *nl = '\0';
        res("ca-key", "FAIL", "cannot load %s: %s", uri, k ? k : "openssl pkey failed");
    }
    free(pem);
    free(err);
    return pk;
}

/* Sign random data with the token key through openssl, verify with the certificate's key. */
static bool sign_test(const char *uri, const char *cnf, EVP_PKEY *pub)
{
    char *tmp = kwt_tmpdir();
    if (!tmp)
        return false;
    char *data = kwt_path(tmp, "data"), *sig = kwt_path(tmp, "sig");
    unsigned char rnd[64];
    bool ok = false;
    RAND_bytes(rnd, sizeof(rnd));
    if (kwt_write_atomic(data, rnd, sizeof(rnd), 0600) == 0) {
        kwt_cmd c;
        kwt_cmd_init(&c, "dgst");
        kwt_cmd_add(&c, "-sha256");
        kwt_cmd_opt(&c, "-sign", uri);
        kwt_cmd_opt(&c, "-out", sig);
        kwt_cmd_add(&c, data);
        char *o = NULL, *e = NULL;
        if (kwt_run_quiet(&c, cnf, &o, &e) == 0) {
            size_t sl;
            char *s = kwt_read_file(sig, &sl);
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            ok = s && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
                 EVP_DigestVerify(md, (unsigned char *)s, sl, rnd, sizeof(rnd)) == 1;
            EVP_MD_CTX_free(md);
            free(s);
        }
        free(o);
        free(e);
    }
    kwt_rm_rf(tmp);
    free(tmp);
    free(data);
    free(sig);
    return ok;
}

static X509_CRL *load_crl(const char *path)
{
    FILE *f = fopen(path, "r");
    X509_CRL *c = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return c;
}

/* The unexpired valid certificates of the index issued by root's key, and the latest notAfter
 * among them: while any remain, that generation's key must keep signing its CRL. */
static int gen_certs(kwt_ca *ca, const kwt_index *ix, X509 *root, char *last, size_t llen)
{
    int n = 0;
    long long latest = 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < ix->n; i++) {
        const kwt_row *r = &ix->rows[i];
        long long exp = kwt_asn1_to_time(r->expiry);
        if (r->status != 'V' || exp <= (long long)now)
            continue;
        char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
        X509 *x = kwt_load_cert(p);
        free(p);
        if (x && X509_check_issued(root, x) == X509_V_OK) {
            n++;
            if (exp > latest) {
                latest = exp;
                snprintf(last, llen, "20%.2s-%.2s-%.2s", r->expiry, r->expiry + 2, r->expiry + 4);
            }
        }
        X509_free(x);
    }
    return n;
}

/* Earlier CA generations: their CRLs, the link certificates to the next generation, and
 * whether their key is still needed. */
static void check_generations(kwt_ca *ca)
{
    int n = ca->conf.generation;
    kwt_index ix = {0};
    char *ixp = kwt_state_path(ca, "index.txt");
    bool have_ix = kwt_index_load(&ix, ixp) == 0;
    free(ixp);
    time_t now = time(NULL);
    for (int g = 1; g < n; g++) {
        char *cp = kwt_gen_cert_path(ca, g), *key = kwt_gen_key(&ca->conf, g);
        X509 *root = kwt_load_cert(cp);
        if (!root) {
            res("generation", "FAIL", "generation %d: %s missing or unreadable", g, cp);
        } else if (X509_cmp_time(X509_get0_notAfter(root), &now) < 0) {
            res("generation", "OK",
                "generation %d: its CA certificate has expired; its key may be "
                "retired",
                g);
        } else {
            char last[16] = "";
            int live = have_ix ? gen_certs(ca, &ix, root, last, sizeof(last)) : -1;
            if (!key && live > 0)
                res("generation", "FAIL",
                    "generation %d: %d unexpired certificates but its key is not in keyward.conf "
                    "old_keys: their revocations cannot be published",
                    g, live);
            else if (!key)
                res("generation", "OK",
                    "generation %d: retired (no key, no unexpired certificates)", g);
            else if (live > 0)
                res("generation", "OK",
                    "generation %d: %d unexpired certificates (the last until %s); its key %s "
                    "keeps signing crl/gen-%d.pem until then",
                    g, live, last, key, g);
            else if (live == 0)
                res("generation", "OK",
                    "generation %d: no unexpired certificates; its key may be retired once relying "
                    "parties trust generation %d",
                    g, n);
            char *crlname = key ? kwt_asprintf("crl/gen-%d.pem", g) : NULL;
            char *crlp = crlname ? kwt_path(ca->dir, crlname) : NULL;
            X509_CRL *crl = crlp ? load_crl(crlp) : NULL;
            const ASN1_TIME *nu = crl ? X509_CRL_get0_nextUpdate(crl) : NULL;
            if (!crlp)
                ; /* retired: no CRL is made for it any more */
            else if (!crl)
                res("crl", "FAIL", "%s missing: run keyward ca crl", crlp);
            else if (X509_CRL_verify(crl, X509_get0_pubkey(root)) != 1)
                res("crl", "FAIL", "%s is not signed by generation %d's key", crlp, g);
            else if (nu && X509_cmp_time(nu, &now) < 0)
                res("crl", "FAIL", "%s is past its next update: run keyward ca crl", crlp);
            else
                res("crl", "OK", "%s signed by generation %d's key", crlname, g);
            X509_CRL_free(crl);
            free(crlname);
            free(crlp);
        }
        /* the two link certificates between g and g+1 */
        char *np = kwt_gen_cert_path(ca, g + 1);
        X509 *next = kwt_load_cert(np);
        const char *kinds[2] = {"cross", "oldwithnew"};
        for (int k = 0; k < 2 && root && next; k++) {
            char *lp = kwt_asprintf("%s/ca/%s-%d.crt", ca->dir, kinds[k], g + 1);
            X509 *l = kwt_load_cert(lp);
            X509 *signer = k == 0 ? root : next, *subject = k == 0 ? next : root;
            if (!l)
                res("links", "FAIL",
                    "%s missing: relying parties of one generation cannot reach "
                    "the other",
                    lp);
            else if (X509_verify(l, X509_get0_pubkey(signer)) != 1 ||
                     EVP_PKEY_eq(X509_get0_pubkey(l), X509_get0_pubkey(subject)) != 1)
                res("links", "FAIL", "%s does not link generation %d and %d", lp, g, g + 1);
            else if (X509_cmp_time(X509_get0_notAfter(l), &now) < 0)
                res("links", "WARN", "%s has expired", lp);
            else
                res("links", "OK", "%s: generation %d's key certified by generation %d's", lp,
                    k == 0 ? g + 1 : g, k == 0 ? g : g + 1);
            X509_free(l);
            free(lp);
        }
        X509_free(next);
        free(np);
        X509_free(root);
        free(cp);
        free(key);
    }
    kwt_index_free(&ix);
}

int kwt_check_report(kwt_ca *ca, int warn, char **doc)
{
    nfail = nlines = 0;
    out = (kwt_buf){0};
    kwt_buf_addn(&out, "", 0);
    if (kwt_g.json)
        kwt_buf_add(&out, "{\"checks\":[");
    const char *cnf = kwt_ca_cnf(ca);
    time_t now = time(NULL);
    /* provider */
    const char *prov = kwt_provider_path();
    kwt_cmd c;
    kwt_cmd_init(&c, "list");
    kwt_cmd_add(&c, "-providers");
    char *o = NULL, *e = NULL;
    if (access(prov, R_OK) != 0)
        res("provider", "FAIL", "%s not found (set KEYWARD_PROVIDER_PATH or install keyward)",
            prov);
    else if (kwt_run_quiet(&c, cnf, &o, &e) == 0 && o && strstr(o, "keyward"))
        res("provider", "OK", "keyward provider loads from %s", prov);
    else
        res("provider", "FAIL", "openssl does not load the keyward provider with %s", cnf);
    free(o);
    free(e);
    /* module */
    const char *mod = getenv("KEYWARD_MODULE");
    if (!mod || !*mod)
        mod = ca->conf.module;
    if (mod && access(mod, R_OK) != 0)
        res("module", "FAIL", "PKCS#11 module %s not found", mod);
    else
        res("module", "OK", "%s", mod ? mod : "p11-kit proxy (every registered module)");
    /* CA certificate and key */
    char *crt = kwt_path(ca->dir, "ca.crt");
    X509 *cax = kwt_load_cert(crt);
    if (!cax) {
        res("ca-cert", "FAIL", "%s missing or unreadable", crt);
    } else {
        int days = 0, secs = 0;
        ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cax));
        if (days < 0 || (days == 0 && secs < 0))
            res("ca-cert", "FAIL", "the CA certificate has expired");
        else if (days < warn)
            res("ca-cert", "WARN", "the CA certificate expires in %d days: plan ca rotate", days);
        else
            res("ca-cert", "OK", "valid for %d more days", days);
        EVP_PKEY *pk = pubkey_of_uri(ca->conf.ca_key, cnf);
        if (pk) {
            if (EVP_PKEY_eq(pk, X509_get0_pubkey(cax)) != 1)
                res("ca-key", "FAIL", "the key at %s does not match ca.crt (wrong token?)",
                    ca->conf.ca_key);
            else if (!sign_test(ca->conf.ca_key, cnf, X509_get0_pubkey(cax)))
                res("ca-key", "FAIL", "a test signature with %s does not verify against ca.crt",
                    ca->conf.ca_key);
            else
                res("ca-key", "OK", "found on the token, matches ca.crt, signs (sha256 test)");
            EVP_PKEY_free(pk);
        }
    }
    /* permissions */
    int before = nfail;
    check_mode(ca->dir, 077, "CA directory");
    char *p = kwt_path(ca->dir, "keyward.conf");
    check_mode(p, 077, "config");
    free(p);
    p = kwt_path(ca->dir, "audit.log");
    if (kwt_exists(p))
        check_mode(p, 077, "audit log");
    free(p);
    if (ca->conf.pin_source && !strncmp(ca->conf.pin_source, "file:", 5))
        check_mode(ca->conf.pin_source + 5, 077, "PIN file");
    if (nfail == before)
        res("permissions", "OK", "directory, config%s not open to group or others",
            ca->conf.pin_source ? ", PIN file" : "");
    /* CRL */
    p = kwt_path(ca->dir, "crl/crl.pem");
    FILE *f = fopen(p, "r");
    X509_CRL *crl = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!crl) {
        res("crl", "FAIL", "%s missing or unreadable: run keyward ca crl", p);
    } else {
        const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(crl);
        if (cax && X509_CRL_verify(crl, X509_get0_pubkey(cax)) != 1)
            res("crl", "FAIL", "the CRL is not signed by the CA key");
        else if (nu && X509_cmp_time(nu, &now) < 0)
            res("crl", "FAIL", "the CRL is past its next update: run keyward ca crl");
        else {
            int days = 0, secs = 0;
            if (nu)
                ASN1_TIME_diff(&days, &secs, NULL, nu);
            res("crl", days < 2 ? "WARN" : "OK", "next update in %d days", days);
        }
    }
    free(p);
    check_generations(ca);
    /* index vs CRL, and expiring certificates */
    kwt_index ix = {0};
    p = kwt_state_path(ca, "index.txt");
    if (kwt_index_load(&ix, p) != 0) {
        res("index", "FAIL", "%s unreadable or damaged", p);
    } else {
        int revoked = 0, missing = 0, expiring = 0;
        for (size_t i = 0; i < ix.n; i++) {
            kwt_row *r = &ix.rows[i];
            long long exp = kwt_asn1_to_time(r->expiry);
            if (r->status == 'R') {
                revoked++;
                if (crl) {
                    ASN1_INTEGER *ai = NULL;
                    BIGNUM *bn = NULL;
                    X509_REVOKED *rev = NULL;
                    if (BN_hex2bn(&bn, r->serial) && (ai = BN_to_ASN1_INTEGER(bn, NULL)) &&
                        X509_CRL_get0_by_serial(crl, &rev, ai) != 1 && exp > (long long)now)
                        missing++;
                    ASN1_INTEGER_free(ai);
                    BN_free(bn);
                }
            } else if (r->status == 'V' && exp > (long long)now &&
                       exp - (long long)now <= (long long)warn * 86400) {
                kwt_row *newest = kwt_index_find_name(&ix, r->name);
                if (newest == r || strcmp(r->name, "unknown") == 0) {
                    expiring++;
                    res("expiry", "WARN", "%s (serial %s) expires within %d days: ca renew %s",
                        r->name, r->serial, warn, r->name);
                }
            }
        }
        if (missing)
            res("index", "FAIL", "%d revoked certificates are not on the CRL: run keyward ca crl",
                missing);
        else
            res("index", "OK", "%zu certificates, %d revoked, all revocations on the CRL", ix.n,
                revoked);
        if (!expiring)
            res("expiry", "OK", "no certificate expires within %d days", warn);
    }
    free(p);
    kwt_index_free(&ix);
    X509_CRL_free(crl);
    X509_free(cax);
    free(crt);
    if (kwt_g.json)
        kwt_buf_printf(&out, "],\"result\":\"%s\"}\n", nfail ? "FAIL" : "PASS");
    else
        kwt_buf_printf(&out, "%s keyward check: %d failed\n", nfail ? "FAIL" : "PASS", nfail);
    *doc = out.s;
    out = (kwt_buf){0};
    return nfail;
}

int kwt_cmd_check(int argc, char **argv)
{
    const char *warn_s = NULL;
    kwt_optspec spec[] = {{"--warn-days", &warn_s, NULL}, {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, warn = 30, rc = kwt_parse_args("check", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (warn_s && kwt_valid_days(warn_s, &warn, &why) != 0)
        return kwt_err(KWT_USAGE, "--warn-days: %s", why);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    char *doc = NULL;
    int failed = kwt_check_report(&ca, warn, &doc);
    fputs(doc, stdout);
    free(doc);
    kwt_ca_close(&ca);
    return failed ? KWT_FAIL : KWT_OK;
}
