//! A foreign function run in place traps on every syscall; its translation
//! in the cache gives the same result through direct calls and no trap.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use iced_x86::code_asm::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sud_codegen::direct::thread_selector;
use sud_codegen::{DirectStub, Error, Translator, VectorState};
use sud_engine::{selector, Engine, Selector, SyscallSet, Sysno, Verdict};

/// `sum(n)`: n getppid syscalls, returning the sum of their results.
fn sum_of_getppid() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut done = a.create_label();
    a.push(rbx).unwrap();
    a.push(r12).unwrap();
    a.xor(ebx, ebx).unwrap();
    a.mov(r12, rdi).unwrap();
    a.test(r12, r12).unwrap();
    a.jz(done).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(eax, libc::SYS_getppid as u32).unwrap();
    a.syscall().unwrap();
    a.add(rbx, rax).unwrap();
    a.dec(r12).unwrap();
    a.jnz(top).unwrap();
    a.set_label(&mut done).unwrap();
    a.mov(rax, rbx).unwrap();
    a.pop(r12).unwrap();
    a.pop(rbx).unwrap();
    a.ret().unwrap();
    a.assemble(0).unwrap()
}

static LAST_CALL_ADDR: AtomicU64 = AtomicU64::new(0);

/// Assembles and translates `sum_of_getppid` in the calling (parent)
/// process, and returns its code. iced-x86 builds its tables lazily behind
/// `Once`s: a child forked while another test thread is inside one would
/// wait on it forever. Every test here calls this before it forks, so a
/// fork comes only after this thread's initialisation, and after any other
/// thread's one it had to wait for; nothing of iced runs in the parent
/// afterwards.
fn warm_iced() -> Vec<u8> {
    let code = sum_of_getppid();
    let cache = sud_codegen::CodeCache::new(1 << 20).unwrap();
    let access = thread_selector().unwrap();
    let stub = DirectStub::new(&cache, access, VectorState::Sse).unwrap();
    let translator = Translator::new(&cache, stub, access);
    translator.translate_function(&code, 0x40_0000).unwrap();
    code
}

#[test]
fn translated_code_reaches_the_same_hooks_without_traps() {
    let code = warm_iced();
    child_passes(move || {
        let cache = leaked_cache();
        let engine = Engine::builder()
            .placement(cache.placement())
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|call| {
                LAST_CALL_ADDR.store(call.call_addr, Relaxed);
                Verdict::Return(7)
            })
            .install()
            .unwrap();
        let native_map = outside_cache(&code);
        let native_addr = native_map.as_ptr() as u64;
        // SAFETY: the mapping holds sum(n) and outlives the calls.
        let native: extern "C" fn(u64) -> u64 = unsafe { function(native_addr as usize) };

        let native_sum = {
            let _foreign = selector::enter(Selector::Block);
            native(1000)
        };
        assert_eq!(native_sum, 7000);
        assert_eq!(engine.counters().traps, 1000);
        let native_call_addr = LAST_CALL_ADDR.load(Relaxed);

        let access = thread_selector().unwrap();
        let stub = DirectStub::new(cache, access, VectorState::Sse).unwrap();
        let translation = Translator::new(cache, stub, access)
            .translate_function(&code, native_addr)
            .unwrap();
        assert_eq!(translation.syscall_sites(), 1);
        assert!(cache.contains(translation.entry()));
        // SAFETY: the translation keeps the original's signature and lives in a leaked cache.
        let translated: extern "C" fn(u64) -> u64 = unsafe { function(translation.entry()) };
        assert_eq!(translated(1000), 7000);
        let c = engine.counters();
        assert_eq!(
            (c.traps, c.direct),
            (1000, 1000),
            "the translation made no trap"
        );
        assert_eq!(
            selector::current(),
            Selector::Allow,
            "the exit flip returned to the host personality"
        );
        assert_eq!(translated(0), 0);
        // Hooks can map a direct call back to the foreign site.
        assert_eq!(
            translation.foreign_call_addr(native_call_addr),
            None,
            "a foreign address is no site"
        );
        assert_eq!(translated(1), 7);
        assert_eq!(
            translation.foreign_call_addr(LAST_CALL_ADDR.load(Relaxed)),
            Some(native_call_addr)
        );
    });
}

#[test]
fn the_translator_refuses_what_it_cannot_keep_hooked() {
    // In a child too, and after the same warm-up as the other test: a
    // fork while the other thread is inside iced's one-time table setup (a
    // `Once`) left this child waiting on it forever (seen in CI).
    warm_iced();
    child_passes(refusals);
}

fn refusals() {
    let cache = sud_codegen::CodeCache::new(1 << 20).unwrap();
    let access = thread_selector().unwrap();
    let stub = DirectStub::new(&cache, access, VectorState::Sse).unwrap();
    let translator = Translator::new(&cache, stub, access);
    let refuse = |build: &dyn Fn(&mut CodeAssembler), why: &str| {
        let mut a = CodeAssembler::new(64).unwrap();
        a.nop().unwrap();
        build(&mut a);
        a.ret().unwrap();
        let code = a.assemble(0x40_0000).unwrap();
        match translator.translate_function(&code, 0x40_0000) {
            Err(Error::Untranslatable { at, why: text }) => {
                assert_eq!(at, 0x40_0001, "{text}");
                assert!(text.contains(why), "{text:?} should say {why:?}");
            }
            other => panic!("expected a refusal ({why}), got {other:?}"),
        }
    };
    refuse(&|a| a.jmp(rax).unwrap(), "indirect");
    refuse(&|a| a.int(0x80).unwrap(), "legacy syscall");
    refuse(&|a| a.sysenter().unwrap(), "legacy syscall");
    refuse(&|a| a.jmp(0x50_0000u64).unwrap(), "out of the function");
    refuse(&|a| a.call(0x40_0000u64).unwrap(), "call into the function");
}
