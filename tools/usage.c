/* SPDX-License-Identifier: Apache-2.0 */
/* Usage texts of every subcommand (keyward help CMD, CMD --help), and the shell completion
 * computed from them (keyward __complete). */
#include "kwt.h"

#include <ctype.h>
#include <string.h>

static const struct {
    const char *cmd;
    const char *text;
} usages[] = {
    {"", "usage: keyward [--dir DIR] [--dry-run] [--json] [-v | -q] [--notify CMD]\n"
         "               COMMAND [ARGS]\n"
         "\n"
         "CA directory: --dir, else $KEYWARD_DIR, else ./pki. Exit: 0 ok, 1 failed, 2 usage.\n"
         "-q: errors only (for cron); -v: the openssl commands and their messages.\n"
         "--notify CMD: the program (absolute path) that gets each event of this run, instead\n"
         "of notify in keyward.conf.\n"
         "\n"
         "commands:\n"
         "  ca init      create the CA (key on a token, self-signed cert, empty CRL)\n"
         "  ca sign      issue a certificate from a CSR with a profile (or --batch)\n"
         "  ca renew     re-issue (same key, or a new CSR) and supersede the old cert\n"
         "  ca revoke    revoke by name or serial, regenerate the CRLs\n"
         "  ca crl       regenerate every CA generation's CRL and the bundle crl/crl.pem\n"
         "  ca rotate    new CA key and certificate, linked both ways to the old one\n"
         "  ca ocsp      run an OCSP responder on 127.0.0.1\n"
         "  ca est       run an EST server (RFC 7030) on 127.0.0.1: enrolment over HTTPS\n"
         "  ca list      inventory (table or --json), filtered by tag\n"
         "  ca stats     counts by status, expiry, reason, profile, tag; last renewal; CRLs\n"
         "  ca metrics   the same figures for Prometheus (node_exporter textfile)\n"
         "  ca report    the fleet on one self-contained HTML page\n"
         "  ca export    certificate and the chain a relying party needs (no key)\n"
         "  ca backup    the CA directory as one tar archive with a SHA-256 manifest\n"
         "  ca restore   verify such an archive, then restore it into a new directory\n"
         "  req          key on the client's token and a CSR\n"
         "  est          enrol or re-enrol with an EST server (the key on the token)\n"
         "  verify       check a certificate (chain, dates, CRL, purpose, device ID)\n"
         "  check        health of the CA (provider, token, key, files, CRL, expiry)\n"
         "  show         a certificate's or CSR's subject, SANs, key, fingerprints, status\n"
         "  uri2pem      write the key file for a pkcs11: URI\n"
         "  keyring      keys in the kernel keyring token (when built with it)\n"
         "  help CMD     help on a command (e.g. keyward help ca sign)\n"},
    {"ca", "usage: keyward ca init|sign|renew|revoke|crl|rotate|ocsp|list|stats|metrics|report|\n"
           "                  export|backup|restore|est ...\n"
           "  keyward help ca SUBCOMMAND for details.\n"},
    {"ca init",
     "usage: keyward ca init --key URI --subject DN [--key-type TYPE] [--days 3650]\n"
     "                       [--use-existing] [--force] [--module PATH] [--pin-source file:PATH]\n"
     "                       [--crl-days 30] [--policy-match O,OU] [--crl-url URL]\n"
     "Creates the CA directory (0700), the CA key on the token at URI (or uses the key there\n"
     "with --use-existing), a self-signed v3 CA certificate and an empty CRL.\n"
     "TYPE: rsa:2048 rsa:3072 rsa:4096 ec:P-256 (default) ec:P-384 ec:P-521.\n"
     "DN: CN=Example CA,O=Example or /CN=Example CA/O=Example.\n"
     "--force replaces an existing CA (every certificate it issued becomes unverifiable).\n"},
    {"ca sign",
     "usage: keyward ca sign CSR --profile client|server|device|ocsp|subca [--name NAME]\n"
     "                       [--days N] [--san LIST] [--device-id ID]\n"
     "                       [--tag KEY=VALUE]... [--note TEXT] [--no-auto-renew]\n"
     "       keyward ca sign --batch DIR_OR_LIST --profile PROFILE [--days N]\n"
     "Checks the CSR, issues the certificate, writes issued/NAME.crt (and certs/SERIAL.pem),\n"
     "prints path, serial, the SHA-256 of the public key (SPKI, compare it with what the\n"
     "requester read out; before signing: keyward show CSR) and of the certificate.\n"
     "NAME defaults to the CSR's CN.\n"
     "LIST: DNS:host,IP:1.2.3.4,email:a@b,URI:x:y (bare names are DNS or IP).\n"
     "server needs a SAN; device needs --device-id (SAN DNS device-ID + otherName).\n"
     "--batch signs every *.csr of a directory (or the files listed one per line) in one\n"
     "openssl process; NAME is the file name without .csr.\n"
     "--tag (repeatable), --note and --no-auto-renew are kept with the certificate (for\n"
     "every one of a batch): shown by ca list and show, filtered by ca list --tag, carried\n"
     "over by renewal. KEY: letters, digits, _ . - (1-64); VALUE (1-256 bytes) and TEXT\n"
     "(1-1024): printable UTF-8, no control characters.\n"},
    {"ca renew", "usage: keyward ca renew NAME [--days N] [--csr NEW.csr] [--keep-old]\n"
                 "       keyward ca renew --due [DAYS] [--days N]\n"
                 "Re-issues NAME (same key and identity from the stored CSR, or rekeyed with\n"
                 "--csr); the previous certificate is revoked as superseded unless --keep-old.\n"
                 "--due renews every valid certificate that expires within DAYS (default\n"
                 "renew_due_days in keyward.conf, 30) and has auto-renew on, each for its own\n"
                 "key, identity and days (--days N instead); goes on past a failure, exit 1 if\n"
                 "any failed. With --dry-run: the list of what it would renew.\n"},
    {"ca revoke", "usage: keyward ca revoke NAME|SERIAL [--reason REASON] [--date WHEN] [--all]\n"
                  "       keyward ca revoke --serial SERIAL | --name NAME [...]\n"
                  "REASON: unspecified keyCompromise cACompromise affiliationChanged superseded\n"
                  "        cessationOfOperation certificateHold removeFromCRL (lifts a hold).\n"
                  "WHEN: YYYY-MM-DD[THH:MM[:SS]]Z or YYYYMMDDHHMMSSZ, not in the future and not\n"
                  "before the certificate was issued.\n"
                  "A NAME with several valid certificates (renew --keep-old) is refused with\n"
                  "their list: pick one with --serial, or --all. An argument that is both a\n"
                  "NAME and another certificate's SERIAL is refused: say --name or --serial.\n"
                  "Updates the index and regenerates the CRLs in one step.\n"},
    {"ca crl", "usage: keyward ca crl [--days N]\n"
               "Writes crl/gen-G.pem and crl/gen-G.crl (DER) for every CA generation whose\n"
               "certificate is unexpired, each signed by its own key; crl/crl.pem, the bundle\n"
               "of all of them (nginx ssl_crl, openssl verify -CRLfile); crl/crl.der, the\n"
               "current generation's. Next update in N days (config crl_days).\n"},
    {"ca rotate", "usage: keyward ca rotate --key NEWURI [--key-type TYPE] [--days N]\n"
                  "                         [--use-existing]\n"
                  "New CA key and certificate ca/ca-N.crt (same subject, new SKI), and two\n"
                  "link certificates: ca/cross-N.crt (the new key certified by the old) and\n"
                  "ca/oldwithnew-N.crt (the old key certified by the new). The old key keeps\n"
                  "signing crl/gen-(N-1).pem while its CA certificate is valid.\n"},
    {"ca ocsp", "usage: keyward ca ocsp --port N [--host 127.0.0.1] [--key URI] [--count N]\n"
                "OCSP responder for the CA's index. keyward listens itself (openssl 3.0's\n"
                "`ocsp -port` would bind every address) and answers each request with\n"
                "`openssl ocsp -index ... -reqin ... -respout ...`. The signer is an ocsp-profile\n"
                "certificate whose key is on the token (--key, made on first use).\n"},
    {"ca est", "usage: keyward ca est --port N [--host 127.0.0.1] [--key URI] [--config FILE]\n"
               "       keyward ca est --add-secret USER [--secret-file file:PATH] [--config FILE]\n"
               "EST server (RFC 7030) on the CA: /.well-known/est/[LABEL/]cacerts, csrattrs,\n"
               "simpleenroll, simplereenroll over HTTPS (TLS 1.2/1.3); its own certificate\n"
               "(est-server, server profile) is issued at first start for --key on the token,\n"
               "and again after ca rotate without a restart.\n"
               "Each request is signed by ca sign (enrol) or ca renew --csr (re-enrol, with the\n"
               "current certificate as TLS client certificate): the same checks, lock and audit.\n"
               "FILE (default DIR/est.conf), one setting a line:\n"
               "  label NAME profile client|server|device auth basic|cert|both\n"
               "        [require_channel_binding]\n"
               "  secrets PATH   bootstrap_ca PATH   key URI   dns NAME   rate_limit N SECONDS\n"
               "  deadline SECONDS (for the whole request; default 10)\n"
               "--add-secret USER: a one-time enrolment secret (HTTP Basic), read from stdin or\n"
               "--secret-file (0600), stored salted and hashed (PBKDF2); consumed on use.\n"
               "No serverkeygen (501): keys are made where they live.\n"},
    {"est", "usage: keyward est enroll|reenroll ...\n"
            "  keyward help est SUBCOMMAND for details.\n"},
    {"est enroll",
     "usage: keyward est enroll URL --key URI --subject DN --cacert FILE --out CERT\n"
     "                          [--label L] [--san LIST] [--device-id ID]\n"
     "                          [--user U --password-file FILE] [--cert C [--key-file K]]\n"
     "                          [--module PATH] [--pin-source file:PATH] [--tls-max 1.2|1.3]\n"
     "Makes the key (unless there) and a CSR on the token as keyward req does, posts it\n"
     "to URL (https://HOST:PORT[/.well-known/est]) and writes the certificate to CERT.\n"
     "Authentication: a one-time secret (--user, --password-file 0600) or a bootstrap\n"
     "certificate (--cert, its key --key-file or --key on the token). The CSR carries\n"
     "the TLS channel binding of the connection (RFC 7030 3.5) in its challengePassword.\n"},
    {"est reenroll",
     "usage: keyward est reenroll URL --key URI --cert CURRENT --cacert FILE --out CERT\n"
     "                            [--new-key URI2] [--label L] [--module PATH]\n"
     "                            [--pin-source file:PATH] [--tls-max 1.2|1.3]\n"
     "                            [--due [DAYS]]\n"
     "Renews CURRENT with the same subject and names; TLS client authentication with\n"
     "CURRENT and its key URI; the new CSR is for URI2 (a new key) or URI. For a timer:\n"
     "--due [DAYS] re-enrols only when CURRENT ends within DAYS (default 30).\n"},
    {"ca list", "usage: keyward ca list [--status all|valid|revoked|expired|expiring]\n"
                "                       [--within DAYS] [--tag KEY=VALUE]...\n"
                "       keyward ca list --generations\n"
                "Columns: name, serial, subject, not-after, status, reason, fingerprint.\n"
                "--generations: each CA generation's root and the link certificates.\n"
                "--tag: only certificates with that tag (repeated: all of them).\n"},
    {"ca stats", "usage: keyward ca stats\n"
                 "Certificates by status (valid, expiring within 7/14/30/60 days, expired,\n"
                 "revoked by reason), by profile and by tag; the last ca renew --due; each\n"
                 "generation's CRL next update.\n"},
    {"ca metrics", "usage: keyward ca metrics [--textfile FILE]\n"
                   "The figures of ca stats and each certificate's notAfter in the Prometheus\n"
                   "text format, written atomically to FILE (node_exporter's textfile\n"
                   "collector; name it *.prom), else to stdout.\n"},
    {"ca report", "usage: keyward ca report --html FILE\n"
                  "One self-contained HTML page (inline CSS, script and SVG; loads nothing):\n"
                  "the figures of ca stats, an expiry timeline of the next 365 days (a bar per\n"
                  "week, the next 30 days marked), revocations by reason, the CA generations\n"
                  "and their CRLs, and the inventory table (click a header to sort, type to\n"
                  "filter). Written atomically (mode 0644); FILE - writes it to stdout.\n"},
    {"ca export",
     "usage: keyward ca export NAME [--for TARGET] --format pem-bundle|p12 --out FILE\n"
     "       keyward ca export NAME [--for TARGET] --package DIR\n"
     "The certificate and the link certificates a relying party that trusts\n"
     "TARGET's root needs; never a self-signed root, never a key.\n"
     "TARGET: gen-N (trusts ca/ca-N.crt), new-root (the current generation),\n"
     "old-root (the one before), all (default: any generation's root).\n"
     "--package writes NAME.crt, chain.pem, ca.crt (TARGET's root), crl.pem and\n"
     "a README.\n"},
    {"ca backup",
     "usage: keyward ca backup --out FILE\n"
     "A tar archive (POSIX pax) of the CA directory, taken under the CA lock: a signing that\n"
     "runs meanwhile is wholly in it or not at all. Its first member, MANIFEST, lists every\n"
     "file, directory and link with its mode, and each file's SHA-256. The audit log and the\n"
     "key URIs are in it; keys are not (they are on the token): a file that looks like a\n"
     "private key (PEM, PKCS#12) is left out, with a warning. FILE (mode 0600) is replaced\n"
     "atomically and must not be inside the CA directory.\n"},
    {"ca restore",
     "usage: keyward ca restore FILE --dir NEW [--force]\n"
     "Verifies the whole archive before it writes anything: every member against the\n"
     "MANIFEST and its SHA-256, no absolute path or .., no link that leads outside, no hard\n"
     "link, device or FIFO, no name twice, nothing missing. Then writes it into a new\n"
     "directory beside NEW and renames that to NEW (an existing NEW must be empty; --force\n"
     "replaces it), and runs keyward check there: exit 1 unless the token with the CA key\n"
     "(which must match ca.crt), the module and the PIN file are on this host.\n"},
    {"req", "usage: keyward req --key URI --subject DN [--san LIST] [--device-id ID]\n"
            "                   [--key-type TYPE] [--module PATH] [--pin-source file:PATH]\n"
            "                   --out FILE.csr\n"
            "Generates the key on its token unless it is there, writes the CSR and prints\n"
            "the SHA-256 of its public key (SPKI) to read out to the CA operator. Without a\n"
            "PIN source, on a terminal, asks for the PIN once.\n"},
    {"verify", "usage: keyward verify CERT [--ca FILE] [--untrusted FILE] [--crl FILE |\n"
               "                      --no-revocation-check] [--purpose "
               "client|server|device|ocsp]\n"
               "                      [--device-id ID] [--warn-days 30]\n"
               "One line per check, then PASS or FAIL; exit 0 valid, 1 invalid. PASS only when\n"
               "every check ran: without a CRL from the certificate's issuer (the CA\n"
               "directory's, or --crl) revocation is FAIL unless --no-revocation-check.\n"},
    {"check", "usage: keyward check [--warn-days 30]\n"
              "Provider, module, token, CA key vs ca.crt (sign+verify), permissions, CRL\n"
              "freshness, certificates expiring soon. Exit 1 on any failure.\n"},
    {"show", "usage: keyward show FILE\n"
             "A certificate or CSR (PEM or DER): subject (RFC 4514), SANs, key type, SHA-256\n"
             "of the public key (SPKI; the same in the CSR and its certificates) and of the\n"
             "certificate, validity, serial; from the CA directory, its NAME and status\n"
             "(valid, expired, revoked).\n"},
    {"uri2pem", "usage: keyward uri2pem URI --out FILE [--module PATH] [--pin-source "
                "file:PATH]\n"
                "Writes the KEYWARD KEY URI file for a key on a token.\n"},
};

