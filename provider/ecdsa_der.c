/* SPDX-License-Identifier: Apache-2.0 */
/* A token's ECDSA signature (r || s, each the size of the group order) as the DER
 *
 *   ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }     -- RFC 5480, RFC 8446
 *
 * that X.509 and TLS carry. Written here rather than with ECDSA_SIG and i2d_ECDSA_SIG because
 * the template encoder, two bignums and their frees cost ~8,000 instructions per signature
 * (1.6% of a P-256 signature on SoftHSM2); r and s are public, so nothing here needs to be
 * constant time. tests/unit/test_ecdsa_der.c checks it against i2d_ECDSA_SIG. */
#include <string.h>

#include "kwp.h"

/* INTEGER: minimal, non-negative (leading zero octets dropped, one 0x00 added when the top bit
 * is set); v is n octets, big-endian. Returns the octets written. */
static size_t der_uint(unsigned char *out, const unsigned char *v, size_t n)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    size_t pad = (v[0] & 0x80) != 0, len = n + pad;
    out[0] = 0x02;
    out[1] = (unsigned char)len;
    out[2] = 0;
    memcpy(out + 2 + pad, v, n);
    return 2 + len;
}

int kwp_ecdsa_sig_der(const unsigned char *rs, size_t rslen, unsigned char *sig, size_t *siglen,
                      size_t sigsize)
{
    /* P-521's 66 octets are the largest: each INTEGER's length then fits one octet. */
    unsigned char body[2 * (2 + KWP_ECDSA_MAX_HALF + 1)];
    size_t half = rslen / 2, blen, hlen, total;

    if (rslen == 0 || rslen % 2 != 0 || half > KWP_ECDSA_MAX_HALF)
        return 0;
    blen = der_uint(body, rs, half);
    blen += der_uint(body + blen, rs + half, half);
    hlen = blen < 0x80 ? 2 : 3;
    total = hlen + blen;
    if (total > sigsize)
        return 0;
    sig[0] = 0x30;
    if (hlen == 2) {
        sig[1] = (unsigned char)blen;
    } else {
        sig[1] = 0x81;
        sig[2] = (unsigned char)blen;
    }
    memcpy(sig + hlen, body, blen);
    *siglen = total;
    return 1;
}
