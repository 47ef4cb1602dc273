/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca sign` (one CSR or a batch in one openssl process) and `keyward ca renew`.
 * The CSR is checked here before openssl sees it, so bad input changes nothing. */
#include "kwt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const profiles[] = {"client", "server", "device", "ocsp", "subca"};

int kwt_sign_refused;

static bool valid_profile(const char *p)
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

static int csr_read_once(const char *path, X509_REQ **out)
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
static int csr_private_copy(kwt_ca *ca, X509_REQ *r, char **out)
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
static bool looks_like_serial(const char *name)
{
    size_t n = strlen(name);
    if (n < 16)
        return false;
    for (const char *p = name; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return false;
    return true;
}

/* SHA-256 of a public key's SubjectPublicKeyInfo. */
static bool spki_sha256(EVP_PKEY *pk, unsigned char out[32])
{
    unsigned char *der = NULL;
    int len = pk ? i2d_PUBKEY(pk, &der) : -1;
    bool ok = len > 0 && EVP_Digest(der, (size_t)len, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok;
}

typedef struct {
    unsigned char h[32];
    const char *name, *serial;
    bool compromised; /* revoked for keyCompromise: never certified again */
    char *subj;       /* name_key() of a valid certificate's subject */
} held_key;

static int cmp_held(const void *a, const void *b)
{
    return memcmp(((const held_key *)a)->h, ((const held_key *)b)->h, 32);
}

static int cmp_held_subj(const void *a, const void *b)
{
    const char *x = ((const held_key *)a)->subj, *y = ((const held_key *)b)->subj;
    return !x || !y ? (x != NULL) - (y != NULL) : strcmp(x, y);
}

static char *name_key(const X509_NAME *n);

/* The public keys of the CA's unexpired valid certificates, sorted by SPKI hash (one pass over
 * the index, so a batch checks each of its CSRs without reading the CA again). */
static held_key *held_keys(kwt_ca *ca, kwt_index *ix, size_t *n)
{
    held_key *k = calloc(ix->n ? ix->n : 1, sizeof(*k));
    long long now = (long long)time(NULL);
    *n = 0;
    for (size_t i = 0; k && i < ix->n; i++) {
        kwt_row *r = &ix->rows[i];
        /* openssl ca records keyCompromise as "date,keyTime,..." */
        bool compromised = r->status == 'R' && strstr(r->revocation, ",keyTime") != NULL;
        if (!compromised && (r->status != 'V' || kwt_asn1_to_time(r->expiry) <= now))
            continue;
        /* the key as the certificate encodes it (openssl ca encoded it as spki_sha256 does),
         * read without decoding: at 30,000 certificates decoding each key took seconds */
        char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, r->serial);
        X509_NAME *subj = NULL;
        if (kwt_cert_key_subject(p, k[*n].h, &subj) == 0) {
            k[*n].name = r->name;
            k[*n].serial = r->serial;
            k[*n].compromised = compromised;
            k[*n].subj = compromised ? NULL : name_key(subj);
            (*n)++;
        }
        X509_NAME_free(subj);
        free(p);
    }
    if (k)
        qsort(k, *n, sizeof(*k), cmp_held);
    return k;
}

/* The same entries sorted by subject, for check_subject_unique (free() it; the strings are
 * k's). */
static held_key *held_by_subject(const held_key *k, size_t n)
{
    held_key *s = malloc((n ? n : 1) * sizeof(*s));
    if (s) {
        memcpy(s, k, n * sizeof(*s));
        qsort(s, n, sizeof(*s), cmp_held_subj);
    }
    return s;
}

static void held_keys_free(held_key *k, size_t n)
{
    for (size_t i = 0; k && i < n; i++)
        free(k[i].subj);
    free(k);
}

/* The entries of k (sorted by cmp) equal to want: [*first, return value). */
static const held_key *held_range(const held_key *want, const held_key *k, size_t n,
                                  int (*cmp)(const void *, const void *), const held_key **first)
{
    const held_key *hit = n ? bsearch(want, k, n, sizeof(*k), cmp) : NULL, *end = hit;
    while (hit && hit > k && !cmp(hit - 1, want))
        hit--;
    while (end && end < k + n && !cmp(end, want))
        end++;
    *first = hit;
    return end;
}

/* Refuse a key revoked for keyCompromise, always: what was compromised stays so. */
static int check_key_not_compromised(const char *label, X509_REQ *req, const held_key *k, size_t n)
{
    held_key want;
    const held_key *hit, *end;
    if (!spki_sha256(X509_REQ_get0_pubkey(req), want.h))
        return kwt_err(KWT_FAIL, "%s: cannot hash the CSR's public key", label);
    for (end = held_range(&want, k, n, cmp_held, &hit); hit && hit < end; hit++)
        if (hit->compromised)
            return kwt_err(
                KWT_FAIL,
                "%s: its public key was revoked for keyCompromise (%s, serial %s); a "
                "compromised key is never certified again: the requester needs a new key",
                label, hit->name, hit->serial);
    return 0;
}

/* Refuse a subject that another NAME holds a valid certificate for (a requester copying
 * someone's subject under a name of their own), unless the operator allows it. by_subj: from
 * held_by_subject. */
static int check_subject_unique(const char *label, X509_REQ *req, const char *name,
                                const held_key *by_subj, size_t n)
{
    held_key want = {.subj = name_key(X509_REQ_get_subject_name(req))};
    const held_key *hit, *end;
    int rc = 0;
    for (end = held_range(&want, by_subj, n, cmp_held_subj, &hit); hit && hit < end && !rc; hit++)
        if (hit->subj && strcmp(hit->name, name) != 0)
            rc = kwt_err(KWT_FAIL,
                         "%s: its subject is that of %s's valid certificate (serial %s); renew %s "
                         "instead, or pass --allow-same-subject",
                         label, hit->name, hit->serial, hit->name);
    free(want.subj);
    return rc;
}

/* Refuse a key that another NAME already holds a valid certificate for: one key, one identity
 * (a requester re-sending a known key under a new name would get a second identity for it). */
static int check_key_unique(const char *label, X509_REQ *req, const char *name, const held_key *k,
                            size_t n)
{
    held_key want;
    const held_key *hit, *end;
    if (!spki_sha256(X509_REQ_get0_pubkey(req), want.h))
        return kwt_err(KWT_FAIL, "%s: cannot hash the CSR's public key", label);
    for (end = held_range(&want, k, n, cmp_held, &hit); hit && hit < end; hit++)
        if (!hit->compromised && strcmp(hit->name, name) != 0)
            return kwt_err(KWT_FAIL,
                           "%s: its public key already holds a valid certificate, %s (serial %s); "
                           "sign it under that name (ca renew %s), revoke that one first, or pass "
                           "--allow-same-key",
                           label, hit->name, hit->serial, hit->name);
    return 0;
}

static int check_csr(const char *label, X509_REQ *r, const char *profile, const kwt_conf *conf,
                     const char *device_id, char **cn, char **sans);

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "oid=value" of each RDN, sorted: the CA reorders a CSR's RDNs (its policy's order). With
 * fold, values in lower case: a copy in other case is the same name to a person. */
static char *name_key_fold(const X509_NAME *n, bool fold)
{
    int c = X509_NAME_entry_count(n);
    char **items = calloc((size_t)(c > 0 ? c : 1), sizeof(*items));
    for (int i = 0; items && i < c; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        char oid[80];
        unsigned char *u = NULL;
        OBJ_obj2txt(oid, sizeof(oid), X509_NAME_ENTRY_get_object(e), 1);
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
        for (int j = 0; fold && j < ul; j++)
            u[j] = (unsigned char)tolower(u[j]);
        items[i] = kwt_asprintf("%s=%.*s", oid, ul > 0 ? ul : 0, u ? (char *)u : "");
        OPENSSL_free(u);
    }
    if (items)
        qsort(items, (size_t)(c > 0 ? c : 0), sizeof(*items), cmp_strp);
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (int i = 0; items && i < c; i++) {
        kwt_buf_printf(&b, "%s\n", items[i]);
        free(items[i]);
    }
    free(items);
    return b.s;
}

static char *name_key(const X509_NAME *n)
{
    return name_key_fold(n, true);
}

/* The subjectAltName keyward writes for a request, as sign_req puts it together (the CSR's
 * checked names, the signing record's --san, the device names), parsed as openssl ca parses it;
 * *out NULL when there is none. */
static int would_be_sans(const kwt_conf *conf, const char *profile, const char *csr_sans,
                         const char *san, const char *devid, GENERAL_NAMES **out)
{
    const char *why;
    kwt_buf all = {0};
    *out = NULL;
    kwt_buf_addn(&all, "", 0);
    if (csr_sans)
        kwt_buf_add(&all, csr_sans);
    char *extra = san ? kwt_san_to_conf(san, &why) : NULL;
    if (extra)
        kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", extra);
    if (!strcmp(profile, "device") && devid) {
        char *want = kwt_asprintf("DNS:device-%s", devid);
        if (!strstr(all.s, want))
            kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", want);
        free(want);
        kwt_buf_printf(&all, ", otherName:%s;UTF8:%s", conf->device_oid, devid);
    }
    int rc = 0;
    if (all.len) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, NULL, NULL, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, all.s);
        *out = e ? X509V3_EXT_d2i(e) : NULL;
        X509_EXTENSION_free(e);
        if (!*out)
            rc = kwt_err(KWT_FAIL, "cannot build the subjectAltName %s", all.s);
    }
    free(extra);
    kwt_buf_free(&all);
    ERR_clear_error();
    return rc;
}

/* Every name of a in b (NULL: none). */
static bool sans_within(const GENERAL_NAMES *a, const GENERAL_NAMES *b)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(a); i++) {
        bool found = false;
        for (int j = 0; j < sk_GENERAL_NAME_num(b) && !found; j++)
            found = GENERAL_NAME_cmp(sk_GENERAL_NAME_value(a, i), sk_GENERAL_NAME_value(b, j)) == 0;
        if (!found)
            return false;
    }
    return true;
}

static char *sans_text(const GENERAL_NAMES *g)
{
    BIO *b = BIO_new(BIO_s_mem());
    for (int i = 0; b && i < sk_GENERAL_NAME_num(g); i++) {
        if (i)
            BIO_puts(b, ", ");
        GENERAL_NAME_print(b, sk_GENERAL_NAME_value(g, i));
    }
    char *p = NULL;
    long l = b ? BIO_get_mem_data(b, &p) : 0;
    char *s = l > 0 ? kwt_asprintf("%.*s", (int)l, p) : kwt_strdup("(none)");
    BIO_free(b);
    return s;
}

/* The identity a rekey request would get (its subject; its SANs with the signing record's --san
 * and the device names) against the current certificate's: *diff describes what differs (NULL
 * when the same). Subjects compare RDN by RDN, values byte for byte, in any order (the CA's
 * policy orders a certificate's RDNs); SANs as sets. */
static int identity_diff(kwt_ca *ca, const char *profile, const char *devid, const char *san,
                         X509 *cur, X509_REQ *newr, const char *newlabel, char **diff)
{
    char *ncn = NULL, *nsan = NULL;
    GENERAL_NAMES *want = NULL, *have = X509_get_ext_d2i(cur, NID_subject_alt_name, NULL, NULL);
    *diff = NULL;
    int rc = check_csr(newlabel, newr, profile, &ca->conf, devid, &ncn, &nsan);
    if (rc == 0)
        rc = would_be_sans(&ca->conf, profile, nsan, san, devid, &want);
    if (rc == 0) {
        kwt_buf d = {0};
        X509_NAME *on = X509_get_subject_name(cur), *nn = X509_REQ_get_subject_name(newr);
        /* exact, as a relying party shows it: X509_NAME_cmp ignores case and spaces */
        char *ok = name_key_fold(on, false), *nk = name_key_fold(nn, false);
        if (strcmp(ok, nk) != 0) {
            char *ot = kwt_name_text(on), *nt = kwt_name_text(nn);
            kwt_buf_printf(&d, "subject %s -> %s", ot, nt);
            free(ot);
            free(nt);
        }
        free(ok);
        free(nk);
        if (!sans_within(have, want) || !sans_within(want, have)) {
            char *ht = sans_text(have), *wt = sans_text(want);
            kwt_buf_printf(&d, "%ssubjectAltName %s -> %s", d.len ? "; " : "", ht, wt);
            free(ht);
            free(wt);
        }
        *diff = d.s;
    }
    GENERAL_NAMES_free(have);
    GENERAL_NAMES_free(want);
    free(ncn);
    free(nsan);
    return rc;
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
static int check_csr(const char *label, X509_REQ *r, const char *profile, const kwt_conf *conf,
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

/* One openssl ca process signs a whole batch (or a renewal run), and it cannot take a
 * subjectAltName per request from keyward, so those runs let openssl copy the requests' own
 * (copy_extensions = copy): from the private copies whose names check_csr vetted one by one.
 * Every profile sets basicConstraints, keyUsage, extendedKeyUsage (subca: refused in the
 * request) and subjectKeyIdentifier, which copy never overrides, so the subjectAltName is all
 * it can add. This checks that on each certificate before the run is committed: no extension
 * outside the profile's, and a subjectAltName only where the request had one, byte for byte
 * the one vetted. A mismatch fails the whole run (nothing is issued). */
static int check_issued(kwt_ca *ca, const char *serial, X509_REQ *req, const char *label)
{
    static const int profile_nids[] = {NID_basic_constraints,
                                       NID_key_usage,
                                       NID_ext_key_usage,
                                       NID_subject_key_identifier,
                                       NID_authority_key_identifier,
                                       NID_crl_distribution_points,
                                       NID_id_pkix_OCSP_noCheck};
    char *p = kwt_asprintf("%s/certs/%s.pem", ca->dir, serial);
    X509 *x = kwt_load_cert(p);
    STACK_OF(X509_EXTENSION) *rx = X509_REQ_get_extensions(req);
    int rc = 0;
    if (!x) {
        rc = kwt_err(KWT_FAIL, "%s: cannot read the certificate openssl issued (%s)", label, p);
        goto out;
    }
    int ri = X509v3_get_ext_by_NID(rx, NID_subject_alt_name, -1);
    const X509_EXTENSION *want = ri >= 0 ? X509v3_get_ext(rx, ri) : NULL;
    bool seen = false;
    for (int i = 0; i < X509_get_ext_count(x) && rc == 0; i++) {
        const X509_EXTENSION *e = X509_get_ext(x, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object((X509_EXTENSION *)e));
        bool ok = false;
        for (size_t k = 0; k < sizeof(profile_nids) / sizeof(profile_nids[0]); k++)
            ok = ok || nid == profile_nids[k];
        if (nid == NID_subject_alt_name) {
            const ASN1_OCTET_STRING *a = X509_EXTENSION_get_data((X509_EXTENSION *)e);
            ok = want && !seen && X509_EXTENSION_get_critical(e) == 0 &&
                 ASN1_STRING_cmp(a, X509_EXTENSION_get_data((X509_EXTENSION *)want)) == 0;
            seen = true;
        }
        if (!ok) {
            char oid[80];
            OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object((X509_EXTENSION *)e), 1);
            rc = kwt_err(KWT_FAIL,
                         "%s: openssl issued serial %s with extension %s other than the profile's "
                         "and the request's vetted subjectAltName; nothing was issued",
                         label, serial, oid);
        }
    }
    if (rc == 0 && want && !seen)
        rc = kwt_err(KWT_FAIL,
                     "%s: openssl issued serial %s without the request's subjectAltName; nothing "
                     "was issued",
                     label, serial);
out:
    X509_free(x);
    sk_X509_EXTENSION_pop_free(rx, X509_EXTENSION_free);
    free(p);
    return rc;
}

/* A certificate never outlives the CA certificate that issued it (relying parties would stop
 * accepting it at the CA's end anyway, with a less clear error): days is cut to what is left. */
/* openssl ca's own words for a request that breaks the policy section (apps/ca.c) */
static int is_policy_refusal(const char *err)
{
    return strstr(err, "field needed to be") != NULL || strstr(err, "field is different") != NULL ||
           strstr(err, "the 'policy' is misconfigured") != NULL ||
           strstr(err, "in 'policy' configuration") != NULL;
}

static int clamp_days(kwt_ca *ca, int gen, int days)
{
    char *p = gen ? kwt_gen_cert_path(ca, gen) : kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(p);
    free(p);
    int left = days, secs = 0;
    if (x && ASN1_TIME_diff(&left, &secs, NULL, X509_get0_notAfter(x)) == 1 && left < days) {
        if (left < 1)
            left = 1;
        fprintf(stderr,
                "keyward: note: the CA certificate expires in %d days: issuing for %d days, not "
                "%d\n",
                left, left, days);
        days = left;
    }
    X509_free(x);
    return days;
}

static int check_ca_valid(kwt_ca *ca)
{
    char *p = kwt_path(ca->dir, "ca.crt");
    X509 *x = kwt_load_cert(p);
    free(p);
    if (!x)
        return kwt_err(KWT_FAIL, "the CA certificate %s/ca.crt is missing or unreadable", ca->dir);
    int rc = 0;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        rc = kwt_err(KWT_FAIL, "the CA certificate has expired; rotate the CA (keyward ca "
                               "rotate) before issuing");
    X509_free(x);
    return rc;
}

/* md: the operator's tags, note and auto-renew (NULL: none, auto-renew on); the record is
 * written under the CA lock, atomically, with the certificate it describes. */
static int store_meta(kwt_ca *ca, const char *serial, const char *csr, const char *profile,
                      int days, const char *san, const char *devid, const char *name,
                      const kwt_meta *md)
{
    if (kwt_g.dry_run)
        return 0;
    char *cp = kwt_asprintf("%s/certs/%s.csr", ca->dir, serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca->dir, serial);
    kwt_meta m;
    kwt_meta_init(&m);
    if (md) {
        memcpy(m.tags, md->tags, sizeof(m.tags));
        m.ntags = md->ntags;
        m.note = md->note;
        m.auto_renew = md->auto_renew;
    }
    m.name = (char *)name;
    m.profile = (char *)profile;
    m.days = days;
    m.san = (char *)san;
    m.device_id = (char *)devid;
    char *meta = kwt_meta_text(&m); /* m borrows every string: not freed */
    int rc = kwt_copy_file(csr, cp, 0644) || kwt_write_atomic(mp, meta, strlen(meta), 0644);
    if (rc)
        kwt_err(KWT_FAIL, "cannot store the request %s: %s", cp, strerror(errno));
    free(cp);
    free(mp);
    free(meta);
    return rc ? KWT_FAIL : 0;
}

static int sign_req(kwt_ca *ca, int gen, const char *label, X509_REQ *req, const char *profile,
                    const char *name, int days, const char *san, const char *device_id,
                    const kwt_meta *md, char **serial_out);

int kwt_sign_one(kwt_ca *ca, const char *csr, const char *profile, const char *name, int days,
                 const char *san, const char *device_id, char **serial_out)
{
    return kwt_sign_one_gen(ca, 0, csr, profile, name, days, san, device_id, serial_out);
}

int kwt_sign_one_gen(kwt_ca *ca, int gen, const char *csr, const char *profile, const char *name,
                     int days, const char *san, const char *device_id, char **serial_out)
{
    X509_REQ *req = NULL;
    *serial_out = NULL;
    int rc = csr_read_once(csr, &req);
    if (rc == 0)
        rc = sign_req(ca, gen, csr, req, profile, name, days, san, device_id, NULL, serial_out);
    X509_REQ_free(req);
    return rc;
}

/* The subjectAltName keyward writes into a certificate: the CSR's names as checked (csr_sans),
 * the operator's --san, and for the device profile its DNS name and the otherName with the
 * device ID. *out is NULL when there is none. */
static int san_for(const kwt_conf *conf, const char *profile, const char *csr_sans, const char *san,
                   const char *device_id, char **out)
{
    kwt_buf all = {0};
    const char *why;
    int rc = 0;
    *out = NULL;
    if (csr_sans)
        kwt_buf_add(&all, csr_sans);
    if (san) {
        char *extra = kwt_san_to_conf(san, &why);
        if (!extra) {
            rc = kwt_err(KWT_USAGE, "--san: %s", why);
            goto out;
        }
        kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", extra);
        free(extra);
    }
    if (!strcmp(profile, "device")) {
        if (!device_id) {
            rc = kwt_err(KWT_USAGE, "the device profile needs --device-id ID");
            goto out;
        }
        char *want = kwt_asprintf("DNS:device-%s", device_id);
        if (!all.s || !strstr(all.s, want))
            kwt_buf_printf(&all, "%s%s", all.len ? ", " : "", want);
        free(want);
        kwt_buf_printf(&all, ", otherName:%s;UTF8:%s", conf->device_oid, device_id);
    } else if (device_id) {
        rc = kwt_err(KWT_USAGE, "--device-id is only for the device profile");
        goto out;
    }
    if (!strcmp(profile, "server") && !all.len) {
        rc = kwt_err(KWT_FAIL, "the server profile needs a subjectAltName (in the CSR or --san)");
        goto out;
    }
    if (all.len) {
        *out = all.s;
        all.s = NULL;
    }
out:
    kwt_buf_free(&all);
    return rc;
}

/* The [ext_run] section openssl ca signs with: the profile, whose CRL distribution point names
 * the issuing generation's CRL (gen 0: the current one), keyEncipherment only for an RSA key
 * (it is RSA key transport), and the subjectAltName san (NULL: none, or copied from the
 * requests by the caller's openssl.cnf). */
static char *ext_section(kwt_ca *ca, int gen, const char *profile, bool rsa, const char *name,
                         const char *san)
{
    int cur_gen = ca->conf.generation;
    if (gen)
        ca->conf.generation = gen;
    char *prof = kwt_profile_text(&ca->conf, profile);
    ca->conf.generation = cur_gen;
    char *kex = strstr(prof, ", keyEncipherment");
    if (kex && !rsa)
        memmove(kex, kex + strlen(", keyEncipherment"),
                strlen(kex + strlen(", keyEncipherment")) + 1);
    kwt_buf ext = {0};
    kwt_buf_printf(&ext, "# keyward %s profile for %s\n[ext_run]\n%s", profile, name, prof);
    free(prof);
    if (san)
        kwt_buf_printf(&ext, "subjectAltName = %s\n", san);
    return ext.s;
}

/* Sign one parsed request (label names it in messages): the checks, then openssl ca on a
 * private copy of exactly this request, with the subjectAltName keyward checked written by
 * keyward (openssl.cnf copies no extension from requests). */
static int sign_req(kwt_ca *ca, int gen, const char *label, X509_REQ *req, const char *profile,
                    const char *name, int days, const char *san, const char *device_id,
                    const kwt_meta *md, char **serial_out)
{
    *serial_out = NULL;
    char *cn = NULL, *csr_sans = NULL, *all = NULL, *csr = NULL;
    /* an earlier generation signs with its own key and certificate (ca/ca-G.crt) */
    char *gen_key = NULL, *gen_cert = NULL;
    if (gen == ca->conf.generation)
        gen = 0;
    if (gen) {
        gen_key = kwt_gen_key(&ca->conf, gen);
        gen_cert = kwt_gen_cert_path(ca, gen);
        if (!gen_key) {
            free(gen_cert);
            return kwt_err(KWT_FAIL, "no key of CA generation %d in keyward.conf (old_keys)", gen);
        }
    }
    int rc = check_csr(label, req, profile, &ca->conf, device_id, &cn, &csr_sans);
    if (rc == 0 && looks_like_serial(name))
        rc = kwt_err(KWT_FAIL,
                     "NAME %s looks like a serial number (16 or more hex digits); `ca revoke` "
                     "could take it for another certificate's serial: pass another --name",
                     name);
    if (rc)
        kwt_sign_refused = KWT_REFUSED_CSR;
    if (rc == 0 && !kwt_g.dry_run)
        rc = csr_private_copy(ca, req, &csr);
    if (rc) {
        free(gen_key);
        free(gen_cert);
        free(cn);
        free(csr_sans);
        return rc;
    }
    if (!csr)
        csr = kwt_strdup(label); /* --dry-run: the printed script reads the operator's file */
    if ((rc = san_for(&ca->conf, profile, csr_sans, san, device_id, &all))) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    char *ext =
        ext_section(ca, gen, profile,
                    EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(req)) == EVP_PKEY_RSA, name, all);
    char *extp = ca->stage ? kwt_path(ca->stage, "ext.cnf") : kwt_path(ca->dir, "ext-run.cnf");
    char *outp = ca->stage ? kwt_path(ca->stage, "new.crt") : kwt_path(ca->dir, "new.crt");
    char *ixp = kwt_state_path(ca, "index.txt");
    kwt_index ix0 = {0}, ix1 = {0};
    if (kwt_g.dry_run) {
        kwt_dry_show_file(extp, ext);
    } else if (kwt_write_atomic(extp, ext, strlen(ext), 0600) != 0 ||
               kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot prepare signing: %s", strerror(errno));
        goto out2;
    }
    char ds[16];
    snprintf(ds, sizeof(ds), "%d", clamp_days(ca, gen, days));
    kwt_cmd c;
    kwt_cmd_init(&c, "ca");
    kwt_cmd_add(&c, "-batch");
    kwt_cmd_add(&c, "-notext");
    kwt_cmd_add(&c, "-utf8");
    kwt_cmd_add(&c, "-in");
    kwt_cmd_add(&c, csr);
    kwt_cmd_add(&c, "-days");
    kwt_cmd_add(&c, ds);
    kwt_cmd_add(&c, "-extfile");
    kwt_cmd_add(&c, extp);
    kwt_cmd_add(&c, "-extensions");
    kwt_cmd_add(&c, "ext_run");
    if (gen_cert) {
        kwt_cmd_add(&c, "-cert");
        kwt_cmd_add(&c, gen_cert);
    }
    kwt_cmd_add(&c, "-keyfile");
    kwt_cmd_add(&c, gen_key ? gen_key : ca->conf.ca_key);
    kwt_cmd_add(&c, "-out");
    kwt_cmd_add(&c, outp);
    /* openssl's messages are kept to tell a policy refusal from a token or key problem (the
     * CA key not reachable is not the CSR's fault) */
    char *err = NULL;
    rc = kwt_g.dry_run ? kwt_run(&c, kwt_ca_cnf(ca), NULL)
                       : kwt_run_quiet(&c, kwt_ca_cnf(ca), NULL, &err);
    if (rc) {
        kwt_run_failed(&c, kwt_ca_cnf(ca), err);
        if (err && is_policy_refusal(err))
            kwt_err(KWT_FAIL,
                    "openssl ca refused to sign %s (policy: the CSR's %s must match the "
                    "CA's; see the openssl message above)",
                    label,
                    ca->conf.policy_match && *ca->conf.policy_match ? ca->conf.policy_match
                                                                    : "subject");
        else
            kwt_err(KWT_FAIL, "openssl ca could not sign %s: the cause is above", label);
        free(err);
        goto out2;
    }
    free(err);
    if (kwt_g.dry_run) {
        printf("# keyward then writes NAME %s into the new index row's file column and links "
               "issued/%s.crt to certs/SERIAL.pem\n",
               name, name);
        goto out2;
    }
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + 1) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add exactly one index row");
        goto out2;
    }
    kwt_row *r = &ix1.rows[ix1.n - 1];
    free(r->name);
    r->name = kwt_strdup(name);
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
        goto out2;
    }
    rc = store_meta(ca, r->serial, csr, profile, days, san, device_id, name, md);
    if (rc == 0)
        *serial_out = kwt_strdup(r->serial);
out2:
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    free(ext);
    free(extp);
    free(outp);
    free(ixp);
out:
    if (csr && !kwt_g.dry_run)
        unlink(csr); /* stored as certs/SERIAL.csr by store_meta */
    free(all);
    free(cn);
    free(csr_sans);
    free(gen_key);
    free(gen_cert);
    free(csr);
    return rc;
}

/* --dry-run: what keyward itself does after `openssl ca`, as shell lines, so that the script
 * run by hand records each NAME in the index (openssl writes "unknown"), links issued/NAME.crt
 * and keeps the request and its record, as a real run does. dry_mark runs before openssl. */
static void dry_mark(kwt_ca *ca)
{
    char *ixp = kwt_state_path(ca, "index.txt");
    fputs("kw_ix=", stdout);
    kwt_shq(stdout, ixp);
    fputs("\nkw_n0=$(wc -l < \"$kw_ix\")\n", stdout);
    free(ixp);
}

static void dry_record(kwt_ca *ca, size_t n, char *const *names, char *const *csrs,
                       const char *profile, int days, const char *san, const char *devid,
                       const kwt_meta *md)
{
    fputs(
        "awk -F'\\t' -v OFS='\\t' -v n0=\"$kw_n0\" 'NR == FNR { nm[FNR] = $0; next } "
        "(FNR - n0) in nm { $5 = nm[FNR - n0] } 1' - \"$kw_ix\" > \"$kw_ix.kw\" <<'KEYWARD_EOF'\n",
        stdout);
    for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
    fputs("KEYWARD_EOF\ncat \"$kw_ix.kw\" > \"$kw_ix\" && rm \"$kw_ix.kw\"\n", stdout);
    for (size_t i = 0; i < n; i++) {
        /* ca->dir has no quotes, $ or spaces (ca init refuses them) */
        printf("kw_s=$(sed -n \"$((kw_n0 + %zu))p\" \"$kw_ix\" | cut -f4)\n", i + 1);
        printf("ln -sfn \"../certs/$kw_s.pem\" %s/issued/%s.crt\n", ca->dir, names[i]);
        fputs("cp ", stdout);
        kwt_shq(stdout, csrs[i]);
        printf(" \"%s/certs/$kw_s.csr\"\nprintf '%%s\\n' name=%s profile=%s days=%d ", ca->dir,
               names[i], profile, days);
        char *sv = kwt_asprintf("san=%s", san ? san : ""),
             *dv = kwt_asprintf("device_id=%s", devid ? devid : "");
        kwt_shq(stdout, sv);
        fputc(' ', stdout);
        kwt_shq(stdout, dv);
        for (size_t t = 0; md && t < md->ntags; t++) {
            char *tv = kwt_asprintf("tag.%s=%s", md->tags[t].key, md->tags[t].value);
            fputc(' ', stdout);
            kwt_shq(stdout, tv);
            free(tv);
        }
        if (md && md->note) {
            char *nv = kwt_asprintf("note=%s", md->note);
            fputc(' ', stdout);
            kwt_shq(stdout, nv);
            free(nv);
        }
        printf(" auto_renew=%d", !md || md->auto_renew ? 1 : 0);
        printf(" > \"%s/certs/$kw_s.meta\"\n", ca->dir);
        free(sv);
        free(dv);
    }
}

/* One issued certificate; under --json the command's result is {"issued":[...]} plus, for a
 * renewal, the members in tail. */
static void report(kwt_ca *ca, const char *name, const char *serial, bool first, bool last,
                   const char *tail)
{
    char *p = kwt_asprintf("%s/issued/%s.crt", ca->dir, name);
    X509 *x = kwt_load_cert(p);
    char *fp = x ? kwt_cert_fingerprint(x) : kwt_strdup("");
    char *spki = kwt_spki_fingerprint(x ? X509_get0_pubkey(x) : NULL);
    char *subj = x ? kwt_cert_subject(x) : kwt_strdup("");
    if (kwt_g.json) {
        kwt_buf b = {0};
        kwt_buf_add(&b, first ? "{\"issued\":[{\"name\":" : " {\"name\":");
        kwt_buf_json_str(&b, name);
        kwt_buf_add(&b, ",\"path\":");
        kwt_buf_json_str(&b, p);
        kwt_buf_add(&b, ",\"serial\":");
        kwt_buf_json_str(&b, serial);
        kwt_buf_add(&b, ",\"subject\":");
        kwt_buf_json_str(&b, subj);
        kwt_buf_add(&b, ",\"sha256\":");
        kwt_buf_json_str(&b, fp);
        kwt_buf_add(&b, ",\"spki_sha256\":");
        kwt_buf_json_str(&b, spki);
        if (last)
            kwt_buf_printf(&b, "}]%s%s}\n", tail ? "," : "", tail ? tail : "");
        else
            kwt_buf_add(&b, "},\n");
        fputs(b.s, stdout);
        kwt_buf_free(&b);
    } else {
        printf("issued %s\n  path:   %s\n  serial: %s\n  sha256: %s\n  public key SHA-256 "
               "(SPKI): %s\n",
               name, p, serial, fp, spki);
    }
    X509_free(x);
    free(fp);
    free(spki);
    free(subj);
    free(p);
}

/* Name of a CSR in a batch: file name without directories and .csr. */
static char *batch_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *n = kwt_strdup(b);
    size_t l = strlen(n);
    if (l > 4 && !strcmp(n + l - 4, ".csr"))
        n[l - 4] = '\0';
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sign_batch(kwt_ca *ca, const char *src, const char *profile, int days, bool same_key,
                      bool same_subject, const kwt_meta *md)
{
    char **files = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(src);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".csr")) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    files = realloc(files, cap * sizeof(*files));
                }
                files[n++] = kwt_path(src, de->d_name);
            }
        }
        closedir(d);
        qsort(files, n, sizeof(*files), cmp_str);
    } else {
        char *text = kwt_read_file(src, NULL);
        if (!text)
            return kwt_err(KWT_USAGE, "--batch %s: not a directory or a list file (%s)", src,
                           strerror(errno));
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (!*l || *l == '#')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                files = realloc(files, cap * sizeof(*files));
            }
            files[n++] = kwt_strdup(l);
        }
        free(text);
    }
    int rc = 0;
    char **names = calloc(n ? n : 1, sizeof(char *));
    char **copies = calloc(n ? n : 1, sizeof(char *));
    X509_REQ **reqs = calloc(n ? n : 1, sizeof(*reqs));
    char *ixp = NULL, *bcnf = NULL;
    bool first_rsa = false;
    held_key *keys = NULL, *keys_subj = NULL;
    size_t nkeys = 0, hcap = 64;
    /* the batch's own keys, by SPKI hash: slot = 1 + index of the CSR (0: empty) */
    while (hcap < 2 * n)
        hcap *= 2;
    size_t *hslot = calloc(hcap, sizeof(*hslot));
    unsigned char(*rh)[32] = calloc(n ? n : 1, sizeof(*rh));
    kwt_index ix0 = {0}, ix1 = {0};
    if (!hslot || !rh) {
        rc = kwt_err(KWT_FAIL, "out of memory");
        goto out;
    }
    if (n == 0) {
        rc = kwt_err(KWT_USAGE, "--batch %s: no CSRs found", src);
        goto out;
    }
    if (n > 4000) {
        rc = kwt_err(KWT_USAGE, "--batch: at most 4000 CSRs per run (got %zu)", n);
        goto out;
    }
    if (!strcmp(profile, "device")) {
        rc = kwt_err(KWT_USAGE, "the device profile needs a device ID per certificate: sign "
                                "device CSRs one at a time");
        goto out;
    }
    ixp = kwt_state_path(ca, "index.txt");
    if (!kwt_g.dry_run && kwt_index_load(&ix0, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    /* Check everything first: one bad CSR stops the batch before anything is issued. */
    for (size_t i = 0; i < n; i++) {
        char *cn, *sans;
        const char *why;
        names[i] = batch_name(files[i]);
        if (kwt_valid_name(names[i], &why) != 0) {
            rc = kwt_err(KWT_USAGE, "%s: file name gives NAME '%s': %s", files[i], names[i], why);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) {
                rc = kwt_err(KWT_USAGE, "the batch has two CSRs named %s", names[i]);
                goto out;
            }
        X509_REQ *req = NULL;
        if ((rc = csr_read_once(files[i], &req)) ||
            (rc = check_csr(files[i], req, profile, &ca->conf, NULL, &cn, &sans))) {
            X509_REQ_free(req);
            goto out;
        }
        reqs[i] = req;
        bool rsa = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(req)) == EVP_PKEY_RSA;
        if (!strcmp(profile, "server") && i > 0 && rsa != first_rsa) {
            free(cn);
            free(sans);
            rc = kwt_err(KWT_USAGE,
                         "%s: the batch mixes RSA and other server keys (keyEncipherment is for "
                         "RSA only): sign them in separate batches",
                         files[i]);
            goto out;
        }
        if (i == 0)
            first_rsa = rsa;
        if (looks_like_serial(names[i])) {
            free(cn);
            free(sans);
            rc = kwt_err(KWT_USAGE, "%s: NAME %s looks like a serial number; rename the file",
                         files[i], names[i]);
            goto out;
        }
        if (!keys) {
            keys = held_keys(ca, &ix0, &nkeys);
            keys_subj = keys ? held_by_subject(keys, nkeys) : NULL;
            if (!keys_subj) {
                free(cn);
                free(sans);
                rc = kwt_err(KWT_FAIL, "out of memory");
                goto out;
            }
        }
        if ((rc = check_key_not_compromised(files[i], req, keys, nkeys)) ||
            (!same_subject &&
             (rc = check_subject_unique(files[i], req, names[i], keys_subj, nkeys))) ||
            (!same_key && (rc = check_key_unique(files[i], req, names[i], keys, nkeys)))) {
            free(cn);
            free(sans);
            goto out;
        }
        if (!same_key && spki_sha256(X509_REQ_get0_pubkey(req), rh[i])) {
            size_t h = 0;
            memcpy(&h, rh[i], sizeof(h));
            for (h &= hcap - 1; hslot[h] && memcmp(rh[hslot[h] - 1], rh[i], 32);
                 h = (h + 1) & (hcap - 1))
                ;
            if (hslot[h]) {
                free(cn);
                free(sans);
                rc = kwt_err(KWT_FAIL,
                             "%s and %s have the same public key (--allow-same-key "
                             "to sign both)",
                             files[hslot[h] - 1], files[i]);
                goto out;
            }
            hslot[h] = i + 1;
        }
        bool nosan = !sans;
        free(cn);
        free(sans);
        if (!strcmp(profile, "server") && nosan) {
            rc = kwt_err(KWT_FAIL, "%s: the server profile needs a subjectAltName in the CSR",
                         files[i]);
            goto out;
        }
        kwt_row *r = kwt_index_find_name(&ix0, names[i]);
        if (r && r->status == 'V') {
            rc = kwt_err(KWT_FAIL, "%s already has a valid certificate (serial %s); use ca renew",
                         names[i], r->serial);
            goto out;
        }
    }
    if ((rc = kwt_txn_begin(ca)))
        goto out;
    free(ixp);
    ixp = kwt_state_path(ca, "index.txt");
    /* openssl signs private copies of the requests as checked; one process for all of them
     * cannot take a subjectAltName per request from keyward, so the batch's own openssl.cnf
     * lets openssl copy the requests' subjectAltName, which check_csr has vetted name by name
     * in these very bytes (every other extension of a request is refused or set by the
     * profile, which copy never overrides) */
    for (size_t i = 0; i < n && !kwt_g.dry_run; i++)
        if ((rc = csr_private_copy(ca, reqs[i], &copies[i])))
            goto out;
    if (kwt_g.dry_run) {
        /* the script signs with the same batch configuration as the real run */
        bcnf = kwt_state_path(ca, "batch.cnf");
        printf("sed -e 's/^copy_extensions = none$/copy_extensions = copy/'%s ",
               first_rsa ? "" : " -e 's/digitalSignature, keyEncipherment/digitalSignature/'");
        kwt_shq(stdout, kwt_ca_cnf(ca));
        printf(" > ");
        kwt_shq(stdout, bcnf);
        printf("\n");
    } else {
        char *t = kwt_read_file(kwt_ca_cnf(ca), NULL),
             *at = t ? strstr(t, "copy_extensions = none") : NULL;
        if (!at) {
            free(t);
            rc = kwt_err(KWT_FAIL, "cannot prepare the batch's openssl.cnf");
            goto out;
        }
        memcpy(at, "copy_extensions = copy", strlen("copy_extensions = copy"));
        /* keyEncipherment is for RSA keys (the batch holds one kind: checked above) */
        char *kex = !first_rsa ? strstr(t, "digitalSignature, keyEncipherment") : NULL;
        if (kex)
            memmove(kex + strlen("digitalSignature"),
                    kex + strlen("digitalSignature, keyEncipherment"),
                    strlen(kex + strlen("digitalSignature, keyEncipherment")) + 1);
        bcnf = kwt_state_path(ca, "batch.cnf");
        rc = kwt_write_atomic(bcnf, t, strlen(t), 0600);
        free(t);
        if (rc) {
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", bcnf, strerror(errno));
            goto out;
        }
    }
    char ds[16], sect[32];
    snprintf(ds, sizeof(ds), "%d", clamp_days(ca, 0, days));
    snprintf(sect, sizeof(sect), "ext_%s", profile);
    char *outp = kwt_state_path(ca, "batch.crt");
    if (kwt_g.dry_run)
        dry_mark(ca);
    kwt_cmd *c = malloc(sizeof(*c));
    kwt_cmd_init(c, "ca");
    kwt_cmd_add(c, "-batch");
    kwt_cmd_add(c, "-notext");
    kwt_cmd_add(c, "-utf8");
    kwt_cmd_add(c, "-days");
    kwt_cmd_add(c, ds);
    kwt_cmd_add(c, "-extensions");
    kwt_cmd_add(c, sect);
    kwt_cmd_add(c, "-keyfile");
    kwt_cmd_add(c, ca->conf.ca_key);
    kwt_cmd_add(c, "-out");
    kwt_cmd_add(c, outp);
    kwt_cmd_add(c, "-infiles");
    for (size_t i = 0; i < n; i++)
        kwt_cmd_add(c, copies[i] ? copies[i] : files[i]);
    rc = kwt_run_progress(c, bcnf ? bcnf : kwt_ca_cnf(ca), "Signature ok", (int)n);
    free(c);
    free(outp);
    if (rc == 0 && kwt_g.dry_run)
        dry_record(ca, n, names, files, profile, days, NULL, NULL, md);
    if (rc || kwt_g.dry_run)
        goto out;
    if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + n) {
        rc = kwt_err(KWT_FAIL, "openssl ca did not add one index row per CSR; nothing issued");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        free(r->name);
        r->name = kwt_strdup(names[i]);
        if ((rc = check_issued(ca, r->serial, reqs[i], files[i])))
            goto out;
        if ((rc = store_meta(ca, r->serial, copies[i], profile, days, NULL, NULL, names[i], md)))
            goto out;
    }
    if (kwt_index_save(&ix1, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s", ixp);
        goto out;
    }
    if ((rc = kwt_txn_commit(ca)))
        goto out;
    /* links and audit lines of a batch are flushed together (the links can be rebuilt from
     * the committed index anyway) */
    kwt_defer_sync = true;
    for (size_t i = 0; i < n; i++) {
        kwt_row *r = &ix1.rows[ix0.n + i];
        kwt_ca_link_issued(ca, names[i], r->serial);
        kwt_audit(ca, "ca sign", names[i], r->serial, r->subject, 0);
        kwt_notify(ca, "issued", names[i], r->serial, NULL);
    }
    kwt_defer_sync = false;
    int dfd = open(ca->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        syncfs(dfd);
        close(dfd);
    }
    for (size_t i = 0; i < n; i++)
        report(ca, names[i], ix1.rows[ix0.n + i].serial, i == 0, i + 1 == n, NULL);
out:
    if (rc)
        kwt_audit(ca, "ca sign --batch", NULL, NULL, src, rc);
    kwt_index_free(&ix0);
    kwt_index_free(&ix1);
    for (size_t i = 0; i < n; i++) {
        if (copies && copies[i])
            unlink(copies[i]);
        free(files[i]);
        free(names ? names[i] : NULL);
        free(copies ? copies[i] : NULL);
        X509_REQ_free(reqs ? reqs[i] : NULL);
    }
    held_keys_free(keys, nkeys);
    free(keys_subj);
    free(hslot);
    free(rh);
    if (bcnf)
        unlink(bcnf);
    free(bcnf);
    free(files);
    free(names);
    free(copies);
    free(reqs);
    free(ixp);
    return rc;
}

static int sign_main(const char *profile, const char *name, const char *days_s, const char *san,
                     const char *devid, const char *batch, bool same_key, bool same_subject,
                     const char **pos, int npos, const kwt_meta *md);

int kwt_cmd_ca_sign(int argc, char **argv)
{
    const char *profile = NULL, *name = NULL, *days_s = NULL, *san = NULL, *devid = NULL,
               *batch = NULL;
    const char *note = NULL;
    bool same_key = false, same_subject = false, no_auto = false;
    kwt_meta md;
    kwt_meta_init(&md);
    int rc = kwt_take_tags("ca sign", &argc, argv, &md);
    if (rc) {
        kwt_meta_free(&md);
        return rc;
    }
    kwt_optspec spec[] = {{"--profile", &profile, NULL},
                          {"--note", &note, NULL},
                          {"--no-auto-renew", NULL, &no_auto},
                          {"--allow-same-key", NULL, &same_key},
                          {"--allow-same-subject", NULL, &same_subject},
                          {"--name", &name, NULL},
                          {"--days", &days_s, NULL},
                          {"--san", &san, NULL},
                          {"--device-id", &devid, NULL},
                          {"--batch", &batch, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos;
    rc = kwt_parse_args("ca sign", argc, argv, spec, pos, 1, &npos);
    if (rc == 0 && note && kwt_valid_meta_text(note, KWT_NOTE_MAX, &why) != 0)
        rc = kwt_err(KWT_USAGE,
                     "ca sign: --note %s (printable text up to %d bytes, no newline or other "
                     "control character)",
                     why, KWT_NOTE_MAX);
    md.note = note ? kwt_strdup(note) : NULL;
    md.auto_renew = !no_auto;
    kwt_buf mj = {0};
    kwt_buf_add(&mj, "{");
    kwt_meta_json(&mj, &md);
    kwt_buf_add(&mj, "}");
    if (rc == 0) {
        kwt_audit_meta = mj.s;
        rc = sign_main(profile, name, days_s, san, devid, batch, same_key, same_subject, pos, npos,
                       &md);
        kwt_audit_meta = NULL;
    }
    kwt_buf_free(&mj);
    kwt_meta_free(&md);
    return rc < 0 ? 0 : rc;
}

static int sign_main(const char *profile, const char *name, const char *days_s, const char *san,
                     const char *devid, const char *batch, bool same_key, bool same_subject,
                     const char **pos, int npos, const kwt_meta *md)
{
    int rc;
    const char *why;
    int days = 0;
    if (!profile)
        return kwt_err(KWT_USAGE, "ca sign: --profile client|server|device|ocsp|subca is required");
    if (!valid_profile(profile))
        return kwt_err(KWT_USAGE, "unknown profile '%s' (client, server, device, ocsp, subca)",
                       profile);
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (batch && (npos || name || san || devid))
        return kwt_err(KWT_USAGE, "--batch takes no CSR, --name, --san or --device-id");
    if (!batch && npos != 1)
        return kwt_err(KWT_USAGE, "ca sign: give one CSR file (or --batch)");
    if (name && kwt_valid_name(name, &why) != 0)
        return kwt_err(KWT_USAGE, "--name %s: %s", name, why);
    if (devid && kwt_valid_device_id(devid, &why) != 0)
        return kwt_err(KWT_USAGE, "--device-id: %s", why);
    if (san) {
        char *s = kwt_san_to_conf(san, &why);
        if (!s)
            return kwt_err(KWT_USAGE, "--san: %s", why);
        free(s);
    }
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    if (!days)
        days = ca.conf.default_days;
    if ((rc = check_ca_valid(&ca))) {
        kwt_audit(&ca, "ca sign", name, NULL, batch ? batch : pos[0], rc);
        kwt_ca_close(&ca);
        return rc;
    }
    if (batch) {
        rc = sign_batch(&ca, batch, profile, days, same_key, same_subject, md);
        kwt_ca_close(&ca);
        return rc;
    }
    char *cn = NULL, *sans = NULL, *serial = NULL;
    X509_REQ *req = NULL;
    if ((rc = csr_read_once(pos[0], &req)) ||
        (rc = check_csr(pos[0], req, profile, &ca.conf, devid, &cn, &sans))) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    if (!name) {
        if (!cn || kwt_valid_name(cn, &why) != 0) {
            rc = kwt_err(KWT_USAGE, "the CSR's CN '%s' cannot be used as NAME (%s); pass --name",
                         cn ? cn : "", why);
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
        name = cn;
    }
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) == 0) {
        kwt_row *r = kwt_index_find_name(&ix, name);
        if (r && r->status == 'V')
            rc = kwt_err(KWT_FAIL,
                         "%s already has a valid certificate (serial %s); use `keyward ca renew "
                         "%s` or revoke it first",
                         name, r->serial, name);
        if (rc == 0) {
            size_t nk = 0;
            held_key *k = held_keys(&ca, &ix, &nk), *ks = k ? held_by_subject(k, nk) : NULL;
            rc = check_key_not_compromised(pos[0], req, k, nk);
            if (rc == 0 && !same_key)
                rc = check_key_unique(pos[0], req, name, k, nk);
            if (rc == 0 && !same_subject)
                rc = check_subject_unique(pos[0], req, name, ks, ks ? nk : 0);
            free(ks);
            held_keys_free(k, nk);
        }
    }
    kwt_index_free(&ix);
    free(ixp);
    if (rc) {
        kwt_sign_refused = KWT_REFUSED_CSR;
        goto out;
    }
    /* before issuing: the key the requester should have read out (keyward req prints it) */
    char *spki = kwt_spki_fingerprint(X509_REQ_get0_pubkey(req));
    if (kwt_g.dry_run) /* a comment of the script */
        printf("# %s: public key SHA-256 (SPKI) %s\n", pos[0], spki);
    else
        kwt_info("%s: public key SHA-256 (SPKI) %s", pos[0], spki);
    free(spki);
    if (kwt_g.dry_run)
        dry_mark(&ca);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = sign_req(&ca, 0, pos[0], req, profile, name, days, san, devid, md, &serial);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        report(&ca, name, serial, true, true, NULL);
        kwt_notify(&ca, "issued", name, serial, NULL);
    }
    if (rc == 0 && kwt_g.dry_run) {
        char *nm = (char *)name, *cs = (char *)pos[0];
        dry_record(&ca, 1, &nm, &cs, profile, days, san, devid, md);
    }
