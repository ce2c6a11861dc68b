/* An SA_ONSTACK handler on an alternate stack makes syscalls. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ALT_SIZE (256 * 1024)
static char *alt;
static volatile sig_atomic_t on_alt, marks;

static void on_usr1(int sig) {
    char here;
    (void)sig;
    if (&here >= alt && &here < alt + ALT_SIZE)
        on_alt++;
    for (int i = 0; i < 5; i++) {
        syscall(SYS_getppid);
        marks++;
    }
}

int main(void) {
    alt = malloc(ALT_SIZE);
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return 2;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 3; i++)
        raise(SIGUSR1);
    printf("on_alt=%d marks=%d\n", (int)on_alt, (int)marks);
    return 0;
}
