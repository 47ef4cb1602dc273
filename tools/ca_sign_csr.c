/* SPDX-License-Identifier: Apache-2.0 */
/* The intake checks of a certificate request: read once, its signature, key, subject and
 * extensions checked for the profile, its names rebuilt as keyward's SAN list. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const profiles[] = {"client", "server", "device", "ocsp", "subca"};

bool kwt_valid_profile(const char *p)
{
    for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
        if (!strcmp(p, profiles[i]))
            return true;
    return false;
}

/* The CSR is read once, into memory: everything keyward checks and everything openssl signs
 * comes from that one read (a requester who can rewrite the file between two reads must not get
 * a certificate for what was not checked). openssl is given a private DER copy. */
#define CSR_MAX (1024 * 1024)

int kwt_csr_read_once(const char *path, X509_REQ **out)
{
    *out = NULL;
    /* O_NONBLOCK: a FIFO planted as the CSR must not hang the CA; then only a regular file */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return kwt_err(KWT_FAIL, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kwt_err(KWT_FAIL, "%s: not a regular file (a CSR is a PEM or DER file)", path);
    }
    if (st.st_size > CSR_MAX) {
        close(fd);
        return kwt_err(KWT_FAIL, "%s: %lld bytes; a CSR is at most %d", path, (long long)st.st_size,
                       CSR_MAX);
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len <= (size_t)st.st_size &&
           (n = read(fd, buf + len, (size_t)st.st_size + 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf || n < 0 || len > (size_t)st.st_size) {
        free(buf);
        return kwt_err(KWT_FAIL, "%s: changed or unreadable while read", path);
    }
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    X509_REQ *r = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!r) {
        const unsigned char *p = buf;
        r = d2i_X509_REQ(NULL, &p, (long)len);
        if (r && p != buf + len) { /* trailing bytes: not one request */
            X509_REQ_free(r);
            r = NULL;
        }
    }
    ERR_clear_error();
    free(buf);
    if (!r)
        return kwt_err(KWT_FAIL, "%s: not a certificate request (PEM or DER)", path);
    *out = r;
    return 0;
}

/* The copy openssl signs: the request as parsed, in PEM (openssl ca reads no other form),
 * 0600, in the staging state. */
int kwt_csr_private_copy(kwt_ca *ca, X509_REQ *r, char **out)
{
    static unsigned seq;
    *out = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len = 0;
    if (!b || PEM_write_bio_X509_REQ(b, r) != 1 || (len = BIO_get_mem_data(b, &pem)) <= 0) {
        BIO_free(b);
        return kwt_err(KWT_FAIL, "cannot encode the CSR");
    }
    char *dir = ca->stage ? kwt_strdup(ca->stage) : kwt_path(ca->dir, "state");
    char *p = kwt_asprintf("%s/req-%ld-%u.csr", dir, (long)getpid(), seq++);
    int rc = 0;
    if (kwt_write_atomic(p, pem, (size_t)len, 0600) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", p, strerror(errno));
        free(p);
    } else {
        *out = p;
    }
    BIO_free(b);
    free(dir);
    return rc;
}

static const char *gen_type_name(int type)
{
    switch (type) {
    case GEN_OTHERNAME:
        return "otherName";
    case GEN_EMAIL:
        return "email (rfc822Name)";
    case GEN_DNS:
        return "DNS";
    case GEN_X400:
        return "x400Address";
    case GEN_DIRNAME:
        return "directoryName";
    case GEN_EDIPARTY:
        return "ediPartyName";
    case GEN_URI:
        return "URI";
    case GEN_IPADD:
        return "IP address";
    case GEN_RID:
        return "registeredID";
    }
    return "unknown GeneralName";
}

/* Which SAN types a profile takes from a CSR. */
static bool san_allowed(const char *profile, int type)
{
    if (!strcmp(profile, "client"))
        return type == GEN_DNS || type == GEN_EMAIL || type == GEN_URI || type == GEN_IPADD;
    if (!strcmp(profile, "server"))
        return type == GEN_DNS || type == GEN_IPADD;
    if (!strcmp(profile, "device"))
        return type == GEN_DNS || type == GEN_URI || type == GEN_OTHERNAME;
    return false; /* ocsp, subca: no names from the requester */
}

/* One IA5String name of a CSR as text, or NULL when it holds a byte that cannot be in such a
 * name: NUL (C string functions would stop there: "good.example\0.evil"), controls, non-ASCII,
 * and the separators of keyward's and openssl's SAN lists. */
static char *ia5_text(const ASN1_STRING *s, const char **why)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int l = ASN1_STRING_length(s);
    for (int i = 0; i < l; i++) {
        if (d[i] == 0) {
            *why = "contains a NUL byte";
            return NULL;
        }
        if (d[i] < 0x21 || d[i] > 0x7e) {
            *why = "contains a control character, space or non-ASCII byte";
            return NULL;
        }
        if (strchr(",$#\"'\\;=", d[i])) {
            *why = "contains one of , $ # \" ' \\ ; =";
            return NULL;
        }
    }
    if (l == 0) {
        *why = "is empty";
        return NULL;
    }
    return kwt_asprintf("%.*s", l, (const char *)d);
}

