/* Item 2: one thread re-installs a SIGUSR1 handler in a loop while
 * another sends SIGUSR1 to it with tgkill. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSTALLS 20000
static volatile pid_t writer_tid;
static volatile int done;
static volatile sig_atomic_t handled;

static void on_usr1(int sig) { (void)sig; handled++; }

static void *writer(void *arg) {
    (void)arg;
    writer_tid = syscall(SYS_gettid);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    long installs = 0;
    for (int i = 0; i < INSTALLS; i++)
        installs += sigaction(SIGUSR1, &sa, NULL) == 0;
    done = 1;
    return (void *)installs;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    while (!writer_tid)
        ;
    pid_t pid = getpid();
    long sent = 0;
    while (!done && sent < 200000) {
        syscall(SYS_tgkill, pid, writer_tid, SIGUSR1);
        sent++;
    }
    void *installs;
    pthread_join(t, &installs);
    printf("installs=%ld\n", (long)installs);
    return 0;
}
