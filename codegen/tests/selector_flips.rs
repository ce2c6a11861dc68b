//! Emitted flips change the selector where they must: generated code copies
//! the selector byte out before its entry flip, between the flips and after
//! its exit flip, and the engine's own view agrees around the call.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use dynasmrt::{dynasm, DynasmApi};
use sud_codegen::direct::{selector_flip, thread_selector, Rq, SelectorAccess};
use sud_codegen::CodeCache;
use sud_engine::{selector, selector_location, Engine, Selector};

type Probe = extern "C" fn(*mut [u8; 3], usize);

/// Emits `probe(out, context)`: reads the selector through `read` into
/// out[0], flips to BLOCK through `access`, reads into out[1], flips to
/// ALLOW, reads into out[2]. With `Register` access the context register
/// is rsi (the probe's second argument).
fn emit_probe(cache: &CodeCache, access: SelectorAccess, read: SelectorAccess) -> Probe {
    let block = selector_flip(access, Selector::Block).unwrap();
    let allow = selector_flip(access, Selector::Allow).unwrap();
    let read_into = |a: &mut dynasmrt::VecAssembler<_>, slot: i32| match read {
        SelectorAccess::ThreadPointer { offset } => {
            dynasm!(a ; .arch x64 ; fs mov al, BYTE [offset] ; mov [rdi + slot], al)
        }
        SelectorAccess::Register { disp, .. } => {
            dynasm!(a ; .arch x64 ; mov al, BYTE [rsi + disp] ; mov [rdi + slot], al)
        }
        SelectorAccess::Absolute { address } => {
            dynasm!(a ; .arch x64 ; mov al, BYTE [address as i32] ; mov [rdi + slot], al)
        }
    };
    let addr = cache
        .emit_with(|rip| {
            Ok(assemble(rip, |a| {
                read_into(a, 0);
                a.extend(block.iter());
                read_into(a, 1);
                a.extend(allow.iter());
                read_into(a, 2);
                dynasm!(a ; .arch x64 ; ret);
            }))
        })
        .unwrap();
    // SAFETY: the probe above has this signature and lives in a leaked cache.
    unsafe { function(addr) }
}

#[test]
fn thread_pointer_flips_set_block_inside_and_allow_after() {
    child_passes(|| {
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let access = thread_selector().unwrap();
        assert_eq!(
            access,
            SelectorAccess::ThreadPointer {
                offset: selector_location().tp_offset as i32
            }
        );
        let probe = emit_probe(cache, access, access);
        assert_eq!(selector::current(), Selector::Allow);
        let mut seen = [0xff; 3];
        probe(&mut seen, 0);
        assert_eq!(
            seen,
            [0, 1, 0],
            "before entry, inside the block, after exit"
        );
        assert_eq!(selector::current(), Selector::Allow);
        assert_eq!(engine.counters().traps, 0);
    });
}

#[test]
fn the_same_flip_reaches_each_threads_own_selector() {
    child_passes(|| {
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let access = thread_selector().unwrap();
        let probe = emit_probe(cache, access, access);
        let main_selector = selector_location().address;
        let seen = std::thread::spawn(move || {
            engine.arm_current_thread(Selector::Allow).unwrap();
            assert_ne!(selector_location().address, main_selector);
            let mut seen = [0xff; 3];
            probe(&mut seen, 0);
            assert_eq!(selector::current(), Selector::Allow);
            seen
        })
        .join()
        .unwrap();
        assert_eq!(seen, [0, 1, 0]);
        assert_eq!(selector::current(), Selector::Allow);
    });
}

#[test]
fn register_relative_flips_write_the_named_byte() {
    child_passes(|| {
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .install()
            .unwrap();
        let location = selector_location();
        // A JIT context whose field 16 bytes in is... the selector: rsi
        // points 16 bytes below it.
        let access = SelectorAccess::Register {
            reg: Rq::RSI,
            disp: 16,
        };
        let probe = emit_probe(cache, access, access);
        let mut seen = [0xff; 3];
        probe(&mut seen, location.address - 16);
        assert_eq!(seen, [0, 1, 0]);
        assert_eq!(selector::current(), Selector::Allow);
        assert_eq!(engine.counters().traps, 0);
    });
}

#[test]
fn absolute_flips_write_a_low_address() {
    child_passes(|| {
        let cache = CodeCache::new(1 << 20).unwrap();
        // A byte in the low 2 GiB, as a single-threaded embedder could
        // place its selector.
        let want = 0x3f00_0000usize;
        // SAFETY: MAP_FIXED_NOREPLACE maps a fresh page or fails; nothing is replaced.
        let page = unsafe {
            libc::mmap(
                want as *mut libc::c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(page as usize, want, "low page unavailable");
        let access = SelectorAccess::Absolute {
            address: want as u64 + 7,
        };
        let probe = emit_probe(&cache, access, access);
        let mut seen = [0xff; 3];
        probe(&mut seen, 0);
        assert_eq!(seen, [0, 1, 0]);
        // SAFETY: the page is mapped read-write above.
        assert_eq!(unsafe { *((want + 7) as *const u8) }, 0);
    });
}
