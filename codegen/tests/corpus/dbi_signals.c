/* Signal handlers that look at the interrupted state (tests/dbi_signals.rs):
 * run natively and translated, each function must return the same value.
 * The handlers are installed by the functions themselves. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <unistd.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>

/* probe_load(p): *p, or -1 when the load faults (the SIGSEGV handler
 * moves the pc to probe_recover). It leaves its stack pointer at the load
 * in probe_rsp for the handler to compare. trap_leaf: a ud2 the SIGILL
 * handler steps over. */
extern char probe_insn[], probe_recover[];
long probe_load(long *p);
long trap_leaf(long x);
__attribute__((visibility("hidden"))) long probe_rsp;
__asm__(".text\n"
        ".globl probe_load\n.type probe_load,@function\n"
        "probe_load:\n"
        "  mov %rsp, probe_rsp(%rip)\n"
        ".globl probe_insn\n.hidden probe_insn\n"
        "probe_insn:\n"
        "  mov (%rdi), %rax\n"
        "  ret\n"
        ".globl probe_recover\n.hidden probe_recover\n"
        "probe_recover:\n"
        "  mov $-1, %rax\n"
        "  ret\n"
        ".size probe_load, .-probe_load\n"
        ".globl trap_leaf\n.type trap_leaf,@function\n"
        "trap_leaf:\n"
        "  .cfi_startproc\n"
        "  lea 1(%rdi), %rax\n"
        "  ud2\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size trap_leaf, .-trap_leaf\n");

static volatile long faults, pc_matched, rsp_matched;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    (void)sig;
    (void)si;
    faults++;
    if (uc->uc_mcontext.gregs[REG_RIP] == (greg_t)probe_insn)
        pc_matched++;
    if (uc->uc_mcontext.gregs[REG_RSP] == (greg_t)probe_rsp)
        rsp_matched++;
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)probe_recover;
}

void *segv_handler(void) { return (void *)on_segv; }

/* Two faulting probes between good loads: the handler sees the probe's
 * own pc and stack pointer, and its new pc takes effect. */
long probe_segv(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, &old);
    faults = pc_matched = rsp_matched = 0;
    long value = 42;
    long r1 = probe_load(&value);
    long r2 = probe_load((long *)8);
    long r3 = probe_load(&value);
    long r4 = probe_load((long *)4096);
    sigaction(SIGSEGV, &old, 0);
    return r1 * 100000000 + (r2 == -1) * 10000000 + r3 * 100000 + (r4 == -1) * 10000 +
           faults * 100 + pc_matched * 10 + rsp_matched;
}

/* backtrace() in a SIGILL handler: the frames of this library it finds
 * (the handler, the trapping leaf, its two callers) and their offsets. */
static volatile long bt_count, bt_names;
static volatile unsigned long bt_hash;

static void on_ill(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    void *frames[32];
    Dl_info self, info;
    (void)sig;
    (void)si;
    int n = backtrace(frames, 32);
    dladdr((void *)on_ill, &self);
    bt_count = 0;
    bt_names = 0;
    bt_hash = 0;
    for (int i = 0; i < n; i++) {
        if (!dladdr(frames[i], &info) || info.dli_fbase != self.dli_fbase)
            continue;
        bt_count++;
        bt_hash = bt_hash * 31 + ((char *)frames[i] - (char *)self.dli_fbase);
        if (info.dli_sname && !strcmp(info.dli_sname, "trap_leaf"))
            bt_names |= 1;
        if (info.dli_sname && !strcmp(info.dli_sname, "bt_middle"))
            bt_names |= 2;
        if (info.dli_sname && !strcmp(info.dli_sname, "bt_outer"))
            bt_names |= 4;
    }
    uc->uc_mcontext.gregs[REG_RIP] += 2; /* over the ud2 */
}

__attribute__((noinline)) long bt_middle(long x) { return trap_leaf(x) * 3 + 1; }
__attribute__((noinline)) long bt_outer(long x) { return bt_middle(x + 1) * 5 + 2; }

long backtrace_in_handler(void) {
    void *warm[4];
    backtrace(warm, 4); /* loads the unwinder outside the handler */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_ill;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &sa, &old);
    long r = bt_outer(10);
    sigaction(SIGILL, &old, 0);
    return r * 1000 + bt_count * 10 + bt_names;
}

