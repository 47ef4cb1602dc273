/* SPDX-License-Identifier: Apache-2.0 */
/* The `keyward` command: shared state and helpers of the subcommands. */
#ifndef KWT_H
#define KWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <sys/stat.h>

/* Exit codes of every subcommand. */
enum { KWT_OK = 0, KWT_FAIL = 1, KWT_USAGE = 2 };

/* Global options, parsed once in main.c. */
typedef struct {
    const char *dir; /* CA directory */
    bool dry_run;
    bool json;
    bool quiet; /* -q: errors only (cron) */
    int verbose;
    const char *notify; /* --notify CMD: the hook instead of keyward.conf's notify */
} kwt_opts;

extern kwt_opts kwt_g;

/* ---- errors and messages (util.c) ---- */
/* Print "keyward: <msg>" to stderr and return code (so `return kwt_err(2, ...)` works). */
int kwt_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kwt_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "keyward: <note>" on stderr (what is happening), silent with -q. */
void kwt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The real cause of a failure, found in a failed step's output: printed like kwt_err and kept
 * for the audit log; the caller's next kwt_err (its guess at the same failure) is shown only
 * with -v and does not replace it. */
void kwt_cause(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Text of the last error recorded by kwt_err, for the audit log. */
const char *kwt_last_error(void);
void kwt_clear_error(void);
/* Record msg as the last error (for the next audit line) without printing it again. */
void kwt_set_error(const char *msg);

/* ---- small buffers ---- */
typedef struct {
    char *s;
    size_t len, cap;
} kwt_buf;
void kwt_buf_add(kwt_buf *b, const char *s);
void kwt_buf_addn(kwt_buf *b, const char *s, size_t n);
void kwt_buf_printf(kwt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kwt_buf_json_str(kwt_buf *b, const char *s); /* quoted, escaped JSON string */
void kwt_buf_free(kwt_buf *b);

char *kwt_strdup(const char *s);
char *kwt_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *kwt_path(const char *dir, const char *name); /* dir/name */

/* ---- files (util.c) ---- */
/* Read a whole file (NUL-terminated); NULL with errno on failure. */
char *kwt_read_file(const char *path, size_t *len);
/* Write a file atomically: temp file in the same directory, fsync, rename, fsync the dir. */
int kwt_write_atomic(const char *path, const void *data, size_t len, int mode);
int kwt_copy_file(const char *from, const char *to, int mode); /* atomic, fsynced */
/* An output path the operator gave (--out, --textfile, --package; opt names it): refused with
 * KWT_USAGE, after printing why, when a symbolic link is there (never written through or
 * replaced: one planted in a shared directory such as /tmp) or anything but a regular file
 * (a directory when dir). Missing: fine; a regular file is replaced. */
int kwt_check_out_path(const char *opt, const char *path, bool dir);
/* Inside a transaction the per-file fsyncs are deferred to one syncfs before the commit. */
extern bool kwt_defer_sync;
int kwt_fsync_dir(const char *dir);
/* fsync a file another program (openssl) wrote */
int kwt_fsync_file(const char *path);
int kwt_symlink_atomic(const char *target, const char *linkpath);
bool kwt_exists(const char *path);
int kwt_rm_rf(const char *path);
/* A private temporary directory (0700) that kwt_tmpdir_cleanup removes. */
char *kwt_tmpdir(void);

/* ---- validation (validate.c): 0 when valid, else -1 with *why set to a static message ---- */
int kwt_valid_name(const char *name, const char **why);
int kwt_valid_device_id(const char *id, const char **why);
int kwt_valid_days(const char *s, int *days, const char **why);
/* Key type "rsa:2048" etc; alg gets "RSA"/"EC", param the genpkey option. */
int kwt_parse_key_type(const char *s, const char **alg, char *param, size_t plen, const char **why);
/* Reason name -> canonical openssl spelling; NULL when unknown. */
const char *kwt_reason_canon(const char *s);
/* A DN given as "/CN=a/O=b" or "CN=a,O=b" -> openssl -subj form with escapes; NULL + why. */
char *kwt_dn_to_subj(const char *dn, const char **why);
/* SAN list "DNS:a,IP:1.2.3.4,email:x@y,URI:u" or bare names -> openssl config form; NULL + why. */
char *kwt_san_to_conf(const char *list, const char **why);
/* Date "YYYY-MM-DD[THH:MM[:SS]][Z]" or "YYYYMMDDHHMMSSZ" or "now" -> time_t; -1 when invalid. */
long long kwt_parse_date(const char *s);
/* A value that is safe to write into an openssl config file unquoted. */
bool kwt_conf_safe(const char *s);
bool kwt_valid_uri(const char *uri, const char **why);

/* ---- running openssl (openssl_cmd.c: command lines; run_openssl.c: runs) ---- */
typedef struct {
    const char *argv[4200]; /* batch signing passes up to 4000 CSRs to one process */
    int argc;
} kwt_cmd;
void kwt_cmd_init(kwt_cmd *c, const char *sub);
void kwt_cmd_add(kwt_cmd *c, const char *arg);
void kwt_cmd_opt(kwt_cmd *c, const char *opt, const char *val); /* "-opt" "val" */
/* openssl req -new -utf8 -key KEY -subj SUBJ: a CSR for a key (on its token) */
void kwt_cmd_req_new(kwt_cmd *c, const char *key, const char *subj);
/* Run `openssl` with OPENSSL_CONF=cnf (NULL: none). With --dry-run print instead and return 0.
 * stdout_to (may be NULL) receives stdout. Errors of openssl are shown on failure (or with -v). */
int kwt_run(const kwt_cmd *c, const char *cnf, char **stdout_to);
/* Same, but stderr is returned in *stderr_to instead of shown; never prints. */
/* Run with stderr read line by line; lines containing `tick` advance a progress bar on a TTY. */
int kwt_run_progress(const kwt_cmd *c, const char *cnf, const char *tick, int total);
int kwt_run_quiet(const kwt_cmd *c, const char *cnf, char **stdout_to, char **stderr_to);
/* kwt_run, then the output file (a CA certificate) made readable by all. */
int kwt_run_public(const kwt_cmd *c, const char *cnf, const char *out);
/* Run openssl without a controlling terminal and with stdin from /dev/null, so that it cannot
 * prompt for a PIN by itself (keyward prompted once and hands the PIN over). */
extern bool kwt_children_no_tty;
/* No PIN source for uri and a terminal: when its token wants a PIN, ask once (echo off) and hand
 * it to every later openssl child of this command as keyward-pin-source = fd:N, a sealed memory
 * file it inherits (never argv, the environment or a file on disk); the PIN is wiped here.
 * 0 also when nothing was asked; KWT_FAIL after printing when no PIN was typed. */
int kwt_pin_prompt_once(const char *uri, const char *cnf); /* pin_prompt.c */
/* run_openssl.c keeps the prompt's PIN: fd, the sealed memory file every later openssl child
 * inherits, and dir, the private directory of their wrapper config (both released at exit). */
void kwt_run_hand_pin(int fd, char *dir);
bool kwt_run_has_pin(void); /* a PIN was handed over */
/* Name the cause of a failed run from openssl's stderr (the provider's reason such as "PIN
 * incorrect", a missing keyward.so, ...) with what to do, through kwt_cause; false when nothing
 * specific was recognised. */
bool kwt_explain_failure(const kwt_cmd *c, const char *cnf, const char *err);
/* Report a failed run whose stderr kwt_run_quiet returned, as kwt_run would have. */
void kwt_run_failed(const kwt_cmd *c, const char *cnf, const char *err);

/* ---- argument parsing (util.c) ---- */
typedef struct {
    const char *name; /* "--key" */
    const char **val; /* option with a value */
    bool *flag;       /* option without a value */
} kwt_optspec;
/* Returns 0, KWT_USAGE after printing why, or -1 when --help was printed (exit 0). */
int kwt_parse_args(const char *cmd, int argc, char **argv, const kwt_optspec *spec,
                   const char **pos, int maxpos, int *npos);

/* Print a generated config the way --dry-run shows it (once per path). */
void kwt_dry_show_file(const char *path, const char *content);
/* The content a --dry-run showed for path instead of writing it (NULL: none). */
const char *kwt_dry_file(const char *path);
const char *kwt_openssl_bin(void);
void kwt_print_argv(FILE *f, const kwt_cmd *c, const char *cnf);
void kwt_shq(FILE *f, const char *s); /* a word for the shell, single-quoted when needed */

/* ---- CA directory (cadb.c: open, lock, watch; cadb_conf.c: keyward.conf; cadb_openssl_cnf.c:
 * openssl.cnf and profiles; cadb_recover.c; cadb_txn.c: state transactions; cadb_index.c:
 * index.txt; cadb_crl.c: generations and CRLs) ---- */
typedef struct {
    char *ca_key;       /* URI of the CA key */
    char *module;       /* PKCS#11 module (NULL: default) */
    char *pin_source;   /* file:/path (NULL: none) */
    char *key_type;     /* rsa:3072 ... */
    char *device_oid;   /* otherName OID for device IDs */
    char *policy_match; /* comma list of RDN names that must match the CA */
    char *crl_url;      /* for exported packages and the CDP extension */
    char *ocsp_key;     /* URI of the OCSP signer key */
    char *old_keys;     /* "N:URI ..." keys of earlier CA generations (they sign their CRLs) */
    int default_days;
    int crl_days;
    int renew_due_days; /* ca renew --due default window */
    int generation;     /* CA key generation (rotations) */
    char *notify;       /* absolute path of the notification hook (NULL: none) */
    int notify_timeout; /* seconds a hook may run */
    bool audit_syslog;  /* audit_sink = syslog: audit lines also to syslog */
    char *bad;          /* what is wrong in the file (names the key); NULL when nothing */
    int bad_line;       /* the line it is on (1-based) */
} kwt_conf;

typedef struct {
    char status;      /* V, R, E */
    char *expiry;     /* YYMMDDHHMMSSZ */
    char *revocation; /* "date[,reason]" or "" */
    char *serial;     /* upper-case hex */
    char *name;       /* our NAME (openssl's "filename" column) */
    char *subject;
} kwt_row;

typedef struct {
    kwt_row *rows;
    size_t n, cap;
} kwt_index;

typedef struct {
    char *dir; /* absolute */
    int lock_fd;
    kwt_conf conf;
    char *stage; /* staging state dir during a transaction */
    char *stage_cnf;
    int gen;
} kwt_ca;

int kwt_ca_open(kwt_ca *ca, bool writer); /* loads config, locks for writers, recovers */
void kwt_ca_close(kwt_ca *ca);
void kwt_ca_unlock(kwt_ca *ca); /* let writers in; the CA stays open for reading */
/* Open the directory of ca again (as a writer) into out, e.g. after a rotation. */
int kwt_ca_reopen(const kwt_ca *ca, kwt_ca *out);
/* A long-running server's watch on its CA (ca ocsp, ca est): keyward.conf as it loaded it
 * (ca rotate rewrites it), when a certificate of its own needs issuing again, and when a reload
 * that failed may be tried again. */
typedef struct {
    struct stat conf_st; /* zero when it could not be read */
    time_t renew_at;     /* (time_t)-1: nothing to renew */
    time_t retry_at;     /* after a failed reload */
} kwt_reload;
void kwt_reload_mark(const kwt_ca *ca, kwt_reload *w, time_t renew_at); /* retry_at = 0 */
/* keyward.conf changed or renew_at passed, and no failed reload in the last retry period */
bool kwt_reload_due(const kwt_ca *ca, const kwt_reload *w, time_t now);
int kwt_conf_load(kwt_conf *c, const char *path);
int kwt_conf_save(const kwt_conf *c, const char *path);
void kwt_conf_free(kwt_conf *c);
void kwt_conf_defaults(kwt_conf *c);
const char *kwt_provider_path(void);
/* openssl.cnf text for the CA (state = directory with index, serial, crl). */
char *kwt_cnf_text(const kwt_conf *c, const char *dir, const char *state);
/* Provider-only config (for req/uri2pem on a client). */
char *kwt_cnf_provider_text(const char *module, const char *pin_source);
int kwt_ca_write_cnf(kwt_ca *ca);
/* The [ext_NAME] section body of a profile ("client", "ca", ...); NULL when unknown. */
char *kwt_profile_text(const kwt_conf *c, const char *profile);
/* State transactions: begin copies the live state; commit switches it atomically. */
int kwt_txn_begin(kwt_ca *ca);
int kwt_txn_commit(kwt_ca *ca);
void kwt_txn_abort(kwt_ca *ca);
/* Path in the state being edited (staging in a txn, else the live one). */
char *kwt_state_path(kwt_ca *ca, const char *name);
const char *kwt_ca_cnf(kwt_ca *ca); /* openssl.cnf that openssl must use now */
/* kwt_pin_prompt_once for the CA key when keyward.conf names no pin_source (kwt_ca_open does it
 * for writers). */
int kwt_ca_pin_prompt(kwt_ca *ca);

/* index.txt through OpenSSL's TXT_DB (6 fields, as openssl ca). A damaged file (a row with the
 * wrong number of fields, a NUL byte, a cut-off last line) is refused: -1 with errno EINVAL,
 * after an error naming PATH:LINE; -1 with errno from open/read when it cannot be read. */
int kwt_index_load(kwt_index *ix, const char *path);
int kwt_index_save(const kwt_index *ix, const char *path);
void kwt_index_free(kwt_index *ix);
kwt_row *kwt_index_find_serial(kwt_index *ix, const char *serial);
/* The newest row with this NAME (any status); NULL when none. */
kwt_row *kwt_index_find_name(kwt_index *ix, const char *name);
/* newest[i]: row i is the newest row of its NAME (one pass; free() it); NULL without memory. */
bool *kwt_index_newest(const kwt_index *ix);
/* The NIDs of the subject fields policy_match makes openssl ca compare with the CA's. */
int kwt_policy_match_nids(const kwt_conf *c, int *nids, int max);
/* Link issued/NAME.crt to certs/SERIAL.pem. */
int kwt_ca_link_issued(kwt_ca *ca, const char *name, const char *serial);
/* Recover after a crash: drop stale staging dirs, fix issued/ links. */
int kwt_ca_recover(kwt_ca *ca);
/* Every live generation's CRL (crl/gen-G.pem, .crl), the bundle crl/crl.pem (newest first) and
 * crl/crl.der (the current generation's), into the staging state. */
int kwt_ca_make_crl(kwt_ca *ca, int days);
/* CA generations: the key URI of generation g (NULL when unknown), its certificate's path, and
 * whether it still signs (current, or its certificate unexpired and its key known). */
char *kwt_gen_key(const kwt_conf *c, int g);
char *kwt_gen_cert_path(const kwt_ca *ca, int g);
bool kwt_gen_live(const kwt_ca *ca, int g);
/* The digest a CA key of this type signs with (sha256, sha384 for P-384, sha512 for P-521). */
const char *kwt_md_for_key_type(const char *key_type);
/* crl_url with "{gen}" replaced by the generation (NULL when no URL is configured). */
char *kwt_crl_url_for(const kwt_conf *c, int gen);
int kwt_random_serial(char *out, size_t outlen);

/* ---- audit log (audit.c) ---- */
/* JSON object text added to the next audit lines as "meta" (tags, note, auto-renew); NULL:
 * none. */
extern const char *kwt_audit_meta;
void kwt_audit(kwt_ca *ca, const char *op, const char *name, const char *serial,
               const char *subject, int rc);
char *kwt_audit_line(const char *op, const char *name, const char *serial, const char *subject,
                     int rc, const char *err);
/* A failed-outcome line with this error (kwt_audit takes the last error). */
void kwt_audit_err(kwt_ca *ca, const char *op, const char *name, const char *serial,
                   const char *subject, const char *err);

/* ---- notifications (notify.c) ---- */
/* Queue an event for the hook (keyward.conf notify, or --notify): "issued", "renewed",
 * "revoked" or "expiring" for the certificate SERIAL of NAME; subject, notAfter, profile and
 * tags come from certs/SERIAL.pem and .meta. extra: more members of the event object
 * ("\"reason\":\"keyCompromise\""), may be NULL. Nothing under --dry-run or without a hook. */
void kwt_notify(kwt_ca *ca, const char *event, const char *name, const char *serial,
                const char *extra);
/* Run the hook once per queued event, in order (main calls it after the command, when the CA
 * lock is released). A failing hook is reported on stderr and in audit.log (notify-failed);
 * it never changes the exit code. */
void kwt_notify_run(void);

/* ---- per-certificate records, certs/SERIAL.meta (meta.c) ---- */
#define KWT_TAGS_MAX      32
#define KWT_TAG_KEY_MAX   64
#define KWT_TAG_VALUE_MAX 256
#define KWT_NOTE_MAX      1024
typedef struct {
    char *key, *value;
} kwt_tag;
typedef struct {
    char *name, *profile, *san, *device_id; /* how it was signed */
    int days;
    kwt_tag tags[KWT_TAGS_MAX];
    size_t ntags;
    char *note;      /* NULL: none */
    bool auto_renew; /* ca renew --due renews it (default) */
} kwt_meta;
void kwt_meta_init(kwt_meta *m);
void kwt_meta_parse(const char *text, kwt_meta *m);
/* certs/SERIAL.meta of the CA at cadir; -1 (and an empty record) when it is missing. */
int kwt_meta_read(const char *cadir, const char *serial, kwt_meta *m);
char *kwt_meta_text(const kwt_meta *m);
void kwt_meta_free(kwt_meta *m);
const char *kwt_meta_tag(const kwt_meta *m, const char *key);
/* Every tag of filter is in m with the same value. */
bool kwt_meta_match(const kwt_meta *m, const kwt_meta *filter);
void kwt_meta_json(kwt_buf *b, const kwt_meta *m);
int kwt_valid_tag_key(const char *k, const char **why);
/* Printable UTF-8 of 1..max bytes, no control or bidirectional-override character. */
int kwt_valid_meta_text(const char *s, size_t max, const char **why);
int kwt_parse_tag(const char *arg, kwt_tag *t, const char **why);
/* Removes every --tag KEY=VALUE from argv into m->tags (checked); KWT_USAGE after printing. */
int kwt_take_tags(const char *cmd, int *argc, char **argv, kwt_meta *m);

/* ---- certificate helpers (certutil.c) ---- */
struct x509_st;
struct X509_req_st;
struct x509_st *kwt_load_cert(const char *path);
char *kwt_cert_fingerprint(struct x509_st *x); /* SHA-256, AA:BB:.. */
/* Every subject and issuer shown, text and JSON: RFC 4514, most specific RDN first. */
struct X509_name_st;
char *kwt_name_text(const struct X509_name_st *n);
char *kwt_cert_subject(struct x509_st *x); /* kwt_name_text of the subject */
/* The subject of certs/SERIAL.pem in CA directory cadir; fallback when it cannot be read. */
char *kwt_serial_subject(const char *cadir, const char *serial, const char *fallback);
char *kwt_cert_serial(struct x509_st *x);                            /* upper-case hex */
long long kwt_asn1_to_time(const char *yymmdd);                      /* index date -> time_t */
char *kwt_cert_subj_slash(struct x509_st *x, const char *cn_suffix); /* openssl -subj form */
struct asn1_string_st;
long long kwt_asn1_time(const struct asn1_string_st *t); /* Unix time; -1: none or unreadable */
/* The SHA-256 fingerprint (AA:BB:..) and RFC 4514 subject of the certificate file at path (PEM
 * or DER), and its notBefore (Unix time) when not_before is not NULL, read without decoding its
 * public key (for listing many); fingerprint NULL: not computed; -1 when unreadable. */
int kwt_cert_brief(const char *path, char **fingerprint, char **subject, long long *not_before);
/* The SHA-256 of the certificate's subjectPublicKeyInfo as encoded in it (openssl ca wrote it:
 * the DER that i2d_PUBKEY gives) and its subject (X509_NAME_free it), read the same way. */
struct X509_name_st;
int kwt_cert_key_subject(const char *path, unsigned char spki_sha256[32],
                         struct X509_name_st **subject);             /* upper-case hex */
long long kwt_asn1_to_time(const char *yymmdd);                      /* index date -> time_t */
char *kwt_cert_subj_slash(struct x509_st *x, const char *cn_suffix); /* openssl -subj form */
int kwt_ca_selfsign(kwt_ca *ca, const char *subj, int days, const char *out);
/* show.c: SHA-256 of the DER SubjectPublicKeyInfo (AA:BB:..), what a requester reads out to
 * the CA operator; a CSR from a file (PEM or DER), NULL when unreadable. */
struct evp_pkey_st;
char *kwt_spki_fingerprint(struct evp_pkey_st *pk);
struct X509_req_st *kwt_load_csr(const char *path);

/* ---- the fleet (ca_stats.c): one pass over the index and the per-certificate records, for
 * ca stats, ca metrics and ca report ---- */
enum { KWT_ST_VALID, KWT_ST_EXPIRED, KWT_ST_REVOKED, KWT_ST_N };
#define KWT_FLEET_NWIN 4 /* valid ones expiring within 7, 14, 30, 60 days */
typedef struct {
    char *a, *b; /* profile or reason (b NULL), or tag key and value */
    size_t n[KWT_ST_N];
} kwt_counter;
typedef struct {
    kwt_counter *c; /* sorted by a, then b */
    size_t n, cap;
} kwt_counters;
typedef struct {
    int gen;
    char *file;            /* crl/gen-G.pem */
    long long next_update; /* -1: none */
} kwt_crl_info;
typedef struct {
    size_t total, st[KWT_ST_N], expiring[KWT_FLEET_NWIN];
    kwt_counters reasons, profiles, tags;
    bool have_run; /* the last ca renew --due */
    long long run_time, run_due, run_renewed, run_failed;
    kwt_crl_info *crls; /* the generations that have a readable CRL */
    size_t ncrls;
} kwt_fleet;
/* Called for every certificate of the index (status KWT_ST_*), with its record. */
typedef void (*kwt_fleet_fn)(void *arg, const kwt_row *r, long long not_after, int status,
                             const kwt_meta *m);
int kwt_fleet_load(kwt_ca *ca, kwt_fleet *f, kwt_fleet_fn each, void *arg); /* each: NULL */
void kwt_fleet_free(kwt_fleet *f);
/* A revoked row's reason by its RFC 5280 name ("unspecified" when none is recorded). */
void kwt_revocation_reason(const kwt_row *r, char *out, size_t len);

/* ---- subcommands ---- */
int kwt_cmd_ca(int argc, char **argv);
int kwt_cmd_ca_init(int argc, char **argv);
int kwt_cmd_ca_sign(int argc, char **argv);
int kwt_cmd_ca_renew(int argc, char **argv);
int kwt_cmd_ca_revoke(int argc, char **argv);
int kwt_cmd_ca_crl(int argc, char **argv);
int kwt_cmd_ca_list(int argc, char **argv);
int kwt_cmd_ca_export(int argc, char **argv);
int kwt_cmd_ca_ocsp(int argc, char **argv);
int kwt_cmd_ca_stats(int argc, char **argv);
int kwt_cmd_ca_metrics(int argc, char **argv);
int kwt_cmd_ca_report(int argc, char **argv);
int kwt_cmd_ca_rotate(int argc, char **argv);
int kwt_cmd_ca_backup(int argc, char **argv);
int kwt_cmd_ca_restore(int argc, char **argv);
int kwt_cmd_req(int argc, char **argv);
int kwt_cmd_verify(int argc, char **argv);
int kwt_cmd_check(int argc, char **argv);
/* The checks of `keyward check` on an open CA: *doc gets the report (text, or with --json the
 * {"checks":[...],"result":...} document); returns the number of failed checks. */
int kwt_check_report(kwt_ca *ca, int warn, char **doc);
int kwt_cmd_uri2pem(int argc, char **argv);
int kwt_cmd_show(int argc, char **argv);
/* Sign one CSR in an open transaction (ca_sign_req.c; shared by sign and renew). */
int kwt_sign_one(kwt_ca *ca, const char *csr, const char *profile, const char *name, int days,
                 const char *san, const char *device_id, char **serial_out);
/* Generate the key at uri on its token unless it is there (cnf: provider config). */
/* check_type: an existing key of another type than key_type is refused (naming its type). */
int kwt_ensure_key(const char *uri, const char *key_type, const char *cnf, bool must_be_new,
                   bool check_type, bool *created, const char *out_pem);
int kwt_revoke_serial(kwt_ca *ca, const char *serial, const char *reason, long long when);
/* Usage text printed by `keyward help CMD` and CMD --help. */
int kwt_usage(const char *cmd, FILE *f);
/* keyward __complete WORD...: prints the completions of the last word (commands, subcommands,
 * the options of the command's synopsis and the global ones), one a line, from the usage texts
 * and extra (more "usage: keyward GROUP SUB ..." texts: the keyring's; may be NULL). */
int kwt_complete(int argc, char **argv, const char *extra, FILE *f);

/* ---- signing with an earlier CA generation (ca_sign_req.c; for ca ocsp) ---- */
/* kwt_sign_one with the key and certificate (ca/ca-G.crt) of CA generation gen; 0 or the
 * current generation: the current key, as kwt_sign_one. */
int kwt_sign_one_gen(kwt_ca *ca, int gen, const char *csr, const char *profile, const char *name,
                     int days, const char *san, const char *device_id, char **serial_out);

/* ---- EST (ca_est.c: the server; est.c: the client) ---- */
/* Why the last ca sign / ca renew in this process failed: 0 the CA (or nothing),
 * KWT_REFUSED_CSR the request (an intake check), KWT_REFUSED_IDENTITY a renewal asking for
 * another identity than the certificate it renews. */
enum { KWT_REFUSED_CSR = 1, KWT_REFUSED_IDENTITY = 2 };
extern int kwt_sign_refused;
int kwt_cmd_ca_est(int argc, char **argv);
int kwt_cmd_est(int argc, char **argv);
/* Take "--due [DAYS]" out of argv (ca renew, est reenroll): *window 0 absent, -1 no DAYS. */
int kwt_take_due(int *argc, char **argv, int *window, const char *cmd);
struct ssl_st;
/* The TLS channel binding of an established connection (RFC 7030 §3.5), both ends alike:
 * TLS 1.2 tls-unique (RFC 5929), TLS 1.3 tls-exporter (RFC 9266). Its length (0 on failure),
 * *kind "tls-unique" or "tls-exporter". */
size_t kwt_tls_channel_binding(struct ssl_st *s, unsigned char *out, size_t max, const char **kind);
struct evp_pkey_st;
struct ossl_lib_ctx_st;
/* The first private key a URI (pkcs11:, file:) names, loaded in lc (est_tls.c); NULL: none. */
struct evp_pkey_st *kwt_tls_load_key(struct ossl_lib_ctx_st *lc, const char *uri);

#endif
