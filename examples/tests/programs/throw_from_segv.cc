// Item 17: a C++ exception thrown from a SIGSEGV handler (built with
// -fnon-call-exceptions) unwinds through the signal frame to main's catch.
#include <csignal>
#include <cstdio>
#include <stdexcept>

static void on_segv(int) { throw std::runtime_error("segv"); }

__attribute__((noinline)) static void fault(volatile int *p) { *p = 1; }

int main() {
    std::signal(SIGSEGV, on_segv);
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        try {
            fault(nullptr);
        } catch (const std::runtime_error &) {
            caught++;
            // The handler left through the exception: unblock SIGSEGV.
            sigset_t segv;
            sigemptyset(&segv);
            sigaddset(&segv, SIGSEGV);
            sigprocmask(SIG_UNBLOCK, &segv, nullptr);
        }
    }
    std::printf("caught=%d\n", caught);
    return 0;
}