unsigned long backtrace_hash(void) { return bt_hash; }

/* A timer signal every 100 us over a loop of indirect calls and returns:
 * the result must not depend on where the signals land. */
static volatile long ticks;
static void on_alarm(int sig) {
    (void)sig;
    ticks++;
}

__attribute__((noinline)) static long mix(long x) {
    return x * 6364136223846793005L + 1442695040888963407L;
}
__attribute__((noinline)) static long fold(long x) { return (x ^ (x >> 29)) + 17; }
static long (*volatile steps[2])(long) = {mix, fold};

long storm_loop(void) {
    long acc = 1;
    for (long i = 0; i < 6000000; i++) {
        acc = steps[i & 1](acc ^ i);
        if (acc & 1)
            acc += i;
    }
    return acc;
}

long alarm_storm(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, &old);
    ticks = 0;
    struct itimerval it = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, 0);
    long acc = storm_loop();
    setitimer(ITIMER_REAL, &off, 0);
    sigaction(SIGALRM, &old, 0);
    return acc;
}

long alarm_ticks(void) { return ticks; }

/* The other way probes recover: siglongjmp out of the SIGSEGV handler back
 * to a sigsetjmp in the probing function (the signal frame abandoned). */
#include <setjmp.h>
static sigjmp_buf probe_jump;
static volatile long jumped_pc_matched;

static void on_segv_jump(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    (void)sig;
    (void)si;
    if (uc->uc_mcontext.gregs[REG_RIP] == (greg_t)probe_insn)
        jumped_pc_matched++;
    siglongjmp(probe_jump, 1);
}

long probe_longjmp(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv_jump;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, &old);
    jumped_pc_matched = 0;
    volatile long readable = 0;
    long value = 7;
    long *probes[4] = {&value, (long *)8, &value, (long *)16};
    for (int i = 0; i < 4; i++) {
        if (sigsetjmp(probe_jump, 1) == 0)
            readable = readable * 10 + probe_load(probes[i]);
        else
            readable = readable * 10 + 9;
    }
    sigset_t now;
    sigprocmask(SIG_SETMASK, 0, &now);
    sigaction(SIGSEGV, &old, 0);
    /* 7, fault, 7, fault; both faults at the probe's pc; SIGSEGV unblocked
     * again by siglongjmp. */
    return readable * 100 + jumped_pc_matched * 10 + !sigismember(&now, SIGSEGV);
}

/* A signal during a blocking read: with SA_RESTART the handler sees the pc
 * on the syscall instruction (the kernel restarts it after the handler),
 * without it the instruction after (read fails with EINTR). The handler
 * writes into the pipe, so the restarted read returns that byte. The
 * result holds where the pc was, relative to read(). */
static int read_pipe[2];
static volatile long read_rip_offset, read_rsp_ok;
static volatile char *read_rsp_mark;

static void on_alarm_read(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    (void)sig;
    (void)si;
    read_rip_offset = (char *)uc->uc_mcontext.gregs[REG_RIP] - (char *)read;
    /* The interrupted stack pointer is below the reading function's frame
     * and within a page of it. */
    char *sp = (char *)uc->uc_mcontext.gregs[REG_RSP];
    read_rsp_ok = sp < (char *)read_rsp_mark && (char *)read_rsp_mark - sp < 4096;
    (void)!write(read_pipe[1], "x", 1);
}

static long blocked_read(int flags) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm_read;
    sa.sa_flags = SA_SIGINFO | flags;
    if (pipe(read_pipe) != 0)
        return -1;
    sigaction(SIGALRM, &sa, &old);
    volatile char mark;
    read_rsp_mark = &mark;
    read_rip_offset = read_rsp_ok = 0;
    struct itimerval once = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &once, 0);
    char c = 0;
    long n = read(read_pipe[0], &c, 1);
    long eintr = n < 0 && errno == EINTR;
    sigaction(SIGALRM, &old, 0);
    close(read_pipe[0]);
    close(read_pipe[1]);
    return (n == 1 && c == 'x') * 100000 + eintr * 10000 + read_rsp_ok * 1000 +
           (read_rip_offset + 500);
}

long blocked_read_restarted(void) { return blocked_read(SA_RESTART); }
long blocked_read_interrupted(void) { return blocked_read(0); }
