/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca export`: certificate and chain for a client, never a key. */
#include "kwt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int bundle(const char *cert, const char *ca, const char *cross, const char *out)
{
    size_t l1, l2, l3 = 0;
    char *a = kwt_read_file(cert, &l1), *b = kwt_read_file(ca, &l2);
    char *x = cross ? kwt_read_file(cross, &l3) : NULL;
    int rc = 0;
    if (!a || !b) {
        rc = kwt_err(KWT_FAIL, "cannot read %s or %s", cert, ca);
    } else {
        kwt_buf buf = {0};
        kwt_buf_addn(&buf, a, l1);
        kwt_buf_addn(&buf, b, l2);
        if (x) /* lets clients that trust only the previous CA generation build a chain */
            kwt_buf_addn(&buf, x, l3);
        if (kwt_write_atomic(out, buf.s, buf.len, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", out, strerror(errno));
        kwt_buf_free(&buf);
    }
    free(a);
    free(b);
    free(x);
    return rc;
}

int kwt_cmd_ca_export(int argc, char **argv)
{
    const char *format = NULL, *out = NULL, *package = NULL;
    kwt_optspec spec[] = {{"--format", &format, NULL},
                          {"--out", &out, NULL},
                          {"--package", &package, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, rc = kwt_parse_args("ca export", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1 || kwt_valid_name(pos[0], &why) != 0)
        return kwt_err(KWT_USAGE, "ca export: give a valid NAME");
    if (!package && (!format || !out))
        return kwt_err(KWT_USAGE,
                       "ca export: --format pem-bundle|p12 --out FILE, or --package DIR");
    if (format && strcmp(format, "pem-bundle") && strcmp(format, "p12"))
        return kwt_err(KWT_USAGE, "--format must be pem-bundle or p12");
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    char *cert = kwt_asprintf("%s/issued/%s.crt", ca.dir, pos[0]);
    char *cacrt = kwt_path(ca.dir, "ca.crt");
    char *cross = kwt_asprintf("%s/ca/cross-%d.crt", ca.dir, ca.conf.generation);
    if (!kwt_exists(cross)) {
        free(cross);
        cross = NULL;
    }
    if (!kwt_exists(cert)) {
        rc = kwt_err(KWT_FAIL, "no certificate named %s (%s)", pos[0], cert);
        goto out;
    }
    if (format && !strcmp(format, "pem-bundle")) {
        rc = kwt_g.dry_run ? (printf("cat %s %s > %s\n", cert, cacrt, out), 0)
                           : bundle(cert, cacrt, cross, out);
    } else if (format) {
        /* no key: the PKCS#12 carries the certificate and the chain only */
        kwt_cmd c;
        kwt_cmd_init(&c, "pkcs12");
        kwt_cmd_add(&c, "-export");
        kwt_cmd_add(&c, "-nokeys");
        kwt_cmd_add(&c, "-in");
        kwt_cmd_add(&c, cert);
        kwt_cmd_add(&c, "-certfile");
        kwt_cmd_add(&c, cacrt);
        kwt_cmd_add(&c, "-name");
        kwt_cmd_add(&c, pos[0]);
        kwt_cmd_add(&c, "-passout");
        kwt_cmd_add(&c, "pass:");
        kwt_cmd_add(&c, "-out");
        kwt_cmd_add(&c, out);
        rc = kwt_run(&c, kwt_ca_cnf(&ca), NULL);
    }
    if (rc == 0 && package && !kwt_g.dry_run) {
        char *pc = kwt_asprintf("%s/%s.crt", package, pos[0]);
        char *pca = kwt_path(package, "ca.crt");
        char *pr = kwt_path(package, "README");
        char *readme = kwt_asprintf(
            "Certificate package for %s\n\n"
            "  %s.crt   your certificate (the private key stays on your token)\n"
            "  ca.crt     the CA certificate to trust for the other side\n"
            "  CRL:       %s\n\n"
            "Install: point your TLS client or server at %s.crt as the certificate, at the\n"
            "key file or pkcs11: URI of the key on your token (keyward uri2pem writes one),\n"
            "and at ca.crt as the trusted CA. Check it with:\n"
            "  keyward verify --ca ca.crt %s.crt\n",
            pos[0], pos[0], ca.conf.crl_url ? ca.conf.crl_url : "(none configured; ask your CA)",
            pos[0], pos[0]);
        if (mkdir(package, 0755) != 0 && errno != EEXIST)
            rc = kwt_err(KWT_FAIL, "cannot create %s: %s", package, strerror(errno));
        else if (kwt_copy_file(cert, pc, 0644) || kwt_copy_file(cacrt, pca, 0644) ||
                 kwt_write_atomic(pr, readme, strlen(readme), 0644))
            rc = kwt_err(KWT_FAIL, "cannot write the package in %s: %s", package, strerror(errno));
        free(pc);
        free(pca);
        free(pr);
        free(readme);
    }
    if (rc == 0 && !kwt_g.dry_run)
        kwt_info("exported %s to %s", pos[0], package ? package : out);
out:
    free(cert);
    free(cacrt);
    free(cross);
    kwt_ca_close(&ca);
    return rc;
}
