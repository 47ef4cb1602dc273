/* SPDX-License-Identifier: Apache-2.0 */
/* The two clocks of the signing loops (raw_sign.c, sign_loop.c): wall time, and CPU seconds
 * (user + system) of the whole process, less disturbed by other load on a busy machine. */
#ifndef KW_BENCH_CLOCK_H
#define KW_BENCH_CLOCK_H

#include <sys/resource.h>
#include <time.h>

static inline double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
