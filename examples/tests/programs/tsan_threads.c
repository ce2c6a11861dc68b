/* Issue 10, item 20: a ThreadSanitizer build (its runtime intercepts
 * __tls_get_addr, mmap and the thread functions) with threads making
 * marker syscalls; TSan must report nothing and every marker be seen. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define THREADS 4
#define CALLS 1000

static int counter;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < CALLS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
        getppid();
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("counter=%d marks=%d\n", counter, THREADS * CALLS);
    return 0;
}
