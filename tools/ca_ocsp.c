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
 * CA-wide). The responder certificates are ca_ocsp_signers.c's, the HTTP side ca_ocsp_http.c's. */
#include "ca_ocsp_int.h"
#include "kwt.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* What the server answers for: the live generations, each with its responder certificate. */
typedef struct {
    kwt_ocsp_gens gs;
    char *signer[KWT_OCSP_MAX_GENS]; /* issued/NAME.crt of gs.gen[i]; NULL: that generation is
                                        skipped */
    kwt_reload watch;                /* renew_at: a responder or CA certificate ends */
} responder;

static void responder_free(responder *rs)
{
    for (int i = 0; i < rs->gs.n; i++)
        free(rs->signer[i]);
    kwt_ocsp_gens_free(&rs->gs);
}

static void responder_load(kwt_ca *ca, responder *rs, bool show)
{
    memset(rs, 0, sizeof(*rs));
    kwt_ocsp_gens_load(ca, &rs->gs);
    time_t now = time(NULL), renew_at = (time_t)-1;
    for (int i = 0; i < rs->gs.n; i++) {
        char *nm = kwt_ocsp_responder_name(ca, rs->gs.gen[i]);
        char *p = kwt_asprintf("%s/issued/%s.crt", ca->dir, nm);
        X509 *x = kwt_load_cert(p);
        const ASN1_TIME *ends[2] = {X509_get0_notAfter(rs->gs.cacert[i]),
                                    x ? X509_get0_notAfter(x) : NULL};
        for (int k = 0; k < 2; k++) {
            time_t e = (time_t)kwt_asn1_time(ends[k]);
            if (e > now && (renew_at == (time_t)-1 || e < renew_at))
                renew_at = e;
        }
        if (x && kwt_ocsp_signed_by(x, rs->gs.cacert[i])) {
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
        rc = kwt_ocsp_ensure_signers(&nca, NULL);
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
        if (x && !kwt_ocsp_signed_by(x, rs->gs.cacert[i]))
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
    if (kwt_ocsp_read_request(fd, &req) != 0) {
        kwt_ocsp_http_reply(fd, 400, "text/plain", "bad request\n", 12);
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
        kwt_ocsp_status_reply(fd, i == -2 ? OCSP_RESPONSE_STATUS_MALFORMEDREQUEST
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
        kwt_cmd_opt(&c, "-index", ix);
        kwt_cmd_opt(&c, "-CA", cacrt);
        kwt_cmd_opt(&c, "-rsigner", rs->signer[i]);
        kwt_cmd_opt(&c, "-rkey", ca->conf.ocsp_key);
        kwt_cmd_opt(&c, "-reqin", rq);
        kwt_cmd_opt(&c, "-respout", rsp);
        kwt_cmd_opt(&c, "-nmin", "60");
        size_t len = 0;
        char *resp = NULL;
        if (kwt_run(&c, kwt_ca_cnf(ca), NULL) == 0 && (resp = kwt_read_file(rsp, &len)) && len)
            kwt_ocsp_http_reply(fd, 200, "application/ocsp-response", resp, len);
        else
            kwt_ocsp_status_reply(fd, OCSP_RESPONSE_STATUS_INTERNALERROR);
        free(resp);
    } else {
        kwt_ocsp_status_reply(fd, OCSP_RESPONSE_STATUS_INTERNALERROR);
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
    rc = kwt_ocsp_ensure_signers(&ca, key);
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
