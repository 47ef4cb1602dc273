/* SPDX-License-Identifier: Apache-2.0 */
#include "kw_log.h"

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
        FILE *fp = fopen(path, "ae");
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

void kw_log_msg(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    struct timeval tv;

    if (kw_log_level() < level || log_fp == NULL)
        return;
    gettimeofday(&tv, NULL);
    pthread_mutex_lock(&log_lock);
    fprintf(log_fp, "keyward[%ld.%03ld %d %s] ", (long)tv.tv_sec, (long)(tv.tv_usec / 1000),
            (int)getpid(), component);
    va_start(ap, fmt);
    vfprintf(log_fp, fmt, ap);
    va_end(ap);
    fputc('\n', log_fp);
    pthread_mutex_unlock(&log_lock);
}
