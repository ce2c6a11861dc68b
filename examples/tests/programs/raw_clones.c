/* Children made by raw clone/clone3 with a new stack and no CLONE_SETTLS
 * (they share the parent's TLS): a CLONE_VM process (glibc's clone()), a
 * clone3 CLONE_VM|CLONE_VFORK child (what posix_spawn does) and a clone3
 * thread. Each makes marker syscalls that must be caught. */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (256 * 1024)
static volatile int thread_done, vm_child_done;

static int vm_child(void *arg) {
    (void)arg;
    for (int i = 0; i < 10; i++)
        syscall(SYS_getppid);
    vm_child_done = 1;
    return 0;
}

/* Runs on the new stack of a clone3 child; never returns. */
__attribute__((used, noreturn)) static void clone3_child(long is_thread) {
    for (int i = 0; i < 4; i++)
        syscall(SYS_getppid);
    if (is_thread)
        thread_done = 1;
    syscall(SYS_exit, 0);
    __builtin_unreachable();
}

static long raw_clone3(struct clone_args *args, long is_thread) {
    long ret;
    register long thread_flag asm("r12") = is_thread;
    asm volatile("syscall\n\t"
                 "test %%rax, %%rax\n\t"
                 "jnz 1f\n\t"
                 "mov %%r12, %%rdi\n\t"
                 "call clone3_child\n\t"
                 "1:"
                 : "=a"(ret)
                 : "a"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(thread_flag)
                 : "rcx", "r11", "memory");
    return ret;
}

int main(void) {
    char *stack = malloc(STACK_SIZE);
    pid_t pid = clone(vm_child, stack + STACK_SIZE, CLONE_VM | SIGCHLD, NULL);
    /* The child shares our TLS, selector byte included: spin without
     * syscalls while it runs (a call of ours would put the shared selector
     * on ALLOW for its duration, and the child's calls would pass). */
    while (pid > 0 && !vm_child_done)
        __asm__ volatile("pause");
    if (pid < 0 || waitpid(pid, NULL, 0) != pid)
        return 2;

    char *vfork_stack = malloc(STACK_SIZE);
    struct clone_args vf = {0};
    vf.flags = CLONE_VM | CLONE_VFORK;
    vf.exit_signal = SIGCHLD;
    vf.stack = (uintptr_t)vfork_stack;
    vf.stack_size = STACK_SIZE;
    long child = raw_clone3(&vf, 0);
    if (child <= 0 || waitpid(child, NULL, 0) != child)
        return 3;

    char *thread_stack = malloc(STACK_SIZE);
    struct clone_args th = {0};
    th.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    th.stack = (uintptr_t)thread_stack;
    th.stack_size = STACK_SIZE;
    if (raw_clone3(&th, 1) <= 0)
        return 4;
    while (!thread_done) /* no syscalls: see the first child */
        __asm__ volatile("pause");
    usleep(20000);
    printf("marks=%d\n", 10 + 4 + 4);
    return 0;
}
