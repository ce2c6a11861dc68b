//! The code cache is the engine's excluded region, stays W^X while it
//! grows, and can be placed within rel32 reach of a given address.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use dynasmrt::{dynasm, DynasmApi};
use sud_codegen::direct::{selector_flip, thread_selector};
use sud_codegen::{CodeCache, Error};
use sud_engine::{Engine, Selector, SyscallSet, Sysno, Verdict};

const EMULATED_PPID: i64 = 4242;

/// `flip BLOCK; getppid; flip ALLOW; ret`: position independent.
fn getppid_under_block() -> Vec<u8> {
    let access = thread_selector().unwrap();
    let block = selector_flip(access, Selector::Block).unwrap();
    let allow = selector_flip(access, Selector::Allow).unwrap();
    assemble(0, |a| {
        a.extend(block.iter());
        dynasm!(a ; .arch x64 ; mov eax, libc::SYS_getppid as i32 ; syscall);
        a.extend(allow.iter());
        dynasm!(a ; .arch x64 ; ret);
    })
}

#[test]
fn a_syscall_in_the_cache_runs_under_block_and_the_same_bytes_outside_trap() {
    child_passes(|| {
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| Verdict::Return(EMULATED_PPID))
            .install()
            .unwrap();
        let code = getppid_under_block();
        // SAFETY: both copies are the fn() -> i64 above, in memory that
        // outlives the calls (a leaked cache, a mapping held below).
        let inside: extern "C" fn() -> i64 = unsafe { function(cache.emit(&code).unwrap()) };
        let outside_map = outside_cache(&code);
        // SAFETY: as above.
        let outside: extern "C" fn() -> i64 = unsafe { function(outside_map.as_ptr() as usize) };
        // SAFETY: getppid has no preconditions.
        let real = unsafe { libc::getppid() } as i64;
        assert_ne!(real, EMULATED_PPID);

        assert_eq!(inside(), real, "the cache is excluded: the call ran");
        assert_eq!(engine.counters().traps, 0);
        assert_eq!(
            outside(),
            EMULATED_PPID,
            "outside the cache the same bytes trapped into the hook"
        );
        assert_eq!(engine.counters().traps, 1);
        assert_eq!(engine.count(Sysno::getppid), 1);
    });
}

/// Every mapping of the process, as (start, end, perms, name).
fn maps() -> Vec<(usize, usize, String, String)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next().unwrap();
            let perms = fields.next().unwrap().to_string();
            let name = fields.nth(3).unwrap_or("").to_string();
            let (s, e) = range.split_once('-').unwrap();
            (
                usize::from_str_radix(s, 16).unwrap(),
                usize::from_str_radix(e, 16).unwrap(),
                perms,
                name,
            )
        })
        .collect()
}

#[test]
fn no_page_of_the_cache_is_ever_writable_and_executable() {
    let cache = CodeCache::new(8 << 20).unwrap();
    let check = |cache: &CodeCache| {
        let all = maps();
        for (s, e, perms, name) in &all {
            assert!(
                !(perms.contains('w') && perms.contains('x')),
                "{s:#x}-{e:#x} {perms} {name} is writable and executable"
            );
        }
        let (start, end) = (cache.start(), cache.start() + cache.capacity());
        let in_cache: Vec<_> = all.iter().filter(|m| m.0 < end && start < m.1).collect();
        // Committed code is read-execute (shared with the writable view),
        // the rest of the reservation is inaccessible.
        assert!(
            in_cache.iter().all(|m| m.2 == "r-xs" || m.2 == "---p"),
            "{in_cache:#x?}"
        );
        let executable: usize = in_cache
            .iter()
            .filter(|m| m.2 == "r-xs")
            .map(|m| m.1 - m.0)
            .sum();
        assert!(
            executable >= cache.used(),
            "{executable} executable bytes < {} used",
            cache.used()
        );
        assert!(
            in_cache.iter().any(|m| m.2 == "---p"),
            "the reservation has room to grow"
        );
        // The writable view of the same memory is elsewhere and not executable.
        let writable_views: Vec<_> = all
            .iter()
            .filter(|m| m.3.contains("sud-code-cache") && m.2.contains('w'))
            .collect();
        assert!(!writable_views.is_empty());
        assert!(writable_views.iter().all(|m| m.1 <= start || end <= m.0));
    };
    check(&cache);
    // Grow past several commit chunks; the code at the far end runs.
    let filler = vec![0xcc; 300 << 10];
    cache.emit(&filler).unwrap();
    let ret = cache
        .emit(&assemble(0, |a| dynasm!(a ; .arch x64 ; mov eax, 77 ; ret)))
        .unwrap();
    check(&cache);
    // SAFETY: `mov eax, 77; ret` in the cache, alive for the call.
    let f: extern "C" fn() -> i32 = unsafe { function(ret) };
    assert_eq!(f(), 77);
}

