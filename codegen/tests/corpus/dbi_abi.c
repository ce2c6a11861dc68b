/* ABI corners for the translator (tests/dbi_abi.rs): 32-bit syscalls by
 * int 0x80 from 64-bit code, and code that moves its fs base. Each runs
 * natively and translated with the same result. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* i386 getpid is 20 (x86-64's 20 is writev) and i386 getppid is 64
 * (x86-64's 64 is semget): both answered right only with the i386 table. */
static long int80(long nr) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr) : "memory");
    return r;
}

long int80_pids(void) {
    long pid = int80(20), ppid = int80(64);
    return (pid == getpid()) * 10 + (ppid == getppid());
}

/* Moves fs to a fresh thread control block holding only its self
 * pointers and the stack guard (no TLS: what runs there touches none),
 * on a page with nothing mapped below it,
 * computes (an indirect call, a syscall) and moves fs back. */
__attribute__((noinline)) static long work(long x) {
    for (int i = 0; i < 1000; i++)
        x = x * 31 + i;
    return x;
}
static long (*volatile work_ptr)(long) = work;


long fs_switch(void) {
    unsigned long fs = 0, seen = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
    /* Nothing below it is mapped: a TLS access there faults. */
    unsigned char *area = mmap(0, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(area + 4096, 4096, PROT_READ | PROT_WRITE);
    unsigned long moved = (unsigned long)area + 4096;
    /* tcbhead_t: tcb (self) at 0, self at 16, the stack guard at 0x28. */
    ((unsigned long *)moved)[0] = moved;
    ((unsigned long *)moved)[2] = moved;
    ((unsigned long *)moved)[5] = ((unsigned long *)fs)[5];
    long r = syscall(SYS_arch_prctl, ARCH_SET_FS, moved);
    long x = work_ptr(7);
    __asm__ volatile("mov %%fs:0, %0" : "=r"(seen));
    /* A based operand, as initial-exec TLS accesses are: fs:[reg]. */
    unsigned long self = 0, offset = 16;
    __asm__ volatile("mov %%fs:(%1), %0" : "=r"(self) : "r"(offset));
    long pid;
    __asm__ volatile("syscall" : "=a"(pid) : "a"(SYS_getpid) : "rcx", "r11", "memory");
    syscall(SYS_arch_prctl, ARCH_SET_FS, fs);
    munmap(area, 8192);
    return (r == 0) * 1000 + (seen == moved && self == moved) * 100 + (pid == getpid()) * 10 + (x != 0);
}
