/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: who a client is: Basic credentials, a bootstrap or current certificate, the device
 * ID of a request or certificate, and the per-identity rate limit. */
#include "ca_est_int.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The device ID a name list carries: the otherName under the CA's device OID (UTF8String), or
 * a DNS name device-ID. NULL when none; *bad when it has two that differ or one unreadable. */
char *est_device_id_of(const GENERAL_NAMES *gens, const char *oid, bool *bad)
{
    ASN1_OBJECT *dev = oid ? OBJ_txt2obj(oid, 1) : NULL;
    char *id = NULL;
    *bad = false;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !*bad; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *v = NULL;
        size_t skip = 0;
        if (g->type == GEN_OTHERNAME && dev && !OBJ_cmp(g->d.otherName->type_id, dev)) {
            const ASN1_TYPE *t = g->d.otherName->value;
            if (!t || t->type != V_ASN1_UTF8STRING) {
                *bad = true;
                break;
            }
            v = t->value.utf8string;
        } else if (g->type == GEN_DNS && ASN1_STRING_length(g->d.dNSName) > 7 &&
                   !strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), "device-", 7)) {
            v = g->d.dNSName;
            skip = 7;
        }
        if (!v)
            continue;
        const char *d = (const char *)ASN1_STRING_get0_data(v) + skip;
        size_t n = (size_t)ASN1_STRING_length(v) - skip;
        const char *why;
        char *t = kwt_asprintf("%.*s", (int)n, d);
        if (memchr(d, '\0', n) || kwt_valid_device_id(t, &why) != 0 || (id && strcmp(id, t))) {
            *bad = true;
            free(t);
        } else {
            free(id);
            id = t;
        }
    }
    ASN1_OBJECT_free(dev);
    if (*bad) {
        free(id);
        id = NULL;
    }
    return id;
}

char *est_req_device_id(X509_REQ *q, const char *oid, bool *bad)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(q);
    int i = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    GENERAL_NAMES *g = i >= 0 ? X509V3_EXT_d2i(X509v3_get_ext(exts, i)) : NULL;
    char *id = est_device_id_of(g, oid, bad);
    GENERAL_NAMES_free(g);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return id;
}

/* The client certificate chains to the configured bootstrap CA(s). */
bool est_bootstrap_ok(const est_conf *c, SSL *s, X509 *peer)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *v = X509_STORE_CTX_new();
    bool ok = st && v && c->bootstrap && X509_STORE_load_file(st, c->bootstrap) == 1 &&
              X509_STORE_CTX_init(v, st, peer, SSL_get_peer_cert_chain(s)) == 1 &&
              X509_verify_cert(v) == 1;
    X509_STORE_CTX_free(v);
    X509_STORE_free(st);
    ERR_clear_error();
    return ok;
}

/* Per-identity rate limit: 0 allowed (counted), else the seconds to wait. */
long est_rate_check(kwt_ca *ca, const est_conf *c, const char *identity)
{
    if (!c->rate_n)
        return 0;
    unsigned char md[32];
    char idh[65];
    SHA256((const unsigned char *)identity, strlen(identity), md);
    est_hex(md, 16, idh);
    int lk = est_lock_file(ca->dir, ".rate.lock");
    if (lk < 0)
        return 0;
    char *p = kwt_asprintf("%s/est/rate", ca->dir);
    char *text = kwt_read_file(p, NULL);
    time_t now = time(NULL);
    kwt_buf out = {0};
    kwt_buf_addn(&out, "", 0);
    long wait = 0;
    bool found = false;
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        char h[65];
        long long start;
        long count;
        if (sscanf(l, "%64s %lld %ld", h, &start, &count) != 3 || start + c->rate_secs <= now)
            continue; /* expired windows are dropped */
        if (!strcmp(h, idh)) {
            found = true;
            if (count >= c->rate_n)
                wait = (long)(start + c->rate_secs - now);
            else
                count++;
        }
        kwt_buf_printf(&out, "%s %lld %ld\n", h, start, count);
    }
    if (!found)
        kwt_buf_printf(&out, "%s %lld 1\n", idh, (long long)now);
    kwt_write_atomic(p, out.s, out.len, 0600);
    close(lk);
    kwt_buf_free(&out);
    free(text);
    free(p);
    return wait > 0 ? wait : 0;
}

/* The client certificate is this CA's current certificate of its NAME: *name and *profile set
 * (its signing record's profile). */
bool est_current_cert(kwt_ca *ca, X509 *peer, char **name, char **profile)
{
    char *serial = kwt_cert_serial(peer);
    kwt_index ix = {0};
    char *ip = kwt_path(ca->dir, "state/index.txt");
    bool ok = false;
    if (serial && kwt_index_load(&ix, ip) == 0) {
        kwt_row *row = kwt_index_find_serial(&ix, serial);
        kwt_row *newest = row ? kwt_index_find_name(&ix, row->name) : NULL;
        if (row && row == newest && row->status == 'V') {
            char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, row->serial);
            X509 *x = kwt_load_cert(p);
            free(p);
            kwt_meta m;
            kwt_meta_init(&m);
            if (x && X509_cmp(x, peer) == 0 && kwt_meta_read(ca->dir, row->serial, &m) == 0 &&
                m.profile) {
                ok = true;
                *name = kwt_strdup(row->name);
                *profile = kwt_strdup(m.profile);
            }
            kwt_meta_free(&m);
            X509_free(x);
        }
    }
    kwt_index_free(&ix);
    free(ip);
    free(serial);
    return ok;
}

/* Basic credentials "user:secret" (base64); 0 when well-formed. */
int est_basic_creds(const char *auth, char **user, char **secret, size_t *slen)
{
    while (auth && *auth == ' ')
        auth++;
    if (!auth || strncasecmp(auth, "Basic ", 6))
        return -1;
    auth += 6;
    size_t n = 0;
    unsigned char *d = est_unbase64(auth, strlen(auth), &n);
    char *colon = d ? memchr(d, ':', n) : NULL;
    if (!colon || memchr(d, '\0', n)) {
        if (d)
            OPENSSL_cleanse(d, n);
        free(d);
        return -1;
    }
    *user = kwt_asprintf("%.*s", (int)(colon - (char *)d), (char *)d);
    *slen = n - (size_t)(colon - (char *)d) - 1;
    *secret = kwt_asprintf("%.*s", (int)*slen, colon + 1);
    OPENSSL_cleanse(d, n);
    free(d);
    return 0;
}
