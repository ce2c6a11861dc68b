//! Translation allocates nothing: it may run while the foreign code that
//! reached a new block holds malloc's lock. A counting global allocator
//! sees every Rust allocation; a translated run that makes dozens of new
//! blocks (decoding, the transformer, encoding, linking, lookups, direct
//! syscalls) must make none.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sud_codegen::dbi::{BlockIterator, Dbi};
use sud_codegen::CodeCache;
use sud_engine::Engine;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

static BLOCKS: AtomicU64 = AtomicU64::new(0);

fn count_blocks(block: &mut BlockIterator<'_>) {
    block.put_counter(&BLOCKS, 1);
}

/// Branchy, calling, syscalling code that allocates nothing itself.
extern "C" fn workload() -> i64 {
    fn collatz(mut n: u64) -> u64 {
        let mut steps = 0;
        while n != 1 {
            n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
            steps += 1;
        }
        steps
    }
    let mut total = 0;
    for n in 1..500 {
        total += collatz(n);
    }
    // SAFETY: getppid has no preconditions.
    total as i64 + i64::from(unsafe { libc::getppid() } > 0)
}

#[test]
fn translating_new_blocks_allocates_nothing() {
    child_passes(|| {
        let cache: &'static CodeCache = Box::leak(Box::new(
            CodeCache::new(sud_codegen::DEFAULT_CAPACITY).unwrap(),
        ));
        let engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let dbi = Dbi::builder()
            .transformer(count_blocks)
            .install(cache)
            .unwrap();
        let f = workload as extern "C" fn() -> i64 as usize;
        let native = workload();
        let before = ALLOCATIONS.load(Relaxed);
        // SAFETY: `extern "C" fn() -> i64`.
        let translated = unsafe { dbi.call(f, &[]) }.unwrap() as i64;
        let allocations = ALLOCATIONS.load(Relaxed) - before;
        assert_eq!(translated, native);
        let c = dbi.counters();
        // Translations asked for by exits, lookup misses and target cache
        // fills.
        assert!(
            c.blocks >= 5 && c.links > 0 && c.lookup_misses + c.target_fills > 0,
            "{c:?}"
        );
        assert!(engine.counters().direct >= 1);
        assert!(BLOCKS.load(Relaxed) > 1000);
        assert_eq!(allocations, 0, "translation allocated; counters {c:?}");
    });
}
