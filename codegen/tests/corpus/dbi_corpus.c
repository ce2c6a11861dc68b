/* The DBI corpus: each `long NAME(void)` runs natively and translated and
 * must give the same result. Compiled at test time into a shared library
 * (see codegen/tests/dbi_corpus.rs) and by hand for dbi-run. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NOINLINE __attribute__((noinline))

long leaf_arith(void) {
    volatile long x = 12345;
    long y = x * 31 + (x >> 3) - (x ^ 0x5a5a);
    return y % 1000003;
}

static NOINLINE long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
long recursion(void) { return fib(22); }

static NOINLINE long classify(long v) {
    switch (v & 15) {
    case 0: return v * 3;
    case 1: return v + 17;
    case 2: return v ^ 0x33;
    case 3: return v - 5;
    case 4: return v << 2;
    case 5: return v >> 1;
    case 6: return ~v;
    case 7: return v * v;
    case 8: return v % 7;
    case 9: return v | 0x100;
    case 10: return v & 0xff;
    case 11: return -v;
    default: return 1;
    }
}
long switch_table(void) {
    long sum = 0;
    for (long i = 0; i < 1000; i++) sum += classify(i * 7 + 3);
    return sum;
}

static NOINLINE long op_add(long a, long b) { return a + b; }
static NOINLINE long op_mul(long a, long b) { return a * b; }
static NOINLINE long op_sub(long a, long b) { return a - b; }
static long (*const volatile ops[3])(long, long) = {op_add, op_mul, op_sub};
long function_pointers(void) {
    long acc = 1;
    for (int i = 0; i < 300; i++) acc = ops[i % 3](acc, i + 1) % 1000000007;
    return acc;
}

static int compare_longs(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}
long qsort_callback(void) {
    long v[100]; /* under 1 KiB: glibc sorts on the stack, no malloc whose path depends on heap state */
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < 100; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        v[i] = (long)(s % 100000);
    }
    qsort(v, 100, sizeof v[0], compare_longs);
    long check = 0;
    for (int i = 0; i < 100; i++) check = check * 31 + v[i] * (i + 1);
    for (int i = 1; i < 100; i++) if (v[i - 1] > v[i]) return -1;
    return check;
}

static const double weights[8] = {0.5, 1.25, -2.0, 3.75, 0.125, -0.5, 8.0, 1.0};
static long counter_global;
static const char message[] = "rip-relative constants and globals";
long rip_relative(void) {
    counter_global = 42; /* a rip-relative store, then loads */
    long sum = counter_global;
    for (size_t i = 0; i < sizeof message - 1; i++) sum += message[i] * (long)(i + 1);
    for (int i = 0; i < 8; i++) sum += (long)(weights[i] * 1000.0);
    return sum;
}

static NOINLINE double dot_sse(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
__attribute__((target("avx2,fma"))) static NOINLINE double dot_avx(const double *a, const double *b, int n) {
    __m256d acc = _mm256_setzero_pd();
    for (int i = 0; i + 4 <= n; i += 4)
        acc = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), acc);
    double out[4];
    _mm256_storeu_pd(out, acc);
    return out[0] + out[1] + out[2] + out[3];
}
long sse_avx(void) {
    double a[64], b[64];
    for (int i = 0; i < 64; i++) { a[i] = i * 0.25; b[i] = 64 - i; }
    double s = dot_sse(a, b, 64);
    double v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? dot_avx(a, b, 64) : s;
    return (long)(s * 16) * 3 + (long)(v * 16) + (long)(__builtin_sqrt(s) * 1000);
}

static NOINLINE long sum_varargs(int count, ...) {
    va_list ap;
    va_start(ap, count);
    long sum = 0;
    for (int i = 0; i < count; i++) sum += i % 2 ? (long)(va_arg(ap, double) * 10) : va_arg(ap, long);
    va_end(ap);
    return sum;
}
long varargs(void) { return sum_varargs(6, 10L, 2.5, 30L, 4.25, 50L, 6.125); }

