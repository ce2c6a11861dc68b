/* Item 7: a SIGSYS sent with kill, tgkill or sigqueue follows the
 * program's disposition and mask: ignored, it does nothing; blocked, it
 * stays pending. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    pid_t pid = getpid();
    signal(SIGSYS, SIG_IGN);
    kill(pid, SIGSYS);
    syscall(SYS_tgkill, pid, syscall(SYS_gettid), SIGSYS);
    union sigval v = {.sival_int = 1};
    sigqueue(pid, SIGSYS, v);
    printf("ignored: survived=1\n");
    fflush(stdout);
    signal(SIGSYS, SIG_DFL);
    sigset_t sys, pending;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    sigprocmask(SIG_BLOCK, &sys, NULL);
    kill(pid, SIGSYS);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGSYS);
    siginfo_t info;
    struct timespec zero = {0, 0};
    int got = sigtimedwait(&sys, &info, &zero);
    printf("blocked: pending=%d taken=%d code_is_user=%d\n", was_pending, got,
           info.si_code == SI_USER);
    return 0;
}
