/* Threads that register rseq (glibc does, per thread) and read their CPU
 * through it (sched_getcpu), with marker syscalls. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *worker(void *arg) {
    long cpus = 0;
    for (int i = 0; i < 100000; i++)
        cpus += sched_getcpu() >= 0;
    for (int i = 0; i < 10; i++)
        syscall(SYS_getppid);
    *(long *)arg = cpus;
    return NULL;
}

int main(void) {
    pthread_t t[4];
    long cpus[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, &cpus[i]);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += cpus[i];
    }
    printf("threads=4 cpu_reads=%ld marks=40\n", total);
    return 0;
}
