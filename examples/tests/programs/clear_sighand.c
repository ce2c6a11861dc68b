/* Item 10: clone3 with CLONE_CLEAR_SIGHAND: the child's handlers are
 * reset to SIG_DFL, and it keeps running. */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

int main(void) {
    signal(SIGUSR1, on_usr1);
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_CLEAR_SIGHAND;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        struct sigaction now;
        sigaction(SIGUSR1, NULL, &now);
        for (int i = 0; i < 5; i++)
            syscall(SYS_getppid);
        _exit(now.sa_handler == SIG_DFL ? 0 : 1);
    }
    if (pid < 0) {
        printf("clone3 failed\n");
        return 1;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child: exited=%d code=%d signal=%d marks=5\n", WIFEXITED(status),
           WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}
