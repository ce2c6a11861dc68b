/* Grows and trims the heap before making any other call, so the first
 * syscall site the tools see (and rewrite) is glibc's brk, trapped from
 * inside malloc while it updates the heap: patching then must not
 * allocate. Prints a checksum of what it wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static void *blocks[2000];
    unsigned long sum = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 2000; i++) {
            size_t len = 512 + (size_t)(i * 37) % 6000;
            blocks[i] = malloc(len);
            memset(blocks[i], i & 0xff, len);
        }
        for (int i = 0; i < 2000; i++) {
            sum += ((unsigned char *)blocks[i])[0];
            free(blocks[i]);
        }
    }
    printf("sum=%lu\n", sum);
    return 0;
}
