/* A syscall instruction split across a page boundary: 0F is the last byte
 * of one page, 05 the first of the next. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *code = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED)
        return 2;
    /* mov eax, SYS_getpid; syscall; ret */
    unsigned char insns[] = {0xb8, SYS_getpid, 0, 0, 0, 0x0f, 0x05, 0xc3};
    unsigned char *start = code + page - 6;
    memcpy(start, insns, sizeof insns);
    if (mprotect(code, 2 * page, PROT_READ | PROT_EXEC) != 0)
        return 3;
    long (*fn)(void) = (long (*)(void))start;
    long expected = syscall(SYS_getpid);
    int same = 0;
    for (int i = 0; i < 5; i++)
        same += fn() == expected;
    printf("split_calls=5 same=%d getpid_calls=6\n", same);
    return 0;
}
