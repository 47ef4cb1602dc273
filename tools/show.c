/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward show FILE`: what an operator reads out or compares before trusting a certificate or a
 * request (easy-rsa's show-cert/show-req): subject, SANs, key, the SHA-256 of the public key
 * (SPKI, the same for the CSR and every certificate of that key) and of the certificate,
 * validity, serial, and the certificate's status in the CA directory. */
#include "kwt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *hex_colon(const unsigned char *md, unsigned int n)
{
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (unsigned int i = 0; i < n; i++)
        kwt_buf_printf(&b, i ? ":%02X" : "%02X", md[i]);
    return b.s;
}

char *kwt_spki_fingerprint(EVP_PKEY *pk)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int len = pk ? i2d_PUBKEY(pk, &der) : -1;
    char *r = len > 0 && EVP_Digest(der, (size_t)len, md, &n, EVP_sha256(), NULL) ? hex_colon(md, n)
                                                                                  : kwt_strdup("");
    OPENSSL_free(der);
    return r;
}

X509_REQ *kwt_load_csr(const char *path)
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

/* A requester's bytes, shown as they are: NUL and control characters escaped, never cut. */
static void add_escaped(kwt_buf *b, const ASN1_STRING *s)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    for (int i = 0; i < ASN1_STRING_length(s); i++) {
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
            kwt_buf_printf(b, "\\x%02x", p[i]);
        else
            kwt_buf_addn(b, (const char *)p + i, 1);
    }
}

static void san_list(const GENERAL_NAMES *gens, kwt_buf *b)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char oid[80];
        if (b->len)
            kwt_buf_add(b, ", ");
        switch (g->type) {
        case GEN_DNS:
            kwt_buf_add(b, "DNS:");
            add_escaped(b, g->d.ia5);
            break;
        case GEN_EMAIL:
            kwt_buf_add(b, "email:");
            add_escaped(b, g->d.ia5);
            break;
        case GEN_URI:
            kwt_buf_add(b, "URI:");
            add_escaped(b, g->d.ia5);
            break;
        case GEN_IPADD: {
            char ip[INET6_ADDRSTRLEN] = "?";
            int l = ASN1_STRING_length(g->d.ip);
            const unsigned char *a = ASN1_STRING_get0_data(g->d.ip);
            if (l == 4)
                inet_ntop(AF_INET, a, ip, sizeof(ip));
            else if (l == 16)
                inet_ntop(AF_INET6, a, ip, sizeof(ip));
            kwt_buf_printf(b, "IP:%s", ip);
            break;
        }
        case GEN_OTHERNAME: {
            OBJ_obj2txt(oid, sizeof(oid), g->d.otherName->type_id, 1);
            kwt_buf_printf(b, "otherName:%s;", oid);
            const ASN1_TYPE *v = g->d.otherName->value;
            if (v && (v->type == V_ASN1_UTF8STRING || v->type == V_ASN1_IA5STRING)) {
                kwt_buf_add(b, v->type == V_ASN1_UTF8STRING ? "UTF8:" : "IA5:");
                add_escaped(b, v->value.asn1_string);
            } else {
                kwt_buf_add(b, "(binary)");
            }
            break;
        }
        case GEN_DIRNAME: {
            char *d = kwt_name_text(g->d.dirn);
            kwt_buf_printf(b, "dirName:%s", d);
            free(d);
            break;
        }
        case GEN_RID:
            OBJ_obj2txt(oid, sizeof(oid), g->d.rid, 1);
            kwt_buf_printf(b, "RID:%s", oid);
            break;
        default:
            kwt_buf_printf(b, "(name type %d)", g->type);
        }
    }
}

static char *key_text(EVP_PKEY *pk)
{
    if (!pk)
        return kwt_strdup("?");
    if (EVP_PKEY_is_a(pk, "EC")) {
        char grp[64] = "";
        size_t gl = 0;
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof(grp), &gl);
        const char *nist = EC_curve_nid2nist(OBJ_sn2nid(grp));
        return kwt_asprintf("EC %s", nist ? nist : grp);
    }
    if (EVP_PKEY_is_a(pk, "RSA"))
        return kwt_asprintf("RSA %d", EVP_PKEY_get_bits(pk));
    return kwt_strdup(EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "?");
}

static char *time_text(const ASN1_TIME *t)
{
    struct tm tm;
    char buf[32] = "?";
    if (t && ASN1_TIME_to_tm(t, &tm))
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return kwt_strdup(buf);
}

typedef struct {
    const char *k;
    char *v;
} field;

/* The CA directory's view of the certificate: its NAME and status, when this CA issued it. */
static void ca_status(X509 *x, EVP_PKEY *csr_key, char **name, char **status, kwt_meta *md)
{
    *name = *status = NULL;
    char *conf = kwt_path(kwt_g.dir, "keyward.conf");
    bool is_ca = kwt_exists(conf);
    free(conf);
    if (!is_ca)
        return;
    char *ixp = kwt_path(kwt_g.dir, "state/index.txt");
    kwt_index ix = {0};
    if (kwt_index_load(&ix, ixp) != 0) {
        free(ixp);
        return;
    }
    free(ixp);
    for (size_t i = ix.n; i-- > 0 && !*status;) {
        kwt_row *r = &ix.rows[i];
        char *cp = kwt_asprintf("%s/certs/%s.pem", kwt_g.dir, r->serial);
        X509 *c = kwt_load_cert(cp);
        free(cp);
        /* the same certificate, or (for a request) a certificate of the same key */
        bool match =
            c && (x ? X509_cmp(c, x) == 0 : EVP_PKEY_eq(X509_get0_pubkey(c), csr_key) == 1);
        if (match) {
            long long exp = kwt_asn1_to_time(r->expiry);
            *name = kwt_strdup(r->name);
            if (x) /* the operator's tags, note and auto-renew of this certificate */
                kwt_meta_read(kwt_g.dir, r->serial, md);
            if (r->status == 'R')
                *status = kwt_asprintf("revoked (%s)", r->revocation);
            else if (r->status == 'E' || (exp >= 0 && exp < (long long)time(NULL)))
                *status = kwt_strdup("expired");
            else
                *status = kwt_strdup("valid");
            if (!x) {
                char *s = kwt_asprintf("%s: serial %s", *status, r->serial);
                free(*status);
                *status = s;
            }
        }
        X509_free(c);
    }
    if (!*status)
        *status =
            kwt_strdup(x ? "not issued by the CA in this directory" : "not signed by this CA");
    kwt_index_free(&ix);
}

int kwt_cmd_show(int argc, char **argv)
{
    const char *pos[1];
    int npos, rc = kwt_parse_args("show", argc, argv, NULL, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1)
        return kwt_err(KWT_USAGE, "show: give one certificate or CSR file");
    const char *path = pos[0];
    FILE *probe = fopen(path, "r");
    if (!probe)
        return kwt_err(KWT_FAIL, "%s: %s", path, strerror(errno));
    fclose(probe);
    X509 *x = kwt_load_cert(path);
    X509_REQ *req = x ? NULL : kwt_load_csr(path);
    if (!x && !req)
        return kwt_err(KWT_FAIL, "%s: neither a certificate nor a certificate request (PEM or DER)",
                       path);
    EVP_PKEY *pk = x ? X509_get0_pubkey(x) : X509_REQ_get0_pubkey(req);
    GENERAL_NAMES *gens = NULL;
    if (x) {
        gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    } else {
        STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
        int i = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
        if (i >= 0)
            gens = X509V3_EXT_d2i(X509v3_get_ext(exts, i));
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    kwt_buf san = {0};
    kwt_buf_addn(&san, "", 0);
    san_list(gens, &san);
    GENERAL_NAMES_free(gens);
    field f[16];
    int n = 0;
    f[n++] = (field){"subject",
                     kwt_name_text(x ? X509_get_subject_name(x) : X509_REQ_get_subject_name(req))};
    if (x)
        f[n++] = (field){"issuer", kwt_name_text(X509_get_issuer_name(x))};
    f[n++] = (field){"san", kwt_strdup(san.s)};
    f[n++] = (field){"key", key_text(pk)};
    f[n++] = (field){"spki_sha256", kwt_spki_fingerprint(pk)};
    if (x) {
        f[n++] = (field){"sha256", kwt_cert_fingerprint(x)};
        f[n++] = (field){"serial", kwt_cert_serial(x)};
        f[n++] = (field){"not_before", time_text(X509_get0_notBefore(x))};
        f[n++] = (field){"not_after", time_text(X509_get0_notAfter(x))};
    } else {
        f[n++] = (field){"signature", kwt_strdup(X509_REQ_verify(req, pk) == 1
                                                     ? "valid (the requester holds the key)"
                                                     : "INVALID (damaged or forged request)")};
    }
    char *name = NULL, *status = NULL;
    kwt_meta md;
    kwt_meta_init(&md);
    ca_status(x, pk, &name, &status, &md);
    if (name)
        f[n++] = (field){"name", name};
    if (status)
        f[n++] = (field){"status", status};
    bool have_meta = name && x && md.profile;
    if (have_meta) {
        kwt_buf tb = {0};
        kwt_buf_addn(&tb, "", 0);
        for (size_t t = 0; t < md.ntags; t++)
            kwt_buf_printf(&tb, "%s%s=%s", t ? ", " : "", md.tags[t].key, md.tags[t].value);
        f[n++] = (field){"profile", kwt_strdup(md.profile)};
        f[n++] = (field){"tags", tb.s};
        f[n++] = (field){"note", kwt_strdup(md.note ? md.note : "")};
        f[n++] = (field){"auto_renew", kwt_strdup(md.auto_renew ? "on" : "off")};
    }
    static const char *const label[][2] = {
        {"subject", "subject:    "},     {"issuer", "issuer:     "},
        {"san", "SAN:        "},         {"key", "key:        "},
        {"spki_sha256", "SPKI sha256:"}, {"sha256", "cert sha256:"},
        {"serial", "serial:     "},      {"not_before", "not before: "},
        {"not_after", "not after:  "},   {"signature", "signature:  "},
        {"name", "name:       "},        {"status", "status:     "},
        {"profile", "profile:    "},     {"tags", "tags:       "},
        {"note", "note:       "},        {"auto_renew", "auto-renew: "},
    };
    kwt_buf out = {0};
    if (kwt_g.json) {
        kwt_buf_add(&out, "{\"type\":");
        kwt_buf_json_str(&out, x ? "certificate" : "request");
        for (int i = 0; i < n; i++) {
            /* tags as an object (KEY: VALUE), as ca list --json has them */
            if (!strcmp(f[i].k, "tags")) {
                kwt_buf_add(&out, ",\"tags\":{");
                for (size_t t = 0; t < md.ntags; t++) {
                    kwt_buf_add(&out, t ? "," : "");
                    kwt_buf_json_str(&out, md.tags[t].key);
                    kwt_buf_add(&out, ":");
                    kwt_buf_json_str(&out, md.tags[t].value);
                }
                kwt_buf_add(&out, "}");
                continue;
            }
            kwt_buf_printf(&out, ",\"%s\":", f[i].k);
            kwt_buf_json_str(&out, f[i].v);
        }
        kwt_buf_add(&out, "}\n");
    } else {
        kwt_buf_printf(&out, "%s %s\n", x ? "certificate" : "certificate request", path);
        for (int i = 0; i < n; i++)
            for (size_t j = 0; j < sizeof(label) / sizeof(label[0]); j++)
                if (!strcmp(label[j][0], f[i].k))
                    kwt_buf_printf(&out, "  %s %s\n", label[j][1], *f[i].v ? f[i].v : "-");
    }
    fputs(out.s, stdout);
    kwt_buf_free(&out);
    for (int i = 0; i < n; i++)
        free(f[i].v);
    kwt_meta_free(&md);
    kwt_buf_free(&san);
    X509_free(x);
    X509_REQ_free(req);
    return 0;
}
