/* SPDX-License-Identifier: Apache-2.0 */
#include "kw_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <keyward/keyward.h>

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static int log_level;
static FILE *log_fp;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_setup(void)
{
    const char *v = getenv(KEYWARD_ENV_DEBUG);
    if (v == NULL || *v == '\0' || strcmp(v, "0") == 0)
        return;
    log_level = 1;
    log_fp = stderr;
    if (strncmp(v, "file:", 5) == 0) {
        char path[4096];
        const char *comma = strrchr(v + 5, ',');
        size_t n = comma ? (size_t)(comma - (v + 5)) : strlen(v + 5);
        if (n >= sizeof(path))
            n = sizeof(path) - 1;
        memcpy(path, v + 5, n);
        path[n] = '\0';
        /* 0600-style: the log is for the operator only. */
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        FILE *fp = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (fp == NULL && fd >= 0)
            close(fd);
        if (fp != NULL) {
            setvbuf(fp, NULL, _IOLBF, 0);
            log_fp = fp;
        }
        if (comma != NULL)
            log_level = atoi(comma + 1);
    } else {
        log_level = atoi(v);
        if (log_level <= 0)
            log_level = 1;
    }
}

int kw_log_level(void)
{
    pthread_once(&log_once, log_setup);
    return log_level;
}

void kw_redact_pins(char *msg)
{
    static const char key[] = "pin-value=";
    char *p = msg;

    while ((p = strcasestr(p, key)) != NULL) {
        /* The value runs to the next query attribute ('&') or the end of the URI (white space,
         * a double quote). ',' ')' '\'' and the rest of RFC 7512's pk11-res-avail may be part of
         * the PIN, so they do not end it. */
        char *v = p + sizeof(key) - 1, *end = v;
        while (*end != '\0' && strchr("&\" \t\r\n", *end) == NULL)
            end++;
        if (end - v >= 3) {
            memcpy(v, "***", 3);
            memmove(v + 3, end, strlen(end) + 1);
        } else {
            memset(v, '*', (size_t)(end - v));
        }
        p = v;
    }
}

void kw_log_msg(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    struct timeval tv;
    char line[2048];

    if (kw_log_level() < level || log_fp == NULL)
        return;
    gettimeofday(&tv, NULL);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kw_redact_pins(line);
    pthread_mutex_lock(&log_lock);
    fprintf(log_fp, "keyward[%ld.%03ld %d %s] %s\n", (long)tv.tv_sec, (long)(tv.tv_usec / 1000),
            (int)getpid(), component, line);
    pthread_mutex_unlock(&log_lock);
}
