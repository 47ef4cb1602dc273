/* SPDX-License-Identifier: Apache-2.0 */
/* The OCSP responder's HTTP side (RFC 6960 appendix A): one request read (POST, or GET with
 * the base64 DER in the path), one reply written. */
#include "ca_ocsp_int.h"
#include "kwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

void kwt_ocsp_http_reply(int fd, int code, const char *ctype, const void *body, size_t len)
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
int kwt_ocsp_read_request(int fd, kwt_buf *req)
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

/* An OCSP response without a body: malformedRequest, internalError, unauthorized. */
void kwt_ocsp_status_reply(int fd, int status)
{
    OCSP_RESPONSE *r = OCSP_response_create(status, NULL);
    unsigned char *der = NULL;
    int n = r ? i2d_OCSP_RESPONSE(r, &der) : -1;
    if (n > 0)
        kwt_ocsp_http_reply(fd, 200, "application/ocsp-response", der, (size_t)n);
    else
        kwt_ocsp_http_reply(fd, 500, "text/plain", "responder error\n", 16);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
}
