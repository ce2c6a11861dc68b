//! Loading the code to follow: a shared library opened with `dlopen`
//! (`RTLD_NOW`, so no call goes through the dynamic loader's lazy binding
//! later) and its exported functions.

use std::ffi::{CStr, CString};

/// Why a library or a symbol could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// `dlopen` failed; the loader's message.
    Open(String),
    /// The library exports no such symbol.
    Symbol(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Open(why) => write!(f, "cannot load the library: {why}"),
            LoadError::Symbol(name) => write!(f, "the library exports no symbol {name}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded library. It stays loaded for the rest of the process
/// (translations of its code may outlive any handle).
#[derive(Debug)]
pub struct Library {
    handle: usize,
}

fn loader_message() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Library {
    /// `dlopen(path, RTLD_NOW)`. Loading runs the library's constructors.
    pub fn open(path: &str) -> Result<Library, LoadError> {
        let cpath = CString::new(path).map_err(|_| LoadError::Open("NUL in path".into()))?;
        // SAFETY: a valid NUL-terminated path; dlopen has no other
        // preconditions (running constructors is what loading means).
        let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            return Err(LoadError::Open(loader_message()));
        }
        Ok(Library {
            handle: handle as usize,
        })
    }

    /// The address of exported symbol `name`.
    pub fn symbol(&self, name: &str) -> Result<usize, LoadError> {
        let cname = CString::new(name).map_err(|_| LoadError::Symbol(name.into()))?;
        // SAFETY: a live handle (never closed) and a valid name.
        let addr = unsafe { libc::dlsym(self.handle as *mut libc::c_void, cname.as_ptr()) };
        if addr.is_null() {
            return Err(LoadError::Symbol(name.into()));
        }
        Ok(addr as usize)
    }
}