#[test]
fn the_cache_refuses_code_beyond_its_reservation() {
    let cache = CodeCache::new(64 << 10).unwrap();
    let room = cache.capacity() - cache.used();
    assert!(matches!(
        cache.emit(&vec![0xcc; room + 1]),
        Err(Error::CacheFull { wanted, .. }) if wanted == room + 1
    ));
    // A failed emission leaves the cache usable.
    assert!(cache.emit(&[0xc3]).is_ok());
}

#[test]
fn a_cache_near_an_address_is_within_rel32_of_it() {
    // A host function the generated code calls with a plain rel32 call.
    extern "C" fn host_add(a: u64, b: u64) -> u64 {
        a + b
    }
    let target = host_add as extern "C" fn(u64, u64) -> u64 as usize;
    let cache = CodeCache::near(target, 16 << 20).unwrap();
    assert!(cache.reaches(target));
    assert!(cache.start().abs_diff(target) < i32::MAX as usize);
    let call = cache
        .emit_with(|rip| {
            let rel = i32::try_from(target as i64 - (rip as i64 + 5))
                .unwrap()
                .to_le_bytes();
            // jmp rel32: a tail call into the host function.
            Ok(vec![0xe9, rel[0], rel[1], rel[2], rel[3]])
        })
        .unwrap();
    // SAFETY: a tail jump to host_add, which has this signature.
    let f: extern "C" fn(u64, u64) -> u64 = unsafe { function(call) };
    assert_eq!(f(40, 2), 42);
}

#[test]
fn the_cache_starts_with_the_engines_gadgets() {
    let cache = CodeCache::new(1 << 20).unwrap();
    assert_eq!(cache.gadgets(), cache.start());
    let image = sud_engine::gadget_bytes();
    // SAFETY: the gadgets are committed read-execute (readable) memory.
    let placed = unsafe { std::slice::from_raw_parts(cache.gadgets() as *const u8, image.len()) };
    assert_eq!(placed, image);
    assert!(cache.used() >= image.len());
}

#[test]
fn reserved_bytes_read_as_zero_take_patches_and_come_before_later_code() {
    let cache = CodeCache::new(1 << 20).unwrap();
    let reserved = cache.reserve(64 << 10).unwrap();
    assert!(cache.contains(reserved) && cache.contains(reserved + (64 << 10) - 1));
    // SAFETY: the reserved range is mapped readable (the executable view).
    let first = unsafe { std::slice::from_raw_parts(reserved as *const u8, 4096) };
    assert!(first.iter().all(|&b| b == 0));
    cache.write_emitted(reserved + 8, &[0xc3]).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { *((reserved + 8) as *const u8) }, 0xc3);
    let after = cache.emit(&[0x90, 0xc3]).unwrap();
    assert!(after >= reserved + (64 << 10));
    assert!(matches!(
        cache.reserve(2 << 20),
        Err(Error::CacheFull { .. })
    ));
}