static jmp_buf jump_buffer;
static NOINLINE void deep(int level) {
    if (level == 0) longjmp(jump_buffer, 42);
    deep(level - 1);
}
long setjmp_longjmp(void) {
    volatile long visits = 0;
    int got = setjmp(jump_buffer);
    visits++;
    if (got == 0) deep(10);
    return got * 100 + visits;
}

static NOINLINE long hungry(int depth) {
    volatile char frame[64 * 1024];
    for (size_t i = 0; i < sizeof frame; i += 4096) frame[i] = (char)(i / 4096 + depth);
    long sum = 0;
    for (size_t i = 0; i < sizeof frame; i += 4096) sum += frame[i];
    return depth == 0 ? sum : sum + hungry(depth - 1);
}
long stack_hungry(void) { return hungry(8); }

long syscall_getpid(void) { return getpid() + syscall(SYS_getppid) * 0; }

long syscall_pipe_write(void) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    const char text[] = "through the pipe";
    long written = write(fds[1], text, sizeof text);
    char back[64];
    long got = read(fds[0], back, sizeof back);
    close(fds[0]);
    close(fds[1]);
    return written * 1000 + got + (memcmp(text, back, sizeof text) == 0);
}

long vdso_clock(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long forward = b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec);
    return forward * 1000 + (a.tv_sec > 0);
}

static void *thread_body(void *arg) {
    long n = (long)arg;
    long sum = fib(n) + (syscall(SYS_gettid) != getpid());
    return (void *)sum;
}
long thread_create(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_body, (void *)18L) != 0) return -1;
    void *result = NULL;
    pthread_join(t, &result);
    return (long)result;
}

/* For the benchmark: compute-heavy, no syscalls. */
static unsigned char bench_buffer[1 << 16];
long bench_checksum(void) {
    uint32_t a = 1, b = 0;
    for (int round = 0; round < 16; round++)
        for (size_t i = 0; i < sizeof bench_buffer; i++) {
            bench_buffer[i] = (unsigned char)(i * 7 + round);
            a = (a + bench_buffer[i]) % 65521;
            b = (b + a) % 65521;
        }
    return ((long)b << 16) | a;
}
static NOINLINE void quicksort(long *v, long lo, long hi) {
    while (lo < hi) {
        long pivot = v[(lo + hi) / 2], i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) { long t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quicksort(v, lo, j); lo = i; }
        else { quicksort(v, i, hi); hi = j; }
    }
}
static long sort_buffer[1 << 15];
long bench_sort(void) {
    uint64_t s = 2463534242ull;
    long n = sizeof sort_buffer / sizeof sort_buffer[0];
    for (long i = 0; i < n; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; sort_buffer[i] = (long)(s % 1000000); }
    quicksort(sort_buffer, 0, n - 1);
    long check = 0;
    for (long i = 0; i < n; i += 97) check += sort_buffer[i];
    return check;
}

/* Code that inspects its return address sees the native one. */
static NOINLINE void *my_return_address(void) { return __builtin_return_address(0); }
long native_return_address(void) {
    char *r = my_return_address();
    return r > (char *)native_return_address && r < (char *)native_return_address + 256;
}

/* For the transformer tests: `mov eax, 5; ret`. */
long returns_five(void) { return 5; }

/* fork from translated code: the child continues translated code, then
 * native (it must not translate into the cache it shares with us). */
#include <sys/wait.h>
long fork_child(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(getppid() > 0 ? 7 : 8);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) * 100 + (pid > 0) : -2;
}

/* Floating-point arguments and result, for Dbi::call_with_floats. */
double mix_doubles(long a, double x, double y, long b) {
    double acc = 0;
    for (long i = 1; i <= a; i++) acc += x / i - y * i;
    return acc + (double)b * 0.25;
}

/* Two memory accesses through a pointer argument, for memory tracers. */
long read_and_write(long *p) {
    long v = p[3];
    p[5] = v + 1;
    return v;
}

/* Low bits of a sum of inexact quotients: they change with MXCSR's
 * rounding mode. */
long rounding(void) {
    double x = 1.0;
    for (int i = 1; i < 2000; i++) x += 1.0 / (i * 3.0 + 0.1);
    union { double d; long l; } u = {x};
    return u.l & 0xffffff;
}