int kwt_usage(const char *cmd, FILE *f)
{
    for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++)
        if (!strcmp(usages[i].cmd, cmd)) {
            fputs(usages[i].text, f);
            return 0;
        }
    return -1;
}

/* ---- keyward __complete WORD...: candidates for tools/keyward.bash-completion ----
 * Everything comes from the texts above (and the keyring's), so completion follows the help.
 * A command's options are the -x/--xyz words of its synopsis: the "usage:" line and the
 * indented lines after it (the prose below may name other commands' options). Only words of
 * the texts are printed, never the words typed. */
#define COMPL_MAX 64

typedef struct {
    const char *w1, *w2; /* "ca" "sign"; w2 NULL for a one-word command; w1 "" for the globals */
    size_t n1, n2;
    const char *text;
} compl_cmd;

typedef struct {
    const char *prefix;
    const char *s[COMPL_MAX];
    size_t n[COMPL_MAX], count;
    FILE *f;
} compl_out;

static bool word_is(const char *w, size_t n, const char *typed)
{
    return w && !strncmp(w, typed, n) && !typed[n];
}

/* The end of the synopsis at text: the newline before the first line that is not indented. */
static const char *synopsis_end(const char *text)
{
    const char *nl = strchr(text, '\n');
    while (nl && (nl[1] == ' ' || nl[1] == '\t'))
        nl = strchr(nl + 1, '\n');
    return nl ? nl : text + strlen(text);
}

