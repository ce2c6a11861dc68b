/* An AddressSanitizer build that allocates, frees and makes syscalls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    long sum = 0;
    for (int i = 0; i < 1000; i++) {
        char *p = malloc(64 + i);
        memset(p, i & 0x7f, 64 + i);
        sum += p[i];
        free(p);
        if (i % 100 == 0)
            sum += getppid() > 0;
    }
    printf("sum=%ld\n", sum);
    return 0;
}
