/* SA_ONSTACK handlers on small (8 KiB) alternate stacks, on several
 * threads at once, each calling write() and making marker syscalls. A
 * PROT_NONE page below each stack turns any overuse (by the handler or by
 * whatever catches its syscalls) into a crash. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 4
#define RAISES 3
#define ALT_SIZE (8 * 1024)
#define PAGE 4096

static int sink[2];
static __thread char *alt;
static volatile sig_atomic_t on_alt, marks;

static void on_usr1(int sig) {
    char here;
    (void)sig;
    if (&here >= alt && &here < alt + ALT_SIZE)
        __atomic_fetch_add(&on_alt, 1, __ATOMIC_RELAXED);
    static const char msg[] = "handler\n";
    write(sink[1], msg, sizeof msg - 1);
    for (int i = 0; i < 5; i++) {
        syscall(SYS_getppid);
        __atomic_fetch_add(&marks, 1, __ATOMIC_RELAXED);
    }
}

static void *worker(void *arg) {
    (void)arg;
    char *region = mmap(NULL, PAGE + ALT_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || mprotect(region, PAGE, PROT_NONE) != 0)
        return (void *)1;
    alt = region + PAGE;
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return (void *)2;
    for (int i = 0; i < RAISES; i++)
        pthread_kill(pthread_self(), SIGUSR1);
    return NULL;
}

int main(void) {
    if (pipe(sink) != 0)
        return 2;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed += r != NULL;
    }
    char buf[4096];
    ssize_t n = read(sink[0], buf, sizeof buf);
    printf("on_alt=%d marks=%d failed=%d handler_bytes=%zd\n", (int)on_alt, (int)marks,
           failed, n);
    return 0;
}
