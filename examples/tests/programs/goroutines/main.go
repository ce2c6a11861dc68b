// A cgo program (so it loads libc and the preload): 2,000 goroutines
// making syscalls, directly and through C. The Go runtime's SA_ONSTACK
// handlers need every thread's signal stack, and goroutine stacks are small.
package main

/*
#include <unistd.h>
static int c_getppid(void) { return getppid(); }
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

func main() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	marks := 0
	for i := 0; i < 2000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for j := 0; j < 10; j++ {
				if syscall.Getppid() > 0 {
					n++
				}
				if f, err := os.Open("/dev/null"); err == nil {
					f.Close()
				}
			}
			if C.c_getppid() > 0 {
				n++
			}
			mu.Lock()
			marks += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("goroutines=2000 marks=%d\n", marks)
}
