// A C++ exception thrown from a SIGSEGV handler (with -fnon-call-exceptions)
// unwinds through the signal frame into the faulting function's caller
// (tests/dbi_signals.rs): natively and translated, the same result.
#include <signal.h>
#include <stdexcept>
#include <string.h>

struct Fault : std::runtime_error {
    using std::runtime_error::runtime_error;
};

static void on_segv_throw(int, siginfo_t *, void *) { throw Fault("segv"); }

__attribute__((noinline)) static long touch(volatile long *p) { return *p + 1; }

extern "C" long throw_from_handler(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv_throw;
    // The handler is left by the exception, never returned from: SIGSEGV
    // must not stay blocked for the next fault.
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old);
    long caught = 0, sum = 0, value = 5;
    for (int i = 0; i < 4; i++) {
        try {
            sum += touch(i % 2 ? (volatile long *)8 : &value);
        } catch (const Fault &) {
            caught++;
        }
    }
    sigaction(SIGSEGV, &old, 0);
    return sum * 10 + caught;
}
