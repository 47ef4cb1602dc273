/* Tests only, asan setup: preloaded after the ASan runtime into programs that are not ours
 * (curl, p11-kit, p11tool), so keyward.so can be checked inside them.
 *
 * Why: a preloaded ASan runtime runs its constructor after those of the program's libraries.
 * libp11-kit's constructor calls newlocale(), whose malloc() is then ASan's first call; ASan
 * starts up there and calls dlerror(), which takes glibc's locale lock that newlocale() already
 * holds. The lock is left broken and the program's next setlocale() waits for ever. Starting
 * ASan with a malloc() of our own before the first newlocale() avoids that. */
#include <dlfcn.h>
#include <locale.h>
#include <stdlib.h>

typedef locale_t (*kwae_newlocale_fn)(int, const char *, locale_t);

/* Exported (the build hides symbols by default): this is the interposer. */
__attribute__((visibility("default"))) locale_t newlocale(int mask, const char *name, locale_t base)
{
    static kwae_newlocale_fn real;

    if (real == NULL) {
        /* volatile: the compiler may not drop the pair, it is the point. */
        void *volatile first = malloc(1);

        free(first);
        real = (kwae_newlocale_fn)dlsym(RTLD_NEXT, "newlocale");
        if (real == NULL)
            abort();
    }
    return real(mask, name, base);
}
