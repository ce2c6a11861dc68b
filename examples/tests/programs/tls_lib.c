/* A library with a large thread-local array: dynamic TLS, reached
 * through __tls_get_addr, and a DTV update after every dlclose. */
static __thread char big[64 * 1024];
int touch(int i) {
    big[i % sizeof big] = (char)i;
    return big[i % sizeof big];
}
