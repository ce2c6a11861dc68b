//! The behaviours of the kernel's own Syscall User Dispatch selftests,
//! reproduced through this crate's API.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::sync::atomic::{AtomicU8, Ordering};
use sud_engine::kernel::{self, Region, Support};
use sud_engine::{
    selector, Engine, Errno, Error, Placement, RegionProblem, Selector, SyscallSet, Sysno, Verdict,
};

const GETPPID: u32 = libc::SYS_getppid as u32;

fn sud_available() -> bool {
    matches!(kernel::probe(), Support::Available { .. })
}

#[test]
fn probe_reports_both_modes_on_this_kernel_without_arming() {
    assert_eq!(kernel::probe(), Support::Available { inclusive: true });
    // Probing armed nothing: a BLOCK selector changes nothing.
    let _block = selector::enter(Selector::Block);
    // SAFETY: getppid has no preconditions.
    assert!(unsafe { libc::getppid() } > 0);
}

#[test]
fn dispatch_without_a_handler_kills_with_sigsys() {
    static SELECTOR: AtomicU8 = AtomicU8::new(0);
    let ended = in_child(|| {
        no_core_dumps();
        // SAFETY: a static selector lives forever; with no handler the
        // first dispatched syscall kills this child, which is the point.
        unsafe {
            kernel::arm(
                Region::Exclusive { start: 0, len: 0 },
                SELECTOR.as_ptr().cast(),
            )
        }
        .unwrap();
        SELECTOR.store(Selector::Block as u8, Ordering::Relaxed);
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
        SELECTOR.store(Selector::Allow as u8, Ordering::Relaxed);
    });
    assert_eq!(ended, Ended::Killed(libc::SIGSYS));
}

#[test]
fn bad_parameters_are_rejected_by_the_kernel_and_by_the_api() {
    use linux_raw_sys::prctl::*;
    let sel = 0u8;
    let sel_addr = &sel as *const u8 as usize;
    // The kernel's own checks: unknown mode, OFF with arguments, an
    // overflowing exclusive range, an empty or overflowing inclusive range,
    // a selector outside user space.
    assert_eq!(kernel::raw_prctl(3, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_OFF, 1, 0, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_OFF, 0, 0, sel_addr),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON, usize::MAX - 10, 100, sel_addr),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_INCLUSIVE_ON, 0x1000, 0, sel_addr),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_INCLUSIVE_ON, usize::MAX - 10, 100, sel_addr),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        kernel::raw_prctl(PR_SYS_DISPATCH_EXCLUSIVE_ON, 0, 0, usize::MAX - 4095),
        Err(Errno::EFAULT)
    );

    // The same mistakes through the API are typed before reaching the kernel.
    let overflow = Region::Exclusive {
        start: usize::MAX - 10,
        len: 100,
    };
    assert!(matches!(
        overflow.validate(),
        Err(Error::BadRegion {
            problem: RegionProblem::Overflow,
            ..
        })
    ));
    let empty = Region::Inclusive {
        start: 0x1000,
        len: 0,
    };
    assert!(matches!(
        empty.validate(),
        Err(Error::BadRegion {
            problem: RegionProblem::Empty,
            ..
        })
    ));
    // An unmapped selector would SIGSEGV the thread at its next syscall;
    // arm refuses it instead (and arms nothing).
    let unmapped = 8 as *mut Selector;
    // SAFETY: arm checks the selector before handing it to the kernel.
    let err = unsafe { kernel::arm(Region::Exclusive { start: 0, len: 0 }, unmapped) }.unwrap_err();
    assert_eq!(err, Error::SelectorUnreadable(8));
    assert!(
        err.to_string().contains("not readable and writable"),
        "{err}"
    );
}

