//! The preload's DBI mode (`syscount --dbi`): the constructor installs the
//! engine with a code cache as its excluded region, then the translator
//! over that cache, and calls `Dbi::follow_me`, so that from the
//! constructor's return on the dynamic loader's remaining work, `_start`,
//! `main`, `exit` and every thread the program makes run translated
//! (design in sud-codegen's `dbi/follow.rs`). Translated syscalls reach the
//! same hooks as trapped ones, by direct call (`Entrance::Direct`); code
//! the translator leaves native still runs under the trap net.
//!
//! `dbi-cov` and `dbi-bbcount` add a transformer (see `dbi_collect`).
//!
//! What is not followed yet: a forked child stops translating (it runs
//! native under the trap net, its syscalls still counted); an `execve`d
//! image is followed again by its own constructor.

use crate::config::Translate;
use std::sync::OnceLock;
use sud_codegen::dbi::Dbi;
use sud_codegen::CodeCache;
use sud_engine::{Placement, Selector, Syscall};

static CACHE: OnceLock<&'static CodeCache> = OnceLock::new();

/// The engine placement the translator needs (its code cache as the
/// excluded region), reserving the cache; None if it cannot be reserved.
pub(crate) fn placement() -> Result<Placement, String> {
    let cache = CodeCache::new(sud_codegen::DEFAULT_CAPACITY)
        .map_err(|e| format!("cannot reserve the code cache: {e}"))?;
    let cache: &'static CodeCache = CACHE.get_or_init(|| Box::leak(Box::new(cache)));
    Ok(cache.placement())
}

/// Installs the translator over the cache [`placement`] reserved (the
/// engine is installed) and follows the calling thread: this returns
/// translated, into its caller.
#[inline(never)]
pub(crate) fn follow(what: &Translate) -> Result<(), String> {
    let cache = CACHE.get().ok_or("no code cache reserved")?;
    let dbi = {
        // The translator's own syscalls (its mappings) are not the
        // program's: they run untrapped.
        let _host = sud_engine::selector::enter(Selector::Allow);
        let mut builder = Dbi::builder();
        if crate::dbi_collect::prepare(what).is_some() {
            builder = builder.transformer(crate::dbi_collect::transform);
        }
        builder
            .install(cache)
            .map_err(|e| format!("cannot install the translator: {e}"))?
    };
    dbi.follow_me()
        .map_err(|e| format!("cannot follow the program: {e}"))
}

/// A memory syscall that ran native (trapped) may have changed code the
/// translator made blocks from; translated code's reach it by themselves.
pub(crate) fn after_trap(call: &Syscall, result: i64) {
    if call.entrance != sud_engine::Entrance::Trap {
        return;
    }
    if let Some(dbi) = Dbi::installed() {
        dbi.note_memory_change(call.nr, &call.args, result);
    }
}
