/* SPDX-License-Identifier: Apache-2.0 */
/* PIN sources. A PIN lives only in secure memory and is never logged. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kw_log.h"
#include "kw_p11.h"
#include "kw_secmem.h"

#define KW_PIN_MAX 256

/* "fd:N": a sealed memory file (memfd) that a parent, such as the keyward command after its
 * one prompt, hands to its children, so that every child gets the PIN without it being in argv,
 * the environment or a file on disk. Only a descriptor sealed against writing is taken (not any
 * open file of the process), read from its start each time (a process may log in again). */
static kw_err pin_from_fd(const char *source, char **pin)
{
    char buf[KW_PIN_MAX + 1], *end;
    struct stat st;
    long fd = strtol(source + 3, &end, 10);
    ssize_t r;
    size_t len;

    *pin = NULL;
    if (end == source + 3 || *end != '\0' || fd < 0 || fd > 65535)
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN source \"%s\" is not fd:NUMBER", source);
    int seals = fcntl((int)fd, F_GET_SEALS); /* -1 for anything but a memfd */
    if (fstat((int)fd, &st) != 0 || !S_ISREG(st.st_mode) || seals < 0 ||
        (seals & F_SEAL_WRITE) == 0)
        return kw_err_set(KW_ERR_PIN_SOURCE,
                          "PIN source %s is not an inherited sealed memory file (memfd)", source);
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) || st.st_uid != geteuid())
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN source %s is not private to this user", source);
    r = pread((int)fd, buf, sizeof(buf) - 1, 0);
    len = r > 0 ? (size_t)r : 0;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0 || memchr(buf, '\n', len) != NULL) {
        kw_wipe(buf, sizeof(buf));
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN source %s is empty or has more than one line",
                          source);
    }
    *pin = kw_secure_strndup(buf, len);
    kw_wipe(buf, sizeof(buf));
    if (*pin == NULL)
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    KW_DEBUG("pin", "PIN read from %s", source);
    return KW_OK;
}

kw_err kw_pin_from_source(const char *source, char **pin)
{
    const char *path = source;
    char buf[KW_PIN_MAX + 1];
    struct stat st;
    ssize_t r;
    size_t len = 0;
    int fd;

    *pin = NULL;
    if (strncmp(path, "fd:", 3) == 0)
        return pin_from_fd(source, pin);
    if (strncmp(path, "file:", 5) == 0)
        path += 5;
    if (path[0] != '/')
        return kw_err_set(KW_ERR_PIN_SOURCE,
                          "PIN source \"%s\" is not supported: use file:/absolute/path", source);
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever, before
     * the type check below could refuse it. Blocking reads are restored once it is a file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN file %s cannot be opened: %s", path,
                          strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN file %s is not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        close(fd);
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN file %s cannot be read: %s", path,
                          strerror(errno));
    }
    /* Like ssh with private keys: a PIN file others can read is refused, not used. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return kw_err_set(KW_ERR_PIN_SOURCE,
                          "PIN file %s is accessible by group or others (mode %03o); "
                          "chmod 600 it",
                          path, (unsigned)(st.st_mode & 0777));
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        close(fd);
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN file %s is owned by another user", path);
    }
    while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    /* One line: strip the trailing newline an editor adds. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0 || memchr(buf, '\n', len) != NULL) {
        kw_wipe(buf, sizeof(buf));
        return kw_err_set(KW_ERR_PIN_SOURCE, "PIN file %s is empty or has more than one line",
                          path);
    }
    *pin = kw_secure_strndup(buf, len);
    kw_wipe(buf, sizeof(buf));
    if (*pin == NULL)
        return kw_err_set(KW_ERR_MEMORY, "out of memory");
    KW_DEBUG("pin", "PIN read from file %s", path);
    return KW_OK;
}

kw_err kw_pin_resolve(const kw_pin_ctx *ctx, const char *token_label, char **pin)
{
    *pin = NULL;
    if (ctx != NULL && ctx->uri_pin_value != NULL) {
        *pin = kw_secure_strndup(ctx->uri_pin_value, KW_PIN_MAX);
        return *pin ? KW_OK : kw_err_set(KW_ERR_MEMORY, "out of memory");
    }
    if (ctx != NULL && ctx->uri_pin_source != NULL)
        return kw_pin_from_source(ctx->uri_pin_source, pin);
    if (ctx != NULL && ctx->conf_pin_source != NULL)
        return kw_pin_from_source(ctx->conf_pin_source, pin);
    if (ctx != NULL && ctx->prompt != NULL) {
        char *buf = kw_secure_alloc(KW_PIN_MAX + 1);
        if (buf == NULL)
            return kw_err_set(KW_ERR_MEMORY, "out of memory");
        if (ctx->prompt(ctx->prompt_arg, token_label, buf, KW_PIN_MAX + 1) && buf[0] != '\0') {
            *pin = buf;
            return KW_OK;
        }
        kw_secure_free(buf, KW_PIN_MAX + 1);
    }
    return kw_err_set(KW_ERR_PIN_REQUIRED,
                      "token \"%s\" needs a PIN and none was given (use pin-source=file:... in "
                      "the URI, keyward-pin-source in the config, or a passphrase prompt)",
                      token_label);
}