/* The next option word in [p, e) (its length in *n; *val: a value follows it), or NULL. */
static const char *next_opt(const char *p, const char *e, size_t *n, bool *val)
{
    for (char prev = ' '; p < e; prev = *p++) {
        if (*p != '-' || !memchr(" [|\n", prev, 4))
            continue;
        const char *q = p + 1 + (p + 1 < e && p[1] == '-');
        if (q >= e || !isalpha((unsigned char)*q))
            continue;
        while (q < e && (isalnum((unsigned char)*q) || *q == '-'))
            q++;
        *n = (size_t)(q - p);
        *val = q + 1 < e && *q == ' ' && !memchr("[|-\n", q[1], 4);
        return p;
    }
    return NULL;
}

static bool takes_value(const compl_cmd *c, const char *opt)
{
    size_t n;
    bool val;
    const char *e = c ? synopsis_end(c->text) : NULL;
    for (const char *p = c ? c->text : NULL; p && (p = next_opt(p, e, &n, &val)); p += n)
        if (word_is(p, n, opt))
            return val;
    return false;
}

static void offer(compl_out *o, const char *s, size_t n)
{
    size_t pl = strlen(o->prefix);
    if (!n || pl > n || memcmp(s, o->prefix, pl))
        return;
    for (size_t i = 0; i < o->count; i++)
        if (o->n[i] == n && !memcmp(o->s[i], s, n))
            return;
    if (o->count < COMPL_MAX) {
        o->s[o->count] = s;
        o->n[o->count++] = n;
    }
    fprintf(o->f, "%.*s\n", (int)n, s);
}