out:
    if (!kwt_g.dry_run) {
        /* the subject asked for (the file name when the CSR could not be read) */
        char *subj = req ? kwt_name_text(X509_REQ_get_subject_name(req)) : kwt_strdup(pos[0]);
        kwt_audit(&ca, "ca sign", name, serial, subj, rc);
        free(subj);
    }
    X509_REQ_free(req);
    free(cn);
    free(sans);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}

/* ---- renew ---- */

static char *meta_get(const char *meta, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = meta; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && !strncmp(l, key, kl) && l[kl] == '=')
            return kwt_asprintf("%.*s", (int)(len - kl - 1), l + kl + 1);
        l = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static int renew_due(int window, int days_override);

/* "--due [DAYS]": the value is optional (the CA's renew_due_days), which the one-value option
 * parser cannot say, so it is taken out of argv here. *window: 0 when absent, -1 for the
 * default. cmd names the command in errors. */
int kwt_take_due(int *argc, char **argv, int *window, const char *cmd)
{
    int out = 1;
    *window = 0;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--")) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--due")) {
            *window = -1;
            if (i + 1 < *argc && isdigit((unsigned char)argv[i + 1][0]))
                v = argv[++i];
        } else if (!strncmp(a, "--due=", 6)) {
            v = a + 6;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        const char *why;
        if (v && kwt_valid_days(v, window, &why) != 0)
            return kwt_err(KWT_USAGE, "%s --due: %s", cmd, why);
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int kwt_cmd_ca_renew(int argc, char **argv)
{
    const char *days_s = NULL, *csr = NULL;
    bool keep_old = false, subject_change = false, same_key = false;
    int window = 0;
    int trc = kwt_take_due(&argc, argv, &window, "ca renew");
    if (trc)
        return trc;
    kwt_optspec spec[] = {{"--days", &days_s, NULL},
                          {"--csr", &csr, NULL},
                          {"--keep-old", NULL, &keep_old},
                          {"--allow-subject-change", NULL, &subject_change},
                          {"--allow-same-key", NULL, &same_key},
                          {NULL, NULL, NULL}};
    const char *pos[1];
    int npos, rc = kwt_parse_args("ca renew", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *why;
    int days = 0;
    if (days_s && kwt_valid_days(days_s, &days, &why) != 0)
        return kwt_err(KWT_USAGE, "--days: %s", why);
    if (window) {
        if (npos || csr || keep_old || subject_change || same_key)
            return kwt_err(KWT_USAGE, "ca renew --due takes no NAME, --csr, --keep-old or "
                                      "--allow-* option (it renews each due certificate for "
                                      "its own key and identity)");
        return renew_due(window, days);
    }
    if (npos != 1)
        return kwt_err(KWT_USAGE, "ca renew: give the NAME of the certificate");
    if (kwt_valid_name(pos[0], &why) != 0)
        return kwt_err(KWT_USAGE, "NAME %s: %s", pos[0], why);
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, true)))
        return rc;
    const char *name = pos[0];
    char *old_serial = NULL, *meta = NULL, *profile = NULL, *san = NULL, *devid = NULL,
         *mdays = NULL, *oldcsr = NULL, *serial = NULL, *diff = NULL, *audit_op = NULL,
         *renew_subj = NULL;
    X509_REQ *newreq = NULL;
    kwt_meta md;
    kwt_buf mj = {0};
    kwt_meta_init(&md);
    kwt_index ix = {0};
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    kwt_row *r = kwt_index_find_name(&ix, name);
    if (!r) {
        rc = kwt_err(KWT_FAIL, "no certificate named %s in this CA", name);
        goto out;
    }
    if (r->status == 'R') {
        rc = kwt_err(KWT_FAIL,
                     "the newest certificate of %s (serial %s) is revoked; sign a new "
                     "CSR with ca sign instead",
                     name, r->serial);
        goto out;
    }
    old_serial = kwt_strdup(r->serial);
    char *mp = kwt_asprintf("%s/certs/%s.meta", ca.dir, old_serial);
    meta = kwt_read_file(mp, NULL);
    free(mp);
    if (!meta) {
        rc = kwt_err(KWT_FAIL, "no signing record for serial %s (certs/%s.meta)", old_serial,
                     old_serial);
        goto out;
    }
    /* tags, note and auto-renew go over to the new serial */
    kwt_meta_parse(meta, &md);
    kwt_buf_add(&mj, "{");
    kwt_meta_json(&mj, &md);
    kwt_buf_add(&mj, "}");
    kwt_audit_meta = mj.s;
    profile = meta_get(meta, "profile");
    san = meta_get(meta, "san");
    devid = meta_get(meta, "device_id");
    mdays = meta_get(meta, "days");
    if (!profile || !valid_profile(profile)) {
        rc = kwt_err(KWT_FAIL, "the signing record of %s is damaged", old_serial);
        goto out;
    }
    if (!days)
        days = mdays ? atoi(mdays) : ca.conf.default_days;
    if (days < 1)
        days = ca.conf.default_days;
    oldcsr = kwt_asprintf("%s/certs/%s.csr", ca.dir, old_serial);
    /* the new request is read once; a rekey keeps the identity unless the operator says
     * otherwise, and never takes a key another NAME holds */
    if ((rc = csr_read_once(csr ? csr : oldcsr, &newreq))) {
        kwt_sign_refused = csr ? KWT_REFUSED_CSR : 0;
        goto out;
    }
    if (csr) {
        /* compared with the current certificate (SANs added with --san at signing included) */
        char *cp = kwt_asprintf("%s/certs/%s.pem", ca.dir, old_serial);
        X509 *cur = kwt_load_cert(cp);
        rc = cur ? identity_diff(&ca, profile, devid && *devid ? devid : NULL,
                                 san && *san ? san : NULL, cur, newreq, csr, &diff)
                 : kwt_err(KWT_FAIL, "cannot read %s, the current certificate of %s", cp, name);
        X509_free(cur);
        free(cp);
        if (rc) {
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
        if (diff && !subject_change) {
            kwt_sign_refused = KWT_REFUSED_IDENTITY;
            rc = kwt_err(KWT_FAIL,
                         "%s asks for another identity than %s's certificate (%s); a renewal "
                         "keeps subject and subjectAltName: sign it as a new certificate, or "
                         "pass --allow-subject-change",
                         csr, name, diff);
            goto out;
        }
        if (diff) {
            fprintf(stderr, "keyward: %s: identity changed: %s\n", name, diff);
            audit_op = kwt_asprintf("ca renew (rekey, identity changed: %s)", diff);
        }
        size_t nk = 0;
        held_key *k = held_keys(&ca, &ix, &nk);
        rc = check_key_not_compromised(csr, newreq, k, nk);
        if (rc == 0 && !same_key)
            rc = check_key_unique(csr, newreq, name, k, nk);
        held_keys_free(k, nk);
        if (rc) {
            kwt_sign_refused = KWT_REFUSED_CSR;
            goto out;
        }
    }
    if ((rc = check_ca_valid(&ca)))
        goto out;
    if (kwt_g.dry_run)
        dry_mark(&ca);
    if ((rc = kwt_txn_begin(&ca)))
        goto out;
    rc = sign_req(&ca, 0, csr ? csr : oldcsr, newreq, profile, name, days, san && *san ? san : NULL,
                  devid && *devid ? devid : NULL, &md, &serial);
    if (rc == 0 && kwt_g.dry_run) { /* the script names the new row as the real run does */
        char *nm = (char *)name, *cs = csr ? (char *)csr : oldcsr;
        dry_record(&ca, 1, &nm, &cs, profile, days, san && *san ? san : NULL,
                   devid && *devid ? devid : NULL, &md);
    }
    if (rc == 0 && !keep_old)
        rc = kwt_revoke_serial(&ca, old_serial, "superseded", -1);
    if (rc == 0)
        rc = kwt_txn_commit(&ca);
    if (rc == 0 && !kwt_g.dry_run) {
        kwt_ca_link_issued(&ca, name, serial);
        kwt_clear_error();
        char *tail = kwt_asprintf("\"replaces\":\"%s\",\"replaced_revoked\":%s", old_serial,
                                  keep_old ? "false" : "true");
        report(&ca, name, serial, true, true, tail);
        free(tail);
        char *rep = kwt_asprintf("\"replaces\":\"%s\"", old_serial);
        kwt_notify(&ca, "renewed", name, serial, rep);
        free(rep);
        if (!kwt_g.json)
            printf("  replaces serial %s%s\n", old_serial,
                   keep_old ? " (kept valid)" : " (revoked: superseded)");
    }
out:
    renew_subj = newreq ? kwt_name_text(X509_REQ_get_subject_name(newreq))
                        : kwt_strdup(old_serial ? old_serial : "");
    if (!kwt_g.dry_run)
        kwt_audit(&ca,
                  audit_op ? audit_op
                  : csr    ? "ca renew (rekey)"
                           : "ca renew",
                  name, serial, renew_subj, rc);
    kwt_audit_meta = NULL;
    kwt_buf_free(&mj);
    kwt_meta_free(&md);
    X509_REQ_free(newreq);
    free(renew_subj);
    free(diff);
    free(audit_op);
    kwt_index_free(&ix);
    free(ixp);
    free(old_serial);
    free(meta);
    free(profile);
    free(san);
    free(devid);
    free(mdays);
    free(oldcsr);
    free(serial);
    kwt_ca_close(&ca);
    return rc;
}