/* The CSR's SANs, each checked for the profile and rebuilt as keyward's SAN list (what keyward
 * writes into the certificate). An otherName is accepted only in the device profile, only under
 * the CA's device-ID OID and only with the device ID being certified (keyward writes that one
 * itself). */
static int csr_sans(const char *label, GENERAL_NAMES *gens, const char *profile,
                    const kwt_conf *conf, const char *device_id, kwt_buf *sb)
{
    ASN1_OBJECT *devoid = conf->device_oid ? OBJ_txt2obj(conf->device_oid, 1) : NULL;
    int rc = 0;
    for (int j = 0; gens && j < sk_GENERAL_NAME_num(gens) && rc == 0; j++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, j);
        const char *why = NULL, *sep = sb->len ? "," : "";
        if (!san_allowed(profile, g->type)) {
            char oid[80] = "";
            if (g->type == GEN_OTHERNAME)
                OBJ_obj2txt(oid, sizeof(oid), g->d.otherName->type_id, 1);
            rc = kwt_err(KWT_FAIL,
                         "%s: the CSR's subjectAltName has a %s name%s%s, which the %s profile "
                         "does not take from a CSR",
                         label, gen_type_name(g->type), *oid ? " " : "", oid, profile);
            break;
        }
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            char *t = ia5_text(g->d.ia5, &why);
            if (!t) {
                rc = kwt_err(KWT_FAIL, "%s: a %s name in the CSR's subjectAltName %s", label,
                             gen_type_name(g->type), why);
                break;
            }
            if (g->type == GEN_DNS && !strncasecmp(t, "device-", 7) && strcmp(profile, "device")) {
                rc = kwt_err(KWT_FAIL,
                             "%s: DNS name %s is reserved for device certificates (profile "
                             "device with --device-id)",
                             label, t);
                free(t);
                break;
            }
            kwt_buf_printf(sb, "%s%s:%s", sep,
                           g->type == GEN_DNS     ? "DNS"
                           : g->type == GEN_EMAIL ? "email"
                                                  : "URI",
                           t);
            free(t);
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN];
            int l = ASN1_STRING_length(g->d.ip);
            const unsigned char *b = ASN1_STRING_get0_data(g->d.ip);
            if (!((l == 4 && inet_ntop(AF_INET, b, ip, sizeof(ip))) ||
                  (l == 16 && inet_ntop(AF_INET6, b, ip, sizeof(ip))))) {
                rc = kwt_err(KWT_FAIL,
                             "%s: an IP address in the CSR's subjectAltName has %d "
                             "bytes (4 or 16)",
                             label, l);
                break;
            }
            kwt_buf_printf(sb, "%sIP:%s", sep, ip);
        } else if (g->type == GEN_OTHERNAME) {
            OTHERNAME *on = g->d.otherName;
            ASN1_TYPE *v = on->value;
            char oid[80];
            OBJ_obj2txt(oid, sizeof(oid), on->type_id, 1);
            bool ours = devoid && !OBJ_cmp(on->type_id, devoid);
            bool same =
                ours && device_id && v && v->type == V_ASN1_UTF8STRING &&
                (size_t)ASN1_STRING_length(v->value.utf8string) == strlen(device_id) &&
                !memcmp(ASN1_STRING_get0_data(v->value.utf8string), device_id, strlen(device_id));
            if (!same) {
                rc = kwt_err(KWT_FAIL,
                             "%s: the CSR's subjectAltName has otherName %s%s; only the device "
                             "ID being certified (--device-id) under %s is accepted",
                             label, oid, ours ? " with another device ID" : "",
                             conf->device_oid ? conf->device_oid : "the device OID");
                break;
            }
            /* keyward writes the device otherName itself from --device-id */
        }
    }
    ASN1_OBJECT_free(devoid);
    return rc;
}

