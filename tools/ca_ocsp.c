/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca ocsp`: an OCSP responder for the CA's index.
 * openssl 3.0's `ocsp -port` listens on every address, so keyward accepts connections itself on
 * the address asked for (default 127.0.0.1) and answers each request by running
 * `openssl ocsp -index ... -reqin REQ -respout RESP` with the responder key on the token.
 *
 * A client (OCSP_basic_verify) accepts a delegated responder only when the responder certificate
 * was issued by the key that issued the certificate asked about. So every live CA generation
 * (current, or its CA certificate unexpired and its key listed in old_keys) has its own
 * responder certificate for the one responder key: issued/ocsp-responder.crt from the current
 * generation, issued/ocsp-responder-gen-G.crt from generation G. Each request's CertIDs are
 * matched to a generation's CA certificate (issuer name and key hash) and answered with that
 * generation's CA certificate and responder certificate; a request about an issuer that is no
 * live generation gets "unauthorized". All generations share one index (serials are unique
 * CA-wide). */
#include "kwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OCSP_NAME      "ocsp-responder"
#define MAX_GENS       128
#define RESPONDER_DAYS 365

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* NAME of generation g's responder certificate in the index (and issued/NAME.crt). */
static char *responder_name(const kwt_ca *ca, int g)
{
    return g == ca->conf.generation ? kwt_strdup(OCSP_NAME)
                                    : kwt_asprintf("%s-gen-%d", OCSP_NAME, g);
}

/* x carries a signature of cacert's key */
static bool signed_by(X509 *x, X509 *cacert)
{
    EVP_PKEY *pk = cacert ? X509_get0_pubkey(cacert) : NULL;
    bool ok = x && pk && X509_verify(x, pk) == 1;
    ERR_clear_error();
    return ok;
}

static bool expired(X509 *x)
{
    return X509_cmp_current_time(X509_get0_notAfter(x)) <= 0;
}

/* The newest certificate of NAME when its index row is valid (certs/SERIAL.pem); NULL when none.
 * *serial (may be NULL) gets its serial. */
static X509 *valid_cert_of(kwt_ca *ca, kwt_index *ix, const char *name, char **serial)
{
    kwt_row *r = kwt_index_find_name(ix, name);
    if (!r || r->status != 'V')
        return NULL;
    char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
    X509 *x = kwt_load_cert(p);
    free(p);
    if (x && serial)
        *serial = kwt_strdup(r->serial);
    return x;
}

/* Days a responder certificate of a CA generation gets: a year, not beyond the CA's own end. */
static int responder_days(X509 *cacert)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cacert)))
        return RESPONDER_DAYS;
    if (days >= RESPONDER_DAYS)
        return RESPONDER_DAYS;
    return days < 1 ? 1 : days;
}

/* Live CA generations, newest first, with their CA certificates. */
typedef struct {
    int gen[MAX_GENS];
    X509 *cacert[MAX_GENS];
    int n;
} ca_gens;

static void gens_load(kwt_ca *ca, ca_gens *gs)
{
    gs->n = 0;
    for (int g = ca->conf.generation; g >= 1 && gs->n < MAX_GENS; g--) {
        if (!kwt_gen_live(ca, g))
            continue;
        char *p = kwt_gen_cert_path(ca, g);
        X509 *x = kwt_load_cert(p);
        free(p);
        if (!x) {
            if (g == ca->conf.generation)
                fprintf(stderr, "keyward: CA generation %d has no readable certificate\n", g);
            continue;
        }
        gs->gen[gs->n] = g;
        gs->cacert[gs->n++] = x;
    }
}

static void gens_free(ca_gens *gs)
{
    for (int i = 0; i < gs->n; i++)
        X509_free(gs->cacert[i]);
    gs->n = 0;
}

/* Every live generation gets a valid responder certificate from its own key: issued when
 * missing, expired or not from that key (and for every generation when --key is given). After a
 * rotation the previous current generation's responder (NAME ocsp-responder) is renamed
 * ocsp-responder-gen-G in the index, and the new generation's is issued as ocsp-responder. */
static int ensure_signers(kwt_ca *ca, const char *key)
{
    int cur = ca->conf.generation, rc = 0;
    ca_gens gs;
    gens_load(ca, &gs);
    kwt_index ix = {0};
    char *ixp = kwt_state_path(ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0 && !kwt_g.dry_run) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        free(ixp);
        gens_free(&gs);
        return rc;
    }
    free(ixp);
    /* the certificate named ocsp-responder is from an earlier generation: it stays that
     * generation's responder under the generation's name */
    int rename_gen = 0;
    char *rename_serial = NULL;
    X509 *cx = valid_cert_of(ca, &ix, OCSP_NAME, &rename_serial);
    if (cx && gs.n && gs.gen[0] == cur && !signed_by(cx, gs.cacert[0]) && !expired(cx)) {
        for (int i = 1; i < gs.n && !rename_gen; i++) {
            char *nm = responder_name(ca, gs.gen[i]);
            X509 *have = valid_cert_of(ca, &ix, nm, NULL);
            if (signed_by(cx, gs.cacert[i]) && !have)
                rename_gen = gs.gen[i];
            X509_free(have);
            free(nm);
        }
    }
    X509_free(cx);
    if (!rename_gen) {
        free(rename_serial);
        rename_serial = NULL;
    }
    int need[MAX_GENS], nneed = 0;
    for (int i = 0; i < gs.n; i++) {
        int g = gs.gen[i];
        char *nm = responder_name(ca, g);
        /* after the rename: generation rename_gen has the old ocsp-responder certificate,
         * the current generation none yet */
        X509 *x = NULL;
        if (g == rename_gen)
            x = valid_cert_of(ca, &ix, OCSP_NAME, NULL);
        else if (g != cur || !rename_gen)
            x = valid_cert_of(ca, &ix, nm, NULL);
        if (key || !x || expired(x) || !signed_by(x, gs.cacert[i]))
            need[nneed++] = i;
        X509_free(x);
        free(nm);
    }
    kwt_index_free(&ix);
    if (!nneed) {
        gens_free(&gs);
        return 0;
    }
    if (!key)
        key = ca->conf.ocsp_key;
    if (!key) {
        gens_free(&gs);
        free(rename_serial);
        return kwt_err(KWT_USAGE, "no OCSP responder certificate yet: pass --key URI for its key "
                                  "(made on the token if absent)");
    }
    const char *why;
    if (!kwt_valid_uri(key, &why)) {
        gens_free(&gs);
        free(rename_serial);
        return kwt_err(KWT_USAGE, "--key: %s", why);
    }
    bool created;
    char *cacrt = kwt_path(ca->dir, "ca.crt");
    X509 *cax = kwt_load_cert(cacrt);
    free(cacrt);
    char *subj = cax ? kwt_cert_subj_slash(cax, " OCSP responder") : NULL;
    X509_free(cax);
    char *tmp = kwt_tmpdir();
    char *csr = tmp ? kwt_path(tmp, "ocsp.csr") : NULL;
    char *serials[MAX_GENS] = {0}, *olds[MAX_GENS] = {0};
    if (!subj || !csr) {
        rc = kwt_err(KWT_FAIL, "cannot prepare the OCSP responder certificate");
        goto out;
    }
    rc = kwt_ensure_key(key, ca->conf.key_type ? ca->conf.key_type : "ec:P-256", kwt_ca_cnf(ca),
                        false, false, &created, NULL);
    if (rc)
        goto out;
    kwt_cmd c;
    kwt_cmd_init(&c, "req");
    kwt_cmd_add(&c, "-new");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_add(&c, "-key");
    kwt_cmd_add(&c, key);
    kwt_cmd_add(&c, "-subj");
    kwt_cmd_add(&c, subj);
    kwt_cmd_add(&c, "-out");
    kwt_cmd_add(&c, csr);
    if ((rc = kwt_run(&c, kwt_ca_cnf(ca), NULL)) || (rc = kwt_txn_begin(ca)))
        goto out;
    ixp = kwt_state_path(ca, "index.txt");
    if (rename_gen && kwt_g.dry_run) {
        printf("# keyward then renames index row %s (%s, issued by CA generation %d) to "
               "%s-gen-%d\n",
               rename_serial, OCSP_NAME, rename_gen, OCSP_NAME, rename_gen);
    } else if (rename_gen) {
        kwt_row *r = NULL;
        if (kwt_index_load(&ix, ixp) == 0)
            r = kwt_index_find_serial(&ix, rename_serial);
        if (r) {
            free(r->name);
            r->name = responder_name(ca, rename_gen);
        }
        if (!r || kwt_index_save(&ix, ixp) != 0)
            rc = kwt_err(KWT_FAIL, "cannot rename the responder certificate %s in %s",
                         rename_serial, ixp);
        kwt_index_free(&ix);
    }
    /* a previous responder certificate of the same generation is superseded */
    for (int k = 0; k < nneed && rc == 0; k++) {
        int i = need[k];
        char *nm = responder_name(ca, gs.gen[i]);
        if (kwt_index_load(&ix, ixp) == 0) {
            kwt_row *r = kwt_index_find_name(&ix, nm);
            if (r && r->status == 'V')
                olds[k] = kwt_strdup(r->serial);
        }
        kwt_index_free(&ix);
        if (kwt_g.dry_run) {
            /* the CSR above was not made, so it cannot be checked and signed here */
            char *gc = kwt_gen_cert_path(ca, gs.gen[i]), *gk = kwt_gen_key(&ca->conf, gs.gen[i]);
            printf("# keyward then issues %s (ocsp profile, %d days) from CA generation %d: "
                   "openssl ca -in CSR -cert %s -keyfile '%s'\n",
                   nm, responder_days(gs.cacert[i]), gs.gen[i], gc, gk ? gk : "");
            free(gc);
            free(gk);
            free(nm);
            continue;
        }
        rc = kwt_sign_one_gen(ca, gs.gen[i], csr, "ocsp", nm, responder_days(gs.cacert[i]), NULL,
                              NULL, &serials[k]);
        if (rc == 0 && olds[k])
            rc = kwt_revoke_serial(ca, olds[k], "superseded", -1);
        free(nm);
    }
    free(ixp);
    if (rc == 0)
        rc = kwt_txn_commit(ca);
    if (rc == 0 && !kwt_g.dry_run) {
        if (rename_gen) {
            char *nm = responder_name(ca, rename_gen);
            kwt_ca_link_issued(ca, nm, rename_serial);
            kwt_audit(ca, "ca ocsp signer renamed", nm, rename_serial, subj, 0);
            free(nm);
        }
        for (int k = 0; k < nneed; k++) {
            char *nm = responder_name(ca, gs.gen[need[k]]);
            kwt_ca_link_issued(ca, nm, serials[k]);
            free(nm);
        }
        if (!ca->conf.ocsp_key || strcmp(ca->conf.ocsp_key, key) != 0) {
            char *k2 = kwt_strdup(key); /* key may be ca->conf.ocsp_key itself */
            free(ca->conf.ocsp_key);
            ca->conf.ocsp_key = k2;
            char *cp = kwt_path(ca->dir, "keyward.conf");
            kwt_conf_save(&ca->conf, cp);
            free(cp);
        }
        kwt_clear_error();
    }
    for (int k = 0; k < nneed; k++) {
        char *nm = responder_name(ca, gs.gen[need[k]]);
        if (!kwt_g.dry_run)
            kwt_audit(ca, "ca ocsp signer", nm, serials[k], subj, rc);
        free(nm);
    }
out:
    if (rc)
        kwt_txn_abort(ca);
    for (int k = 0; k < MAX_GENS; k++) {
        free(serials[k]);
        free(olds[k]);
    }
    if (tmp)
        kwt_rm_rf(tmp);
    gens_free(&gs);
    free(rename_serial);
    free(tmp);
    free(csr);
    free(subj);
    return rc;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void http_reply(int fd, int code, const char *ctype, const void *body, size_t len)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code,
                     code == 200   ? "OK"
                     : code == 400 ? "Bad Request"
                                   : "Error",
                     ctype, len);
    send_all(fd, hdr, (size_t)n);
    send_all(fd, body, len);
}

static int unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Read one HTTP request; the OCSP request bytes go to *req. 0 ok, -1 bad request. */
static int read_request(int fd, kwt_buf *req)
{
    kwt_buf in = {0};
    char tmp[4096];
    char *hend = NULL;
    while (!hend) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0 || in.len + (size_t)n > 65536) {
            kwt_buf_free(&in);
            return -1;
        }
        kwt_buf_addn(&in, tmp, (size_t)n);
        hend = strstr(in.s, "\r\n\r\n");
    }
    size_t hlen = (size_t)(hend - in.s) + 4;
    int rc = -1;
    if (!strncmp(in.s, "POST ", 5)) {
        char *cl = strcasestr(in.s, "\r\nContent-Length:");
        long want = cl && cl < hend ? strtol(cl + 17, NULL, 10) : -1;
        if (want > 0 && want <= 60000) {
            while (in.len - hlen < (size_t)want) {
                ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
                if (n <= 0)
                    break;
                kwt_buf_addn(&in, tmp, (size_t)n);
            }
            if (in.len - hlen >= (size_t)want) {
                kwt_buf_addn(req, in.s + hlen, (size_t)want);
                rc = 0;
            }
        }
    } else if (!strncmp(in.s, "GET /", 5)) {
        /* GET /<url-encoded base64 of the DER request> */
        char *path = in.s + 4, *sp = strchr(path, ' ');
        if (sp) {
            *sp = '\0';
            char *last = strrchr(path, '/') + 1;
            kwt_buf b64 = {0};
            for (char *p = last; *p; p++) {
                if (*p == '%' && unhex(p[1]) >= 0 && unhex(p[2]) >= 0) {
                    char ch = (char)(unhex(p[1]) * 16 + unhex(p[2]));
                    kwt_buf_addn(&b64, &ch, 1);
                    p += 2;
                } else {
                    kwt_buf_addn(&b64, p, 1);
                }
            }
            if (b64.len && b64.len < 60000) {
                unsigned char *der = malloc(b64.len);
                int n = EVP_DecodeBlock(der, (unsigned char *)b64.s, (int)b64.len);
                if (n > 0) {
                    size_t pad = 0;
                    while (pad < 2 && b64.len > pad && b64.s[b64.len - 1 - pad] == '=')
                        pad++;
                    kwt_buf_addn(req, (char *)der, (size_t)n - pad);
                    rc = 0;
                }
                free(der);
            }
            kwt_buf_free(&b64);
        }
    }
    kwt_buf_free(&in);
    return rc;
}

/* What the server answers for: the live generations, each with its responder certificate. */
typedef struct {
    ca_gens gs;
    char *signer[MAX_GENS]; /* issued/NAME.crt of gs.gen[i]; NULL: that generation is skipped */
    kwt_reload watch;       /* renew_at: a responder or CA certificate ends */
} responder;

static void responder_free(responder *rs)
{
    for (int i = 0; i < rs->gs.n; i++)
        free(rs->signer[i]);
    gens_free(&rs->gs);
}

static void responder_load(kwt_ca *ca, responder *rs, bool show)
{
    memset(rs, 0, sizeof(*rs));
    gens_load(ca, &rs->gs);
    time_t now = time(NULL), renew_at = (time_t)-1;
    for (int i = 0; i < rs->gs.n; i++) {
        char *nm = responder_name(ca, rs->gs.gen[i]);
        char *p = kwt_asprintf("%s/issued/%s.crt", ca->dir, nm);
        X509 *x = kwt_load_cert(p);
        const ASN1_TIME *ends[2] = {X509_get0_notAfter(rs->gs.cacert[i]),
                                    x ? X509_get0_notAfter(x) : NULL};
        for (int k = 0; k < 2; k++) {
            time_t e = (time_t)kwt_asn1_time(ends[k]);
            if (e > now && (renew_at == (time_t)-1 || e < renew_at))
                renew_at = e;
        }
        if (x && signed_by(x, rs->gs.cacert[i])) {
            rs->signer[i] = p;
            p = NULL;
            if (show) {
                char *serial = kwt_cert_serial(x);
                /* under --json stdout holds only the result */
                fprintf(kwt_g.json ? stderr : stdout,
                        "  CA generation %d: responder issued/%s.crt (serial %s)\n", rs->gs.gen[i],
                        nm, serial);
                free(serial);
            }
        } else if (!kwt_g.dry_run) {
            fprintf(stderr, "keyward: no responder certificate for CA generation %d (%s)\n",
                    rs->gs.gen[i], p);
        }
        X509_free(x);
        free(p);
        free(nm);
    }
    kwt_reload_mark(ca, &rs->watch, renew_at);
}

/* After a rotation (keyward.conf changed) or when a responder certificate ends, the CA is
 * opened again, missing responder certificates are issued and the generations reloaded.
 * On failure the old ones keep answering and the next try is a minute later. */
static void responder_refresh(kwt_ca *ca, responder *rs)
{
    time_t now = time(NULL);
    if (!kwt_reload_due(ca, &rs->watch, now))
        return;
    kwt_ca nca;
    int rc = kwt_ca_reopen(ca, &nca);
    if (rc == 0) {
        rc = ensure_signers(&nca, NULL);
        kwt_ca_unlock(&nca);
    }
    if (rc) {
        fprintf(stderr, "keyward: the OCSP responder keeps its previous certificates; retrying "
                        "in a minute\n");
        if (nca.dir)
            kwt_ca_close(&nca);
        rs->watch.retry_at = now + 60;
        return;
    }
    kwt_ca_close(ca);
    *ca = nca;
    responder_free(rs);
    responder_load(ca, rs, kwt_g.verbose > 0);
    if (kwt_g.verbose)
        fprintf(stderr, "keyward: OCSP responder reloaded (CA generation %d)\n",
                ca->conf.generation);
}

/* An OCSP response without a body: malformedRequest, internalError, unauthorized. */
static void status_reply(int fd, int status)
{
    OCSP_RESPONSE *r = OCSP_response_create(status, NULL);
    unsigned char *der = NULL;
    int n = r ? i2d_OCSP_RESPONSE(r, &der) : -1;
    if (n > 0)
        http_reply(fd, 200, "application/ocsp-response", der, (size_t)n);
    else
        http_reply(fd, 500, "text/plain", "responder error\n", 16);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
}

/* The generation (index into rs->gs) whose CA certificate issued every certificate the request
 * asks about: matched by the CertID's issuer name and key hashes. -1 when one of them matches
 * no live generation or they differ (one response can be verified for one issuer only). */
static int pick_generation(const responder *rs, OCSP_REQUEST *rq)
{
    int n = OCSP_request_onereq_count(rq), pick = -1;
    for (int k = 0; k < n; k++) {
        OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(rq, k));
        ASN1_OBJECT *md_oid = NULL;
        OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, cid);
        const EVP_MD *md = md_oid ? EVP_get_digestbyobj(md_oid) : NULL;
        int found = -1;
        for (int i = 0; md && i < rs->gs.n && found < 0; i++) {
            if (!rs->signer[i])
                continue;
            OCSP_CERTID *caid = OCSP_cert_to_id(md, NULL, rs->gs.cacert[i]);
            if (caid && OCSP_id_issuer_cmp(caid, cid) == 0)
                found = i;
            OCSP_CERTID_free(caid);
        }
        if (found < 0 || (pick >= 0 && found != pick))
            return -1;
        pick = found;
    }
    return pick;
}

/* Serial in index form (upper-case hex without leading zeros). */
static char *serial_hex(const ASN1_INTEGER *sn)
{
    BIGNUM *bn = sn ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    char *s = kwt_strdup(hex ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
    return s;
}

static const char *skip_zeros(const char *s)
{
    while (s[0] == '0' && s[1])
        s++;
    return s;
}

/* The index is shared by all generations, so a serial asked about under generation i's issuer
 * may belong to a certificate of another generation: that is not generation i's to answer. The
 * serials of such certificates go into *out (n returned); they are answered "unknown". */
static int foreign_serials(kwt_ca *ca, const responder *rs, int i, OCSP_REQUEST *rq, char **out,
                           int max)
{
    int n = 0;
    for (int k = 0; k < OCSP_request_onereq_count(rq) && n < max; k++) {
        ASN1_INTEGER *sn = NULL;
        OCSP_id_get0_info(NULL, NULL, NULL, &sn,
                          OCSP_onereq_get0_id(OCSP_request_onereq_get0(rq, k)));
        char *hex = serial_hex(sn);
        bool bad = false;
        for (const char *c = hex; *c && !bad; c++)
            bad = !strchr("0123456789ABCDEF", *c);
        char *p = bad || !*hex ? NULL : kwt_asprintf("%s/certs/%s.pem", ca->dir, hex);
        X509 *x = p ? kwt_load_cert(p) : NULL;
        if (x && !signed_by(x, rs->gs.cacert[i]))
            out[n++] = hex;
        else
            free(hex);
        X509_free(x);
        free(p);
    }
    return n;
}

/* A copy of the index without the rows of these serials. */
static int index_without(const char *from, const char *to, char **serials, int n)
{
    char *text = kwt_read_file(from, NULL);
    if (!text)
        return -1;
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        /* status, expiry, revocation, serial, ... */
        const char *f = l;
        for (int t = 0; t < 3 && f; t++) {
            f = strchr(f, '\t');
            f = f ? f + 1 : NULL;
        }
        bool drop = false;
        if (f) {
            size_t len = strcspn(f, "\t");
            char *sn = kwt_asprintf("%.*s", (int)len, f);
            for (int k = 0; k < n && !drop; k++)
                drop = !strcasecmp(skip_zeros(sn), skip_zeros(serials[k]));
            free(sn);
        }
        if (!drop)
            kwt_buf_printf(&b, "%s\n", l);
    }
    /* subjects repeat (renewals, the responder certificates): openssl must not insist */
    char *attr = kwt_asprintf("%s.attr", to);
    int rc = kwt_write_atomic(to, b.s, b.len, 0600) ||
             kwt_write_atomic(attr, "unique_subject = no\n", 20, 0600);
    free(attr);
    kwt_buf_free(&b);
    free(text);
    return rc;
}

static void serve_one(kwt_ca *ca, const responder *rs, int fd, const char *tmp)
{
    kwt_buf req = {0};
    if (read_request(fd, &req) != 0) {
        http_reply(fd, 400, "text/plain", "bad request\n", 12);
        kwt_buf_free(&req);
        return;
    }
    const unsigned char *der = (const unsigned char *)req.s;
    OCSP_REQUEST *ocsp_req = d2i_OCSP_REQUEST(NULL, &der, (long)req.len);
    int i = -2;
    if (ocsp_req && OCSP_request_onereq_count(ocsp_req) > 0)
        i = pick_generation(rs, ocsp_req);
    ERR_clear_error();
    if (i < 0) {
        if (kwt_g.verbose)
            fprintf(stderr, "keyward: OCSP request %s\n",
                    i == -2 ? "malformed: malformedRequest"
                            : "about no live CA generation (or several): unauthorized");
        status_reply(fd, i == -2 ? OCSP_RESPONSE_STATUS_MALFORMEDREQUEST
                                 : OCSP_RESPONSE_STATUS_UNAUTHORIZED);
        OCSP_REQUEST_free(ocsp_req);
        kwt_buf_free(&req);
        return;
    }
    char *rq = kwt_path(tmp, "req.der"), *rsp = kwt_path(tmp, "resp.der");
    char *ix = kwt_path(ca->dir, "state/index.txt");
    char *cacrt = kwt_gen_cert_path(ca, rs->gs.gen[i]);
    char *foreign[64];
    int nforeign = foreign_serials(ca, rs, i, ocsp_req, foreign, 64);
    OCSP_REQUEST_free(ocsp_req);
    int prep = 0;
    if (nforeign) {
        char *fix = kwt_path(tmp, "index.txt");
        prep = index_without(ix, fix, foreign, nforeign);
        free(ix);
        ix = fix;
        for (int k = 0; k < nforeign; k++)
            free(foreign[k]);
    }
    unlink(rsp);
    if (prep == 0 && kwt_write_atomic(rq, req.s, req.len, 0600) == 0) {
        kwt_cmd c;
        kwt_cmd_init(&c, "ocsp");
        kwt_cmd_add(&c, "-index");
        kwt_cmd_add(&c, ix);
        kwt_cmd_add(&c, "-CA");
        kwt_cmd_add(&c, cacrt);
        kwt_cmd_add(&c, "-rsigner");
        kwt_cmd_add(&c, rs->signer[i]);
        kwt_cmd_add(&c, "-rkey");
        kwt_cmd_add(&c, ca->conf.ocsp_key);
        kwt_cmd_add(&c, "-reqin");
        kwt_cmd_add(&c, rq);
        kwt_cmd_add(&c, "-respout");
        kwt_cmd_add(&c, rsp);
        kwt_cmd_add(&c, "-nmin");
        kwt_cmd_add(&c, "60");
        size_t len = 0;
        char *resp = NULL;
        if (kwt_run(&c, kwt_ca_cnf(ca), NULL) == 0 && (resp = kwt_read_file(rsp, &len)) && len)
            http_reply(fd, 200, "application/ocsp-response", resp, len);
        else
            status_reply(fd, OCSP_RESPONSE_STATUS_INTERNALERROR);
        free(resp);
    } else {
        status_reply(fd, OCSP_RESPONSE_STATUS_INTERNALERROR);
    }
    kwt_buf_free(&req);
    free(rq);
    free(rsp);
    free(ix);
    free(cacrt);
}

int kwt_cmd_ca_ocsp(int argc, char **argv)
{
    const char *port = NULL, *host = "127.0.0.1", *key = NULL, *count_s = NULL;
    kwt_optspec spec[] = {{"--port", &port, NULL},
                          {"--host", &host, NULL},
                          {"--key", &key, NULL},
                          {"--count", &count_s, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca ocsp", argc, argv, spec, pos, 0, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    char *end;
    long portn = port ? strtol(port, &end, 10) : 0;
    if (!port || *end || portn < 1 || portn > 65535)
        return kwt_err(KWT_USAGE, "ca ocsp: --port 1..65535 is required");
    long count = count_s ? strtol(count_s, &end, 10) : 0;
    if (count_s && (*end || count < 1))
        return kwt_err(KWT_USAGE, "--count must be a positive number");
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    rc = ensure_signers(&ca, key);
    kwt_ca_unlock(&ca); /* serving only reads the state: let writers in */
    if (rc || kwt_g.dry_run) {
        kwt_ca_close(&ca);
        return rc;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    int fd = -1;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        kwt_ca_close(&ca);
        return kwt_err(KWT_USAGE, "--host %s: not a numeric IP address", host);
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot listen on %s port %s: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (fd >= 0)
            close(fd);
        kwt_ca_close(&ca);
        return rc;
    }
    freeaddrinfo(ai);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: accept returns on a signal */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    char *tmp = kwt_tmpdir();
    responder rs;
    responder_load(&ca, &rs, true);
    /* under --json the line goes to stderr (stdout holds the one result, at exit) */
    fprintf(kwt_g.json ? stderr : stdout, "OCSP responder for %s listening on http://%s%s%s:%s/\n",
            ca.dir, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
    fflush(kwt_g.json ? stderr : stdout);
    long served = 0;
    while (!stop && tmp && (!count || served < count)) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        responder_refresh(&ca, &rs);
        serve_one(&ca, &rs, c, tmp);
        close(c);
        served++;
    }
    close(fd);
    responder_free(&rs);
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    if (kwt_g.json)
        printf("{\"host\":\"%s\",\"port\":%ld,\"served\":%ld}\n", host, portn, served);
    kwt_ca_close(&ca);
    return 0;
}
