/* Item 1: one thread dlopens a library with TLS, lets a second thread
 * touch that TLS (so the second thread owns a block of it), and dlcloses
 * it; the second thread meanwhile mallocs and trims its arena (syscalls
 * made under the arena lock) and makes marker syscalls. After each
 * dlclose, the second thread's next TLS lookup frees its old block. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOADS 150
static const char *lib;
static int (*volatile shared_touch)(int);
static volatile int round_no, acked, finished;

static void *loader(void *arg) {
    (void)arg;
    long loaded = 0;
    for (int i = 1; i <= LOADS; i++) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            break;
        int (*touch)(int) = (int (*)(int))dlsym(h, "touch");
        if (touch && touch(i) == (char)i)
            loaded++;
        shared_touch = touch;
        __atomic_store_n(&round_no, i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&acked, __ATOMIC_ACQUIRE) != i)
            ;
        shared_touch = NULL;
        dlclose(h);
    }
    __atomic_store_n(&finished, 1, __ATOMIC_RELEASE);
    return (void *)loaded;
}

static void *allocator(void *arg) {
    (void)arg;
    long marks = 0;
    void *blocks[256];
    while (!__atomic_load_n(&finished, __ATOMIC_ACQUIRE)) {
        int r = __atomic_load_n(&round_no, __ATOMIC_ACQUIRE);
        if (r != acked) {
            shared_touch(r);
            __atomic_store_n(&acked, r, __ATOMIC_RELEASE);
        }
        for (int i = 0; i < 256; i++)
            blocks[i] = malloc(4096 + (i % 7) * 512);
        for (int i = 0; i < 256; i++)
            free(blocks[i]);
        malloc_trim(0);
        syscall(SYS_getppid);
        marks++;
    }
    printf("allocator_marks_positive=%d\n", marks > 0);
    return (void *)marks;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    lib = argv[1];
    pthread_t a, b;
    void *loaded, *marks;
    pthread_create(&b, NULL, allocator, NULL);
    pthread_create(&a, NULL, loader, NULL);
    pthread_join(a, &loaded);
    pthread_join(b, &marks);
    printf("loaded=%ld\n", (long)loaded);
    /* How many varies from run to run: not part of the compared output. */
    fprintf(stderr, "marks=%ld\n", (long)marks);
    return 0;
}
