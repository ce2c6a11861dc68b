/* Item 18: a seccomp sandbox that refuses a syscall the program does not
 * use (process_vm_readv, with EPERM); then sigaction and a handled signal
 * must work as natively. With an argument: seccomp strict mode, then only
 * write and exit. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_usr1(int sig) { (void)sig; handled++; }

int main(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fflush(stdout);
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
            return 1;
        static const char line[] = "strict: wrote\n";
        syscall(SYS_write, 1, line, sizeof line - 1);
        syscall(SYS_exit, 0);
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof *code, .filter = code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    int r = sigaction(SIGUSR1, &sa, NULL);
    printf("sigaction=%d %s\n", r, r ? strerror(errno) : "ok");
    raise(SIGUSR1);
    printf("handled=%d\n", (int)handled);
    return 0;
}
