/* Item 17: a makecontext coroutine on a 6 KiB stack makes syscalls; the
 * memory just below its stack holds a canary that must survive. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define SIZE (6 * 1024)
#define CANARY 512
static unsigned char area[CANARY + SIZE] __attribute__((aligned(64)));
static ucontext_t main_ctx, co_ctx;
static volatile int steps;

static void coroutine(void) {
    for (int i = 0; i < 5; i++) {
        write(-1, "x", 1); /* EBADF: any syscall will do */
        syscall(SYS_getppid);
        steps++;
        swapcontext(&co_ctx, &main_ctx);
    }
}

int main(void) {
    memset(area, 0xa5, CANARY);
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = area + CANARY;
    co_ctx.uc_stack.ss_size = SIZE;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, coroutine, 0);
    for (int i = 0; i < 5; i++)
        swapcontext(&main_ctx, &co_ctx);
    int intact = 1;
    for (int i = 0; i < CANARY; i++)
        intact &= area[i] == 0xa5;
    printf("steps=%d canary_intact=%d marks=5\n", (int)steps, intact);
    return 0;
}
