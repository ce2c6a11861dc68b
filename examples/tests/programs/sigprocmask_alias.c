/* Item 6: rt_sigprocmask(how, &s, &s): the new set is read before the
 * old one is written. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long bit(int sig) { return 1UL << (sig - 1); }

int main(void) {
    unsigned long s = bit(SIGUSR1), now = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &s, &s, 8);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &now, 8);
    printf("block: old_has_usr1=%d now_blocks_usr1=%d\n", (s & bit(SIGUSR1)) != 0,
           (now & bit(SIGUSR1)) != 0);
    s = bit(SIGUSR2);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &s, &s, 8);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &now, 8);
    printf("setmask: old_has_usr1=%d now_usr1=%d now_usr2=%d\n", (s & bit(SIGUSR1)) != 0,
           (now & bit(SIGUSR1)) != 0, (now & bit(SIGUSR2)) != 0);
    s = bit(SIGUSR2);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &s, &s, 8);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &now, 8);
    printf("unblock: old_has_usr2=%d now_usr2=%d\n", (s & bit(SIGUSR2)) != 0,
           (now & bit(SIGUSR2)) != 0);
    return 0;
}
