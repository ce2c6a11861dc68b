/* Item 21: a clone(CLONE_VM) child without CLONE_SETTLS (sharing the
 * parent's TLS); both make many marker getppid calls at once. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EACH 20000

static long raw_getppid(void) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_getppid) : "rcx", "r11", "memory");
    return ret;
}

static int child(void *arg) {
    (void)arg;
    for (int i = 0; i < EACH; i++)
        raw_getppid();
    return 0;
}

int main(void) {
    char *stack = malloc(256 * 1024);
    pid_t pid = clone(child, stack + 256 * 1024, CLONE_VM | SIGCHLD, NULL);
    if (pid < 0)
        return 1;
    for (int i = 0; i < EACH; i++)
        raw_getppid();
    int status;
    waitpid(pid, &status, 0);
    printf("child_status=%d marks=%d\n", status, 2 * EACH);
    return 0;
}
