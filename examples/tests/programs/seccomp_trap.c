/* Item 12: the program's own seccomp filter traps getppid (RET_TRAP);
 * its SIGSYS handler makes syscalls (getpid, write) and answers 777. */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define TRAPS 10
static int sink[2];
static volatile int trapped, codes_ok, handler_getpid;

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    ucontext_t *uc = ctx;
    trapped++;
    if (info->si_code == 1 /* SYS_SECCOMP */ && info->si_syscall == SYS_getppid &&
        info->si_arch == AUDIT_ARCH_X86_64)
        codes_ok++;
    syscall(SYS_getpid);
    handler_getpid++;
    write(sink[1], "t", 1);
    uc->uc_mcontext.gregs[REG_RAX] = 777;
}

int main(void) {
    pipe(sink);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof *code, .filter = code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 1;
    long all_777 = 1;
    for (int i = 0; i < TRAPS; i++)
        all_777 &= syscall(SYS_getppid) == 777;
    char buf[64];
    long got = read(sink[0], buf, sizeof buf);
    printf("trapped=%d codes_ok=%d all_777=%ld handler_writes=%ld handler_getpid=%d\n", trapped,
           codes_ok, all_777, got, handler_getpid);
    return 0;
}
