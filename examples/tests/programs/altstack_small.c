/* Item 5: an 8 KiB alternate stack with a PROT_NONE guard page below it;
 * its SA_ONSTACK handler calls write(). Whatever catches that write must
 * not use the interrupted stack beyond what the kernel would. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define SIZE (8 * 1024)
static int sink[2];
static volatile sig_atomic_t handled;

static void on_usr1(int sig) {
    (void)sig;
    write(sink[1], "x", 1);
    handled++;
}

int main(void) {
    pipe(sink);
    char *region = mmap(NULL, PAGE + SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(region, PAGE, PROT_NONE);
    stack_t ss = {.ss_sp = region + PAGE, .ss_size = SIZE, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 3; i++)
        raise(SIGUSR1);
    printf("handled=%d\n", (int)handled);
    return 0;
}
