/* Item 8: an ignored and blocked SIGSYS is inherited across execve. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        signal(SIGSYS, SIG_IGN);
        sigset_t sys;
        sigemptyset(&sys);
        sigaddset(&sys, SIGSYS);
        sigprocmask(SIG_BLOCK, &sys, NULL);
        char *args[] = {argv[0], "child", NULL};
        execv("/proc/self/exe", args);
        return 1;
    }
    struct sigaction old;
    sigaction(SIGSYS, NULL, &old);
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    printf("after exec: ignored=%d blocked=%d\n", old.sa_handler == SIG_IGN,
           sigismember(&mask, SIGSYS));
    fflush(stdout);
    signal(SIGSYS, SIG_DFL);
    raise(SIGSYS); /* blocked: stays pending, the process lives */
    printf("alive=1\n");
    return 0;
}
