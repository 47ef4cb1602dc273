/* SPDX-License-Identifier: Apache-2.0 */
/* fork-thread-sign KEY PUBKEY [THREADS [CHILDREN [CHILD-TIMEOUT-S]]]
 *
 * A threaded parent that forks (a server that spawns helpers while its workers sign): THREADS
 * threads sign with the token key in a loop while the main thread forks CHILDREN children, one
 * after another at varying moments. Each child signs three times with the same key, verifies
 * (default provider) and exits normally. A fork can land while a parent thread holds one of
 * keyward's locks (module, token, registry); the child has only the forking thread, so without
 * fork handlers that lock stays held in it for good and the child hangs. A child that has not
 * exited after CHILD-TIMEOUT-S seconds is counted as hung, and killed. Run it with C_Sign
 * delayed (the fault shim) so forks also land while sessions are out in the middle of an
 * operation. Exit 0 when every child signed and exited, no thread signature failed, and the
 * parent still signs afterwards. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sign_common.h"

struct job {
    EVP_PKEY *key, *pub;
    int id;
};

static atomic_int stop, thread_signed, thread_failed;
static pid_t parent_pid;

/* LeakSanitizer asks this at exit. A child holds the allocations of the parent's other threads,
 * which nothing in the child can reach any more (those threads and their stacks are not in it):
 * they would be reported as the child's leaks. The parent is checked as usual, and children of
 * a single-threaded parent in fork-sign. */
int __lsan_is_turned_off(void);
__attribute__((visibility("default"))) int __lsan_is_turned_off(void)
{
    return parent_pid != 0 && getpid() != parent_pid;
}

static int sign_verify(EVP_PKEY *key, EVP_PKEY *pub, const char *msg)
{
    unsigned char sig[KWS_SIG_MAX];
    size_t len = sizeof(sig);

    return kws_sign(key, msg, sig, &len) && kws_verify(pub, msg, sig, len);
}

static void *worker(void *arg)
{
    struct job *j = arg;
    char msg[96];

    for (int i = 0; !atomic_load(&stop); i++) {
        snprintf(msg, sizeof(msg), "thread %d message %d", j->id, i);
        if (!sign_verify(j->key, j->pub, msg)) {
            if (atomic_fetch_add(&thread_failed, 1) < 3) {
                fprintf(stderr, "fork-thread-sign: thread %d signature %d failed\n", j->id, i);
                ERR_print_errors_fp(stderr);
            }
            ERR_clear_error();
            continue;
        }
        atomic_fetch_add(&thread_signed, 1);
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* 0: exited 0; 1: exited otherwise or killed by a signal; 2: still running at the deadline
 * (then killed). */
static int wait_child(pid_t pid, int timeout_s, int *status)
{
    for (long waited = 0; waited < timeout_s * 1000L; waited += 20) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return WIFEXITED(*status) && WEXITSTATUS(*status) == 0 ? 0 : 1;
        if (r < 0 && errno != EINTR)
            return 1;
        sleep_ms(20);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
    return 2;
}

int main(int argc, char **argv)
{
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    int children = argc > 4 ? atoi(argv[4]) : 50;
    int timeout_s = argc > 5 ? atoi(argv[5]) : 20;
    struct job jobs[64];
    pthread_t tids[64];
    EVP_PKEY *key, *pub;
    int ok = 0, hung = 0, failed = 0, bad = 0;

    if (argc < 3 || threads < 1 || threads > 64 || children < 1 || timeout_s < 1) {
        fprintf(stderr, "usage: fork-thread-sign KEY PUBKEY [THREADS(1-64) [CHILDREN "
                        "[CHILD-TIMEOUT-S]]]\n");
        return 2;
    }
    parent_pid = getpid();
    key = kws_load_key(argv[1]);
    pub = kws_load_pub(argv[2]);
    if (key == NULL || pub == NULL) {
        fprintf(stderr, "fork-thread-sign: cannot load %s\n", key == NULL ? argv[1] : argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* The module initialised, a session logged in: what the children inherit. */
    if (!sign_verify(key, pub, "parent before threads")) {
        fprintf(stderr, "fork-thread-sign: the parent cannot sign\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct job){key, pub, i};
        if (pthread_create(&tids[i], NULL, worker, &jobs[i]) != 0) {
            fprintf(stderr, "fork-thread-sign: pthread_create failed\n");
            return 1;
        }
    }
    /* Let every thread reach its loop before the first fork. */
    while (atomic_load(&thread_signed) + atomic_load(&thread_failed) < threads)
        sleep_ms(5);

    fflush(NULL);
    srand((unsigned)getpid());
    for (int i = 0; i < children; i++) {
        int st = 0, r;
        pid_t pid;

        /* Vary the moment relative to the threads' signatures. */
        sleep_ms(rand() % 15);
        pid = fork();
        if (pid < 0) {
            perror("fork-thread-sign: fork");
            bad++;
            break;
        }
        if (pid == 0) {
            char msg[64];
            int rc = 0;

            for (int n = 0; n < 3 && rc == 0; n++) {
                snprintf(msg, sizeof(msg), "child %d message %d", i, n);
                if (!sign_verify(key, pub, msg)) {
                    fprintf(stderr, "fork-thread-sign: child %d signature %d failed\n", i, n);
                    ERR_print_errors_fp(stderr);
                    rc = 1;
                }
            }
            /* A normal exit: keyward's exit handler and the provider's teardown run here. */
            exit(rc);
        }
        r = wait_child(pid, timeout_s, &st);
        if (r == 0) {
            ok++;
        } else if (r == 2) {
            hung++;
            fprintf(stderr, "fork-thread-sign: child %d (pid %d) hung: not done after %d s\n", i,
                    (int)pid, timeout_s);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                fprintf(stderr, "fork-thread-sign: child %d killed by signal %d\n", i,
                        WTERMSIG(st));
            else
                fprintf(stderr, "fork-thread-sign: child %d exit %d\n", i, WEXITSTATUS(st));
        }
        /* Two hung children prove the deadlock; the rest would each cost the whole timeout. */
        if (hung >= 2 && i + 1 < children) {
            fprintf(stderr, "fork-thread-sign: stopping after %d hung children\n", hung);
            break;
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    if (!sign_verify(key, pub, "parent after children")) {
        fprintf(stderr, "fork-thread-sign: the parent cannot sign after the children\n");
        ERR_print_errors_fp(stderr);
        bad++;
    }
    printf("fork-thread-sign: %d threads signed %d times (%d failed) while %d children forked: "
           "%d signed and exited, %d failed, %d hung\n",
           threads, atomic_load(&thread_signed), atomic_load(&thread_failed), ok + failed + hung,
           ok, failed, hung);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    return ok == children && bad == 0 && atomic_load(&thread_failed) == 0 ? 0 : 1;
}
