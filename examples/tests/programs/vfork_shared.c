/* Item 9: vfork and clone(CLONE_VM|CLONE_VFORK) share memory with a
 * suspended parent: the classic report of exec failure through memory. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int exec_errno, child_ran, parent_saw_running;

static int child(void *arg) {
    (void)arg;
    child_ran = 1;
    char *args[] = {"nonexistent", NULL};
    execv("/nonexistent/program", args);
    exec_errno = errno;
    return 127;
}

int main(void) {
    pid_t pid = vfork();
    if (pid == 0) {
        child_ran = 1;
        char *args[] = {"nonexistent", NULL};
        execv("/nonexistent/program", args);
        exec_errno = errno;
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("vfork: exec_errno=%d child_ran=%d status=%d\n", exec_errno, child_ran,
           WEXITSTATUS(status));
    exec_errno = child_ran = 0;
    char *stack = malloc(64 * 1024);
    pid = clone(child, stack + 64 * 1024, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    /* CLONE_VFORK: the child has exec'd or exited by now. */
    parent_saw_running = child_ran;
    waitpid(pid, &status, 0);
    printf("clone_vfork: exec_errno=%d child_ran_before_parent=%d status=%d\n", exec_errno,
           parent_saw_running, WEXITSTATUS(status));
    return 0;
}
