/* Five signals to a handler: five rt_sigreturn calls, as strace counts. */
#include <signal.h>
#include <stdio.h>

static volatile sig_atomic_t handled;
static void on_usr1(int sig) { (void)sig; handled++; }

int main(void) {
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 5; i++)
        raise(SIGUSR1);
    printf("handled=%d\n", (int)handled);
    return 0;
}
