/* Item 17: a SIGSEGV handler on a 7 KiB alternate stack writes a line and
 * siglongjmps out, many times; a canary below the stack and the heap must
 * survive. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE (7 * 1024)
#define CANARY 1024
static unsigned char *area;
static sigjmp_buf back;
static int sink[2];

static void on_segv(int sig) {
    (void)sig;
    write(sink[1], "s", 1);
    siglongjmp(back, 1);
}

int main(void) {
    pipe(sink);
    area = malloc(CANARY + SIZE);
    memset(area, 0x5a, CANARY);
    stack_t ss = {.ss_sp = area + CANARY, .ss_size = SIZE, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    int faults = 0;
    for (int i = 0; i < 20; i++) {
        if (sigsetjmp(back, 1) == 0)
            *(volatile int *)16 = i;
        else
            faults++;
        free(malloc(100 + i)); /* the heap must still be sane */
    }
    int intact = 1;
    for (int i = 0; i < CANARY; i++)
        intact &= area[i] == 0x5a;
    char buf[64];
    printf("faults=%d canary_intact=%d writes=%zd\n", faults, intact, read(sink[0], buf, sizeof buf));
    return 0;
}
