/* Makes syscalls while the tool's output pipe has no reader: nothing may
 * reach the program (no SIGPIPE delivered, none left pending). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    sigset_t pipe_only, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe_only, NULL);
    for (int i = 0; i < 50; i++)
        syscall(SYS_getppid);
    sigpending(&pending);
    printf("pending_while_blocked=%d\n", sigismember(&pending, SIGPIPE));
    sigprocmask(SIG_UNBLOCK, &pipe_only, NULL);
    for (int i = 0; i < 50; i++)
        syscall(SYS_getppid);
    printf("alive=1\n");
    return 0;
}
