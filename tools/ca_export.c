/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward ca export`: a certificate and the chain one kind of relying party needs, never a key.
 *
 * After rotations a relying party trusts one generation's root (ca/ca-T.crt). A certificate of
 * generation L reaches it through link certificates: OldWithNew ones (ca/oldwithnew-G.crt) when
 * L < T, NewWithOld ones (ca/cross-G.crt) when L > T. The chain carries those links and never a
 * self-signed root: a root the client does not trust ends its chain building with "self-signed
 * certificate in certificate chain" before it tries the link. */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOR_ALL 0

/* The generation whose key signed x; 0 when none of this CA's generations did. */
static int leaf_generation(kwt_ca *ca, X509 *x)
{
    for (int g = ca->conf.generation; g >= 1; g--) {
        char *p = kwt_gen_cert_path(ca, g);
        X509 *root = kwt_load_cert(p);
        free(p);
        EVP_PKEY *k = root ? X509_get0_pubkey(root) : NULL;
        bool ok = k && X509_verify(x, k) == 1;
        X509_free(root);
        if (ok)
            return g;
    }
    return 0;
}

/* --for: gen-N, new-root (the current generation), old-root (the one before), all. */
static int parse_target(const kwt_ca *ca, const char *s, int *target)
{
    int n = ca->conf.generation;
    char *end;
    if (!s || !strcmp(s, "all") || !strcmp(s, "both")) {
        *target = FOR_ALL;
    } else if (!strcmp(s, "new-root")) {
        *target = n;
    } else if (!strcmp(s, "old-root")) {
        if (n < 2)
            return kwt_err(KWT_USAGE,
                           "--for old-root: the CA has one generation (no rotation yet)");
        *target = n - 1;
    } else if (!strncmp(s, "gen-", 4) && s[4] >= '1' && s[4] <= '9') {
        long v = strtol(s + 4, &end, 10);
        if (*end)
            return kwt_err(KWT_USAGE, "--for %s: gen-N takes a generation number", s);
        if (v > n)
            return kwt_err(KWT_USAGE, "--for %s: the CA has generations 1 to %d", s, n);
        *target = (int)v;
    } else {
        return kwt_err(KWT_USAGE, "--for must be gen-N, new-root, old-root or all (got '%s')", s);
    }
    return 0;
}

static int add_file(kwt_buf *b, const char *path)
{
    size_t l = 0;
    char *t = kwt_read_file(path, &l);
    if (!t)
        return kwt_err(KWT_FAIL, "cannot read %s: %s", path, strerror(errno));
    kwt_buf_addn(b, t, l);
    free(t);
    return 0;
}

static int add_link(kwt_ca *ca, kwt_buf *b, const char *kind, int g)
{
    char *p = kwt_asprintf("%s/ca/%s-%d.crt", ca->dir, kind, g);
    int rc = kwt_exists(p) ? add_file(b, p)
                           : kwt_err(KWT_FAIL,
                                     "link certificate %s is missing: the chain from this "
                                     "certificate's generation cannot be built",
                                     p);
    free(p);
    return rc;
}

/* The links from generation leaf to target (FOR_ALL: every link, in both directions). */
static int chain_links(kwt_ca *ca, int leaf, int target, kwt_buf *b)
{
    int rc = 0;
    if (target == FOR_ALL) {
        /* OpenSSL builds a chain greedily and takes the first untrusted certificate whose
         * subject key matches; this order reaches every generation's root from a leaf of
         * generation `leaf` (down through the NewWithOld links, then up through the OldWithNew
         * ones), which no single order of all links does for every leaf */
        for (int g = leaf; g >= 2 && rc == 0; g--)
            rc = add_link(ca, b, "cross", g);
        for (int g = 2; g <= ca->conf.generation && rc == 0; g++)
            rc = add_link(ca, b, "oldwithnew", g);
    } else if (leaf < target) {
        for (int g = leaf + 1; g <= target && rc == 0; g++)
            rc = add_link(ca, b, "oldwithnew", g);
    } else {
        for (int g = leaf; g > target && rc == 0; g--)
            rc = add_link(ca, b, "cross", g);
    }
    return rc ? KWT_FAIL : 0;
}

/* DIR for --package: made here (0755) or an existing directory of ours; never a symlink, so a
 * link planted in a shared directory cannot redirect the files. */
static int package_dir(const char *dir)
{
    struct stat st;
    int rc = kwt_check_out_path("--package", dir, true);
    if (rc)
        return rc;
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
            return kwt_err(KWT_FAIL, "--package %s exists and is not a directory of yours", dir);
        return 0;
    }
    if (mkdir(dir, 0755) != 0 || chmod(dir, 0755) != 0) /* public files, whatever the umask */
        return kwt_err(KWT_FAIL, "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

static int write_package(kwt_ca *ca, const char *dir, const char *name, const char *leaf_pem,
                         const kwt_buf *chain, int target, int leaf)
{
    int rc = package_dir(dir);
    if (rc)
        return rc;
    int anchor = target == FOR_ALL ? ca->conf.generation : target;
    char *root = kwt_gen_cert_path(ca, anchor), *crl = kwt_path(ca->dir, "crl/crl.pem");
    char *pc = kwt_asprintf("%s/%s.crt", dir, name), *pch = kwt_path(dir, "chain.pem");
    char *pca = kwt_path(dir, "ca.crt"), *pcrl = kwt_path(dir, "crl.pem");
    char *pr = kwt_path(dir, "README");
    char *url = kwt_crl_url_for(&ca->conf, leaf); /* the CRL that lists this certificate */
    char *readme = kwt_asprintf(
        "Certificate package for %s\n\n"
        "  %s.crt    your certificate (the private key stays on your token)\n"
        "  chain.pem   your certificate and the link certificates between CA generations:\n"
        "              give this file as the certificate to servers and clients (nginx\n"
        "              ssl_certificate, curl --cert, stunnel cert)\n"
        "  ca.crt      the CA root to trust for the other side (generation %d)\n"
        "  crl.pem     the CA's CRLs, one per generation, as of this export; fetch fresh\n"
        "              ones from %s\n\n"
        "Check it, from this directory:\n\n"
        "    openssl verify -CAfile ca.crt -untrusted chain.pem -crl_check_all -CRLfile crl.pem "
        "%s.crt\n"
        "    keyward verify --ca ca.crt --untrusted chain.pem --crl crl.pem %s.crt\n\n"
        "Your programs need a key file that names the key on your token: run keyward uri2pem\n"
        "with your key's pkcs11: URI (the one your CSR was made from) and --out %s.key.\n",
        name, name, anchor, url ? url : "your CA (no CRL URL configured)", name, name, name);
    if (kwt_write_atomic(pc, leaf_pem, strlen(leaf_pem), 0644) ||
        kwt_write_atomic(pch, chain->s, chain->len, 0644) || kwt_copy_file(root, pca, 0644) ||
        kwt_copy_file(crl, pcrl, 0644) || kwt_write_atomic(pr, readme, strlen(readme), 0644))
        rc = kwt_err(KWT_FAIL, "cannot write the package in %s: %s", dir, strerror(errno));
    free(root);
    free(crl);
    free(pc);
    free(pch);
    free(pca);
    free(pcrl);
    free(pr);
    free(url);
    free(readme);
    return rc;
}

static int count_certs(const kwt_buf *b)
{
    int n = 0;
    for (const char *p = b->s; p && (p = strstr(p, "-----BEGIN CERTIFICATE-----")); p++)
        n++;
    return n;
}

/* PKCS#12 without a key: openssl writes into our private temp dir, then the file is moved into
 * place without following links at --out. */
static int write_p12(kwt_ca *ca, const char *name, const char *leaf, const kwt_buf *links,
                     const char *out)
{
    char *tmp = kwt_g.dry_run ? NULL : kwt_tmpdir();
    char *lf = tmp ? kwt_path(tmp, "links.pem") : NULL, *of = tmp ? kwt_path(tmp, "out.p12") : NULL;
    int rc = 0;
    if (!kwt_g.dry_run && !tmp)
        rc = kwt_err(KWT_FAIL, "cannot make a temporary directory: %s", strerror(errno));
    else if (lf && links->len && kwt_write_atomic(lf, links->s, links->len, 0600) != 0)
        rc = kwt_err(KWT_FAIL, "cannot write %s: %s", lf, strerror(errno));
    if (rc == 0) {
        kwt_cmd c;
        kwt_cmd_init(&c, "pkcs12");
        kwt_cmd_add(&c, "-export");
        kwt_cmd_add(&c, "-nokeys");
        kwt_cmd_opt(&c, "-in", leaf);
        if (links->len) {
            /* --dry-run: the script needs the link certificates in a file too */
            if (!lf)
                printf("# the link certificates go into links.pem first:\ncat > links.pem <<'EOF'\n"
                       "%sEOF\n",
                       links->s);
            kwt_cmd_opt(&c, "-certfile", lf ? lf : "links.pem");
        }
        kwt_cmd_opt(&c, "-name", name);
        kwt_cmd_opt(&c, "-passout", "pass:");
        kwt_cmd_opt(&c, "-out", of ? of : out);
        rc = kwt_run(&c, kwt_ca_cnf(ca), NULL);
    }
    if (rc == 0 && of) {
        size_t l = 0;
        char *d = kwt_read_file(of, &l);
        if (!d || kwt_write_atomic(out, d, l, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", out, strerror(errno));
        free(d);
    }
    if (tmp)
        kwt_rm_rf(tmp);
    free(tmp);
    free(lf);
    free(of);
    return rc;
}

int kwt_cmd_ca_export(int argc, char **argv)
{
    const char *format = NULL, *out = NULL, *package = NULL, *for_s = NULL;
    kwt_optspec spec[] = {{"--format", &format, NULL},
                          {"--out", &out, NULL},
                          {"--package", &package, NULL},
                          {"--for", &for_s, NULL},
                          {NULL, NULL, NULL}};
    const char *pos[1], *why;
    int npos, target = FOR_ALL, rc = kwt_parse_args("ca export", argc, argv, spec, pos, 1, &npos);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (npos != 1 || kwt_valid_name(pos[0], &why) != 0)
        return kwt_err(KWT_USAGE, "ca export: give a valid NAME");
    if (!package && (!format || !out))
        return kwt_err(KWT_USAGE,
                       "ca export: --format pem-bundle|p12 --out FILE, or --package DIR");
    if (format && strcmp(format, "pem-bundle") && strcmp(format, "p12"))
        return kwt_err(KWT_USAGE, "--format must be pem-bundle or p12");
    if (format && !out)
        return kwt_err(KWT_USAGE, "--format needs --out FILE");
    if ((out && (rc = kwt_check_out_path("--out", out, false))) ||
        (package && (rc = kwt_check_out_path("--package", package, true))))
        return rc;
    kwt_ca ca;
    if ((rc = kwt_ca_open(&ca, false)))
        return rc;
    char *cert = kwt_asprintf("%s/issued/%s.crt", ca.dir, pos[0]), *leaf_pem = NULL;
    X509 *x = NULL;
    kwt_buf links = {0}, chain = {0};
    kwt_buf_addn(&links, "", 0);
    kwt_buf_addn(&chain, "", 0);
    if ((rc = parse_target(&ca, for_s, &target)))
        goto out;
    if (!kwt_exists(cert) || !(x = kwt_load_cert(cert)) ||
        !(leaf_pem = kwt_read_file(cert, NULL))) {
        rc = kwt_err(KWT_FAIL, "no certificate named %s (%s)", pos[0], cert);
        goto out;
    }
    int leaf = leaf_generation(&ca, x);
    if (!leaf) {
        rc = kwt_err(KWT_FAIL, "%s was not signed by any generation of this CA", cert);
        goto out;
    }
    if ((rc = chain_links(&ca, leaf, target, &links)))
        goto out;
    kwt_buf_add(&chain, leaf_pem);
    kwt_buf_addn(&chain, links.s, links.len);
    if (format && !strcmp(format, "pem-bundle")) {
        if (kwt_g.dry_run)
            printf("# keyward writes %s and the link certificates to %s\n", cert, out);
        else if (kwt_write_atomic(out, chain.s, chain.len, 0644) != 0)
            rc = kwt_err(KWT_FAIL, "cannot write %s: %s", out, strerror(errno));
    } else if (format) {
        rc = write_p12(&ca, pos[0], cert, &links, out);
    }
    if (rc == 0 && package && kwt_g.dry_run)
        printf("# keyward writes %s/%s.crt, chain.pem (the certificate and %d link "
               "certificates), ca.crt (the root for %s), crl.pem (crl/crl.pem) and a README\n",
               package, pos[0], count_certs(&links), for_s ? for_s : "all");
    if (rc == 0 && package && !kwt_g.dry_run)
        rc = write_package(&ca, package, pos[0], leaf_pem, &chain, target, leaf);
    if (rc == 0 && !kwt_g.dry_run && kwt_g.json) {
        kwt_buf js = {0};
        kwt_buf_add(&js, "{\"name\":");
        kwt_buf_json_str(&js, pos[0]);
        kwt_buf_printf(&js, ",\"generation\":%d,\"for\":", leaf);
        kwt_buf_json_str(&js, for_s ? for_s : "all");
        kwt_buf_printf(&js, ",\"links\":%d,\"%s\":", count_certs(&links),
                       package ? "package" : "file");
        kwt_buf_json_str(&js, package ? package : out);
        kwt_buf_add(&js, "}\n");
        fputs(js.s, stdout);
        kwt_buf_free(&js);
    }
    if (rc == 0 && !kwt_g.dry_run)
        kwt_info("exported %s (generation %d) for %s to %s", pos[0], leaf,
                 target == FOR_ALL ? "relying parties of any generation" : for_s,
                 package ? package : out);
out:
    X509_free(x);
    kwt_buf_free(&links);
    kwt_buf_free(&chain);
    free(leaf_pem);
    free(cert);
    kwt_ca_close(&ca);
    return rc;
}
