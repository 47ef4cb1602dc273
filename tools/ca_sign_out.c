/* SPDX-License-Identifier: Apache-2.0 */
/* What signing prints: each issued certificate (text or JSON), and under --dry-run the shell
 * lines that do what keyward itself does after `openssl ca`. */
#include "ca_sign_int.h"
#include "kwt.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>

/* --dry-run: what keyward itself does after `openssl ca`, as shell lines, so that the script
 * run by hand records each NAME in the index (openssl writes "unknown"), links issued/NAME.crt
 * and keeps the request and its record, as a real run does. kwt_dry_mark runs before openssl. */
void kwt_dry_mark(kwt_ca *ca)
{
    char *ixp = kwt_state_path(ca, "index.txt");
    fputs("kw_ix=", stdout);
    kwt_shq(stdout, ixp);
    fputs("\nkw_n0=$(wc -l < \"$kw_ix\")\n", stdout);
    free(ixp);
}

void kwt_dry_record(kwt_ca *ca, size_t n, char *const *names, char *const *csrs,
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
void kwt_sign_report(kwt_ca *ca, const char *name, const char *serial, bool first, bool last,
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
