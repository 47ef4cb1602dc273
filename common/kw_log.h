/* SPDX-License-Identifier: Apache-2.0 */
/* Debug logging, off unless KEYWARD_DEBUG is set. Never log PINs or key bytes. */
#ifndef KW_LOG_H
#define KW_LOG_H

#include <stdarg.h>

/* KEYWARD_DEBUG=1 (or level 1..3) logs to stderr; "file:/path[,level]" appends to a file. */
int kw_log_level(void);
void kw_log_msg(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Mask every "pin-value=..." in a message in place (a URI the user gave may carry a PIN, and
 * messages name URIs). Applied to every log line and every error message. */
void kw_redact_pins(char *msg);

#define KW_DEBUG(comp, ...)                                                                        \
    do {                                                                                           \
        if (kw_log_level() >= 1)                                                                   \
            kw_log_msg(1, comp, __VA_ARGS__);                                                      \
    } while (0)
#define KW_TRACE(comp, ...)                                                                        \
    do {                                                                                           \
        if (kw_log_level() >= 2)                                                                   \
            kw_log_msg(2, comp, __VA_ARGS__);                                                      \
    } while (0)

#endif
