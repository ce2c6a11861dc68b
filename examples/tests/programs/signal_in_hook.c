/* A fast interval timer whose handler makes a syscall, while the main
 * thread sits in blocking syscalls (which the engine executes inside its
 * SIGSYS handler): every handler's syscall must still be caught. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t marks;

static void on_alarm(int sig) {
    (void)sig;
    syscall(SYS_getppid);
    marks++;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every = {{0, 300}, {0, 300}};
    setitimer(ITIMER_REAL, &every, NULL);
    for (int i = 0; i < 300; i++) {
        struct timespec ts = {0, 200000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        syscall(SYS_getpid);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("marks=%d\n", (int)marks);
    return 0;
}