/* ---- renew --due: every valid certificate that expires within the window ---- */

/* One due certificate: what find_due found, what due_prepare made ready for openssl, and the
 * outcome (new_serial, or error). */
typedef struct {
    char *name, *serial, *new_serial, *error;
    long long expiry;
    size_t row; /* its row in the index: openssl only appends rows, so it stays there */
    kwt_meta md;
    X509_REQ *req; /* the stored request, read once */
    char *copy;    /* the private copy of it that openssl signs */
    char *san;     /* subjectAltName keyward writes; NULL: the request's, copied by openssl */
    bool own_san;  /* the record has a --san or a device ID: keyward writes the SAN */
    bool rsa;
    int days;
} due_cert;

/* Certificates signed with the same openssl ca arguments: one process signs them all. */
typedef struct {
    const char *profile, *san;
    bool own_san, rsa;
    int days;
    size_t *members, n;
} due_group;

static void fmt_iso(long long t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* An "expiring" event: a certificate within the window that this run does not renew. */
static void notify_expiring(kwt_ca *ca, const char *name, const char *serial, long long expiry)
{
    long long left = expiry - (long long)time(NULL);
    char extra[48];
    snprintf(extra, sizeof(extra), "\"days_left\":%lld", left > 0 ? left / 86400 : 0);
    kwt_notify(ca, "expiring", name, serial, extra);
}

/* The newest certificate of its NAME, valid, unexpired, expiring within the window, auto-renew
 * on. A renewal revokes the certificate it replaces (superseded), so a second run does not find
 * it again; an older certificate kept valid by renew --keep-old is never due (its NAME has a
 * newer one). */
static due_cert *find_due(kwt_ca *ca, kwt_index *ix, int window, size_t *n, size_t *off)
{
    long long now = (long long)time(NULL);
    due_cert *d = calloc(ix->n ? ix->n : 1, sizeof(*d));
    bool *newest = kwt_index_newest(ix);
    *n = *off = 0;
    for (size_t i = 0; d && newest && i < ix->n; i++) {
        kwt_row *r = &ix->rows[i];
        long long exp = kwt_asn1_to_time(r->expiry);
        if (r->status != 'V' || exp <= now || exp - now > (long long)window * 86400 || !newest[i])
            continue;
        kwt_meta m;
        kwt_meta_read(ca->dir, r->serial, &m);
        if (!m.auto_renew) {
            (*off)++;
            notify_expiring(ca, r->name, r->serial, exp); /* left to the operator */
            kwt_meta_free(&m);
            continue;
        }
        d[*n].name = kwt_strdup(r->name);
        d[*n].serial = kwt_strdup(r->serial);
        d[*n].expiry = exp;
        d[*n].row = i;
        d[*n].md = m;
        (*n)++;
    }
    if (!newest) {
        free(d);
        d = NULL;
    }
    free(newest);
    return d;
}

/* The CA's policy_match as openssl ca applies it, checked before openssl runs (in one run for
 * many requests, openssl stops at the first it refuses and issues none): each listed field of
 * the subject is there, and each of its values equals one of the CA certificate's (type and
 * bytes, as openssl compares them). */
static int check_policy(const char *label, X509_REQ *req, X509 *cacert, const kwt_conf *conf)
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

/* Everything decided before openssl runs: the signing record, the stored request read once and
 * checked as ca sign checks it (profile, names, key policy), the CA's policy_match, the
 * subjectAltName, and the private copy openssl signs. 0, or an exit code after printing why. */
static int due_prepare(kwt_ca *ca, X509 *cacert, due_cert *c, int days_override)
{
    kwt_meta *m = &c->md;
    const char *devid = m->device_id && *m->device_id ? m->device_id : NULL;
    const char *san = m->san && *m->san ? m->san : NULL;
    char *label = kwt_asprintf("%s/certs/%s.csr", ca->dir, c->serial), *cn = NULL, *sans = NULL;
    int rc;
    c->days = days_override ? days_override : m->days > 0 ? m->days : ca->conf.default_days;
    if (!m->profile || !valid_profile(m->profile))
        rc = kwt_err(KWT_FAIL, "the signing record certs/%s.meta is missing or damaged", c->serial);
    else if ((rc = csr_read_once(label, &c->req)) == 0 &&
             (rc = check_csr(label, c->req, m->profile, &ca->conf, devid, &cn, &sans)) == 0 &&
             (rc = check_policy(label, c->req, cacert, &ca->conf)) == 0 &&
             (rc = san_for(&ca->conf, m->profile, sans, san, devid, &c->san)) == 0) {
        if (looks_like_serial(c->name))
            rc = kwt_err(KWT_FAIL,
                         "NAME %s looks like a serial number; sign it anew under "
                         "another name",
                         c->name);
        c->own_san = san || devid;
        if (!c->own_san) { /* the request's own names, which check_csr vetted: openssl copies */
            free(c->san);
            c->san = NULL;
        }
        c->rsa = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(c->req)) == EVP_PKEY_RSA;
        if (rc == 0)
            rc = csr_private_copy(ca, c->req, &c->copy);
    }
    free(label);
    free(cn);
    free(sans);
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* The certificates that can go through one openssl ca process: same profile, kind of key
 * (keyEncipherment), days and keyward-written subjectAltName. A fleet signed by --batch is one
 * group. */
static due_group *due_groups(due_cert *d, size_t n, size_t *ng)
{
    due_group *g = calloc(n ? n : 1, sizeof(*g));
    *ng = 0;
    for (size_t i = 0; g && i < n; i++) {
        due_cert *c = &d[i];
        if (c->error)
            continue;
        size_t j = 0;
        while (j < *ng &&
               !(!strcmp(g[j].profile, c->md.profile) && g[j].rsa == c->rsa &&
                 g[j].days == c->days && g[j].own_san == c->own_san && same_str(g[j].san, c->san)))
            j++;
        if (j == *ng) {
            g[j] = (due_group){c->md.profile, c->san, c->own_san, c->rsa, c->days, NULL, 0};
            g[j].members = calloc(n, sizeof(size_t));
            (*ng)++;
        }
        if (g[j].members)
            g[j].members[g[j].n++] = i;
    }
    return g;
}

/* The request openssl refused in a failed run of n requests: its position, or -1 when the run
 * failed for all of them (the CA key, the token, a signing error). openssl announces each
 * request and signs only after its checks, and writes nothing when one is refused. *why gets
 * openssl's reason. */
static long refused_request(const char *err, size_t n, char **why)
{
    static const char mark[] = "Check that the request matches the signature";
    const char *last = NULL;
    size_t count = 0;
    *why = NULL;
    for (const char *p = err; p && (p = strstr(p, mark)); p += sizeof(mark) - 1) {
        last = p;
        count++;
    }
    if (!last || count > n || strstr(last, "Certificate is to be certified") ||
        strstr(last, ":keyward:"))
        return -1;
    kwt_buf b = {0};
    kwt_buf_addn(&b, "", 0);
    for (const char *l = last; *l;) {
        size_t len = strcspn(l, "\n");
        char *line = kwt_asprintf("%.*s", (int)len, l);
        if (*line && strncmp(line, mark, sizeof(mark) - 1) && strcmp(line, "Signature ok") &&
            !strstr(line, "Distinguished Name is as follows") && !strstr(line, ":ASN.1 ") &&
            !strstr(line, ":error:"))
            kwt_buf_printf(&b, "%s%s", b.len ? " " : "", line);
        free(line);
        l += len + (l[len] == '\n');
    }
    *why = b.len ? b.s : kwt_strdup("see openssl's messages with -v");
    if (!b.len)
        kwt_buf_free(&b);
    return (long)count - 1;
}

/* The certificates of one group, signed by one openssl ca process (at most 4000 requests a
 * process), recorded (NAME, signing record with the metadata carried over) and their
 * predecessors marked superseded, in the transaction. A request openssl refuses fails alone:
 * the run is repeated without it. Returns nonzero when the transaction cannot be trusted any
 * more (the caller then commits nothing). */
static int due_sign_group(kwt_ca *ca, due_cert *d, due_group *g)
{
    char *ext = ext_section(ca, 0, g->profile, g->rsa, "ca renew --due", g->san);
    char *extp = kwt_state_path(ca, "ext-due.cnf"), *cnfp = NULL;
    char *outp = kwt_state_path(ca, "due.crt"), *ixp = kwt_state_path(ca, "index.txt");
    int rc = 0;
    if (kwt_write_atomic(extp, ext, strlen(ext), 0600) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", extp, strerror(errno));
        goto out;
    }
    if (!g->own_san) {
        /* as ca sign --batch: openssl copies each request's subjectAltName, vetted name by name
         * in these very bytes by check_csr; the profile sets every other extension */
        char *t = kwt_read_file(kwt_ca_cnf(ca), NULL),
             *at = t ? strstr(t, "copy_extensions = none") : NULL;
        if (at)
            memcpy(at, "copy_extensions = copy", strlen("copy_extensions = copy"));
        cnfp = kwt_state_path(ca, "due.cnf");
        if (!at || kwt_write_atomic(cnfp, t, strlen(t), 0600) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s", cnfp);
        free(t);
        if (rc)
            goto out;
    }
    char ds[16];
    snprintf(ds, sizeof(ds), "%d", clamp_days(ca, 0, g->days));
    size_t left = g->n, *todo = g->members;
    while (left > 0 && rc == 0) {
        size_t m = left > 4000 ? 4000 : left;
        kwt_index ix0 = {0}, ix1 = {0};
        char *err = NULL, *why = NULL;
        kwt_cmd *cmd = malloc(sizeof(*cmd));
        if (!cmd || kwt_index_load(&ix0, ixp) != 0) {
            rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
            free(cmd);
            break;
        }
        kwt_cmd_init(cmd, "ca");
        const char *args[] = {"-batch",        "-notext", "-utf8",       "-days",   ds,
                              "-extfile",      extp,      "-extensions", "ext_run", "-keyfile",
                              ca->conf.ca_key, "-out",    outp,          "-infiles"};
        for (size_t a = 0; a < sizeof(args) / sizeof(args[0]); a++)
            kwt_cmd_add(cmd, args[a]);
        for (size_t k = 0; k < m; k++)
            kwt_cmd_add(cmd, d[todo[k]].copy);
        const char *cnf = cnfp ? cnfp : kwt_ca_cnf(ca);
        if (kwt_run_quiet(cmd, cnf, NULL, &err) != 0) {
            long bad = refused_request(err, m, &why);
            if (bad >= 0) {
                due_cert *c = &d[todo[bad]];
                kwt_err(KWT_FAIL, "openssl ca refused to renew %s (certs/%s.csr): %s", c->name,
                        c->serial, why);
                c->error = kwt_strdup(kwt_last_error());
                memmove(todo + bad, todo + bad + 1, (left - (size_t)bad - 1) * sizeof(*todo));
                left--;
            } else {
                kwt_run_failed(cmd, cnf, err);
                kwt_err(KWT_FAIL, "openssl ca could not sign the renewals (see above)");
                for (size_t k = 0; k < left; k++)
                    d[todo[k]].error = kwt_strdup(kwt_last_error());
                left = 0;
            }
        } else if (kwt_index_load(&ix1, ixp) != 0 || ix1.n != ix0.n + m) {
            rc = kwt_err(KWT_FAIL, "openssl ca did not add one index row per request");
        } else {
            char when[32];
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            snprintf(when, sizeof(when), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
            for (size_t k = 0; k < m && rc == 0; k++) {
                due_cert *c = &d[todo[k]];
                kwt_row *r = &ix1.rows[ix0.n + k], *old = &ix1.rows[c->row];
                free(r->name);
                r->name = kwt_strdup(c->name);
                /* superseded in the same transaction, as ca renew NAME does */
                if (c->row >= ix0.n || strcmp(old->serial, c->serial) || old->status != 'V')
                    rc =
                        kwt_err(KWT_FAIL, "serial %s moved in the index during the run", c->serial);
                else if (!g->own_san)
                    rc = check_issued(ca, r->serial, c->req, c->name);
                if (rc == 0)
                    rc = store_meta(ca, r->serial, c->copy, g->profile, c->days, c->md.san,
                                    c->md.device_id, c->name, &c->md);
                if (rc == 0) {
                    old->status = 'R';
                    free(old->revocation);
                    old->revocation = kwt_asprintf("%s,superseded", when);
                    c->new_serial = kwt_strdup(r->serial);
                }
            }
            if (rc == 0 && kwt_index_save(&ix1, ixp) != 0)
                rc = kwt_err(KWT_FAIL, "cannot write %s: %s", ixp, strerror(errno));
            todo += m;
            left -= m;
        }
        free(cmd);
        free(err);
        free(why);
        kwt_index_free(&ix0);
        kwt_index_free(&ix1);
    }
out:
    unlink(outp);
    if (cnfp)
        unlink(cnfp);
    unlink(extp);
    free(ext);
    free(extp);
    free(cnfp);
    free(outp);
    free(ixp);
    return rc;
}

/* The last run, for ca stats and ca metrics: DIR/renew-last (key=value lines). */
static void save_last_run(kwt_ca *ca, int window, size_t renewed, size_t failed)
{
    char *p = kwt_path(ca->dir, "renew-last");
    char *t = kwt_asprintf("time=%lld\ndue_days=%d\nrenewed=%zu\nfailed=%zu\n",
                           (long long)time(NULL), window, renewed, failed);
    if (kwt_write_atomic(p, t, strlen(t), 0600) != 0)
        fprintf(stderr, "keyward: warning: cannot write %s: %s\n", p, strerror(errno));
    free(t);
    free(p);
}

static int renew_due(int window, int days_override)
{
    kwt_ca ca;
    int rc = kwt_ca_open(&ca, true);
    if (rc)
        return rc;
    if (window < 0)
        window = ca.conf.renew_due_days;
    kwt_index ix = {0};
    size_t n = 0, off = 0, renewed = 0, failed = 0, ng = 0;
    due_cert *d = NULL;
    due_group *g = NULL;
    char *ixp = kwt_state_path(&ca, "index.txt");
    if (kwt_index_load(&ix, ixp) != 0) {
        rc = kwt_err(KWT_FAIL, "cannot read %s", ixp);
        goto out;
    }
    if (!(d = find_due(&ca, &ix, window, &n, &off))) {
        rc = kwt_err(KWT_FAIL, "out of memory");
        goto out;
    }
    if (kwt_g.dry_run) {
        /* a list, not a script: what a real run would renew */
        for (size_t i = 0; i < n; i++) {
            char na[32];
            fmt_iso(d[i].expiry, na, sizeof(na));
            printf("would renew %s (serial %s, expires %s, profile %s)\n", d[i].name, d[i].serial,
                   na, d[i].md.profile ? d[i].md.profile : "?");
        }
        printf("%zu due within %d days%s", n, window, off ? "" : "\n");
        if (off)
            printf(", %zu more with auto-renew off\n", off);
        goto out;
    }
    if (n && (rc = check_ca_valid(&ca)))
        goto out;
    if (n && (rc = kwt_txn_begin(&ca)))
        goto out;
    /* each certificate's own checks first, then one openssl ca for all that passed (one per
     * set of signing arguments) */
    char *cap = kwt_path(ca.dir, "ca.crt");
    X509 *cacert = n ? kwt_load_cert(cap) : NULL;
    free(cap);
    for (size_t i = 0; i < n; i++) {
        kwt_clear_error();
        if (due_prepare(&ca, cacert, &d[i], days_override) != 0) {
            const char *e = kwt_last_error();
            d[i].error = kwt_strdup(e && *e ? e : "failed");
        }
    }
    X509_free(cacert);
    g = due_groups(d, n, &ng);
    for (size_t j = 0; j < ng && rc == 0; j++)
        rc = due_sign_group(&ca, d, &g[j]);
    for (size_t i = 0; i < n; i++)
        renewed += d[i].new_serial != NULL;
    if (renewed && rc == 0) {
        rc = kwt_ca_make_crl(&ca, 0);
        if (rc == 0)
            rc = kwt_txn_commit(&ca);
    }
    if (rc || !renewed) {
        /* nothing was issued, or nothing of it can be kept */
        const char *e = kwt_last_error();
        for (size_t i = 0; rc && i < n; i++)
            if (!d[i].error) {
                d[i].error = kwt_strdup(e && *e ? e : "the transaction failed");
                free(d[i].new_serial);
                d[i].new_serial = NULL;
            }
        renewed = 0;
        if (n)
            kwt_txn_abort(&ca);
        rc = 0;
    }
    kwt_buf js = {0};
    kwt_buf_addn(&js, "", 0);
    kwt_buf_printf(&js, "{\"due_days\":%d,\"renewed\":[", window);
    size_t nj = 0;
    /* links and audit lines are flushed together (the links can be rebuilt from the committed
     * index anyway) */
    kwt_defer_sync = true;
    for (size_t i = 0; i < n; i++) {
        due_cert *c = &d[i];
        kwt_buf mj = {0};
        kwt_buf_add(&mj, "{");
        kwt_meta_json(&mj, &c->md);
        kwt_buf_add(&mj, "}");
        kwt_audit_meta = mj.s;
        if (c->new_serial) {
            kwt_ca_link_issued(&ca, c->name, c->new_serial);
            kwt_clear_error();
            kwt_audit(&ca, "ca renew --due", c->name, c->new_serial, c->serial, 0);
            char *rep = kwt_asprintf("\"replaces\":\"%s\"", c->serial);
            kwt_notify(&ca, "renewed", c->name, c->new_serial, rep);
            free(rep);
            if (!kwt_g.json)
                printf("renewed %s: serial %s replaces %s (revoked: superseded)\n", c->name,
                       c->new_serial, c->serial);
            kwt_buf_add(&js, nj++ ? "," : "");
            kwt_buf_add(&js, "{\"name\":");
            kwt_buf_json_str(&js, c->name);
            kwt_buf_printf(&js, ",\"serial\":\"%s\",\"replaces\":\"%s\"}", c->new_serial,
                           c->serial);
        }
        kwt_audit_meta = NULL;
        kwt_buf_free(&mj);
    }
    kwt_buf_add(&js, "],\"failed\":[");
    nj = 0;
    for (size_t i = 0; i < n; i++) {
        due_cert *c = &d[i];
        if (c->new_serial)
            continue;
        failed++;
        kwt_set_error(c->error);
        kwt_audit(&ca, "ca renew --due", c->name, NULL, c->serial, KWT_FAIL);
        notify_expiring(&ca, c->name, c->serial, c->expiry); /* still expiring */
        if (!kwt_g.json)
            printf("FAILED  %s (serial %s): %s\n", c->name, c->serial, c->error);
        kwt_buf_add(&js, nj++ ? "," : "");
        kwt_buf_add(&js, "{\"name\":");
        kwt_buf_json_str(&js, c->name);
        kwt_buf_printf(&js, ",\"serial\":\"%s\",\"error\":", c->serial);
        kwt_buf_json_str(&js, c->error);
        kwt_buf_add(&js, "}");
    }
    kwt_defer_sync = false;
    if (n) {
        int dfd = open(ca.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            syncfs(dfd);
            close(dfd);
        }
    }
    kwt_buf_printf(&js, "],\"skipped_no_auto_renew\":%zu}\n", off);
    if (kwt_g.json)
        fputs(js.s, stdout);
    else
        printf("%zu due within %d days: %zu renewed, %zu failed%s", n, window, renewed, failed,
               off ? "" : "\n");
    if (!kwt_g.json && off)
        printf("; %zu with auto-renew off not renewed\n", off);
    kwt_buf_free(&js);
    save_last_run(&ca, window, renewed, failed);
    if (failed) {
        kwt_clear_error();
        rc = kwt_err(KWT_FAIL, "%zu of %zu due certificates could not be renewed (see above)",
                     failed, n);
    }
out:
    for (size_t i = 0; d && i < n; i++) {
        if (d[i].copy)
            unlink(d[i].copy); /* stored as certs/SERIAL.csr by store_meta */
        free(d[i].name);
        free(d[i].serial);
        free(d[i].new_serial);
        free(d[i].error);
        free(d[i].copy);
        free(d[i].san);
        X509_REQ_free(d[i].req);
        kwt_meta_free(&d[i].md);
    }
    for (size_t j = 0; g && j < ng; j++)
        free(g[j].members);
    free(g);
    free(d);
    kwt_index_free(&ix);
    free(ixp);
    kwt_ca_close(&ca);
    return rc;
}
