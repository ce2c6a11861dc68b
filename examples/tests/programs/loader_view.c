/* What a program can see of how it was loaded: run natively and under
 * the tools' loader (`--from-start`), the output must be the same. Built
 * static, static-pie, dynamic and with musl. */
#define _GNU_SOURCE
#include <elf.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern const Elf64_Ehdr __ehdr_start;
extern char _start[];
extern char end[];

static int worker_ran;
static void *worker(void *arg) {
    worker_ran = (int)(long)arg;
    return NULL;
}

static size_t slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    size_t got = 0;
    ssize_t n;
    while (got < size && (n = read(fd, buf + got, size - got)) > 0)
        got += n;
    close(fd);
    return got;
}

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    printf("env LOADER_TEST=%s\n", getenv("LOADER_TEST") ? getenv("LOADER_TEST") : "(none)");
    printf("execfn=%s\n", (const char *)getauxval(AT_EXECFN));
    printf("pagesz=%lu secure=%lu\n", getauxval(AT_PAGESZ), getauxval(AT_SECURE));
    const char *phdr = (const char *)&__ehdr_start + __ehdr_start.e_phoff;
    printf("phdr %s phnum %s phent %lu\n",
           getauxval(AT_PHDR) == (unsigned long)phdr ? "ok" : "WRONG",
           getauxval(AT_PHNUM) == __ehdr_start.e_phnum ? "ok" : "WRONG",
           getauxval(AT_PHENT));
    printf("entry %s\n", getauxval(AT_ENTRY) == (unsigned long)_start ? "ok" : "WRONG");
    const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
    int nonzero = 0;
    for (int i = 0; random && i < 16; i++)
        nonzero |= random[i];
    printf("random %s\n", nonzero ? "ok" : "WRONG");
    printf("vdso %s\n", getauxval(AT_SYSINFO_EHDR) ? "ok" : "missing");

    /* brk: the program's own heap, after its bss. */
    unsigned long start = syscall(SYS_brk, 0);
    unsigned long grown = syscall(SYS_brk, start + 65536);
    printf("brk after bss %s, grows %s\n", start >= (unsigned long)end ? "yes" : "NO",
           grown == start + 65536 ? "yes" : "NO");
    memset((void *)start, 1, 65536);
    static char maps[1 << 16];
    size_t n = slurp("/proc/self/maps", maps, sizeof maps - 1);
    maps[n] = 0;
    printf("heap mapping %s\n", strstr(maps, "[heap]") ? "yes" : "no");
    int local;
    char stack_line[64];
    snprintf(stack_line, sizeof stack_line, "[stack]");
    int on_stack = 0;
    for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= (unsigned long)&local &&
            (unsigned long)&local < hi)
            on_stack = strncmp(strchr(line, '\n') - 7, stack_line, 7) == 0;
    }
    printf("locals on [stack] %s\n", on_stack ? "yes" : "no");

    char exe[4096] = {0};
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    printf("exe=%s\n", exe);
    /* Opening it opens the program's file (under the loader only with
     * CAP_CHECKPOINT_RESTORE: root). */
    if (geteuid() == 0) {
        struct stat self, file;
        int same = stat("/proc/self/exe", &self) == 0 && stat(exe, &file) == 0 &&
                   self.st_ino == file.st_ino && self.st_dev == file.st_dev;
        printf("exe is the file %s\n", same ? "yes" : "NO");
    }
    char buf[4096];
    n = slurp("/proc/self/comm", buf, sizeof buf - 1);
    buf[n] = 0;
    printf("comm=%s", buf);
    n = slurp("/proc/self/cmdline", buf, sizeof buf);
    printf("cmdline=");
    for (size_t i = 0; i < n; i++)
        putchar(buf[i] ? buf[i] : ' ');
    putchar('\n');
    static char environ_text[1 << 16];
    n = slurp("/proc/self/environ", environ_text, sizeof environ_text - 1);
    int tools = 0;
    for (size_t i = 0; i + 4 < n; i++)
        tools |= memcmp(environ_text + i, "SUD_", 4) == 0;
    printf("environ clean %s\n", tools ? "NO" : "yes");

    pthread_t t;
    pthread_create(&t, NULL, worker, (void *)7L);
    pthread_join(t, NULL);
    printf("thread ran %d\n", worker_ran);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0)
        _exit(5);
    int status;
    waitpid(child, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    return 3;
}
