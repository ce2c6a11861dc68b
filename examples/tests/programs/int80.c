/* Item 16: int 0x80 from a 64-bit program uses the i386 numbers. */
#include <stdio.h>
#include <unistd.h>

static long int80(long nr) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr) : "memory");
    return ret;
}

int main(void) {
    long pid = int80(20);  /* i386 getpid */
    long ppid = int80(64); /* i386 getppid */
    printf("getpid_ok=%d getppid_ok=%d\n", pid == getpid(), ppid == getppid());
    return 0;
}
