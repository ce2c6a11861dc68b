/* vfork + execve, and posix_spawn (clone3 CLONE_VM|CLONE_VFORK on a new
 * stack in glibc), three times each. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
    }
    for (int i = 0; i < 3; i++) {
        pid_t pid;
        char *argv[] = {"true", NULL};
        int status;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0 &&
            waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
    }
    printf("spawned=%d\n", ok);
    return 0;
}