static void offer_opts(compl_out *o, const compl_cmd *c)
{
    size_t n;
    bool val;
    const char *e = c ? synopsis_end(c->text) : NULL;
    for (const char *p = c ? c->text : NULL; p && (p = next_opt(p, e, &n, &val)); p += n)
        offer(o, p, n);
}

/* The commands: usages[], then each "usage: keyward GROUP SUB" text of extra. */
static size_t compl_cmds(compl_cmd *c, size_t max, const char *extra)
{
    static const char lower[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static const char u[] = "usage: keyward ";
    size_t n = 0;
    for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]) && n < max; i++, n++) {
        const char *sp = strchr(usages[i].cmd, ' ');
        c[n] = (compl_cmd){usages[i].cmd, sp ? sp + 1 : NULL,
                           sp ? (size_t)(sp - usages[i].cmd) : strlen(usages[i].cmd),
                           sp ? strlen(sp + 1) : 0, usages[i].text};
    }
    for (const char *p = extra; p && (p = strstr(p, u)) && n < max; p++) {
        const char *w = p + strlen(u);
        size_t l1 = strspn(w, lower), l2 = w[l1] == ' ' ? strspn(w + l1 + 1, lower) : 0;
        if ((p == extra || p[-1] == '\n') && l1)
            c[n++] = (compl_cmd){w, l2 ? w + l1 + 1 : NULL, l1, l2, p};
    }
    return n;
}