/* A name that looks like a serial number could be mistaken for another certificate's serial by
 * `ca revoke` (the CN is the default NAME, and the requester chooses the CN). */
bool kwt_looks_like_serial(const char *name)
{
    size_t n = strlen(name);
    if (n < 16)
        return false;
    for (const char *p = name; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return false;
    return true;
}

/* The keys and signatures a CA certifies: RSA of 2048 bits or more with a public exponent of
 * at least 65537, EC on P-256, P-384 or P-521 (named), Ed25519 or Ed448; the request signed
 * with SHA-256 or better. */
static int check_key_policy(const char *label, X509_REQ *r)
{
    EVP_PKEY *pk = X509_REQ_get0_pubkey(r);
    char grp[64] = "";
    BIGNUM *e = NULL;
    int rc = 0;
    if (EVP_PKEY_is_a(pk, "RSA")) {
        if (EVP_PKEY_get_bits(pk) < 2048)
            rc = kwt_err(KWT_FAIL, "%s: an RSA key of %d bits; the CA certifies 2048 or more",
                         label, EVP_PKEY_get_bits(pk));
        else if (EVP_PKEY_get_bn_param(pk, "e", &e) != 1 || BN_get_word(e) < 65537 || !BN_is_odd(e))
            rc = kwt_err(KWT_FAIL, "%s: an RSA public exponent below 65537", label);
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        if (EVP_PKEY_get_group_name(pk, grp, sizeof(grp), NULL) != 1 ||
            (strcmp(grp, "prime256v1") && strcmp(grp, "secp384r1") && strcmp(grp, "secp521r1")))
            rc = kwt_err(KWT_FAIL,
                         "%s: an EC key on %s; the CA certifies the named curves P-256, P-384 and "
                         "P-521",
                         label, *grp ? grp : "explicit or unknown parameters");
    } else if (!EVP_PKEY_is_a(pk, "ED25519") && !EVP_PKEY_is_a(pk, "ED448")) {
        rc = kwt_err(KWT_FAIL, "%s: a %s key; the CA certifies RSA, EC, Ed25519 and Ed448 keys",
                     label, EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "unknown");
    }
    int md = NID_undef, pknid = NID_undef;
    if (rc == 0 && OBJ_find_sigid_algs(X509_REQ_get_signature_nid(r), &md, &pknid) == 1 &&
        (md == NID_md5 || md == NID_sha1 || md == NID_md4 || md == NID_md2 || md == NID_sha224))
        rc = kwt_err(KWT_FAIL, "%s: the CSR is signed with %s; SHA-256 or better is required",
                     label, OBJ_nid2sn(md));
    BN_free(e);
    ERR_clear_error();
    return rc;
}

/* Check a parsed CSR for a profile. cn gets the CN (NULL when absent), sans the CSR's SANs in
 * keyward's list form (NULL when none). Returns 0 or an exit code after printing why. */
int kwt_check_csr(const char *label, X509_REQ *r, const char *profile, const kwt_conf *conf,
                  const char *device_id, char **cn, char **sans)
{
    *cn = *sans = NULL;
    int rc = KWT_FAIL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    kwt_buf sb = {0};
    EVP_PKEY *pk = X509_REQ_get0_pubkey(r);
    if (!pk || X509_REQ_verify(r, pk) != 1) {
        kwt_err(KWT_FAIL, "%s: the CSR's signature does not verify (damaged or forged request)",
                label);
        goto out;
    }
    if (check_key_policy(label, r) != 0)
        goto out;
    X509_NAME *nm = X509_REQ_get_subject_name(r);
    int idx = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    if (idx < 0) {
        kwt_err(KWT_FAIL, "%s: the CSR's subject has no CN", label);
        goto out;
    }
    if (X509_NAME_get_index_by_NID(nm, NID_commonName, idx) >= 0) {
        /* one certificate, one CN: relying parties differ in which of two they read */
        kwt_err(KWT_FAIL, "%s: the CSR's subject has more than one CN", label);
        goto out;
    }
    for (int i = 0; i < X509_NAME_entry_count(nm); i++) {
        const X509_NAME_ENTRY *ne = X509_NAME_get_entry(nm, i);
        if (i > 0 &&
            X509_NAME_ENTRY_set(ne) == X509_NAME_ENTRY_set(X509_NAME_get_entry(nm, i - 1))) {
            kwt_err(KWT_FAIL, "%s: the CSR's subject has a multi-valued RDN (A=x+B=y)", label);
            goto out;
        }
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(ne);
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, d);
        bool bad = ul < 0;
        for (int k = 0; k < ul && !bad; k++)
            bad = u[k] < 0x20 || u[k] == 0x7f ||
                  /* C1 controls (U+0080-U+009F) and bidirectional overrides (U+202A-U+202E,
                   * U+2066-U+2069) make a name display as another */
                  (u[k] == 0xc2 && k + 1 < ul && u[k + 1] >= 0x80 && u[k + 1] <= 0x9f) ||
                  (u[k] == 0xe2 && k + 2 < ul &&
                   ((u[k + 1] == 0x80 && u[k + 2] >= 0xaa && u[k + 2] <= 0xae) ||
                    (u[k + 1] == 0x81 && u[k + 2] >= 0xa6 && u[k + 2] <= 0xa9)));
        if (i == idx && !bad && ul > 64) {
            OPENSSL_free(u);
            kwt_err(KWT_FAIL, "%s: the CSR's CN has %d bytes; RFC 5280 allows 64", label, ul);
            goto out;
        }
        if (i == idx && !bad)
            *cn = kwt_asprintf("%.*s", ul, u);
        OPENSSL_free(u);
        if (bad) {
            kwt_err(KWT_FAIL,
                    "%s: the CSR's subject has a NUL, control or bidirectional-override "
                    "character (or is not valid text)",
                    label);
            goto out;
        }
    }
    exts = X509_REQ_get_extensions(r);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
        if (nid == NID_basic_constraints) {
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
            bool isca = bc && bc->ca;
            BASIC_CONSTRAINTS_free(bc);
            if (isca && strcmp(profile, "subca") != 0) {
                kwt_err(KWT_FAIL,
                        "%s: the CSR asks for CA:TRUE, which the %s profile never grants "
                        "(use --profile subca for a subordinate CA)",
                        label, profile);
                goto out;
            }
        } else if (nid == NID_ext_key_usage && !strcmp(profile, "subca")) {
            kwt_err(KWT_FAIL, "%s: a subca CSR must not request extendedKeyUsage", label);
            goto out;
        } else if (nid == NID_subject_alt_name) {
            if (X509_EXTENSION_get_critical(e)) {
                kwt_err(KWT_FAIL,
                        "%s: the CSR marks subjectAltName critical (RFC 5280: only for "
                        "an empty subject); keyward writes it non-critical",
                        label);
                goto out;
            }
            if (sb.len) {
                kwt_err(KWT_FAIL, "%s: the CSR has two subjectAltName extensions", label);
                goto out;
            }
            GENERAL_NAMES *gens = X509V3_EXT_d2i(e);
            if (!gens) {
                kwt_err(KWT_FAIL, "%s: the CSR's subjectAltName does not decode", label);
                goto out;
            }
            int src = csr_sans(label, gens, profile, conf, device_id, &sb);
            GENERAL_NAMES_free(gens);
            if (src)
                goto out;
        } else if (nid != NID_key_usage && nid != NID_ext_key_usage &&
                   nid != NID_subject_key_identifier) {
            char oid[80];
            OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(e), 1);
            kwt_err(KWT_FAIL, "%s: the CSR requests extension %s, which keyward does not accept",
                    label, oid);
            goto out;
        }
    }
    if (sb.len) {
        /* the names also pass the checks an operator's --san does (host name syntax ...) */
        const char *why;
        char *norm = kwt_san_to_conf(sb.s, &why);
        if (!norm) {
            kwt_err(KWT_FAIL, "%s: a SAN in the CSR is refused: %s", label, why);
            goto out;
        }
        *sans = norm;
    }
    rc = 0;
