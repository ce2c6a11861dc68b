//! The one place the engine chooses its instruction set: everything
//! ISA-specific comes from the arch crates through this module.

#[cfg(target_arch = "aarch64")]
pub(crate) use sud_arch_aarch64::*;
#[cfg(target_arch = "x86_64")]
pub(crate) use sud_arch_x86_64::*;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sud-engine supports x86_64 and aarch64");
