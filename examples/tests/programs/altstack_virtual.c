/* Item 4: what a thread sets with sigaltstack is what it reads back:
 * none on a new thread, replacing, SS_DISABLE, SS_ONSTACK while on it in an
 * SA_ONSTACK handler, EPERM when changing it there. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define SIZE (64 * 1024)
static char *a, *b;
static char line[1024];
static volatile int len; /* the handler appends too */

#define SAY(...) (len += snprintf(line + len, sizeof line - len, __VA_ARGS__))

static int is(stack_t *s, char *sp, int flags) {
    return s->ss_sp == sp && s->ss_size == SIZE && s->ss_flags == flags;
}

static void on_usr1(int sig) {
    char here;
    (void)sig;
    stack_t cur, other = {.ss_sp = b, .ss_size = SIZE, .ss_flags = 0};
    sigaltstack(NULL, &cur);
    SAY("in_handler_on_a=%d flags_onstack=%d ", &here >= a && &here < a + SIZE,
        cur.ss_flags == SS_ONSTACK && cur.ss_sp == a);
    int r = sigaltstack(&other, NULL);
    SAY("change_while_on=%d/%s ", r, r ? (errno == EPERM ? "EPERM" : "other") : "none");
}

static void *thread(void *arg) {
    (void)arg;
    stack_t s, set_a = {.ss_sp = a, .ss_size = SIZE, .ss_flags = 0};
    stack_t set_b = {.ss_sp = b, .ss_size = SIZE, .ss_flags = 0};
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(NULL, &s);
    SAY("new_thread_disabled=%d ", s.ss_flags == SS_DISABLE);
    sigaltstack(&set_a, NULL);
    sigaltstack(NULL, &s);
    SAY("set_a=%d ", is(&s, a, 0));
    sigaltstack(&set_b, &s);
    SAY("old_was_a=%d ", is(&s, a, 0));
    sigaltstack(NULL, &s);
    SAY("set_b=%d ", is(&s, b, 0));
    sigaltstack(&off, NULL);
    sigaltstack(NULL, &s);
    SAY("disabled=%d ", (s.ss_flags & SS_DISABLE) != 0);
    sigaltstack(&set_a, NULL);
    pthread_kill(pthread_self(), SIGUSR1);
    sigaltstack(NULL, &s);
    SAY("after_handler=%d", is(&s, a, 0));
    return NULL;
}

int main(void) {
    a = malloc(SIZE);
    b = malloc(SIZE);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    stack_t s;
    sigaltstack(NULL, &s);
    SAY("main_disabled=%d ", s.ss_flags == SS_DISABLE);
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    pthread_join(t, NULL);
    puts(line);
    return 0;
}
