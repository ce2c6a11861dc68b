//! `sud-codegen`: code generation for JIT and binary-translator authors on top
//! of `sud-engine`. It will own the code cache that doubles as the engine's
//! excluded region, the selector flips emitted at the entry and exit of
//! translated foreign blocks, and the stubs that turn syscall sites into
//! direct calls of the engine's dispatch core.
//!
//! Today it re-exports the engine facts a code generator needs: where the
//! per-thread selector lives and which bytes the engine's gadgets are.

pub use sud_engine::{gadget_bytes, selector_location, Selector, SelectorLocation};
