//! The engine's answer about kernel support must match the kernel's: on a
//! kernel (or emulator, such as qemu-user) without Syscall User Dispatch,
//! `probe` says `Unsupported` and `install` fails with `Error::Unsupported`
//! and a message that says why, without crashing; with SUD, both succeed.
//! Runs on every architecture, so it is the aarch64 build's check of the
//! "unsupported" path.

use linux_raw_sys::prctl::{
    PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_EXCLUSIVE_ON, PR_SYS_DISPATCH_OFF,
};
use sud_engine::{kernel, Engine, Error, Support};

/// Asks the kernel directly, through libc's `prctl` rather than the
/// engine's code: arms dispatch with an ALLOW selector and nothing
/// excluded (so no syscall can trap), then disarms.
fn kernel_has_sud() -> bool {
    let selector = 0u8;
    // SAFETY: the selector outlives the armed window (it ends two lines
    // down) and holds ALLOW, so every syscall in between, the disarming
    // prctl included, simply runs.
    let armed = unsafe {
        libc::prctl(
            PR_SET_SYSCALL_USER_DISPATCH as libc::c_int,
            PR_SYS_DISPATCH_EXCLUSIVE_ON as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            &selector as *const u8,
        )
    };
    if armed == 0 {
        // SAFETY: switching dispatch off has no memory effects.
        let off = unsafe {
            libc::prctl(
                PR_SET_SYSCALL_USER_DISPATCH as libc::c_int,
                PR_SYS_DISPATCH_OFF as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        assert_eq!(off, 0, "disarming after the direct check failed");
        return true;
    }
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(
        errno,
        Some(libc::EINVAL),
        "the kernel neither armed nor said it lacks SUD (a seccomp policy?)"
    );
    false
}

/// `SUD_EXPECT_SUPPORT=0|1` pins the expectation where the environment is
/// known (scripts/test-aarch64 sets 0 under qemu-user, which has no SUD),
/// so a wrong answer from both the kernel check and the engine still fails.
fn expected_support() -> Option<bool> {
    match std::env::var("SUD_EXPECT_SUPPORT").ok()?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        other => panic!("SUD_EXPECT_SUPPORT must be 0 or 1, not {other:?}"),
    }
}

#[test]
fn probe_and_install_agree_with_the_kernel() {
    let has_sud = kernel_has_sud();
    if let Some(expected) = expected_support() {
        assert_eq!(
            has_sud, expected,
            "SUD_EXPECT_SUPPORT disagrees with the kernel"
        );
    }
    let probe = kernel::probe();
    if has_sud {
        assert!(
            matches!(probe, Support::Available { .. }),
            "the kernel armed dispatch but probe says {probe:?}"
        );
        let engine = Engine::builder()
            .install()
            .expect("install on a kernel with SUD");
        assert_eq!(engine.support(), probe);
        assert!(engine.is_current_thread_armed());
        engine.disarm_current_thread().expect("disarm");
        println!("this kernel has Syscall User Dispatch ({probe:?}); the engine installed");
    } else {
        assert_eq!(probe, Support::Unsupported);
        let Err(err) = Engine::builder().install() else {
            panic!("install succeeded on a kernel without SUD");
        };
        assert_eq!(err, Error::Unsupported);
        let why = err.to_string();
        assert!(
            why.contains("no Syscall User Dispatch") && why.contains("arm64"),
            "the message must say why: {why}"
        );
        // A failed install leaves nothing behind: no engine, and trying
        // again gives the same answer instead of `AlreadyInstalled`.
        assert!(Engine::installed().is_none());
        assert!(matches!(
            Engine::builder().install(),
            Err(Error::Unsupported)
        ));
        println!("skipping tests that need the kernel feature: {why}");
    }
}
