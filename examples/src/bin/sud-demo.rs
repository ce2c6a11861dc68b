//! The smallest whole use of the engine: install it, switch this thread to
//! the foreign personality, and watch its system calls arrive in Rust hooks:
//! one emulated, one redirected to another fd, one failed with an errno, one
//! passed through and observed. Prints what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use sud_engine::{errno_of, selector, Engine, Errno, Selector, SyscallSet, Sysno, Verdict};

static SEEN: AtomicU64 = AtomicU64::new(0);

fn main() {
    if let Err(e) = run() {
        eprintln!("sud-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), sud_engine::Error> {
    println!("kernel support: {:?}", sud_engine::kernel::probe());
    let watched = [Sysno::getpid, Sysno::write, Sysno::chdir, Sysno::uname];
    let engine = Engine::builder()
        .watch(SyscallSet::from_sysnos(&watched))
        .pre_hook(|call| {
            SEEN.fetch_add(1, Ordering::Relaxed);
            match call.sysno() {
                // Emulate: the kernel never sees this getpid.
                Some(Sysno::getpid) => Verdict::Return(4242),
                // Pass with changed arguments: writes to fd 1 go to fd 2.
                Some(Sysno::write) if call.args[0] == 1 => {
                    let mut args = call.args;
                    args[0] = 2;
                    Verdict::RunWith(args)
                }
                Some(Sysno::chdir) => Verdict::Fail(Errno::EPERM),
                _ => Verdict::Run,
            }
        })
        .install()?;

    let (pid, chdir_result, chdir_errno, uname_ok) = {
        // From here to the end of the block this thread is "foreign": every
        // syscall it makes traps into the hooks above.
        let _foreign = selector::enter(Selector::Block);
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            let pid = libc::getpid();
            let msg = b"  (this line was written to fd 1 and redirected to fd 2 by a hook)\n";
            libc::write(1, msg.as_ptr().cast(), msg.len());
            let ppid = libc::chdir(c"/".as_ptr());
            let errno = *libc::__errno_location();
            let mut uts: libc::utsname = std::mem::zeroed();
            let uname_ok = libc::uname(&mut uts) == 0;
            (pid, ppid, errno, uname_ok)
        }
    };

    println!(
        "getpid() from foreign code = {pid} (emulated by a hook; real pid {})",
        std::process::id()
    );
    println!(
        "chdir(\"/\") from foreign code = {chdir_result}, errno {:?} (failed by a hook)",
        errno_of(-(chdir_errno as i64))
    );
    println!("uname() from foreign code succeeded: {uname_ok} (passed through)");
    let c = engine.counters();
    println!(
        "engine counters: {} traps, {} ran hooks, {} hook calls seen",
        c.traps,
        c.hooked,
        SEEN.load(Ordering::Relaxed)
    );
    Ok(())
}