#[test]
fn install_rejects_bad_placements_installs_once_and_can_retry() {
    child_passes(|| {
        let outside = Engine::builder()
            .placement(Placement::Excluded {
                start: 0x10000,
                len: 0x1000,
                gadgets: 0x40000,
            })
            .install()
            .map(drop)
            .unwrap_err();
        assert!(matches!(
            outside,
            Error::BadRegion {
                problem: RegionProblem::GadgetsOutside,
                ..
            }
        ));
        assert!(outside.to_string().contains("gadget"), "{outside}");
        let everything = Engine::builder()
            .placement(Placement::Inclusive {
                start: 0x1000,
                len: usize::MAX - 0x1000,
            })
            .install()
            .map(drop)
            .unwrap_err();
        assert!(matches!(
            everything,
            Error::BadRegion {
                problem: RegionProblem::GadgetsInside,
                ..
            }
        ));
        let empty = Engine::builder()
            .placement(Placement::Inclusive {
                start: 0x1000,
                len: 0,
            })
            .install()
            .map(drop)
            .unwrap_err();
        assert!(matches!(
            empty,
            Error::BadRegion {
                problem: RegionProblem::Empty,
                ..
            }
        ));
        // Failed installs leave the process free to install.
        let engine = Engine::builder().install().unwrap();
        assert!(engine.is_current_thread_armed());
        let twice = Engine::builder().install().map(drop).unwrap_err();
        assert_eq!(twice, Error::AlreadyInstalled);
        assert!(twice.to_string().contains("already installed"));
    });
}

#[test]
fn trap_reports_number_arguments_and_call_address() {
    child_passes(|| {
        use std::sync::atomic::AtomicU64;
        static SEEN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
        let code = CodePages::new(1);
        code.write(code.base, &syscall_stub(GETPPID));
        let engine = Engine::builder()
            .pre_hook(|call| {
                if call.nr == GETPPID as u64 {
                    SEEN[0].store(call.nr, Ordering::Relaxed);
                    SEEN[1].store(call.call_addr, Ordering::Relaxed);
                    SEEN[2].store(call.tid as u64, Ordering::Relaxed);
                    return Verdict::Return(77);
                }
                Verdict::Run
            })
            .install()
            .unwrap();
        let result = {
            let _foreign = selector::enter(Selector::Block);
            call_code(code.base)
        };
        assert_eq!(result, 77);
        assert_eq!(SEEN[0].load(Ordering::Relaxed), GETPPID as u64);
        assert_eq!(
            SEEN[1].load(Ordering::Relaxed),
            (code.base + STUB_AFTER_SYSCALL) as u64
        );
        // SAFETY: gettid has no preconditions.
        assert_eq!(SEEN[2].load(Ordering::Relaxed), unsafe { libc::gettid() }
            as u64);
        assert_eq!(engine.count(Sysno::getppid), 1);
    });
}

#[test]
fn the_selector_holds_only_allow_or_block() {
    // The API has two values; the byte the kernel reads is always 0 or 1.
    let loc = selector::selector_location();
    let read = || {
        // SAFETY: the selector is this thread's live TLS byte.
        unsafe { (loc.address as *const u8).read_volatile() }
    };
    assert_eq!(read(), 0);
    {
        let _b = selector::enter(Selector::Block);
        assert_eq!(read(), 1);
        {
            let _a = selector::enter(Selector::Allow);
            assert_eq!(read(), 0);
            assert_eq!(selector::current(), Selector::Allow);
        }
        assert_eq!(read(), 1);
    }
    assert_eq!(read(), 0);
    assert_eq!(selector::set(Selector::Block), Selector::Allow);
    assert_eq!(selector::set(Selector::Allow), Selector::Block);
    // The thread-pointer offset reaches the same byte.
    let tp: usize;
    // SAFETY: reading the TCB self pointer at fs:0 has no side effects.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp) };
    assert_eq!(tp.wrapping_add(loc.tp_offset as usize), loc.address);
    // And the offset is the same in another thread (static TLS).
    let other = std::thread::spawn(selector::selector_location)
        .join()
        .unwrap();
    assert_eq!(other.tp_offset, loc.tp_offset);
    assert_ne!(other.address, loc.address);
}

