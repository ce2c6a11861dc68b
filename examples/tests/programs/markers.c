/* argv[1] getppid calls, then prints how many. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    for (int i = 0; i < n; i++)
        syscall(SYS_getppid);
    printf("marks=%d\n", n);
    return 0;
}
