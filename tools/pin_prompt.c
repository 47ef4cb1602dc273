/* SPDX-License-Identifier: Apache-2.0 */
/* keyward's one PIN prompt: asked only when the token wants a PIN that nothing gives, and
 * handed to the openssl children through a sealed memory file (run_openssl.c). */
#include "kwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kw_secmem.h"

/* Does the token of uri want a PIN that nothing gives? Asked of openssl with no terminal, so
 * that it cannot prompt by itself. */
static bool pin_wanted(const char *uri, const char *cnf)
{
    kwt_cmd c;
    kwt_cmd_init(&c, "pkey");
    kwt_cmd_opt(&c, "-in", uri);
    kwt_cmd_add(&c, "-pubout");
    kwt_cmd_add(&c, "-noout");
    char *out = NULL, *err = NULL;
    bool saved = kwt_children_no_tty;
    kwt_children_no_tty = true;
    bool want = kwt_run_quiet(&c, cnf, &out, &err) != 0 && err && strstr(err, "PIN required");
    kwt_children_no_tty = saved;
    free(out);
    free(err);
    return want;
}

int kwt_pin_prompt_once(const char *uri, const char *cnf)
{
    if (kwt_g.dry_run || kwt_run_has_pin() || !uri || !cnf || strstr(uri, "pin-source="))
        return 0;
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0 || !isatty(STDIN_FILENO)) {
        if (tty >= 0)
            close(tty);
        return 0;
    }
    close(tty);
    if (!pin_wanted(uri, cnf))
        return 0;
    const size_t cap = 257;
    char *pin = kw_secure_alloc(cap);
    const char *t = strstr(uri, "token=");
    char *prompt =
        kwt_asprintf("PIN for token %.*s: ", t ? (int)strcspn(t + 6, ";?") : 0, t ? t + 6 : "");
    char *dir = NULL;
    int m = -1, rc = 0;
    if (!pin || EVP_read_pw_string(pin, (int)cap, prompt, 0) != 0 || !*pin) {
        rc = kwt_err(KWT_FAIL, "no PIN was typed for %s", uri);
    } else if ((m = memfd_create("keyward-pin", MFD_ALLOW_SEALING)) < 0 ||
               write(m, pin, strlen(pin)) != (ssize_t)strlen(pin) || fchmod(m, 0600) != 0 ||
               fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) !=
                   0 ||
               !(dir = kwt_tmpdir())) {
        rc = kwt_err(KWT_FAIL, "cannot hand the PIN to openssl: %s", strerror(errno));
        if (m >= 0)
            close(m);
        m = -1;
    }
    if (pin)
        kw_secure_free(pin, cap);
    free(prompt);
    if (m >= 0)
        kwt_run_hand_pin(m, dir);
    return rc;
}