#[test]
fn disarming_stops_dispatch_and_arming_again_resumes_it() {
    child_passes(|| {
        let engine = Engine::builder()
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| Verdict::Return(-1000))
            .install()
            .unwrap();
        let foreign_getppid = || {
            let _foreign = selector::enter(Selector::Block);
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() }
        };
        assert_eq!(foreign_getppid(), -1000);
        engine.disarm_current_thread().unwrap();
        assert!(!engine.is_current_thread_armed());
        assert!(foreign_getppid() > 0);
        assert_eq!(engine.count(Sysno::getppid), 1);
        engine.arm_current_thread(Selector::Allow).unwrap();
        assert_eq!(foreign_getppid(), -1000);
        assert_eq!(engine.count(Sysno::getppid), 2);
    });
}

#[test]
fn an_excluded_range_covering_everything_traps_nothing() {
    child_passes(|| {
        let gadgets = CodePages::new(1);
        gadgets.write(gadgets.base, &sud_engine::gadget_bytes());
        let engine = Engine::builder()
            .placement(Placement::Excluded {
                start: 0,
                len: usize::MAX,
                gadgets: gadgets.base,
            })
            .pre_hook(|_| Verdict::Return(-1000))
            .install()
            .unwrap();
        let _foreign = selector::enter(Selector::Block);
        // SAFETY: getppid has no preconditions.
        assert!(unsafe { libc::getppid() } > 0);
        drop(_foreign);
        assert_eq!(engine.counters().traps, 0);
    });
}

/// Places a syscall site whose instruction ends exactly at `after`, runs it
/// with the selector on BLOCK and says whether it trapped.
fn traps_when_ending_at(engine: &Engine, code: &CodePages, after: usize) -> bool {
    let start = after - STUB_AFTER_SYSCALL;
    code.write(start, &syscall_stub(GETPPID));
    let before = engine.count(Sysno::getppid);
    let result = {
        let _foreign = selector::enter(Selector::Block);
        call_code(start)
    };
    code.write(start, &[0xcc; 8]);
    let trapped = engine.count(Sysno::getppid) == before + 1;
    assert_eq!(
        trapped,
        result == -1000,
        "hook result and counter disagree at {after:#x}"
    );
    trapped
}

#[test]
fn exclusive_range_edges() {
    child_passes(|| {
        // Pages: [outside][excluded: gadgets + code][excluded][outside]
        let code = CodePages::new(4);
        let (start, len) = (code.base + 4096, 2 * 4096);
        code.write(start + 2048, &sud_engine::gadget_bytes());
        let engine = Engine::builder()
            .placement(Placement::Excluded {
                start,
                len,
                gadgets: start + 2048,
            })
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| Verdict::Return(-1000))
            .install()
            .unwrap();
        // The kernel checks the address after the syscall instruction.
        assert!(
            traps_when_ending_at(engine, &code, start - 1),
            "last byte before the range"
        );
        assert!(
            !traps_when_ending_at(engine, &code, start),
            "first byte of the range"
        );
        assert!(
            !traps_when_ending_at(engine, &code, start + len - 1),
            "last byte of the range"
        );
        assert!(
            traps_when_ending_at(engine, &code, start + len),
            "first byte after the range"
        );
    });
}

#[test]
fn inclusive_range_edges() {
    child_passes(|| {
        let code = CodePages::new(4);
        let (start, len) = (code.base + 4096, 2 * 4096);
        let engine = Engine::builder()
            .placement(Placement::Inclusive { start, len })
            .watch(SyscallSet::from_sysnos(&[Sysno::getppid]))
            .pre_hook(|_| Verdict::Return(-1000))
            .install()
            .unwrap();
        assert!(
            !traps_when_ending_at(engine, &code, start - 1),
            "last byte before the range"
        );
        assert!(
            traps_when_ending_at(engine, &code, start),
            "first byte of the range"
        );
        assert!(
            traps_when_ending_at(engine, &code, start + len - 1),
            "last byte of the range"
        );
        assert!(
            !traps_when_ending_at(engine, &code, start + len),
            "first byte after the range"
        );
        // Outside the range even libc's own syscalls run untrapped under BLOCK.
        let _foreign = selector::enter(Selector::Block);
        // SAFETY: getppid has no preconditions.
        assert!(unsafe { libc::getppid() } > 0);
    });
}

#[test]
fn this_kernel_supports_sud() {
    // The remaining tests in this file would prove nothing without it.
    assert!(
        sud_available(),
        "Syscall User Dispatch is required on the CI machine"
    );
}
