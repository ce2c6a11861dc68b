/* Reports which of descriptors 0-2 are open, then which number open()
 * gets (the lowest free one), into the file named by argv[1]. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    char line[128];
    int n = 0;
    for (int fd = 0; fd < 3; fd++)
        n += snprintf(line + n, sizeof line - n, "fd%d=%s ", fd,
                      fcntl(fd, F_GETFD) < 0 ? "closed" : "open");
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0)
        return 3;
    n += snprintf(line + n, sizeof line - n, "opened_at=%d\n", out);
    write(out, line, n);
    return 0;
}
