/* SPDX-License-Identifier: Apache-2.0 */
/* TLS pieces the EST server (ca est) and client (est) share: the channel binding of a
 * connection and a key by URI in a library context (the keyward provider's). */
#include "kwt.h"

#include <openssl/ssl.h>
#include <openssl/store.h>
#include <stdbool.h>

/* RFC 7030 section 3.5 binds a request to its TLS connection by the connection's channel
 * binding. TLS 1.2: tls-unique (RFC 5929), the first Finished message of the handshake: the
 * client's in a full handshake, the server's in an abbreviated (resumed) one. TLS 1.3 has no
 * tls-unique; its replacement is tls-exporter (RFC 9266): 32 bytes of the keying material
 * exporter with the label "EXPORTER-Channel-Binding" and an empty context. */
size_t kwt_tls_channel_binding(SSL *s, unsigned char *out, size_t max, const char **kind)
{
    if (SSL_version(s) == TLS1_3_VERSION) {
        static const char label[] = "EXPORTER-Channel-Binding";
        *kind = "tls-exporter";
        if (max < 32 ||
            SSL_export_keying_material(s, out, 32, label, sizeof(label) - 1, NULL, 0, 1) != 1)
            return 0;
        return 32;
    }
    if (SSL_version(s) != TLS1_2_VERSION)
        return 0;
    *kind = "tls-unique";
    bool own = (SSL_is_server(s) != 0) == (SSL_session_reused(s) != 0);
    size_t n = own ? SSL_get_finished(s, out, max) : SSL_get_peer_finished(s, out, max);
    return n <= max ? n : 0;
}

EVP_PKEY *kwt_tls_load_key(OSSL_LIB_CTX *lc, const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, lc, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pk = NULL;
    while (st && !pk && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *in = OSSL_STORE_load(st);
        if (!in)
            break;
        if (OSSL_STORE_INFO_get_type(in) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(in);
        OSSL_STORE_INFO_free(in);
    }
    OSSL_STORE_close(st);
    return pk;
}
