/* Item 17: backtrace() from a SIGSEGV handler reaches main (built with
 * -rdynamic so dladdr names it). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf back;
static volatile int main_found, frames;

static void on_segv(int sig) {
    (void)sig;
    void *pcs[64];
    int n = backtrace(pcs, 64);
    frames = n;
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (dladdr(pcs[i], &info) && info.dli_sname && strcmp(info.dli_sname, "main") == 0)
            main_found = 1;
    }
    siglongjmp(back, 1);
}

__attribute__((noinline)) void fault(volatile int *p) { *p = 1; }

int main(void) {
    signal(SIGSEGV, on_segv);
    if (sigsetjmp(back, 1) == 0)
        fault(NULL);
    printf("main_found=%d\n", main_found);
    return 0;
}
