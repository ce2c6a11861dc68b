/* A SIGCHLD handler whose sa_mask blocks every signal (as dash's does),
 * making syscalls: a blocked SIGSYS would kill the process on the first. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t reaped, marks;

static void on_child(int sig) {
    (void)sig;
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0)
        reaped++;
    syscall(SYS_getppid);
    marks++;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_child;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < 3; i++)
        if (fork() == 0)
            _exit(0);
    while (reaped < 3)
        sigsuspend(&old);
    printf("reaped=%d marks=%d\n", (int)reaped, (int)marks);
    return 0;
}
