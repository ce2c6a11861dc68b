//! Many threads trapping at once, and hooks that run while the trapped
//! thread is inside malloc.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Barrier;
use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};

#[test]
fn threads_trap_at_once_with_exact_counts() {
    child_passes(|| {
        const THREADS: usize = 8;
        const CALLS: u64 = 2_000;
        static HOOKED: AtomicU64 = AtomicU64::new(0);
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|call| {
                HOOKED.fetch_add(1, Relaxed);
                // Emulate with a value derived from the caller, so a result
                // delivered to the wrong thread would show.
                Verdict::Return(call.tid as i64)
            })
            .install()
            .unwrap();
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    engine.arm_current_thread(Selector::Allow).unwrap();
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    barrier.wait();
                    let _foreign = selector::enter(Selector::Block);
                    for _ in 0..CALLS {
                        // SAFETY: getppid has no preconditions.
                        let r = unsafe { libc::getppid() };
                        assert_eq!(r, tid);
                    }
                });
            }
        });
        let total = THREADS as u64 * CALLS;
        assert_eq!(HOOKED.load(Relaxed), total, "no lost or doubled calls");
        assert_eq!(engine.count(Sysno::getppid), total);
        assert_eq!(engine.counters().hooked, total);
    });
}

#[test]
fn hooks_run_while_the_trapped_thread_is_inside_malloc() {
    child_passes(|| {
        static MAPS: AtomicU64 = AtomicU64::new(0);
        // A fixed threshold: every large block is mmapped and unmapped (by
        // default glibc raises the threshold after the first free).
        // SAFETY: mallopt with a valid parameter.
        assert_eq!(
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) },
            1
        );
        // The hook does what a tracing hook does: formats into a stack
        // buffer and counts, without allocating.
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[
                Sysno::mmap,
                Sysno::munmap,
                Sysno::brk,
                Sysno::mprotect,
                Sysno::madvise,
            ]))
            .pre_hook(|call| {
                use std::fmt::Write;
                let mut line = StackLine::default();
                let _ = write!(
                    line,
                    "{}({:#x}, {})",
                    call.name(),
                    call.args[0],
                    call.args[1]
                );
                if call.sysno() == Some(Sysno::mmap) && line.len > 0 {
                    MAPS.fetch_add(1, Relaxed);
                }
                Verdict::Run
            })
            .install()
            .unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    engine.arm_current_thread(Selector::Block).unwrap();
                    for round in 0..200usize {
                        // Large blocks go to mmap/munmap, small ones churn
                        // the heap (brk); both trap inside malloc/free.
                        let big = vec![round as u8; 512 * 1024 + round];
                        let small: Vec<Box<[u8; 100]>> =
                            (0..50).map(|_| Box::new([1; 100])).collect();
                        assert_eq!(big[big.len() - 1], round as u8);
                        assert_eq!(small.len(), 50);
                    }
                    selector::set(Selector::Allow);
                });
            }
        });
        assert!(
            MAPS.load(Relaxed) >= 400,
            "every big allocation trapped: {}",
            MAPS.load(Relaxed)
        );
        assert!(engine.count(Sysno::mmap) >= 400);
    });
}

struct StackLine {
    buf: [u8; 128],
    len: usize,
}

impl Default for StackLine {
    fn default() -> Self {
        StackLine {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl std::fmt::Write for StackLine {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[test]
fn counts_stay_exact_while_threads_come_and_go() {
    child_passes(|| {
        let engine = engine_answering_getppid();
        let _foreign = selector::enter(Selector::Block);
        // Threads made by foreign code are armed, count into their own
        // blocks, and hand them back when their exit traps; the totals keep
        // every count.
        for round in 0..20 {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    std::thread::spawn(move || {
                        for _ in 0..10 {
                            // SAFETY: getppid has no preconditions.
                            assert_eq!(unsafe { libc::getppid() }, -77);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(engine.count(Sysno::getppid), (round + 1) * 30);
        }
        drop(_foreign);
        assert_eq!(engine.counters().hooked, 600);
    });
}