out:
    if (rc) {
        free(*cn);
        *cn = NULL;
    }
    kwt_buf_free(&sb);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return rc;
}

/* The CA's policy_match as openssl ca applies it, checked before openssl runs (in one run for
 * many requests, openssl stops at the first it refuses and issues none): each listed field of
 * the subject is there, and each of its values equals one of the CA certificate's (type and
 * bytes, as openssl compares them). */
int kwt_check_policy_match(const char *label, X509_REQ *req, X509 *cacert, const kwt_conf *conf)
{
    int nids[32], n = kwt_policy_match_nids(conf, nids, 32);
    X509_NAME *rn = X509_REQ_get_subject_name(req);
    X509_NAME *cn = cacert ? X509_get_subject_name(cacert) : NULL;
    for (int i = 0; i < n; i++) {
        const char *fname = OBJ_nid2sn(nids[i]);
        int j = X509_NAME_get_index_by_NID(rn, nids[i], -1);
        if (j < 0)
            return kwt_err(KWT_FAIL,
                           "%s: the subject has no %s; the CA's policy_match requires it, equal "
                           "to the CA certificate's",
                           label, fname);
        if (!cn || X509_NAME_get_index_by_NID(cn, nids[i], -1) < 0)
            return kwt_err(KWT_FAIL,
                           "%s: policy_match lists %s, which the CA certificate's subject does "
                           "not have: correct policy_match in keyward.conf",
                           label, fname);
        for (; j >= 0; j = X509_NAME_get_index_by_NID(rn, nids[i], j)) {
            ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(rn, j));
            bool same = false;
            for (int k = -1; !same && (k = X509_NAME_get_index_by_NID(cn, nids[i], k)) >= 0;)
                same = !ASN1_STRING_cmp(v, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(cn, k)));
            if (!same) {
                unsigned char *u = NULL;
                int ul = ASN1_STRING_to_UTF8(&u, v);
                kwt_err(KWT_FAIL,
                        "%s: the subject's %s (%.*s) is not the CA certificate's; the CA's "
                        "policy_match requires them equal",
                        label, fname, ul > 0 ? ul : 0, u ? (char *)u : "");
                OPENSSL_free(u);
                return KWT_FAIL;
            }
        }
    }
    return 0;
}
