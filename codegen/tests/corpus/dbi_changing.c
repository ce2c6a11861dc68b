/* Code that changes under the translator: each `long NAME(void)` runs
 * natively and translated (codegen/tests/dbi_invalidation.rs) and must
 * give the same result, which it can only if the translator drops
 * translations of code that was rewritten, remapped or re-protected.
 * Every function leaves the code as it found it, so it can run again. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

typedef long (*fn0)(void);

/* mov eax, imm32; ret */
static void emit_mov_ret(unsigned char *at, int32_t value) {
    at[0] = 0xb8;
    memcpy(at + 1, &value, 4);
    at[5] = 0xc3;
}

/* lea rax, [rdi*2 + imm32]... kept simple: mov eax, imm; add eax, imm2; ret */
static void emit_mov_add_ret(unsigned char *at, int32_t a, int32_t b) {
    at[0] = 0xb8;
    memcpy(at + 1, &a, 4);
    at[5] = 0x05;
    memcpy(at + 6, &b, 4);
    at[10] = 0xc3;
}

static NOINLINE long call_at(void *at) {
    fn0 volatile f = (fn0)at;
    return f();
}

/* A JIT's page, writable and executable: code written, run, rewritten in
 * place (another shape), run; the page unmapped and a new one mapped
 * (usually at the same address) with other code. */
long jit_reuse(void) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *jit = mmap(0, page, PROT_READ | PROT_WRITE | PROT_EXEC,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (jit == MAP_FAILED) return -1;
    long total = 0;
    for (int round = 0; round < 4; round++) {
        if (round % 2) emit_mov_add_ret(jit, round * 100, 7);
        else emit_mov_ret(jit, round + 1);
        total = total * 1000 + call_at(jit);
    }
    munmap(jit, page);
    unsigned char *again = mmap(jit, page, PROT_READ | PROT_WRITE | PROT_EXEC,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (again == MAP_FAILED) return -2;
    emit_mov_ret(again, 42);
    total = total * 1000 + call_at(again);
    munmap(again, page);
    return total;
}

/* W^X: written while read-write, run while read-execute, flipped back. */
long wx_flip(void) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *code = mmap(0, page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) return -1;
    long total = 0;
    for (int round = 0; round < 3; round++) {
        mprotect(code, page, PROT_READ | PROT_WRITE);
        emit_mov_add_ret(code, round * 11, round);
        mprotect(code, page, PROT_READ | PROT_EXEC);
        total = total * 1000 + call_at(code);
    }
    munmap(code, page);
    return total;
}

/* A leaf in this library's (read-only) text that JIT code calls. */
NOINLINE long jit_helper(long x) { return x + 1; }

/* W^X code that calls jit_helper and then adds a different constant each
 * round, at the same return address: the helper's return lands there
 * each time, and the translation it lands in must be the new one (a
 * cached return target into the old code has to go when it does). */
long wx_return_target(void) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *code = mmap(0, page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) return -1;
    long total = 0;
    for (int round = 1; round <= 3; round++) {
        mprotect(code, page, PROT_READ | PROT_WRITE);
        /* push rbx (aligns the stack); mov edi, 5; mov rax, imm64;
         * call rax; add eax, imm32; pop rbx; ret */
        unsigned char *at = code;
        uint64_t helper = (uint64_t)jit_helper;
        int32_t add = round * 10;
        *at++ = 0x53;
        *at++ = 0xbf; *at++ = 5; *at++ = 0; *at++ = 0; *at++ = 0;
        *at++ = 0x48; *at++ = 0xb8; memcpy(at, &helper, 8); at += 8;
        *at++ = 0xff; *at++ = 0xd0;
        *at++ = 0x05; memcpy(at, &add, 4); at += 4;
        *at++ = 0x5b;
        *at++ = 0xc3;
        mprotect(code, page, PROT_READ | PROT_EXEC);
        for (int again = 0; again < 3; again++)
            total = total * 100 + call_at(code);
    }
    munmap(code, page);
    return total;
}

/* Functions in this library's own text, for rewriting in place. */
__asm__(".text\n"
        ".globl patch_me\n.hidden patch_me\n.type patch_me,@function\n.p2align 4\n"
        "patch_me:\n  mov $1, %eax\n  ret\n"
        ".globl hot_target\n.hidden hot_target\n.type hot_target,@function\n.p2align 4\n"
        "hot_target:\n  lea 1(%rdi), %rax\n  ret\n  nop\n  nop\n  nop\n");
long patch_me(void);
long hot_target(long);

static void *page_of(void *p) {
    return (void *)((uintptr_t)p & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
}

/* Bytes from page_of(code) to the end of the page holding code[15]. */
static long pages_len(unsigned char *code) {
    return (char *)page_of(code + 15) - (char *)page_of(code) + sysconf(_SC_PAGESIZE);
}

/* The text page made writable (the program's own code changes under it),
 * the immediate of patch_me rewritten twice while it stays writable and
 * executable, then restored and the page made read-execute again. */
long in_place_rewrite(void) {
    unsigned char *code = (unsigned char *)patch_me;
    void *page = page_of(code);
    long page_len = pages_len(code);
    long total = patch_me();
    if (mprotect(page, page_len, PROT_READ | PROT_WRITE | PROT_EXEC)) return -1;
    for (int32_t value = 2; value <= 3; value++) {
        memcpy(code + 1, &value, 4);
        __builtin_ia32_mfence();
        total = total * 10 + call_at(code);
    }
    int32_t one = 1;
    memcpy(code + 1, &one, 4);
    mprotect(page, page_len, PROT_READ | PROT_EXEC);
    return total * 10 + patch_me();
}

long hot_replacement(long x) { return x * 1000; }

static NOINLINE long call_hot(long x) { return hot_target(x) + hot_target(x + 1); }

/* An inline hook installed at run time (a jmp over the first bytes of a
 * function that was already running translated and is called directly),
 * then removed. */
long hotpatch(void) {
    unsigned char *code = (unsigned char *)hot_target;
    unsigned char saved[5];
    void *page = page_of(code);
    long page_len = pages_len(code);
    long before = call_hot(1) + call_hot(2);
    memcpy(saved, code, 5);
    if (mprotect(page, page_len, PROT_READ | PROT_WRITE | PROT_EXEC)) return -1;
    int32_t rel = (int32_t)((unsigned char *)hot_replacement - (code + 5));
    code[0] = 0xe9;
    memcpy(code + 1, &rel, 4);
    mprotect(page, page_len, PROT_READ | PROT_EXEC);
    long hooked = call_hot(1) + call_hot(2);
    mprotect(page, page_len, PROT_READ | PROT_WRITE | PROT_EXEC);
    memcpy(code, saved, 5);
    mprotect(page, page_len, PROT_READ | PROT_EXEC);
    long after = call_hot(1) + call_hot(2);
    return before * 1000000 + hooked * 10 + after;
}