int kwt_complete(int argc, char **argv, const char *extra, FILE *f)
{
    compl_cmd c[COMPL_MAX];
    size_t nc = compl_cmds(c, COMPL_MAX, extra);
    compl_out o = {.prefix = argc > 0 ? argv[argc - 1] : "", .f = f};
    const compl_cmd *glob = NULL, *cmd = NULL;
    for (size_t i = 0; i < nc; i++)
        if (!c[i].n1)
            glob = &c[i];
    const char *w[2] = {NULL, NULL};
    int nw = 0;
    bool help = false, done = false; /* done: the command's words are all there */
    for (int i = 0; i < argc - 1; i++) {
        const char *a = argv[i];
        if (a[0] == '-') {
            if (takes_value(glob, a) || takes_value(cmd, a)) {
                if (i + 1 < argc - 1 && !strcmp(argv[i + 1], "="))
                    i++; /* bash splits --dir=DIR into "--dir" "=" "DIR" */
                if (++i >= argc - 1)
                    return 0; /* completing the value: the shell's file names */
            }
            continue;
        }
        if (done)
            continue; /* an argument */
        if (!nw && !help && !strcmp(a, "help")) {
            help = true;
            continue;
        }
        w[nw++] = a;
        bool group = false;
        for (size_t j = 0; j < nc && nw == 1; j++)
            group = group || (word_is(c[j].w1, c[j].n1, a) && c[j].w2);
        if (group)
            continue; /* the subcommand comes next */
        for (size_t j = 0; j < nc; j++)
            if (word_is(c[j].w1, c[j].n1, w[0]) &&
                (nw == 1 ? !c[j].w2 : word_is(c[j].w2, c[j].n2, w[1])))
                cmd = &c[j];
        done = true;
    }
    if (o.prefix[0] == '-') {
        offer_opts(&o, help ? NULL : cmd);
        offer_opts(&o, glob);
    } else if (!done && !nw) {
        for (size_t j = 0; j < nc; j++)
            offer(&o, c[j].w1, c[j].n1);
        if (!help)
            offer(&o, "help", 4);
    } else if (!done) {
        for (size_t j = 0; j < nc; j++)
            if (word_is(c[j].w1, c[j].n1, w[0]) && c[j].w2)
                offer(&o, c[j].w2, c[j].n2);
    }
    fflush(f);
    return 0;
}
