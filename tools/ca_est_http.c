/* SPDX-License-Identifier: Apache-2.0 */
/* ca est: HTTP over the TLS connection: the request read within its limits, the answers
 * (text, base64 bodies, a certs-only PKCS#7), and base64 both ways. */
#include "ca_est_int.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- HTTP ---- */

static void ssl_write_all(SSL *s, const char *p, size_t n)
{
    while (n) {
        int w = SSL_write(s, p, n > 65536 ? 65536 : (int)n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static const char *status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 501:
        return "Not Implemented";
    }
    return "Internal Server Error";
}

/* extra: more header lines ("Retry-After: 60\r\n"), may be NULL */
void est_reply(SSL *s, int code, const char *ctype, const char *body, size_t len, const char *extra)
{
    kwt_buf b = {0};
    kwt_buf_printf(
        &b,
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
        "Connection: close\r\n%s\r\n",
        code, status_text(code), ctype,
        code == 200 && strncmp(ctype, "text/", 5) ? "Content-Transfer-Encoding: base64\r\n" : "",
        len, extra ? extra : "");
    kwt_buf_addn(&b, body, len);
    ssl_write_all(s, b.s, b.len);
    kwt_buf_free(&b);
}

void est_reply_text(SSL *s, int code, const char *msg, const char *extra)
{
    char *t = kwt_asprintf("%s\n", msg);
    est_reply(s, code, "text/plain; charset=utf-8", t, strlen(t), extra);
    free(t);
}

/* Read the request head and body: 0, or the HTTP status to answer (400, 411, 413). */
int est_read_request(est_req *r)
{
    kwt_buf in = {0};
    char tmp[4096];
    char *hend = NULL;
    while (!hend) {
        int n = SSL_read(r->ssl, tmp, sizeof(tmp));
        if (n <= 0) {
            kwt_buf_free(&in);
            return -1;
        }
        kwt_buf_addn(&in, tmp, (size_t)n);
        if (memchr(in.s, '\0', in.len)) {
            kwt_buf_free(&in);
            return 400;
        }
        hend = strstr(in.s, "\r\n\r\n");
        if (!hend && in.len > HEAD_MAX) {
            kwt_buf_free(&in);
            return 400;
        }
    }
    size_t hlen = (size_t)(hend - in.s) + 4;
    *hend = '\0';
    int rc = 0;
    char proto[16];
    if (sscanf(in.s, "%7s %255s %15s", r->method, r->path, proto) != 3 ||
        strncmp(proto, "HTTP/1.", 7)) {
        kwt_buf_free(&in);
        return 400;
    }
    r->clen = -1;
    bool chunked = false;
    for (char *l = strstr(in.s, "\r\n"); l && rc == 0; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, "Content-Length:", 15)) {
            char *e;
            r->clen = strtol(l + 15, &e, 10);
            if (r->clen < 0 || (*e && *e != '\r' && *e != ' '))
                rc = 400;
        } else if (!strncasecmp(l, "Authorization:", 14)) {
            size_t n = strcspn(l + 14, "\r");
            free(r->auth);
            r->auth = kwt_asprintf("%.*s", (int)n, l + 14);
        } else if (!strncasecmp(l, "Transfer-Encoding:", 18)) {
            chunked = true;
        }
    }
    if (rc == 0 && !strcmp(r->method, "POST")) {
        if (r->clen > BODY_MAX)
            rc = 413;
        else if (r->clen < 0 || chunked)
            rc = 411;
    }
    if (rc == 0 && r->clen > 0) {
        size_t have = in.len - hlen;
        if (have > (size_t)r->clen)
            have = (size_t)r->clen;
        kwt_buf_addn(&r->body, in.s + hlen, have);
        while (r->body.len < (size_t)r->clen) {
            int n = SSL_read(r->ssl, tmp, sizeof(tmp));
            if (n <= 0)
                break;
            kwt_buf_addn(&r->body, tmp, (size_t)n);
        }
        if (r->body.len < (size_t)r->clen)
            rc = -1;
    }
    kwt_buf_free(&in);
    return rc;
}

/* base64 (blanks and line ends ignored) -> bytes; NULL when it is not base64 */
unsigned char *est_unbase64(const char *s, size_t n, size_t *out)
{
    kwt_buf c = {0};
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            kwt_buf_addn(&c, s + i, 1);
    unsigned char *d = NULL;
    if (c.len && c.len % 4 == 0) {
        d = malloc(c.len);
        int k = d ? EVP_DecodeBlock(d, (unsigned char *)c.s, (int)c.len) : -1;
        if (k < 0) {
            free(d);
            d = NULL;
        } else {
            size_t pad = (c.s[c.len - 1] == '=') + (c.s[c.len - 2] == '=');
            *out = (size_t)k - pad;
        }
    }
    kwt_buf_free(&c);
    return d;
}

char *est_base64_lines(const unsigned char *d, size_t n, size_t *len)
{
    EVP_ENCODE_CTX *e = EVP_ENCODE_CTX_new();
    char *out = malloc(n * 2 + 80);
    int l1 = 0, l2 = 0;
    if (!e || !out) {
        EVP_ENCODE_CTX_free(e);
        free(out);
        return NULL;
    }
    EVP_EncodeInit(e);
    EVP_EncodeUpdate(e, (unsigned char *)out, &l1, d, (int)n);
    EVP_EncodeFinal(e, (unsigned char *)out + l1, &l2);
    EVP_ENCODE_CTX_free(e);
    *len = (size_t)(l1 + l2);
    return out;
}

/* A certs-only PKCS#7 (RFC 7030 §4.1.3 and §4.2.3) of these certificates, base64. */
void est_reply_certs(SSL *s, STACK_OF(X509) * certs)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    int n = -1;
    if (p7 && PKCS7_set_type(p7, NID_pkcs7_signed) && PKCS7_content_new(p7, NID_pkcs7_data)) {
        bool ok = true;
        for (int i = 0; i < sk_X509_num(certs) && ok; i++)
            ok = PKCS7_add_certificate(p7, sk_X509_value(certs, i)) == 1;
        if (ok)
            n = i2d_PKCS7(p7, &der);
    }
    size_t len = 0;
    char *b64 = n > 0 ? est_base64_lines(der, (size_t)n, &len) : NULL;
    if (b64)
        est_reply(s, 200, "application/pkcs7-mime; smime-type=certs-only", b64, len, NULL);
    else
        est_reply_text(s, 500, "cannot encode the certificates", NULL);
    free(b64);
    OPENSSL_free(der);
    PKCS7_free(p7);
}
