/* Names descriptor numbers a tool might hold: dup2 onto the top of the
 * descriptor limit and onto 1021/1022, F_DUPFD and dup just below it,
 * close and close_range over everything. Prints what each call returned;
 * lines written through the dup'ed descriptors go to stdout. Ends with
 * marker getppid calls the tool must still see. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void via(int fd) {
    char line[64];
    int n = snprintf(line, sizeof line, "via %d\n", fd);
    write(fd, line, n);
}

static void report(const char *what, long r) {
    printf("%s -> %ld (%s)\n", what, r, r < 0 ? strerror(errno) : "ok");
    fflush(stdout);
}

int main(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int top = rl.rlim_cur > 4096 ? 4096 : (int)rl.rlim_cur;
    int targets[] = {top - 1, top - 2, 1021, 1022, top, top + 1};
    char what[64];
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
        int fd = targets[i];
        snprintf(what, sizeof what, "dup2(1, top%+d)", fd - top);
        if (fd == 1021 || fd == 1022)
            snprintf(what, sizeof what, "dup2(1, %d)", fd);
        long r = dup2(1, fd);
        report(what, r);
        if (r >= 0)
            via(fd);
    }
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++)
        close(targets[i]);
    long r = fcntl(1, F_DUPFD, top - 2);
    report("fcntl(1, F_DUPFD, top-2) - top", r < 0 ? r : r - top);
    if (r >= 0)
        via(r);
    r = fcntl(1, F_DUPFD_CLOEXEC, top - 3);
    report("fcntl(1, F_DUPFD_CLOEXEC, top-3) - top", r < 0 ? r : r - top);
    if (r >= 0)
        printf("cloexec=%d\n", (fcntl(r, F_GETFD) & FD_CLOEXEC) != 0);
    r = dup(1);
    report("dup(1)", r);
    report("close_range(3, ~0, 0)", syscall(SYS_close_range, 3, ~0U, 0));
    report("fcntl(top-1, F_GETFD)", fcntl(top - 1, F_GETFD));
    report("close(1021)", close(1021));
    report("dup(3)", dup(3));
    for (int i = 0; i < 7; i++)
        syscall(SYS_getppid);
    printf("marks=7\n");
    return 0;
}
