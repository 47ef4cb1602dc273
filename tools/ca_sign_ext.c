/* SPDX-License-Identifier: Apache-2.0 */
/* The extensions of a certificate keyward issues: its subjectAltName, the profile's section for
 * openssl ca, and the check of what openssl wrote when it copied a request's names. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* One openssl ca process signs a whole batch (or a renewal run), and it cannot take a
 * subjectAltName per request from keyward, so those runs let openssl copy the requests' own
 * (copy_extensions = copy): from the private copies whose names kwt_check_csr vetted one by one.
 * Every profile sets basicConstraints, keyUsage, extendedKeyUsage (subca: refused in the
 * request) and subjectKeyIdentifier, which copy never overrides, so the subjectAltName is all
 * it can add. This checks that on each certificate before the run is committed: no extension
 * outside the profile's, and a subjectAltName only where the request had one, byte for byte
 * the one vetted. A mismatch fails the whole run (nothing is issued). */
int kwt_check_issued(kwt_ca *ca, const char *serial, X509_REQ *req, const char *label)
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

/* The subjectAltName keyward writes into a certificate: the CSR's names as checked (csr_sans),
 * the operator's --san, and for the device profile its DNS name and the otherName with the
 * device ID. *out is NULL when there is none. */
int kwt_san_for(const kwt_conf *conf, const char *profile, const char *csr_sans, const char *san,
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
char *kwt_ext_section(kwt_ca *ca, int gen, const char *profile, bool rsa, const char *name,
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
