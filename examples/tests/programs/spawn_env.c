/* posix_spawn with an environment of its own, many times: the process's
 * anonymous memory must not grow with the number of spawns. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static long anon_kb(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    long kb = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char path[256] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) >= 2 && path[0] == 0)
            kb += (hi - lo) / 1024;
    }
    fclose(maps);
    return kb;
}

static void spawn_true(void) {
    char *argv[] = {"true", NULL};
    char *envp[] = {"A=1", "B=2", NULL};
    pid_t pid;
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, envp) == 0)
        waitpid(pid, NULL, 0);
}

int main(void) {
    for (int i = 0; i < 5; i++)
        spawn_true();
    long before = anon_kb();
    for (int i = 0; i < 100; i++)
        spawn_true();
    long grew = anon_kb() - before;
    printf("grew_kb=%ld\n", grew > 0 ? grew : 0);
    return 0;
}
