/* Item 15: an SA_SIGINFO handler sees the siginfo and ucontext the kernel
 * gives: sigqueue's code, value and sender, the mask in effect during the
 * handler, the interrupted mask restored after, the alternate-stack
 * fields, and a usable FPU state pointer. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <ucontext.h>
#include <unistd.h>

static volatile int seen_code, seen_value, seen_pid_ok, mask_has_usr2, mask_has_usr1;
static volatile int stack_disabled, fpregs_ok, blocked_in_handler;

static void on_usr1(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = ctx;
    (void)sig;
    seen_code = info->si_code;
    seen_value = info->si_value.sival_int;
    seen_pid_ok = info->si_pid == getpid();
    /* uc_sigmask is the mask to restore: the interrupted one. */
    mask_has_usr2 = sigismember(&uc->uc_sigmask, SIGUSR2);
    mask_has_usr1 = sigismember(&uc->uc_sigmask, SIGUSR1);
    stack_disabled = (uc->uc_stack.ss_flags & SS_DISABLE) != 0;
    fpregs_ok = uc->uc_mcontext.fpregs != NULL && uc->uc_mcontext.fpregs->mxcsr != 0;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    blocked_in_handler = sigismember(&now, SIGUSR1) && sigismember(&now, SIGTERM);
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    union sigval v = {.sival_int = 1234};
    sigqueue(getpid(), SIGUSR1, v);
    sigset_t after;
    sigprocmask(SIG_BLOCK, NULL, &after);
    printf("code_is_queue=%d value=%d pid_ok=%d uc_mask_usr2=%d uc_mask_usr1=%d "
           "stack_disabled=%d fpregs_ok=%d blocked_in_handler=%d restored=%d\n",
           seen_code == SI_QUEUE, seen_value, seen_pid_ok, mask_has_usr2, mask_has_usr1,
           stack_disabled, fpregs_ok, blocked_in_handler,
           sigismember(&after, SIGUSR2) && !sigismember(&after, SIGTERM));
    return 0;
}
