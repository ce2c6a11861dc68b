/* Item 11: a program that uses Syscall User Dispatch itself (as Wine
 * does): its own selector byte, its own region, its SIGSYS handler
 * emulating a syscall, checking the siginfo the kernel gives; exclusive
 * mode, then inclusive mode where the kernel has it. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
#define DISPATCH_OFF 0
#define DISPATCH_EXCLUSIVE 1
#define DISPATCH_INCLUSIVE 2
#define SEL_ALLOW 0
#define SEL_BLOCK 1
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif

static volatile char selector = SEL_ALLOW;
static volatile int dispatched, codes_ok;
static volatile long marks;

/* The program's one syscall instruction that its configuration can
 * dispatch: `my_syscall(nr)`; `after_syscall` is the address the kernel
 * reports as si_call_addr. */
extern long my_syscall(long nr);
extern char gadget_start[], after_syscall[], gadget_end[];
__asm__(".text\n.globl my_syscall\nmy_syscall:\ngadget_start:\n"
        "mov %rdi, %rax\nsyscall\nafter_syscall:\nret\ngadget_end:\n");

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    ucontext_t *uc = ctx;
    dispatched++;
    if (info->si_code == SYS_USER_DISPATCH && info->si_syscall == SYS_getppid &&
        info->si_arch == AUDIT_ARCH_X86_64 && info->si_call_addr == (void *)after_syscall)
        codes_ok++;
    uc->uc_mcontext.gregs[REG_RAX] = 4242; /* the emulated getppid */
}

static long marker(void) {
    marks++;
    return my_syscall(SYS_getppid);
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    /* Exclusive: everything outside [start, start+len) is dispatched when
     * the selector blocks; the region is everything above the gadget, so
     * libc (and the handler's return) runs undisturbed. */
    uintptr_t start = (uintptr_t)gadget_end;
    uintptr_t len = 0x7ffffffff000UL - start;
    int r = prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_EXCLUSIVE, start, len, &selector);
    printf("exclusive: prctl=%d\n", r);
    if (r != 0)
        return 1;
    marks++; /* the one getppid outside the markers */
    long ppid = getppid();
    long real = marker();
    selector = SEL_BLOCK;
    long emulated = marker();
    long emulated2 = marker();
    selector = SEL_ALLOW;
    long real2 = marker();
    prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_OFF, 0, 0, 0);
    printf("exclusive: real_ok=%d emulated=%ld,%ld real_again_ok=%d dispatched=%d codes_ok=%d\n",
           real == ppid, emulated, emulated2, real2 == ppid, dispatched, codes_ok);
    /* Inclusive: only [start, start+len) is dispatched. */
    dispatched = codes_ok = 0;
    r = prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_INCLUSIVE, (uintptr_t)gadget_start,
              (uintptr_t)(gadget_end - gadget_start), &selector);
    if (r != 0) {
        printf("inclusive: prctl=%d errno=%s\n", r, errno == EINVAL ? "EINVAL" : "other");
    } else {
        selector = SEL_BLOCK;
        long emulated3 = marker();
        long pid_ok = syscall(SYS_getpid) == getpid(); /* outside: allowed */
        selector = SEL_ALLOW;
        prctl(PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_OFF, 0, 0, 0);
        printf("inclusive: emulated=%ld outside_allowed=%ld dispatched=%d codes_ok=%d\n",
               emulated3, pid_ok, dispatched, codes_ok);
    }
    printf("marks=%ld\n", marks);
    return 0;
}
