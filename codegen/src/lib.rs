//! `sud-codegen`: code generation for JIT and binary-translator authors on
//! top of `sud-engine`. It owns
//! - the [`CodeCache`]: one reserved range that holds the engine's gadgets
//!   and all generated code, kept W^X, and handed to the engine as its
//!   excluded region ([`CodeCache::placement`]);
//! - selector flips for the entry (BLOCK) and exit (ALLOW) of translated
//!   foreign blocks, one instruction each ([`direct::selector_flip`]);
//! - direct hook calls: stubs that replace a `syscall` instruction in
//!   translated code with a call of the engine's dispatch core, no signal
//!   involved ([`DirectStub`]);
//! - a small translator that puts the three together for one foreign
//!   function ([`Translator`]), and generated loops that measure them
//!   ([`mod@bench`]).
//!
//! ```no_run
//! use sud_codegen::{direct, CodeCache, DirectStub, VectorState};
//! use sud_engine::Engine;
//! let cache: &'static CodeCache = Box::leak(Box::new(CodeCache::new(sud_codegen::DEFAULT_CAPACITY)?));
//! let engine = Engine::builder().placement(cache.placement()).install()?;
//! let stub = DirectStub::new(cache, direct::thread_selector()?, VectorState::Sse)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! SUD is not a security boundary, and neither is anything here: foreign
//! code can write the selector or jump into the cache.

mod cache;
mod error;

pub use cache::{CodeCache, DEFAULT_CAPACITY};
pub use error::Error;
pub use sud_engine::{gadget_bytes, selector_location, Selector, SelectorLocation};

#[cfg(target_arch = "x86_64")]
pub mod bench;
pub mod dbi;
#[cfg(target_arch = "x86_64")]
pub mod direct;
#[cfg(target_arch = "x86_64")]
mod translate;

#[cfg(target_arch = "x86_64")]
pub use direct::{DirectStub, VectorState};
#[cfg(target_arch = "x86_64")]
pub use error::EmitError;
#[cfg(target_arch = "x86_64")]
pub use translate::{Translation, Translator};
