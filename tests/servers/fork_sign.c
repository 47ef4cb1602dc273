/* SPDX-License-Identifier: Apache-2.0 */
/* fork-sign KEY PUBKEY [CHILDREN [COUNT [load-only]]]
 *
 * What a pre-forking server does: the parent loads the token key (and signs with it, so the
 * module is initialised, a session open and logged in), then forks. Every child signs COUNT
 * times; every signature is verified with the default provider. A signature operation that the
 * parent had begun before fork is finished in each child (it must either give a valid signature
 * or fail cleanly) and in the parent (it must succeed). After the children exit the parent must
 * still sign: children must not close or finalise what the parent uses. Exit 0 when all holds.
 * "load-only": the parent only loads the key before fork, as nginx's master does: everything
 * the token is asked afterwards (mechanisms, sessions, login) is first asked in a child. */
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sign_common.h"

static const char half_msg[] = "begun before fork";

static int sign_many(EVP_PKEY *key, EVP_PKEY *pub, const char *who, int count)
{
    unsigned char sig[KWS_SIG_MAX];
    char msg[96];
    int i;

    ERR_clear_error();
    for (i = 0; i < count; i++) {
        size_t len = sizeof(sig);

        snprintf(msg, sizeof(msg), "%s message %d", who, i);
        if (!kws_sign(key, msg, sig, &len)) {
            fprintf(stderr, "fork-sign: %s: signature %d failed\n", who, i);
            ERR_print_errors_fp(stderr);
            return 0;
        }
        /* A signature that succeeded leaves the queue as it found it: a server takes any error
         * there for its own (nginx's SSL_get_error() fails the handshake). The first signature
         * in a "load-only" child is where the module is initialised. */
        if (ERR_peek_error() != 0) {
            fprintf(stderr, "fork-sign: %s: signature %d left errors on the OpenSSL queue:\n", who,
                    i);
            ERR_print_errors_fp(stderr);
            return 0;
        }
        if (!kws_verify(pub, msg, sig, len)) {
            fprintf(stderr, "fork-sign: %s: signature %d does not verify\n", who, i);
            return 0;
        }
    }
    return 1;
}

/* Finish a digest-sign begun before fork. 1: valid signature, 0: failed cleanly, -1: a
 * signature came out that does not verify. */
static int finish_half(EVP_MD_CTX *half, EVP_PKEY *pub, const char *who)
{
    unsigned char sig[KWS_SIG_MAX];
    size_t len = sizeof(sig);

    if (EVP_DigestSignFinal(half, sig, &len) != 1) {
        fprintf(stderr, "fork-sign: %s: operation begun before fork refused (clean):\n", who);
        ERR_print_errors_fp(stderr);
        return 0;
    }
    if (!kws_verify(pub, half_msg, sig, len)) {
        fprintf(stderr, "fork-sign: %s: operation begun before fork gave a bad signature\n", who);
        return -1;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int children = argc > 3 ? atoi(argv[3]) : 8;
    int count = argc > 4 ? atoi(argv[4]) : 100;
    EVP_PKEY *key, *pub;
    EVP_MD_CTX *half = NULL;
    int load_only = argc > 5 && strcmp(argv[5], "load-only") == 0;
    int i, bad = 0, half_ok = 0, half_refused = 0;
    pid_t pids[64];

    if (argc < 3 || children < 1 || children > 64 || count < 1) {
        fprintf(stderr, "usage: fork-sign KEY PUBKEY [CHILDREN(1-64) [COUNT [load-only]]]\n");
        return 2;
    }
    key = kws_load_key(argv[1]);
    pub = kws_load_pub(argv[2]);
    if (key == NULL || pub == NULL) {
        fprintf(stderr, "fork-sign: cannot load %s\n", key == NULL ? argv[1] : argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    if (!load_only && !sign_many(key, pub, "parent before fork", 3))
        return 1;

    /* EdDSA has no streaming sign: there is no half-done operation to carry over. */
    if (!load_only && kws_md_for(key) != NULL) {
        half = EVP_MD_CTX_new();
        if (half == NULL ||
            EVP_DigestSignInit_ex(half, NULL, kws_md_for(key), NULL, NULL, key, NULL) != 1 ||
            EVP_DigestSignUpdate(half, half_msg, strlen(half_msg)) != 1) {
            fprintf(stderr, "fork-sign: cannot begin a streaming signature\n");
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }

    fflush(NULL);
    for (i = 0; i < children; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork-sign: fork");
            return 1;
        }
        if (pids[i] == 0) {
            char who[32];
            int rc = 0;

            snprintf(who, sizeof(who), "child %d", i);
            if (half != NULL) {
                int r = finish_half(half, pub, who);

                if (r < 0)
                    rc = 1;
                else
                    rc = r ? 0 : 10; /* 10: refused cleanly, still a pass */
            }
            if (!sign_many(key, pub, who, count))
                rc = 1;
            EVP_MD_CTX_free(half);
            EVP_PKEY_free(key);
            EVP_PKEY_free(pub);
            /* A normal exit: the provider's teardown runs in the child too. */
            exit(rc);
        }
    }

    if (half != NULL && finish_half(half, pub, "parent") != 1) {
        fprintf(stderr, "fork-sign: the parent could not finish its own operation\n");
        bad++;
    }
    for (i = 0; i < children; i++) {
        int st;

        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (WIFSIGNALED(st)) {
            fprintf(stderr, "fork-sign: child %d killed by signal %d\n", i, WTERMSIG(st));
            bad++;
        } else if (WEXITSTATUS(st) == 10) {
            half_refused++;
        } else if (WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork-sign: child %d exit %d\n", i, WEXITSTATUS(st));
            bad++;
        } else {
            half_ok++;
        }
    }
    if (!sign_many(key, pub, "parent after children", count))
        bad++;

    printf("fork-sign: %s%d children x %d signatures, %d failed; operation begun before fork: "
           "%d finished in the child, %d refused cleanly%s\n",
           load_only ? "parent only loaded the key; " : "", children, count, bad,
           half != NULL ? half_ok : 0, half != NULL ? half_refused : 0,
           half != NULL ? "" : " (none begun)");
    EVP_MD_CTX_free(half);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    return bad == 0 ? 0 : 1;
}
